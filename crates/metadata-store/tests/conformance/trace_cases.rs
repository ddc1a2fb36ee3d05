//! Trace search over spans and assessments, token usage summed from spans, issues, and registry webhooks.

use loopline_metadata_store::*;
use serde_json::json;

fn attribute(key: &str, value: serde_json::Value) -> serde_json::Value {
    json!({"key": key, "value": value})
}

fn span(trace_id: &str, id: &str, parent: Option<&str>, name: &str, attributes: Vec<serde_json::Value>) -> NewSpan {
    let mut content = json!({"name": name, "span_id": id, "status": {"code": "STATUS_CODE_OK"},
        "start_time_unix_nano": 100_000_000, "end_time_unix_nano": 200_000_000, "attributes": attributes});
    if let Some(parent) = parent {
        content["parent_span_id"] = json!(parent);
    }
    NewSpan {
        trace_id: trace_id.into(),
        span_id: id.into(),
        start_ns: 100_000_000,
        content,
    }
}

fn usage(input: i64, output: i64) -> serde_json::Value {
    attribute(
        "mlflow.chat.tokenUsage",
        json!({"kvlist_value": {"values": [
            {"key": "input_tokens", "value": {"int_value": input}},
            {"key": "output_tokens", "value": {"int_value": output}}]}}),
    )
}

async fn found(store: &SqlStore, filter: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .search_traces(&TraceSearch {
            experiment_ids: vec!["0".into()],
            filter: Some(filter.into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("{filter}: {error}"))
        .items
        .iter()
        .map(|info| info["trace_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn trace(trace_id: &str, assessments: serde_json::Value) -> NewTrace {
    NewTrace {
        trace_id: trace_id.into(),
        experiment_id: "0".into(),
        timestamp_ms: 100,
        execution_time_ms: 100,
        state: "OK".into(),
        trace_info: json!({"trace_id": trace_id, "state": "OK", "tags": {"mlflow.traceName": trace_id},
            "trace_metadata": {}, "assessments": assessments}),
    }
}

pub async fn traces_are_found_by_spans_assessments_and_issues(store: &SqlStore) {
    store
        .start_trace(&trace(
            "tr-a",
            json!([
                {"assessment_id": "a-1", "assessment_name": "correct", "feedback": {"value": "yes"}},
                {"assessment_id": "a-2", "assessment_name": "score", "feedback": {"value": 0.75}},
                {"assessment_id": "a-3", "assessment_name": "answer", "expectation": {"value": "42"}},
                {"assessment_id": "a-4", "assessment_name": "iss-1", "issue": {"issue_name": "slow"}},
            ]),
        ))
        .await
        .unwrap();
    store
        .start_trace(&trace(
            "tr-b",
            json!([
                {"assessment_id": "b-1", "assessment_name": "correct", "feedback": {"value": "no"}},
                {"assessment_id": "b-2", "assessment_name": "score", "feedback": {"value": 0.25}},
                {"assessment_id": "b-3", "assessment_name": "answer", "expectation": {"value": "7"}, "valid": false},
            ]),
        ))
        .await
        .unwrap();
    let spans = vec![
        span(
            "tr-a",
            "AAAAAAAAAAE=",
            None,
            "agent",
            vec![
                attribute("mlflow.spanType", json!({"string_value": "CHAIN"})),
                usage(10, 10),
            ],
        ),
        span(
            "tr-a",
            "AAAAAAAAAAI=",
            Some("AAAAAAAAAAE="),
            "llm",
            vec![
                attribute("mlflow.spanType", json!({"string_value": "LLM"})),
                attribute("mlflow.llm.model", json!({"string_value": "gpt-4o"})),
                usage(3, 2),
            ],
        ),
        span(
            "tr-a",
            "AAAAAAAAAAM=",
            Some("AAAAAAAAAAE="),
            "tool",
            vec![
                attribute("mlflow.spanType", json!({"string_value": "TOOL"})),
                attribute("mlflow.spanInputs", json!({"string_value": "find the refund policy"})),
            ],
        ),
    ];
    let mut batch_trace = trace("tr-a", json!([]));
    batch_trace.trace_info = json!({"trace_id": "tr-a", "state": "OK"});
    store
        .log_spans(vec![SpanBatch {
            trace: batch_trace,
            end_ms: Some(200),
            root_state: Some("OK".into()),
            spans,
        }])
        .await
        .unwrap();
    // The root's usage already holds its children's: the LLM span does not count twice.
    let info = store.get_trace_info("tr-a").await.unwrap();
    assert_eq!(
        info["trace_metadata"]["mlflow.trace.tokenUsage"],
        "{\"input_tokens\": 10, \"output_tokens\": 10, \"total_tokens\": 20}"
    );
    assert_eq!(
        info["assessments"].as_array().unwrap().len(),
        4,
        "spans keep the assessments"
    );
    let a = vec!["tr-a".to_string()];
    let b = vec!["tr-b".to_string()];
    let none: Vec<String> = Vec::new();
    assert_eq!(found(store, "span.type = 'LLM'").await, a);
    assert_eq!(found(store, "span.name IN ('tool', 'x')").await, a);
    // Span clauses joined by AND hold for one span.
    assert_eq!(found(store, "span.type = 'LLM' AND span.name = 'tool'").await, none);
    assert_eq!(found(store, "span.type = 'LLM' AND span.name = 'llm'").await, a);
    assert_eq!(found(store, "span.attributes.mlflow.llm.model LIKE '%gpt%'").await, a);
    assert_eq!(found(store, "trace.text ILIKE '%REFUND%'").await, a);
    assert_eq!(found(store, "span.status = 'ERROR'").await, none);
    assert_eq!(found(store, "feedback.correct = 'yes'").await, a);
    assert_eq!(found(store, "feedback.correct = 'no'").await, b);
    assert_eq!(found(store, "feedback.score > 0.5").await, a);
    assert_eq!(found(store, "feedback.score <= 0.5").await, b);
    // An invalid (overridden) assessment does not count.
    assert_eq!(found(store, "expectation.answer IS NOT NULL").await, a);
    assert_eq!(found(store, "expectation.answer IS NULL").await, b);
    assert_eq!(found(store, "issue.id = 'iss-1'").await, a);
    assert_eq!(found(store, "name = 'tr-b'").await, b);
    assert_eq!(found(store, "end_time_ms >= 200 AND span.type = 'TOOL'").await, a);
    for refused in [
        "span.colour = 'x'",
        "trace.text = 'x'",
        "issue.id != 'x'",
        "span.attributes.k = 'x'",
    ] {
        assert!(
            matches!(
                store
                    .search_traces(&TraceSearch {
                        experiment_ids: vec!["0".into()],
                        filter: Some(refused.into()),
                        ..Default::default()
                    })
                    .await,
                Err(StoreError::InvalidParameter(_))
            ),
            "{refused}"
        );
    }

    // Issues.
    let issue = |id: &str, severity: Option<&str>, created: i64| Issue {
        issue_id: id.into(),
        experiment_id: "0".into(),
        name: format!("issue {id}"),
        description: "answers are slow".into(),
        status: "pending".into(),
        severity: severity.map(str::to_string),
        root_causes: vec!["cold cache".into()],
        created_timestamp: created,
        last_updated_timestamp: created,
        ..Default::default()
    };
    store.create_issue(&issue("iss-1", Some("low"), 1)).await.unwrap();
    store.create_issue(&issue("iss-2", Some("high"), 2)).await.unwrap();
    store.create_issue(&issue("iss-3", None, 3)).await.unwrap();
    assert!(
        store
            .create_issue(&Issue {
                experiment_id: "404".into(),
                ..issue("iss-4", None, 4)
            })
            .await
            .is_err()
    );
    let fetched = store.get_issue("iss-1").await.unwrap();
    assert_eq!(
        (fetched.root_causes.clone(), fetched.trace_count),
        (vec!["cold cache".to_string()], None)
    );
    let changed = store
        .update_issue(
            "iss-1",
            &IssueChange {
                status: Some("resolved".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.status.as_str(), changed.name.as_str()),
        ("resolved", "issue iss-1")
    );
    assert!(changed.last_updated_timestamp > 1);
    assert!(matches!(store.get_issue("iss-9").await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.update_issue("iss-9", &IssueChange::default()).await,
        Err(StoreError::NotFound(_))
    ));
    let page = store
        .search_issues(&IssueSearch {
            include_trace_count: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let order: Vec<(&str, Option<i64>)> = page
        .items
        .iter()
        .map(|issue| (issue.issue_id.as_str(), issue.trace_count))
        .collect();
    assert_eq!(order, vec![("iss-2", Some(0)), ("iss-1", Some(1)), ("iss-3", Some(0))]);
    let pending = store
        .search_issues(&IssueSearch {
            experiment_id: Some("0".into()),
            filter: Some("status = 'pending'".into()),
            page: PageRequest {
                max_results: 1,
                page_token: None,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 1);
    assert!(pending.next_page_token.is_some());
    for refused in ["name = 'x'", "status LIKE 'p%'", "status = 'a' OR status = 'b'"] {
        assert!(
            store
                .search_issues(&IssueSearch {
                    filter: Some(refused.into()),
                    ..Default::default()
                })
                .await
                .is_err(),
            "{refused}"
        );
    }
}

pub async fn webhooks_are_listed_matched_and_soft_deleted(store: &SqlStore) {
    let hook = |id: &str, created: i64, events: &[(&str, &str)], status: &str| Webhook {
        webhook_id: id.into(),
        name: format!("hook-{id}"),
        description: None,
        url: "https://hooks.example/x".into(),
        events: events.iter().map(|(e, a)| (e.to_string(), a.to_string())).collect(),
        status: status.into(),
        secret: Some("v1:sealed".into()),
        creation_timestamp: created,
        last_updated_timestamp: created,
    };
    store
        .create_webhook(&hook("w1", 1, &[("model_version", "created")], "ACTIVE"))
        .await
        .unwrap();
    store
        .create_webhook(&hook(
            "w2",
            2,
            &[("model_version", "created"), ("prompt", "created")],
            "DISABLED",
        ))
        .await
        .unwrap();
    store
        .create_webhook(&hook("w3", 3, &[("prompt", "created")], "ACTIVE"))
        .await
        .unwrap();
    let listed = store
        .list_webhooks(&PageRequest {
            max_results: 2,
            page_token: None,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = listed.items.iter().map(|w| w.webhook_id.as_str()).collect();
    assert_eq!(ids, ["w3", "w2"], "newest first");
    assert!(listed.next_page_token.is_some());
    let matched = store.webhooks_for_event("model_version", "created").await.unwrap();
    assert_eq!(
        matched.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(),
        ["w1"],
        "active ones only"
    );
    let changed = store
        .update_webhook(
            "w2",
            &WebhookChange {
                status: Some("ACTIVE".into()),
                description: Some(Some("now on".into())),
                secret: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.status.as_str(), changed.description.as_deref(), changed.secret),
        ("ACTIVE", Some("now on"), None)
    );
    assert_eq!(changed.events.len(), 2, "events kept");
    store.delete_webhook("w1").await.unwrap();
    assert!(matches!(store.get_webhook("w1").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete_webhook("w1").await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.update_webhook("w1", &WebhookChange::default()).await,
        Err(StoreError::NotFound(_))
    ));
    let matched = store.webhooks_for_event("model_version", "created").await.unwrap();
    assert_eq!(
        matched.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(),
        ["w2"]
    );
}

pub async fn traces_are_found_by_request_id_and_prompt_and_ordered_by_tags(store: &SqlStore) {
    let with = |trace_id: &str, request: &str, name: &str, team: &str, prompts: &str| {
        let mut made = trace(trace_id, json!([]));
        made.trace_info = json!({"trace_id": trace_id, "state": "OK", "client_request_id": request,
            "tags": {"mlflow.traceName": name, "team": team, "mlflow.linkedPrompts": prompts}, "trace_metadata": {}});
        made
    };
    // One prompt list as Loopline writes it, one with Python's spacing; a name with LIKE's wildcards in it.
    let first = with("tr-p1", "req-1", "b-name", "x", r#"[{"name":"qa%_","version":"2"}]"#);
    let second = with("tr-p2", "req-2", "a-name", "y", r#"[{"name": "qa", "version": "1"}]"#);
    store.start_trace(&first).await.unwrap();
    store.start_trace(&second).await.unwrap();
    assert_eq!(found(store, "client_request_id = 'req-1'").await, ["tr-p1"]);
    assert_eq!(found(store, "prompt = 'qa%_/2'").await, ["tr-p1"]);
    assert_eq!(found(store, "prompt = 'qa/1'").await, ["tr-p2"]);
    assert!(found(store, "prompt = 'qa/2'").await.is_empty());
    let refused = store
        .search_traces(&TraceSearch {
            experiment_ids: vec!["0".into()],
            filter: Some("prompt LIKE 'qa%'".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(refused, Err(StoreError::InvalidParameter(_))));
    let ordered = |order: &str| {
        let search = TraceSearch {
            experiment_ids: vec!["0".into()],
            order_by: vec![order.to_string()],
            ..Default::default()
        };
        async move {
            store
                .search_traces(&search)
                .await
                .unwrap()
                .items
                .iter()
                .map(|info| info["trace_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ordered("name ASC").await, ["tr-p2", "tr-p1"]);
    assert_eq!(ordered("tags.team DESC").await, ["tr-p2", "tr-p1"]);
    assert_eq!(ordered("tags.team ASC").await, ["tr-p1", "tr-p2"]);
}

/// Background span writes (the gateway's traces) land like ordinary ones while ordinary writes run beside
/// them (on SQLite two threads share one connection), and a refused batch leaves nothing behind.
pub async fn background_span_writes_land_beside_ordinary_ones(store: &SqlStore) {
    let batch = |trace_id: String, experiment_id: &str| SpanBatch {
        trace: NewTrace {
            experiment_id: experiment_id.into(),
            ..trace(&trace_id, json!([]))
        },
        end_ms: Some(200),
        root_state: Some("OK".into()),
        spans: vec![span(&trace_id, "AAAAAAAAAAE=", None, "call", vec![])],
    };
    let run = store
        .create_run(&NewRun {
            experiment_id: "0".into(),
            user_id: "tester".into(),
            run_name: "beside".into(),
            start_time: 1,
            tags: vec![],
        })
        .await
        .unwrap();
    let run_id = run.info.run_id;
    let background = (0..12).map(|i| store.log_spans_in_background(vec![batch(format!("tr-bg-{i}"), "0")]));
    let ordinary = (0..12).map(|i| store.log_spans(vec![batch(format!("tr-fg-{i}"), "0")]));
    let metric = |step: i64| LogBatch {
        metrics: vec![Metric {
            key: "loss".into(),
            value: 0.5,
            timestamp: 1,
            step,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        }],
        ..Default::default()
    };
    let batches: Vec<LogBatch> = (0..12).map(metric).collect();
    let metrics = batches.iter().map(|batch| store.log_batch(&run_id, batch));
    // Three streams of writes at once, each one write after another.
    let (background, ordinary, metrics) = tokio::join!(
        one_after_another(background),
        one_after_another(ordinary),
        one_after_another(metrics)
    );
    assert!(
        background.iter().chain(&ordinary).all(Result::is_ok),
        "{background:?} {ordinary:?}"
    );
    assert!(metrics.iter().all(Result::is_ok), "{metrics:?}");
    for prefix in ["tr-bg", "tr-fg"] {
        for i in 0..12 {
            let trace_id = format!("{prefix}-{i}");
            assert_eq!(
                store.get_trace_info(&trace_id).await.unwrap()["state"],
                "OK",
                "{trace_id}"
            );
            assert_eq!(store.get_trace_spans(&trace_id).await.unwrap().len(), 1, "{trace_id}");
        }
    }
    // All or nothing in the background too: a batch for a missing experiment keeps its neighbour out.
    let refused = store
        .log_spans_in_background(vec![
            batch("tr-bg-fine".into(), "0"),
            batch("tr-bg-orphan".into(), "404"),
        ])
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound(_))), "{refused:?}");
    assert!(store.get_trace_info("tr-bg-fine").await.is_err());
}

/// Awaits the futures one after another; their outputs.
async fn one_after_another<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut outputs = Vec::new();
    for future in futures {
        outputs.push(future.await);
    }
    outputs
}
