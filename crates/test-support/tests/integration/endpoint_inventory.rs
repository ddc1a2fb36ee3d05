//! Every (method, path) the stock mlflow 3.17.2 client was recorded using (../shared/fixtures, summarised
//! here) is routed: it may answer 4xx for the placeholder ids below, but never "no such endpoint".

use loopline_test_support::{TestServer, raw_request};

const MODEL: &str = "m-00000000000000000000000000000000";
const TRACE: &str = "tr-00000000000000000000000000000000";

fn recorded_endpoints() -> Vec<(&'static str, String)> {
    let api = "/api/2.0/mlflow";
    let api3 = "/api/3.0/mlflow";
    let mut endpoints: Vec<(&'static str, String)> = vec![
        ("GET", "/version".into()),
        ("GET", "/health".into()),
        ("POST", "/v1/traces".into()),
        ("GET", format!("{api3}/server-info")),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts".into()),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/f.txt".into()),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/f.txt".into()),
        ("GET", format!("{api}/logged-models/{MODEL}")),
        ("PATCH", format!("{api}/logged-models/{MODEL}")),
        ("PATCH", format!("{api}/logged-models/{MODEL}/tags")),
        ("DELETE", format!("{api}/logged-models/{MODEL}/tags/some-key")),
        ("POST", format!("{api}/logged-models")),
        ("POST", format!("{api}/logged-models/search")),
        ("GET", format!("{api3}/traces/batchGet")),
        ("GET", format!("{api3}/traces/get")),
        ("GET", format!("{api3}/traces/{TRACE}")),
        ("PATCH", format!("{api}/traces/{TRACE}/tags")),
        ("DELETE", format!("{api}/traces/{TRACE}/tags")),
        ("POST", format!("{api3}/traces")),
        ("POST", format!("{api3}/traces/search")),
        ("POST", format!("{api3}/traces/{TRACE}/assessments")),
        ("POST", format!("{api}/traces/delete-traces")),
    ];
    for (method, path) in [
        ("GET", "experiments/get"),
        ("GET", "experiments/get-by-name"),
        ("POST", "experiments/create"),
        ("POST", "experiments/delete"),
        ("POST", "experiments/delete-experiment-tag"),
        ("POST", "experiments/restore"),
        ("POST", "experiments/search"),
        ("POST", "experiments/set-experiment-tag"),
        ("POST", "experiments/update"),
        ("GET", "metrics/get-history"),
        ("GET", "runs/get"),
        ("POST", "runs/create"),
        ("POST", "runs/delete"),
        ("POST", "runs/delete-tag"),
        ("POST", "runs/log-batch"),
        ("POST", "runs/log-inputs"),
        ("POST", "runs/log-metric"),
        ("POST", "runs/log-parameter"),
        ("POST", "runs/outputs"),
        ("POST", "runs/restore"),
        ("POST", "runs/search"),
        ("POST", "runs/set-tag"),
        ("POST", "runs/update"),
        ("GET", "model-versions/get"),
        ("GET", "model-versions/get-download-uri"),
        ("GET", "model-versions/search"),
        ("PATCH", "model-versions/update"),
        ("POST", "model-versions/create"),
        ("POST", "model-versions/set-tag"),
        ("POST", "model-versions/transition-stage"),
        ("DELETE", "model-versions/delete"),
        ("DELETE", "model-versions/delete-tag"),
        ("GET", "registered-models/alias"),
        ("GET", "registered-models/get"),
        ("GET", "registered-models/search"),
        ("PATCH", "registered-models/update"),
        ("POST", "registered-models/alias"),
        ("POST", "registered-models/create"),
        ("POST", "registered-models/get-latest-versions"),
        ("POST", "registered-models/rename"),
        ("POST", "registered-models/set-tag"),
        ("DELETE", "registered-models/alias"),
        ("DELETE", "registered-models/delete"),
        ("DELETE", "registered-models/delete-tag"),
    ] {
        endpoints.push((method, format!("{api}/{path}")));
    }
    endpoints
}

#[tokio::test]
async fn every_recorded_client_endpoint_is_routed() {
    let server = TestServer::start().await.unwrap();
    let json = [("Content-Type", "application/json")];
    let mut unrouted = Vec::new();
    for (method, path) in recorded_endpoints() {
        let body: &[u8] = if method == "GET" { b"" } else { b"{}" };
        let response = raw_request(server.address, method, &path, &json, body).await.unwrap();
        let text = response.body_text();
        if response.status == 405 || text.contains("ENDPOINT_NOT_FOUND") || response.status >= 500 {
            unrouted.push(format!("{method} {path} -> {} {text}", response.status));
        }
    }
    assert!(
        unrouted.is_empty(),
        "endpoints the mlflow client uses are missing:\n{}",
        unrouted.join("\n")
    );
    server.stop().await.unwrap();
}
