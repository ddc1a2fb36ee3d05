//! The LLM gateway under /v1, in front of fake providers on loopback: routing to the named model's
//! deployment, streams, retries, fallback before a stream's first byte and a typed error after it, bad input
//! in OpenAI's error shape, and a provider key that never comes back.

use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::{Behaviour, FakeLlm};
use serde_json::{Value, json};

const KEY: &str = "sk-upstream-secret-4242";

struct Setup {
    server: TestServer,
    primary: FakeLlm,
    spare: FakeLlm,
    _files: tempfile::TempDir,
}

/// A server whose gateway has `chat` (on the primary fake, key from a file, one retry) falling back to
/// `spare` (on a second fake without a key), and `embed` for embeddings.
async fn setup() -> Setup {
    let primary = FakeLlm::start(Some(KEY)).await.unwrap();
    let spare = FakeLlm::start(None).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let key_file = files.path().join("primary.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let config = format!(
        "providers:\n\
         \x20 - {{name: primary, kind: openai, base_url: '{}', api_key_file: '{}'}}\n\
         \x20 - {{name: spare, kind: openai-compatible, base_url: '{}'}}\n\
         models:\n\
         \x20 - {{name: chat, deployments: [{{provider: primary, model: big-model}}], fallbacks: [spare], retries: 1}}\n\
         \x20 - {{name: spare, deployments: [{{provider: spare, model: small-model}}], retries: 0}}\n\
         \x20 - {{name: embed, deployments: [{{provider: primary, model: embedder}}]}}\n\
         \x20 - {{name: org/with-slash, deployments: [{{provider: spare, model: x}}]}}\n\
         \x20 - {{name: cached, deployments: [{{provider: spare, model: kept}}], cache_ttl_seconds: 600}}\n\
         settings: {{retry_backoff_ms: 0, cooldown_failures: 100}}\n",
        primary.base_url,
        key_file.display(),
        spare.base_url
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    Setup {
        server,
        primary,
        spare,
        _files: files,
    }
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The data of each server-sent event.
    pub(crate) fn events(&self) -> Vec<String> {
        self.text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

pub(crate) async fn post(server: &TestServer, path: &str, body: &Value) -> Answer {
    answer_of(reqwest::Client::new().post(server.url(path)).json(body)).await
}

pub(crate) async fn answer_of(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        text: response.text().await.unwrap(),
    }
}

fn chat(model: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The streamed text, joined from the content deltas.
pub(crate) fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|data| data.starts_with('{'))
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn a_chat_goes_to_the_named_models_deployment_with_the_configured_key_which_never_comes_back() {
    let setup = setup().await;
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(body["usage"]["total_tokens"], 8);
    let calls = setup.primary.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/chat/completions");
    assert_eq!(calls[0].model, "big-model");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(calls[0].body["messages"][1]["content"], "hello there");
    assert_eq!(answer.header("x-loopline-deployment"), Some("primary/big-model"));
    assert_eq!(answer.header("x-loopline-attempts"), Some("1"));
    let overhead: f64 = answer.header("x-loopline-overhead-ms").unwrap().parse().unwrap();
    assert!(overhead >= 0.0);
    assert!(answer.header("x-request-id").unwrap().starts_with("req_"));
    assert!(!answer.text.contains(KEY));
    assert!(!format!("{:?}", answer.headers).contains(KEY));
    assert!(setup.spare.calls().is_empty());
    let metrics = metrics(&setup.server).await;
    assert!(
        metrics.contains("loopline_gateway_calls_total{model=\"chat\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("loopline_gateway_tokens_total{model=\"chat\",kind=\"completion\"} 3"));
    assert!(metrics.contains("loopline_gateway_upstream_attempts_total{provider=\"primary\",result=\"ok\"} 1"));
    assert!(metrics.contains("loopline_gateway_call_duration_seconds_count{model=\"chat\"} 1"));
}

pub(crate) async fn metrics(server: &TestServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_is_passed_through_event_by_event_with_its_usage_and_done() {
    let setup = setup().await;
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    let events = answer.events();
    assert_eq!(streamed_text(&events), "echo: hello there");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(setup.primary.calls()[0].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn when_every_deployment_is_rate_limited_the_caller_reads_what_the_last_one_said() {
    let setup = setup().await;
    let limited = || Behaviour::Fail {
        status: 429,
        message: "queue full: 512 requests waiting".into(),
        retry_after: Some("0".into()),
    };
    setup.primary.script("big-model", vec![limited(), limited()]);
    setup.spare.script("small-model", vec![limited()]);
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    let error = &answer.json()["error"];
    assert_eq!(error["type"], "rate_limit_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("rate limited") && message.contains("queue full: 512 requests waiting"),
        "{message}"
    );
}

#[tokio::test]
async fn a_retryable_failure_is_retried_and_then_the_fallback_answers_before_any_byte_is_sent() {
    let setup = setup().await;
    let fail = |status: u16| Behaviour::Fail {
        status,
        message: "overloaded".into(),
        retry_after: Some("0".into()),
    };
    // A 429 then success: the same deployment answers on its retry.
    setup.primary.script("big-model", vec![fail(429)]);
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("x-loopline-attempts"), Some("2"));
    assert_eq!(answer.header("x-loopline-fallback"), None);
    // Failing both tries: the fallback model answers, streamed or not, and the caller never sees the failure.
    for stream in [false, true] {
        setup.primary.script("big-model", vec![fail(500), fail(503)]);
        let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", stream)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.header("x-loopline-deployment"), Some("spare/small-model"));
        assert_eq!(answer.header("x-loopline-fallback"), Some("true"));
        assert_eq!(answer.header("x-loopline-attempts"), Some("3"));
        if stream {
            assert_eq!(streamed_text(&answer.events()), "echo: hello there");
            assert_eq!(answer.events().last().map(String::as_str), Some("[DONE]"));
        } else {
            assert_eq!(answer.json()["choices"][0]["message"]["content"], "echo: hello there");
        }
    }
    assert_eq!(setup.spare.calls().len(), 2);
    assert!(
        setup
            .spare
            .calls()
            .iter()
            .all(|call| call.model == "small-model" && call.authorization.is_none())
    );
    // A stream that breaks before its first event falls back too.
    setup
        .primary
        .script("big-model", vec![Behaviour::CutAfter(0), Behaviour::CutAfter(0)]);
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", true)).await;
    assert_eq!(answer.header("x-loopline-deployment"), Some("spare/small-model"));
    assert_eq!(streamed_text(&answer.events()), "echo: hello there");
    // Everything failing: 503 in OpenAI's shape, naming the model, without the key.
    setup.primary.script("big-model", vec![fail(500), fail(500)]);
    setup.spare.script("small-model", vec![fail(500)]);
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.json()["error"]["code"], "upstream_unavailable");
    assert!(answer.json()["error"]["message"].as_str().unwrap().contains("'chat'"));
    assert!(!answer.text.contains(KEY));
    // Counted: three fallbacks, the failed attempts by provider, the streams' first tokens, the failed call.
    let metrics = metrics(&setup.server).await;
    for line in [
        "loopline_gateway_fallbacks_total{model=\"chat\"} 3",
        "loopline_gateway_upstream_attempts_total{provider=\"primary\",result=\"retryable\"} 9",
        "loopline_gateway_upstream_attempts_total{provider=\"spare\",result=\"retryable\"} 1",
        "loopline_gateway_calls_total{model=\"chat\",outcome=\"unavailable\"} 1",
        "loopline_gateway_time_to_first_token_seconds_count{model=\"chat\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_stream_that_breaks_after_it_started_ends_with_a_typed_error_event() {
    let setup = setup().await;
    // The role event and one word, then the connection breaks.
    setup.primary.script("big-model", vec![Behaviour::CutAfter(2)]);
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", true)).await;
    assert_eq!(answer.status, 200);
    let events = answer.events();
    assert_eq!(streamed_text(&events), "echo: ");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{events:?}");
    assert!(!events.iter().any(|event| event == "[DONE]"));
    // Nothing was retried once bytes had gone out.
    assert_eq!(setup.primary.calls().len(), 1);
    assert!(setup.spare.calls().is_empty());
    let metrics = metrics(&setup.server).await;
    assert!(
        metrics.contains("loopline_gateway_streams_broken_total{model=\"chat\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loopline_gateway_calls_total{model=\"chat\",outcome=\"broken\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_provider_saying_the_request_is_wrong_is_passed_on_and_a_refused_key_moves_on() {
    let setup = setup().await;
    setup.primary.script(
        "big-model",
        vec![Behaviour::Fail {
            status: 400,
            message: "temperature must be at most 2".into(),
            retry_after: None,
        }],
    );
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["message"], "temperature must be at most 2");
    assert!(setup.spare.calls().is_empty());
    // The provider refusing the gateway's key: not the caller's fault, the fallback answers.
    setup.primary.script(
        "big-model",
        vec![Behaviour::Fail {
            status: 401,
            message: format!("Incorrect API key provided: {KEY}"),
            retry_after: None,
        }],
    );
    let answer = post(&setup.server, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-loopline-deployment"), Some("spare/small-model"));
}

#[tokio::test]
async fn embeddings_completions_and_models_answer_in_openais_shapes() {
    let setup = setup().await;
    let answer = post(
        &setup.server,
        "/v1/embeddings",
        &json!({"model": "embed", "input": ["ab", "c"]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["data"][1]["embedding"], json!([1.0, 99.0, 1.0]));
    assert_eq!(setup.primary.calls()[0].path, "/v1/embeddings");
    let answer = post(
        &setup.server,
        "/v1/completions",
        &json!({"model": "spare", "prompt": "once upon"}),
    )
    .await;
    assert_eq!(answer.json()["choices"][0]["text"], "echo: once upon");
    let client = reqwest::Client::new();
    let list: Value = client
        .get(setup.server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat", "spare", "embed", "org/with-slash", "cached"]);
    let one = client
        .get(setup.server.url("/v1/models/org/with-slash"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["id"], "org/with-slash");
    let missing = client.get(setup.server.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_in_openais_shape_before_any_provider_is_called() {
    let setup = setup().await;
    let user = json!({"role": "user", "content": "hi"});
    let bad_call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]});
    let cases = [
        (
            json!({"model": "nope", "messages": [user]}),
            404,
            Some("model"),
            Some("model_not_found"),
        ),
        (json!({"model": "chat", "messages": "hi"}), 400, Some("messages"), None),
        (
            json!({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}),
            400,
            Some("messages[0].role"),
            None,
        ),
        (
            json!({"model": "chat", "messages": [user, bad_call]}),
            400,
            Some("messages[1].tool_calls[0].function.arguments"),
            None,
        ),
        (
            json!({"model": "chat", "messages": [user], "api_base": "http://127.0.0.1:1/steal"}),
            400,
            Some("api_base"),
            None,
        ),
        (
            json!({"model": "chat", "messages": [user], "base_url": "http://169.254.169.254/"}),
            400,
            Some("base_url"),
            None,
        ),
        (json!({"messages": [user]}), 400, Some("model"), None),
        (json!([1, 2]), 400, Some("body"), None),
    ];
    for (body, status, param, code) in cases {
        let answer = post(&setup.server, "/v1/chat/completions", &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        let error = &answer.json()["error"];
        assert_eq!(error["param"].as_str(), param, "{body}: {error}");
        assert_eq!(error["code"].as_str(), code, "{body}: {error}");
        assert!(error["type"].is_string() && error["message"].is_string());
    }
    // Only JSON bodies: the access guard finds the model in a JSON body (in the query string otherwise).
    let plain = reqwest::Client::new()
        .post(setup.server.url("/v1/chat/completions?model=chat"))
        .header("content-type", "text/plain")
        .body(json!({"model": "chat", "messages": [user]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(
        plain.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    let raw = reqwest::Client::new()
        .post(setup.server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(
        raw.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let huge = reqwest::Client::new()
        .post(setup.server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(vec![b' '; 17 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(
        huge.json::<Value>().await.unwrap()["error"]["code"],
        "request_too_large"
    );
    assert!(setup.primary.calls().is_empty() && setup.spare.calls().is_empty());
}

async fn post_with(server: &TestServer, body: &Value, cache_control: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(body);
    if let Some(value) = cache_control {
        request = request.header("cache-control", value);
    }
    answer_of(request).await
}

#[tokio::test]
async fn the_exact_cache_answers_the_same_request_again_streams_included_and_honours_cache_control() {
    let setup = setup().await;
    let calls = || setup.spare.calls().len();
    let body = chat("cached", false);
    let first = post_with(&setup.server, &body, None).await;
    assert_eq!(first.header("x-loopline-cache"), Some("miss"));
    // The same request, its fields in another order: answered from the cache, the provider not called.
    let reordered: Value = serde_json::from_str(&format!(
        "{{\"messages\": {}, \"model\": \"cached\", \"stream\": false}}",
        body["messages"]
    ))
    .unwrap();
    let again = post_with(&setup.server, &reordered, None).await;
    assert_eq!(again.header("x-loopline-cache"), Some("hit"), "{}", again.text);
    assert_eq!(again.json()["choices"], first.json()["choices"]);
    assert_eq!(calls(), 1);
    // no-cache asks the provider (and keeps the new answer); no-store neither reads nor keeps.
    assert_eq!(
        post_with(&setup.server, &body, Some("no-cache"))
            .await
            .header("x-loopline-cache"),
        Some("miss")
    );
    assert_eq!(calls(), 2);
    assert_eq!(
        post_with(&setup.server, &body, Some("no-store"))
            .await
            .header("x-loopline-cache"),
        None
    );
    assert_eq!(calls(), 3);
    // Another question is another entry.
    let mut other = body.clone();
    other["messages"][1]["content"] = json!("something else");
    assert_eq!(
        post_with(&setup.server, &other, None).await.header("x-loopline-cache"),
        Some("miss")
    );
    // A stream is kept once it finished, and replayed as the same events.
    let streamed = chat("cached", true);
    let live = post_with(&setup.server, &streamed, None).await;
    assert_eq!(live.header("x-loopline-cache"), Some("miss"));
    let replayed = post_with(&setup.server, &streamed, None).await;
    assert_eq!(replayed.header("x-loopline-cache"), Some("hit"));
    assert_eq!(replayed.events(), live.events());
    assert_eq!(replayed.events().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(calls(), 5);
    // A stream cut short is not kept.
    let mut cut = chat("cached", true);
    cut["messages"][1]["content"] = json!("cut me");
    setup.spare.script("kept", vec![Behaviour::CutAfter(2)]);
    let broken = post_with(&setup.server, &cut, None).await;
    assert!(broken.text.contains("stream_interrupted"), "{}", broken.text);
    assert_eq!(
        post_with(&setup.server, &cut, None).await.header("x-loopline-cache"),
        Some("miss")
    );
}

/// The gateway's traces in its own experiment, once there is one.
async fn gateway_traces(server: &TestServer) -> Vec<Value> {
    let found = answer_of(
        reqwest::Client::new()
            .get(server.url("/api/2.0/mlflow/experiments/get-by-name?experiment_name=loopline-gateway")),
    )
    .await;
    if found.status != 200 {
        return Vec::new();
    }
    let id = found.json()["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = answer_of(
        reqwest::Client::new().get(server.url(&format!("/api/2.0/mlflow/traces?experiment_ids={id}&max_results=100"))),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json()["traces"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn traces_past_their_retention_are_deleted() {
    let fake = FakeLlm::start(None).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let config = format!(
        "providers: [{{name: p, kind: openai-compatible, base_url: '{}'}}]\n\
         models: [{{name: m, deployments: [{{provider: p, model: x}}]}}]\n\
         settings: {{trace_retention_seconds: 1}}\n",
        fake.base_url
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    assert_eq!(
        post(&server, "/v1/chat/completions", &chat("m", false)).await.status,
        200
    );
    // Written, then gone once it is older than a second (the sweep runs every half second).
    let mut seen = false;
    for _ in 0..3_000 {
        let traces = gateway_traces(&server).await;
        seen |= !traces.is_empty();
        if seen && traces.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the trace was never written (seen: {seen}) or never deleted");
}
