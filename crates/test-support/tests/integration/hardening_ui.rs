//! Hostile input on the web UI's routes: GraphQL nested 10,000 deep or declared 2^60 bytes long, chart
//! requests with huge and wrapping numbers, uploads that declare more than they send, assessments nested past
//! any parser's depth, and generated query strings on every UI GET route. Each is a 4xx (GraphQL: its own
//! error shape) and the server keeps answering.

use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serving::post_json;

async fn get(server: &TestServer, target: &str) -> RawResponse {
    raw_request(server.address, "GET", target, &[], b"").await.unwrap()
}

async fn assert_alive(server: &TestServer) {
    assert_eq!(get(server, "/health").await.status, 200, "the server stopped answering");
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Declares `length` bytes, sends two, and returns the status line the server answers with.
async fn declared(server: &TestServer, target: &str, length: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{}}",
        server.address
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..read])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn graphql_documents_past_every_bound_are_graphql_errors() {
    let server = TestServer::start().await.unwrap();
    let deep = format!("{{{}}}", "a {".repeat(10_000) + &"}".repeat(10_000));
    let deep_value = format!(
        "{{ test(inputString: {}1{}) {{ output }} }}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let wide = format!("{{ {} }}", "a ".repeat(100_000));
    for query in [deep, deep_value, wide, "{ a(x: \"never closed) }".to_string()] {
        let answer = post_json(&server, "/graphql", &json!({"query": query})).await;
        assert_eq!(answer.status, 200, "{}", answer.body_text());
        let body = answer.json();
        assert!(body["data"].is_null() && body["errors"][0].is_string(), "{body}");
    }
    // Variables nested past JSON's depth limit, and a body declared 2^60 bytes long.
    let nested = "[".repeat(10_000) + &"]".repeat(10_000);
    let raw = format!("{{\"query\": \"{{ test {{ output }} }}\", \"variables\": {{\"v\": {nested}}}}}");
    let answer = raw_request(
        server.address,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        raw.as_bytes(),
    )
    .await
    .unwrap();
    assert!(answer.status < 500, "{}", answer.body_text());
    let head = declared(&server, "/graphql", &(1u64 << 60).to_string()).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_alive(&server).await;
}

#[tokio::test]
async fn chart_uploads_and_assessments_with_lying_sizes_and_numbers_are_refused() {
    let server = TestServer::start().await.unwrap();
    let experiment = post_json(&server, "/api/2.0/mlflow/experiments/create", &json!({"name": "e"}))
        .await
        .json();
    let run = post_json(
        &server,
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": experiment["experiment_id"], "start_time": 1}),
    )
    .await
    .json();
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    for extreme in [
        "1152921504606846976",
        "-9223372036854775808",
        "99999999999999999999999",
        "1e400",
        "NaN",
    ] {
        let chart = get(
            &server,
            &format!(
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={run_id}&metric_key=m&max_results={extreme}\
                 &start_step={extreme}&end_step=9223372036854775807"
            ),
        )
        .await;
        assert!(
            (400..500).contains(&chart.status),
            "{extreme}: {} {}",
            chart.status,
            chart.body_text()
        );
        let bulk = get(
            &server,
            &format!(
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id={run_id}&metric_key=m&max_results={extreme}"
            ),
        )
        .await;
        assert!(bulk.status < 500, "{extreme}: {} {}", bulk.status, bulk.body_text());
    }
    // A whole range of steps, the widest there is: answered, bounded.
    let widest = get(
        &server,
        &format!(
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={run_id}&metric_key=m\
             &start_step=-9223372036854775808&end_step=9223372036854775807&max_results=2500"
        ),
    )
    .await;
    assert_eq!(widest.status, 200, "{}", widest.body_text());
    // An upload declaring 2^60 bytes is refused before its body is read.
    let head = declared(
        &server,
        &format!("/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}&path=big.bin"),
        &(1u64 << 60).to_string(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // An assessment nested 10,000 deep never reaches the store.
    let nested = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    let body = format!("{{\"assessment\": {{\"assessment_name\": \"n\", \"feedback\": {{\"value\": {nested}}}}}}}");
    let answer = raw_request(
        server.address,
        "POST",
        "/api/3.0/mlflow/traces/tr-x/assessments",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert!(
        (400..500).contains(&answer.status),
        "{} {}",
        answer.status,
        answer.body_text()
    );
    assert_alive(&server).await;
}

#[test]
fn generated_queries_on_the_ui_routes_never_get_a_server_error() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let routes = [
        "/ajax-api/2.0/mlflow/artifacts/list",
        "/get-artifact",
        "/model-versions/get-artifact",
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
        "/ajax-api/2.0/mlflow/logged-models/m-generated/artifacts/directories",
        "/ajax-api/2.0/mlflow/logged-models/m-generated/artifacts/files",
        "/ajax-api/3.0/mlflow/get-trace-artifact",
        "/static-files/static/js/main.js",
        "/graphql",
    ];
    let key = prop_oneof![
        Just("run_id"),
        Just("run_uuid"),
        Just("run_ids"),
        Just("path"),
        Just("name"),
        Just("version"),
        Just("metric_key"),
        Just("start_step"),
        Just("end_step"),
        Just("max_results"),
        Just("artifact_file_path"),
        Just("artifact_directory_path"),
        Just("query"),
        Just("variables"),
    ];
    let value = prop_oneof![
        "[\\PC]{0,16}",
        Just("../../../../etc/passwd".to_string()),
        Just("%2e%2e/%2e%2e/secret".to_string()),
        Just("1152921504606846976".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("{ a { b { c } } }".to_string()),
        Just("{\"v\": [[[[1]]]]}".to_string()),
    ];
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in 0..routes.len(), pairs in proptest::collection::vec((key, value), 0..5))| {
        let query: Vec<String> = pairs.iter().map(|(key, value)| format!("{key}={}", encoded(value))).collect();
        let target = format!("{}?{}", routes[route], query.join("&"));
        let answer = runtime.block_on(get(&server, &target));
        prop_assert!(answer.status < 500, "{target}: {} {}", answer.status, answer.body_text());
    });
    runtime.block_on(assert_alive(&server));
}
