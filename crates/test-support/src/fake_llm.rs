//! A fake LLM provider speaking OpenAI's wire format on a loopback port, for the gateway's tests. It answers
//! chat completions (streamed or not), legacy completions and embeddings, checks the key it was given, records
//! every call, and can be told to fail a model's next calls: answer a status (with `retry-after`), or cut a
//! stream after some events.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What the fake does with one call of a model.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers normally: `echo: <the last message's text>`.
    Answer,
    /// Answers this status with an OpenAI-shaped error, and `retry-after` when given.
    Fail {
        /// The status.
        status: u16,
        /// The error's message.
        message: String,
        /// The `retry-after` header.
        retry_after: Option<String>,
    },
    /// Streams this many events (the first says the role, then a word each), then ends the stream without
    /// finishing it (no `[DONE]`).
    CutAfter(usize),
    /// Answers this text as the message (a judge's verdict, a sanitizer's rewrite), not streamed.
    Reply(String),
}

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The path (`/v1/chat/completions`, ...).
    pub path: String,
    /// The `model` field.
    pub model: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The whole body.
    pub body: Value,
}

#[derive(Default)]
struct Fake {
    key: Option<String>,
    script: Mutex<HashMap<String, VecDeque<Behaviour>>>,
    calls: Mutex<VecDeque<Call>>,
    pace: Pace,
}

/// How fast the fake answers (benchmarks give it a provider's latency).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Wait before answering (a stream: before its first event).
    pub latency: std::time::Duration,
    /// Wait between a stream's events.
    pub token_gap: std::time::Duration,
}

/// Calls remembered (the oldest are forgotten: a benchmark sends millions).
const MAX_CALLS: usize = 10_000;

/// A running fake provider; stops when dropped.
pub struct FakeLlm {
    /// Its base URL, ending in `/v1`.
    pub base_url: String,
    fake: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// Starts a fake on a free port that wants `Authorization: Bearer <key>` when a key is given.
    pub async fn start(key: Option<&str>) -> anyhow::Result<FakeLlm> {
        Self::start_on(key, 0).await
    }

    /// Starts a fake on `port` (0: a free one).
    pub async fn start_on(key: Option<&str>, port: u16) -> anyhow::Result<FakeLlm> {
        Self::start_paced(key, port, Pace::default()).await
    }

    /// Starts a fake on `port` answering at `pace`.
    pub async fn start_paced(key: Option<&str>, port: u16, pace: Pace) -> anyhow::Result<FakeLlm> {
        let fake = Arc::new(Fake {
            key: key.map(str::to_string),
            pace,
            ..Fake::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/completions", post(answer))
            .route("/v1/embeddings", post(answer))
            .route("/v1/messages", post(answer))
            .route("/openai/deployments/{deployment}/chat/completions", post(answer))
            .route("/openai/deployments/{deployment}/completions", post(answer))
            .route("/openai/deployments/{deployment}/embeddings", post(answer))
            .route("/fake/script", post(script))
            .route("/fake/calls", axum::routing::get(calls))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeLlm {
            base_url: format!("http://{address}/v1"),
            fake,
            task,
        })
    }

    /// Queues what the next calls of `model` do (then it answers normally again).
    pub fn script(&self, model: &str, behaviours: Vec<Behaviour>) {
        self.fake
            .script
            .lock()
            .unwrap()
            .entry(model.to_string())
            .or_default()
            .extend(behaviours);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.fake.calls.lock().unwrap().iter().cloned().collect()
    }

    /// Runs until the task is aborted (the binary's main).
    pub async fn serve_forever(mut self) {
        let task = &mut self.task;
        let _ = task.await;
    }
}

/// `POST /fake/script` `{"model": M, "behaviours": ["answer" | {"fail": {"status", "message", "retry_after"}} |
/// {"cut_after": N} | {"reply": TEXT}, ...]}`: the Python suites script the fake the way Rust tests call [`FakeLlm::script`].
async fn script(State(fake): State<Arc<Fake>>, axum::Json(body): axum::Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let mut behaviours = Vec::new();
    for item in body["behaviours"].as_array().cloned().unwrap_or_default() {
        let behaviour = if let Some(fail) = item.get("fail") {
            Behaviour::Fail {
                status: fail["status"].as_u64().unwrap_or(500) as u16,
                message: fail["message"].as_str().unwrap_or("failed on purpose").to_string(),
                retry_after: fail["retry_after"].as_str().map(str::to_string),
            }
        } else if let Some(events) = item.get("cut_after").and_then(Value::as_u64) {
            Behaviour::CutAfter(events as usize)
        } else if let Some(text) = item.get("reply").and_then(Value::as_str) {
            Behaviour::Reply(text.to_string())
        } else {
            Behaviour::Answer
        };
        behaviours.push(behaviour);
    }
    fake.script.lock().unwrap().entry(model).or_default().extend(behaviours);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /fake/calls`: every call so far, as JSON.
async fn calls(State(fake): State<Arc<Fake>>) -> Response {
    let calls: Vec<Value> = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|call| json!({"path": call.path, "model": call.model, "authorization": call.authorization, "body": call.body}))
        .collect();
    axum::Json(Value::Array(calls)).into_response()
}

async fn answer(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    // Azure OpenAI: the deployment in the path, the key in `api-key`, an `api-version` required.
    let azure = path
        .strip_prefix("/openai/deployments/")
        .map(|rest| rest.split('/').next().unwrap_or_default().to_string());
    if azure.is_some() && !request.uri().query().unwrap_or_default().contains("api-version=") {
        return error(404, "Resource not found", None);
    }
    let azure_key = header(request.headers(), "api-key");
    let authorization = match (&azure, azure_key) {
        (Some(_), Some(key)) => Some(format!("Bearer {key}")),
        (Some(_), None) => None,
        (None, _) => header(request.headers(), "authorization"),
    };
    let api_key = header(request.headers(), "x-api-key");
    let api_version = header(request.headers(), "anthropic-version");
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let model = azure.clone().unwrap_or_else(|| {
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
    {
        let mut calls = fake.calls.lock().unwrap();
        if calls.len() >= MAX_CALLS {
            calls.pop_front();
        }
        calls.push_back(Call {
            path: path.clone(),
            model: model.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
    }
    if !fake.pace.latency.is_zero() {
        tokio::time::sleep(fake.pace.latency).await;
    }
    let gap = fake.pace.token_gap;
    let anthropic = path.ends_with("/messages");
    if anthropic && api_version.is_none() {
        return error(400, "anthropic-version: header is required", None);
    }
    let presented = if anthropic {
        api_key.map(|key| format!("Bearer {key}"))
    } else {
        authorization.clone()
    };
    if let Some(key) = &fake.key
        && presented.as_deref() != Some(&format!("Bearer {key}"))
    {
        return error(401, "Incorrect API key provided.", None);
    }
    let behaviour = fake
        .script
        .lock()
        .unwrap()
        .get_mut(&model)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Behaviour::Answer);
    let cut = match behaviour {
        Behaviour::Fail {
            status,
            message,
            retry_after,
        } => return error(status, &message, retry_after.as_deref()),
        Behaviour::Reply(text) => {
            return axum::Json(
                json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                             "message": {"role": "assistant", "content": text, "refusal": null}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}),
            )
            .into_response();
        }
        Behaviour::CutAfter(events) => Some(events),
        Behaviour::Answer => None,
    };
    if path.ends_with("/embeddings") {
        return embeddings(&model, &body);
    }
    if anthropic {
        return anthropic_answer(&model, &body, cut, gap);
    }
    let text = format!("echo: {}", last_text(&body));
    let chat = path.ends_with("/chat/completions");
    let tool = tool_to_call(&body);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        return stream(&model, &text, chat, usage, cut, tool.as_deref(), gap);
    }
    let choice = if let Some(name) = &tool {
        let arguments = json!({"text": last_text(&body)}).to_string();
        json!({"index": 0, "finish_reason": "tool_calls", "logprobs": null,
               "message": {"role": "assistant", "content": null, "refusal": null,
                 "tool_calls": [{"id": "call_fake_1", "type": "function", "function": {"name": name, "arguments": arguments}}]}})
    } else if chat {
        json!({"index": 0, "finish_reason": "stop", "logprobs": null,
               "message": {"role": "assistant", "content": text, "refusal": null}})
    } else {
        json!({"index": 0, "finish_reason": "stop", "logprobs": null, "text": text})
    };
    axum::Json(json!({
        "id": "chatcmpl-fake", "object": if chat { "chat.completion" } else { "text_completion" },
        "created": 1_718_000_000, "model": model, "choices": [choice],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }))
    .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn error(status: u16, message: &str, retry_after: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if let Some(wait) = retry_after {
        response.headers_mut().insert("retry-after", wait.parse().unwrap());
    }
    response
}

/// The tool the fake calls: the first one offered, when the last message is the user's (a tool's result
/// gets an ordinary answer).
fn tool_to_call(body: &Value) -> Option<String> {
    let last_role = body.get("messages")?.as_array()?.last()?.get("role")?.as_str()?;
    if last_role != "user" {
        return None;
    }
    body.pointer("/tools/0/function/name")?.as_str().map(str::to_string)
}

/// The text of the last message (chat) or the prompt (legacy); an Anthropic tool result's content.
fn last_text(body: &Value) -> String {
    if let Some(prompt) = body.get("prompt").and_then(Value::as_str) {
        return prompt.to_string();
    }
    let content = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last())
        .and_then(|m| m.get("content"));
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").or_else(|| part.get("content"))?.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Anthropic's Messages API: a text answer (or a tool_use block when tools are offered and the user spoke
/// last), whole or as named events.
fn anthropic_answer(model: &str, body: &Value, cut: Option<usize>, gap: std::time::Duration) -> Response {
    let text = format!("echo: {}", last_text(body));
    let last_is_user_text = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last())
        .is_some_and(|message| message["role"] == "user" && !message["content"].to_string().contains("tool_result"));
    let tool = body
        .pointer("/tools/0/name")
        .and_then(Value::as_str)
        .filter(|_| last_is_user_text);
    let (block, stop) = match tool {
        Some(name) => (
            json!({"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {"text": last_text(body)}}),
            "tool_use",
        ),
        None => (json!({"type": "text", "text": text}), "end_turn"),
    };
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(
            json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 5, "output_tokens": 3}}),
        )
        .into_response();
    }
    let named = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        named(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        ),
        named("ping", json!({"type": "ping"})),
    ];
    if let Some(name) = tool {
        events.push(named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}}),
        ));
        let arguments = json!({"text": last_text(body)}).to_string();
        let middle = arguments.len() / 2;
        for piece in [&arguments[..middle], &arguments[middle..]] {
            events.push(named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
    } else {
        events.push(named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        for word in text.split_inclusive(' ') {
            events.push(named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": word}}),
            ));
        }
    }
    events.push(named(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(named(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": 3}}),
    ));
    events.push(named("message_stop", json!({"type": "message_stop"})));
    event_stream(events, cut, gap)
}

/// A model named `*words*` embeds a text as its lower-case words counted in 64 buckets: texts with the same
/// words are the same, texts sharing most words are close (for the semantic cache's tests).
fn bag_of_words(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; 64];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        let bucket = word.to_lowercase().bytes().fold(2166136261u32, |hash, byte| {
            (hash ^ u32::from(byte)).wrapping_mul(16777619)
        });
        vector[bucket as usize % 64] += 1.0;
    }
    vector
}

fn embeddings(model: &str, body: &Value) -> Response {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = if model.contains("words") {
                bag_of_words(text)
            } else {
                let first = text.bytes().next().map_or(0.0, f64::from);
                vec![text.len() as f32, first as f32, 1.0]
            };
            let embedding = if body.get("encoding_format").and_then(Value::as_str) == Some("base64") {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes,
                ))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    axum::Json(
        json!({"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 4, "total_tokens": 4}}),
    )
    .into_response()
}

/// The answer streamed a word at a time, as OpenAI streams it; cut after `cut` content events if asked.
fn stream(
    model: &str,
    text: &str,
    chat: bool,
    usage: bool,
    cut: Option<usize>,
    tool: Option<&str>,
    gap: std::time::Duration,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let choice = if chat {
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "logprobs": null, "finish_reason": finish})
        };
        let mut value = json!({"id": "chatcmpl-fake", "object": if chat { "chat.completion.chunk" } else { "text_completion" },
            "created": 1_718_000_000, "model": model, "choices": [choice]});
        if usage {
            value["usage"] = Value::Null;
        }
        format!("data: {value}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    if let Some(name) = tool {
        // A tool call streams its name first, then its arguments in pieces the client joins by index.
        let arguments = json!({"text": text.trim_start_matches("echo: ")}).to_string();
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        let middle = arguments.len() / 2;
        for piece in [&arguments[..middle], &arguments[middle..]] {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        for word in &words {
            events.push(chunk(json!({"content": word}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
    }
    if usage {
        let last = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_718_000_000,
            "model": model, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": words.len(), "total_tokens": 5 + words.len()}});
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    event_stream(events, cut, gap)
}

/// Server-sent events, the first `cut` of them only when asked (a stream that ends without finishing).
fn event_stream(mut events: Vec<String>, cut: Option<usize>, gap: std::time::Duration) -> Response {
    if let Some(kept) = cut {
        events.truncate(kept);
    }
    let pieces = futures::StreamExt::then(
        futures::stream::iter(events.into_iter().enumerate()),
        move |(index, event)| async move {
            if index > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Ok::<_, std::io::Error>(Bytes::from(event))
        },
    );
    let mut response = Response::new(Body::from_stream(pieces));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
}
