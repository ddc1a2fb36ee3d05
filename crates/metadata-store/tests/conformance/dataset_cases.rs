//! Dataset version cases: numbering per name, one version per content, concurrent registration.

use loopline_metadata_store::*;

fn version(name: &str, hash: &str) -> DatasetVersion {
    DatasetVersion {
        name: name.into(),
        version: 0,
        content_hash: hash.into(),
        size_bytes: 10,
        file_count: 1,
        row_count: Some(3),
        table_schema: Some(r#"[{"name":"x","type":"double"}]"#.into()),
        profile: None,
        lineage: Some(r#"{"entity_frame":{"hash":"ab"}}"#.into()),
        source: "train.csv".into(),
        description: String::new(),
        created_by: "cli".into(),
        creation_time: 0,
    }
}

pub async fn dataset_versions_number_per_name_and_content(store: &SqlStore) {
    let (first, created) = store.register_dataset_version(&version("train", "aa")).await.unwrap();
    assert_eq!((first.version, created), (1, true));
    assert!(first.creation_time > 0);
    let (again, created) = store.register_dataset_version(&version("train", "aa")).await.unwrap();
    assert_eq!((again.version, created), (1, false));
    let (second, _) = store.register_dataset_version(&version("train", "bb")).await.unwrap();
    assert_eq!(second.version, 2);
    let (other, _) = store.register_dataset_version(&version("eval", "aa")).await.unwrap();
    assert_eq!(other.version, 1);
    assert_eq!(store.get_dataset_version("train", 1).await.unwrap(), first);
    assert_eq!(store.latest_dataset_version("train").await.unwrap(), second);
    assert!(matches!(
        store.get_dataset_version("train", 3).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.latest_dataset_version("nope").await,
        Err(StoreError::NotFound(_))
    ));
    let versions = store.dataset_versions("train", None, 10).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    let older = store.dataset_versions("train", Some(2), 10).await.unwrap();
    assert_eq!(older, vec![first]);
    let listed = store.list_datasets().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.name.as_str(), d.latest.version, d.version_count))
            .collect::<Vec<_>>(),
        [("eval", 1, 1), ("train", 2, 2)]
    );
    assert_eq!(store.dataset_content_hashes().await.unwrap(), ["aa", "bb"]);
}

pub async fn concurrent_registrations_make_distinct_versions(store: &SqlStore) {
    // Two writers per content: four versions in all, never two numbers for one content.
    let writers = (0..8).map(|index| async move {
        store
            .register_dataset_version(&version("busy", &format!("hash{}", index % 4)))
            .await
            .unwrap()
            .0
    });
    let registered = futures::future::join_all(writers).await;
    let mut numbers: Vec<(String, i64)> = registered.iter().map(|v| (v.content_hash.clone(), v.version)).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 4, "{numbers:?}");
    let mut versions: Vec<i64> = numbers.iter().map(|(_, v)| *v).collect();
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4]);
}

pub async fn gate_policies_evaluations_and_overrides(store: &SqlStore) {
    assert!(matches!(store.get_gate_policy("m").await, Err(StoreError::NotFound(_))));
    let first = store.set_gate_policy("m", r#"{"checks":[]}"#, "alice").await.unwrap();
    assert_eq!(first.revision, 1);
    let second = store.set_gate_policy("m", r#"{"checks":[1]}"#, "bob").await.unwrap();
    assert_eq!(
        (second.revision, second.policy.as_str(), second.updated_by.as_str()),
        (2, r#"{"checks":[1]}"#, "bob")
    );
    let evaluation = |passed: bool| GateEvaluation {
        evaluation_id: 0,
        name: "m".into(),
        version: 3,
        policy_revision: 2,
        passed,
        evidence: format!(r#"{{"passed":{passed}}}"#),
        created_by: "pipeline".into(),
        created_time: 0,
    };
    let failed = store.record_gate_evaluation(&evaluation(false)).await.unwrap();
    let passed = store.record_gate_evaluation(&evaluation(true)).await.unwrap();
    assert!(passed.evaluation_id > failed.evaluation_id && passed.created_time > 0);
    let newest = store.gate_evaluations("m", 3, 10).await.unwrap();
    assert_eq!(newest.iter().map(|e| e.passed).collect::<Vec<_>>(), [true, false]);
    assert!(store.gate_evaluations("m", 4, 10).await.unwrap().is_empty());
    let record = GateOverride {
        override_id: 0,
        name: "m".into(),
        alias: "champion".into(),
        version: 3,
        reason: "hotfix".into(),
        created_by: "alice".into(),
        created_time: 0,
    };
    let stored = store.record_gate_override(&record).await.unwrap();
    assert_eq!(store.gate_overrides("m", 5).await.unwrap(), vec![stored]);
    store.delete_gate_policy("m").await.unwrap();
    assert!(matches!(store.get_gate_policy("m").await, Err(StoreError::NotFound(_))));
}

fn pipeline_run(run_id: &str, pipeline: &str) -> PipelineRunRecord {
    PipelineRunRecord {
        run_id: run_id.into(),
        pipeline: pipeline.into(),
        cause: r#"{"kind":"manual"}"#.into(),
        status: "queued".into(),
        record: "{}".into(),
        owner: "replica-a".into(),
        cancel_requested: false,
        creation_time: 0,
        last_update_time: 0,
        end_time: None,
    }
}

pub async fn pipelines_and_their_runs(store: &SqlStore) {
    let created = store.create_pipeline("churn", r#"{"d":1}"#, "{}").await.unwrap();
    assert_eq!(created.revision, 1);
    assert!(matches!(
        store.create_pipeline("churn", "{}", "{}").await,
        Err(StoreError::AlreadyExists(_))
    ));
    let updated = store
        .update_pipeline("churn", 1, r#"{"d":2}"#, r#"{"c":1}"#)
        .await
        .unwrap();
    assert_eq!((updated.revision, updated.state.as_str()), (2, r#"{"c":1}"#));
    // A replica that read revision 1 loses: one trigger starts one run.
    assert!(matches!(
        store.update_pipeline("churn", 1, "{}", "{}").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.update_pipeline("ghost", 1, "{}", "{}").await,
        Err(StoreError::NotFound(_))
    ));
    store.create_pipeline("another", "{}", "{}").await.unwrap();
    let names: Vec<String> = store
        .list_pipelines()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["another", "churn"]);

    store.create_pipeline_run(&pipeline_run("r1", "churn")).await.unwrap();
    store.create_pipeline_run(&pipeline_run("r2", "churn")).await.unwrap();
    store.create_pipeline_run(&pipeline_run("r3", "another")).await.unwrap();
    assert!(matches!(
        store.create_pipeline_run(&pipeline_run("r1", "churn")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    store
        .update_pipeline_run("r1", "succeeded", r#"{"steps":[]}"#, "replica-b", Some(42))
        .await
        .unwrap();
    let r1 = store.get_pipeline_run("r1").await.unwrap();
    assert_eq!(
        (r1.status.as_str(), r1.owner.as_str(), r1.end_time, r1.record.as_str()),
        ("succeeded", "replica-b", Some(42), r#"{"steps":[]}"#)
    );
    assert!(store.claim_pipeline_run("r3", "replica-c").await.unwrap());
    assert!(!store.claim_pipeline_run("r3", "replica-d").await.unwrap());
    assert_eq!(store.get_pipeline_run("r3").await.unwrap().owner, "replica-c");
    store.request_pipeline_run_cancel("r2").await.unwrap();
    assert!(store.get_pipeline_run("r2").await.unwrap().cancel_requested);
    assert!(matches!(
        store.request_pipeline_run_cancel("ghost").await,
        Err(StoreError::NotFound(_))
    ));
    let active: Vec<String> = store
        .active_pipeline_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(active, ["r2", "r3"]);
    let of_churn = store.pipeline_runs(Some("churn"), 10).await.unwrap();
    assert_eq!(of_churn.len(), 2);
    assert_eq!(store.pipeline_runs(None, 10).await.unwrap().len(), 3);
    assert_eq!(store.pipeline_runs(None, 1).await.unwrap().len(), 1);
    store.delete_pipeline("churn").await.unwrap();
    assert!(matches!(
        store.get_pipeline("churn").await,
        Err(StoreError::NotFound(_))
    ));
    // Runs stay as history.
    assert_eq!(store.get_pipeline_run("r1").await.unwrap().pipeline, "churn");
}
