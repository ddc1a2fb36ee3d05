//! The API served on loopback over a fresh store and artifact directory, and calls that check Qdrant's shapes.

#![allow(dead_code)]

use loopline_vector_api::{VectorApi, routes};
use loopline_vector_index::VectorStore;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(VectorStore::open(&dir.path().join("vectors"), 2).unwrap());
        let artifacts =
            loopline_artifact_store::ObjectArtifactStore::open(dir.path().join("artifacts").to_str().unwrap()).unwrap();
        let router = routes(VectorApi {
            store,
            artifacts: Some(Arc::new(artifacts)),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Server {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["status"], "ok");
        assert!(answer["time"].is_number());
        answer["result"].clone()
    }

    pub async fn error(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> String {
        let (got, answer) = self.call(method, path, body).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer.get("result").is_none());
        answer["status"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {answer}"))
            .to_string()
    }
}

pub fn points() -> Value {
    json!({"points": [
        {"id": 1, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"lang": "en", "year": 2021, "tags": ["a", "b"]}},
        {"id": 2, "vector": [0.9, 0.1, 0.0, 0.0], "payload": {"lang": "de", "year": 2022}},
        {"id": 3, "vector": [0.0, 1.0, 0.0, 0.0], "payload": {"lang": "en", "year": 2023}},
        {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": [0.0, 0.0, 1.0, 0.0], "payload": {"lang": "fr"}},
    ]})
}

pub async fn with_docs() -> Server {
    let server = Server::start().await;
    let created = server
        .ok(
            "PUT",
            "/collections/docs",
            Some(json!({"vectors": {"size": 4, "distance": "Cosine"}, "hnsw_config": {"m": 8}})),
        )
        .await;
    assert_eq!(created, json!(true));
    let update = server
        .ok("PUT", "/collections/docs/points?wait=true", Some(points()))
        .await;
    assert_eq!(update["status"], "completed");
    assert!(update["operation_id"].is_u64());
    server
}
