//! Anthropic through the gateway: `/v1/messages` callers routed to an OpenAI-compatible provider, and OpenAI
//! callers routed to an Anthropic provider (fakes on loopback), whole and streamed, tools included.

use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::FakeLlm;
use serde_json::{Value, json};

const KEY: &str = "sk-ant-fake-99";

struct Setup {
    server: TestServer,
    openai: FakeLlm,
    anthropic: FakeLlm,
    _files: tempfile::TempDir,
}

async fn setup() -> Setup {
    let openai = FakeLlm::start(None).await.unwrap();
    let anthropic = FakeLlm::start(Some(KEY)).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let key_file = files.path().join("anthropic.key");
    std::fs::write(&key_file, KEY).unwrap();
    let config = format!(
        "providers:\n\
         \x20 - {{name: compatible, kind: openai-compatible, base_url: '{}'}}\n\
         \x20 - {{name: claude, kind: anthropic, base_url: '{}', api_key_file: '{}'}}\n\
         models:\n\
         \x20 - {{name: gpt, deployments: [{{provider: compatible, model: gpt-x}}]}}\n\
         \x20 - {{name: claude, deployments: [{{provider: claude, model: claude-x}}]}}\n",
        openai.base_url,
        anthropic.base_url,
        key_file.display()
    );
    let server = TestServer::start_gateway(files.path(), &config).await.unwrap();
    Setup {
        server,
        openai,
        anthropic,
        _files: files,
    }
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// (event name, data) of each server-sent event.
fn named_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .unwrap_or_default();
            let data = event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .unwrap_or("null");
            (name.to_string(), serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect()
}

fn messages_request(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "system": "be brief", "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]})
}

#[tokio::test]
async fn a_messages_caller_is_answered_by_an_openai_compatible_provider_whole_and_streamed() {
    let setup = setup().await;
    let (status, text) = post(&setup.server, "/v1/messages", &messages_request("gpt", false)).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "gpt");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "echo: hello there"}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"], json!({"input_tokens": 5, "output_tokens": 3}));
    let call = &setup.openai.calls()[0];
    assert_eq!(call.path, "/v1/chat/completions");
    assert_eq!(
        call.body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(call.body["max_tokens"], 64);

    let (status, text) = post(&setup.server, "/v1/messages", &messages_request("gpt", true)).await;
    assert_eq!(status, 200);
    let events = named_events(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let streamed: String = events
        .iter()
        .filter_map(|(_, data)| data.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(streamed, "echo: hello there");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn tools_cross_from_messages_to_chat_and_back() {
    let setup = setup().await;
    let mut request = messages_request("gpt", false);
    request["tools"] = json!([{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]);
    let (status, text) = post(&setup.server, "/v1/messages", &request).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["content"][0]["type"], "tool_use");
    assert_eq!(message["content"][0]["name"], "get_weather");
    assert_eq!(message["content"][0]["input"], json!({"text": "hello there"}));
    assert_eq!(
        setup.openai.calls()[0].body["tools"][0]["function"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn a_chat_caller_is_answered_by_an_anthropic_provider_whole_and_streamed() {
    let setup = setup().await;
    let chat = json!({"model": "claude", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]});
    let (status, text) = post(&setup.server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    let completion: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["total_tokens"], 8);
    let call = &setup.anthropic.calls()[0];
    assert_eq!(call.path, "/v1/messages");
    assert_eq!(call.model, "claude-x");
    assert_eq!(call.body["system"], "be brief");
    assert_eq!(call.body["max_tokens"], 4096);
    assert_eq!(
        call.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello there"}]}])
    );
    assert!(!text.contains(KEY));

    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, text) = post(&setup.server, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|chunk| chunk.pointer("/choices/0/delta/content").and_then(Value::as_str))
        .collect();
    assert_eq!(joined, "echo: hello there");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);

    // A tool call streamed by Anthropic arrives as OpenAI's tool-call deltas.
    streamed["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let (_, text) = post(&setup.server, "/v1/chat/completions", &streamed).await;
    let arguments: String = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|chunk| {
            chunk
                .pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"text": "hello there"})
    );
}

#[tokio::test]
async fn messages_mistakes_are_answered_in_anthropics_error_shape() {
    let setup = setup().await;
    let cases = [
        (
            json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            400,
            "invalid_request_error",
            "messages.0.role",
        ),
        (
            json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "nope",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": [], "base_url": "http://x"}),
            400,
            "invalid_request_error",
            "base_url",
        ),
    ];
    for (body, status, kind, mentions) in cases {
        let (got, text) = post(&setup.server, "/v1/messages", &body).await;
        assert_eq!(got, status, "{body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], kind, "{text}");
        assert!(error["error"]["message"].as_str().unwrap().contains(mentions), "{text}");
    }
    // Anthropic has no embeddings: a model on it cannot answer them.
    let (status, text) = post(
        &setup.server,
        "/v1/embeddings",
        &json!({"model": "claude", "input": "x"}),
    )
    .await;
    assert_eq!(status, 503, "{text}");
    assert!(setup.openai.calls().is_empty() && setup.anthropic.calls().is_empty());
}
