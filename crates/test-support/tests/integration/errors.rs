//! Bad input gets MLflow's error shape with the right 4xx status, naming what is wrong.

use loopline_test_support::{TestServer, raw_request, send_json};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn unknown_routes_are_endpoint_not_found() {
    let server = TestServer::start().await.unwrap();
    let response = raw_request(server.address, "GET", "/api/2.0/mlflow/no-such-thing", &[], b"")
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error_code"], "ENDPOINT_NOT_FOUND");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_are_400s_naming_the_field() {
    let server = TestServer::start().await.unwrap();
    let address = server.address;
    let json_header = [("Content-Type", "application/json")];
    let broken = raw_request(
        address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &json_header,
        b"{not json",
    )
    .await
    .unwrap();
    assert_eq!(broken.status, 400);
    assert_eq!(broken.json()["error_code"], "BAD_REQUEST");
    let missing = raw_request(
        address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &json_header,
        b"{}",
    )
    .await
    .unwrap();
    assert_eq!(missing.status, 400);
    assert!(
        missing.json()["message"].as_str().unwrap().contains("'name'"),
        "{}",
        missing.body_text()
    );
    let wrong_type = raw_request(
        address,
        "POST",
        "/api/2.0/mlflow/runs/search",
        &json_header,
        br#"{"experiment_ids":["0"],"max_results":"many"}"#,
    )
    .await
    .unwrap();
    assert_eq!(wrong_type.status, 400);
    assert!(
        wrong_type.json()["message"].as_str().unwrap().contains("max_results"),
        "{}",
        wrong_type.body_text()
    );
    let not_object = raw_request(address, "POST", "/api/2.0/mlflow/runs/create", &json_header, b"[1,2]")
        .await
        .unwrap();
    assert_eq!(not_object.status, 400);
    let bad_metric = raw_request(
        address,
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        &json_header,
        br#"{"run_id":"x","key":"k","value":"abc"}"#,
    )
    .await
    .unwrap();
    assert_eq!(bad_metric.status, 400);
    assert!(
        bad_metric.json()["message"].as_str().unwrap().contains("value"),
        "{}",
        bad_metric.body_text()
    );
    // A point without a time is refused as MLflow refuses it, naming the field, not stamped with "now".
    for (path, body, field) in [
        (
            "log-metric",
            br#"{"run_id":"x","key":"k","value":1.5}"#.as_slice(),
            "'timestamp'",
        ),
        (
            "log-batch",
            br#"{"run_id":"x","metrics":[{"key":"a","value":1,"timestamp":5},{"key":"b","value":2}]}"#.as_slice(),
            "'metrics[1].timestamp'",
        ),
    ] {
        let untimed = raw_request(
            address,
            "POST",
            &format!("/api/2.0/mlflow/runs/{path}"),
            &json_header,
            body,
        )
        .await
        .unwrap();
        assert_eq!(untimed.status, 400, "{path}");
        assert_eq!(untimed.json()["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            untimed.json()["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Missing value for required parameter {field}")),
            "{}",
            untimed.body_text()
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_a_413() {
    let server = TestServer::start().await.unwrap();
    let huge = vec![b' '; 17 * 1024 * 1024];
    let response = raw_request(
        server.address,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        &[("Content-Type", "application/json")],
        &huge,
    )
    .await
    .unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error_code"], "REQUEST_LIMIT_EXCEEDED");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn missing_things_are_404s_and_duplicates_400s() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let missing_run = client
        .get(server.url("/api/2.0/mlflow/runs/get?run_id=00000000000000000000000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_run.status().as_u16(), 404);
    let body: serde_json::Value = missing_run.json().await.unwrap();
    assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let missing_experiment = client
        .get(server.url("/api/2.0/mlflow/experiments/get-by-name?experiment_name=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_experiment.status().as_u16(), 404);
    let url = server.url("/api/2.0/mlflow/experiments/create");
    assert_eq!(
        send_json(&client, Method::POST, &url, &json!({"name": "dup"}))
            .await
            .unwrap()
            .0,
        200
    );
    let (status, body) = send_json(&client, Method::POST, &url, &json!({"name": "dup"}))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("RESOURCE_ALREADY_EXISTS"))
    );
    let (status, body) = send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/runs/search"),
        &json!({"experiment_ids": ["0"], "filter": "metrics.a >> 1"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains(">>"), "{body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_newer_schema_is_refused_at_start() {
    let server = TestServer::start().await.unwrap();
    let data_dir = server.data_dir.clone();
    server.stop().await.unwrap();
    let database = data_dir.join("loopline.db");
    let store_uri = format!("sqlite:///{}", database.display());
    // Bump the recorded schema version past what this binary knows, as a newer release would.
    let store = loopline_metadata_store::SqlStore::connect(&store_uri, "mlflow-artifacts:")
        .await
        .unwrap();
    store.close().await;
    let connection = sqlite_raw_update(&database, "UPDATE loopline_schema SET version = 999").await;
    assert!(connection.is_ok(), "{connection:?}");
    let error = loopline_metadata_store::SqlStore::connect(&store_uri, "mlflow-artifacts:")
        .await
        .err()
        .expect("newer schema must be refused");
    assert!(error.to_string().contains("999"), "{error}");
}

async fn sqlite_raw_update(database: &std::path::Path, statement: &'static str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", database.display())).await?;
    sqlx::query(statement).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn every_answer_names_loopline_and_its_version() {
    let server = TestServer::start().await.unwrap();
    let own = raw_request(server.address, "GET", "/api/loopline/v1/version", &[], b"")
        .await
        .unwrap();
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["loopline"], env!("CARGO_PKG_VERSION"));
    assert_eq!(own.json()["mlflow_api"], "3.17.2");
    // On every answer, errors included.
    let missing = raw_request(server.address, "GET", "/api/2.0/mlflow/no-such-thing", &[], b"")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-loopline-version"), Some(env!("CARGO_PKG_VERSION")));
    server.stop().await.unwrap();
}
