//! MLflow 3's AI-gateway API over HTTP: a secret, a model definition and an endpoint made through the
//! management routes are served at once by the gateway (MLflow's invocation routes and `/v1`), with the
//! secret's key sent upstream and never shown; fallbacks answer when the primary fails; refusals come in
//! MLflow's codes; the catalog survives a restart and is seen by a second server on the same store.

use super::gateway::{Answer, answer_of, post};
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::{Behaviour, FakeLlm};
use serde_json::{Value, json};

pub(super) const KEY: &str = "sk-catalog-key-0123456789";
const API: &str = "/api/3.0/mlflow/gateway";

pub(super) async fn get(server: &TestServer, path: &str) -> Answer {
    answer_of(reqwest::Client::new().get(server.url(path))).await
}

pub(super) async fn delete(server: &TestServer, path: &str, body: &Value) -> Answer {
    answer_of(reqwest::Client::new().delete(server.url(path)).json(body)).await
}

async fn start(data: &std::path::Path) -> TestServer {
    let mut config = TestServer::config_in(data);
    config.gateway.api_base_allowed_schemes = vec!["http".into()];
    config.gateway.api_base_allow_private_addresses = true;
    TestServer::start_with_config(config.with_defaults()).await.unwrap()
}

pub(super) fn ok(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

pub(super) fn refused(answer: &Answer, status: u16, code: &str, words: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].as_str().unwrap().contains(words), "{body}");
}

/// An endpoint named `name` (usage tracking off) on a definition `{name}-model` of the fake's `model`; its id.
pub(super) async fn endpoint_on(server: &TestServer, fake: &FakeLlm, name: &str, model_name: &str) -> String {
    let definition = model(server, fake, &format!("{name}-model"), model_name).await;
    let made = ok(&post(
        server,
        &format!("{API}/endpoints/create"),
        &json!({"name": name, "usage_tracking": false, "model_configs": [
            {"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
    )
    .await);
    made["endpoint"]["endpoint_id"].as_str().unwrap().to_string()
}

/// Makes a secret for `fake`, a model definition on it and returns the definition's id.
pub(super) async fn model(server: &TestServer, fake: &FakeLlm, name: &str, model: &str) -> String {
    let secret = ok(&post(
        server,
        &format!("{API}/secrets/create"),
        &json!({"secret_name": format!("{name}-key"), "secret_value": {"api_key": KEY}, "provider": "openai",
                "auth_config": {"api_base": fake.base_url}}),
    )
    .await);
    let definition = ok(&post(
        server,
        &format!("{API}/model-definitions/create"),
        &json!({"name": name, "secret_id": secret["secret"]["secret_id"], "provider": "openai", "model_name": model}),
    )
    .await);
    assert_eq!(definition["model_definition"]["secret_name"], format!("{name}-key"));
    definition["model_definition"]["model_definition_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_endpoint_made_through_mlflows_api_is_served_with_its_secret_and_fallback() {
    let primary = FakeLlm::start(Some(KEY)).await.unwrap();
    let backup = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;

    // Secrets: masked, never shown, names unique, routing keys refused.
    let made = post(
        &server,
        &format!("{API}/secrets/create"),
        &json!({"secretName": "probe", "secret_value": {"api_key": KEY}}),
    )
    .await;
    let secret = ok(&made)["secret"].clone();
    assert!(secret["secret_id"].as_str().unwrap().starts_with("s-"));
    assert_eq!(secret["masked_values"]["api_key"], "sk-...6789");
    assert!(!made.text.contains(KEY));
    let listed = get(&server, &format!("{API}/secrets/list")).await;
    assert!(!listed.text.contains(KEY) && listed.text.contains("sk-...6789"));
    refused(
        &post(
            &server,
            &format!("{API}/secrets/create"),
            &json!({"secret_name": "probe", "secret_value": {"api_key": "x"}}),
        )
        .await,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "already exists",
    );
    refused(
        &post(
            &server,
            &format!("{API}/secrets/create"),
            &json!({"secret_name": "bad", "secret_value": {"api_key": "x", "api_base": "http://elsewhere"}}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "must not contain 'api_base'",
    );
    refused(
        &post(
            &server,
            &format!("{API}/secrets/create"),
            &json!({"secret_name": "both", "secret_id": "a", "secretId": "b"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "provide only one of them",
    );
    refused(
        &get(&server, &format!("{API}/secrets/get?secret_id=s-nope")).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "GatewaySecret not found (secret_id='s-nope')",
    );

    // An endpoint with a primary and a fallback model, traced in its own experiment.
    let first = model(&server, &primary, "primary", "big").await;
    let second = model(&server, &backup, "backup", "small").await;
    refused(
        &post(
            &server,
            &format!("{API}/endpoints/create"),
            &json!({"name": "chat", "model_configs": [{"model_definition_id": first}]}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "'linkage_type' in model_configs[0]",
    );
    let endpoint = ok(&post(
        &server,
        &format!("{API}/endpoints/create"),
        &json!({"name": "chat", "model_configs": [
            {"model_definition_id": first, "linkage_type": "PRIMARY", "weight": 1.0},
            {"model_definition_id": second, "linkage_type": "FALLBACK", "weight": 1.0, "fallback_order": 1}],
            "fallback_config": {"strategy": "SEQUENTIAL", "max_attempts": 1}, "usage_tracking": true}),
    )
    .await)["endpoint"]
        .clone();
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap().to_string();
    assert!(endpoint_id.starts_with("e-"));
    assert_eq!(endpoint["model_mappings"].as_array().unwrap().len(), 2);
    assert_eq!(endpoint["usage_tracking"], true);
    let experiment = get(
        &server,
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=gateway/chat",
    )
    .await;
    let experiment = ok(&experiment)["experiment"].clone();
    assert_eq!(endpoint["experiment_id"], experiment["experiment_id"]);
    ok(&post(
        &server,
        &format!("{API}/endpoints/set-tag"),
        &json!({"endpoint_id": endpoint_id, "key": "team", "value": "search"}),
    )
    .await);
    let by_name = ok(&get(&server, &format!("{API}/endpoints/get?name=chat")).await);
    assert_eq!(by_name["endpoint"]["tags"], json!([{"key": "team", "value": "search"}]));
    refused(
        &get(
            &server,
            &format!("{API}/endpoints/get?name=chat&endpoint_id={endpoint_id}"),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "Exactly one of endpoint_id or name",
    );

    // Served at once: MLflow's invocation route, its OpenAI route and `/v1`, the key sent upstream.
    let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
    let answer = post(&server, "/gateway/chat/mlflow/invocations", &chat).await;
    assert_eq!(ok(&answer)["object"], "chat.completion");
    assert_eq!(answer.header("x-loopline-deployment"), Some("openai/big"));
    let call = primary.calls().pop().unwrap();
    assert_eq!(call.model, "big");
    assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let with_model = post(
        &server,
        "/gateway/chat/mlflow/invocations",
        &json!({"model": "x", "messages": []}),
    )
    .await;
    assert_eq!(with_model.status, 422);
    assert!(
        with_model.json()["detail"]
            .as_str()
            .unwrap()
            .contains("'model' is not permitted")
    );
    let neither = post(&server, "/gateway/chat/mlflow/invocations", &json!({"prompt": "hi"})).await;
    assert_eq!(neither.status, 400, "{}", neither.text);
    let named = json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]});
    ok(&post(&server, "/gateway/mlflow/v1/chat/completions", &named).await);
    ok(&post(&server, "/v1/chat/completions", &named).await);
    let models = ok(&get(&server, "/gateway/mlflow/v1/models").await);
    assert_eq!(models["data"][0]["id"], "chat");
    assert_eq!(models["data"][0]["owned_by"], "mlflow");
    let listed = ok(&get(&server, "/v1/models").await);
    assert!(
        !listed.to_string().contains("fallback"),
        "fallback groups stay hidden: {listed}"
    );

    // The primary fails: the fallback model answers.
    primary.script(
        "big",
        vec![Behaviour::Fail {
            status: 503,
            message: "down".into(),
            retry_after: None,
        }],
    );
    let answer = post(&server, "/gateway/chat/mlflow/invocations", &chat).await;
    ok(&answer);
    assert_eq!(answer.header("x-loopline-fallback"), Some("true"));
    assert_eq!(answer.header("x-loopline-deployment"), Some("openai/small"));

    // A model an endpoint uses cannot be deleted; the endpoint first.
    refused(
        &delete(
            &server,
            &format!("{API}/model-definitions/delete"),
            &json!({"model_definition_id": first}),
        )
        .await,
        409,
        "INVALID_STATE",
        "currently in use",
    );
    // The provider's key is in no answer, trace or listing.
    for path in [
        format!("{API}/endpoints/list"),
        format!("{API}/model-definitions/list"),
        format!("{API}/secrets/list"),
    ] {
        assert!(!get(&server, &path).await.text.contains(KEY), "{path}");
    }

    // A restart serves the same endpoint (its secret opens with the kept key).
    server.stop().await.unwrap();
    let server = start(&dir.path().join("data")).await;
    ok(&post(&server, "/gateway/chat/mlflow/invocations", &chat).await);
    ok(&delete(
        &server,
        &format!("{API}/endpoints/delete"),
        &json!({"endpoint_id": endpoint_id}),
    )
    .await);
    let gone = post(&server, "/gateway/chat/mlflow/invocations", &chat).await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert_eq!(gone.json()["detail"]["error_code"], "RESOURCE_DOES_NOT_EXIST");
    ok(&delete(
        &server,
        &format!("{API}/model-definitions/delete"),
        &json!({"model_definition_id": first}),
    )
    .await);
}

#[tokio::test]
async fn a_second_server_on_the_same_store_serves_an_endpoint_the_first_made() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = start(&dir.path().join("data")).await;
    let second = start(&dir.path().join("data")).await;
    // The second has served `/v1` before the endpoint exists.
    let named = json!({"model": "shared", "messages": [{"role": "user", "content": "hello"}]});
    assert_eq!(post(&second, "/v1/chat/completions", &named).await.status, 404);
    let definition = model(&first, &fake, "m", "small").await;
    ok(&post(
        &first,
        &format!("{API}/endpoints/create"),
        &json!({"name": "shared", "usage_tracking": false,
                "model_configs": [{"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
    )
    .await);
    // An unknown name makes a server look at the catalog at once.
    let answer = post(&second, "/v1/chat/completions", &named).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn hostile_management_requests_are_refused_in_mlflows_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let bodies = [
        json!("not an object"),
        json!({"secret_name": ["a"], "secret_value": {"api_key": "x"}}),
        json!({"secret_name": "s", "secret_value": {"api_key": 5}}),
        json!({"secret_name": "s", "secret_value": "flat"}),
        json!({"secret_name": "\u{0}", "secret_value": {}}),
        json!({"secret_name": "x".repeat(10_000), "secret_value": {}}),
        json!({"secret_name": "s", "auth_config": {"api_base": "file:///etc/passwd"}}),
        json!({"secret_name": "s", "auth_config": {"api_base": "http://user:pw@127.0.0.1/"}}),
        json!({"secret_name": "s", "auth_config": {"base_url": "http://127.0.0.1/"}}),
    ];
    for body in &bodies {
        let answer = post(&server, &format!("{API}/secrets/create"), body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.json()["error_code"].is_string(), "{body}");
    }
    let endpoints = [
        json!({"name": "e", "model_configs": "x"}),
        json!({"name": "e", "model_configs": [{"model_definition_id": "d-x", "linkage_type": "PRIMARY", "weight": "heavy"}]}),
        json!({"name": "e", "model_configs": [{"model_definition_id": "d-x", "linkage_type": 7}]}),
        json!({"name": "e/../x", "model_configs": []}),
        json!({"name": "e", "model_configs": [], "experiment_id": "abc"}),
        json!({"name": "e", "model_configs": [], "routing_strategy": "RANDOM"}),
        json!({"name": "e", "model_configs": [], "fallback_config": {"max_attempts": 1e30}}),
        json!({"name": "e", "model_configs": [], "usage_tracking": "maybe"}),
    ];
    for body in &endpoints {
        let answer = post(&server, &format!("{API}/endpoints/create"), body).await;
        assert_eq!(answer.status / 100, 4, "{body}: {}", answer.text);
        assert!(answer.json()["error_code"].is_string(), "{body}");
    }
    // A provider Loopline does not name is an OpenAI-compatible server at the secret's address: its form asks
    // for the address first, and for a key it may do without.
    let generic = ok(&get(&server, "/api/3.0/mlflow/gateway/provider-config?provider=nonesuch").await);
    assert_eq!(generic["default_mode"], "api_key");
    let mode = &generic["auth_modes"][0];
    assert_eq!(mode["config_fields"][0]["name"], "api_base");
    assert_eq!(mode["config_fields"][0]["required"], true);
    assert_eq!(mode["secret_fields"][0]["name"], "api_key");
    assert_eq!(mode["secret_fields"][0]["required"], false);
    refused(
        &get(&server, "/api/3.0/mlflow/gateway/provider-config").await,
        400,
        "INVALID_PARAMETER_VALUE",
        "Provider parameter is required",
    );
    let providers = ok(&get(&server, "/ajax-api/3.0/mlflow/gateway/supported-providers").await);
    assert!(providers["providers"].as_array().unwrap().contains(&json!("anthropic")));
    // Budget policies: none yet (the UI's list); a policy missing its fields is refused in MLflow's words.
    assert_eq!(
        ok(&get(&server, "/ajax-api/3.0/mlflow/gateway/budgets/list").await)["budget_policies"],
        json!([])
    );
    refused(
        &post(
            &server,
            &format!("{API}/budgets/create"),
            &json!({"budget_amount": 10.0}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'budget_unit'",
    );
    // MLflow's scorer guardrails: none yet; an endpoint's list needs the endpoint.
    assert_eq!(
        ok(&get(&server, &format!("{API}/guardrails/list")).await)["guardrails"],
        json!([])
    );
    refused(
        &get(&server, &format!("{API}/guardrails/list-for-endpoint?endpoint_id=e-1")).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Endpoint not found (endpoint_id='e-1')",
    );
}

#[tokio::test]
async fn a_private_address_allowed_once_is_not_reached_after_the_policy_tightens() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;
    let by_address = model(&server, &fake, "by-address", "small").await;
    let local_name = fake.base_url.replace("127.0.0.1", "localhost");
    let secret = ok(&post(
        &server,
        &format!("{API}/secrets/create"),
        &json!({"secret_name": "named-key", "secret_value": {"api_key": KEY}, "auth_config": {"api_base": local_name}}),
    )
    .await);
    let by_name = ok(&post(
        &server,
        &format!("{API}/model-definitions/create"),
        &json!({"name": "by-name", "secret_id": secret["secret"]["secret_id"], "provider": "openai", "model_name": "small"}),
    )
    .await)["model_definition"]["model_definition_id"]
        .clone();
    for (name, definition) in [("address", json!(by_address)), ("named", by_name)] {
        ok(&post(
            &server,
            &format!("{API}/endpoints/create"),
            &json!({"name": name, "usage_tracking": false,
                    "model_configs": [{"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
        )
        .await);
    }
    server.stop().await.unwrap();
    // The same catalog on a server that allows http but no private addresses.
    let mut config = TestServer::config_in(&data);
    config.gateway.api_base_allowed_schemes = vec!["http".into()];
    let strict = TestServer::start_with_config(config.with_defaults()).await.unwrap();
    let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
    let refused = post(&strict, "/gateway/address/mlflow/invocations", &chat).await;
    assert_eq!(refused.status, 404, "{}", refused.text);
    assert!(
        refused.json()["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("can be called")
    );
    // `localhost` is loopback by name (other names are judged by the addresses they resolve to, at each
    // connection: the provider module's tests).
    let unreached = post(&strict, "/gateway/named/mlflow/invocations", &chat).await;
    assert_eq!(unreached.status, 404, "{}", unreached.text);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // New definitions that would reach a private address are refused when they are made.
    let local = ok(&post(
        &strict,
        &format!("{API}/secrets/create"),
        &json!({"secret_name": "ollama-key", "secret_value": {"api_key": "unused-key"}}),
    )
    .await);
    refused_words(
        &post(
            &strict,
            &format!("{API}/model-definitions/create"),
            &json!({"name": "llama", "secret_id": local["secret"]["secret_id"], "provider": "ollama", "model_name": "llama3"}),
        )
        .await,
        "cannot be called",
    );
}

fn refused_words(answer: &Answer, words: &str) {
    refused(answer, 400, "INVALID_PARAMETER_VALUE", words);
}

#[tokio::test]
async fn concurrent_changes_on_one_server_all_land() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let definition = model(&server, &fake, "m", "small").await;
    let endpoint = ok(&post(
        &server,
        &format!("{API}/endpoints/create"),
        &json!({"name": "busy", "usage_tracking": false,
                "model_configs": [{"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
    )
    .await)["endpoint"]["endpoint_id"]
        .clone();
    let writes = (0..40).map(|index| {
        let body = json!({"endpoint_id": endpoint, "key": format!("k{index}"), "value": "v"});
        let server = &server;
        async move { post(server, &format!("{API}/endpoints/set-tag"), &body).await.status }
    });
    let statuses = futures::future::join_all(writes).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let read = ok(&get(&server, &format!("{API}/endpoints/get?name=busy")).await);
    assert_eq!(read["endpoint"]["tags"].as_array().unwrap().len(), 40);
}

#[tokio::test]
async fn catalog_models_are_priced_from_the_configuration_files_prices() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("gateway.yaml");
    std::fs::write(
        &yaml,
        "prices:\n  - {provider: openai, model: priced, input_per_million: 2, output_per_million: 8}\n",
    )
    .unwrap();
    let mut config = TestServer::config_in(&dir.path().join("data"));
    config.gateway.config = Some(yaml);
    config.gateway.api_base_allowed_schemes = vec!["http".into()];
    config.gateway.api_base_allow_private_addresses = true;
    let server = TestServer::start_with_config(config.with_defaults()).await.unwrap();
    let models = ok(&get(&server, "/ajax-api/3.0/mlflow/gateway/supported-models?provider=openai").await);
    assert_eq!(models["models"][0]["model"], "priced");
    assert_eq!(models["models"][0]["input_cost_per_token"], 2e-6);
    let definition = model(&server, &fake, "m", "priced").await;
    ok(&post(
        &server,
        &format!("{API}/endpoints/create"),
        &json!({"name": "costed", "usage_tracking": false,
                "model_configs": [{"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
    )
    .await);
    let answer = post(
        &server,
        "/gateway/costed/mlflow/invocations",
        &json!({"messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    ok(&answer);
    // The fake reports 5 prompt and 3 completion tokens: (5 × 2 + 3 × 8) / 1e6 dollars.
    assert_eq!(answer.header("x-loopline-cost-usd"), Some("0.00003400"));
}

#[tokio::test]
async fn concurrent_invocations_of_an_endpoint_are_all_served() {
    // A provider slow enough that the calls overlap.
    let pace = loopline_test_support::fake_llm::Pace {
        latency: std::time::Duration::from_millis(300),
        token_gap: std::time::Duration::ZERO,
    };
    let fake = FakeLlm::start_paced(Some(KEY), 0, pace).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let definition = model(&server, &fake, "m", "small").await;
    ok(&post(
        &server,
        &format!("{API}/endpoints/create"),
        &json!({"name": "busy", "usage_tracking": false,
                "model_configs": [{"model_definition_id": definition, "linkage_type": "PRIMARY"}]}),
    )
    .await);
    let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
    let calls = (0..6).map(|_| post(&server, "/gateway/busy/mlflow/invocations", &chat));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|answer| answer.status)
        .collect();
    assert_eq!(
        statuses,
        vec![200; 6],
        "each invocation holds only its own body's share"
    );
}
