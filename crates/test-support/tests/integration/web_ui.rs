//! The stock MLflow web UI served from an installed build, the /ajax-api twins of the REST routes, and the
//! routes that tell the UI which features are off.

use loopline_server::config::{ServerConfig, UiOptions};
use loopline_test_support::TestServer;

async fn server_with_ui(ui: &str) -> (TestServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        ui: UiOptions {
            mlflow_ui: Some(ui.into()),
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    (TestServer::start_with_config(config).await.unwrap(), data)
}

/// A directory laid out as the wheel's `mlflow/server/js/build`, inside a fake `mlflow` package.
fn fake_package(root: &std::path::Path) -> std::path::PathBuf {
    let build = root.join("mlflow/server/js/build");
    std::fs::create_dir_all(build.join("static/js")).unwrap();
    std::fs::write(build.join("index.html"), "<!doctype html><title>MLflow</title>").unwrap();
    std::fs::write(build.join("static/js/main.abc.js"), "console.log(1)").unwrap();
    std::fs::write(root.join("secret.txt"), "top-secret").unwrap();
    root.join("mlflow")
}

#[tokio::test]
async fn the_installed_ui_is_served_with_its_bundle_and_nothing_outside_it() {
    let packages = tempfile::tempdir().unwrap();
    let package = fake_package(packages.path());
    let (server, _data) = server_with_ui(package.to_str().unwrap()).await;
    let client = reqwest::Client::new();
    // As a browser asks for it (without HTML in Accept, `/` answers Qdrant's service information).
    let index = client
        .get(server.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.text().await.unwrap().contains("<title>MLflow</title>"));
    let script = client
        .get(server.url("/static-files/static/js/main.abc.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    for hostile in [
        "/static-files/../../secret.txt",
        "/static-files/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/static-files/static/..%2f..%2f..%2fsecret.txt",
        "/static-files/static/js/missing.js",
    ] {
        let answer = client.get(server.url(hostile)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{hostile}");
        assert!(!answer.text().await.unwrap().contains("top-secret"), "{hostile}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_rest_api_answers_under_ajax_api_and_the_ui_learns_what_is_off() {
    let (server, _data) = server_with_ui("none").await;
    let client = reqwest::Client::new();
    let page = client
        .get(server.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("pip install mlflow"), "{page}");
    assert!(page.contains("href=\"/loopline/deployments\""), "{page}");
    let get_json = |path: &str| {
        let request = client.get(server.url(path));
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let twin = get_json("/ajax-api/2.0/mlflow/experiments/search?max_results=5").await;
    assert_eq!(twin["experiments"][0]["name"], "Default");
    let info = get_json("/ajax-api/3.0/mlflow/server-info").await;
    assert_eq!(info["features_enabled"]["gateway"], true);
    for (path, key) in [
        ("/ajax-api/3.0/mlflow/assistant/config", "providers"),
        ("/ajax-api/3.0/mlflow/assistant/providers", "providers"),
        ("/ajax-api/3.0/mlflow/ui-telemetry", "disable_ui_telemetry"),
        (
            "/ajax-api/2.0/mlflow/gateway-proxy?gateway_path=api%2F2.0%2Fendpoints%2F",
            "endpoints",
        ),
    ] {
        let answer = get_json(path).await;
        assert!(answer.get(key).is_some(), "{path}: {answer}");
    }
    let records = client
        .post(server.url("/ajax-api/3.0/mlflow/ui-telemetry"))
        .json(&serde_json::json!({"records": [{"event": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(records.json::<serde_json::Value>().await.unwrap()["status"], "disabled");
    // The query string survives the rewrite; an unknown ajax route is the API's 404.
    let missing = client
        .get(server.url("/ajax-api/2.0/mlflow/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_ui_path_without_a_build_stops_the_server_saying_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        ui: UiOptions {
            mlflow_ui: Some(empty.path().to_path_buf()),
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = loopline_server::serve(config, listener, std::future::pending())
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("no MLflow UI build"), "{error}");
}

#[tokio::test]
async fn a_virtual_environment_named_as_the_ui_is_searched_for_the_package() {
    let environment = tempfile::tempdir().unwrap();
    let site = environment.path().join("lib/python3.11/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    fake_package(&site);
    let (server, _data) = server_with_ui(environment.path().to_str().unwrap()).await;
    let index = reqwest::Client::new()
        .get(server.url("/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("<title>MLflow</title>"));
}
