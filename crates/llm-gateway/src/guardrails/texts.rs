//! The texts of a request and of an answer that guardrails read: whatever a model reads as prose or writes as
//! its answer. Each request text says whether it is trusted (system and developer messages are the
//! application's own, not checked for prompt injection).

use crate::gateway::Endpoint;
use serde_json::{Map, Value};

/// The text strings of a message's `content`: the string itself, or each part's `text`.
fn content_texts<'a>(content: Option<&'a mut Value>, out: &mut Vec<&'a mut String>) {
    match content {
        Some(Value::String(text)) => out.push(text),
        Some(Value::Array(parts)) => {
            for part in parts.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::String(text)) = part.get_mut("text") {
                    out.push(text);
                }
            }
        }
        _ => {}
    }
}

/// Every text of a request: messages' content (strings and text parts) and refusals, a predicted output, a
/// completion's prompt and suffix, an embedding's input.
pub fn request_texts(endpoint: Endpoint, body: &mut Map<String, Value>) -> Vec<(&mut String, bool)> {
    let mut texts = Vec::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            let (messages, prediction) = {
                let mut messages = None;
                let mut prediction = None;
                for (name, value) in body.iter_mut() {
                    match name.as_str() {
                        "messages" => messages = Some(value),
                        "prediction" => prediction = Some(value),
                        _ => {}
                    }
                }
                (messages, prediction)
            };
            if let Some(Value::Array(messages)) = messages {
                for message in messages.iter_mut().filter_map(Value::as_object_mut) {
                    let trusted = matches!(
                        message.get("role").and_then(Value::as_str),
                        Some("system" | "developer")
                    );
                    let mut found = Vec::new();
                    let mut content = None;
                    let mut refusal = None;
                    for (name, value) in message.iter_mut() {
                        match name.as_str() {
                            "content" => content = Some(value),
                            "refusal" => refusal = Some(value),
                            _ => {}
                        }
                    }
                    content_texts(content, &mut found);
                    content_texts(refusal, &mut found);
                    texts.extend(found.into_iter().map(|text| (text, trusted)));
                }
            }
            if let Some(Value::Object(prediction)) = prediction {
                let mut found = Vec::new();
                content_texts(prediction.get_mut("content"), &mut found);
                texts.extend(found.into_iter().map(|text| (text, false)));
            }
        }
        Endpoint::Completions | Endpoint::Embeddings => {
            for (name, value) in body.iter_mut() {
                let wanted = match endpoint {
                    Endpoint::Completions => name == "prompt" || name == "suffix",
                    _ => name == "input",
                };
                if !wanted {
                    continue;
                }
                match value {
                    Value::String(text) => texts.push((text, false)),
                    Value::Array(items) => {
                        for item in items.iter_mut() {
                            if let Value::String(text) = item {
                                texts.push((text, false));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    texts
}

/// Every text of a whole answer: each choice's message content (string or text parts), refusal and reasoning,
/// or a completion's text.
pub fn answer_texts(answer: &mut Value) -> Vec<&mut String> {
    let mut texts = Vec::new();
    let Some(Value::Array(choices)) = answer.get_mut("choices") else {
        return texts;
    };
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        for (name, value) in choice.iter_mut() {
            match (name.as_str(), value) {
                ("text", Value::String(text)) => texts.push(text),
                ("message", Value::Object(message)) => {
                    for (field, value) in message.iter_mut() {
                        if matches!(field.as_str(), "content" | "refusal" | "reasoning_content") {
                            content_texts(Some(value), &mut texts);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    texts
}

/// The fields of a streamed choice's `delta` that carry answer text.
pub const DELTA_FIELDS: [&str; 3] = ["content", "reasoning_content", "refusal"];
