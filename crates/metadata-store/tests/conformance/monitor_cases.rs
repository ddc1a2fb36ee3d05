//! Monitor storage cases: optimistic revisions with windows and events written in the same transaction,
//! window results replaced when a window is evaluated again, and reference profiles.

use loopline_metadata_store::*;

fn monitor_event(monitor: &str, kind: &str) -> MonitorEvent {
    MonitorEvent {
        event_id: 0,
        monitor: monitor.into(),
        timestamp_ms: 1_700_000_000_000,
        kind: kind.into(),
        actor: "monitor".into(),
        message: format!("{kind} happened"),
        details: r#"{"score":0.4}"#.into(),
    }
}

fn window_result(monitor: &str, key: i64, status: &str, labels: i64) -> MonitorWindow {
    MonitorWindow {
        monitor: monitor.into(),
        window_key: key,
        window_start: key * 1000,
        window_end: key * 1000 + 1000,
        status: status.into(),
        rows_seen: 100,
        labels_seen: labels,
        figures: format!(r#"{{"key":{key}}}"#),
        report_path: (key % 2 == 0).then(|| format!("monitoring/m/{key}.json")),
        evaluated_time: 1_700_000_000_000 + key,
    }
}

pub async fn monitors_store_windows_with_their_revision(store: &SqlStore) {
    let created = store
        .create_monitor("drift", r#"{"w":1}"#, r#"{"c":0}"#, &monitor_event("drift", "created"))
        .await
        .unwrap();
    assert_eq!((created.revision, created.state.as_str()), (1, r#"{"c":0}"#));
    assert!(matches!(
        store
            .create_monitor("drift", "{}", "{}", &monitor_event("drift", "created"))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let windows = [
        window_result("drift", 0, "ok", 0),
        window_result("drift", 1, "alerting", 0),
    ];
    let events = [monitor_event("drift", "alert_firing")];
    let update = MonitorUpdate {
        spec: r#"{"w":1}"#,
        state: r#"{"c":2}"#,
        windows: &windows,
        events: &events,
    };
    let updated = store.update_monitor("drift", 1, &update).await.unwrap();
    assert_eq!((updated.revision, updated.state.as_str()), (2, r#"{"c":2}"#));
    let stale = MonitorUpdate {
        state: r#"{"c":9}"#,
        windows: &[window_result("drift", 5, "ok", 0)],
        ..update
    };
    assert!(matches!(
        store.update_monitor("drift", 1, &stale).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.update_monitor("absent", 1, &update).await,
        Err(StoreError::NotFound(_))
    ));
    let stored = store.monitor_windows("drift", 0, 10).await.unwrap();
    assert_eq!(stored, windows.to_vec(), "the refused update wrote no window");

    // A window evaluated again (late labels) replaces its row.
    let again = [window_result("drift", 1, "ok", 40)];
    let relabel = MonitorUpdate {
        state: r#"{"c":2}"#,
        windows: &again,
        events: &[],
        ..update
    };
    store.update_monitor("drift", 2, &relabel).await.unwrap();
    let stored = store.monitor_windows("drift", 1, 10).await.unwrap();
    assert_eq!(stored, again.to_vec());
    let latest = store.latest_monitor_windows("drift", 1).await.unwrap();
    assert_eq!(latest[0].labels_seen, 40);
    assert_eq!(store.latest_monitor_windows("drift", 10).await.unwrap().len(), 2);

    let history = store.monitor_events("drift", 0, 10).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "alert_firing"]);
    assert_eq!(
        store
            .monitor_events("drift", history[0].event_id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.list_monitors().await.unwrap().len(), 1);

    store.delete_monitor("drift").await.unwrap();
    assert!(matches!(store.get_monitor("drift").await, Err(StoreError::NotFound(_))));
    assert!(store.monitor_windows("drift", 0, 10).await.unwrap().is_empty());
    assert!(store.monitor_events("drift", 0, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_monitor("drift").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn references_are_set_per_version(store: &SqlStore) {
    assert!(matches!(
        store.get_reference("churn", "1").await,
        Err(StoreError::NotFound(_))
    ));
    let mut reference = ReferenceRecord {
        name: "churn".into(),
        version: "1".into(),
        profile: r#"{"format":"loopline-profile/1"}"#.into(),
        source: "cli".into(),
        set_time: 5,
    };
    store.set_reference(&reference).await.unwrap();
    reference.profile = r#"{"format":"loopline-profile/1","rows":3}"#.into();
    reference.set_time = 6;
    store.set_reference(&reference).await.unwrap();
    assert_eq!(store.get_reference("churn", "1").await.unwrap(), reference);
    assert!(matches!(
        store.get_reference("churn", "2").await,
        Err(StoreError::NotFound(_))
    ));
}
