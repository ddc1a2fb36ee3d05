//! Gateway usage ledger cases: all-or-nothing reservations that never pass a limit, even when writers race;
//! settlement; leases that cap calls in flight and lapse.

use loopline_metadata_store::*;

fn claim(subject: &str, kind: &str, amount: i64, limit: Option<i64>) -> UsageClaim {
    UsageClaim {
        subject: subject.into(),
        kind: kind.into(),
        window: 60_000,
        amount,
        limit,
    }
}

fn lease(id: &str, limit: i64, expires_time: i64) -> UsageLease {
    UsageLease {
        lease_id: id.into(),
        subject: "key:k".into(),
        limit,
        expires_time,
    }
}

async fn level(store: &SqlStore, subject: &str, kind: &str) -> (i64, i64) {
    let rows = store.usage_rows(kind, 0).await.unwrap();
    rows.iter()
        .find(|row| row.subject == subject)
        .map_or((0, 0), |row| (row.used, row.reserved))
}

pub async fn gateway_usage_is_reserved_all_or_nothing_and_settled(store: &SqlStore) {
    let both = [
        claim("key:k", "spend", 60, Some(100)),
        claim("team:t", "spend", 60, Some(50)),
    ];
    assert_eq!(
        store.reserve_usage(&both, &[], 0).await.unwrap(),
        Reservation::Refused(1)
    );
    assert_eq!(level(store, "key:k", "spend").await, (0, 0), "nothing was reserved");
    let granted = store.reserve_usage(&both[..1], &[], 0).await.unwrap();
    assert_eq!(granted, Reservation::Granted(vec![60]));
    assert_eq!(
        store.reserve_usage(&both[..1], &[], 0).await.unwrap(),
        Reservation::Refused(0),
        "60 + 60 would pass 100"
    );
    let settle = UsageSettlement {
        subject: "key:k".into(),
        kind: "spend".into(),
        window: 60_000,
        reserved: 60,
        actual: 25,
    };
    store.settle_usage(&[settle], &[]).await.unwrap();
    assert_eq!(level(store, "key:k", "spend").await, (25, 0));
    assert_eq!(
        store.reserve_usage(&both[..1], &[], 0).await.unwrap(),
        Reservation::Granted(vec![85])
    );
    // A tally without a limit always passes.
    let tally = [claim("model:m", "spend", 1_000, None)];
    assert!(matches!(
        store.reserve_usage(&tally, &[], 0).await.unwrap(),
        Reservation::Granted(_)
    ));
    // Keys and teams are kept and replaced.
    let key = GatewayKey {
        token_id: "k".into(),
        team: Some("t".into()),
        models: vec!["chat".into()],
        limits: GatewayLimits {
            rpm: Some(5),
            budget_micros: Some(1_000),
            budget_period: "day".into(),
            ..GatewayLimits::default()
        },
        created_time: 1,
        updated_time: 2,
    };
    store.put_gateway_key(&key).await.unwrap();
    store.put_gateway_key(&key).await.unwrap();
    assert_eq!(store.get_gateway_key("k").await.unwrap(), Some(key));
    assert_eq!(store.list_gateway_keys().await.unwrap().len(), 1);
    store.delete_gateway_key("k").await.unwrap();
    assert_eq!(store.get_gateway_key("k").await.unwrap(), None);
}

pub async fn racing_reservations_never_pass_a_limit(store: &SqlStore) {
    let racers = (0..32).map(|_| async move {
        let claims = [
            claim("key:race", "requests", 1, Some(10)),
            claim("team:race", "tokens", 7, Some(70)),
        ];
        store.reserve_usage(&claims, &[], 0).await.unwrap()
    });
    let answers = futures::future::join_all(racers).await;
    let granted = answers
        .iter()
        .filter(|answer| matches!(answer, Reservation::Granted(_)))
        .count();
    assert_eq!(granted, 10, "{answers:?}");
    assert_eq!(level(store, "key:race", "requests").await, (0, 10));
    assert_eq!(level(store, "team:race", "tokens").await, (0, 70));
    // Leases: at most two in flight; ending one frees a place; a lapsed one frees its place too.
    let takers = (0..6).map(|index| async move {
        store
            .reserve_usage(&[], &[lease(&format!("l{index}"), 2, 1_000)], 0)
            .await
            .unwrap()
    });
    let taken = futures::future::join_all(takers).await;
    let held: Vec<usize> = (0..6)
        .filter(|index| taken[*index] == Reservation::Granted(vec![]))
        .collect();
    assert_eq!(held.len(), 2, "{taken:?}");
    assert_eq!(
        store.reserve_usage(&[], &[lease("x", 2, 1_000)], 0).await.unwrap(),
        Reservation::Refused(0)
    );
    store.settle_usage(&[], &[format!("l{}", held[0])]).await.unwrap();
    assert_eq!(
        store.reserve_usage(&[], &[lease("y", 2, 1_000)], 0).await.unwrap(),
        Reservation::Granted(vec![])
    );
    assert_eq!(
        store.reserve_usage(&[], &[lease("z", 2, 5_000)], 2_000).await.unwrap(),
        Reservation::Granted(vec![])
    );
}

/// The catalog is replaced only from the generation read: of racing writers from one generation exactly one
/// wins, and a reader sees the winner's document and generation.
pub async fn gateway_catalog_is_compare_and_swap(store: &SqlStore) {
    assert_eq!(store.gateway_catalog().await.unwrap(), None);
    assert_eq!(store.gateway_catalog_generation().await.unwrap(), 0);
    assert!(store.put_gateway_catalog(0, "{\"first\":1}").await.unwrap());
    assert!(
        !store.put_gateway_catalog(0, "{\"again\":1}").await.unwrap(),
        "generation 0 is gone"
    );
    assert_eq!(
        store.gateway_catalog().await.unwrap(),
        Some((1, "{\"first\":1}".to_string()))
    );
    let racers = (0..8).map(|index| async move {
        store
            .put_gateway_catalog(1, &format!("{{\"racer\":{index}}}"))
            .await
            .unwrap()
    });
    let won: Vec<usize> = futures::future::join_all(racers)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(index, won)| won.then_some(index))
        .collect();
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(
        store.gateway_catalog().await.unwrap(),
        Some((2, format!("{{\"racer\":{}}}", won[0])))
    );
    assert_eq!(store.gateway_catalog_generation().await.unwrap(), 2);
    assert!(!store.put_gateway_catalog(1, "{}").await.unwrap());
}
