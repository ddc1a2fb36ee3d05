//! MLflow's gateway scorer guardrails over HTTP: made from a registered judge, attached to endpoints and
//! listed in MLflow's shapes and words; on calls, a judge endpoint's verdict lets a request through, refuses
//! it (VALIDATION, 400 with the guardrail's name and the judge's rationale) or has another endpoint rewrite
//! the answer (SANITIZATION); a guardrail that cannot run refuses the call.

use super::gateway::{Answer, answer_of, post};
use super::gateway_mlflow_api::{KEY, delete, get, ok, refused};
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::{Behaviour, FakeLlm};
use serde_json::{Value, json};

const API: &str = "/api/3.0/mlflow/gateway";

/// A server whose catalog model `chat-m` costs $1,000 per million tokens either way.
async fn start(data: &std::path::Path) -> TestServer {
    let yaml = data.with_extension("yaml");
    std::fs::write(
        &yaml,
        "prices:\n  - {provider: openai, model: chat-m, input_per_million: 1000, output_per_million: 1000}\n",
    )
    .unwrap();
    let mut config = TestServer::config_in(data);
    config.gateway.config = Some(yaml);
    config.gateway.api_base_allowed_schemes = vec!["http".into()];
    config.gateway.api_base_allow_private_addresses = true;
    TestServer::start_with_config(config.with_defaults()).await.unwrap()
}

/// An endpoint named `name` on the fake's model `name-m`; its id.
async fn endpoint(server: &TestServer, fake: &FakeLlm, name: &str) -> String {
    super::gateway_mlflow_api::endpoint_on(server, fake, name, &format!("{name}-m")).await
}

/// Registers a judge scorer (make_judge's serialized form) on the `judge` endpoint; its (id, version).
async fn judge(server: &TestServer, name: &str, instructions: &str) -> (String, i64) {
    let experiment = ok(&post(
        server,
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": format!("judges-{name}")}),
    )
    .await)["experiment_id"]
        .clone();
    let serialized = json!({"name": name, "instructions_judge_pydantic_data": {
        "model": "gateway:/judge", "instructions": instructions,
        "feedback_value_type": {"title": "Result", "type": "string"}}});
    let scorer = ok(&post(
        server,
        "/api/3.0/mlflow/scorers/register",
        &json!({"experiment_id": experiment, "name": name, "serialized_scorer": serialized.to_string()}),
    )
    .await);
    (
        scorer["scorer_id"].as_str().unwrap().to_string(),
        scorer["version"]
            .as_i64()
            .or(scorer["scorer_version"].as_i64())
            .unwrap(),
    )
}

async fn guardrail(server: &TestServer, body: Value) -> Answer {
    post(server, &format!("{API}/guardrails/create"), &body).await
}

/// Makes a guardrail from `body` and attaches it (unordered) to the endpoint `endpoint_id`; its id.
async fn attached(server: &TestServer, endpoint_id: &str, body: Value) -> Value {
    let id = ok(&guardrail(server, body).await)["guardrail"]["guardrail_id"].clone();
    ok(&post(
        server,
        &format!("{API}/guardrails/add-to-endpoint"),
        &json!({"endpoint_id": endpoint_id, "guardrail_id": id}),
    )
    .await);
    id
}

fn verdict(result: &str, rationale: &str) -> Behaviour {
    Behaviour::Reply(json!({"result": result, "rationale": rationale}).to_string())
}

async fn invoke(server: &TestServer, text: &str) -> Answer {
    post(
        server,
        "/gateway/chat/mlflow/invocations",
        &json!({"messages": [{"role": "user", "content": text}]}),
    )
    .await
}

#[tokio::test]
async fn guardrails_are_kept_attached_and_listed_in_mlflows_shapes_and_words() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let chat = endpoint(&server, &fake, "chat").await;
    endpoint(&server, &fake, "judge").await;
    let fixer = endpoint(&server, &fake, "fixer").await;
    let (scorer, version) = judge(&server, "safe", "Is {{ inputs }} safe? Answer yes or no.").await;
    let made = ok(&guardrail(
        &server,
        json!({"name": "in-val", "scorer_id": scorer, "scorer_version": version, "stage": "BEFORE",
               "action": 2, "action_endpoint_id": fixer}),
    )
    .await)["guardrail"]
        .clone();
    let id = made["guardrail_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("gr-") && id.len() == 35, "{id}");
    assert_eq!(
        (&made["stage"], &made["action"], &made["action_endpoint_id"]),
        (&json!("BEFORE"), &json!("SANITIZATION"), &json!("fixer"))
    );
    assert_eq!(made["scorer"]["scorer_id"], scorer.as_str());
    assert_eq!(made["scorer"]["scorer_version"], version);
    assert_eq!(made["created_by"], "");
    assert_eq!(
        ok(&get(&server, &format!("{API}/guardrails/get?guardrail_id={id}")).await)["guardrail"],
        made
    );
    // MLflow's refusals.
    let missing = json!({"name": "x", "scorer_id": "missing-scorer", "scorer_version": 1, "stage": "BEFORE", "action": "VALIDATION"});
    refused(
        &guardrail(&server, missing).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Scorer with ID 'missing-scorer' not found.",
    );
    let bad_version =
        json!({"name": "x", "scorer_id": scorer, "scorer_version": 999, "stage": "BEFORE", "action": "VALIDATION"});
    refused(
        &guardrail(&server, bad_version).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        &format!("Scorer with ID '{scorer}' and version 999 not found."),
    );
    let unspecified =
        json!({"name": "x", "scorer_id": scorer, "scorer_version": version, "stage": 0, "action": "VALIDATION"});
    refused(
        &guardrail(&server, unspecified).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "stage",
    );
    let (outputs, outputs_version) = judge(&server, "fair", "Is {{ outputs }} fair?").await;
    let early = json!({"name": "x", "scorer_id": outputs, "scorer_version": outputs_version, "stage": "BEFORE", "action": "VALIDATION"});
    refused(
        &guardrail(&server, early).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "{{ outputs }}",
    );
    refused(
        &get(&server, &format!("{API}/guardrails/get?guardrail_id=gr-nonexistent")).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Guardrail not found (guardrail_id='gr-nonexistent')",
    );
    // Pages of two.
    for name in ["b", "c"] {
        ok(&guardrail(
            &server,
            json!({"name": name, "scorer_id": scorer, "scorer_version": version, "stage": "BEFORE", "action": "VALIDATION"}),
        )
        .await);
    }
    let first = ok(&get(&server, &format!("{API}/guardrails/list?max_results=2")).await);
    let token = first["next_page_token"].as_str().unwrap();
    let second = ok(&get(
        &server,
        &format!("{API}/guardrails/list?max_results=2&page_token={token}"),
    )
    .await);
    assert_eq!(
        (
            first["guardrails"].as_array().unwrap().len(),
            second["guardrails"].as_array().unwrap().len()
        ),
        (2, 1)
    );
    assert!(second.get("next_page_token").is_none(), "{second}");
    // Attached in order: ordered ones first, then unordered; a duplicate is refused; update without an
    // order clears it.
    let ids: Vec<String> = ok(&get(&server, &format!("{API}/guardrails/list")).await)["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|guardrail| guardrail["guardrail_id"].as_str().unwrap().to_string())
        .collect();
    let add = |guardrail: &str, order: Option<i64>| {
        let mut body = json!({"endpoint_id": chat, "guardrail_id": guardrail});
        if let Some(order) = order {
            body["execution_order"] = json!(order);
        }
        body
    };
    let config = ok(&post(
        &server,
        &format!("{API}/guardrails/add-to-endpoint"),
        &add(&ids[0], None),
    )
    .await);
    assert!(config["config"].get("execution_order").is_none(), "{config}");
    assert_eq!(config["config"]["guardrail"]["guardrail_id"], ids[0].as_str());
    ok(&post(
        &server,
        &format!("{API}/guardrails/add-to-endpoint"),
        &add(&ids[1], Some(20)),
    )
    .await);
    ok(&post(
        &server,
        &format!("{API}/guardrails/add-to-endpoint"),
        &add(&ids[2], Some(10)),
    )
    .await);
    refused(
        &post(
            &server,
            &format!("{API}/guardrails/add-to-endpoint"),
            &add(&ids[2], Some(1)),
        )
        .await,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "is already added to endpoint",
    );
    let listed = |answer: Value| -> Vec<String> {
        answer["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|config| config["guardrail_id"].as_str().unwrap().to_string())
            .collect()
    };
    let path = format!("{API}/guardrails/list-for-endpoint?endpoint_id={chat}");
    assert_eq!(
        listed(ok(&get(&server, &path).await)),
        [ids[2].as_str(), &ids[1], &ids[0]]
    );
    let updated = ok(&answer_of(
        reqwest::Client::new()
            .patch(server.url(&format!("{API}/guardrails/update-config")))
            .json(&json!({"endpoint_id": chat, "guardrail_id": ids[2]})),
    )
    .await);
    assert!(updated["config"].get("execution_order").is_none(), "{updated}");
    assert_eq!(
        listed(ok(&get(&server, &path).await)),
        [ids[1].as_str(), &ids[0], &ids[2]]
    );
    refused(
        &delete(
            &server,
            &format!("{API}/guardrails/remove-from-endpoint"),
            &json!({"endpoint_id": chat, "guardrail_id": "gr-x"}),
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        &format!("GuardrailConfig not found (endpoint_id='{chat}', guardrail_id='gr-x')"),
    );
    ok(&delete(
        &server,
        &format!("{API}/guardrails/delete"),
        &json!({"guardrail_id": ids.iter().find(|other| **other != id).unwrap()}),
    )
    .await);
    assert_eq!(listed(ok(&get(&server, &path).await)).len(), 2);
    // Deleting the endpoint drops its attachments and the action endpoint; the guardrails stay.
    ok(&delete(
        &server,
        &format!("{API}/endpoints/delete"),
        &json!({"endpoint_id": fixer}),
    )
    .await);
    let kept = ok(&get(&server, &format!("{API}/guardrails/get?guardrail_id={id}")).await);
    assert!(kept["guardrail"].get("action_endpoint_id").is_none(), "{kept}");
    ok(&delete(
        &server,
        &format!("{API}/endpoints/delete"),
        &json!({"endpoint_id": chat}),
    )
    .await);
    refused(
        &get(&server, &path).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Endpoint not found",
    );
}

#[tokio::test]
async fn a_judge_lets_requests_through_refuses_them_or_has_answers_rewritten() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let chat = endpoint(&server, &fake, "chat").await;
    let judge_endpoint = endpoint(&server, &fake, "judge").await;
    let fixer = endpoint(&server, &fake, "fixer").await;
    let (safe, safe_version) = judge(&server, "safe", "Is {{ inputs }} safe? Answer yes or no.").await;
    let validation = ok(&guardrail(
        &server,
        json!({"name": "in-val", "scorer_id": safe, "scorer_version": safe_version, "stage": "BEFORE", "action": "VALIDATION"}),
    )
    .await)["guardrail"]["guardrail_id"]
        .clone();
    for endpoint_id in [&chat, &judge_endpoint] {
        // On the judge's own endpoint too: the judge's calls are not guarded, so it does not call itself.
        ok(&post(
            &server,
            &format!("{API}/guardrails/add-to-endpoint"),
            &json!({"endpoint_id": endpoint_id, "guardrail_id": validation, "execution_order": 1}),
        )
        .await);
    }
    // A passing verdict: the call goes on; the judge saw the request.
    fake.script("judge-m", vec![verdict("yes", "fine")]);
    let passed = invoke(&server, "hello").await;
    assert_eq!(passed.status, 200, "{}", passed.text);
    assert_eq!(passed.json()["choices"][0]["message"]["content"], "echo: hello");
    let calls = fake.calls();
    let judged = calls.iter().find(|call| call.model == "judge-m").unwrap();
    let prompt = judged.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.starts_with("inputs: {") && prompt.contains("\"hello\""),
        "{prompt}"
    );
    assert!(
        judged.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Is {{ inputs }} safe?")
    );
    assert_eq!(judged.body["response_format"]["type"], "json_schema");
    // A failing verdict refuses the call, in each API's shape, and the chat model is not called.
    let before = fake.calls().iter().filter(|call| call.model == "chat-m").count();
    fake.script(
        "judge-m",
        vec![verdict("no", "it contains BAD words"), verdict("No", "")],
    );
    let blocked = invoke(&server, "BAD").await;
    assert_eq!(blocked.status, 400, "{}", blocked.text);
    assert_eq!(
        blocked.json(),
        json!({"detail": "Guardrail 'in-val' blocked: it contains BAD words"})
    );
    let openai = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "chat", "messages": [{"role": "user", "content": "BAD"}]}),
    )
    .await;
    assert_eq!(openai.status, 400, "{}", openai.text);
    assert_eq!(openai.json()["error"]["code"], "guardrail_blocked");
    assert_eq!(openai.json()["error"]["message"], "Guardrail 'in-val' blocked: No");
    assert_eq!(
        fake.calls().iter().filter(|call| call.model == "chat-m").count(),
        before
    );
    // A judge that fails, or answers no verdict, refuses the call rather than skipping the check.
    fake.script(
        "judge-m",
        vec![Behaviour::Fail {
            status: 500,
            message: "judge down".into(),
            retry_after: None,
        }],
    );
    let unavailable = invoke(&server, "hello").await;
    assert_eq!(unavailable.status, 502, "{}", unavailable.text);
    assert!(
        unavailable.json()["detail"]
            .as_str()
            .unwrap()
            .contains("Guardrail 'in-val' could not run"),
        "{}",
        unavailable.text
    );
    fake.script("judge-m", vec![Behaviour::Reply("I think it is fine".into())]);
    assert_eq!(invoke(&server, "hello").await.status, 502);
    // AFTER + SANITIZATION: the fixer endpoint rewrites the answer the caller gets.
    ok(&delete(
        &server,
        &format!("{API}/guardrails/remove-from-endpoint"),
        &json!({"endpoint_id": chat, "guardrail_id": validation}),
    )
    .await);
    let (fair, fair_version) = judge(&server, "fair", "Is {{ outputs }} free of personal data?").await;
    attached(
        &server,
        &chat,
        json!({"name": "out-san", "scorer_id": fair, "scorer_version": fair_version, "stage": "AFTER",
               "action": "SANITIZATION", "action_endpoint_id": fixer}),
    )
    .await;
    let rewritten = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "chat-m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "echo: [REDACTED]"}}]});
    fake.script("judge-m", vec![verdict("no", "the answer has an e-mail address")]);
    fake.script("fixer-m", vec![Behaviour::Reply(format!("```json\n{rewritten}\n```"))]);
    let cleaned = invoke(&server, "ann@example.com").await;
    assert_eq!(cleaned.status, 200, "{}", cleaned.text);
    assert_eq!(cleaned.json()["choices"][0]["message"]["content"], "echo: [REDACTED]");
    let fixed = fake
        .calls()
        .into_iter()
        .rev()
        .find(|call| call.model == "fixer-m")
        .unwrap();
    let asked = fixed.body["messages"][0]["content"].as_str().unwrap();
    assert!(
        asked.contains("the answer has an e-mail address") && asked.contains("echo: ann@example.com"),
        "{asked}"
    );
    // A stream would pass an AFTER guardrail unchecked: refused.
    let streamed = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(streamed.status, 400, "{}", streamed.text);
    assert_eq!(streamed.json()["error"]["param"], "stream");
}

/// Any JSON value a hostile caller may put in a field.
fn hostile_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| serde_json::Number::from_f64(number).map_or(Value::Null, Value::from)),
        "\\PC{0,40}".prop_map(Value::from),
        Just(json!("BEFORE")),
        Just(json!("SANITIZATION")),
        Just(json!([1, {"a": null}])),
        Just(json!({"nested": {"deep": [true]}})),
    ]
}

#[test]
fn hostile_guardrail_requests_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeLlm::start(Some(KEY))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = runtime.block_on(start(&dir.path().join("data")));
    let (chat, scorer) = runtime.block_on(async {
        let chat = endpoint(&server, &fake, "chat").await;
        endpoint(&server, &fake, "judge").await;
        (chat, judge(&server, "safe", "Is {{ inputs }} safe?").await)
    });
    let config = proptest::prelude::ProptestConfig {
        cases: 150,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    };
    let fields = [
        "name",
        "scorer_id",
        "scorer_version",
        "stage",
        "action",
        "action_endpoint_id",
        "endpoint_id",
        "guardrail_id",
        "execution_order",
        "max_results",
        "page_token",
    ];
    proptest::proptest!(config, |(
        route in 0..5usize,
        values in proptest::collection::vec((0..fields.len(), hostile_value()), 0..8),
        real in proptest::prelude::any::<bool>(),
    )| {
        let mut body = if real {
            json!({"name": "g", "scorer_id": scorer.0, "scorer_version": scorer.1, "stage": "BEFORE",
                   "action": "VALIDATION", "endpoint_id": chat})
        } else {
            json!({})
        };
        for (field, value) in values {
            body[fields[field]] = value;
        }
        let client = reqwest::Client::new();
        let request = match route {
            0 => client.post(server.url(&format!("{API}/guardrails/create"))).json(&body),
            1 => client.post(server.url(&format!("{API}/guardrails/add-to-endpoint"))).json(&body),
            2 => client.patch(server.url(&format!("{API}/guardrails/update-config"))).json(&body),
            3 => client.delete(server.url(&format!("{API}/guardrails/remove-from-endpoint"))).json(&body),
            _ => {
                let query: Vec<(String, String)> = body
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(key, value)| (key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_string)))
                    .collect();
                client.get(reqwest::Url::parse_with_params(&server.url(&format!("{API}/guardrails/list")), &query).unwrap())
            }
        };
        let answer = runtime.block_on(answer_of(request));
        proptest::prop_assert!(answer.status < 500, "{}: {}", answer.status, answer.text);
    });
    // Whatever was made, the endpoint still answers (its guardrails' judge says yes).
    fake.script("judge-m", vec![verdict("yes", "fine"); 200]);
    let answered = runtime.block_on(invoke(&server, "hello"));
    assert_eq!(answered.status, 200, "{}", answered.text);
}

#[tokio::test]
async fn limits_come_before_judges_and_a_sanitizer_changes_only_what_is_asked() {
    let fake = FakeLlm::start(Some(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let chat = endpoint(&server, &fake, "chat").await;
    endpoint(&server, &fake, "judge").await;
    let fixer = endpoint(&server, &fake, "fixer").await;
    let (safe, version) = judge(&server, "safe", "Is {{ inputs }} safe?").await;
    attached(
        &server,
        &chat,
        json!({"name": "in-san", "scorer_id": safe, "scorer_version": version, "stage": "BEFORE",
               "action": "SANITIZATION", "action_endpoint_id": fixer}),
    )
    .await;
    // A budget that refuses the call refuses it before any judge is asked.
    let policy = ok(&post(
        &server,
        &format!("{API}/budgets/create"),
        &json!({"budget_unit": "USD", "budget_amount": 0.000001, "duration": {"unit": "DAYS", "value": 1},
                "target_scope": "ENDPOINT", "target_value": chat, "budget_action": "REJECT"}),
    )
    .await)["budget_policy"]["budget_policy_id"]
        .clone();
    assert_eq!(invoke(&server, "hello").await.status, 429);
    assert!(fake.calls().iter().all(|call| call.model != "judge-m"));
    ok(&delete(
        &server,
        &format!("{API}/budgets/delete"),
        &json!({"budget_policy_id": policy}),
    )
    .await);
    // The sanitizer's rewrite replaces the messages only: not the stream, the limits or where the call goes.
    fake.script("judge-m", vec![verdict("no", "a name")]);
    let rewrite = json!({"messages": [{"role": "user", "content": "[REDACTED]"}], "stream": true,
                         "base_url": "http://elsewhere.invalid", "n": 5, "model": "fixer"});
    fake.script("fixer-m", vec![Behaviour::Reply(rewrite.to_string())]);
    let answered = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "chat", "messages": [{"role": "user", "content": "I am Ann"}]}),
    )
    .await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(answered.json()["choices"][0]["message"]["content"], "echo: [REDACTED]");
    let sent = fake
        .calls()
        .into_iter()
        .rev()
        .find(|call| call.model == "chat-m")
        .unwrap();
    for field in ["stream", "base_url", "n"] {
        assert!(sent.body.get(field).is_none(), "{field}: {}", sent.body);
    }
    // A rewrite that is not a valid request refuses the call.
    fake.script("judge-m", vec![verdict("no", "a name")]);
    fake.script(
        "fixer-m",
        vec![Behaviour::Reply(
            json!({"messages": [{"role": "bogus", "content": 5}]}).to_string(),
        )],
    );
    let refused_rewrite = invoke(&server, "I am Ann").await;
    assert_eq!(refused_rewrite.status, 400, "{}", refused_rewrite.text);
    assert!(
        refused_rewrite.text.contains("rewritten request is not valid"),
        "{}",
        refused_rewrite.text
    );
    // Legacy completions are judged on their prompt and pass on a yes.
    fake.script("judge-m", vec![verdict("yes", "fine")]);
    let completed = post(&server, "/v1/completions", &json!({"model": "chat", "prompt": "hello"})).await;
    assert_eq!(completed.status, 200, "{}", completed.text);
}
