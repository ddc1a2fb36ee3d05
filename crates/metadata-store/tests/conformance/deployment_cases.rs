//! Deployment storage cases: optimistic revisions, events written with the change they describe, and the
//! registry's alias history.

use loopline_metadata_store::*;

fn event(deployment: &str, kind: &str) -> DeploymentEvent {
    DeploymentEvent {
        event_id: 0,
        deployment: deployment.into(),
        timestamp_ms: 1_700_000_000_000,
        kind: kind.into(),
        actor: "user:test".into(),
        message: format!("{kind} happened"),
        details: r#"{"share":0.05}"#.into(),
    }
}

pub async fn deployments_update_by_revision(store: &SqlStore) {
    let created = store
        .create_deployment("churn", r#"{"a":1}"#, r#"{"s":1}"#, &event("churn", "created"))
        .await
        .unwrap();
    assert_eq!((created.revision, created.spec.as_str()), (1, r#"{"a":1}"#));
    assert!(matches!(
        store
            .create_deployment("churn", "{}", "{}", &event("churn", "created"))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let updated = store
        .update_deployment(
            "churn",
            1,
            r#"{"a":2}"#,
            r#"{"s":2}"#,
            &[event("churn", "step"), event("churn", "step")],
        )
        .await
        .unwrap();
    assert_eq!((updated.revision, updated.state.as_str()), (2, r#"{"s":2}"#));
    // A change based on the old revision is refused and writes nothing, not even its events.
    let stale = store
        .update_deployment("churn", 1, r#"{"a":3}"#, r#"{"s":3}"#, &[event("churn", "promoted")])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.get_deployment("churn").await.unwrap(), updated);
    assert!(matches!(
        store.update_deployment("nope", 1, "{}", "{}", &[]).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .append_deployment_event(&event("churn", "guardrail"))
        .await
        .unwrap();
    let events = store.deployment_events("churn", 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "step", "step", "guardrail"]);
    assert!(events.windows(2).all(|pair| pair[0].event_id < pair[1].event_id));
    assert_eq!(events[1].details, r#"{"share":0.05}"#);
    let later = store.deployment_events("churn", events[1].event_id, 1).await.unwrap();
    assert_eq!(later, vec![events[2].clone()]);

    store
        .create_deployment("alpha", "{}", "{}", &event("alpha", "created"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_deployments()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["alpha", "churn"]);
    store.delete_deployment("churn").await.unwrap();
    assert!(matches!(
        store.get_deployment("churn").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.deployment_events("churn", 0, 100).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_deployment("churn").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_updates_have_one_winner(store: &SqlStore) {
    store
        .create_deployment("race", "{}", "{}", &event("race", "created"))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let state = format!(r#"{{"writer":{i}}}"#);
        async move {
            store
                .update_deployment("race", 1, "{}", &state, &[event("race", "step")])
                .await
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict(_)))
    );
    assert_eq!(store.deployment_events("race", 0, 100).await.unwrap().len(), 2);
}

pub async fn alias_history_follows_the_registry(store: &SqlStore) {
    store.create_registered_model("fraud", &[], "").await.unwrap();
    for source in ["runs:/a/model", "runs:/b/model"] {
        store
            .create_model_version(&NewModelVersion {
                name: "fraud".into(),
                source: source.into(),
                storage_location: source.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    store.set_alias("fraud", "champion", 1).await.unwrap();
    store.set_alias("fraud", "champion", 2).await.unwrap();
    store.set_alias("fraud", "shadow", 1).await.unwrap();
    store.delete_alias("fraud", "shadow").await.unwrap();
    store.set_alias("fraud", "old", 1).await.unwrap();
    store.delete_model_version("fraud", 1).await.unwrap();
    let champion: Vec<Option<i64>> = store
        .alias_history("fraud", Some("champion"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(champion, [Some(1), Some(2)]);
    let all: Vec<(String, Option<i64>)> = store
        .alias_history("fraud", None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.alias, c.version))
        .collect();
    assert_eq!(
        all,
        [
            ("champion".to_string(), Some(1)),
            ("champion".to_string(), Some(2)),
            ("shadow".to_string(), Some(1)),
            ("shadow".to_string(), None),
            ("old".to_string(), Some(1)),
            ("old".to_string(), None),
        ]
    );
    store.rename_registered_model("fraud", "fraud2").await.unwrap();
    assert_eq!(store.alias_history("fraud2", None).await.unwrap().len(), 6);
    store.delete_registered_model("fraud2").await.unwrap();
    assert!(store.alias_history("fraud2", None).await.unwrap().is_empty());
}
