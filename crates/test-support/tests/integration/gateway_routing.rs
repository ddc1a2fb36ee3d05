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
