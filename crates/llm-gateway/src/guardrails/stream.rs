//! Output guardrails on a stream. Each choice's text (its content, reasoning and refusal each) is held back
//! while it streams: text goes out only once [`HOLD`] bytes follow it, cut at a space and never inside a match,
//! so a match split across events is whole when it is checked; a PEM private key is held until its end line.
//! Text is checked [`STEP`] bytes at a time together with the last [`CONTEXT`] bytes already sent, so a long
//! pattern match that began in sent text is still found: it ends the stream when it blocks, and also when it
//! should be redacted (what was sent cannot be taken back, so the stream stops rather than let the rest
//! through). Nothing is held past [`MAX_HOLD`]. What is released is redacted as a whole answer would be; the
//! held tail goes out with the choice's `finish_reason` chunk (or before `[DONE]`), so nothing is lost.
//! Tool-call arguments are held whole and read as JSON (`stream_tools`).

use super::texts::DELTA_FIELDS;
use super::{Action, Blocked, Event, Guardrail, Guards, Stage, matches};
use crate::gateway::{Piece, PieceStream};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Bytes of a choice's text held back while its stream runs.
pub const HOLD: usize = 256;
/// New bytes that wait for the next check (a check reads the held text and the context again).
pub const STEP: usize = 64;
/// Bytes of text already sent that each check reads again, for matches longer than [`HOLD`].
pub const CONTEXT: usize = 2048;
/// The most bytes held (for an unfinished PEM block, or a match still growing) before they go anyway.
pub const MAX_HOLD: usize = 16 * 1024;
/// The most texts followed in one stream (choices times fields); a stream with more is stopped.
const MAX_BUFFERS: usize = 512;

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

/// One text of one choice, as it streams.
#[derive(Default)]
struct Buffer {
    /// Text received and not yet sent.
    pending: String,
    /// The last [`CONTEXT`] bytes sent, as the provider sent them.
    sent: String,
}

/// Where a chunk's choice carries the text `field`: `text` (completions) or `delta.<field>` (chat).
fn text_of<'a>(choice: &'a mut Map<String, Value>, field: &str) -> Option<&'a mut String> {
    let value = if field == "text" {
        choice.get_mut("text")
    } else {
        choice.get_mut("delta")?.get_mut(field)
    };
    match value {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

/// The output guardrails' state over one stream.
pub struct StreamGuard {
    guards: Guards,
    buffers: BTreeMap<(u64, &'static str), Buffer>,
    /// `id`, `object`, `created` and `model` of the last chunk, for a chunk carrying a held tail at `[DONE]`.
    template: Map<String, Value>,
    events: EventSink,
    /// Tool-call arguments, held whole until their choice finishes.
    calls: super::stream_tools::HeldCalls,
}

impl StreamGuard {
    /// A guard applying `guards`' output guardrails, recording into `events`.
    pub fn new(guards: Guards, events: EventSink) -> StreamGuard {
        StreamGuard {
            guards,
            buffers: BTreeMap::new(),
            template: Map::new(),
            events,
            calls: super::stream_tools::HeldCalls::default(),
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
        let held: Vec<(u64, &'static str)> = self.buffers.keys().copied().collect();
        for (index, field) in held {
            let released = self.release(index, field, true)?;
            if !released.is_empty() {
                out.push(self.tail_chunk(index, field, released));
            }
        }
        self.buffers.clear();
        let released = self.calls.release(None, &self.guards, &self.events)?;
        let mut by_choice: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
        for (choice, call, text) in released {
            by_choice.entry(choice).or_default().push((call, text));
        }
        for (index, calls) in by_choice {
            let mut chunk = self.template.clone();
            let mut choice = Map::new();
            choice.insert("index".into(), Value::from(index));
            choice.insert("finish_reason".into(), Value::Null);
            super::stream_tools::put_arguments(&mut choice, calls);
            chunk.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
            out.push(Value::Object(chunk).to_string());
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
            changed |= self.calls.hold(index, choice)?;
            if finished {
                let released = self.calls.release(Some(index), &self.guards, &self.events)?;
                if !released.is_empty() {
                    super::stream_tools::put_arguments(
                        choice,
                        released.into_iter().map(|(_, call, text)| (call, text)),
                    );
                    changed = true;
                }
            }
            let fields: &[&'static str] = if matches!(choice.get("text"), Some(Value::String(_))) {
                &["text"]
            } else {
                &DELTA_FIELDS
            };
            for &field in fields {
                let arrived = text_of(choice, field).map(std::mem::take);
                let known = self.buffers.contains_key(&(index, field));
                if arrived.is_none() && !(finished && known) {
                    continue;
                }
                if !known && self.buffers.len() >= MAX_BUFFERS {
                    return Err(Blocked {
                        guardrail: String::new(),
                        stage: Stage::Output,
                        found: format!("it streams more than {MAX_BUFFERS} texts, more than output guardrails follow"),
                    });
                }
                let buffer = self.buffers.entry((index, field)).or_default();
                buffer.pending.push_str(arrived.as_deref().unwrap_or_default());
                let released = self.release(index, field, finished)?;
                if finished {
                    self.buffers.remove(&(index, field));
                }
                put_text(choice, field, released);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// A chunk carrying the held tail of a choice's text when the stream ends.
    fn tail_chunk(&self, index: u64, field: &str, text: String) -> String {
        let mut chunk = self.template.clone();
        let mut choice = serde_json::json!({"index": index, "finish_reason": null});
        if let Some(choice) = choice.as_object_mut() {
            put_text(choice, field, text);
        }
        chunk.insert("choices".into(), Value::Array(vec![choice]));
        Value::Object(chunk).to_string()
    }

    /// The text of one choice's field that may go out now (all of it when `last`), checked and redacted.
    fn release(&mut self, index: u64, field: &'static str, last: bool) -> Result<String, Blocked> {
        let Some(buffer) = self.buffers.get_mut(&(index, field)) else {
            return Ok(String::new());
        };
        if !last && buffer.pending.len() < HOLD + STEP {
            return Ok(String::new());
        }
        let offset = buffer.sent.len();
        let scanned = format!("{}{}", buffer.sent, buffer.pending);
        let mut hits = Vec::new();
        for guardrail in self.guards.output_guardrails() {
            for (span, placeholder, kind) in matches(guardrail, &scanned, false) {
                // Matches wholly in sent text were dealt with when they were held.
                if span.end > offset {
                    hits.push((span, placeholder, kind, guardrail));
                }
            }
        }
        let pending = &buffer.pending;
        let mut cut = if last { pending.len() } else { hold_point(pending) };
        let forced = pending.len() > MAX_HOLD;
        // Never cut through a match (unless too much is held): it goes out whole, or waits.
        while !forced
            && let Some(hit) = hits
                .iter()
                .find(|(span, ..)| span.start < offset + cut && offset + cut < span.end && span.start >= offset)
        {
            cut = hit.0.start - offset;
        }
        let mut events = Vec::new();
        let mut blocked = None;
        let mut redactions = Vec::new();
        for (span, placeholder, kind, guardrail) in &hits {
            let began_in_sent = span.start < offset;
            // A forced cut through a match releases its start, redacted.
            let released = span.end <= offset + cut || began_in_sent || (forced && span.start < offset + cut);
            if !released && guardrail.action != Action::Block {
                continue;
            }
            merge(&mut events, event(guardrail, kind));
            let stops = guardrail.action == Action::Block || (began_in_sent && guardrail.action == Action::Redact);
            if stops && blocked.is_none() {
                blocked = Some(Blocked {
                    guardrail: guardrail.name.clone(),
                    stage: Stage::Output,
                    found: if guardrail.action == Action::Block {
                        (*kind).to_string()
                    } else {
                        format!("{kind}, which began in text already sent and cannot be redacted")
                    },
                });
            }
            if guardrail.action == Action::Redact {
                let start = span.start.max(offset) - offset;
                let end = (span.end - offset).min(cut);
                if start < end {
                    redactions.push((super::detect::Span { start, end }, *placeholder));
                }
            }
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
        let released = super::detect::redact(&pending[..cut], &mut redactions);
        buffer.sent.push_str(&pending[..cut]);
        if buffer.sent.len() > CONTEXT {
            let mut from = buffer.sent.len() - CONTEXT;
            while !buffer.sent.is_char_boundary(from) {
                from += 1;
            }
            buffer.sent.drain(..from);
        }
        buffer.pending.drain(..cut);
        Ok(released)
    }
}

fn event(guardrail: &Guardrail, kind: &'static str) -> Event {
    Event {
        guardrail: guardrail.name.clone(),
        stage: Stage::Output.label(),
        action: guardrail.action.label(),
        found: BTreeMap::from([(kind, 1)]),
    }
}

/// Sets a choice's text `field` (creating `delta` when needed); an empty text is only written over one.
fn put_text(choice: &mut Map<String, Value>, field: &str, text: String) {
    if let Some(existing) = text_of(choice, field) {
        *existing = text;
        return;
    }
    if text.is_empty() {
        return;
    }
    if field == "text" {
        choice.insert("text".into(), Value::String(text));
    } else if let Some(Value::Object(delta)) = choice.get_mut("delta") {
        delta.insert(field.into(), Value::String(text));
    } else {
        choice.insert("delta".into(), serde_json::json!({field: text}));
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
