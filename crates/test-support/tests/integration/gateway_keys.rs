//! Gateway keys over HTTP with auth on: an admin makes a key (a `predict` token shown once) with models and
//! limits; the key calls only its models, gets OpenAI's rate-limit headers, is refused with 429 in OpenAI's
//! and Anthropic's shapes past its requests per minute or its budget, and stops working once revoked. The
//! same limits hold across two replicas sharing one PostgreSQL database, under 64 concurrent calls.

use super::deployments_replicas::fresh_database;
use super::route_permissions::{ADMIN_PASSWORD, basic, grant, json_request};
use loopline_server::auth_options::{AuthMode, AuthOptions};
use loopline_server::config::ServerConfig;
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::FakeLlm;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A server with auth and a gateway whose `chat` costs $1,000 per million tokens either way (a call the fake
/// answers, 5 prompt and 3 completion tokens, costs $0.008), on `backend` (SQLite in `data` when empty).
async fn server(data: &std::path::Path, backend: &str, artifacts: &std::path::Path, fake: &FakeLlm) -> TestServer {
    std::fs::create_dir_all(data).unwrap();
    let gateway = data.join("gateway.yaml");
    std::fs::write(
        &gateway,
        format!(
            "providers: [{{name: fake, kind: openai-compatible, base_url: '{}'}}]\n\
             models:\n\
             \x20 - {{name: chat, deployments: [{{provider: fake, model: m, price: {{input_per_million: 1000, output_per_million: 1000}}}}]}}\n\
             \x20 - {{name: other, deployments: [{{provider: fake, model: o}}]}}\n\
             \x20 - {{name: similar, deployments: [{{provider: fake, model: s, price: {{input_per_million: 1000, output_per_million: 1000}}}}],\n\
             \x20    cache_ttl_seconds: 600, semantic_cache: {{embedding_model: embed, threshold: 0.95}}}}\n\
             \x20 - {{name: embed, deployments: [{{provider: fake, model: words, price: {{input_per_million: 1000, output_per_million: 0}}}}]}}\n",
            fake.base_url
        ),
    )
    .unwrap();
    let mut config = ServerConfig {
        backend_store_uri: backend.to_string(),
        artifacts_destination: artifacts.display().to_string(),
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            admin_password: Some(ADMIN_PASSWORD.to_string()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data)
    };
    config.gateway.config = Some(gateway);
    TestServer::start_with_config(config.with_defaults()).await.unwrap()
}

fn admin() -> String {
    basic("admin", ADMIN_PASSWORD)
}

/// Makes the user `app` (allowed every gateway model) once, and a key for it with `limits`.
async fn new_key(server: &TestServer, limits: Value) -> (String, String) {
    let (status, _) = json_request(
        server,
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&admin()),
        &json!({"username": "app", "password": "app password 123"}),
    )
    .await;
    assert!(status == 200 || status == 400, "{status}");
    grant(server, &admin(), "app", "gateway_endpoint", "*", "USE").await;
    let mut body = json!({"username": "app", "name": "app key"});
    body.as_object_mut()
        .unwrap()
        .extend(limits.as_object().unwrap().clone());
    let (status, created) = json_request(server, "POST", "/api/loopline/v1/gateway/keys", Some(&admin()), &body).await;
    assert_eq!(status, 200, "{created}");
    (
        format!("Bearer {}", created["key"].as_str().unwrap()),
        created["token_id"].as_str().unwrap().to_string(),
    )
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn chat(server: &TestServer, key: &str, model: &str) -> Reply {
    let response = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .header("authorization", key)
        .json(&json!({"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// The key's record once no reservation is left (settlement runs after the answer is sent).
async fn settled(server: &TestServer, token_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("/api/loopline/v1/gateway/keys/{token_id}");
    loop {
        let (_, record) = json_request(server, "GET", &path, Some(&admin()), &json!({})).await;
        if record["reserved_usd"].as_f64().unwrap_or(0.0) == 0.0 || Instant::now() > deadline {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The spend report by key, team and model.
async fn spend_report(server: &TestServer) -> Value {
    let path = "/api/loopline/v1/gateway/spend";
    json_request(server, "GET", path, Some(&admin()), &json!({})).await.1
}

/// Waits, if needed, so a burst of calls falls inside one clock minute (the windows limits count in).
async fn start_of_a_minute() {
    let second = loopline_core::time::now_millis().rem_euclid(60_000);
    if second > 45_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - second + 50) as u64)).await;
    }
}

#[tokio::test]
async fn a_key_calls_its_models_within_its_limits_until_revoked() {
    let fake = FakeLlm::start(None).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "", &data.path().join("artifacts"), &fake).await;
    start_of_a_minute().await;
    let (key, token_id) = new_key(&server, json!({"models": ["chat"], "rpm": 3, "team": "search"})).await;
    for remaining in ["2", "1", "0"] {
        let reply = chat(&server, &key, "chat").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.headers["x-ratelimit-limit-requests"], "3");
        assert_eq!(reply.headers["x-ratelimit-remaining-requests"], remaining);
        assert!(
            reply.headers["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s')
        );
        assert_eq!(reply.headers["x-loopline-cost-usd"], "0.00800000");
    }
    let refused = chat(&server, &key, "chat").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "rate_limit_exceeded");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 requests per minute")
    );
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(fake.calls().len(), 3, "the refused call reached no provider");
    // Only the models the key names.
    let other = chat(&server, &key, "other").await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "model_not_allowed");
    // Spend by key, team and model.
    let record = settled(&server, &token_id).await;
    assert_eq!(record["spend_usd"], 0.024, "{record}");
    assert_eq!(record["username"], "app");
    assert_eq!(record["models"], json!(["chat"]));
    let spend = spend_report(&server).await;
    assert_eq!(
        spend["models"][0],
        json!({"model": "chat", "spend_usd": 0.024}),
        "{spend}"
    );
    assert_eq!(
        spend["teams"][0],
        json!({"team": "search", "spend_usd": 0.024}),
        "{spend}"
    );
    assert_eq!(spend["keys"][0]["spend_usd"], 0.024, "{spend}");
    // The key is a token only for calling models.
    let (status, _) = json_request(
        &server,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        Some(&key),
        &json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 403);
    // Revoked, it is refused at once.
    let path = format!("/api/loopline/v1/gateway/keys/{token_id}");
    let (status, _) = json_request(&server, "DELETE", &path, Some(&admin()), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(chat(&server, &key, "chat").await.status, 401);
    // Only admins manage keys.
    let (status, _) = json_request(
        &server,
        "GET",
        "/api/loopline/v1/gateway/keys",
        Some(&basic("app", "app password 123")),
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_spent_budget_and_a_team_limit_refuse_in_each_apis_shape() {
    let fake = FakeLlm::start(None).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "", &data.path().join("artifacts"), &fake).await;
    start_of_a_minute().await;
    // Each call reserves what it may cost at most (its prompt estimate and 3 output tokens) and costs $0.008.
    let (key, token_id) = new_key(&server, json!({"budget_usd": 0.05, "budget_period": "day"})).await;
    let mut answered = 0;
    loop {
        let reply = chat(&server, &key, "chat").await;
        if reply.status != 200 {
            assert_eq!(reply.status, 429, "{}", reply.body);
            assert_eq!(reply.body["error"]["code"], "insufficient_quota");
            assert_eq!(reply.body["error"]["type"], "insufficient_quota");
            break;
        }
        answered += 1;
        settled(&server, &token_id).await;
        assert!(answered < 10, "the budget never ran out");
    }
    let record = settled(&server, &token_id).await;
    let spent = record["spend_usd"].as_f64().unwrap();
    assert!(spent <= 0.05 && answered >= 2, "{answered} calls, ${spent}");
    // Anthropic's API is refused in its shape.
    let response = reqwest::Client::new()
        .post(server.url("/v1/messages"))
        .header("x-api-key", key.trim_start_matches("Bearer "))
        .json(&json!({"model": "chat", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // A team's limit holds for every key of the team.
    let (status, _) = json_request(
        &server,
        "PUT",
        "/api/loopline/v1/gateway/teams/ml",
        Some(&admin()),
        &json!({"rpm": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let (first, _) = new_key(&server, json!({"team": "ml"})).await;
    let (second, _) = new_key(&server, json!({"team": "ml"})).await;
    assert_eq!(chat(&server, &first, "chat").await.status, 200);
    assert_eq!(chat(&server, &second, "chat").await.status, 200);
    let refused = chat(&server, &first, "chat").await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the team 'ml'"),
        "{}",
        refused.body
    );
    // Mistakes in a key's limits are named.
    let (status, error) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/gateway/keys",
        Some(&admin()),
        &json!({"username": "app", "rpm": 0, "budget_period": "fortnight"}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().contains("'fortnight'"), "{error}");
    let (status, error) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/gateway/keys",
        Some(&admin()),
        &json!({"username": "app", "rpm": 0}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().contains("'rpm'"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_rates_hold_across_two_replicas_under_64_concurrent_calls() {
    let Some(backend) = fresh_database().await else {
        return;
    };
    let fake = FakeLlm::start(None).await.unwrap();
    let storage = tempfile::tempdir().unwrap();
    let artifacts = storage.path().join("artifacts");
    let first = server(&storage.path().join("a"), &backend, &artifacts, &fake).await;
    let second = server(&storage.path().join("b"), &backend, &artifacts, &fake).await;
    start_of_a_minute().await;
    let (budgeted, budget_id) = new_key(&first, json!({"budget_usd": 0.05})).await;
    let (rated, _) = new_key(&second, json!({"rpm": 10})).await;
    let burst = |key: String| {
        let calls = (0..64).map(|index| {
            let server = if index % 2 == 0 { &first } else { &second };
            let key = key.clone();
            async move { chat(server, &key, "chat").await }
        });
        futures::future::join_all(calls)
    };
    let replies = burst(budgeted).await;
    let answered = replies.iter().filter(|reply| reply.status == 200).count();
    for reply in &replies {
        assert!(
            reply.status == 200 || reply.body["error"]["code"] == "insufficient_quota",
            "{} {}",
            reply.status,
            reply.body
        );
    }
    let spent = settled(&first, &budget_id).await["spend_usd"].as_f64().unwrap();
    assert!((1..=6).contains(&answered), "{answered} of 64 answered");
    assert!(
        (spent - answered as f64 * 0.008).abs() < 1e-9,
        "${spent} for {answered}"
    );
    assert!(spent <= 0.05, "the budget was passed: ${spent}");
    let replies = burst(rated).await;
    let answered = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(answered, 10, "requests per minute held across replicas");
    assert!(replies.iter().all(|reply| reply.status == 200 || reply.status == 429));
}

#[tokio::test]
async fn streams_are_charged_without_usage_or_when_left_and_teams_cap_calls_in_flight() {
    use loopline_test_support::fake_llm::Pace;
    let fake = FakeLlm::start_paced(
        None,
        0,
        Pace {
            latency: Duration::from_millis(1500),
            token_gap: Duration::from_millis(300),
        },
    )
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "", &data.path().join("artifacts"), &fake).await;
    let (key, token_id) = new_key(&server, json!({"budget_usd": 10})).await;
    let stream = |max_tokens: u64| json!({"model": "chat", "stream": true, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]});
    // A stream without a usage chunk is priced from its text (four characters a token) and the prompt estimate.
    let answer = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .header("authorization", &key)
        .json(&stream(3))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap();
    let spent = settled(&server, &token_id).await["spend_usd"].as_f64().unwrap();
    assert!(spent > 0.0, "a stream without usage cost nothing");
    // A stream the caller leaves before its end costs what it reserved (the provider may go on).
    let left = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .header("authorization", &key)
        .json(&stream(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 200);
    drop(left);
    let after = settled(&server, &token_id).await["spend_usd"].as_f64().unwrap();
    assert!(
        after - spent >= 1000.0 * 1000.0 / 1e6,
        "left stream charged ${}",
        after - spent
    );
    // Floats, negatives and absurd sizes are refused before anything is reserved.
    for bad in [json!(100000.0), json!(-1), json!(9223372036854775807u64)] {
        let mut body = stream(1);
        body["max_tokens"] = bad;
        let reply = reqwest::Client::new()
            .post(server.url("/v1/chat/completions"))
            .header("authorization", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400);
    }
    // A team's calls in flight: two at once, whoever's key.
    let (status, _) = json_request(
        &server,
        "PUT",
        "/api/loopline/v1/gateway/teams/slow",
        Some(&admin()),
        &json!({"max_parallel": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let (first, _) = new_key(&server, json!({"team": "slow"})).await;
    let (second, _) = new_key(&server, json!({"team": "slow"})).await;
    let calls = (0..5).map(|index| {
        let key = if index % 2 == 0 { first.clone() } else { second.clone() };
        let server = &server;
        async move { chat(server, &key, "chat").await }
    });
    let replies = futures::future::join_all(calls).await;
    let answered = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(
        answered,
        2,
        "{:?}",
        replies.iter().map(|reply| reply.status).collect::<Vec<_>>()
    );
    let refused = replies.iter().find(|reply| reply.status == 429).unwrap();
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The team 'slow'"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn the_semantic_caches_embedding_is_charged_to_the_caller_hit_or_miss() {
    let fake = FakeLlm::start(None).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "", &data.path().join("artifacts"), &fake).await;
    let (key, token_id) = new_key(&server, json!({"models": ["similar"], "budget_usd": 1.0})).await;
    // A miss: the answer (8 tokens, $0.008) and the embedding of the request (4 tokens, $0.004).
    let first = chat(&server, &key, "similar").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.headers["x-loopline-cache"], "miss");
    assert_eq!(
        first.headers["x-loopline-cost-usd"], "0.01200000",
        "the header shows the whole cost, the embedding included"
    );
    let after_miss = settled(&server, &token_id).await["spend_usd"].as_f64().unwrap();
    assert!((after_miss - 0.012).abs() < 1e-9, "{after_miss}");
    // The same words cased otherwise (not the exact request): a hit by meaning costs only the embedding
    // that found it.
    let second = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .header("authorization", &key)
        .json(&json!({"model": "similar", "max_tokens": 3, "messages": [{"role": "user", "content": "HI"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.headers()["x-loopline-cache"], "hit");
    assert_eq!(second.headers()["x-loopline-cache-similarity"], "1.0000");
    assert_eq!(second.headers()["x-loopline-cost-usd"], "0.00400000");
    let after_hit = settled(&server, &token_id).await["spend_usd"].as_f64().unwrap();
    assert!((after_hit - 0.016).abs() < 1e-9, "{after_hit}");
    // The spend report puts each model's share under it: the answer under the chat model, the two
    // embeddings under the embedding model, as the metrics count them.
    let spend = spend_report(&server).await;
    let mut models: Vec<(String, f64)> = spend["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["model"].as_str().unwrap().to_string(),
                row["spend_usd"].as_f64().unwrap(),
            )
        })
        .collect();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(models.len(), 2, "{spend}");
    assert_eq!(models[0].0, "embed");
    assert!((models[0].1 - 0.008).abs() < 1e-9, "{spend}");
    assert_eq!(models[1].0, "similar");
    assert!((models[1].1 - 0.008).abs() < 1e-9, "{spend}");
    assert!(
        (spend["keys"][0]["spend_usd"].as_f64().unwrap() - 0.016).abs() < 1e-9,
        "{spend}"
    );
    let embeddings = fake.calls().iter().filter(|call| call.model == "words").count();
    assert_eq!(
        embeddings, 2,
        "each lookup embedded once; the key was not asked to allow the embedding model"
    );
}
