//! The semantic cache: a model with `semantic_cache` answers a request from an earlier answer whose request
//! *means* the same, as its embedding model judges it (cosine similarity at or above the model's threshold).
//! Answers are kept apart by everything but the text: the endpoint, the caller's scope, and the request with
//! its messages (or prompt) taken out, so a request with other tools, another temperature or a stream is never
//! answered with an answer to a different question shape. In-process and bounded like the exact cache.

use crate::cache::Kept;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest text embedded for a lookup (longer requests are neither looked up nor kept).
pub const MAX_TEXT_BYTES: usize = 32 * 1024;
/// The most answers kept in one partition (a lookup compares against each).
const MAX_PER_PARTITION: usize = 1_000;
/// The longest embedding accepted.
pub const MAX_DIMENSIONS: usize = 16_384;

/// A model's semantic cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    /// The gateway model that embeds requests (its embeddings endpoint).
    pub embedding_model: String,
    /// Least cosine similarity for a hit.
    pub threshold: f32,
}

struct Entry {
    vector: Arc<[f32]>,
    kept: Kept,
    deployment: String,
    expires: Instant,
    size: usize,
    id: u64,
}

#[derive(Default)]
struct Held {
    partitions: HashMap<[u8; 32], Vec<Entry>>,
    order: VecDeque<([u8; 32], u64)>,
    entries: usize,
    bytes: usize,
    next: u64,
}

/// The cache.
pub struct SemanticCache {
    held: Mutex<Held>,
    max_entries: usize,
    max_bytes: usize,
}

/// What a lookup needs: the partition and the request's text.
#[derive(Debug, Clone)]
pub struct Query {
    /// Everything but the text, hashed.
    pub partition: [u8; 32],
    /// The text embedded.
    pub text: String,
}

/// The partition and text of a request (`None` when it has no text, or too much).
pub fn query(endpoint: &str, scope: &str, request: &Map<String, Value>) -> Option<Query> {
    let mut text = String::new();
    for field in ["messages", "prompt"] {
        if let Some(value) = request.get(field) {
            collect_text(value, &mut text);
        }
    }
    if text.is_empty() || text.len() > MAX_TEXT_BYTES {
        return None;
    }
    // Everything but the text, by reference (a request can be megabytes: it is not copied), keys in order.
    let rest: std::collections::BTreeMap<&String, &Value> = request
        .iter()
        .filter(|(name, value)| match name.as_str() {
            "messages" | "prompt" => false,
            "stream" => !matches!(value, Value::Bool(false) | Value::Null),
            _ => true,
        })
        .collect();
    let mut hasher = Sha256::new();
    for part in [endpoint.as_bytes(), &[0], scope.as_bytes(), &[0]] {
        hasher.update(part);
    }
    hasher.update(serde_json::to_vec(&rest).unwrap_or_default());
    // The shape of the conversation (roles in order) belongs to the partition too.
    if let Some(Value::Array(messages)) = request.get("messages") {
        for message in messages {
            hasher.update(message.get("role").and_then(Value::as_str).unwrap_or("?").as_bytes());
            hasher.update([0]);
        }
    }
    Some(Query {
        partition: hasher.finalize().into(),
        text,
    })
}

/// The text of messages (contents and text parts, one per line) or of a prompt.
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(object) => {
            for field in ["content", "text"] {
                if let Some(inner) = object.get(field) {
                    collect_text(inner, out);
                }
            }
        }
        _ => {}
    }
}

/// The unit vector of an embedding (`None` for an empty, oversized, non-finite or zero one).
pub fn unit(vector: &[f32]) -> Option<Arc<[f32]>> {
    if vector.is_empty() || vector.len() > MAX_DIMENSIONS || vector.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    Some(vector.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// The embedding an OpenAI embeddings answer gives first (floats, or base64 little-endian f32).
pub fn first_embedding(answer: &Value) -> Option<Vec<f32>> {
    match answer.pointer("/data/0/embedding")? {
        Value::Array(values) => values.iter().map(|value| value.as_f64().map(|x| x as f32)).collect(),
        Value::String(text) => {
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).ok()?;
            if bytes.len() % 4 != 0 {
                return None;
            }
            Some(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        }
        _ => None,
    }
}

pub(crate) fn similarity(left: &[f32], right: &[f32]) -> f32 {
    if left.len() != right.len() {
        return -1.0;
    }
    left.iter().zip(right).map(|(a, b)| a * b).sum()
}

impl SemanticCache {
    /// A cache of at most `max_entries` answers and `max_bytes` bytes of them (vectors included).
    pub fn new(max_entries: usize, max_bytes: usize) -> SemanticCache {
        SemanticCache {
            held: Mutex::new(Held::default()),
            max_entries,
            max_bytes,
        }
    }

    /// The closest live answer in `partition` at or above `threshold`, with the deployment that gave it and
    /// the similarity.
    pub fn get(&self, partition: &[u8; 32], vector: &[f32], threshold: f32) -> Option<(Kept, String, f32)> {
        let mut held = self.held.lock().expect("semantic cache");
        let now = Instant::now();
        let Held {
            partitions,
            entries,
            bytes,
            ..
        } = &mut *held;
        let list = partitions.get_mut(partition)?;
        list.retain(|entry| {
            let live = entry.expires > now;
            if !live {
                *entries -= 1;
                *bytes -= entry.size;
            }
            live
        });
        let best = list
            .iter()
            .map(|entry| (similarity(&entry.vector, vector), entry))
            .filter(|(score, _)| *score >= threshold)
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        Some((best.1.kept.clone(), best.1.deployment.clone(), best.0))
    }

    /// Keeps an answer under `vector` in `partition` for `ttl`.
    pub fn put(&self, partition: [u8; 32], vector: Arc<[f32]>, kept: Kept, deployment: String, ttl: Duration) {
        let size = kept.size() + vector.len() * 4 + 64;
        if size > self.max_bytes / 10 || self.max_entries == 0 {
            return;
        }
        let mut held = self.held.lock().expect("semantic cache");
        held.next += 1;
        let id = held.next;
        let list = held.partitions.entry(partition).or_default();
        let mut dropped = (0, 0);
        if list.len() >= MAX_PER_PARTITION {
            let gone = list.remove(0);
            dropped = (1, gone.size);
        }
        list.push(Entry {
            vector,
            kept,
            deployment,
            expires: Instant::now() + ttl,
            size,
            id,
        });
        held.entries = held.entries + 1 - dropped.0;
        held.bytes = held.bytes + size - dropped.1;
        held.order.push_back((partition, id));
        while held.entries > self.max_entries || held.bytes > self.max_bytes {
            let Some((oldest, id)) = held.order.pop_front() else {
                break;
            };
            let Held {
                partitions,
                entries,
                bytes,
                ..
            } = &mut *held;
            if let Some(list) = partitions.get_mut(&oldest)
                && let Some(position) = list.iter().position(|entry| entry.id == id)
            {
                let gone = list.remove(position);
                *entries -= 1;
                *bytes -= gone.size;
                if list.is_empty() {
                    partitions.remove(&oldest);
                }
            }
        }
        if held.order.len() > 2 * self.max_entries.max(1) {
            let Held { partitions, order, .. } = &mut *held;
            order.retain(|(partition, id)| {
                partitions
                    .get(partition)
                    .is_some_and(|list| list.iter().any(|entry| entry.id == *id))
            });
        }
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.held.lock().expect("semantic cache").entries
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(text: &str, temperature: f64) -> Map<String, Value> {
        json!({"model": "m", "temperature": temperature, "messages": [{"role": "user", "content": text}]})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn partitions_hold_everything_but_the_text() {
        let a = query("/c", "", &request("hello", 0.0)).unwrap();
        let b = query("/c", "", &request("goodbye", 0.0)).unwrap();
        assert_eq!(a.partition, b.partition);
        assert_eq!(a.text, "hello\n");
        assert_ne!(query("/c", "", &request("hello", 0.5)).unwrap().partition, a.partition);
        assert_ne!(
            query("/c", "bob", &request("hello", 0.0)).unwrap().partition,
            a.partition
        );
        let mut streamed = request("hello", 0.0);
        streamed.insert("stream".into(), json!(true));
        assert_ne!(query("/c", "", &streamed).unwrap().partition, a.partition);
        assert!(query("/c", "", &request(&"x".repeat(MAX_TEXT_BYTES + 1), 0.0)).is_none());
    }

    #[test]
    fn the_nearest_answer_above_the_threshold_is_given_and_bounds_hold() {
        let cache = SemanticCache::new(3, 1 << 20);
        let partition = [7u8; 32];
        let ttl = Duration::from_secs(60);
        cache.put(
            partition,
            unit(&[1.0, 0.0]).unwrap(),
            Kept::Json("east".into()),
            "p/m".into(),
            ttl,
        );
        cache.put(
            partition,
            unit(&[0.0, 1.0]).unwrap(),
            Kept::Json("north".into()),
            "p/m".into(),
            ttl,
        );
        let (kept, _, score) = cache.get(&partition, &unit(&[0.9, 0.1]).unwrap(), 0.9).unwrap();
        assert!(matches!(kept, Kept::Json(text) if &*text == "east") && score > 0.99);
        assert!(
            cache.get(&partition, &unit(&[1.0, 1.0]).unwrap(), 0.9).is_none(),
            "45 degrees is not a hit"
        );
        assert!(
            cache.get(&[8u8; 32], &unit(&[1.0, 0.0]).unwrap(), 0.5).is_none(),
            "another partition"
        );
        for n in 0..5 {
            cache.put(
                partition,
                unit(&[1.0, n as f32]).unwrap(),
                Kept::Json("x".into()),
                "p/m".into(),
                ttl,
            );
        }
        assert_eq!(cache.len(), 3);
        cache.put(
            partition,
            unit(&[-1.0, 0.0]).unwrap(),
            Kept::Json("west".into()),
            "p/m".into(),
            Duration::ZERO,
        );
        assert!(
            cache.get(&partition, &unit(&[-1.0, 0.0]).unwrap(), 0.9).is_none(),
            "expired"
        );
    }

    proptest::proptest! {
        /// Any request body, however nested, and any embedding answer are read without a panic, and bounded.
        #[test]
        fn hostile_requests_and_answers_are_read_safely(depth in 0usize..120, text in ".{0,64}", numbers in proptest::collection::vec(proptest::num::f64::ANY, 0..40)) {
            let mut nested = json!(text);
            for _ in 0..depth {
                nested = json!([{"content": nested}]);
            }
            let request = json!({"model": "m", "messages": nested, "n": numbers.len()});
            if let Some(query) = query("/c", "", request.as_object().unwrap()) {
                proptest::prop_assert!(query.text.len() <= MAX_TEXT_BYTES);
            }
            let answer = json!({"data": [{"embedding": numbers}]});
            if let Some(vector) = first_embedding(&answer).and_then(|vector| unit(&vector)) {
                proptest::prop_assert!(vector.iter().all(|x| x.is_finite()));
            }
            let _ = first_embedding(&json!({"data": [{"embedding": text}]}));
        }
    }

    #[test]
    fn embeddings_are_read_as_floats_or_base64_and_bad_ones_refused() {
        assert_eq!(
            first_embedding(&json!({"data": [{"embedding": [1.0, 2.0]}]})),
            Some(vec![1.0, 2.0])
        );
        let bytes: Vec<u8> = [3.0f32, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        assert_eq!(
            first_embedding(&json!({"data": [{"embedding": text}]})),
            Some(vec![3.0, 4.0])
        );
        assert_eq!(first_embedding(&json!({"data": [{"embedding": ["x"]}]})), None);
        assert!(unit(&[0.0, 0.0]).is_none());
        assert!(unit(&[f32::NAN]).is_none());
        assert!(unit(&[]).is_none());
    }
}
