//! Many concurrent clients logging to shared and separate runs: zero errors, every point stored.

use futures::future::join_all;
use loopline_test_support::{TestServer, send_json};
use reqwest::Method;
use serde_json::json;

const CLIENTS: usize = 64;
const BATCHES_PER_CLIENT: usize = 10;
const POINTS_PER_BATCH: usize = 20;

async fn new_run(client: &reqwest::Client, server: &TestServer) -> String {
    let (status, body) = send_json(
        client,
        Method::POST,
        &server.url("/api/2.0/mlflow/runs/create"),
        &json!({"experiment_id": "0"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

async fn history_length(client: &reqwest::Client, server: &TestServer, run_id: &str, key: &str) -> usize {
    let url = server.url(&format!(
        "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}"
    ));
    let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    body["metrics"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_lose_nothing() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let shared_run = new_run(&client, &server).await;
    let mut own_runs = Vec::new();
    for _ in 0..CLIENTS {
        own_runs.push(new_run(&client, &server).await);
    }
    let tasks = (0..CLIENTS).map(|client_index| {
        let client = client.clone();
        let url = server.url("/api/2.0/mlflow/runs/log-batch");
        let shared_run = shared_run.clone();
        let own_run = own_runs[client_index].clone();
        async move {
            let mut failures = Vec::new();
            for batch_index in 0..BATCHES_PER_CLIENT {
                let metrics: Vec<_> = (0..POINTS_PER_BATCH)
                    .map(|point| {
                        let step = (batch_index * POINTS_PER_BATCH + point) as i64;
                        json!({"key": format!("client_{client_index}"), "value": step as f64, "timestamp": 1, "step": step})
                    })
                    .collect();
                for run_id in [&shared_run, &own_run] {
                    let body = json!({"run_id": run_id, "metrics": metrics, "params": [{"key": format!("client_{client_index}"), "value": "set"}]});
                    let (status, response) = send_json(&client, Method::POST, &url, &body).await.unwrap();
                    if status != 200 {
                        failures.push(format!("{status}: {response}"));
                    }
                }
            }
            failures
        }
    });
    let failures: Vec<String> = join_all(tasks).await.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    let expected = BATCHES_PER_CLIENT * POINTS_PER_BATCH;
    for (client_index, own_run) in own_runs.iter().enumerate() {
        let key = format!("client_{client_index}");
        assert_eq!(history_length(&client, &server, own_run, &key).await, expected);
        assert_eq!(history_length(&client, &server, &shared_run, &key).await, expected);
    }
    server.stop().await.unwrap();
}
