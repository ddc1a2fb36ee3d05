//! One conformance suite for every online store: the embedded SQLite file always, Redis when
//! LOOPLINE_TEST_REDIS_URL names one (scripts/test.sh starts one).

use loopline_features::online::{EmbeddedOnlineStore, FeatureValue, OnlineRow, OnlineStore, RedisOnlineStore};

fn row(event: i64, created: Option<i64>, value: i64) -> OnlineRow {
    OnlineRow {
        event_time: event,
        created_time: created,
        values: vec![
            FeatureValue::Int(value),
            FeatureValue::Text(format!("v{value}")),
            FeatureValue::Null,
        ],
    }
}

async fn conformance(store: &dyn OnlineStore, project: &str) {
    let key = |k: &str| k.as_bytes().to_vec();
    store
        .write(
            project,
            "stats",
            vec![(key("a"), row(100, None, 1)), (key("b"), row(100, Some(5), 2))],
        )
        .await
        .unwrap();
    // Older rows never replace newer ones; a later created time wins a tie on event time; newer rows replace.
    store
        .write(
            project,
            "stats",
            vec![
                (key("a"), row(99, Some(1_000), 3)),
                (key("b"), row(100, Some(6), 4)),
                (key("c"), row(1, None, 5)),
            ],
        )
        .await
        .unwrap();
    store
        .write(project, "stats", vec![(key("b"), row(100, None, 6))])
        .await
        .unwrap();
    store
        .write(project, "other", vec![(key("a"), row(7, None, 7))])
        .await
        .unwrap();
    let wanted = vec![
        ("stats".to_string(), vec![key("a"), key("b"), key("zz"), key("c")]),
        ("other".to_string(), vec![key("a"), key("b")]),
        ("never".to_string(), vec![key("a")]),
    ];
    let found = store.read(project, &wanted).await.unwrap();
    let values: Vec<Vec<Option<i64>>> = found
        .iter()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_ref().map(|r| match r.values[0] {
                        FeatureValue::Int(v) => v,
                        _ => panic!("{r:?}"),
                    })
                })
                .collect()
        })
        .collect();
    assert_eq!(
        values,
        vec![vec![Some(1), Some(4), None, Some(5)], vec![Some(7), None], vec![None]]
    );
    assert_eq!(found[0][1].as_ref().unwrap(), &row(100, Some(6), 4));

    assert_eq!(store.watermark(project, "stats").await.unwrap(), None);
    store.set_watermark(project, "stats", 1_234).await.unwrap();
    assert_eq!(store.watermark(project, "stats").await.unwrap(), Some(1_234));
    assert_eq!(store.watermark("another-project", "stats").await.unwrap(), None);

    store.drop_view(project, "stats").await.unwrap();
    let found = store.read(project, &wanted[..2]).await.unwrap();
    assert!(found[0].iter().all(Option::is_none));
    assert!(found[1][0].is_some(), "other views keep their rows");
    assert_eq!(store.watermark(project, "stats").await.unwrap(), None);
}

#[tokio::test]
async fn the_embedded_store_passes_and_keeps_rows_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features").join("online.db");
    let store = EmbeddedOnlineStore::open(&path).unwrap();
    // Reads before the first write answer "nothing" and make no file.
    let nothing = store
        .read("p", &[("v".to_string(), vec![b"k".to_vec()])])
        .await
        .unwrap();
    assert_eq!(nothing, vec![vec![None]]);
    assert_eq!(store.watermark("p", "v").await.unwrap(), None);
    assert!(!dir.path().join("features").exists());
    conformance(&store, "p").await;
    store
        .write("p", "kept", vec![(b"k".to_vec(), row(1, None, 9))])
        .await
        .unwrap();
    drop(store);
    let again = EmbeddedOnlineStore::open(&path).unwrap();
    let found = again
        .read("p", &[("kept".to_string(), vec![b"k".to_vec()])])
        .await
        .unwrap();
    assert_eq!(found[0][0], Some(row(1, None, 9)));
}

#[tokio::test]
async fn the_redis_store_passes() {
    let Ok(url) = std::env::var("LOOPLINE_TEST_REDIS_URL") else {
        eprintln!("LOOPLINE_TEST_REDIS_URL is not set: the Redis online store is not tested here");
        return;
    };
    let store = RedisOnlineStore::connect(&url).await.unwrap();
    let project = format!("conformance-{}", std::process::id());
    conformance(&store, &project).await;
}
