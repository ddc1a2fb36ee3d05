//! The same access rules on two replicas of one PostgreSQL database: users, grants and tokens made on one
//! hold on the other, and a revocation on one is refused by the other within its cache check (half a
//! second), never later.

use super::deployments_replicas::fresh_database;
use super::route_permissions::{ADMIN_PASSWORD, basic, grant, json_request};
use loopline_server::auth_options::{AuthMode, AuthOptions};
use loopline_server::config::ServerConfig;
use loopline_test_support::TestServer;
use serde_json::json;
use std::time::{Duration, Instant};

async fn replica(backend: &str, artifacts: &std::path::Path, data: &std::path::Path) -> TestServer {
    let config = ServerConfig {
        backend_store_uri: backend.to_string(),
        artifacts_destination: artifacts.display().to_string(),
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            admin_password: Some(ADMIN_PASSWORD.to_string()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data)
    };
    TestServer::start_with_config(config).await.unwrap()
}

/// The status `who` gets from `path` once the replicas agree (a bounded wait for the other's cache check).
async fn settled_status(server: &TestServer, who: &str, path: &str, wanted: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = json_request(server, "GET", path, Some(who), &json!({})).await;
        if status == wanted || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_grants_and_revocations_hold_across_replicas() {
    let Some(backend) = fresh_database().await else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let artifacts = storage.path().join("artifacts");
    // Both start at once: one creates the admin and the built-in roles, the other finds them.
    let (data_a, data_b) = (storage.path().join("a"), storage.path().join("b"));
    let (first, second) = tokio::join!(
        replica(&backend, &artifacts, &data_a),
        replica(&backend, &artifacts, &data_b)
    );
    let admin = basic("admin", ADMIN_PASSWORD);
    let (status, _) = json_request(
        &first,
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&admin),
        &json!({"username": "rita", "password": "rita's password"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, roles) = json_request(
        &second,
        "GET",
        "/api/3.0/mlflow/roles/list?workspace=default",
        Some(&admin),
        &json!({}),
    )
    .await;
    let builtin: Vec<&str> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|role| role["name"].as_str())
        .collect();
    for name in ["admin", "editor", "viewer"] {
        assert_eq!(builtin.iter().filter(|found| **found == name).count(), 1, "{roles}");
    }
    let editor = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|role| role["name"] == "editor")
        .unwrap()["id"]
        .clone();
    let (status, _) = json_request(
        &second,
        "POST",
        "/api/3.0/mlflow/roles/assign",
        Some(&admin),
        &json!({"username": "rita", "role_id": editor}),
    )
    .await;
    assert_eq!(status, 200);
    // Rita signs in on the other replica and creates; she manages it on the first.
    let rita = basic("rita", "rita's password");
    let (status, created) = json_request(
        &second,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        Some(&rita),
        &json!({"name": "ritas"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let experiment = created["experiment_id"].as_str().unwrap().to_string();
    // A token made on one replica works on the other until it is revoked on the first.
    let (_, issued) = json_request(
        &first,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&rita),
        &json!({"name": "ci"}),
    )
    .await;
    let bearer = format!("Bearer {}", issued["token"].as_str().unwrap());
    let current = "/api/2.0/mlflow/users/current";
    assert_eq!(settled_status(&second, &bearer, current, 200).await, 200);
    let token_id = issued["token_id"].as_str().unwrap();
    let (status, _) = json_request(
        &first,
        "DELETE",
        &format!("/api/loopline/v1/access/tokens/{token_id}"),
        Some(&rita),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(settled_status(&second, &bearer, current, 401).await, 401);
    for _ in 0..3 {
        assert_eq!(
            json_request(&second, "GET", current, Some(&bearer), &json!({})).await.0,
            401
        );
    }
    // A DENY set on one replica is obeyed by the other.
    let get = format!("/api/2.0/mlflow/experiments/get?experiment_id={experiment}");
    assert_eq!(json_request(&first, "GET", &get, Some(&rita), &json!({})).await.0, 200);
    let (status, _) = grant(&first, &admin, "rita", "experiment", &experiment, "DENY").await;
    assert_eq!(status, 200);
    assert_eq!(settled_status(&second, &rita, &get, 403).await, 403);
}
