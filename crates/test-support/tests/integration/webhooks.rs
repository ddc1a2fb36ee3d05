//! Registry webhooks: where they may point (https and public addresses by default, never this server),
//! deliveries signed as MLflow signs them and retried, secrets never returned.

use loopline_server::network::NetworkOptions;
use loopline_test_support::{TestServer, send_json};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// A receiver on loopback: records each request, answers the scripted statuses then 200.
pub(super) async fn receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>) {
    let (sender, received) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sender = sender.clone();
            let script = script.clone();
            async move {
                let _ = sender.send((headers, body));
                let mut script = script.lock().await;
                let status = if script.is_empty() { 200 } else { script.remove(0) };
                (axum::http::StatusCode::from_u16(status).unwrap(), "thanks")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/hook"), received)
}

async fn create(server: &TestServer, body: Value) -> (u16, Value) {
    send_json(
        &reqwest::Client::new(),
        Method::POST,
        &server.url("/api/2.0/mlflow/webhooks"),
        &body,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn webhooks_point_only_where_the_operator_allows() {
    let server = TestServer::start().await.unwrap();
    let events = json!([{"entity": "MODEL_VERSION", "action": "CREATED"}]);
    for (url, reason) in [
        ("http://8.8.8.8/hook", "Allowed schemes are: https"),
        ("https://127.0.0.1/hook", "non-public"),
        ("https://169.254.169.254/latest/meta-data", "non-public"),
        ("https://[::ffff:10.0.0.1]/hook", "non-public"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pw@8.8.8.8/", "credentials"),
    ] {
        let (status, body) = create(&server, json!({"name": "hook", "url": url, "events": events})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{url}: {body}");
    }
    for (name, events, reason) in [
        (
            "-bad",
            json!([{"entity": "MODEL_VERSION", "action": "CREATED"}]),
            "is invalid",
        ),
        ("hook", json!([]), "non-empty"),
        (
            "hook",
            json!([{"entity": "MODEL_VERSION", "action": "DELETED"}]),
            "Invalid action",
        ),
        (
            "hook",
            json!([{"entity": "RUN", "action": "CREATED"}]),
            "Invalid entity",
        ),
    ] {
        let (status, body) = create(
            &server,
            json!({"name": name, "url": "https://8.8.8.8/", "events": events}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{body}");
    }
    let (status, listed) = send_json(
        &reqwest::Client::new(),
        Method::GET,
        &server.url("/api/2.0/mlflow/webhooks"),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, listed["webhooks"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing half-written"
    );
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_secrets_stay_on_the_server() {
    let server = TestServer::start_network(NetworkOptions {
        webhook_allowed_schemes: vec!["http".into(), "https".into()],
        webhook_allow_private_addresses: true,
        ..NetworkOptions::default()
    })
    .await
    .unwrap();
    let (url, mut received) = receiver(vec![503]).await;
    let (status, created) = create(
        &server,
        json!({"name": "registry.hook", "url": url, "secret": "s3cret", "description": "ci",
               "events": [{"entity": "MODEL_VERSION_TAG", "action": "SET"}, {"entity": "REGISTERED_MODEL", "action": "CREATED"}]}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let webhook = &created["webhook"];
    assert!(webhook.get("secret").is_none() && !created.to_string().contains("s3cret"));
    assert_eq!(webhook["status"], "ACTIVE");
    // At rest the secret is sealed: the database file does not hold it.
    let mut stored = Vec::new();
    for file in ["loopline.db", "loopline.db-wal"] {
        stored.extend(std::fs::read(server.data_dir.join(file)).unwrap_or_default());
    }
    assert!(
        stored
            .windows(b"registry.hook".len())
            .any(|window| window == b"registry.hook"),
        "the webhook is stored"
    );
    assert!(!stored.windows(6).any(|window| window == b"s3cret"));

    let client = reqwest::Client::new();
    let (status, _) = send_json(
        &client,
        Method::POST,
        &server.url("/api/2.0/mlflow/registered-models/create"),
        &json!({"name": "watched", "tags": [{"key": "team", "value": "ml"}]}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (first_headers, first_body) = received.recv().await.unwrap();
    let (headers, body) = received.recv().await.unwrap();
    assert_eq!(body, first_body, "the 503 was retried with the same delivery");
    assert_eq!(headers["x-mlflow-delivery-id"], first_headers["x-mlflow-delivery-id"]);
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (payload["entity"].as_str(), payload["action"].as_str()),
        (Some("registered_model"), Some("created"))
    );
    assert_eq!(
        payload["data"],
        json!({"name": "watched", "tags": {"team": "ml"}, "description": null})
    );
    let expected = loopline_http_api::webhooks::signature(
        "s3cret",
        headers["x-mlflow-delivery-id"].to_str().unwrap(),
        headers["x-mlflow-timestamp"].to_str().unwrap(),
        &body,
    );
    assert_eq!(headers["x-mlflow-signature"].to_str().unwrap(), expected);

    // A webhook that points back at this server is refused even where private addresses are allowed.
    let (status, refused) = create(
        &server,
        json!({"name": "loop", "url": server.url("/api/2.0/mlflow/experiments/create"),
               "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        refused["message"].as_str().unwrap().contains("this server itself"),
        "{refused}"
    );

    let id = webhook["webhook_id"].as_str().unwrap();
    let (status, tested) = send_json(
        &client,
        Method::POST,
        &server.url(&format!("/api/2.0/mlflow/webhooks/{id}/test")),
        &json!({"event": {"entity": "MODEL_VERSION_TAG", "action": "SET"}}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        tested["result"],
        json!({"success": true, "response_status": 200, "response_body": "thanks"})
    );
    let (_, example) = received.recv().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&example).unwrap()["data"]["key"],
        "example_key"
    );

    let (status, _) = send_json(
        &client,
        Method::DELETE,
        &server.url(&format!("/api/2.0/mlflow/webhooks/{id}")),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, gone) = send_json(
        &client,
        Method::GET,
        &server.url(&format!("/api/2.0/mlflow/webhooks/{id}")),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, gone["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
}
