//! Requests that used to crash the server, exhaust it or act through a browser, replayed: each is now a 4xx
//! and the server keeps answering. (Issue 11's findings 1, 5, 6 and 7; models are in `hardening_models`.)

use std::time::Duration;

use loopline_server::network::NetworkOptions;
use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serving::post_json;

async fn get(server: &TestServer, target: &str) -> RawResponse {
    raw_request(server.address, "GET", target, &[], b"").await.unwrap()
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn assert_alive(server: &TestServer) {
    let health = get(server, "/health").await;
    assert_eq!(health.status, 200, "the server stopped answering");
}

fn assert_client_error(response: &RawResponse, what: &str) {
    assert!(
        (400..500).contains(&response.status),
        "{what}: expected a 4xx, got {}: {}",
        response.status,
        response.body_text()
    );
}

#[tokio::test]
async fn hostile_filters_are_refused_on_every_search_endpoint() {
    let server = TestServer::start().await.unwrap();
    let experiment = post_json(&server, "/api/2.0/mlflow/experiments/create", &json!({"name": "e"})).await;
    let experiment_id = experiment.json()["experiment_id"].as_str().unwrap().to_string();
    let deep_open = "(".repeat(3_000);
    let balanced = format!("{}name = 'x'{}", "(".repeat(200), ")".repeat(200));
    let many_terms = vec!["name = 'x'"; 1_001].join(" OR ");
    let long_list = format!("name IN ({})", vec!["'x'"; 40_000].join(","));
    let long_like = format!("name LIKE '{}'", "%a".repeat(30_000));
    for filter in [&deep_open, &balanced, &many_terms, &long_list, &long_like] {
        for endpoint in [
            "/api/2.0/mlflow/registered-models/search",
            "/api/2.0/mlflow/model-versions/search",
            "/api/2.0/mlflow/experiments/search",
        ] {
            let response = get(&server, &format!("{endpoint}?filter={}", encoded(filter))).await;
            assert_client_error(&response, &format!("{endpoint} with a {}-byte filter", filter.len()));
            // Past the longest request line hyper reads, the answer is its bare 414.
            if response.status == 400 {
                assert_eq!(response.json()["error_code"], "INVALID_PARAMETER_VALUE");
            }
        }
        let runs = post_json(
            &server,
            "/api/2.0/mlflow/runs/search",
            &json!({"experiment_ids": [experiment_id], "filter": filter.replace("name", "attributes.run_name")}),
        )
        .await;
        assert_client_error(&runs, "runs/search");
    }
    let trailing_backslash = post_json(
        &server,
        "/api/2.0/mlflow/runs/search",
        &json!({"experiment_ids": [experiment_id], "filter": "attributes.run_name LIKE 'abc\\\\'"}),
    )
    .await;
    assert_client_error(&trailing_backslash, "a LIKE pattern ending in an escape");
    let sort_terms = vec!["metrics.m DESC"; 1_000];
    let sorted = post_json(
        &server,
        "/api/2.0/mlflow/runs/search",
        &json!({"experiment_ids": [experiment_id], "order_by": sort_terms}),
    )
    .await;
    assert_client_error(&sorted, "1,000 order_by terms");
    let repeated_order = vec!["order_by=name"; 2_000].join("&");
    let sorted = get(
        &server,
        &format!("/api/2.0/mlflow/registered-models/search?{repeated_order}"),
    )
    .await;
    assert_client_error(&sorted, "2,000 order_by parameters");
    let many_experiments: Vec<String> = (0..40_000).map(|id| id.to_string()).collect();
    let wide = post_json(
        &server,
        "/api/2.0/mlflow/runs/search",
        &json!({"experiment_ids": many_experiments}),
    )
    .await;
    assert_client_error(&wide, "40,000 experiment ids");
    for offset in [1u64 << 63, u64::MAX] {
        let token = loopline_core::page_token::encode_offset(offset);
        let page = get(
            &server,
            &format!(
                "/api/2.0/mlflow/registered-models/search?page_token={}",
                encoded(&token)
            ),
        )
        .await;
        assert_client_error(&page, &format!("a page token at offset {offset}"));
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn browsers_cannot_reach_the_api_through_another_name_or_origin() {
    let server = TestServer::start().await.unwrap();
    let created = post_json(&server, "/api/2.0/mlflow/experiments/create", &json!({"name": "keep"})).await;
    let experiment_id = created.json()["experiment_id"].as_str().unwrap().to_string();
    let rebound = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow/experiments/search?max_results=10",
        &[("Host", "attacker.example:5000")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(rebound.status, 403, "{}", rebound.body_text());
    assert!(rebound.body_text().contains("--allowed-hosts"));
    let absolute_form = raw_request(
        server.address,
        "GET",
        "http://attacker.example/api/2.0/mlflow/experiments/search",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(absolute_form.status, 403, "the request line's host counts");
    let two_hosts = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow/experiments/search",
        &[("Host", "127.0.0.1"), ("Host", "attacker.example")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(two_hosts.status, 400);
    let two_origins = raw_request(
        server.address,
        "POST",
        "/api/2.0/mlflow/experiments/delete",
        &[
            ("Origin", "http://localhost:3000"),
            ("Origin", "https://attacker.example"),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"experiment_id\": \"{experiment_id}\"}}").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(two_origins.status, 403);
    let probe = raw_request(server.address, "GET", "/health", &[("Host", "anything.example")], b"")
        .await
        .unwrap();
    assert_eq!(probe.status, 200, "health checks answer any Host");
    let delete = format!("{{\"experiment_id\": \"{experiment_id}\"}}");
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let cross_site = raw_request(
            server.address,
            "POST",
            "/api/2.0/mlflow/experiments/delete",
            &[("Origin", "https://attacker.example"), ("Content-Type", content_type)],
            delete.as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(cross_site.status, 403, "{}", cross_site.body_text());
        let not_json = raw_request(
            server.address,
            "POST",
            "/api/2.0/mlflow/experiments/delete",
            &[("Content-Type", content_type)],
            delete.as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(
            not_json.status,
            400,
            "a {content_type} body is not JSON: {}",
            not_json.body_text()
        );
    }
    let preflight = raw_request(
        server.address,
        "OPTIONS",
        "/api/2.0/mlflow/experiments/delete",
        &[
            ("Origin", "https://attacker.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 403);
    let local_page = raw_request(
        server.address,
        "POST",
        "/api/2.0/mlflow/experiments/update",
        &[
            ("Origin", "http://localhost:3000"),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"experiment_id\": \"{experiment_id}\", \"new_name\": \"kept\"}}").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(local_page.status, 200, "{}", local_page.body_text());
    let still_there = get(
        &server,
        &format!("/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"),
    )
    .await;
    assert_eq!(still_there.json()["experiment"]["lifecycle_stage"], "active");
    assert_alive(&server).await;
}

#[tokio::test]
async fn listed_origins_get_cors_answers() {
    let server = TestServer::start_network(NetworkOptions {
        cors_allowed_origins: vec!["https://ui.example.com".to_string()],
        allowed_hosts: vec!["127.0.0.1:*".to_string()],
        ..NetworkOptions::default()
    })
    .await
    .unwrap();
    let preflight = raw_request(
        server.address,
        "OPTIONS",
        "/api/2.0/mlflow/experiments/create",
        &[
            ("Origin", "https://ui.example.com"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://ui.example.com")
    );
    let named = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow/experiments/search",
        &[("Host", "localhost")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(named.status, 403, "only the listed hosts are answered");
}

#[tokio::test]
async fn a_declared_body_past_the_limit_is_refused_before_it_is_read() {
    let server = TestServer::start().await.unwrap();
    for (target, content_type) in [
        ("/api/2.0/mlflow/experiments/create", "application/json"),
        ("/api/loopline/v1/feedback", "application/json"),
        ("/api/loopline/v1/deployments", "application/json"),
    ] {
        // Five gigabytes declared, two bytes sent: the answer must not wait for the rest.
        let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: 5000000000\r\n\r\n{{}}",
            server.address
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let read = stream.read(&mut answer).await.unwrap();
        let head = String::from_utf8_lossy(&answer[..read]).to_string();
        assert!(head.starts_with("HTTP/1.1 413"), "{target}: {head}");
    }
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_cap_keeps_the_server_answering() {
    let server = TestServer::start_network(NetworkOptions {
        max_connections: 8,
        header_read_timeout_seconds: 1,
        ..NetworkOptions::default()
    })
    .await
    .unwrap();
    // Twice the cap: silent connections, and slowloris ones that send half a header.
    let mut idle = Vec::new();
    for index in 0..16 {
        let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
        if index % 2 == 1 {
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0").await.unwrap();
        }
        idle.push(stream);
    }
    // Answered once the idle connections time out and free their slots.
    let answered = tokio::time::timeout(Duration::from_secs(60), get(&server, "/health")).await;
    assert_eq!(answered.expect("a normal request was never answered").status, 200);
    for mut stream in idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "an idle connection was kept open");
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn smaller_findings_are_client_errors() {
    let server = TestServer::start().await.unwrap();
    for location in ["mlflow-artifacts://other-host:5000/x", "MLFLOW-ARTIFACTS://h/x"] {
        let created = post_json(
            &server,
            "/api/2.0/mlflow/experiments/create",
            &json!({"name": location, "artifact_location": location}),
        )
        .await;
        assert_eq!(created.status, 400, "{location}: {}", created.body_text());
    }
    for (index, location) in ["s3://bucket/%€", "s3://bucket/%aé/x"].iter().enumerate() {
        let created = post_json(
            &server,
            "/api/2.0/mlflow/experiments/create",
            &json!({"name": format!("percent-{index}"), "artifact_location": location}),
        )
        .await;
        assert_eq!(created.status, 200, "{location}: {}", created.body_text());
    }
    post_json(
        &server,
        "/api/2.0/mlflow/registered-models/create",
        &json!({"name": "m"}),
    )
    .await;
    for source in [
        "mlflow-artifacts:/",
        "mlflow-artifacts:/1",
        "mlflow-artifacts:/./1",
        "mlflow-artifacts:/serving/.",
        "mlflow-artifacts://h/1/r/artifacts/m",
        "runs:/%€/x/../..",
    ] {
        let version = post_json(
            &server,
            "/api/2.0/mlflow/model-versions/create",
            &json!({"name": "m", "source": source}),
        )
        .await;
        assert_eq!(version.status, 400, "{source}: {}", version.body_text());
    }
    let huge = 1u64 << 61;
    let deployment = post_json(
        &server,
        "/api/loopline/v1/deployments",
        &json!({"name": "d", "model": "models:/m@champion", "runtime": {"concurrency": huge}}),
    )
    .await;
    assert_eq!(deployment.status, 400, "{}", deployment.body_text());
    assert!(deployment.body_text().contains("runtime.concurrency"));
    assert_alive(&server).await;
}

fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|value| json!(value)),
        any::<i64>().prop_map(|value| json!(value)),
        any::<f64>().prop_map(|value| json!(value)),
        "[\\PC]{0,12}".prop_map(|text| json!(text)),
        Just(json!("9223372036854775808")),
        Just(json!("-1")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("experiment_id".to_string()),
                    Just("experiment_ids".to_string()),
                    Just("run_id".to_string()),
                    Just("name".to_string()),
                    Just("filter".to_string()),
                    Just("max_results".to_string()),
                    Just("order_by".to_string()),
                    Just("page_token".to_string()),
                    Just("metrics".to_string()),
                    Just("params".to_string()),
                    Just("tags".to_string()),
                    Just("key".to_string()),
                    Just("value".to_string()),
                    Just("version".to_string()),
                    Just("source".to_string()),
                    Just("query".to_string()),
                    Just("variables".to_string()),
                    Just("assessment".to_string()),
                    Just("feedback".to_string()),
                    Just("expectation".to_string()),
                    Just("serialized_value".to_string()),
                    Just("trace_ids".to_string()),
                    Just("datasets".to_string()),
                ],
                inner,
                0..6,
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn generated_json_bodies_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let endpoints = [
        "/api/2.0/mlflow/experiments/create",
        "/api/2.0/mlflow/experiments/search",
        "/api/2.0/mlflow/runs/create",
        "/api/2.0/mlflow/runs/search",
        "/api/2.0/mlflow/runs/log-batch",
        "/api/2.0/mlflow/registered-models/create",
        "/api/2.0/mlflow/model-versions/create",
        "/api/2.0/mlflow/logged-models/search",
        "/api/2.0/mlflow/logged-models",
        "/api/2.0/mlflow/traces",
        "/api/2.0/mlflow/traces/link-to-run",
        "/api/2.0/mlflow/traces/link-prompts",
        "/api/3.0/mlflow/traces",
        "/api/3.0/mlflow/traces/tr-generated/assessments",
        "/api/3.0/mlflow/datasets/create",
        "/api/3.0/mlflow/scorers/register",
        "/api/3.0/mlflow/issues",
        "/api/3.0/mlflow/issues/search",
        "/api/3.0/mlflow/traces/search",
        "/api/3.0/mlflow/traces/metrics",
        "/api/3.0/mlflow/traces/calculate-filter-correlation",
        "/api/3.0/mlflow/datasets/search",
        "/api/3.0/mlflow/datasets/d-generated/records",
        "/api/3.0/mlflow/datasets/d-generated/add-experiments",
        "/api/loopline/v1/deployments",
        "/api/loopline/v1/feedback",
        "/api/loopline/v1/datasets/generated/versions",
        "/api/loopline/v1/data/objects/missing",
        "/api/loopline/v1/data/gc",
        "/api/loopline/v1/registered-models/generated/versions/1/gate",
        "/api/loopline/v1/registered-models/generated/aliases/champion/override",
        "/api/loopline/v1/registered-models/generated/versions/1/evaluate",
        "/api/loopline/v1/pipelines",
        "/api/loopline/v1/pipelines/generated/runs",
        "/api/loopline/v1/pipeline-runs/generated/cancel",
        "/graphql",
        "/ajax-api/2.0/mlflow/experiments/search-datasets",
        "/ajax-api/2.0/mlflow/runs/create-promptlab-run",
        "/ajax-api/2.0/mlflow/upload-artifact",
        "/ajax-api/3.0/mlflow/ui-telemetry",
    ];
    let config = proptest::prelude::ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    };
    proptest::proptest!(config, |(body in json_value(), endpoint in 0..endpoints.len())| {
        let answer = runtime.block_on(post_json(&server, endpoints[endpoint], &body));
        proptest::prop_assert!(
            answer.status < 500,
            "{} {body}: {} {}",
            endpoints[endpoint],
            answer.status,
            answer.body_text()
        );
    });
    runtime.block_on(assert_alive(&server));
}

/// Trace filters and metric requests of every prefix, with generated keys, comparators and values, are a 200
/// or a 400, never a 500 (the span, assessment and issue clauses compile to SQL of their own).
#[test]
fn generated_trace_filters_and_metric_queries_never_fail_the_server() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let prefix = prop_oneof![
        Just("span."),
        Just("span.attributes."),
        Just("trace."),
        Just("feedback."),
        Just("expectation."),
        Just("issue."),
        Just("tag."),
        Just("metadata."),
        Just(""),
        Just("assessment."),
        Just("trace.tag."),
    ];
    let comparator = prop_oneof![
        Just("="),
        Just("!="),
        Just("<"),
        Just(">="),
        Just("LIKE"),
        Just("ILIKE"),
        Just("IN"),
        Just("IS"),
        Just("RLIKE"),
    ];
    let value = prop_oneof![
        "'[^']{0,12}'".prop_map(|v| v),
        Just("NULL".to_string()),
        Just("NOT NULL".to_string()),
        Just("('a', 'b')".to_string()),
        (-1e6f64..1e6).prop_map(|v| v.to_string()),
    ];
    proptest!(config, |(prefix in prefix, key in "[a-z_.`]{0,12}", comparator in comparator, value in value,
                        view in prop_oneof![Just("TRACES"), Just("SPANS"), Just("ASSESSMENTS")],
                        metric in prop_oneof![Just("trace_count"), Just("latency"), Just("span_count"),
                            Just("assessment_value"), Just("total_cost"), Just("session_count")])| {
        let filter = format!("{prefix}{key} {comparator} {value}");
        let search = runtime.block_on(post_json(&server, "/api/3.0/mlflow/traces/search",
            &serde_json::json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
                                "filter": filter})));
        prop_assert!(search.status < 500, "{filter}: {} {}", search.status, search.body_text());
        let metrics = runtime.block_on(post_json(&server, "/api/3.0/mlflow/traces/metrics",
            &serde_json::json!({"experiment_ids": ["0"], "view_type": view, "metric_name": metric,
                                "aggregations": [{"aggregation_type": "COUNT"}, {"aggregation_type": "AVG"}],
                                "filters": [filter.clone()], "time_interval_seconds": 60,
                                "start_time_ms": 0, "end_time_ms": 3_600_000})));
        prop_assert!(metrics.status < 500, "{filter}: {} {}", metrics.status, metrics.body_text());
        let correlation = runtime.block_on(post_json(&server, "/api/3.0/mlflow/traces/calculate-filter-correlation",
            &serde_json::json!({"experiment_ids": ["0"], "filter_string1": filter.clone(), "filter_string2": "status = 'OK'"})));
        prop_assert!(correlation.status < 500, "{filter}: {} {}", correlation.status, correlation.body_text());
    });
    runtime.block_on(assert_alive(&server));
}

#[tokio::test]
async fn traces_carry_a_bounded_number_of_tags() {
    let server = TestServer::start().await.unwrap();
    let start = |tags: serde_json::Map<String, serde_json::Value>| {
        json!({"trace": {"trace_info": {
            "trace_id": "tr-bounded",
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
            "request_time": "2026-01-01T00:00:00Z", "execution_duration": "1s", "state": "OK", "tags": tags}}})
    };
    let tags = |count: usize| (0..count).map(|index| (format!("k{index}"), json!("v"))).collect();
    let flooded = post_json(&server, "/api/3.0/mlflow/traces", &start(tags(1_001))).await;
    assert_eq!(flooded.status, 400, "{}", flooded.body_text());
    let full = post_json(&server, "/api/3.0/mlflow/traces", &start(tags(999))).await;
    assert_eq!(full.status, 200, "{}", full.body_text());
    let set_tag = |key: &str| {
        let body = json!({"key": key, "value": "w"}).to_string();
        let address = server.address;
        async move {
            raw_request(
                address,
                "PATCH",
                "/api/2.0/mlflow/traces/tr-bounded/tags",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await
            .unwrap()
        }
    };
    // 999 given + mlflow.artifactLocation = 1,000: a new key is refused, an existing one may change.
    assert_eq!(set_tag("one-more").await.status, 400);
    assert_eq!(set_tag("k5").await.status, 200);
    assert_alive(&server).await;
}

/// Found by an outside attack on the trace analytics: each of these was a 500 (an overflow panic, SQLite's
/// expression-depth limit) or echoed megabytes back; each is a small 400 now.
#[tokio::test]
async fn trace_analytics_refuse_extreme_inputs_with_small_400s() {
    let server = TestServer::start().await.unwrap();
    let metrics = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"experiment_ids": ["0"], "view_type": "TRACES", "metric_name": "trace_count",
            "aggregations": [{"aggregation_type": "COUNT"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let span_clauses = vec!["span.name = 'inner'"; 300].join(" AND ");
    let cases = [
        (
            "/api/3.0/mlflow/traces/metrics",
            metrics(serde_json::json!({"time_interval_seconds": 1, "start_time_ms": i64::MIN, "end_time_ms": 0})),
        ),
        (
            "/api/3.0/mlflow/traces/metrics",
            metrics(serde_json::json!({"filters": vec!["trace.status = 'OK'"; 1000]})),
        ),
        (
            "/api/3.0/mlflow/traces/search",
            serde_json::json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
                            "filter": span_clauses}),
        ),
        (
            "/api/3.0/mlflow/traces/calculate-filter-correlation",
            serde_json::json!({"experiment_ids": ["0"], "filter_string1": vec!["span.name = 'a'"; 150].join(" AND "),
                            "filter_string2": vec!["span.name = 'b'"; 150].join(" AND ")}),
        ),
        (
            "/api/3.0/mlflow/traces/search",
            serde_json::json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
                            "filter": "trace.text LIKE '%\u{0}%'"}),
        ),
        (
            "/api/3.0/mlflow/issues/search",
            serde_json::json!({"page_token": "A".repeat(1_000_000)}),
        ),
    ];
    for (path, body) in cases {
        let answer = post_json(&server, path, &body).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body_text());
        assert!(
            answer.body_text().len() < 8 * 1024,
            "{path}: the answer is {} bytes",
            answer.body_text().len()
        );
    }
    assert_alive(&server).await;
}
