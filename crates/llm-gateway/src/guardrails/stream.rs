//! Output guardrails on a stream. Each choice's text is held back by [`HOLD`] bytes (cut at a space, never
//! inside a match) so a match split across events is still whole when it is checked; a PEM private key is held
//! until its end line, up to [`MAX_HOLD`]. What is released is redacted as a whole answer would be; a
//! blocking match ends the stream with a typed error event. The held tail goes out with the choice's
//! `finish_reason` chunk (or before `[DONE]`), so nothing the provider sent is lost.

use super::{Action, Blocked, Event, Guards, Stage, matches};
use crate::gateway::{Piece, PieceStream};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Bytes of a choice's text held back while its stream runs.
pub const HOLD: usize = 256;
/// The most bytes held for an unfinished PEM block before they are let go anyway.
pub const MAX_HOLD: usize = 16 * 1024;
/// The most choices followed in one stream (more end it: their text could not be checked).
const MAX_CHOICES: usize = 128;

/// The events of a guarded stream, merged per guardrail, read when the stream ends.
pub type EventSink = Arc<Mutex<Vec<Event>>>;

/// Folds `event` into `events` (one per guardrail and stage, counts added).
pub fn merge(events: &mut Vec<Event>, event: Event) {
    match events
        .iter_mut()
        .find(|known| known.guardrail == event.guardrail && known.stage == event.stage)
    {
        Some(known) => {
            for (kind, count) in event.found {
                *known.found.entry(kind).or_default() += count;
            }
            if event.action == "blocked" {
                known.action = event.action;
            }
        }
        None => events.push(event),
    }
}

/// Where a chunk's choice carries its text: `delta.content` (chat) or `text` (completions).
fn text_of(choice: &mut Map<String, Value>) -> Option<&mut String> {
    if matches!(choice.get("text"), Some(Value::String(_))) {
        return match choice.get_mut("text") {
            Some(Value::String(text)) => Some(text),
            _ => None,
        };
    }
    match choice.get_mut("delta")?.get_mut("content")? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// The output guardrails' state over one stream.
pub struct StreamGuard {
    guards: Guards,
    pending: BTreeMap<u64, String>,
    /// `id`, `object`, `created` and `model` of the last chunk, for a chunk carrying a held tail at `[DONE]`.
    template: Map<String, Value>,
    completions: bool,
    events: EventSink,
}

impl StreamGuard {
    /// A guard applying `guards`' output guardrails, recording into `events`.
    pub fn new(guards: Guards, events: EventSink) -> StreamGuard {
        StreamGuard {
            guards,
            pending: BTreeMap::new(),
            template: Map::new(),
            completions: false,
            events,
        }
    }

    /// The events to send for one event's data, or the block that ends the stream.
    pub fn data(&mut self, data: String) -> Result<Vec<String>, Blocked> {
        if data == "[DONE]" {
            let mut out = self.flush()?;
            out.push(data);
            return Ok(out);
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&data) else {
            return Ok(vec![data]);
        };
        if !self.chunk(&mut chunk)? {
            return Ok(vec![data]);
        }
        Ok(vec![chunk.to_string()])
    }

    /// Chunks carrying every held tail (at the end of the stream, or before it breaks).
    pub fn flush(&mut self) -> Result<Vec<String>, Blocked> {
        let mut out = Vec::new();
        let indexes: Vec<u64> = self.pending.keys().copied().collect();
        for index in indexes {
            let released = self.release(index, true)?;
            self.pending.remove(&index);
            if !released.is_empty() {
                out.push(self.tail_chunk(index, released));
            }
        }
        Ok(out)
    }

    /// Holds and releases the text of a chunk's choices; false when it carried no text and finished nothing.
    fn chunk(&mut self, chunk: &mut Value) -> Result<bool, Blocked> {
        let Some(object) = chunk.as_object_mut() else {
            return Ok(false);
        };
        for field in ["id", "object", "created", "model"] {
            if let Some(value) = object.get(field) {
                self.template.insert(field.into(), value.clone());
            }
        }
        self.completions = object.get("object").and_then(Value::as_str) == Some("text_completion");
        let Some(Value::Array(choices)) = object.get_mut("choices") else {
            return Ok(false);
        };
        let mut changed = false;
        for (position, choice) in choices.iter_mut().enumerate() {
            let Some(choice) = choice.as_object_mut() else {
                continue;
            };
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
            let finished = choice.get("finish_reason").is_some_and(|reason| !reason.is_null());
            let arrived = text_of(choice).map(std::mem::take);
            if arrived.is_none() && !finished {
                continue;
            }
            if !self.pending.contains_key(&index) && self.pending.len() >= MAX_CHOICES {
                return Err(Blocked {
                    guardrail: "stream".into(),
                    stage: Stage::Output,
                    found: format!("more than {MAX_CHOICES} choices in one stream"),
                });
            }
            let pending = self.pending.entry(index).or_default();
            pending.push_str(arrived.as_deref().unwrap_or_default());
            let released = self.release(index, finished)?;
            if finished {
                self.pending.remove(&index);
            }
            match text_of(choice) {
                Some(text) => *text = released,
                None if !released.is_empty() => {
                    if self.completions {
                        choice.insert("text".into(), Value::String(released));
                    } else if let Some(Value::Object(delta)) = choice.get_mut("delta") {
                        delta.insert("content".into(), Value::String(released));
                    } else {
                        choice.insert("delta".into(), serde_json::json!({"content": released}));
                    }
                }
                None => {}
            }
            changed = true;
        }
        Ok(changed)
    }

    /// A chunk carrying the held tail of a choice that never said it finished.
    fn tail_chunk(&self, index: u64, text: String) -> String {
        let mut chunk = self.template.clone();
        let choice = if self.completions {
            serde_json::json!({"index": index, "text": text, "finish_reason": null})
        } else {
            serde_json::json!({"index": index, "delta": {"content": text}, "finish_reason": null})
        };
        chunk.insert("choices".into(), Value::Array(vec![choice]));
        Value::Object(chunk).to_string()
    }

    /// The text of choice `index` that may go out now (all of it when `last`), checked and redacted.
    fn release(&mut self, index: u64, last: bool) -> Result<String, Blocked> {
        let text = self.pending.remove(&index).unwrap_or_default();
        let mut hits = Vec::new();
        for guardrail in self.guards.output_guardrails() {
            for (span, placeholder, kind) in matches(guardrail, &text, false) {
                hits.push((span, placeholder, kind, guardrail));
            }
        }
        let mut cut = if last { text.len() } else { hold_point(&text) };
        // Never cut through a match: it goes out whole, or waits.
        while let Some(hit) = hits.iter().find(|(span, ..)| span.start < cut && cut < span.end) {
            cut = hit.0.start;
        }
        let mut events = Vec::new();
        let mut blocked = None;
        let mut redactions = Vec::new();
        for (span, placeholder, kind, guardrail) in &hits {
            if span.end > cut && guardrail.action != Action::Block {
                continue;
            }
            let event = Event {
                guardrail: guardrail.name.clone(),
                stage: Stage::Output.label(),
                action: guardrail.action.label(),
                found: BTreeMap::from([(*kind, 1)]),
            };
            if guardrail.action == Action::Block && blocked.is_none() {
                blocked = Some(Blocked {
                    guardrail: guardrail.name.clone(),
                    stage: Stage::Output,
                    found: (*kind).to_string(),
                });
            }
            if guardrail.action == Action::Redact {
                redactions.push((*span, *placeholder));
            }
            merge(&mut events, event);
        }
        {
            let mut sink = self.events.lock().expect("guardrail events");
            for event in events {
                merge(&mut sink, event);
            }
        }
        if let Some(blocked) = blocked {
            return Err(blocked);
        }
        let released = super::detect::redact(&text[..cut], &mut redactions);
        self.pending.insert(index, text[cut..].to_string());
        Ok(released)
    }
}

/// Where held text may be cut: [`HOLD`] bytes from its end, back to a space, and before an unfinished PEM
/// block (unless more than [`MAX_HOLD`] is held).
fn hold_point(text: &str) -> usize {
    if text.len() <= HOLD {
        return 0;
    }
    let mut cut = text.len() - HOLD;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let forced = text.len() > MAX_HOLD;
    if let Some(space) = text[..cut].rfind(char::is_whitespace) {
        cut = space;
    } else if !forced {
        return 0;
    }
    if !forced
        && let Some(begin) = text.rfind("-----BEGIN")
        && !text[begin..].contains("-----END")
    {
        cut = cut.min(begin);
    }
    cut
}

/// `pieces` with `guards`' output guardrails applied: a block ends the stream with [`Piece::Blocked`].
pub fn guarded(pieces: PieceStream, guards: Guards, events: EventSink) -> PieceStream {
    struct State {
        pieces: PieceStream,
        guard: StreamGuard,
        out: VecDeque<Piece>,
        done: bool,
    }
    let state = State {
        pieces,
        guard: StreamGuard::new(guards, events),
        out: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(piece) = state.out.pop_front() {
                return Some((piece, state));
            }
            if state.done {
                return None;
            }
            match state.pieces.next().await {
                None => return None,
                Some(Piece::Data(data)) => match state.guard.data(data) {
                    Ok(events) => state.out.extend(events.into_iter().map(Piece::Data)),
                    Err(blocked) => {
                        state.done = true;
                        state.out.push_back(Piece::Blocked(blocked.to_string()));
                    }
                },
                Some(other) => {
                    // The held text goes out before the stream's own end.
                    state.done = true;
                    match state.guard.flush() {
                        Ok(events) => state.out.extend(events.into_iter().map(Piece::Data)),
                        Err(blocked) => {
                            state.out.push_back(Piece::Blocked(blocked.to_string()));
                            return state.out.pop_front().map(|piece| (piece, state));
                        }
                    }
                    state.out.push_back(other);
                }
            }
        }
    }))
}
