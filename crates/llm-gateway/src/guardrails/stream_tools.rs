//! Tool-call arguments on a guarded stream. They stream as fragments of JSON text, which no guardrail can
//! read piece by piece (a card number split across fragments, or a string that only ends later), so each
//! call's arguments are held whole until its choice finishes (or the stream ends), read as JSON like a whole
//! answer's ([`super::tool_args`]), and sent in one piece with the choice's `finish_reason` chunk. Clients
//! join the fragments of a call by its index, so one fragment reads the same. The calls' ids and names still
//! stream at once. The older `function_call` is held the same way. At most [`MAX_HELD`] bytes and
//! [`MAX_CALLS`] calls are held: a stream with more is stopped.

use super::stream::{EventSink, merge};
use super::tool_args::Arguments;
use super::{Blocked, Guards, Stage, check};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The most bytes of arguments held in one stream.
pub const MAX_HELD: usize = 1 << 20;
/// The most tool calls followed in one stream.
const MAX_CALLS: usize = 256;

/// The index under which the older `function_call`'s arguments are held (a choice has at most one).
pub const LEGACY_CALL: u64 = u64::MAX;

/// Arguments held, by choice and call index.
#[derive(Default)]
pub struct HeldCalls {
    held: BTreeMap<(u64, u64), String>,
    bytes: usize,
}

fn stopped(why: String) -> Blocked {
    Blocked {
        guardrail: String::new(),
        stage: Stage::Output,
        found: why,
    }
}

impl HeldCalls {
    /// Takes the argument fragments out of a chat chunk's choice; true when it held any.
    pub fn hold(&mut self, choice_index: u64, choice: &mut Map<String, Value>) -> Result<bool, Blocked> {
        let Some(Value::Object(delta)) = choice.get_mut("delta") else {
            return Ok(false);
        };
        let mut fragments: Vec<(u64, &mut String)> = Vec::new();
        for (name, value) in delta.iter_mut() {
            match (name.as_str(), value) {
                ("tool_calls", Value::Array(calls)) => {
                    for (position, call) in calls.iter_mut().enumerate() {
                        let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                        if let Some(Value::String(fragment)) = call.pointer_mut("/function/arguments") {
                            fragments.push((call_index, fragment));
                        }
                    }
                }
                ("function_call", call) => {
                    if let Some(Value::String(fragment)) = call.get_mut("arguments") {
                        fragments.push((LEGACY_CALL, fragment));
                    }
                }
                _ => {}
            }
        }
        let mut held = false;
        for (call_index, fragment) in fragments {
            let fragment = std::mem::take(fragment);
            self.bytes = self.bytes.saturating_add(fragment.len());
            if self.bytes > MAX_HELD {
                return Err(stopped(format!(
                    "its tool-call arguments are longer than the {MAX_HELD} bytes output guardrails hold"
                )));
            }
            let key = (choice_index, call_index);
            if !self.held.contains_key(&key) && self.held.len() >= MAX_CALLS {
                return Err(stopped(format!(
                    "it streams more than {MAX_CALLS} tool calls, more than output guardrails follow"
                )));
            }
            self.held.entry(key).or_default().push_str(&fragment);
            held = true;
        }
        Ok(held)
    }

    /// The whole arguments held for one choice (every choice when `None`), checked and redacted, by choice
    /// and call index; no longer held.
    pub fn release(
        &mut self,
        choice_index: Option<u64>,
        guards: &Guards,
        sink: &EventSink,
    ) -> Result<Vec<(u64, u64, String)>, Blocked> {
        let keys: Vec<(u64, u64)> = self
            .held
            .keys()
            .filter(|(choice, _)| choice_index.is_none_or(|wanted| wanted == *choice))
            .copied()
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = keys
            .iter()
            .map(|key| self.held.remove(key).unwrap_or_default())
            .collect();
        self.bytes = self.bytes.saturating_sub(texts.iter().map(String::len).sum());
        let mut values: Vec<Value> = texts.into_iter().map(Value::String).collect();
        let mut arguments = Arguments::take(values.iter_mut().collect());
        let (events, blocked) = check(
            guards.output_guardrails(),
            Stage::Output,
            arguments.texts().into_iter().map(|text| (text, false)).collect(),
        );
        {
            let mut sink = sink.lock().expect("guardrail events");
            for event in events {
                merge(&mut sink, event);
            }
        }
        if let Some(blocked) = blocked {
            return Err(blocked);
        }
        arguments.put_back(values.iter_mut().collect());
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|((choice, call), value)| (choice, call, value.as_str().unwrap_or_default().to_string()))
            .collect())
    }
}

/// Puts whole arguments into a choice's `delta.tool_calls` (into the entry of the same index when the chunk
/// has one, else a new entry).
pub fn put_arguments(choice: &mut Map<String, Value>, released: impl IntoIterator<Item = (u64, String)>) {
    let delta = choice.entry("delta").or_insert_with(|| Value::Object(Map::new()));
    if !delta.is_object() {
        *delta = Value::Object(Map::new());
    }
    let Some(delta) = delta.as_object_mut() else {
        return;
    };
    let mut released: Vec<(u64, String)> = released.into_iter().collect();
    let legacy: Vec<(u64, String)> = released.extract_if(.., |(call, _)| *call == LEGACY_CALL).collect();
    if let Some((_, text)) = legacy.into_iter().next() {
        let call = delta
            .entry("function_call")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(call) = call.as_object_mut() {
            call.insert("arguments".into(), Value::String(text));
        }
    }
    if released.is_empty() {
        return;
    }
    let calls = delta.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
    if !calls.is_array() {
        *calls = Value::Array(Vec::new());
    }
    let Some(calls) = calls.as_array_mut() else {
        return;
    };
    for (call_index, text) in released {
        let existing = calls
            .iter_mut()
            .find(|call| call.get("index").and_then(Value::as_u64) == Some(call_index));
        match existing {
            Some(call) => {
                if let Some(call) = call.as_object_mut() {
                    let function = call.entry("function").or_insert_with(|| Value::Object(Map::new()));
                    if let Some(function) = function.as_object_mut() {
                        function.insert("arguments".into(), Value::String(text));
                    }
                }
            }
            None => calls.push(serde_json::json!({"index": call_index, "function": {"arguments": text}})),
        }
    }
}
