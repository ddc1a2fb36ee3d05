//! Browser sign-in against a fake OIDC provider on loopback: the test plays the browser (following the
//! redirects by hand, keeping the cookies) and the provider's user (who approves the sign-in). A completed
//! sign-in opens a session the guard accepts; a forged, replayed or foreign answer does not.

use super::access_oidc::{SigningKey, now};
use super::route_permissions::json_request;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use loopline_server::auth_options::{AuthMode, AuthOptions};
use loopline_server::config::ServerConfig;
use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the fake provider knows about one approved sign-in, by code.
struct Approved {
    claims: Value,
    challenge: String,
    redirect_uri: String,
}

struct Provider {
    issuer: String,
    key: SigningKey,
    approved: Mutex<HashMap<String, Approved>>,
}

/// A provider with discovery, keys, an authorization endpoint (never called: the test approves directly)
/// and a token endpoint that checks the code, the redirect URI, the client and the PKCE verifier.
async fn provider() -> Arc<Provider> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let provider = Arc::new(Provider {
        issuer: issuer.clone(),
        key: SigningKey::generate("key-1"),
        approved: Mutex::new(HashMap::new()),
    });
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"), "token_endpoint": format!("{issuer}/token")});
    let jwks = json!({"keys": [provider.key.jwk()]});
    let at_token = provider.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }))
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let provider = at_token.clone();
                async move {
                    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    // A code works once.
                    let approved = provider
                        .approved
                        .lock()
                        .unwrap()
                        .remove(form.get("code").map_or("", |c| c));
                    let Some(approved) = approved else {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant"})),
                        );
                    };
                    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                    let valid = form.get("grant_type").map(String::as_str) == Some("authorization_code")
                        && form.get("client_id").map(String::as_str) == Some("loopline")
                        && form.get("redirect_uri") == Some(&approved.redirect_uri)
                        && challenge == approved.challenge;
                    if !valid {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant"})),
                        );
                    }
                    let id_token = provider.key.sign(&approved.claims);
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"id_token": id_token, "token_type": "Bearer"})),
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    provider
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    raw_request(server.address, "GET", path, headers, b"").await.unwrap()
}

/// The `name=value` a response sets for cookie `name`.
fn set_cookie(response: &RawResponse, name: &str) -> Option<String> {
    response
        .headers
        .iter()
        .filter(|(key, _)| key == "set-cookie")
        .map(|(_, value)| value.split(';').next().unwrap_or_default().trim().to_string())
        .find(|pair| pair.starts_with(&format!("{name}=")))
}

fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// One browser sign-in up to the provider: the sign-in cookie and the authorization request's parameters.
async fn start_sign_in(server: &TestServer, next: &str) -> (String, HashMap<String, String>) {
    let started = get(server, &format!("/auth/login?next={next}"), &[]).await;
    assert_eq!(started.status, 302);
    let location = started.header("location").unwrap().to_string();
    let cookie = set_cookie(&started, "loopline_sign_in").expect("a sign-in cookie");
    (cookie, query_of(&location))
}

impl Provider {
    /// The user approves: the provider hands out a code for these claims.
    fn approve(&self, code: &str, request: &HashMap<String, String>, user: &str, groups: &[&str], nonce: &str) {
        let claims = json!({"iss": self.issuer, "aud": "loopline", "sub": format!("id-{user}"),
            "preferred_username": user, "groups": groups, "nonce": nonce, "iat": now(), "exp": now() + 600});
        self.approved.lock().unwrap().insert(
            code.to_string(),
            Approved {
                claims,
                challenge: request["code_challenge"].clone(),
                redirect_uri: request["redirect_uri"].clone(),
            },
        );
    }
}

#[tokio::test]
async fn a_browser_signs_in_with_the_provider_and_its_session_is_the_only_key() {
    let provider = provider().await;
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Oidc],
            admin_password: Some("admin password 123".into()),
            oidc_issuer: Some(provider.issuer.clone()),
            oidc_audience: Some("loopline".into()),
            oidc_group_roles: vec!["ml-team=editor".into()],
            oidc_redirect_url: Some("http://127.0.0.1:5000/auth/callback".into()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let server = TestServer::start_with_config(config).await.unwrap();

    // A page without credentials goes to the sign-in, and so does the web UI's own page.
    let page = get(&server, "/loopline/deployments", &[("accept", "text/html,*/*")]).await;
    assert_eq!(page.status, 302);
    assert_eq!(
        page.header("location"),
        Some("/auth/login?next=%2Floopline%2Fdeployments")
    );
    let root = get(&server, "/", &[("accept", "text/html")]).await;
    assert_eq!(
        (root.status, root.header("location")),
        (302, Some("/auth/login?next=%2F"))
    );
    // An API call is refused in its own shape, not redirected.
    let (status, _) = json_request(&server, "GET", "/api/2.0/mlflow/users/current", None, &json!({})).await;
    assert_eq!(status, 401);

    // The sign-in asks the provider for a code with PKCE (S256), a state and a nonce.
    let (sign_in, request) = start_sign_in(&server, "/loopline/deployments").await;
    assert_eq!(request["response_type"], "code");
    assert_eq!(request["client_id"], "loopline");
    assert_eq!(request["redirect_uri"], "http://127.0.0.1:5000/auth/callback");
    assert_eq!(request["code_challenge_method"], "S256");
    assert!(request["scope"].split(' ').any(|scope| scope == "openid"));
    provider.approve("code-1", &request, "ada", &["ml-team"], &request["nonce"]);
    let callback = format!("/auth/callback?code=code-1&state={}", request["state"]);
    // Without the sign-in cookie (another browser) or with another state, the answer is not taken.
    assert_eq!(get(&server, &callback, &[]).await.status, 400);
    let wrong_state = "/auth/callback?code=code-1&state=forged";
    assert_eq!(get(&server, wrong_state, &[("cookie", &sign_in)]).await.status, 400);
    let finished = get(&server, &callback, &[("cookie", &sign_in)]).await;
    assert_eq!(finished.status, 303, "{}", String::from_utf8_lossy(&finished.body));
    assert_eq!(finished.header("location"), Some("/loopline/deployments"));
    let session = set_cookie(&finished, "loopline_session").expect("a session cookie");
    let attributes = finished
        .headers
        .iter()
        .find(|(key, value)| key == "set-cookie" && value.starts_with("loopline_session="))
        .unwrap()
        .1
        .clone();
    assert!(
        attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"),
        "{attributes}"
    );

    // The session signs requests in as ada, an editor through her group.
    let me = get(&server, "/api/2.0/mlflow/users/current", &[("cookie", &session)]).await;
    let me: Value = serde_json::from_slice(&me.body).unwrap();
    assert_eq!(me["user"]["username"], "ada", "{me}");
    let created = raw_request(
        server.address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[("cookie", &session), ("content-type", "application/json")],
        br#"{"name": "ada's"}"#,
    )
    .await
    .unwrap();
    assert_eq!(created.status, 200);
    let root = get(&server, "/", &[("accept", "text/html"), ("cookie", &session)]).await;
    assert_eq!(root.status, 200);

    // The same code again (a replayed callback) is refused by the provider, so no second session.
    let replayed = get(&server, &callback, &[("cookie", &sign_in)]).await;
    assert_eq!(replayed.status, 401);
    assert!(set_cookie(&replayed, "loopline_session").is_none());
    // An ID token for another sign-in (its nonce) is refused even with a valid code and state.
    let (other_sign_in, other) = start_sign_in(&server, "/").await;
    provider.approve("code-2", &other, "eve", &["ml-team"], "someone else's nonce");
    let foreign = get(
        &server,
        &format!("/auth/callback?code=code-2&state={}", other["state"]),
        &[("cookie", &other_sign_in)],
    )
    .await;
    assert_eq!(foreign.status, 401);
    // The provider's own refusal is shown, not followed.
    let refused = get(
        &server,
        "/auth/callback?error=access_denied&state=x",
        &[("cookie", &other_sign_in)],
    )
    .await;
    assert_eq!(refused.status, 401);
    // A hostile return path ends on this server.
    let (hostile_sign_in, hostile) = start_sign_in(&server, "//evil.example/").await;
    provider.approve("code-3", &hostile, "ada", &["ml-team"], &hostile["nonce"]);
    let returned = get(
        &server,
        &format!("/auth/callback?code=code-3&state={}", hostile["state"]),
        &[("cookie", &hostile_sign_in)],
    )
    .await;
    assert_eq!((returned.status, returned.header("location")), (303, Some("/")));

    // A forged or altered session is no session; a sign-in cookie is not one either.
    let value = session.split_once('=').unwrap().1;
    let mut altered = URL_SAFE_NO_PAD.decode(value).unwrap();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    for forged in [
        format!("loopline_session={}", URL_SAFE_NO_PAD.encode(&altered)),
        format!("loopline_session={}", sign_in.split_once('=').unwrap().1),
        "loopline_session=".to_string(),
        format!("loopline_session={}", "A".repeat(5000)),
    ] {
        let response = get(&server, "/api/2.0/mlflow/users/current", &[("cookie", &forged)]).await;
        assert_eq!(response.status, 401, "{forged}");
    }

    // Signing out clears the cookie.
    let out = raw_request(server.address, "POST", "/auth/logout", &[("cookie", &session)], b"")
        .await
        .unwrap();
    assert_eq!(out.status, 303);
    assert_eq!(
        set_cookie(&out, "loopline_session").as_deref(),
        Some("loopline_session=")
    );

    // Deleting the user ends her sessions (once every replica has seen the change).
    let admin = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:admin password 123")
    );
    let (status, body) = json_request(
        &server,
        "DELETE",
        "/api/2.0/mlflow/users/delete",
        Some(&admin),
        &json!({"username": "ada"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut status = 200;
    for _ in 0..100 {
        status = get(&server, "/api/2.0/mlflow/users/current", &[("cookie", &session)])
            .await
            .status;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401);
}

#[tokio::test]
async fn without_browser_sign_in_the_routes_say_how_to_turn_it_on() {
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic],
            admin_password: Some("admin password 123".into()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let server = TestServer::start_with_config(config).await.unwrap();
    let response = get(&server, "/auth/login", &[]).await;
    assert_eq!(response.status, 404);
    assert!(String::from_utf8_lossy(&response.body).contains("--oidc-redirect-url"));
    // Pages still answer with the Basic challenge, not a redirect.
    let page = get(&server, "/loopline/deployments", &[("accept", "text/html")]).await;
    assert_eq!(page.status, 401);
}
