//! What the gateway records of each call: its metrics, and a [`CallRecord`] for an observer (the server turns
//! them into MLflow traces). Streams are followed to their end: tokens from their usage chunk, the text they
//! carried (up to a limit), and how they ended.

use crate::cache::Kept;
use crate::gateway::{Endpoint, Piece, PieceStream};
use crate::metrics::GatewayMetrics;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The longest request kept for a record, as JSON text.
pub const MAX_KEPT_REQUEST: usize = 256 * 1024;

/// The request as a record keeps it.
pub fn kept_request(request: &Map<String, Value>) -> String {
    let text = serde_json::to_string(request).unwrap_or_default();
    if text.len() <= MAX_KEPT_REQUEST {
        return text;
    }
    serde_json::json!({"model": request.get("model"), "truncated": true, "bytes": text.len()}).to_string()
}

/// An answer as a record keeps it: itself, or a note of its size when its JSON is larger than
/// [`MAX_KEPT_REQUEST`].
pub fn kept_answer(answer: &Value) -> Value {
    let size = serde_json::to_vec(answer).map_or(0, |text| text.len());
    if size <= MAX_KEPT_REQUEST {
        return answer.clone();
    }
    serde_json::json!({"truncated": true, "bytes": size})
}

/// The most streamed text kept for a record.
const MAX_KEPT_TEXT: usize = 64 * 1024;

/// One finished gateway call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The model name the caller used.
    pub model: String,
    /// The endpoint called.
    pub endpoint: Endpoint,
    /// `provider/model` that answered, if one did.
    pub deployment: Option<String>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Whether a fallback model answered.
    pub fell_back: bool,
    /// When the call arrived.
    pub started_at: SystemTime,
    /// How long it took (a stream: until its end).
    pub duration: Duration,
    /// A stream's time to its first event.
    pub first_token: Option<Duration>,
    /// The caller's request body as JSON text (when larger than [`MAX_KEPT_REQUEST`], a note saying so).
    pub request: String,
    /// The answer (a stream's: its text joined, as a chat completion).
    pub response: Option<Value>,
    /// `ok`, `broken`, `cancelled`, or the error's kind.
    pub outcome: &'static str,
    /// The error's message.
    pub error: Option<String>,
    /// Prompt and completion tokens as the provider reported them.
    pub tokens: Option<(u64, u64)>,
    /// Answered from the exact cache.
    pub cache_hit: bool,
    /// What the guardrails did (input and output).
    pub guardrails: Vec<crate::guardrails::Event>,
    /// Prompt tokens the provider read from its prompt cache.
    pub cached_tokens: u64,
    /// The answering deployment's price (none for a cache hit: it cost nothing).
    pub price: Option<crate::config::Price>,
    /// Characters of answer text (a stream's content deltas), to estimate tokens a provider did not report.
    pub answer_chars: u64,
    /// A semantic cache hit's similarity.
    pub similarity: Option<f32>,
    /// The signed-in caller.
    pub user: Option<String>,
    /// The experiment to trace the call in, when not the gateway's own (an MLflow endpoint's).
    pub experiment_id: Option<String>,
    /// What embedding the request for the semantic cache took: tokens, and US dollars when the embedding
    /// model is priced. Charged to the caller with the call, hit or miss.
    pub embedding: Option<(u64, f64)>,
}

impl CallRecord {
    /// What the call cost, when its deployment has a price and the provider reported usage.
    pub fn cost(&self) -> Option<crate::config::Cost> {
        let (prompt, completion) = self.tokens?;
        Some(self.price?.cost(prompt, completion, self.cached_tokens))
    }

    /// Takes the usage an answer or chunk reports.
    pub fn take_usage(&mut self, value: &Value) {
        if let Some(tokens) = usage(value) {
            self.tokens = Some(tokens);
            self.cached_tokens = value
                .pointer("/usage/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
    }
}

/// Characters of text in a whole answer's choices.
pub fn answer_chars(answer: &Value) -> u64 {
    answer
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|choice| {
            choice
                .pointer("/message/content")
                .or_else(|| choice.get("text"))
                .and_then(Value::as_str)
        })
        .map(|text| text.chars().count() as u64)
        .sum()
}

/// Counts a finished call in the metrics: its outcome and latency, its guardrails' actions and its cost.
pub fn count(metrics: &GatewayMetrics, record: &CallRecord) {
    metrics.call(&record.model, record.outcome, Some(record.duration));
    metrics.guardrails(&record.model, &record.guardrails);
    if let Some(cost) = record.cost() {
        metrics.cost(&record.model, cost.total());
    }
}

/// Receives every finished call (must not block: it runs on the request path).
pub trait CallObserver: Send + Sync {
    /// A call ended.
    fn observe(&self, record: CallRecord);
    /// Whether it wants calls of this kind: those traced in an MLflow endpoint's own experiment, or the rest.
    fn records(&self, _endpoint_experiment: bool) -> bool {
        true
    }
}

/// The prompt and completion tokens an answer or chunk reports.
pub fn usage(value: &Value) -> Option<(u64, u64)> {
    let usage = value.get("usage").filter(|usage| usage.is_object())?;
    let count = |name: &str| usage.get(name).and_then(Value::as_u64);
    // Counts that are missing, negative, fractional or text are no report: the call is then priced from its
    // estimate, as one without usage is (never as free). An embedding reports its prompt and total only.
    let prompt = count("prompt_tokens")?;
    let completion = match count("completion_tokens") {
        Some(completion) => completion,
        None => count("total_tokens")?.checked_sub(prompt)?,
    };
    Some((prompt, completion))
}

/// Follows a stream handed to a caller and records how it ends: finished (`[DONE]` passed), broken after it
/// started (both recorded as the piece passes, before the caller has it), or dropped by the caller first.
struct StreamEnd {
    metrics: Arc<GatewayMetrics>,
    observer: Option<Arc<dyn CallObserver>>,
    record: Option<CallRecord>,
    started: Instant,
    text: String,
    keep: Option<Keeping>,
    /// What output guardrails did as the stream passed them.
    sink: Option<crate::guardrails::stream::EventSink>,
    /// Told of the record too (the caller's limits).
    settle: Option<Arc<dyn CallObserver>>,
}

/// A stream being gathered for the caches (given up past [`MAX_KEPT_STREAM`]).
pub struct Keeping {
    /// Where it goes.
    pub keeper: crate::answers::Keeper,
    /// Under which key and meaning, from which deployment, for how long.
    pub to: crate::answers::ToKeep,
    /// The events so far.
    pub events: Vec<String>,
    /// Their bytes.
    pub bytes: usize,
}

/// The largest stream kept in the cache.
const MAX_KEPT_STREAM: usize = 1 << 20;

impl StreamEnd {
    fn end(&mut self, outcome: &'static str, error: Option<String>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.duration = self.started.elapsed();
        record.outcome = outcome;
        record.error = error;
        if let Some(sink) = &self.sink {
            for event in std::mem::take(&mut *sink.lock().expect("guardrail events")) {
                crate::guardrails::stream::merge(&mut record.guardrails, event);
            }
        }
        count(&self.metrics, &record);
        if let Some(settle) = &self.settle {
            settle.observe(record.clone());
        }
        if let Some(observer) = &self.observer {
            record.response = Some(serde_json::json!({"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": std::mem::take(&mut self.text)}}]}));
            observer.observe(record);
        }
    }

    fn piece(&mut self, piece: &Piece) {
        match piece {
            Piece::Data(data) if data.trim() == "[DONE]" => {
                if let Some(mut keeping) = self.keep.take() {
                    keeping.events.push(data.clone());
                    let kept = Kept::Stream(keeping.events.into());
                    if let (Some(shared), Ok(runtime)) = (
                        keeping.keeper.keep(keeping.to, kept),
                        tokio::runtime::Handle::try_current(),
                    ) {
                        runtime.spawn(shared);
                    }
                }
                self.end("ok", None);
            }
            Piece::Data(data) => {
                if let Some(keeping) = &mut self.keep {
                    keeping.bytes += data.len();
                    keeping.events.push(data.clone());
                    if keeping.bytes > MAX_KEPT_STREAM {
                        self.keep = None;
                    }
                }
                let wanted = self.observer.is_some() && self.text.len() < MAX_KEPT_TEXT;
                let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                    return;
                };
                if let Some(record) = &mut self.record {
                    record.answer_chars += chunk
                        .get("choices")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|choice| choice.pointer("/delta/content").or_else(|| choice.get("text")))
                        .filter_map(Value::as_str)
                        .map(|text| text.chars().count() as u64)
                        .sum::<u64>();
                }
                if let (Some((prompt, completion)), Some(record)) = (usage(&chunk), &mut self.record) {
                    if !record.cache_hit {
                        self.metrics.tokens(&record.model, prompt, completion);
                    }
                    record.take_usage(&chunk);
                }
                if wanted {
                    let piece = chunk
                        .pointer("/choices/0/delta/content")
                        .or_else(|| chunk.pointer("/choices/0/text"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let room = MAX_KEPT_TEXT.saturating_sub(self.text.len());
                    self.text.extend(piece.chars().take(room));
                }
            }
            Piece::Broken(message) => {
                if let Some(record) = &self.record {
                    self.metrics.broken(&record.model);
                }
                self.end("broken", Some(message.clone()));
            }
            Piece::Blocked(message) => {
                self.end("blocked", Some(message.clone()));
            }
        }
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.end("cancelled", None);
    }
}

/// Who follows a stream besides the metrics: the trace writer, the caller's limits, the cache and the output
/// guardrails' record.
pub struct Followers {
    /// The trace writer.
    pub observer: Option<Arc<dyn CallObserver>>,
    /// The caller's limits.
    pub settle: Option<Arc<dyn CallObserver>>,
    /// The exact cache.
    pub keep: Option<Keeping>,
    /// What output guardrails did.
    pub sink: Option<crate::guardrails::stream::EventSink>,
}

/// The stream, followed to its end.
pub fn observed(
    pieces: PieceStream,
    metrics: Arc<GatewayMetrics>,
    record: CallRecord,
    started: Instant,
    followers: Followers,
) -> PieceStream {
    let mut end = StreamEnd {
        metrics,
        observer: followers.observer,
        record: Some(record),
        started,
        text: String::new(),
        keep: followers.keep,
        sink: followers.sink,
        settle: followers.settle,
    };
    Box::pin(pieces.inspect(move |piece| end.piece(piece)))
}

#[cfg(test)]
mod tests {
    use super::usage;
    use serde_json::json;

    #[test]
    fn only_whole_token_counts_are_a_report() {
        assert_eq!(
            usage(&json!({"usage": {"prompt_tokens": 5, "completion_tokens": 3}})),
            Some((5, 3))
        );
        assert_eq!(
            usage(&json!({"usage": {"prompt_tokens": 5, "total_tokens": 5}})),
            Some((5, 0)),
            "an embedding"
        );
        for unusable in [
            json!({}),
            json!({"usage": null}),
            json!({"usage": {}}),
            json!({"usage": {"total_tokens": 1000}}),
            json!({"usage": {"prompt_tokens": "500", "completion_tokens": "500"}}),
            json!({"usage": {"prompt_tokens": -100000, "completion_tokens": 3}}),
            json!({"usage": {"prompt_tokens": 5.5, "completion_tokens": 1e30}}),
            json!({"usage": {"prompt_tokens": 50, "total_tokens": 5}}),
        ] {
            assert_eq!(usage(&unusable), None, "{unusable}");
        }
    }
}
