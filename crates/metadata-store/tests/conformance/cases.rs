//! The cases themselves, written once against the traits.

use loopline_metadata_store::*;

pub use super::dataset_cases::*;
pub use super::deployment_cases::*;
pub use super::gateway_cases::*;
pub use super::model_cases::*;
pub use super::monitor_cases::*;
pub use super::trace_cases::*;

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    }
}

async fn new_run(store: &SqlStore, experiment_id: &str, name: &str, start_time: i64) -> Run {
    store
        .create_run(&NewRun {
            experiment_id: experiment_id.into(),
            user_id: "tester".into(),
            run_name: name.into(),
            start_time,
            tags: vec![Tag::new("origin", "conformance")],
        })
        .await
        .unwrap()
}

fn page(max_results: u64, page_token: Option<String>) -> PageRequest {
    PageRequest {
        max_results,
        page_token,
    }
}

pub async fn default_experiment_exists(store: &SqlStore) {
    let default = store.get_experiment("0").await.unwrap();
    assert_eq!(
        (default.name.as_str(), default.lifecycle_stage.as_str()),
        ("Default", "active")
    );
    assert_eq!(default.artifact_location, "mlflow-artifacts:/0");
    assert!(matches!(
        store.get_experiment("12345").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_experiment("abc").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn experiment_lifecycle_and_search(store: &SqlStore) {
    let first = store
        .create_experiment("alpha", None, &[Tag::new("team", "a")])
        .await
        .unwrap();
    let second = store
        .create_experiment("beta", Some("s3://bucket/beta"), &[])
        .await
        .unwrap();
    assert_ne!(first, second);
    assert!(matches!(
        store.create_experiment("alpha", None, &[]).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let alpha = store.get_experiment_by_name("alpha").await.unwrap();
    assert_eq!(alpha.artifact_location, format!("mlflow-artifacts:/{first}"));
    assert_eq!(alpha.tags, vec![Tag::new("team", "a")]);
    assert_eq!(
        store.get_experiment(&second).await.unwrap().artifact_location,
        "s3://bucket/beta"
    );
    store.rename_experiment(&first, "alpha-renamed").await.unwrap();
    store.set_experiment_tag(&first, &Tag::new("k", "v")).await.unwrap();
    store.delete_experiment_tag(&first, "team").await.unwrap();
    assert_eq!(
        store.get_experiment(&first).await.unwrap().tags,
        vec![Tag::new("k", "v")]
    );
    store
        .set_experiment_lifecycle(&second, LifecycleStage::Deleted)
        .await
        .unwrap();
    assert!(
        store
            .set_experiment_lifecycle("0", LifecycleStage::Deleted)
            .await
            .is_err()
    );
    let active = store
        .search_experiments(&ExperimentSearch {
            order_by: vec!["name ASC".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<_> = active.items.iter().map(|experiment| experiment.name.as_str()).collect();
    assert_eq!(names, ["Default", "alpha-renamed"]);
    let deleted = store
        .search_experiments(&ExperimentSearch {
            view_type: ViewType::DeletedOnly,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.items.len(), 1);
    let filtered = store
        .search_experiments(&ExperimentSearch {
            filter: Some("tags.k = 'v' AND name LIKE 'alpha%'".into()),
            view_type: ViewType::All,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.items.len(), 1);
    let first_page = store
        .search_experiments(&ExperimentSearch {
            view_type: ViewType::All,
            page: page(2, None),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first_page.items.len(), 2);
    let second_page = store
        .search_experiments(&ExperimentSearch {
            view_type: ViewType::All,
            page: page(2, first_page.next_page_token),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((second_page.items.len(), second_page.next_page_token), (1, None));
    store
        .set_experiment_lifecycle(&second, LifecycleStage::Active)
        .await
        .unwrap();
}

pub async fn runs_log_and_read_back(store: &SqlStore) {
    let run = new_run(store, "0", "first", 100).await;
    assert_eq!(run.info.status, "RUNNING");
    assert!(run.data.tags.contains(&Tag::new("mlflow.runName", "first")));
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/0/{}/artifacts", run.info.run_id)
    );
    let run_id = run.info.run_id.clone();
    let batch = LogBatch {
        metrics: vec![
            metric("loss", 0.5, 10, 0),
            metric("loss", 0.25, 11, 1),
            metric("nan", f64::NAN, 1, 0),
            metric("inf", f64::INFINITY, 1, 0),
        ],
        params: vec![Tag::new("lr", "0.1")],
        tags: vec![Tag::new("mlflow.runName", "renamed")],
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    let fetched = store.get_run(&run_id).await.unwrap();
    assert_eq!(fetched.info.run_name, "renamed");
    let loss = fetched.data.metrics.iter().find(|point| point.key == "loss").unwrap();
    assert_eq!((loss.value, loss.step), (0.25, 1));
    assert!(
        fetched
            .data
            .metrics
            .iter()
            .find(|point| point.key == "nan")
            .unwrap()
            .value
            .is_nan()
    );
    assert_eq!(
        fetched
            .data
            .metrics
            .iter()
            .find(|point| point.key == "inf")
            .unwrap()
            .value,
        f64::INFINITY
    );
    assert_eq!(fetched.data.params, vec![Tag::new("lr", "0.1")]);
    let info = store
        .update_run(
            &run_id,
            &RunUpdate {
                status: Some("FINISHED".into()),
                end_time: Some(200),
                run_name: Some("final".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (info.status.as_str(), info.end_time, info.run_name.as_str()),
        ("FINISHED", Some(200), "final")
    );
    let first_page = store.metric_history(&run_id, "loss", &page(1, None)).await.unwrap();
    assert_eq!(first_page.items[0].value, 0.5);
    let second_page = store
        .metric_history(&run_id, "loss", &page(1, first_page.next_page_token))
        .await
        .unwrap();
    assert_eq!((second_page.items[0].value, second_page.next_page_token), (0.25, None));
    store.delete_run_tag(&run_id, "origin").await.unwrap();
    assert!(matches!(
        store.delete_run_tag(&run_id, "origin").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_run("0123456789abcdef0123456789abcdef").await,
        Err(StoreError::NotFound(_))
    ));
    let dataset = DatasetInput {
        tags: vec![Tag::new("mlflow.data.context", "training")],
        dataset: Dataset {
            name: "iris".into(),
            digest: "abc".into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    };
    store
        .log_inputs(
            &run_id,
            std::slice::from_ref(&dataset),
            &[ModelInput { model_id: "m-1".into() }],
        )
        .await
        .unwrap();
    store
        .log_inputs(&run_id, std::slice::from_ref(&dataset), &[])
        .await
        .unwrap();
    store
        .log_outputs(
            &run_id,
            &[ModelOutput {
                model_id: "m-2".into(),
                step: 3,
            }],
        )
        .await
        .unwrap();
    let with_io = store.get_run(&run_id).await.unwrap();
    assert_eq!(with_io.inputs.dataset_inputs, vec![dataset]);
    assert_eq!(with_io.inputs.model_inputs, vec![ModelInput { model_id: "m-1".into() }]);
    assert_eq!(
        with_io.outputs.model_outputs,
        vec![ModelOutput {
            model_id: "m-2".into(),
            step: 3
        }]
    );
}

pub async fn latest_metric_is_by_step_then_timestamp_then_value(store: &SqlStore) {
    let run_id = new_run(store, "0", "ordering", 1).await.info.run_id;
    for point in [
        metric("m", 5.0, 100, 3),
        metric("m", 1.0, 200, 2),
        metric("m", 7.0, 50, 3),
        metric("m", 9.0, 100, 3),
    ] {
        store
            .log_batch(
                &run_id,
                &LogBatch {
                    metrics: vec![point],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let latest = store.get_run(&run_id).await.unwrap().data.metrics;
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].step, latest[0].timestamp, latest[0].value), (3, 100, 9.0));
}

pub async fn sampled_history_keeps_each_interval_extremes(store: &SqlStore) {
    let run_id = new_run(store, "0", "charts", 1).await.info.run_id;
    let flat = new_run(store, "0", "flat", 1).await.info.run_id;
    for (run, spike) in [(&run_id, true), (&flat, false)] {
        for chunk in (0..1000i64).collect::<Vec<_>>().chunks(500) {
            let metrics = chunk
                .iter()
                .map(|step| {
                    let value = match (spike, step) {
                        (true, 537) => 50.0,
                        (true, 811) => -3.0,
                        (true, 812) => f64::NAN,
                        _ => 1.0,
                    };
                    metric("loss", value, 1000 + step, *step)
                })
                .collect();
            store
                .log_batch(
                    run,
                    &LogBatch {
                        metrics,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
    }
    let steps = |points: &[loopline_metadata_store::Metric]| points.iter().map(|p| p.step).collect::<Vec<_>>();
    // A constant history is sampled exactly as MLflow samples it.
    let even = store
        .metric_history_sampled(std::slice::from_ref(&flat), "loss", 10, None)
        .await
        .unwrap();
    assert_eq!(steps(&even), [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]);
    // The spike and the dip between sampled steps are kept; the NaN is not an extreme.
    let kept = store
        .metric_history_sampled(std::slice::from_ref(&run_id), "loss", 10, None)
        .await
        .unwrap();
    assert_eq!(
        steps(&kept),
        [0, 100, 200, 300, 400, 500, 537, 600, 700, 800, 811, 900, 999]
    );
    assert_eq!(kept.iter().find(|p| p.step == 537).unwrap().value, 50.0);
    assert_eq!(kept.iter().find(|p| p.step == 811).unwrap().value, -3.0);
    // Within a range, the same.
    let ranged = store
        .metric_history_sampled(std::slice::from_ref(&run_id), "loss", 4, Some((500, 899)))
        .await
        .unwrap();
    assert!(
        steps(&ranged).contains(&537) && steps(&ranged).contains(&811),
        "{:?}",
        steps(&ranged)
    );
}

/// More runs than the planner reads directly, so a page ordered by a metric is read from that metric's index:
/// the pages must be exactly what sorting every matching run gives (runs without the metric, or with NaN,
/// after the others), page after page.
pub async fn a_metric_ordered_search_over_many_runs_pages_like_a_full_sort(store: &SqlStore) {
    let experiment = store.create_experiment("many-runs", None, &[]).await.unwrap();
    let mut expected: Vec<(Option<f64>, i64, String, bool)> = Vec::new();
    for index in 0..2_600i64 {
        let run_id = new_run(store, &experiment, &format!("run-{index}"), 1_000 + index % 700)
            .await
            .info
            .run_id;
        let value = match index {
            _ if index % 10 == 0 => None,
            _ if index % 15 == 0 => Some(f64::NAN),
            _ => Some(((index * 7_919) % 2_600) as f64 / 2_600.0),
        };
        let batch = LogBatch {
            metrics: value.map(|v| vec![metric("acc", v, 1, 0)]).unwrap_or_default(),
            params: vec![Tag::new("model", if index % 3 == 0 { "xgb" } else { "rf" })],
            tags: vec![],
        };
        store.log_batch(&run_id, &batch).await.unwrap();
        let matches_filter = index % 3 != 0;
        expected.push((
            value.filter(|v| !v.is_nan()),
            1_000 + index % 700,
            run_id,
            matches_filter,
        ));
    }
    let order = |ascending: bool, rows: &mut Vec<(Option<f64>, i64, String, bool)>| {
        rows.sort_by(|a, b| {
            let by_value = match (a.0, b.0) {
                (Some(x), Some(y)) if ascending => x.total_cmp(&y),
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_value.then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2))
        });
    };
    // Every clause matches more than 2,000 rows, so none drives and the metric's index does. A clause on the
    // ordering metric is checked on the row read from its index, inside OR too.
    type Case = (
        Option<&'static str>,
        bool,
        fn(&(Option<f64>, i64, String, bool)) -> bool,
    );
    let cases: [Case; 3] = [
        (Some("params.model LIKE 'r%' and metrics.acc >= 0"), false, |row| {
            row.3 && row.0.is_some_and(|v| v >= 0.0)
        }),
        (None, true, |_| true),
        (
            Some("metrics.acc < 0.25 or (metrics.acc > 0.75 and params.model = 'rf')"),
            false,
            |row| row.0.is_some_and(|v| v < 0.25 || (v > 0.75 && row.3)),
        ),
    ];
    for (filter, ascending, wanted_row) in cases {
        let mut rows: Vec<_> = expected.iter().filter(|row| wanted_row(row)).cloned().collect();
        order(ascending, &mut rows);
        let wanted: Vec<String> = rows.iter().map(|row| row.2.clone()).collect();
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let result = store
                .search_runs(&RunSearch {
                    experiment_ids: vec![experiment.clone()],
                    filter: filter.map(str::to_string),
                    order_by: vec![format!("metrics.acc {}", if ascending { "ASC" } else { "DESC" })],
                    page: page(500, token.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
            found.extend(result.items.into_iter().map(|run| run.info.run_id));
            token = result.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(found.len(), wanted.len(), "{filter:?}");
        assert!(found == wanted, "{filter:?}: the pages differ from a full sort");
    }
}

pub async fn params_are_immutable_and_batches_idempotent(store: &SqlStore) {
    let run_id = new_run(store, "0", "params", 1).await.info.run_id;
    let batch = LogBatch {
        metrics: vec![metric("m", 1.0, 1, 1)],
        params: vec![Tag::new("p", "1")],
        tags: vec![],
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    store.log_batch(&run_id, &batch).await.unwrap();
    assert_eq!(
        store
            .metric_history(&run_id, "m", &page(100, None))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let changed = LogBatch {
        params: vec![Tag::new("p", "2")],
        ..Default::default()
    };
    let error = store.log_batch(&run_id, &changed).await.unwrap_err();
    assert!(
        error.to_string().contains("Changing param values is not allowed"),
        "{error}"
    );
    let mixed = LogBatch {
        metrics: vec![metric("after", 1.0, 1, 1)],
        params: vec![Tag::new("p", "3")],
        tags: vec![],
    };
    assert!(store.log_batch(&run_id, &mixed).await.is_err());
    assert!(
        store
            .metric_history(&run_id, "after", &page(10, None))
            .await
            .unwrap()
            .items
            .is_empty(),
        "a refused batch must leave nothing behind"
    );
}

pub async fn deleted_runs_refuse_writes(store: &SqlStore) {
    let run_id = new_run(store, "0", "doomed", 1).await.info.run_id;
    store.set_run_lifecycle(&run_id, LifecycleStage::Deleted).await.unwrap();
    let error = store
        .log_batch(
            &run_id,
            &LogBatch {
                tags: vec![Tag::new("a", "b")],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidParameter(_)), "{error}");
    let hidden = store
        .search_runs(&RunSearch {
            experiment_ids: vec!["0".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(hidden.items.iter().all(|run| run.info.run_id != run_id));
    store.set_run_lifecycle(&run_id, LifecycleStage::Active).await.unwrap();
    store
        .log_batch(
            &run_id,
            &LogBatch {
                tags: vec![Tag::new("a", "b")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

pub async fn run_search_filters_order_and_pages(store: &SqlStore) {
    let experiment_id = store.create_experiment("search", None, &[]).await.unwrap();
    let mut run_ids = Vec::new();
    for index in 0..10i64 {
        let run_id = new_run(store, &experiment_id, &format!("r{index}"), 1000 + index)
            .await
            .info
            .run_id;
        let mut metrics = vec![metric("acc", index as f64 / 10.0, 1, 0)];
        if index % 2 == 1 {
            metrics.push(metric("loss", 1.0 - index as f64 / 10.0, 1, 0));
        }
        let params = vec![Tag::new("model", if index % 3 == 0 { "rf" } else { "lr" })];
        let tags = vec![Tag::new("team", if index < 5 { "a" } else { "b" })];
        store
            .log_batch(&run_id, &LogBatch { metrics, params, tags })
            .await
            .unwrap();
        run_ids.push(run_id);
    }
    let search = |filter: &str, order_by: Vec<&str>| RunSearch {
        experiment_ids: vec![experiment_id.clone()],
        filter: Some(filter.to_string()),
        order_by: order_by.into_iter().map(String::from).collect(),
        page: page(100, None),
        ..Default::default()
    };
    let names = |runs: Page<Run>| runs.items.into_iter().map(|run| run.info.run_name).collect::<Vec<_>>();
    let found = store
        .search_runs(&search(
            "metrics.acc >= 0.5 AND params.model = 'rf' AND tags.team = 'b'",
            vec!["metrics.acc DESC"],
        ))
        .await
        .unwrap();
    assert_eq!(names(found), ["r9", "r6"]);
    let found = store
        .search_runs(&search(
            "params.model = 'rf' OR tags.team = 'a'",
            vec!["start_time ASC"],
        ))
        .await
        .unwrap();
    assert_eq!(names(found), ["r0", "r1", "r2", "r3", "r4", "r6", "r9"]);
    let found = store.search_runs(&search("tags.team LIKE 'A'", vec![])).await.unwrap();
    assert!(found.items.is_empty(), "LIKE is case-sensitive");
    assert_eq!(
        store
            .search_runs(&search("tags.team ILIKE 'A'", vec![]))
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    assert_eq!(
        store
            .search_runs(&search("attributes.run_name = 'r3'", vec![]))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .search_runs(&search("tags.absent IS NULL", vec![]))
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    let listed = format!("attributes.run_id IN ('{}', '{}')", run_ids[0], run_ids[1]);
    assert_eq!(
        store.search_runs(&search(&listed, vec![])).await.unwrap().items.len(),
        2
    );
    for direction in ["ASC", "DESC"] {
        let ordered = store
            .search_runs(&search("", vec![&format!("metrics.loss {direction}")]))
            .await
            .unwrap();
        let has_loss: Vec<bool> = ordered
            .items
            .iter()
            .map(|run| run.data.metrics.iter().any(|point| point.key == "loss"))
            .collect();
        assert_eq!(has_loss, [vec![true; 5], vec![false; 5]].concat(), "{direction}");
    }
    let default_order = store.search_runs(&search("", vec![])).await.unwrap();
    assert_eq!(default_order.items[0].info.run_name, "r9", "newest start_time first");
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let mut paged = search("", vec![]);
        paged.page = page(3, token);
        let result = store.search_runs(&paged).await.unwrap();
        seen.extend(result.items.into_iter().map(|run| run.info.run_id));
        token = result.next_page_token;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    run_ids.sort();
    assert_eq!(seen, run_ids);
    for bad in [
        "metrics.acc >> 1",
        "params.model = 1",
        "nonsense.x = 'y'",
        "attributes.bogus = 'x'",
    ] {
        assert!(
            matches!(
                store.search_runs(&search(bad, vec![])).await,
                Err(StoreError::InvalidParameter(_))
            ),
            "{bad}"
        );
    }
}

/// Batches written at once, some of them refused (a changed param): each accepted one is whole, each
/// refused one leaves nothing, whichever of them share a transaction.
pub async fn concurrent_batches_to_one_run(store: &SqlStore) {
    let run_id = new_run(store, "0", "shared", 1).await.info.run_id;
    let fixed = LogBatch {
        params: vec![Tag::new("fixed", "x")],
        ..Default::default()
    };
    store.log_batch(&run_id, &fixed).await.unwrap();
    let refused = |writer: i64| writer % 5 == 3;
    let store_ref = store;
    let writers = (0..16i64).map(|writer| {
        let run_id = run_id.clone();
        async move {
            let metrics = (0..50)
                .map(|step| metric(&format!("w{writer}"), step as f64, 1, step))
                .collect();
            let value = if refused(writer) { "changed" } else { "x" };
            let batch = LogBatch {
                metrics,
                params: vec![Tag::new("fixed", value)],
                tags: vec![Tag::new(format!("t{writer}"), "set")],
            };
            store_ref.log_batch(&run_id, &batch).await
        }
    });
    for (writer, result) in futures::future::join_all(writers).await.into_iter().enumerate() {
        assert_eq!(result.is_err(), refused(writer as i64), "writer {writer}: {result:?}");
    }
    let run = store.get_run(&run_id).await.unwrap();
    for writer in 0..16 {
        let points = store
            .metric_history(&run_id, &format!("w{writer}"), &page(1000, None))
            .await
            .unwrap()
            .items
            .len();
        let tagged = run.data.tags.iter().any(|tag| tag.key == format!("t{writer}"));
        if refused(writer) {
            assert_eq!(
                (points, tagged),
                (0, false),
                "writer {writer} was refused but left rows"
            );
        } else {
            assert_eq!(
                (points, tagged),
                (50, true),
                "writer {writer} was accepted but lost rows"
            );
        }
    }
}

pub async fn logged_models_and_linked_metrics(store: &SqlStore) {
    let run_id = new_run(store, "0", "producer", 1).await.info.run_id;
    let model = store
        .create_logged_model(&NewLoggedModel {
            experiment_id: "0".into(),
            name: "model".into(),
            source_run_id: Some(run_id.clone()),
            params: vec![Tag::new("C", "1.0")],
            tags: vec![Tag::new("flavor", "sklearn")],
            model_type: String::new(),
        })
        .await
        .unwrap();
    let model_id = model.info.model_id.clone();
    assert!(model_id.starts_with("m-"));
    assert_eq!(model.info.status, "LOGGED_MODEL_PENDING");
    assert_eq!(
        model.info.artifact_uri,
        format!("mlflow-artifacts:/0/models/{model_id}/artifacts")
    );
    let mut linked = metric("acc", 0.9, 5, 0);
    linked.model_id = Some(model_id.clone());
    store
        .log_batch(
            &run_id,
            &LogBatch {
                metrics: vec![linked],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ready = store
        .set_logged_model_status(&model_id, "LOGGED_MODEL_READY")
        .await
        .unwrap();
    assert_eq!(ready.info.status, "LOGGED_MODEL_READY");
    assert_eq!(ready.data.metrics[0].run_id.as_deref(), Some(run_id.as_str()));
    store
        .set_logged_model_tags(&model_id, &[Tag::new("extra", "1")])
        .await
        .unwrap();
    store.delete_logged_model_tag(&model_id, "flavor").await.unwrap();
    assert_eq!(
        store.get_logged_model(&model_id).await.unwrap().info.tags,
        vec![Tag::new("extra", "1")]
    );
    let search = |filter: &str| LoggedModelSearch {
        experiment_ids: vec!["0".into()],
        filter: Some(filter.into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .search_logged_models(&search("name = 'model'"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .search_logged_models(&search("metrics.acc > 0.5"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        store
            .search_logged_models(&search("name = 'other'"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    store.delete_logged_model(&model_id).await.unwrap();
    assert!(matches!(
        store.get_logged_model(&model_id).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn registry_versions_stages_aliases(store: &SqlStore) {
    store
        .create_registered_model("clf", &[Tag::new("team", "a")], "first")
        .await
        .unwrap();
    assert!(matches!(
        store.create_registered_model("clf", &[], "").await,
        Err(StoreError::AlreadyExists(_))
    ));
    let new_version = |source: &str| NewModelVersion {
        name: "clf".into(),
        source: source.into(),
        storage_location: source.into(),
        ..Default::default()
    };
    assert_eq!(
        store
            .create_model_version(&new_version("runs:/a/model"))
            .await
            .unwrap()
            .version,
        "1"
    );
    assert_eq!(
        store
            .create_model_version(&new_version("runs:/b/model"))
            .await
            .unwrap()
            .version,
        "2"
    );
    store
        .transition_model_version_stage("clf", 1, "Production", false)
        .await
        .unwrap();
    store
        .transition_model_version_stage("clf", 2, "Production", true)
        .await
        .unwrap();
    assert_eq!(
        store.get_model_version("clf", 1).await.unwrap().current_stage,
        "Archived"
    );
    let latest = store.get_latest_versions("clf", &["Production".into()]).await.unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|version| version.version.as_str())
            .collect::<Vec<_>>(),
        ["2"]
    );
    // `latest` is the newest version, as MLflow resolves it (`models:/clf@latest`, `load_prompt(name)`).
    assert_eq!(
        store.get_model_version_by_alias("clf", "LATEST").await.unwrap().version,
        "2"
    );
    store.set_alias("clf", "champion", 2).await.unwrap();
    assert_eq!(
        store
            .get_model_version_by_alias("clf", "champion")
            .await
            .unwrap()
            .aliases,
        vec!["champion".to_string()]
    );
    assert!(matches!(
        store.set_alias("clf", "ghost", 9).await,
        Err(StoreError::NotFound(_))
    ));
    let model = store.get_registered_model("clf").await.unwrap();
    assert_eq!(
        model.aliases,
        vec![AliasEntry {
            alias: "champion".into(),
            version: "2".into()
        }]
    );
    store.delete_model_version("clf", 2).await.unwrap();
    assert!(matches!(
        store.get_model_version_by_alias("clf", "champion").await,
        Err(StoreError::InvalidParameter(_))
    ));
    assert_eq!(
        store
            .create_model_version(&new_version("runs:/c/model"))
            .await
            .unwrap()
            .version,
        "3"
    );
    store
        .set_model_version_tag("clf", 3, &Tag::new("ok", "yes"))
        .await
        .unwrap();
    assert_eq!(
        store.get_model_version("clf", 3).await.unwrap().tags,
        vec![Tag::new("ok", "yes")]
    );
}

pub async fn registry_rename_and_search(store: &SqlStore) {
    store.create_registered_model("old", &[], "").await.unwrap();
    store
        .create_registered_model("prompt", &[Tag::new("mlflow.prompt.is_prompt", "true")], "")
        .await
        .unwrap();
    store
        .create_model_version(&NewModelVersion {
            name: "old".into(),
            source: "runs:/a/m".into(),
            tags: vec![Tag::new("t", "1")],
            ..Default::default()
        })
        .await
        .unwrap();
    store.set_alias("old", "live", 1).await.unwrap();
    store.rename_registered_model("old", "new").await.unwrap();
    let version = store.get_model_version("new", 1).await.unwrap();
    assert_eq!((version.tags.len(), version.aliases.len()), (1, 1));
    assert!(matches!(
        store.get_registered_model("old").await,
        Err(StoreError::NotFound(_))
    ));
    let search = |filter: &str| RegistrySearch {
        filter: Some(filter.into()),
        ..Default::default()
    };
    let found = store
        .search_registered_models(&search("name LIKE '%' AND tag.`mlflow.prompt.is_prompt` != 'true'"))
        .await
        .unwrap();
    assert_eq!(
        found.items.iter().map(|model| model.name.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    let versions = store
        .search_model_versions(&search("name = 'new' AND tags.t = '1'"))
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 1);
    store.delete_registered_model("new").await.unwrap();
    assert!(
        store
            .search_model_versions(&search("name = 'new'"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn traces_round_trip(store: &SqlStore) {
    for (index, trace_id) in ["tr-1", "tr-2"].iter().enumerate() {
        let source_run = if index == 0 { "run-a" } else { "run-b" };
        store
            .start_trace(&NewTrace {
                trace_id: trace_id.to_string(),
                experiment_id: "0".into(),
                timestamp_ms: 1000 + index as i64,
                execution_time_ms: 5,
                state: "OK".into(),
                trace_info: serde_json::json!({
                    "trace_id": trace_id,
                    "tags": {"mlflow.traceName": format!("name-{index}")},
                    "trace_metadata": {"mlflow.sourceRun": source_run},
                }),
            })
            .await
            .unwrap();
    }
    store.set_trace_tag("tr-1", &Tag::new("k", "v")).await.unwrap();
    assert_eq!(store.get_trace_info("tr-1").await.unwrap()["tags"]["k"], "v");
    let search = |filter: &str| TraceSearch {
        experiment_ids: vec!["0".into()],
        filter: Some(filter.into()),
        ..Default::default()
    };
    let ids = |page: Page<serde_json::Value>| {
        page.items
            .iter()
            .map(|info| info["trace_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.search_traces(&search("tag.k = 'v'")).await.unwrap()),
        ["tr-1"]
    );
    assert_eq!(
        ids(store
            .search_traces(&search("tags.`mlflow.traceName` LIKE 'name-%'"))
            .await
            .unwrap()),
        ["tr-2", "tr-1"]
    );
    assert_eq!(
        ids(store
            .search_traces(&search("metadata.`mlflow.sourceRun` = 'run-b'"))
            .await
            .unwrap()),
        ["tr-2"]
    );
    assert_eq!(
        ids(store
            .search_traces(&search("attribute.run_id = 'run-a'"))
            .await
            .unwrap()),
        ["tr-1"]
    );
    assert_eq!(
        ids(store
            .search_traces(&search("timestamp_ms > 1000 AND status = 'OK'"))
            .await
            .unwrap()),
        ["tr-2"]
    );
    assert!(matches!(
        store.search_traces(&search("metrics.loss > 1")).await,
        Err(StoreError::InvalidParameter(_))
    ));
    store.delete_trace_tag("tr-1", "k").await.unwrap();
    assert!(store.get_trace_info("tr-1").await.unwrap()["tags"].get("k").is_none());
    let feedback = serde_json::json!({"assessment_id": "a-1", "assessment_name": "good", "feedback": {"value": true}});
    store.add_trace_assessment("tr-1", &feedback).await.unwrap();
    assert_eq!(
        store.get_trace_info("tr-1").await.unwrap()["assessments"],
        serde_json::json!([feedback])
    );
    assert!(matches!(
        store.add_trace_assessment("tr-404", &feedback).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .search_traces(&search("tag.k = 'v'"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "the searchable tags follow deletions"
    );
    let found = store
        .search_traces(&TraceSearch {
            experiment_ids: vec!["0".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.items[0]["trace_id"], "tr-2", "newest first");
    assert_eq!(store.delete_traces("0", &["tr-1".into()], None, None).await.unwrap(), 1);
    assert_eq!(store.delete_traces("0", &[], Some(5000), Some(10)).await.unwrap(), 1);
    assert!(matches!(
        store.get_trace_info("tr-2").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .search_traces(&search("attribute.run_id = 'run-b'"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn sealed_versions_are_found_by_artifact_path(store: &SqlStore) {
    store.create_registered_model("sealed", &[], "").await.unwrap();
    let version = store
        .create_model_version(&NewModelVersion {
            name: "sealed".into(),
            source: "mlflow-artifacts:/1/run_a/artifacts/model".into(),
            storage_location: "mlflow-artifacts:/1/run_a/artifacts/model".into(),
            content_digest: Some("sha256:00".into()),
            sealed_path: Some("1/run_a/artifacts/model".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(version.content_digest.as_deref(), Some("sha256:00"));
    let fetched = store.get_model_version("sealed", 1).await.unwrap();
    assert_eq!(fetched.content_digest.as_deref(), Some("sha256:00"));
    let found = Some(("sealed".to_string(), 1));
    for inside in [
        "1/run_a/artifacts/model",
        "1/run_a/artifacts/model/model.pkl",
        "1/run_a/artifacts/model/data/x",
    ] {
        assert_eq!(store.sealed_version_at(inside, false).await.unwrap(), found, "{inside}");
    }
    for outside in [
        "1/run_a/artifacts/model2",
        "1/run_a/artifacts/other.txt",
        "2/run_a/artifacts/model",
    ] {
        assert_eq!(store.sealed_version_at(outside, true).await.unwrap(), None, "{outside}");
    }
    // Deleting a directory that holds the version is refused; writing next to it is not.
    assert_eq!(store.sealed_version_at("1/run_a", false).await.unwrap(), None);
    assert_eq!(store.sealed_version_at("1/run_a", true).await.unwrap(), found);
    assert_eq!(store.sealed_version_at("1", true).await.unwrap(), found);
    assert_eq!(store.sealed_version_at("", true).await.unwrap(), found);
    store
        .record_model_version_digest("sealed", 1, "sha256:11")
        .await
        .unwrap();
    let kept = store.get_model_version("sealed", 1).await.unwrap();
    assert_eq!(
        kept.content_digest.as_deref(),
        Some("sha256:00"),
        "a recorded digest is never replaced"
    );
    store.delete_model_version("sealed", 1).await.unwrap();
    assert_eq!(
        store
            .sealed_version_at("1/run_a/artifacts/model/model.pkl", true)
            .await
            .unwrap(),
        None
    );
}

pub async fn spans_make_and_finish_their_trace(store: &SqlStore) {
    let batch = |spans: &[(&str, bool, i64)], end_ms: i64, root_state: Option<&str>| SpanBatch {
        trace: NewTrace {
            trace_id: "tr-spans".into(),
            experiment_id: "0".into(),
            timestamp_ms: spans.iter().map(|s| s.2).min().unwrap(),
            execution_time_ms: 0,
            state: "IN_PROGRESS".into(),
            trace_info: serde_json::json!({
                "trace_id": "tr-spans",
                "state": "IN_PROGRESS",
                "tags": {"mlflow.traceName": "root"},
            }),
        },
        end_ms: Some(end_ms),
        root_state: root_state.map(str::to_string),
        spans: spans
            .iter()
            .map(|(id, root, start)| NewSpan {
                trace_id: "tr-spans".into(),
                span_id: id.to_string(),
                start_ns: start * 1_000_000,
                content: if *root {
                    serde_json::json!({"name": id})
                } else {
                    serde_json::json!({"name": id, "parent_span_id": "AQ=="})
                },
            })
            .collect(),
    };
    store
        .log_spans(vec![batch(&[("child", false, 150)], 170, None)])
        .await
        .unwrap();
    let open = store.get_trace_info("tr-spans").await.unwrap();
    assert_eq!(open["state"], "IN_PROGRESS");
    assert_eq!(open["tags"]["mlflow.trace.spansLocation"], "TRACKING_STORE");
    store
        .log_spans(vec![batch(&[("root", true, 100)], 200, Some("ERROR"))])
        .await
        .unwrap();
    // The same span again replaces itself.
    store
        .log_spans(vec![batch(&[("child", false, 150)], 170, None)])
        .await
        .unwrap();
    let done = store.get_trace_info("tr-spans").await.unwrap();
    assert_eq!(
        (done["state"].as_str(), done["execution_duration"].as_str()),
        (Some("ERROR"), Some("0.100s"))
    );
    let names: Vec<String> = store
        .get_trace_spans("tr-spans")
        .await
        .unwrap()
        .iter()
        .map(|span| span["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["root", "child"]);
    // The client finishing the trace keeps where its spans are; deleting it removes them.
    store
        .start_trace(&NewTrace {
            trace_id: "tr-spans".into(),
            experiment_id: "0".into(),
            timestamp_ms: 100,
            execution_time_ms: 100,
            state: "OK".into(),
            trace_info: serde_json::json!({"trace_id": "tr-spans", "state": "OK", "tags": {}}),
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_trace_info("tr-spans").await.unwrap()["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    // Spans arriving after that fold into the finished trace and keep its tags, metadata and assessments
    // searchable.
    store
        .set_trace_tag("tr-spans", &Tag::new("team", "search"))
        .await
        .unwrap();
    let feedback = serde_json::json!({"assessment_id": "a-s", "assessment_name": "good", "feedback": {"value": true}});
    store.add_trace_assessment("tr-spans", &feedback).await.unwrap();
    let mut late = batch(&[("late", false, 180)], 190, None);
    late.trace.trace_info["trace_metadata"] = serde_json::json!({"mlflow.sourceRun": "run-s"});
    store.log_spans(vec![late]).await.unwrap();
    let search = |filter: &str| TraceSearch {
        experiment_ids: vec!["0".into()],
        filter: Some(filter.into()),
        ..Default::default()
    };
    for filter in [
        "tag.team = 'search'",
        "metadata.`mlflow.sourceRun` = 'run-s'",
        "feedback.good = 'true'",
    ] {
        let found = store.search_traces(&search(filter)).await.unwrap();
        assert_eq!(found.items.len(), 1, "{filter}");
        assert_eq!(found.items[0]["assessments"], serde_json::json!([feedback]), "{filter}");
        assert_eq!(found.items[0]["state"], "OK", "{filter}");
    }
    // Spans of the trace sent to another experiment are refused, and nothing of them is kept.
    let elsewhere = store.create_experiment("spans elsewhere", None, &[]).await.unwrap();
    let mut moved = batch(&[("moved", false, 160)], 170, None);
    moved.trace.experiment_id = elsewhere;
    assert!(matches!(
        store.log_spans(vec![moved]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_trace_spans("tr-spans").await.unwrap().len(), 3);
    store
        .delete_traces("0", &["tr-spans".to_string()], None, None)
        .await
        .unwrap();
    assert!(store.get_trace_spans("tr-spans").await.unwrap().is_empty());
    // All or nothing: a batch for a missing experiment leaves the other batch of the call unwritten too.
    let orphan = SpanBatch {
        trace: NewTrace {
            experiment_id: "404".into(),
            trace_id: "tr-orphan".into(),
            ..batch(&[("x", true, 1)], 2, None).trace
        },
        ..batch(&[("x", true, 1)], 2, None)
    };
    let mut fine = batch(&[("y", true, 1)], 2, None);
    fine.trace.trace_id = "tr-fine".into();
    assert!(store.log_spans(vec![fine, orphan]).await.is_err());
    assert!(store.get_trace_info("tr-fine").await.is_err());
}

pub async fn evaluation_datasets_keep_one_record_per_inputs(store: &SqlStore) {
    let dataset =
        serde_json::json!({"dataset_id": "d-1", "name": "qa", "created_time": 1, "last_update_time": 1, "tags": {}});
    store.create_eval_dataset(&dataset, &["0".to_string()]).await.unwrap();
    assert!(store.create_eval_dataset(&dataset, &[]).await.is_err());
    let record = |id: &str, key: &str, answer: &str| EvalRecord {
        input_key: key.into(),
        document: serde_json::json!({"dataset_record_id": id, "inputs": {"q": key}, "expectations": {"a": answer}, "created_time": 5}),
    };
    fn merge(stored: &mut serde_json::Value, new: &serde_json::Value) {
        stored["expectations"] = new["expectations"].clone();
    }
    struct Count(usize);
    impl RecordSummary for Count {
        fn add(&mut self, _record: &serde_json::Value) {
            self.0 += 1;
        }
        fn finish(self: Box<Self>, dataset: &mut serde_json::Value) {
            dataset["profile"] = serde_json::json!({"num_records": self.0});
        }
    }
    let count = || -> DatasetFinish { Box::new(Count(0)) };
    let (inserted, updated) = store
        .upsert_eval_records(
            "d-1",
            vec![record("dr-1", "k1", "x"), record("dr-2", "k2", "y")],
            merge,
            count(),
        )
        .await
        .unwrap();
    assert_eq!((inserted, updated), (2, 0));
    let (inserted, updated) = store
        .upsert_eval_records("d-1", vec![record("dr-3", "k1", "z")], merge, count())
        .await
        .unwrap();
    assert_eq!((inserted, updated), (0, 1));
    // A write that fails leaves its transaction to be rolled back after the call returns; the next writer waits
    // for it rather than failing with "database is locked" (this raced on SQLite before writes began IMMEDIATE).
    for _ in 0..25 {
        assert!(store.create_eval_dataset(&dataset, &[]).await.is_err());
        store
            .upsert_eval_records("d-1", vec![record("dr-3", "k1", "z")], merge, count())
            .await
            .unwrap();
    }
    let records = store
        .get_eval_records("d-1", &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["expectations"]["a"], "z");
    let fetched = store.get_eval_dataset("d-1").await.unwrap();
    assert_eq!(fetched["profile"]["num_records"], 2);
    // The summary reads the records a page at a time; records made at the same instant are each seen once.
    let many: Vec<EvalRecord> = (0..2_500)
        .map(|n| record(&format!("dr-many-{n:05}"), &format!("many-{n}"), "m"))
        .collect();
    store.upsert_eval_records("d-1", many, merge, count()).await.unwrap();
    assert_eq!(
        store.get_eval_dataset("d-1").await.unwrap()["profile"]["num_records"],
        2_502
    );
    let doomed: Vec<String> = (0..2_500).map(|n| format!("dr-many-{n:05}")).collect();
    assert_eq!(store.delete_eval_records("d-1", &doomed, count()).await.unwrap(), 2_500);
    assert_eq!(
        store.get_eval_dataset("d-1").await.unwrap()["profile"]["num_records"],
        2
    );
    assert_eq!(fetched["experiment_ids"], serde_json::json!(["0"]));
    let found = store
        .search_eval_datasets(&EvalDatasetSearch {
            filter: Some("name LIKE 'q%'".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    // Tags and authors are searched as MLflow searches them; a dataset without the tag matches neither = nor !=.
    let tagged = serde_json::json!({"dataset_id": "d-2", "name": "tagged", "created_time": 2, "last_update_time": 2,
        "created_by": "ann", "tags": {"team": "ml", "odd 'key\"": "v"}});
    store.create_eval_dataset(&tagged, &[]).await.unwrap();
    let names = |filter: &str| {
        let filter = filter.to_string();
        async move {
            store
                .search_eval_datasets(&EvalDatasetSearch {
                    filter: Some(filter),
                    ..Default::default()
                })
                .await
                .map(|page| {
                    page.items
                        .iter()
                        .map(|d| d["name"].as_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                })
        }
    };
    assert_eq!(names("tags.team = 'ml'").await.unwrap(), ["tagged"]);
    assert_eq!(names("tags.team != 'ml'").await.unwrap(), Vec::<String>::new());
    assert_eq!(
        names("tags.team ILIKE 'M%' AND created_by = 'ann'").await.unwrap(),
        ["tagged"]
    );
    assert_eq!(names("tags.`odd 'key\"` = 'v'").await.unwrap(), ["tagged"]);
    assert_eq!(names("last_updated_by = 'bob'").await.unwrap(), Vec::<String>::new());
    assert!(names("tags.team > 'a'").await.is_err());
    assert_eq!(names("name IN ('tagged', 'other')").await.unwrap(), ["tagged"]);
    assert!(names("tags.`` = 'a'").await.is_err());
    assert!(names("metric.x = 1").await.is_err());
    store.delete_eval_dataset("d-2").await.unwrap();
    assert_eq!(
        store
            .delete_eval_records("d-1", &["dr-2".to_string()], count())
            .await
            .unwrap(),
        1
    );
    store.delete_eval_dataset("d-1").await.unwrap();
    assert!(store.get_eval_dataset("d-1").await.is_err());
    assert!(store.get_eval_records("d-1", &PageRequest::default()).await.is_err());
}

pub async fn scorers_are_versioned_per_experiment_and_name(store: &SqlStore) {
    let first = store.register_scorer("0", "polite", "{\"v\":1}").await.unwrap();
    let second = store.register_scorer("0", "polite", "{\"v\":2}").await.unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert_eq!(first.scorer_id, second.scorer_id);
    assert!(store.register_scorer("404", "polite", "{}").await.is_err());
    let listed = store.list_scorers(&[]).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.version).collect::<Vec<_>>(), [2]);
    assert_eq!(store.scorer_versions("0", "polite").await.unwrap().len(), 2);
    assert_eq!(
        store.get_scorer("0", "polite", Some(1)).await.unwrap().serialized,
        "{\"v\":1}"
    );
    // By id (what a gateway guardrail names), with MLflow's words when missing.
    assert_eq!(
        store.scorer_by_id(&first.scorer_id, 2).await.unwrap().serialized,
        "{\"v\":2}"
    );
    let missing = store.scorer_by_id(&first.scorer_id, 9).await.unwrap_err().to_string();
    assert!(
        missing.contains(&format!(
            "Scorer with ID '{}' and version 9 not found.",
            first.scorer_id
        )),
        "{missing}"
    );
    let unknown = store.scorer_by_id("missing-scorer", 1).await.unwrap_err().to_string();
    assert!(
        unknown.contains("Scorer with ID 'missing-scorer' not found."),
        "{unknown}"
    );
    store.delete_scorer("0", "polite", Some(2)).await.unwrap();
    assert_eq!(store.get_scorer("0", "polite", None).await.unwrap().version, 1);
    store.delete_scorer("0", "polite", None).await.unwrap();
    assert!(store.get_scorer("0", "polite", None).await.is_err());
    assert!(store.delete_scorer("0", "polite", None).await.is_err());
}
