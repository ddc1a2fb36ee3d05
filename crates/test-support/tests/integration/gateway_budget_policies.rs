//! MLflow's gateway budget policies over HTTP: made, read, listed by page, changed and deleted in MLflow's
//! shapes and words; a REJECT policy on one endpoint refuses its calls (429, MLflow's message) once what was
//! spent and what a call may cost would pass its limit, and only that endpoint's; an ALERT policy tells the
//! `budget_policy.exceeded` webhooks once per window.

use super::gateway::{answer_of, post};
use super::gateway_mlflow_api::{KEY, delete, get, ok, refused};
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::FakeLlm;
use serde_json::{Value, json};

const API: &str = "/api/3.0/mlflow/gateway";

/// A server whose catalog models named `priced` cost $2 / $8 per million tokens, that may call fakes and
/// webhooks on loopback.
async fn start(data: &std::path::Path) -> TestServer {
    let yaml = data.with_extension("yaml");
    std::fs::write(
        &yaml,
        "prices:\n  - {provider: openai, model: priced, input_per_million: 2, output_per_million: 8}\n",
    )
    .unwrap();
    let mut config = TestServer::config_in(data);
    config.gateway.config = Some(yaml);
    config.gateway.api_base_allowed_schemes = vec!["http".into()];
    config.gateway.api_base_allow_private_addresses = true;
    config.network.webhook_allowed_schemes = vec!["http".into()];
    config.network.webhook_allow_private_addresses = true;
    TestServer::start_with_config(config.with_defaults()).await.unwrap()
}

/// An endpoint named `name` on the fake's `priced` model; its id.
async fn endpoint(server: &TestServer, fake: &FakeLlm, name: &str) -> String {
    super::gateway_mlflow_api::endpoint_on(server, fake, name, "priced").await
}

fn policy(amount: f64, scope: &str, action: &str, target: Option<&str>) -> Value {
    let mut body = json!({"budget_unit": "USD", "budget_amount": amount, "duration": {"unit": "DAYS", "value": 1},
                          "target_scope": scope, "budget_action": action, "created_by": "admin"});
    if let Some(target) = target {
        body["target_value"] = json!(target);
    }
    body
}

/// The spend of a policy's window so far, once it reaches `at_least` (calls are settled just after they end).
async fn spend(server: &TestServer, policy_id: &str, at_least: f64) -> f64 {
    for _ in 0..500 {
        let windows = ok(&get(server, &format!("{API}/budgets/windows")).await);
        let spent = windows["windows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|window| window["budget_policy_id"] == policy_id)
            .map_or(0.0, |window| window["current_spend"].as_f64().unwrap());
        if spent >= at_least - 1e-12 {
            return spent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the policy's spend did not reach {at_least}");
}

#[tokio::test]
async fn budget_policies_are_kept_in_mlflows_shapes_and_words() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let endpoint_id = endpoint(&server, &fake, "chat").await;
    let made = ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &policy(100.0, "GLOBAL", "ALERT", None),
    )
    .await)["budget_policy"]
        .clone();
    let id = made["budget_policy_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("bp-") && id.len() == 35, "{id}");
    assert_eq!(made["duration"], json!({"unit": "DAYS", "value": 1}));
    assert_eq!(
        (made["created_by"].as_str(), made["last_updated_by"].as_str()),
        (Some("admin"), Some("admin"))
    );
    assert!(made.get("target_value").is_none(), "{made}");
    let got = ok(&get(&server, &format!("{API}/budgets/get?budget_policy_id={id}")).await);
    assert_eq!(got["budget_policy"], made);
    // Enum numbers are read as names.
    ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &json!({"budget_unit": 1, "budget_amount": 5, "duration": {"unit": 5, "value": 3}, "target_scope": 3,
                "target_value": endpoint_id, "budget_action": 2}),
    )
    .await);
    // Without auth no call has a user: a USER policy is refused, as MLflow refuses it.
    refused(
        &post(
            &server,
            &format!("{API}/budgets/create"),
            &policy(1.0, "USER", "REJECT", Some("ann")),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "require server authentication",
    );
    ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &policy(1.0, "WORKSPACE", "ALERT", None),
    )
    .await);
    // Pages of two, in id order, then the rest.
    let first = ok(&get(&server, &format!("{API}/budgets/list?max_results=2")).await);
    assert_eq!(first["budget_policies"].as_array().unwrap().len(), 2);
    let token = first["next_page_token"].as_str().unwrap().to_string();
    let rest = ok(&get(&server, &format!("{API}/budgets/list?max_results=2&page_token={token}")).await);
    assert_eq!(rest["budget_policies"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_page_token").is_none());
    let ids: std::collections::BTreeSet<String> = first["budget_policies"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["budget_policies"].as_array().unwrap())
        .map(|policy| policy["budget_policy_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    refused(
        &get(&server, &format!("{API}/budgets/list?max_results=0")).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "max_results",
    );
    // A partial update keeps the rest and says who changed it.
    let updated = ok(&post(
        &server,
        &format!("{API}/budgets/update"),
        &json!({"budget_policy_id": id, "budget_amount": 200.0, "budget_action": "REJECT", "updated_by": "editor"}),
    )
    .await)["budget_policy"]
        .clone();
    assert_eq!(
        (updated["budget_amount"].as_f64(), updated["budget_action"].as_str()),
        (Some(200.0), Some("REJECT"))
    );
    assert_eq!(updated["last_updated_by"], "editor");
    assert_eq!(updated["duration"], made["duration"]);
    assert!(updated["last_updated_at"].as_i64() >= made["last_updated_at"].as_i64());
    // Refusals, in MLflow's words.
    for (body, words) in [
        (
            policy(1.0, "ENDPOINT", "ALERT", None),
            "target_value is required when target_scope is ENDPOINT.",
        ),
        (
            policy(1.0, "GLOBAL", "ALERT", Some("x")),
            "target_value can only be set",
        ),
        (
            json!({"budget_unit": "USD", "budget_amount": 1, "duration": {"unit": "DAYS", "value": 0},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "duration.value must be a positive integer",
        ),
        (
            json!({"budget_unit": "USD", "budget_amount": 1, "duration": {"unit": "FORTNIGHTS", "value": 1},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "Invalid duration.unit",
        ),
        (
            json!({"budget_unit": "EUR", "budget_amount": 1, "duration": {"unit": "DAYS", "value": 1},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "Invalid budget_unit",
        ),
        (
            json!({"budget_unit": "USD", "duration": {"unit": "DAYS", "value": 1},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "'budget_amount'",
        ),
        (
            json!({"budget_unit": "USD", "budget_amount": "lots", "duration": {"unit": "DAYS", "value": 1},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "budget_amount",
        ),
        (
            json!({"budget_amount": 1, "duration": {"unit": "DAYS", "value": 1},
                "target_scope": "GLOBAL", "budget_action": "ALERT"}),
            "'budget_unit'",
        ),
        (
            policy(1.0, "ENDPOINT", "ALERT", Some(&"e".repeat(100_000))),
            "at most 255 characters",
        ),
    ] {
        refused(
            &post(&server, &format!("{API}/budgets/create"), &body).await,
            400,
            "INVALID_PARAMETER_VALUE",
            words,
        );
    }
    refused(
        &post(
            &server,
            &format!("{API}/budgets/create"),
            &policy(1.0, "ENDPOINT", "ALERT", Some("e-nope")),
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "GatewayEndpoint not found",
    );
    ok(&delete(
        &server,
        &format!("{API}/budgets/delete"),
        &json!({"budget_policy_id": id}),
    )
    .await);
    for answer in [
        get(&server, &format!("{API}/budgets/get?budget_policy_id={id}")).await,
        delete(
            &server,
            &format!("{API}/budgets/delete"),
            &json!({"budget_policy_id": id}),
        )
        .await,
        post(
            &server,
            &format!("{API}/budgets/update"),
            &json!({"budget_policy_id": id, "budget_amount": 1}),
        )
        .await,
    ] {
        refused(&answer, 404, "RESOURCE_DOES_NOT_EXIST", "BudgetPolicy not found");
    }
}

#[tokio::test]
async fn a_reject_policy_holds_its_endpoints_spend_under_its_limit_and_an_alert_policy_tells_webhooks_once() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let capped = endpoint(&server, &fake, "capped").await;
    endpoint(&server, &fake, "free").await;
    let (url, mut alerts) = super::webhooks::receiver(Vec::new()).await;
    ok(&answer_of(
        reqwest::Client::new()
            .post(server.url("/api/2.0/mlflow/webhooks"))
            .json(
                &json!({"name": "budgets", "url": url, "events": [{"entity": "budget_policy", "action": "exceeded"}]}),
            ),
    )
    .await);
    // $200 per million micro-dollars: a few calls of $0.000034 each (5 prompt and 3 answer tokens).
    let limit = 0.0002;
    let reject = ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &policy(limit, "ENDPOINT", "REJECT", Some(&capped)),
    )
    .await)["budget_policy"]["budget_policy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let alert = ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &policy(0.00005, "GLOBAL", "ALERT", None),
    )
    .await)["budget_policy"]["budget_policy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let chat = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3});
    let mut answered = 0;
    let refusal = loop {
        let answer = post(&server, "/gateway/capped/mlflow/invocations", &chat).await;
        if answer.status != 200 {
            break answer;
        }
        answered += 1;
        assert!(answered < 20, "the policy never refused");
        spend(&server, &reject, 0.000034 * f64::from(answered)).await;
    };
    assert_eq!(refusal.status, 429, "{}", refusal.text);
    let detail = refusal.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with("Budget limit exceeded. Limit: $0.00 USD per 1 day. Budget resets at ")
            && detail.contains("Request rejected."),
        "{detail}"
    );
    assert!(answered >= 2, "{answered} calls answered before the limit");
    let spent = spend(&server, &reject, 0.0).await;
    assert!(spent <= limit, "spent {spent} of {limit}");
    // The OpenAI route says the same in OpenAI's shape; another endpoint is not limited.
    let named = json!({"model": "capped", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3});
    let openai = post(&server, "/v1/chat/completions", &named).await;
    assert_eq!(openai.status, 429, "{}", openai.text);
    assert_eq!(openai.json()["error"]["code"], "budget_exceeded");
    ok(&post(&server, "/gateway/free/mlflow/invocations", &chat).await);
    // The global ALERT policy passed $0.00005 on the second call: one event for the window.
    let (_, body) = alerts.recv().await.unwrap();
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["entity"].as_str(), event["action"].as_str()),
        (Some("budget_policy"), Some("exceeded"))
    );
    assert_eq!(event["data"]["budget_policy_id"], alert);
    assert_eq!(event["data"]["target_scope"], "GLOBAL");
    assert!(event["data"]["current_spend"].as_f64().unwrap() >= 0.00005);
    let total = spend(&server, &alert, 0.000034 * f64::from(answered + 1)).await;
    assert!(total > 0.00005 * 2.0, "{total}");
    assert!(alerts.try_recv().is_err(), "one alert per window");
}
