//! Monitors on live traffic sent through the serving endpoints: drift injected into one window is found in
//! that window and no earlier one, for the shifted feature only; late labels evaluate their window again
//! with the realised accuracy; an alert fires once per episode, reaches a webhook receiver that fails once
//! and then recovers exactly once, acts (alias moved, retraining requested) and resolves; windows without
//! traffic say so; bad monitors are refused naming the field, with nothing created.

use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use loopline_test_support::{TestServer, raw_request};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serving::{post_json, register};

const FEATURES: [&str; 5] = ["f0", "f1", "f2", "f3", "f4"];

/// Deterministic standard-normal values (a linear congruential generator and Box–Muller).
fn normals(seed: u64, count: usize) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos())
        .collect()
}

/// Rows of the five features; `shift` is added to f2.
pub(crate) fn rows(seed: u64, count: usize, shift: f64) -> Vec<Vec<f64>> {
    let columns: Vec<Vec<f64>> = (0..5).map(|c| normals(seed * 10 + c, count)).collect();
    (0..count)
        .map(|r| {
            (0..5)
                .map(|c| columns[c][r] + if c == 2 { shift } else { 0.0 })
                .collect()
        })
        .collect()
}

fn reference_profile() -> Value {
    let data = rows(1, 3000, 0.0);
    let fields: Vec<Field> = FEATURES
        .iter()
        .map(|f| Field::new(*f, DataType::Float64, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..5)
        .map(|c| Arc::new(Float64Array::from(data.iter().map(|r| r[c]).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields.clone())), columns).unwrap();
    let mut collector = loopline_tabular::collect::Collector::new(&fields);
    collector.push(&batch).unwrap();
    let profile = loopline_tabular::DatasetProfile::of("train.parquet", 3000, &collector.finish());
    serde_json::to_value(profile).unwrap()
}

/// Sets the reference profile of churn version 1.
pub(crate) async fn put_reference(server: &TestServer) {
    let reference = raw_request(
        server.address,
        "PUT",
        "/api/loopline/v1/registered-models/churn/versions/1/reference",
        &[("Content-Type", "application/json")],
        reference_profile().to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(reference.status, 200, "{}", reference.body_text());
}

/// Sends `data` in requests of 50 rows; returns (request id, predictions) per request.
pub(crate) async fn send(server: &TestServer, prefix: &str, data: &[Vec<f64>]) -> Vec<(String, Vec<f64>)> {
    let mut answered = Vec::new();
    for (index, chunk) in data.chunks(50).enumerate() {
        let id = format!("{prefix}-{index}");
        let body = json!({"dataframe_split": {"columns": FEATURES, "data": chunk}});
        let response = raw_request(
            server.address,
            "POST",
            "/models/churn/versions/champion/invocations",
            &[("Content-Type", "application/json"), ("X-Request-Id", id.as_str())],
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
        let predictions: Vec<f64> = response.json()["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        answered.push((id, predictions));
    }
    answered
}

/// A webhook receiver that answers 500 to its first `failures` requests and 200 afterwards.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<(u16, Value)>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = bodies.clone();
    let seen_paths = paths.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut data = Vec::new();
            let mut buffer = [0u8; 8192];
            let body = loop {
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                if read == 0 {
                    break None;
                }
                data.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if rest.len() >= length {
                        break Some(serde_json::from_str::<Value>(&rest[..length]).unwrap());
                    }
                }
            };
            let Some(body) = body else { continue };
            let request_line = String::from_utf8_lossy(&data)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let path = request_line.split(' ').nth(1).unwrap_or_default().to_string();
            seen_paths.lock().unwrap().push(path);
            let status = {
                let mut bodies = seen.lock().unwrap();
                let status = if bodies.len() < failures { 500 } else { 200 };
                bodies.push((status, body));
                status
            };
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Receiver { url, bodies, paths }
}

async fn get(server: &TestServer, path: &str) -> loopline_test_support::RawResponse {
    raw_request(server.address, "GET", path, &[], b"").await.unwrap()
}

pub(crate) async fn run(server: &TestServer, monitor: &str) -> Value {
    let ran = post_json(server, &format!("/api/loopline/v1/monitors/{monitor}/run"), &json!({})).await;
    assert_eq!(ran.status, 200, "{}", ran.body_text());
    ran.json()
}

pub(crate) async fn windows(server: &TestServer, monitor: &str) -> Vec<Value> {
    let listed = get(server, &format!("/api/loopline/v1/monitors/{monitor}/windows")).await;
    assert_eq!(listed.status, 200, "{}", listed.body_text());
    listed.json()["windows"].as_array().unwrap().clone()
}

fn figure(window: &Value, name: &str) -> Option<f64> {
    window["figures"][name].as_f64()
}

async fn events_of(server: &TestServer, monitor: &str, kind: &str) -> Vec<Value> {
    let listed = get(
        server,
        &format!("/api/loopline/v1/monitors/{monitor}/events?kind={kind}"),
    )
    .await;
    listed.json()["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn drift_in_live_traffic_is_found_in_its_window_alerts_once_and_resolves() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    put_reference(&server).await;
    let hook = receiver(1).await;
    let monitor = json!({
        "name": "churn-live",
        "model": "churn",
        "alias": "champion",
        "window": {"predictions": 500},
        "start_ms": 0,
        "task": "classification",
        "alerts": [{
            "name": "f2-drift", "figure": "drift.detected.f2", "operator": ">=", "threshold": 1,
            "severity": "critical", "runbook": "https://wiki.example/drift",
            "actions": [{"kind": "move_alias", "alias": "fallback", "version": "1"}, {"kind": "retrain"}]
        }],
        "notifications": [{"kind": "webhook", "url": hook.url}],
    });
    let created = post_json(&server, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());

    // Three windows of traffic like the reference, then one with f2 shifted.
    let mut answered = Vec::new();
    for seed in 10..13 {
        answered.extend(send(&server, &format!("clean{seed}"), &rows(seed, 500, 0.0)).await);
    }
    answered.extend(send(&server, "drifted", &rows(20, 500, 2.0)).await);
    let first = run(&server, "churn-live").await;
    assert_eq!(first["evaluated"].as_array().unwrap().len(), 4, "{first}");
    let found = windows(&server, "churn-live").await;
    assert_eq!(found.len(), 4);
    for window in &found[..3] {
        assert_eq!(window["status"], "ok", "{window}");
        for feature in FEATURES {
            assert_eq!(
                figure(window, &format!("drift.detected.{feature}")),
                Some(0.0),
                "{feature} in {window}"
            );
        }
    }
    let drifted = &found[3];
    assert_eq!(figure(drifted, "drift.detected.f2"), Some(1.0), "{drifted}");
    for feature in ["f0", "f1", "f3", "f4"] {
        assert_eq!(
            figure(drifted, &format!("drift.detected.{feature}")),
            Some(0.0),
            "{feature}"
        );
    }
    assert_eq!(figure(drifted, "rows"), Some(500.0));
    assert_eq!(figure(drifted, "requests"), Some(10.0));
    assert_eq!(figure(drifted, "health.error_rate"), Some(0.0));
    let (p50, p99) = (
        figure(drifted, "health.latency_p50_ms").unwrap(),
        figure(drifted, "health.latency_p99_ms").unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p99, "{p50} {p99}");

    // The alert fired once; its first delivery failed (the receiver answered 500) and waits for a retry.
    assert_eq!(events_of(&server, "churn-live", "alert_firing").await.len(), 1);
    assert_eq!(first["notifications_waiting"], 1, "{first}");
    let second = run(&server, "churn-live").await;
    assert_eq!(
        (
            second["notifications_delivered"].clone(),
            second["notifications_waiting"].clone()
        ),
        (json!(1), json!(0))
    );
    {
        let bodies = hook.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 2, "one failed attempt, one delivery");
        let delivered = &bodies[1].1;
        assert_eq!(
            (
                delivered["status"].as_str(),
                delivered["alerts"][0]["labels"]["alertname"].as_str()
            ),
            (Some("firing"), Some("f2-drift"))
        );
        assert_eq!(
            delivered["alerts"][0]["annotations"]["runbook_url"],
            "https://wiki.example/drift"
        );
    }
    // Its actions ran: the alias moved and a retraining request was recorded with its cause.
    let alias = get(
        &server,
        "/api/2.0/mlflow/registered-models/alias?name=churn&alias=fallback",
    )
    .await;
    assert_eq!(alias.json()["model_version"]["version"], "1", "{}", alias.body_text());
    let retraining = events_of(&server, "churn-live", "retraining_requested").await;
    assert_eq!(retraining.len(), 1);
    assert_eq!(retraining[0]["details"]["cause"]["figure"], "drift.detected.f2");

    // The HTML report of the drifted window shows the feature; Prometheus has the gauges.
    let report = get(&server, "/api/loopline/v1/monitors/churn-live/windows/3/report").await;
    assert_eq!(report.status, 200);
    assert!(report.header("content-type").unwrap().starts_with("text/html"));
    assert!(report.body_text().contains("f2"));
    // The report's verdict and counts are the window's figures (inputs only; the prediction is its own row).
    let third = &windows(&server, "churn-live").await[3];
    let verdict = if figure(third, "drift.dataset") == Some(1.0) {
        "Dataset drift detected"
    } else {
        "No dataset drift"
    };
    assert!(report.body_text().contains(verdict), "{third}");
    let counts = format!(
        "<b>{} of {}</b>",
        figure(third, "drift.columns_drifted").unwrap(),
        FEATURES.len()
    );
    assert!(
        report.body_text().contains(&counts),
        "{counts} in the report of {third}"
    );
    // Longer spans are the merge of their windows' sketches: the clean ones show no drift, and with the drifted
    // window merged in, f2 (and only f2) drifts; counts add up exactly.
    let span = |from: usize, to: usize| {
        format!(
            "/api/loopline/v1/monitors/churn-live/rollup?from={}&to={}",
            found[from]["start_ms"], found[to]["end_ms"]
        )
    };
    let clean = get(&server, &span(0, 2)).await;
    assert_eq!(clean.status, 200, "{}", clean.body_text());
    let clean = clean.json()["rollup"].clone();
    assert_eq!(
        (clean["windows"].clone(), clean["rows"].clone()),
        (json!(3), json!(1500)),
        "{clean}"
    );
    assert_eq!(clean["windows_summarised"], 3);
    let drifted_columns = |rollup: &Value| -> Vec<String> {
        rollup["drift"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["drifted"] == true)
            .map(|c| c["column"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(drifted_columns(&clean).is_empty(), "{clean}");
    let whole = get(&server, &span(0, 3)).await.json()["rollup"].clone();
    assert_eq!(
        (whole["windows"].clone(), whole["rows"].clone()),
        (json!(4), json!(2000)),
        "{whole}"
    );
    assert_eq!(drifted_columns(&whole), ["f2"], "{whole}");
    let f2 = whole["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "f2")
        .unwrap();
    assert_eq!(f2["cells"], 2000.0, "{f2}");
    let html = get(&server, &format!("{}&format=html", span(0, 3))).await;
    assert!(html.body_text().contains("f2"));
    let backwards = get(&server, &format!("{}&to=0", span(0, 3).split("&to=").next().unwrap())).await;
    assert_eq!(backwards.status, 400, "{}", backwards.body_text());
    assert!(backwards.body_text().contains("to:"), "{}", backwards.body_text());
    let unreadable = get(
        &server,
        "/api/loopline/v1/monitors/churn-live/rollup?from=yesterday&to=2026-12-02",
    )
    .await;
    assert_eq!(unreadable.status, 400);
    assert!(unreadable.body_text().contains("from"), "{}", unreadable.body_text());

    let metrics = get(&server, "/metrics").await.body_text();
    assert!(
        metrics.contains("loopline_monitor_drift_detected{monitor=\"churn-live\",column=\"f2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loopline_monitor_alerts_firing{severity=\"critical\"} 1"),
        "{metrics}"
    );

    // Late labels for the first window evaluate it again, with the realised accuracy.
    let mut labelled = 0;
    let mut correct = 0;
    let mut feedback = Vec::new();
    for (id, predictions) in answered.iter().filter(|(id, _)| id.starts_with("clean10")) {
        let labels: Vec<f64> = (0..predictions.len())
            .map(|i| ((i * 7 + id.len()) % 3 == 0) as u8 as f64)
            .collect();
        labelled += labels.len();
        correct += labels.iter().zip(predictions).filter(|(l, p)| l == p).count();
        feedback.push(json!({"request_id": id, "label": labels}));
    }
    let posted = post_json(&server, "/api/loopline/v1/feedback", &json!({"feedback": feedback})).await;
    assert_eq!(posted.status, 200, "{}", posted.body_text());
    run(&server, "churn-live").await;
    let relabelled = windows(&server, "churn-live").await;
    assert_eq!(relabelled[0]["labels"], json!(labelled));
    let (old_report, new_report) = (
        found[0]["report"].as_str().unwrap(),
        relabelled[0]["report"].as_str().unwrap(),
    );
    assert_ne!(old_report, new_report);
    assert!(
        !server
            .data_dir
            .join("artifacts")
            .join(old_report)
            .join("report.html")
            .exists(),
        "the replaced report is deleted"
    );
    assert!(
        server
            .data_dir
            .join("artifacts")
            .join(new_report)
            .join("report.html")
            .exists()
    );
    let accuracy = figure(&relabelled[0], "performance.accuracy").unwrap();
    assert!(
        (accuracy - correct as f64 / labelled as f64).abs() < 1e-12,
        "{accuracy}"
    );
    assert_eq!(
        relabelled[1]["labels"], 0,
        "labels change only the window they belong to"
    );
    assert_eq!(events_of(&server, "churn-live", "window_relabelled").await.len(), 1);
    // The span of the first two windows merges their labelled rows: the accuracy of all of them together.
    let two = get(&server, &span(0, 1)).await.json()["rollup"].clone();
    assert_eq!(two["labels"], json!(labelled), "{two}");
    let merged_accuracy = two["figures"]["performance.accuracy"].as_f64().unwrap();
    assert!(
        (merged_accuracy - correct as f64 / labelled as f64).abs() < 1e-12,
        "{two}"
    );
    assert_eq!(two["figures"]["requests"], 20.0, "{two}");
    assert_eq!(two["figures"]["health.error_rate"], 0.0, "{two}");

    // Clean traffic again: the alert resolves, and the receiver is told once.
    send(&server, "clean-again", &rows(30, 500, 0.0)).await;
    run(&server, "churn-live").await;
    assert_eq!(
        events_of(&server, "churn-live", "alert_firing").await.len(),
        1,
        "one episode, one firing"
    );
    assert_eq!(events_of(&server, "churn-live", "alert_resolved").await.len(), 1);
    let statuses: Vec<(u16, String)> = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(s, b)| (*s, b["status"].as_str().unwrap().to_string()))
        .collect();
    let expected = [(500, "firing"), (200, "firing"), (200, "resolved")].map(|(s, b)| (s, b.to_string()));
    assert_eq!(statuses, expected);

    // The review queue of the drifted window puts rows far out in f2 first; a label given there becomes feedback.
    let queue = get(
        &server,
        "/api/loopline/v1/monitors/churn-live/review-queue?window=3&limit=20",
    )
    .await;
    assert_eq!(queue.status, 200, "{}", queue.body_text());
    let items = queue.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 20);
    for item in &items {
        assert!(
            item["reasons"].as_array().unwrap().contains(&json!("drifted:f2")),
            "{item}"
        );
        assert!(item["inputs"]["f2"].as_f64().unwrap() > 1.0, "{item}");
    }
    let first = &items[0];
    let labels = json!({"labels": [{"request_id": first["request_id"], "row": first["row"], "label": 1}]});
    let posted = post_json(
        &server,
        "/api/loopline/v1/monitors/churn-live/review-queue/labels",
        &labels,
    )
    .await;
    assert_eq!(posted.json()["recorded"], 1, "{}", posted.body_text());
    run(&server, "churn-live").await;
    let relabelled = windows(&server, "churn-live").await;
    assert_eq!(relabelled[3]["labels"], 1, "the reviewed row of window 3 is labelled");
    let queue = get(
        &server,
        "/api/loopline/v1/monitors/churn-live/review-queue?window=3&limit=10000",
    )
    .await;
    let still_queued = queue.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["request_id"] == first["request_id"]);
    assert!(!still_queued, "labelled requests leave the queue");
}

#[tokio::test]
async fn windows_without_traffic_say_so_and_bad_monitors_name_their_field() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    put_reference(&server).await;
    let base = || json!({"name": "m", "model": "churn", "alias": "champion", "window": {"seconds": 3600}});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "m", "deployment": "nowhere", "window": {"seconds": 60}}),
            "deployment",
        ),
        (
            {
                let mut b = base();
                b["window"] = json!({"seconds": 0});
                b
            },
            "window.seconds",
        ),
        (
            {
                let mut b = base();
                b["columns"] = json!(["f0", "salary"]);
                b
            },
            "columns[1]",
        ),
        (
            {
                let mut b = base();
                b["alerts"] = json!([{"name": "a", "figure": "drift.vibes", "operator": ">", "threshold": 1}]);
                b
            },
            "alerts[0].figure",
        ),
        (
            {
                let mut b = base();
                b["notifications"] = json!([{"kind": "webhook", "url": "ftp://example.com/x"}]);
                b
            },
            "notifications[0].url",
        ),
        (
            {
                let mut b = base();
                b["model"] = json!("absent");
                b
            },
            "model",
        ),
        (
            {
                let mut b = base();
                b["name"] = json!("../etc");
                b
            },
            "name",
        ),
    ];
    for (body, field) in cases {
        let refused = post_json(&server, "/api/loopline/v1/monitors", &body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.body_text());
        let message = refused.json()["message"].as_str().unwrap().to_string();
        assert!(message.starts_with(&format!("{field}:")), "{body}: {message}");
    }
    let listed = get(&server, "/api/loopline/v1/monitors").await;
    assert_eq!(listed.json()["monitors"], json!([]), "nothing half-created");

    // Hourly windows over the three hours before this one: traffic now falls in none of them.
    let hour = 3_600_000i64;
    let now = loopline_core::time::now_millis();
    let mut quiet = base();
    quiet["start_ms"] = json!(now - now % hour - 3 * hour);
    let created = post_json(&server, "/api/loopline/v1/monitors", &quiet).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    send(&server, "now", &rows(5, 100, 0.0)).await;
    run(&server, "m").await;
    let found = windows(&server, "m").await;
    assert_eq!(found.len(), 3);
    for window in &found {
        assert_eq!(window["status"], "no_traffic");
        assert_eq!(figure(window, "rows"), Some(0.0));
        assert!(figure(window, "drift.share").is_none(), "no traffic is not drift");
    }
    let deleted = raw_request(server.address, "DELETE", "/api/loopline/v1/monitors/m", &[], b"")
        .await
        .unwrap();
    assert_eq!(deleted.status, 200);
    assert_eq!(get(&server, "/api/loopline/v1/monitors/m").await.status, 404);
}

#[tokio::test]
async fn failed_requests_count_in_the_window_they_arrived_in() {
    let server = TestServer::start().await.unwrap();
    register(&server, "booster", "xgb_booster", None).await;
    let monitor = json!({"name": "booster-health", "model": "booster", "window": {"predictions": 2}, "start_ms": 0,
                         "alerts": [{"name": "failing", "figure": "health.bad_inputs", "operator": ">=", "threshold": 1}]});
    let created = post_json(&server, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let path = "/models/booster/versions/champion/invocations";
    let good = json!({"dataframe_split": {"columns": FEATURES, "data": [[0.1, 0.2, 0.3, 0.4, 0.5]]}});
    let bad = json!({"dataframe_split": {"columns": ["f0", "f1", "f2"], "data": [[0.1, 0.2, 0.3]]}});
    assert_eq!(post_json(&server, path, &good).await.status, 200);
    let refused = post_json(&server, path, &bad).await;
    assert_eq!(refused.status, 400, "{}", refused.body_text());
    assert_eq!(post_json(&server, path, &good).await.status, 200);
    run(&server, "booster-health").await;
    let found = windows(&server, "booster-health").await;
    assert_eq!(found.len(), 1);
    assert_eq!(figure(&found[0], "health.bad_inputs"), Some(1.0), "{}", found[0]);
    assert_eq!(figure(&found[0], "health.failures"), Some(0.0));
    assert_eq!(figure(&found[0], "requests"), Some(2.0));
    assert_eq!(events_of(&server, "booster-health", "alert_firing").await.len(), 1);
    // A window with no reference still keeps a sketch of its health, so spans of such windows merge too.
    let span = format!(
        "/api/loopline/v1/monitors/booster-health/rollup?from={}&to={}",
        found[0]["start_ms"], found[0]["end_ms"]
    );
    let rolled = get(&server, &span).await;
    assert_eq!(rolled.status, 200, "{}", rolled.body_text());
    let rolled = rolled.json()["rollup"].clone();
    assert_eq!(rolled["windows_summarised"], 1, "{rolled}");
    assert_eq!(rolled["figures"]["health.bad_inputs"], 1.0, "{rolled}");
    assert_eq!(rolled["figures"]["requests"], 2.0, "{rolled}");
    assert!(rolled["drift"].is_null(), "{rolled}");
    let html = get(&server, &format!("{span}&format=html")).await;
    assert_eq!(
        html.status,
        404,
        "no drift report without a reference: {}",
        html.body_text()
    );
}

#[tokio::test]
async fn a_drift_confined_to_one_slice_is_found_in_that_slice_only() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    put_reference(&server).await;
    let monitor = json!({
        "name": "by-segment", "model": "churn", "window": {"predictions": 1000}, "start_ms": 0, "slices": ["f0"],
        "alerts": [{"name": "segment-one", "figure": "slice[f0=1].drift.detected.f2", "operator": ">=", "threshold": 1}],
    });
    let created = post_json(&server, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    // f0 is a segment flag; f2 moves in segment 1 only.
    let data: Vec<Vec<f64>> = rows(50, 1000, 0.0)
        .into_iter()
        .enumerate()
        .map(|(index, mut row)| {
            row[0] = (index % 2) as f64;
            row[2] += 2.5 * row[0];
            row
        })
        .collect();
    send(&server, "segments", &data).await;
    run(&server, "by-segment").await;
    let found = windows(&server, "by-segment").await;
    assert_eq!(found.len(), 1);
    let window = &found[0];
    assert_eq!(figure(window, "slice[f0=1].rows"), Some(500.0), "{window}");
    assert_eq!(figure(window, "slice[f0=0].rows"), Some(500.0));
    assert_eq!(figure(window, "slice[f0=1].drift.detected.f2"), Some(1.0));
    assert_eq!(figure(window, "slice[f0=0].drift.detected.f2"), Some(0.0));
    assert_eq!(events_of(&server, "by-segment", "alert_firing").await.len(), 1);
    // Deleting the monitor deletes its windows' reports and sketches too.
    let directory = server
        .data_dir
        .join("artifacts")
        .join(window["report"].as_str().unwrap());
    assert!(directory.join("sketch.json").exists() && directory.join("report.html").exists());
    let deleted = raw_request(
        server.address,
        "DELETE",
        "/api/loopline/v1/monitors/by-segment",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(deleted.status, 200);
    for file in ["sketch.json", "report.html", "report.json"] {
        assert!(!directory.join(file).exists(), "{file} of {}", directory.display());
    }
    let refused = post_json(
        &server,
        "/api/loopline/v1/monitors",
        &json!({"name": "x", "model": "churn", "window": {"seconds": 60},
                "alerts": [{"name": "a", "figure": "slice[f9=1].rows", "operator": ">", "threshold": 1}]}),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("alerts[0].figure:")
    );
}

#[tokio::test]
async fn an_expectation_suite_runs_on_each_window_of_live_inputs() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let suite = json!({"name": "live", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "f1", "min_value": -1, "max_value": 1}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "f3"}},
    ]});
    let monitor = json!({"name": "suite", "model": "churn", "window": {"predictions": 100}, "start_ms": 0,
                         "expectations": suite});
    let created = post_json(&server, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    send(&server, "suite", &rows(60, 100, 0.0)).await;
    run(&server, "suite").await;
    let found = windows(&server, "suite").await;
    assert_eq!(
        figure(&found[0], "quality.expectations_failed"),
        Some(1.0),
        "{}",
        found[0]
    );
    assert_eq!(figure(&found[0], "quality.expectations_success_percent"), Some(50.0));
    let failed = &found[0]["details"]["expectations"]["failed"];
    assert_eq!(
        failed[0]["expectation"]["type"], "expect_column_values_to_be_between",
        "{failed}"
    );

    let unknown = json!({"name": "bad-suite", "model": "churn", "window": {"predictions": 100},
                         "expectations": {"name": "x", "expectations": [{"type": "expect_the_impossible", "kwargs": {}}]}});
    let refused = post_json(&server, "/api/loopline/v1/monitors", &unknown).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["message"].as_str().unwrap().starts_with("expectations:"),
        "{}",
        refused.body_text()
    );
}

#[tokio::test]
async fn a_reference_logged_by_the_training_run_is_picked_up() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let api = "/api/2.0/mlflow";
    let training = post_json(&server, &format!("{api}/runs/create"), &json!({"experiment_id": "0"})).await;
    let info = training.json()["run"]["info"].clone();
    let root = info["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:")
        .trim_start_matches('/')
        .to_string();
    let upload = raw_request(
        server.address,
        "PUT",
        &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/loopline-reference.json"),
        &[],
        reference_profile().to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(upload.status, 200, "{}", upload.body_text());
    let version = post_json(
        &server,
        &format!("{api}/model-versions/create"),
        &json!({"name": "churn", "source": "mlflow-artifacts:/serving/churn", "run_id": info["run_id"]}),
    )
    .await;
    assert_eq!(
        version.json()["model_version"]["version"],
        "2",
        "{}",
        version.body_text()
    );
    post_json(
        &server,
        &format!("{api}/registered-models/alias"),
        &json!({"name": "churn", "alias": "champion", "version": "2"}),
    )
    .await;

    let monitor = json!({"name": "from-run", "model": "churn", "alias": "champion", "window": {"predictions": 500}, "start_ms": 0});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    send(&server, "run-reference", &rows(10, 500, 0.0)).await;
    run(&server, "from-run").await;
    let found = windows(&server, "from-run").await;
    assert_eq!(found[0]["status"], "ok", "{}", found[0]);
    assert_eq!(figure(&found[0], "drift.share"), Some(0.0), "{}", found[0]);
    let stored = get(&server, "/api/loopline/v1/registered-models/churn/versions/2/reference").await;
    assert_eq!(stored.json()["source"], "run-artifact");
    let none = get(&server, "/api/loopline/v1/registered-models/churn/versions/1/reference").await;
    assert_eq!(none.status, 404, "version 1 came from no run");
}

#[tokio::test]
async fn a_window_larger_than_its_sample_keeps_exact_counts_and_a_bounded_sample() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    put_reference(&server).await;
    let monitor = json!({"name": "big", "model": "churn", "window": {"predictions": 3000}, "start_ms": 0,
                         "sample_rows": 1000});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    send(&server, "big", &rows(80, 3000, 0.0)).await;
    run(&server, "big").await;
    let found = windows(&server, "big").await;
    let window = &found[0];
    assert_eq!(
        (figure(window, "rows"), figure(window, "requests")),
        (Some(3000.0), Some(60.0))
    );
    let kept = window["details"]["sample"]["rows"].as_u64().unwrap();
    assert!(kept <= 1000 && kept > 0, "{kept}");
    assert!(window["details"]["sample"]["rate"].as_f64().unwrap() < 1.0);
    assert!(figure(window, "drift.share").is_some(), "{window}");
}

#[tokio::test]
async fn a_reference_window_is_the_first_window_with_traffic_even_when_windows_are_evaluated_together() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let monitor = json!({"name": "self-referenced", "model": "churn", "window": {"predictions": 500},
                         "start_ms": 0, "reference_window": true});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    // Both windows are read before either is evaluated; the second is drifted in f2.
    send(&server, "first", &rows(30, 500, 0.0)).await;
    send(&server, "second", &rows(31, 500, 2.0)).await;
    run(&server, "self-referenced").await;
    let found = windows(&server, "self-referenced").await;
    assert_eq!(found.len(), 2);
    assert_eq!(figure(&found[0], "drift.detected.f2"), Some(0.0), "{}", found[0]);
    assert_eq!(figure(&found[1], "drift.detected.f2"), Some(1.0), "{}", found[1]);
}

#[tokio::test]
async fn business_figures_reach_their_window_and_its_rules() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let monitor = json!({"name": "revenue", "model": "churn", "window": {"predictions": 100}, "start_ms": 0,
                         "alerts": [{"name": "low-revenue", "figure": "business.revenue", "operator": "<", "threshold": 100}]});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    send(&server, "revenue", &rows(90, 100, 0.0)).await;
    run(&server, "revenue").await;
    assert_eq!(
        events_of(&server, "revenue", "alert_firing").await.len(),
        0,
        "no figure yet, no alert"
    );
    let path = "/api/loopline/v1/monitors/revenue/business-metrics";
    let posted = post_json(&server, path, &json!({"name": "revenue", "value": 42.5, "window": 0})).await;
    assert_eq!(posted.json()["window_evaluated"], true, "{}", posted.body_text());
    let found = windows(&server, "revenue").await;
    assert_eq!(figure(&found[0], "business.revenue"), Some(42.5));
    assert_eq!(events_of(&server, "revenue", "alert_firing").await.len(), 1);
    let recovered = post_json(&server, path, &json!({"name": "revenue", "value": 500, "window": 0})).await;
    assert_eq!(recovered.status, 200);
    assert_eq!(events_of(&server, "revenue", "alert_resolved").await.len(), 1);
}

#[tokio::test]
async fn a_prediction_that_cannot_be_compared_costs_only_the_prediction_drift() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    // The reference holds probabilities under `prediction`; the model answers classes.
    let mut profile = reference_profile();
    let probabilities: Vec<f64> = normals(5, 3000).iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let field = Field::new("prediction", DataType::Float64, true);
    let batch = RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(vec![field.clone()])),
        vec![Arc::new(Float64Array::from(probabilities)) as ArrayRef],
    )
    .unwrap();
    let mut collector = loopline_tabular::collect::Collector::new(std::slice::from_ref(&field));
    collector.push(&batch).unwrap();
    let extra = loopline_tabular::DatasetProfile::of("train.parquet", 3000, &collector.finish());
    profile["columns"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(&extra.columns[0]).unwrap());
    let put = raw_request(
        server.address,
        "PUT",
        "/api/loopline/v1/registered-models/churn/versions/1/reference",
        &[("Content-Type", "application/json")],
        profile.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 200, "{}", put.body_text());
    let monitor = json!({"name": "classes", "model": "churn", "window": {"predictions": 500}, "start_ms": 0});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    send(&server, "classes", &rows(10, 500, 0.0)).await;
    run(&server, "classes").await;
    let window = &windows(&server, "classes").await[0];
    assert!(
        figure(window, "drift.share").is_some(),
        "the features are still compared: {window}"
    );
    assert!(figure(window, "drift.score.f0").is_some());
    assert_eq!(figure(window, "prediction_drift.score"), None);
    let note = window["details"]["notes"][0].as_str().unwrap_or_default();
    assert!(note.starts_with("prediction drift not tested"), "{window}");
}

#[tokio::test]
async fn slack_pagerduty_and_alertmanager_each_get_their_own_shape() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let hook = receiver(0).await;
    let base = hook.url.trim_end_matches("/hook").to_string();
    let monitor = json!({
        "name": "sinks", "model": "churn", "window": {"predictions": 50}, "start_ms": 0,
        "alerts": [{"name": "low-revenue", "figure": "business.revenue", "operator": "<", "threshold": 100,
                    "severity": "critical", "owner": "ml-oncall"}],
        "notifications": [
            {"kind": "slack", "url": format!("{base}/slack")},
            {"kind": "pagerduty", "url": format!("{base}/pd"), "routing_key": "e93facc04764012d7bfb002500d5d1a6"},
            {"kind": "alertmanager", "url": base},
        ],
    });
    assert_eq!(
        post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
        200
    );
    send(&server, "sinks", &rows(95, 50, 0.0)).await;
    run(&server, "sinks").await;
    let path = "/api/loopline/v1/monitors/sinks/business-metrics";
    post_json(&server, path, &json!({"name": "revenue", "value": 10, "window": 0})).await;
    run(&server, "sinks").await;
    post_json(&server, path, &json!({"name": "revenue", "value": 900, "window": 0})).await;
    run(&server, "sinks").await;
    let paths = hook.paths.lock().unwrap().clone();
    let bodies: Vec<Value> = hook.bodies.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    let sent_to = |wanted: &str| -> Vec<Value> {
        paths
            .iter()
            .zip(&bodies)
            .filter(|(p, _)| p.as_str() == wanted)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let slack = sent_to("/slack");
    assert_eq!(slack.len(), 2, "{paths:?}");
    assert!(slack[0]["text"].as_str().unwrap().contains("business.revenue"));
    assert_eq!(slack[0]["blocks"][0]["type"], "section");
    assert!(slack[1]["text"].as_str().unwrap().starts_with("[resolved]"));
    let paged = sent_to("/pd");
    assert_eq!(paged.len(), 2);
    assert_eq!(
        (paged[0]["event_action"].as_str(), paged[1]["event_action"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(
        paged[0]["dedup_key"], paged[1]["dedup_key"],
        "one PagerDuty incident per episode"
    );
    assert_eq!(paged[0]["routing_key"], "e93facc04764012d7bfb002500d5d1a6");
    assert_eq!(paged[0]["payload"]["severity"], "critical");
    let managed = sent_to("/api/v2/alerts");
    assert_eq!(managed.len(), 2);
    assert_eq!(managed[0][0]["labels"]["alertname"], "low-revenue");
    assert_eq!(managed[0][0]["annotations"]["owner"], "ml-oncall");
    assert!(managed[0][0].get("endsAt").is_none() && managed[1][0]["endsAt"].is_string());
}

/// JSON of any shape with the monitor API's own field names, so generated bodies reach deep into the parsers.
fn monitor_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1u64 << 60)),
        "[a-z0-9._\\[\\]=:/-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("model".to_string()),
                    Just("window".to_string()),
                    Just("seconds".to_string()),
                    Just("predictions".to_string()),
                    Just("start_ms".to_string()),
                    Just("alerts".to_string()),
                    Just("figure".to_string()),
                    Just("operator".to_string()),
                    Just("threshold".to_string()),
                    Just("notifications".to_string()),
                    Just("kind".to_string()),
                    Just("url".to_string()),
                    Just("labels".to_string()),
                    Just("request_id".to_string()),
                    Just("row".to_string()),
                    Just("label".to_string()),
                    Just("value".to_string()),
                    Just("slices".to_string()),
                    Just("expectations".to_string()),
                    Just("columns".to_string()),
                    Just("rows".to_string()),
                    Just("quantiles".to_string()),
                    Just("performance_estimation".to_string()),
                ],
                inner,
                0..6,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn hostile_bodies_to_the_monitor_api_are_client_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    runtime.block_on(async {
        register(&server, "churn", "xgb_classifier", None).await;
        put_reference(&server).await;
        let monitor = json!({"name": "target", "model": "churn", "window": {"predictions": 10}, "start_ms": 0,
                             "alerts": [{"name": "r", "figure": "rows", "operator": ">", "threshold": 0}]});
        assert_eq!(
            post_json(&server, "/api/loopline/v1/monitors", &monitor).await.status,
            200
        );
        send(&server, "hostile", &rows(3, 20, 0.0)).await;
        run(&server, "target").await;
    });
    let endpoints = [
        ("POST", "/api/loopline/v1/monitors"),
        ("POST", "/api/loopline/v1/monitors/target/business-metrics"),
        ("POST", "/api/loopline/v1/monitors/target/review-queue/labels"),
        ("POST", "/api/loopline/v1/monitors/target/alerts/r/silence"),
        ("PUT", "/api/loopline/v1/registered-models/churn/versions/1/reference"),
    ];
    let send_body = |method: &str, path: &str, body: &[u8]| {
        runtime
            .block_on(raw_request(
                server.address,
                method,
                path,
                &[("Content-Type", "application/json")],
                body,
            ))
            .unwrap()
    };
    // 10,000-deep nesting, on every endpoint.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (method, path) in endpoints {
        let answer = send_body(method, path, deep.as_bytes());
        assert!((400..500).contains(&answer.status), "{path}: {}", answer.status);
    }
    // A profile lying about its counts.
    let mut lying = serde_json::to_value(reference_profile()).unwrap();
    lying["rows"] = json!(1u64 << 60);
    lying["columns"][0]["numeric"]["quantiles"] = json!(vec![1.0; 5000]);
    let answer = send_body("PUT", endpoints[4].1, lying.to_string().as_bytes());
    assert_eq!(answer.status, 400, "{}", answer.body_text());
    let config = proptest::prelude::ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    };
    proptest::proptest!(config, |(body in monitor_json(), endpoint in 0..endpoints.len())| {
        let (method, path) = endpoints[endpoint];
        let answer = send_body(method, path, body.to_string().as_bytes());
        proptest::prop_assert!(answer.status < 500, "{path} {body}: {} {}", answer.status, answer.body_text());
    });
    // Roll-ups: generated times (digits, dates, junk, huge numbers) are client errors or answers, never 5xx.
    let times = "[0-9TZ:.+%&-]{0,40}";
    proptest::proptest!(config, |(from in times, to in times, format in "(json|html|[a-z]{0,5})")| {
        let path = format!("/api/loopline/v1/monitors/target/rollup?from={from}&to={to}&format={format}");
        let answer = runtime.block_on(raw_request(server.address, "GET", &path, &[], b"")).unwrap();
        proptest::prop_assert!(answer.status < 500, "{path}: {} {}", answer.status, answer.body_text());
    });
    let ran = runtime.block_on(post_json(&server, "/api/loopline/v1/monitors/target/run", &json!({})));
    assert_eq!(ran.status, 200, "the monitor still runs: {}", ran.body_text());
}
