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

/// A metric sent as a JSON number is stored and answered bit for bit, and found by a filter on the same
/// text (serde_json's fast float parsing is one unit in the last place off for about one double in ten).
#[tokio::test]
async fn metric_values_round_trip_exactly() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let run_id = create_run(&client, &server).await;
    let values: [f64; 6] = [
        13.114189588902203,
        0.30000000000000004,
        123_456.789_012_345_67,
        2.225_073_858_507_201_4e-308,
        5e-324,
        1.797_693_134_862_315_7e308,
    ];
    for (index, value) in values.iter().enumerate() {
        // The body is written as text so the number reaches the server exactly as a client prints it.
        let body =
            format!(r#"{{"run_id": "{run_id}", "key": "v{index}", "value": {value:?}, "timestamp": 1, "step": 0}}"#);
        let answer = client
            .post(server.url("/api/2.0/mlflow/runs/log-metric"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let run: serde_json::Value = client
        .get(server.url(&format!("/api/2.0/mlflow/runs/get?run_id={run_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metrics = run["run"]["data"]["metrics"].as_array().unwrap();
    for (index, value) in values.iter().enumerate() {
        let stored = metrics
            .iter()
            .find(|metric| metric["key"] == format!("v{index}"))
            .unwrap()["value"]
            .as_f64()
            .unwrap();
        assert_eq!(
            stored.to_bits(),
            value.to_bits(),
            "v{index}: sent {value:?}, stored {stored:?}"
        );
    }
    let found: serde_json::Value = client
        .post(server.url("/api/2.0/mlflow/runs/search"))
        .json(&json!({"experiment_ids": ["0"], "filter": "metrics.v0 = 13.114189588902203"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["runs"].as_array().map(Vec::len), Some(1), "{found}");
}
