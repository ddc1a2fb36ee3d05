//! Gateway routing strategies and prices over HTTP: `cheapest` goes to the lowest-priced deployment and on to
//! the next when it fails, and a priced call reports its cost in a header and the metrics (a cache hit costs
//! nothing).

use super::gateway::{metrics, post};
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::{Behaviour, FakeLlm};
use serde_json::json;

#[tokio::test]
async fn cheapest_goes_to_the_lowest_price_first_and_each_call_reports_its_cost() {
    let dear = FakeLlm::start(None).await.unwrap();
    let cheap = FakeLlm::start(None).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let config = format!(
        "providers:\n\
         \x20 - {{name: dear, kind: openai-compatible, base_url: '{}'}}\n\
         \x20 - {{name: cheap, kind: openai-compatible, base_url: '{}'}}\n\
         models:\n\
         \x20 - name: chat\n\
         \x20   strategy: cheapest\n\
         \x20   retries: 0\n\
         \x20   cache_ttl_seconds: 60\n\
         \x20   deployments:\n\
         \x20     - {{provider: dear, model: big, weight: 1000, price: {{input_per_million: 10, output_per_million: 30}}}}\n\
         \x20     - {{provider: cheap, model: small, price: {{input_per_million: 0.5, output_per_million: 1.5}}}}\n\
         settings: {{retry_backoff_ms: 0, cooldown_failures: 100}}\n",
        dear.base_url, cheap.base_url
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    let ask = |text: &str| json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
    for turn in 0..3 {
        let answer = post(&server, "/v1/chat/completions", &ask(&format!("question {turn}"))).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(
            answer.header("x-loopline-deployment"),
            Some("cheap/small"),
            "the weight does not matter"
        );
        // The fake reports 5 prompt and 3 completion tokens: (5 × 0.5 + 3 × 1.5) / 1e6 dollars.
        assert_eq!(answer.header("x-loopline-cost-usd"), Some("0.00000700"));
    }
    assert!(dear.calls().is_empty());
    // The same question again is a cache hit: no provider, no cost.
    let again = post(&server, "/v1/chat/completions", &ask("question 0")).await;
    assert_eq!(again.header("x-loopline-cache"), Some("hit"));
    assert_eq!(again.header("x-loopline-cost-usd"), None);
    // When the cheapest fails, the next price answers.
    cheap.script(
        "small",
        vec![Behaviour::Fail {
            status: 503,
            message: "busy".into(),
            retry_after: None,
        }],
    );
    let answer = post(&server, "/v1/chat/completions", &ask("question 9")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("x-loopline-deployment"), Some("dear/big"));
    assert_eq!(answer.header("x-loopline-cost-usd"), Some("0.00014000"));
    let metrics = metrics(&server).await;
    let total: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("loopline_gateway_cost_usd_total{model=\"chat\"} "))
        .unwrap_or_else(|| panic!("no cost series: {metrics}"))
        .parse()
        .unwrap();
    assert!((total - (3.0 * 0.000007 + 0.00014)).abs() < 1e-12, "{total}");
}

#[tokio::test]
async fn an_azure_deployment_is_called_by_its_url_with_the_key_in_api_key() {
    let azure = FakeLlm::start(Some("azure-key-123")).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("key"), "azure-key-123").unwrap();
    let config = format!(
        "providers: [{{name: az, kind: azure, base_url: '{}', api_key_file: '{}', api_version: 2024-10-21}}]\n\
         models: [{{name: chat, deployments: [{{provider: az, model: my-gpt}}]}}, {{name: embed, deployments: [{{provider: az, model: my-embedder}}]}}]\n",
        azure.base_url.trim_end_matches("/v1"),
        files.path().join("key").display()
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    let answer = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "chat", "messages": [{"role": "user", "content": "hello azure"}]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["choices"][0]["message"]["content"], "echo: hello azure");
    let embedded = post(&server, "/v1/embeddings", &json!({"model": "embed", "input": "x"})).await;
    assert_eq!(embedded.status, 200, "{}", embedded.text);
    let calls = azure.calls();
    assert_eq!(calls[0].path, "/openai/deployments/my-gpt/chat/completions");
    assert_eq!(calls[0].model, "my-gpt");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer azure-key-123"),
        "sent as api-key"
    );
    assert_eq!(calls[1].path, "/openai/deployments/my-embedder/embeddings");
    assert!(!answer.text.contains("azure-key-123"));
}

#[tokio::test]
async fn the_semantic_cache_answers_a_request_that_means_the_same() {
    let fake = FakeLlm::start(None).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let config = format!(
        "providers: [{{name: p, kind: openai-compatible, base_url: '{}'}}]\n\
         models:\n\
         \x20 - {{name: chat, deployments: [{{provider: p, model: m}}], cache_ttl_seconds: 600,\n\
         \x20    semantic_cache: {{embedding_model: embed, threshold: 0.95}}}}\n\
         \x20 - {{name: embed, deployments: [{{provider: p, model: words}}]}}\n",
        fake.base_url
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    let ask = |text: &str, temperature: f64| json!({"model": "chat", "temperature": temperature, "messages": [{"role": "user", "content": text}]});
    let first = post(
        &server,
        "/v1/chat/completions",
        &ask("What is the capital of France?", 0.0),
    )
    .await;
    assert_eq!(first.header("x-loopline-cache"), Some("miss"));
    // The same words, cased and punctuated otherwise: the embedding is the same, the answer is the first one.
    let again = post(
        &server,
        "/v1/chat/completions",
        &ask("what is the capital of france", 0.0),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("x-loopline-cache"), Some("hit"));
    assert_eq!(again.header("x-loopline-cache-similarity"), Some("1.0000"));
    assert_eq!(
        again.json()["choices"][0]["message"]["content"],
        "echo: What is the capital of France?"
    );
    // Another question, or the same one with another temperature, asks the provider.
    let other = post(
        &server,
        "/v1/chat/completions",
        &ask("What is the capital of Spain?", 0.0),
    )
    .await;
    assert_eq!(other.header("x-loopline-cache"), Some("miss"));
    let warmer = post(
        &server,
        "/v1/chat/completions",
        &ask("what is the capital of france", 0.7),
    )
    .await;
    assert_eq!(warmer.header("x-loopline-cache"), Some("miss"));
    let chats = fake.calls().iter().filter(|call| call.model == "m").count();
    assert_eq!(chats, 3, "the hit asked no provider");
    let embeddings = fake.calls().iter().filter(|call| call.model == "words").count();
    assert_eq!(embeddings, 4, "each lookup embedded its request once");
    // A stream is kept and replayed apart from whole answers.
    let mut streamed = ask("Name a prime number", 0.0);
    streamed["stream"] = json!(true);
    let first = post(&server, "/v1/chat/completions", &streamed).await;
    assert_eq!(first.header("x-loopline-cache"), Some("miss"));
    streamed["messages"][0]["content"] = json!("name a prime number!");
    let replay = post(&server, "/v1/chat/completions", &streamed).await;
    assert_eq!(replay.header("x-loopline-cache"), Some("hit"));
    assert_eq!(replay.text, first.text);
}
