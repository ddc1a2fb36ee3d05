//! OIDC against a fake provider on loopback that signs ID tokens with keys generated for the test: valid
//! tokens sign in (groups mapped to roles), expired ones, other audiences and issuers, unknown keys and
//! unsigned tokens do not, and a rotated key is fetched when a token names it.

use super::route_permissions::json_request;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use loopline_server::auth_options::{AuthMode, AuthOptions};
use loopline_server::config::ServerConfig;
use loopline_test_support::TestServer;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub(super) struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    pub(super) fn generate(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        SigningKey {
            kid: kid.to_string(),
            pair,
        }
    }

    pub(super) fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }

    pub(super) fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// A provider serving discovery and whatever keys it is told to publish.
async fn fake_provider(published: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let discovery = discovery.clone();
                async move { axum::Json(discovery) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                let keys = published.lock().unwrap().clone();
                async move { axum::Json(json!({"keys": keys})) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

pub(super) fn now() -> i64 {
    loopline_core::time::now_millis() / 1000
}

#[tokio::test]
async fn id_tokens_sign_in_only_when_signed_issued_and_addressed_to_this_server() {
    let first = SigningKey::generate("key-1");
    let published = Arc::new(Mutex::new(vec![first.jwk()]));
    let issuer = fake_provider(published.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Oidc],
            admin_password: Some("admin password 123".into()),
            oidc_issuer: Some(issuer.clone()),
            oidc_audience: Some("loopline".into()),
            oidc_group_roles: vec!["ml-team=editor".into()],
            oidc_clock_skew_seconds: 60,
            oidc_jwks_refetch_seconds: 0,
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let server = TestServer::start_with_config(config).await.unwrap();
    let claims = |user: &str, groups: &[&str]| {
        json!({"iss": issuer, "aud": ["other", "loopline"], "sub": format!("id-{user}"), "preferred_username": user,
               "groups": groups, "iat": now(), "exp": now() + 600})
    };
    let call = |token: String, method: &'static str, path: &'static str, body: Value| {
        let server = &server;
        async move { json_request(server, method, path, Some(&format!("Bearer {token}")), &body).await }
    };
    // A member of ml-team signs in as an editor: it may create.
    let token = first.sign(&claims("ada", &["ml-team"]));
    let (status, me) = call(token.clone(), "GET", "/api/2.0/mlflow/users/current", json!({})).await;
    assert_eq!((status, me["user"]["username"].as_str()), (200, Some("ada")), "{me}");
    let (status, created) = call(
        token,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        json!({"name": "ada's"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    // Without the group: a reader only.
    let (status, _) = call(
        first.sign(&claims("bob", &[])),
        "POST",
        "/api/2.0/mlflow/experiments/create",
        json!({"name": "bob's"}),
    )
    .await;
    assert_eq!(status, 403);
    // Expired past the skew, another audience, another issuer, a key the provider never published, no
    // signature, and a local account's name: all refused alike.
    let mut expired = claims("ada", &["ml-team"]);
    expired["exp"] = json!(now() - 120);
    let mut within_skew = claims("ada", &["ml-team"]);
    within_skew["exp"] = json!(now() - 30);
    let mut other_audience = claims("ada", &["ml-team"]);
    other_audience["aud"] = json!("someone-else");
    let mut other_issuer = claims("ada", &["ml-team"]);
    other_issuer["iss"] = json!("https://evil.example");
    let impostor = SigningKey::generate("key-1");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "key-1"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims("ada", &["ml-team"]).to_string())
    );
    for refused in [
        first.sign(&expired),
        first.sign(&other_audience),
        first.sign(&other_issuer),
        impostor.sign(&claims("ada", &["ml-team"])),
        unsigned,
        first.sign(&claims("admin", &["ml-team"])),
        "not.a.jwt".to_string(),
    ] {
        let (status, body) = call(refused, "GET", "/api/2.0/mlflow/users/current", json!({})).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{body}"
        );
    }
    let (status, _) = call(
        first.sign(&within_skew),
        "GET",
        "/api/2.0/mlflow/users/current",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    // The provider rotates: a token signed with the new key is accepted once the keys are fetched again,
    // and the retired key no longer signs anything.
    let second = SigningKey::generate("key-2");
    *published.lock().unwrap() = vec![second.jwk()];
    let (status, _) = call(
        second.sign(&claims("ada", &["ml-team"])),
        "GET",
        "/api/2.0/mlflow/users/current",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        first.sign(&claims("cyd", &["ml-team"])),
        "GET",
        "/api/2.0/mlflow/users/current",
        json!({}),
    )
    .await;
    assert_eq!(status, 401);
}
