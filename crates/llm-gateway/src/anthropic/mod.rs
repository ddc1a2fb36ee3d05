//! Anthropic's Messages API translated to and from OpenAI's chat completions, which the gateway routes
//! internally: a request arriving on `/v1/messages` becomes a chat request (and its answer, streamed or not,
//! an Anthropic message again), and a chat request routed to an `anthropic` provider becomes a Messages request
//! (and its answer a chat completion). Tools and tool results, system prompts, stop sequences and usage cross
//! both ways.

use serde_json::{Map, Value, json};

mod upstream;

pub use upstream::{ToOpenaiStream, request_from_openai, response_to_openai};

/// `max_tokens` sent to Anthropic when an OpenAI caller gave none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A mistake in a Messages request: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Text of a `system` given as a string or as text blocks.
fn system_text(system: &Value) -> Result<String, Invalid> {
    match system {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err(invalid(
            "system",
            "'system' must be a string or an array of text blocks.",
        )),
    }
}

/// A Messages request as a chat request (the caller's `model` kept, for routing).
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, Invalid> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let model = model.ok_or_else(|| invalid("model", "'model' is required."))?;
    let max_tokens = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|tokens| *tokens > 0)
        .ok_or_else(|| invalid("max_tokens", "'max_tokens' is required and must be a positive integer."))?;
    if let Some(stream) = request.get("stream")
        && !stream.is_boolean()
        && !stream.is_null()
    {
        return Err(invalid("stream", "'stream' must be a boolean."));
    }
    let Some(Value::Array(messages)) = request.get("messages") else {
        return Err(invalid("messages", "'messages' must be an array."));
    };
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = request.get("system").filter(|system| !system.is_null()) {
        out.push(json!({"role": "system", "content": system_text(system)?}));
    }
    for (index, message) in messages.iter().enumerate() {
        let at = format!("messages.{index}");
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(invalid(format!("{at}.role"), "'role' must be 'user' or 'assistant'."));
        }
        match message.get("content") {
            Some(Value::String(text)) => out.push(json!({"role": role, "content": text})),
            Some(Value::Array(blocks)) => out.extend(blocks_to_openai(role, blocks, &at)?),
            _ => {
                return Err(invalid(
                    format!("{at}.content"),
                    "'content' must be a string or an array of blocks.",
                ));
            }
        }
    }
    let mut chat = Map::new();
    chat.insert("model".into(), json!(model));
    chat.insert("messages".into(), Value::Array(out));
    chat.insert("max_tokens".into(), json!(max_tokens));
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
        ("stream", "stream"),
    ] {
        if let Some(value) = request.get(from).filter(|value| !value.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(Value::Array(tools)) = request.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {"name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "description": tool.get("description").cloned().unwrap_or(json!("")),
                    "parameters": tool.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))}})
            })
            .collect();
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = request.get("tool_choice").filter(|choice| !choice.is_null()) {
        let choice = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            _ => {
                return Err(invalid(
                    "tool_choice",
                    "'tool_choice.type' must be auto, any, none or tool.",
                ));
            }
        };
        chat.insert("tool_choice".into(), choice);
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|metadata| metadata.get("user_id"))
        .and_then(Value::as_str)
    {
        chat.insert("user".into(), json!(user));
    }
    Ok(chat)
}

/// One Anthropic turn's blocks as OpenAI messages: text and images stay in the turn, `tool_use` blocks become
/// the assistant's tool calls, `tool_result` blocks become `tool` messages (placed first, as OpenAI wants them
/// right after the call).
fn blocks_to_openai(role: &str, blocks: &[Value], at: &str) -> Result<Vec<Value>, Invalid> {
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let field = format!("{at}.content.{index}");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                parts.push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or(json!(""))}))
            }
            Some("image") => {
                let source = block.get("source").cloned().unwrap_or(Value::Null);
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                        source.get("data").and_then(Value::as_str).unwrap_or_default()
                    ),
                    Some("url") => source
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    _ => {
                        return Err(invalid(
                            format!("{field}.source"),
                            "an image needs a base64 or url source",
                        ));
                    }
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_use") => {
                let arguments = block.get("input").cloned().unwrap_or(json!({})).to_string();
                calls.push(
                    json!({"id": block.get("id").cloned().unwrap_or(Value::Null), "type": "function",
                    "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": arguments}}),
                );
            }
            Some("tool_result") => {
                let content = match block.get("content") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(inner)) => inner
                        .iter()
                        .filter_map(|part| part.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                let id = block.get("tool_use_id").and_then(Value::as_str);
                let id =
                    id.ok_or_else(|| invalid(format!("{field}.tool_use_id"), "a tool_result needs 'tool_use_id'"))?;
                results.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            _ => {
                return Err(invalid(
                    format!("{field}.type"),
                    "a block's type must be text, image, tool_use or tool_result",
                ));
            }
        }
    }
    let mut out = results;
    if !parts.is_empty() || !calls.is_empty() {
        let all_text = parts.iter().all(|part| part["type"] == "text");
        let content = if parts.is_empty() {
            Value::Null
        } else if all_text {
            json!(
                parts
                    .iter()
                    .filter_map(|part| part["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            )
        } else {
            Value::Array(parts)
        };
        let mut message = json!({"role": role, "content": content});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        out.push(message);
    }
    Ok(out)
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// An OpenAI tool call as an Anthropic `tool_use` block (its JSON-text arguments parsed; `{}` when they are not JSON).
fn tool_use_block(call: &Value) -> Value {
    let arguments = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(Value::Null),
        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
        "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({}))})
}

/// A chat completion as an Anthropic message, answering for `model` (the name the caller used).
pub fn response_from_openai(completion: &Value, model: &str) -> Value {
    let choice = completion.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(tool_use_block(call));
    }
    let id = completion.get("id").and_then(Value::as_str).unwrap_or("msg");
    json!({
        "id": format!("msg_{}", id.trim_start_matches("chatcmpl-")),
        "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)), "stop_sequence": null,
        "usage": {"input_tokens": completion.pointer("/usage/prompt_tokens").cloned().unwrap_or(json!(0)),
                  "output_tokens": completion.pointer("/usage/completion_tokens").cloned().unwrap_or(json!(0))},
    })
}

/// Turns a stream of chat chunks into Anthropic's named events.
#[derive(Debug, Default)]
pub struct ToAnthropicStream {
    model: String,
    started: bool,
    /// The open text block's index.
    open: Option<usize>,
    blocks: usize,
    stop: Option<&'static str>,
    output_tokens: u64,
    input_tokens: u64,
    /// Tool calls gathered by their OpenAI index.
    tools: std::collections::BTreeMap<u64, StreamedTool>,
}

/// The most parallel tool calls one streamed answer may carry.
const MAX_STREAMED_TOOLS: usize = 128;

/// A tool call gathered from a stream.
#[derive(Debug, Default)]
struct StreamedTool {
    id: String,
    name: String,
    arguments: String,
}

impl ToAnthropicStream {
    /// A converter answering for `model`.
    pub fn new(model: &str) -> ToAnthropicStream {
        ToAnthropicStream {
            model: model.to_string(),
            ..ToAnthropicStream::default()
        }
    }

    fn start(&mut self, events: &mut Vec<(&'static str, Value)>) {
        if !self.started {
            self.started = true;
            events.push((
                "message_start",
                json!({"type": "message_start", "message": {
                "id": "msg_loopline", "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            ));
        }
    }

    fn close(&mut self, events: &mut Vec<(&'static str, Value)>) {
        if let Some(index) = self.open.take() {
            events.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// The events one chat chunk (its JSON) makes.
    pub fn chunk(&mut self, chunk: &Value) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        self.start(&mut events);
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            self.input_tokens = usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(self.input_tokens);
            self.output_tokens = usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(self.output_tokens);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return events;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
        {
            if self.open.is_none() {
                self.close(&mut events);
                let index = self.blocks;
                self.blocks += 1;
                self.open = Some(index);
                events.push((
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "text", "text": ""}}),
                ));
            }
            let index = self.open.unwrap_or(0);
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        // Tool calls are gathered (OpenAI may interleave parallel calls by index; Anthropic's blocks come one
        // after another) and sent whole at the end.
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.tools.len() >= MAX_STREAMED_TOOLS && !self.tools.contains_key(&index) {
                continue;
            }
            let tool = self.tools.entry(index).or_default();
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                tool.id = id.to_string();
            }
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                tool.name.push_str(name);
            }
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                tool.arguments.push_str(arguments);
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(Some(finish)));
        }
        events
    }

    /// The closing events, once the chat stream ended properly.
    pub fn finish(&mut self) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        self.start(&mut events);
        self.close(&mut events);
        for (position, tool) in std::mem::take(&mut self.tools).into_values().enumerate() {
            let index = self.blocks;
            self.blocks += 1;
            let id = if tool.id.is_empty() {
                format!("toolu_loopline_{position}")
            } else {
                tool.id
            };
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": tool.name, "input": {}}}),
            ));
            if !tool.arguments.is_empty() {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": tool.arguments}}),
                ));
            }
            events.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
        events.push((
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens, "input_tokens": self.input_tokens}}),
        ));
        events.push(("message_stop", json!({"type": "message_stop"})));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messages_request_with_tools_becomes_a_chat_request_and_back() {
        let request = json!({"model": "claude", "max_tokens": 100, "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"}]}],
            "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "stop_sequences": ["END"], "stream": true});
        let chat = request_to_openai(request.as_object().unwrap()).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(messages[2]["content"], "Checking.");
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "12 C"})
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["stream_options"]["include_usage"], true);
        // And the chat request back to Anthropic (the provider direction) keeps the same turns.
        let back = request_from_openai(&chat);
        assert_eq!(back["system"], "be brief");
        assert_eq!(back["messages"][1]["content"][1]["input"], json!({"city": "Oslo"}));
        assert_eq!(back["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(back["tool_choice"], json!({"type": "any"}));
        assert_eq!(back["tools"][0]["input_schema"], json!({"type": "object"}));
    }

    #[test]
    fn mistakes_name_the_field() {
        let bad = |request: Value| request_to_openai(request.as_object().unwrap()).unwrap_err().field;
        assert_eq!(bad(json!({"model": "m", "messages": []})), "max_tokens");
        assert_eq!(
            bad(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})),
            "messages.0.role"
        );
        assert_eq!(
            bad(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]})),
            "messages.0.content.0.type"
        );
    }

    #[test]
    fn a_streamed_chat_becomes_anthropic_events_in_order() {
        let mut stream = ToAnthropicStream::new("claude");
        let mut names = Vec::new();
        let chunks = [
            json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"delta": {"content": "Hi"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        ];
        for chunk in &chunks {
            names.extend(stream.chunk(chunk).into_iter().map(|(name, _)| name));
        }
        let end = stream.finish();
        let delta = &end.iter().find(|(name, _)| *name == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], 4);
        let tool = &end
            .iter()
            .find(|(name, data)| *name == "content_block_start" && data["content_block"]["type"] == "tool_use")
            .unwrap()
            .1;
        assert_eq!(
            (
                tool["content_block"]["id"].as_str(),
                tool["content_block"]["name"].as_str()
            ),
            (Some("c1"), Some("f"))
        );
        names.extend(end.into_iter().map(|(name, _)| name));
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn interleaved_parallel_tool_calls_become_one_block_each() {
        let mut stream = ToAnthropicStream::new("m");
        let call = |index: u64, id: Option<&str>, name: Option<&str>, arguments: &str| json!({"choices": [{"delta": {"tool_calls": [{"index": index, "id": id, "function": {"name": name, "arguments": arguments}}]}}]});
        for chunk in [
            call(0, Some("a"), Some("f"), "{\"x\":"),
            call(1, Some("b"), Some("g"), "{}"),
            call(0, None, None, "1}"),
        ] {
            stream.chunk(&chunk);
        }
        let end = stream.finish();
        let starts: Vec<&Value> = end
            .iter()
            .filter(|(name, _)| *name == "content_block_start")
            .map(|(_, data)| data)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0]["content_block"]["id"], "a");
        let first_input: Vec<&str> = end
            .iter()
            .filter(|(name, data)| *name == "content_block_delta" && data["index"] == starts[0]["index"])
            .filter_map(|(_, data)| data["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(first_input.concat(), "{\"x\":1}");
    }

    #[test]
    fn anthropic_events_become_chat_chunks_ending_in_done() {
        let mut stream = ToOpenaiStream::new(true);
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 7}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let mut out = Vec::new();
        for event in &events {
            out.extend(stream.event(event).unwrap());
        }
        let chunks: Vec<Value> = out[..out.len() - 1]
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect();
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["total_tokens"], 16);
        assert_eq!(out.last().unwrap(), "[DONE]");
        assert!(
            stream
                .event(&json!({"type": "error", "error": {"message": "overloaded"}}))
                .is_err()
        );
    }

    #[test]
    fn whole_answers_cross_both_ways() {
        let completion = json!({"id": "chatcmpl-9", "choices": [{"finish_reason": "length", "message": {"content": "Hi",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{\"x\": 2}"}}]}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 5}});
        let message = response_from_openai(&completion, "claude");
        assert_eq!(message["content"][1]["input"], json!({"x": 2}));
        assert_eq!(message["stop_reason"], "max_tokens");
        assert_eq!(message["usage"]["output_tokens"], 5);
        let back = response_to_openai(&message);
        assert_eq!(
            back["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":2}"
        );
        assert_eq!(back["choices"][0]["finish_reason"], "length");
        assert_eq!(back["usage"]["total_tokens"], 7);
    }
}
