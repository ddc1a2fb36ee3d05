//! Logged-model searches restricted to datasets and ordered by a metric's latest value, as MLflow searches them.

use loopline_metadata_store::*;

async fn model(store: &SqlStore, name: &str) -> String {
    store
        .create_logged_model(&NewLoggedModel {
            experiment_id: "0".into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .info
        .model_id
}

fn metric_on(model_id: &str, value: f64, timestamp: i64, dataset: Option<(&str, &str)>) -> Metric {
    Metric {
        key: "acc".into(),
        value,
        timestamp,
        step: 0,
        dataset_name: dataset.map(|(name, _)| name.to_string()),
        dataset_digest: dataset.map(|(_, digest)| digest.to_string()),
        model_id: Some(model_id.to_string()),
        run_id: None,
    }
}

fn dataset(name: &str, digest: Option<&str>) -> DatasetRef {
    DatasetRef {
        name: name.into(),
        digest: digest.map(str::to_string),
    }
}

pub async fn logged_models_are_searched_by_dataset_and_latest_metric(store: &SqlStore) {
    let run_id = store
        .create_run(&NewRun {
            experiment_id: "0".into(),
            user_id: "tester".into(),
            run_name: "eval".into(),
            start_time: 1,
            tags: Vec::new(),
        })
        .await
        .unwrap()
        .info
        .run_id;
    let (early, late, bare) = (
        model(store, "early").await,
        model(store, "late").await,
        model(store, "bare").await,
    );
    // `early` scored 0.9 on the old test set and then 0.1 (its latest); `late` scored 0.5 on the new one.
    let metrics = vec![
        metric_on(&early, 0.9, 10, Some(("test", "v1"))),
        metric_on(&early, 0.1, 20, Some(("test", "v1"))),
        metric_on(&late, 0.5, 15, Some(("test", "v2"))),
    ];
    store
        .log_batch(
            &run_id,
            &LogBatch {
                metrics,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names = |datasets: Vec<DatasetRef>, filter: &str, order: Vec<(String, bool)>, on: Vec<Option<DatasetRef>>| {
        let search = LoggedModelSearch {
            experiment_ids: vec!["0".into()],
            filter: (!filter.is_empty()).then(|| filter.to_string()),
            order_by: order,
            order_datasets: on,
            datasets,
            ..Default::default()
        };
        async move {
            let page = store.search_logged_models(&search).await.unwrap();
            page.items.into_iter().map(|m| m.info.name).collect::<Vec<_>>()
        }
    };
    let descending = || vec![("metrics.acc".to_string(), false)];
    // Without datasets every model is found; with some, only those with a metric on one of them.
    assert_eq!(names(vec![], "", vec![], vec![]).await.len(), 3);
    assert_eq!(
        names(vec![dataset("test", Some("v1"))], "", vec![], vec![]).await,
        ["early"]
    );
    let mut either = names(vec![dataset("test", None)], "", vec![], vec![]).await;
    either.sort();
    assert_eq!(either, ["early", "late"]);
    // A metric clause with datasets looks at the metrics on those datasets alone.
    assert_eq!(
        names(vec![dataset("test", Some("v2"))], "metrics.acc > 0.8", vec![], vec![]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(vec![dataset("test", Some("v1"))], "metrics.acc > 0.8", vec![], vec![]).await,
        ["early"]
    );
    // Ordered by the latest value (0.1 for `early`, not its best); a model without the metric comes last.
    assert_eq!(names(vec![], "", descending(), vec![]).await, ["late", "early", "bare"]);
    // Read on a dataset, the order ignores the metrics logged on others.
    let on_v2 = vec![Some(dataset("test", Some("v2")))];
    assert_eq!(names(vec![], "", descending(), on_v2).await[0], "late");
    let on_v1 = vec![Some(dataset("test", Some("v1")))];
    assert_eq!(names(vec![], "", descending(), on_v1).await[0], "early");
    assert!(!bare.is_empty());
}
