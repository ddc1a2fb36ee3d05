//! The provider side: a chat request sent to an `anthropic` provider as a Messages request, and its answer,
//! whole or streamed, turned back into a chat completion.

use super::{DEFAULT_MAX_TOKENS, finish_reason, tool_use_block};
use serde_json::{Value, json};

/// A chat request as a Messages request for an Anthropic provider (`model` already the provider's name).
pub fn request_from_openai(chat: &serde_json::Map<String, Value>) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        // Anthropic merges consecutive turns of one role; sending them merged keeps strict servers happy.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    };
    for message in chat.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        let text_blocks = |content: Option<&Value>| -> Vec<Value> {
            match content {
                Some(Value::String(text)) if !text.is_empty() => vec![json!({"type": "text", "text": text})],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                        Some("text") => Some(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))})),
                        Some("image_url") => {
                            let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                            Some(match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                                Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                                None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                            })
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        match role {
            "system" | "developer" => {
                for block in text_blocks(message.get("content")) {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        system.push(text.to_string());
                    }
                }
            }
            "tool" | "function" => push(
                "user",
                vec![json!({"type": "tool_result",
                "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
                "content": message.get("content").and_then(Value::as_str).unwrap_or_default()})],
            ),
            "assistant" => {
                let mut blocks = text_blocks(message.get("content"));
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    blocks.push(tool_use_block(call));
                }
                push("assistant", blocks);
            }
            _ => push("user", text_blocks(message.get("content"))),
        }
    }
    let max_tokens = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut request = json!({"model": chat.get("model").cloned().unwrap_or(Value::Null), "max_tokens": max_tokens,
        "messages": messages});
    if !system.is_empty() {
        request["system"] = json!(system.join("\n"));
    }
    if let Some(temperature) = chat.get("temperature").and_then(Value::as_f64) {
        request["temperature"] = json!(temperature.clamp(0.0, 1.0));
    }
    if let Some(top_p) = chat.get("top_p").filter(|value| !value.is_null()) {
        request["top_p"] = top_p.clone();
    }
    match chat.get("stop") {
        Some(Value::String(stop)) => request["stop_sequences"] = json!([stop]),
        Some(Value::Array(stops)) => request["stop_sequences"] = Value::Array(stops.clone()),
        _ => {}
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        request["stream"] = json!(true);
    }
    if let Some(Value::Array(tools)) = chat.get("tools") {
        request["tools"] = Value::Array(
            tools
                .iter()
                .map(|tool| {
                    json!({"name": tool.pointer("/function/name").cloned().unwrap_or(Value::Null),
                    "description": tool.pointer("/function/description").cloned().unwrap_or(json!("")),
                    "input_schema": tool.pointer("/function/parameters").cloned().unwrap_or(json!({"type": "object"}))})
                })
                .collect(),
        );
    }
    match chat.get("tool_choice") {
        Some(Value::String(choice)) => {
            let kind = match choice.as_str() {
                "required" => "any",
                "none" => "none",
                _ => "auto",
            };
            request["tool_choice"] = json!({"type": kind});
        }
        Some(Value::Object(choice)) => {
            request["tool_choice"] = json!({"type": "tool", "name": choice.get("function").and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null)});
        }
        _ => {}
    }
    if let Some(user) = chat.get("user").and_then(Value::as_str) {
        request["metadata"] = json!({"user_id": user});
    }
    request
}

/// An Anthropic message as a chat completion.
pub fn response_to_openai(message: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => calls.push(
                json!({"id": block.get("id").cloned().unwrap_or(Value::Null), "type": "function",
                "function": {"name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").cloned().unwrap_or(json!({})).to_string()}}),
            ),
            _ => {}
        }
    }
    let mut reply = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    if !calls.is_empty() {
        reply["tool_calls"] = Value::Array(calls);
    }
    let (input, cached) = prompt_tokens(message.get("usage"));
    let output = message
        .pointer("/usage/output_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({"id": format!("chatcmpl-{}", message.get("id").and_then(Value::as_str).unwrap_or("anthropic")),
        "object": "chat.completion", "created": crate::gateway::unix_seconds(),
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": reply, "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str))}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input.saturating_add(output),
            "prompt_tokens_details": {"cached_tokens": cached}}})
}

/// The prompt tokens of Anthropic's usage as OpenAI counts them (its `input_tokens` leave out what was read
/// from or written to the prompt cache), and those read from the cache.
fn prompt_tokens(usage: Option<&Value>) -> (u64, u64) {
    let count = |name: &str| {
        usage
            .and_then(|usage| usage.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = count("cache_read_input_tokens");
    let total = count("input_tokens")
        .saturating_add(cached)
        .saturating_add(count("cache_creation_input_tokens"));
    (total, cached)
}

/// Turns an Anthropic provider's named events into chat chunks.
#[derive(Debug, Default)]
pub struct ToOpenaiStream {
    id: String,
    model: String,
    /// Anthropic block index → OpenAI tool-call index, for tool_use blocks.
    tools: Vec<(u64, u64)>,
    input_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
    include_usage: bool,
}

impl ToOpenaiStream {
    /// A converter; `include_usage` adds the usage chunk at the end as OpenAI does when asked.
    pub fn new(include_usage: bool) -> ToOpenaiStream {
        ToOpenaiStream {
            include_usage,
            ..ToOpenaiStream::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": crate::gateway::unix_seconds(),
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        .to_string()
    }

    /// The chunks (data texts, `[DONE]` last) one Anthropic event makes; an `error` event is returned as such.
    pub fn event(&mut self, data: &Value) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.id = format!(
                    "chatcmpl-{}",
                    data.pointer("/message/id")
                        .and_then(Value::as_str)
                        .unwrap_or("anthropic")
                );
                self.model = data
                    .pointer("/message/model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (self.input_tokens, self.cached_tokens) = prompt_tokens(data.pointer("/message/usage"));
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            Some("content_block_start") => {
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let call = self.tools.len() as u64;
                    self.tools.push((index, call));
                    out.push(self.chunk(json!({"tool_calls": [{"index": call, "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function", "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""}}]}), Value::Null));
                }
            }
            Some("content_block_delta") => {
                let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => out.push(self.chunk(
                        json!({"content": delta.get("text").cloned().unwrap_or(json!(""))}),
                        Value::Null,
                    )),
                    Some("input_json_delta") => {
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self
                            .tools
                            .iter()
                            .find(|(block, _)| *block == index)
                            .map_or(0, |(_, call)| *call);
                        out.push(self.chunk(json!({"tool_calls": [{"index": call, "function": {"arguments": delta.get("partial_json").cloned().unwrap_or(json!(""))}}]}), Value::Null));
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                self.output_tokens = data
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.output_tokens);
                let finish = finish_reason(data.pointer("/delta/stop_reason").and_then(Value::as_str));
                out.push(self.chunk(json!({}), json!(finish)));
            }
            Some("message_stop") => {
                if self.include_usage {
                    out.push(json!({"id": self.id, "object": "chat.completion.chunk", "created": crate::gateway::unix_seconds(),
                        "model": self.model, "choices": [], "usage": {"prompt_tokens": self.input_tokens,
                        "completion_tokens": self.output_tokens, "total_tokens": self.input_tokens.saturating_add(self.output_tokens),
                        "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}}).to_string());
                }
                out.push("[DONE]".to_string());
            }
            Some("error") => {
                return Err(data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider streamed an error")
                    .to_string());
            }
            // `ping` and anything new.
            _ => {}
        }
        Ok(out)
    }
}
