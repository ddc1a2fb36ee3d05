//! Tool-call arguments: JSON text inside a message (`tool_calls[].function.arguments`, and the older
//! `function_call.arguments`). A model can put an e-mail address or a card number there as easily as in its
//! prose, so guardrails read them too, but as JSON: each string in the arguments is a text of its own, and
//! what is redacted is written back as valid JSON, so the application's tool still receives arguments it
//! can parse. Numbers are read as their digits (a card number sent as a JSON number is still found) and stay
//! numbers unless redacted, when they become the placeholder string. Arguments that are not JSON (a model's
//! mistake, or nesting past serde_json's 128 levels) are read as one plain text.

use serde_json::{Map, Value};

/// The `arguments` strings of the tool calls of each message, in order.
fn message_arguments<'a>(message: &'a mut Map<String, Value>, out: &mut Vec<&'a mut String>) {
    for (name, value) in message.iter_mut() {
        match (name.as_str(), value) {
            ("tool_calls", Value::Array(calls)) => {
                for call in calls.iter_mut() {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        out.push(arguments);
                    }
                }
            }
            ("function_call", call) => {
                if let Some(Value::String(arguments)) = call.get_mut("arguments") {
                    out.push(arguments);
                }
            }
            _ => {}
        }
    }
}

/// The tool-call arguments of a chat request's messages.
pub fn in_request(body: &mut Map<String, Value>) -> Vec<&mut String> {
    let mut out = Vec::new();
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages.iter_mut().filter_map(Value::as_object_mut) {
            message_arguments(message, &mut out);
        }
    }
    out
}

/// The tool-call arguments of a whole chat answer's choices.
pub fn in_answer(answer: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    if let Some(Value::Array(choices)) = answer.get_mut("choices") {
        for choice in choices.iter_mut() {
            if let Some(Value::Object(message)) = choice.get_mut("message") {
                message_arguments(message, &mut out);
            }
        }
    }
    out
}

/// One call's arguments, taken out for checking.
enum Taken {
    /// Parsed, numbers turned into their digits; the digits of each number, by leaf position; the text as
    /// it came and the parsed value as it was before the check (unchanged arguments go back byte for byte).
    Json(Value, Vec<(usize, String)>, String, Value),
    /// Not JSON: read as it is.
    Raw(String),
}

/// Arguments taken out of a message or answer, to be read by the guardrails and put back.
pub struct Arguments {
    taken: Vec<Taken>,
}

/// The string and number leaves of a JSON value, in a fixed order (objects' keys sorted, as serde_json keeps
/// them). Depth is bounded by the parser's limit.
fn leaves<'a>(value: &'a mut Value, out: &mut Vec<&'a mut Value>) {
    match value {
        Value::String(_) | Value::Number(_) => out.push(value),
        Value::Array(items) => items.iter_mut().for_each(|item| leaves(item, out)),
        Value::Object(fields) => fields.values_mut().for_each(|field| leaves(field, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

impl Arguments {
    /// Takes each argument string out (leaving it empty until [`Arguments::put_back`]).
    pub fn take(from: Vec<&mut String>) -> Arguments {
        let taken = from
            .into_iter()
            .map(|arguments| {
                let text = std::mem::take(arguments);
                match serde_json::from_str::<Value>(&text) {
                    Ok(mut value) if value.is_object() || value.is_array() => {
                        let mut numbers = Vec::new();
                        let mut found = Vec::new();
                        leaves(&mut value, &mut found);
                        for (position, leaf) in found.into_iter().enumerate() {
                            if let Value::Number(number) = leaf {
                                let digits = number.to_string();
                                *leaf = Value::String(digits.clone());
                                numbers.push((position, digits));
                            }
                        }
                        let before = value.clone();
                        Taken::Json(value, numbers, text, before)
                    }
                    _ => Taken::Raw(text),
                }
            })
            .collect();
        Arguments { taken }
    }

    /// The texts to read: every string (and number's digits) of parsed arguments, or the raw text.
    pub fn texts(&mut self) -> Vec<&mut String> {
        let mut texts = Vec::new();
        for taken in &mut self.taken {
            match taken {
                Taken::Raw(text) => texts.push(text),
                Taken::Json(value, ..) => {
                    let mut found = Vec::new();
                    leaves(value, &mut found);
                    texts.extend(found.into_iter().filter_map(|leaf| match leaf {
                        Value::String(text) => Some(text),
                        _ => None,
                    }));
                }
            }
        }
        texts
    }

    /// Writes the arguments back into the places they were taken from (the same walk, so the same order):
    /// numbers left as they were become numbers again.
    pub fn put_back(self, into: Vec<&mut String>) {
        for (arguments, taken) in into.into_iter().zip(self.taken) {
            *arguments = match taken {
                Taken::Raw(text) => text,
                Taken::Json(value, _, text, before) if value == before => text,
                Taken::Json(mut value, numbers, ..) => {
                    let mut found = Vec::new();
                    leaves(&mut value, &mut found);
                    for (position, digits) in numbers {
                        if let Some(leaf) = found.get_mut(position)
                            && leaf.as_str() == Some(digits.as_str())
                            && let Ok(number) = serde_json::from_str::<Value>(&digits)
                        {
                            **leaf = number;
                        }
                    }
                    drop(found);
                    value.to_string()
                }
            };
        }
    }
}
