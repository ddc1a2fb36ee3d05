//! Each class of MLflow path-traversal and SSRF CVE, replayed against our server and refused.

use loopline_test_support::{TestServer, raw_request, send_json};
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "top-secret-content";

const HOSTILE_PATHS: &[&str] = &[
    "../secret.txt",
    "0/../../secret.txt",
    "%2e%2e/secret.txt",
    "%2E%2E%2Fsecret.txt",
    "%252e%252e/secret.txt",
    "%25252e%25252e/secret.txt",
    "..%5csecret.txt",
    "0\\..\\..\\secret.txt",
    "0/x%23/../../secret.txt",
    "%2f%2e%2e%2fsecret.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "C:%5cwindows",
];

fn assert_refused(status: u16, body: &str, what: &str) {
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {body}"
    );
    assert!(!body.contains(SECRET), "{what}: the secret leaked");
    assert!(!body.contains("root:x:0:0"), "{what}: /etc/passwd leaked");
}

#[tokio::test]
async fn artifact_paths_cannot_leave_the_root() {
    let server = TestServer::start().await.unwrap();
    std::fs::write(server.data_dir.join("secret.txt"), SECRET).unwrap();
    for hostile in HOSTILE_PATHS {
        let download = raw_request(
            server.address,
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{hostile}"),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_refused(download.status, &download.body_text(), &format!("GET {hostile}"));
        let listing = raw_request(
            server.address,
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={hostile}"),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_refused(listing.status, &listing.body_text(), &format!("list {hostile}"));
        let upload = raw_request(
            server.address,
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{hostile}"),
            &[],
            b"overwritten",
        )
        .await
        .unwrap();
        assert_refused(upload.status, &upload.body_text(), &format!("PUT {hostile}"));
        let deletion = raw_request(
            server.address,
            "DELETE",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{hostile}"),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_refused(deletion.status, &deletion.body_text(), &format!("DELETE {hostile}"));
    }
    assert_eq!(
        std::fs::read_to_string(server.data_dir.join("secret.txt")).unwrap(),
        SECRET
    );
    let escaped: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            ![
                "secret.txt",
                "artifacts",
                "loopline.db",
                "loopline.db-wal",
                "loopline.db-shm",
                "replica-id",
                "secrets.key",
            ]
            .contains(&name.as_str())
        })
        .collect();
    assert!(
        escaped.is_empty(),
        "files written outside the artifact root: {escaped:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn legitimate_artifact_paths_work() {
    let server = TestServer::start().await.unwrap();
    let upload = raw_request(
        server.address,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/dir/file..name.txt",
        &[],
        b"hello",
    )
    .await
    .unwrap();
    assert_eq!(upload.status, 200, "{}", upload.body_text());
    let download = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/dir/file..name.txt",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!((download.status, download.body_text().as_str()), (200, "hello"));
    let listing = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts?path=1%2Frun%2Fartifacts%2Fdir",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        listing.json(),
        json!({"files": [{"path": "file..name.txt", "is_dir": false, "file_size": 5}]})
    );
    let directory = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/dir",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(directory.status, 404);
    assert_eq!(directory.json()["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let deletion = raw_request(
        server.address,
        "DELETE",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/dir",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(deletion.status, 200, "{}", deletion.body_text());
    let gone = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/dir/file..name.txt",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(gone.status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn experiment_locations_with_arbitrary_schemes_are_refused() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    for location in [
        "http://169.254.169.254/latest/meta-data",
        "file:///etc",
        "/etc",
        "ftp://host/x",
        "s3://bucket/../../x",
        "gopher://x",
    ] {
        let (status, body) = send_json(
            &client,
            Method::POST,
            &server.url("/api/2.0/mlflow/experiments/create"),
            &json!({"name": location, "artifact_location": location}),
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{location}: {body}");
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let (status, _) = send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/experiments/create"),
        &json!({"name": "ok", "artifact_location": "s3://bucket/prefix"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn model_version_sources_outside_the_store_are_refused() {
    let server = TestServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let (status, _) = send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/registered-models/create"),
        &json!({"name": "m"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    for source in [
        "/etc/passwd",
        "file:///etc/passwd",
        "runs:/abc/../../../../etc",
        "mlflow-artifacts:/%2e%2e/%2e%2e/etc",
        "http://evil.example/model",
        "models:/m-1#/../x",
    ] {
        let (status, body) = send_json(
            &client,
            Method::POST,
            &server.url("/api/2.0/mlflow/model-versions/create"),
            &json!({"name": "m", "source": source}),
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{source}: {body}");
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_operator_rule_on_version_sources_is_kept_as_mlflow_keeps_it() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        loopline_server::config::ServerConfig {
            registry: loopline_server::config::RegistryOptions {
                source_regex: Some("^mlflow-artifacts:/".to_string()),
            },
            ..TestServer::config_in(data.path())
        }
        .with_defaults(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let create = |body: serde_json::Value, path: &'static str| {
        let client = client.clone();
        let url = server.url(path);
        async move { send_json(&client, Method::POST, &url, &body).await.unwrap() }
    };
    assert_eq!(
        create(json!({"name": "m"}), "/api/2.0/mlflow/registered-models/create")
            .await
            .0,
        200
    );
    let (status, body) = create(
        json!({"name": "m", "source": "s3://bucket/model"}),
        "/api/2.0/mlflow/model-versions/create",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "Invalid model version source: 's3://bucket/model'.");
    let (status, body) = create(
        json!({"name": "m", "source": "mlflow-artifacts:/0/models/m-1/artifacts"}),
        "/api/2.0/mlflow/model-versions/create",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await.unwrap();
    // A rule that does not compile stops the server at start, naming the flag.
    let broken = loopline_server::config::RegistryOptions {
        source_regex: Some("(unclosed".to_string()),
    };
    assert!(
        broken
            .source_pattern()
            .unwrap_err()
            .contains("--model-version-source-regex")
    );
    // Thousands of capture groups would let one request hold gigabytes while matching: refused at start.
    let greedy = loopline_server::config::RegistryOptions {
        source_regex: Some("(a)".repeat(5_000)),
    };
    assert!(greedy.source_pattern().unwrap_err().contains("non-capturing groups"));
}
