//! Proto3-JSON details the mlflow client depends on.

use loopline_test_support::{TestServer, send_json};
use reqwest::Method;
use serde_json::json;

async fn create_run(client: &reqwest::Client, server: &TestServer) -> String {
    let (status, body) = send_json(
        client,
        Method::POST,
        &server.url("/api/2.0/mlflow/runs/create"),
        &json!({"experiment_id": "0", "start_time": "1000"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn doubles_int64_and_empty_fields_follow_proto3_json() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let run_id = create_run(&client, &server).await;
    let log = server.url("/api/2.0/mlflow/runs/log-batch");
    let batch = json!({"run_uuid": run_id, "metrics": [
        {"key": "nan", "value": "NaN", "timestamp": 5, "step": 0},
        {"key": "pos", "value": "Infinity", "timestamp": "6", "step": "1"},
        {"key": "neg", "value": "-Infinity", "timestamp": 7, "step": 2},
    ]});
    assert_eq!(
        send_json(&client, Method::POST, &log, &batch).await.unwrap(),
        (200, json!({}))
    );
    let run: serde_json::Value = client
        .get(server.url(&format!("/api/2.0/mlflow/runs/get?run_uuid={run_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metrics = run["run"]["data"]["metrics"].as_array().unwrap();
    let value_of = |key: &str| metrics.iter().find(|metric| metric["key"] == key).unwrap()["value"].clone();
    assert_eq!(value_of("nan"), json!("NaN"));
    assert_eq!(value_of("pos"), json!("Infinity"));
    assert_eq!(value_of("neg"), json!("-Infinity"));
    assert_eq!(run["run"]["info"]["start_time"], json!(1000));
    assert_eq!(run["run"]["info"]["run_uuid"], run["run"]["info"]["run_id"]);
    assert!(run["run"]["info"].get("end_time").is_none(), "unset fields are omitted");
    assert!(run["run"]["data"].get("params").is_none(), "empty lists are omitted");
    let empty: serde_json::Value = client
        .post(server.url("/api/2.0/mlflow/runs/search"))
        .json(&json!({"experiment_ids": ["0"], "filter": "tags.none = 'x'"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, json!({}));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn get_messages_use_repeated_keys_and_python_booleans() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    for name in ["b-model", "a-model"] {
        send_json(
            &client,
            Method::POST,
            &server.url("/api/2.0/mlflow/registered-models/create"),
            &json!({"name": name}),
        )
        .await
        .unwrap();
    }
    let body: serde_json::Value =
        client
            .get(server.url(
                "/api/2.0/mlflow/registered-models/search?max_results=10&order_by=name+DESC&order_by=timestamp+ASC",
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let names: Vec<&str> = body["registered_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b-model", "a-model"]);
    let (status, _) = send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/model-versions/create"),
        &json!({"name": "a-model", "source": "mlflow-artifacts:/0/x"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let transition = client
        .post(server.url("/api/2.0/mlflow/model-versions/transition-stage"))
        .json(&json!({"name": "a-model", "version": "1", "stage": "Staging", "archive_existing_versions": "False"}))
        .send()
        .await
        .unwrap();
    assert_eq!(transition.status().as_u16(), 200);
    // DELETE carries its message in a JSON body.
    let (status, body) = send_json(
        &client,
        Method::DELETE,
        &server.url("/api/2.0/mlflow/registered-models/delete"),
        &json!({"name": "b-model"}),
    )
    .await
    .unwrap();
    assert_eq!((status, body), (200, json!({})));
    let gone = client
        .get(server.url("/api/2.0/mlflow/registered-models/get?name=b-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn prompt_clause_matches_models_without_the_tag() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/registered-models/create"),
        &json!({"name": "plain"}),
    )
    .await
    .unwrap();
    send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/registered-models/create"),
        &json!({"name": "a-prompt", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
    )
    .await
    .unwrap();
    let url = server.url("/api/2.0/mlflow/registered-models/search?filter=name+LIKE+%27%25%27+AND+tag.%60mlflow.prompt.is_prompt%60+%21%3D+%27true%27");
    let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = body["registered_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["plain"]);
    server.stop().await.unwrap();
}
