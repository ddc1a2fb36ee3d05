//! Every route the server answers declares who may call it, and the guard holds to it: without credentials
//! a 401, without the level a 403, with it the handler runs.

use loopline_server::auth_options::{AuthMode, AuthOptions};
use loopline_server::config::ServerConfig;
use loopline_test_support::{TestServer, raw_request};

pub const ADMIN_PASSWORD: &str = "admin password 123";

/// A server with basic and token auth, an admin, and `default_permission` for everyone else.
pub async fn auth_server(default_permission: &str) -> (TestServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    (auth_server_in(default_permission, data.path()).await, data)
}

/// A server with basic and token auth on storage in `data` (a restart serves the same storage again).
pub async fn auth_server_in(default_permission: &str, data: &std::path::Path) -> TestServer {
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            default_permission: default_permission.to_string(),
            admin_password: Some(ADMIN_PASSWORD.to_string()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data)
    }
    .with_defaults();
    TestServer::start_with_config(config).await.unwrap()
}

pub fn basic(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Grants `username` a level on one resource (or `*`) through MLflow's auth API, as `who`.
pub async fn grant(
    server: &TestServer,
    who: &str,
    username: &str,
    kind: &str,
    id: &str,
    permission: &str,
) -> (u16, serde_json::Value) {
    json_request(
        server,
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        Some(who),
        &serde_json::json!({"username": username, "resource_type": kind, "resource_id": id, "permission": permission}),
    )
    .await
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    let mut path = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let name = &rest[start + 1..end];
        path.push_str(if name.starts_with('*') {
            "0/run/artifacts/file.txt"
        } else {
            "x1"
        });
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    path
}

/// Sends JSON with optional credentials; the status and the body as JSON (`null` when it is not JSON).
pub async fn json_request(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let body = if method == "GET" {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let response = raw_request(server.address, method, path, &headers, &body)
        .await
        .unwrap();
    let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    (response.status, value)
}

/// The status, and whether the access guard (not the handler) refused: handlers may answer 403 for their
/// own reasons (a server that runs no pipelines), in other words.
async fn call(server: &TestServer, method: &str, path: &str, authorization: Option<&str>) -> (u16, bool) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let body: &[u8] = if method == "GET" { b"" } else { b"{}" };
    let response = raw_request(server.address, method, path, &headers, body).await.unwrap();
    let text = response.body_text();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    // JSON for the APIs (`message`, `error` on Open Inference v2, `error.message` on OpenAI's), plain text for
    // pages and metrics.
    let message = json["message"]
        .as_str()
        .or(json["error"].as_str())
        .or(json["error"]["message"].as_str())
        .unwrap_or(text.trim());
    let by_guard = response.status == 401
        || (response.status == 403
            && [
                "Permission denied.",
                "This route declares no permission.",
                "The token's scopes",
            ]
            .iter()
            .any(|known| message.starts_with(known)));
    (response.status, by_guard)
}

#[tokio::test]
async fn every_route_declares_its_permission_and_no_declaration_is_stale() {
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            admin_password: Some(ADMIN_PASSWORD.to_string()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let application = loopline_server::build_application(&config).await.unwrap();
    assert!(
        application.routes.len() > 200,
        "the router's routes could not be listed"
    );
    let table = loopline_server::route_permissions::table();
    let undeclared: Vec<_> = application
        .routes
        .iter()
        .filter(|(method, path)| table.need(method, path).is_none())
        .collect();
    assert!(
        undeclared.is_empty(),
        "routes without a permission declaration: {undeclared:#?}"
    );
    let stale: Vec<_> = table
        .rows()
        .map(|(key, _)| key)
        .filter(|(method, path)| !application.routes.contains(&(method.clone(), path.clone())))
        .collect();
    assert!(
        stale.is_empty(),
        "declarations for routes the router does not have: {stale:#?}"
    );
}

#[tokio::test]
async fn every_route_answers_401_without_credentials_403_without_the_level_and_runs_with_it() {
    use loopline_http_api::access::Need;
    let (server, data) = auth_server("NO_PERMISSIONS").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let created = json_request(
        &server,
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&admin),
        &serde_json::json!({"username": "nobody", "password": "nobody's password"}),
    )
    .await;
    assert_eq!(created.0, 200, "{:?}", created.1);
    let nobody = basic("nobody", "nobody's password");
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let application = loopline_server::build_application(&config).await.unwrap();
    let table = loopline_server::route_permissions::table();
    let mut failures = Vec::new();
    for (method, pattern) in &application.routes {
        let need = *table.need(method, pattern).unwrap();
        let method = if method == "*" { "GET" } else { method.as_str() };
        let path = concrete(pattern);
        if need == Need::Public {
            continue;
        }
        let (anonymous, _) = call(&server, method, &path, None).await;
        if anonymous != 401 {
            failures.push(format!(
                "{method} {path}: {anonymous} without credentials, expected 401"
            ));
        }
        let (lacking, refused) = call(&server, method, &path, Some(&nobody)).await;
        let must_refuse = matches!(need, Need::On { .. } | Need::Create { .. } | Need::Admin);
        if must_refuse && !(lacking == 403 && refused) {
            failures.push(format!(
                "{method} {path}: {lacking} for a caller without the level, expected 403"
            ));
        }
        let (allowed, refused) = call(&server, method, &path, Some(&admin)).await;
        if refused {
            failures.push(format!("{method} {path}: {allowed} for an admin"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
