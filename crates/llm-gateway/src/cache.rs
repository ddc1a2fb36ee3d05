//! The exact cache: an answer kept for a model's `cache_ttl_seconds` under the SHA-256 of the endpoint, the
//! caller's scope and the request's canonical JSON (keys sorted), and given again to the same request, a
//! streamed answer replayed as the same events. In-process, bounded in entries and bytes: the oldest entries go
//! first when either bound is reached.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kept answer.
#[derive(Debug, Clone)]
pub enum Kept {
    /// A whole JSON answer, as text (what it takes in memory is what is counted).
    Json(Arc<str>),
    /// A stream's events' data, `[DONE]` last.
    Stream(Arc<[String]>),
}

impl Kept {
    /// Bytes it takes.
    pub fn size(&self) -> usize {
        match self {
            Kept::Json(text) => text.len(),
            Kept::Stream(events) => events.iter().map(|event| event.len() + 24).sum(),
        }
    }
}

struct Entry {
    kept: Kept,
    deployment: String,
    expires: Instant,
    size: usize,
    /// When it was stored, counted in puts.
    generation: u64,
}

#[derive(Default)]
struct Held {
    entries: HashMap<[u8; 32], Entry>,
    /// Keys in the order they were stored, with the generation of that put (a key stored again is found
    /// twice; the older place no longer matches its entry and is skipped).
    order: VecDeque<([u8; 32], u64)>,
    bytes: usize,
    generation: u64,
}

/// The cache.
pub struct ExactCache {
    held: Mutex<Held>,
    max_entries: usize,
    max_bytes: usize,
}

/// The key of a request.
pub fn key(endpoint: &str, scope: &str, request: &Map<String, Value>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    // serde_json's map keeps keys sorted: the text is canonical. `"stream": false` asks what no `stream` asks.
    let text = match request.get("stream") {
        Some(Value::Bool(false) | Value::Null) => {
            let mut plain = request.clone();
            plain.remove("stream");
            serde_json::to_vec(&plain)
        }
        _ => serde_json::to_vec(request),
    };
    hasher.update(text.unwrap_or_default());
    hasher.finalize().into()
}

impl ExactCache {
    /// A cache of at most `max_entries` answers and `max_bytes` bytes of them.
    pub fn new(max_entries: usize, max_bytes: usize) -> ExactCache {
        ExactCache {
            held: Mutex::new(Held::default()),
            max_entries,
            max_bytes,
        }
    }

    /// The answer kept for `key` and the deployment that gave it, if it has not expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<(Kept, String)> {
        let mut held = self.held.lock().expect("gateway cache");
        let now = Instant::now();
        match held.entries.get(key) {
            Some(entry) if entry.expires > now => Some((entry.kept.clone(), entry.deployment.clone())),
            Some(_) => {
                if let Some(gone) = held.entries.remove(key) {
                    held.bytes -= gone.size;
                }
                None
            }
            None => None,
        }
    }

    /// Keeps an answer for `ttl` (one larger than a tenth of the byte bound is not kept).
    pub fn put(&self, key: [u8; 32], kept: Kept, deployment: String, ttl: Duration) {
        let size = kept.size();
        if size > self.max_bytes / 10 || self.max_entries == 0 {
            return;
        }
        let mut held = self.held.lock().expect("gateway cache");
        held.generation += 1;
        let generation = held.generation;
        let entry = Entry {
            kept,
            deployment,
            expires: Instant::now() + ttl,
            size,
            generation,
        };
        if let Some(old) = held.entries.insert(key, entry) {
            held.bytes -= old.size;
        }
        held.bytes += size;
        held.order.push_back((key, generation));
        while held.entries.len() > self.max_entries || held.bytes > self.max_bytes {
            let Some((oldest, stored)) = held.order.pop_front() else {
                break;
            };
            if held
                .entries
                .get(&oldest)
                .is_some_and(|entry| entry.generation == stored)
                && let Some(gone) = held.entries.remove(&oldest)
            {
                held.bytes -= gone.size;
            }
        }
        // Places of keys stored again pile up: past twice the entries, keep only the live ones.
        if held.order.len() > 2 * self.max_entries.max(1) {
            let Held { entries, order, .. } = &mut *held;
            order.retain(|(key, generation)| entries.get(key).is_some_and(|entry| entry.generation == *generation));
        }
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.held.lock().expect("gateway cache").entries.len()
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

    #[test]
    fn answers_are_kept_until_they_expire_and_the_oldest_go_first() {
        let cache = ExactCache::new(2, 1 << 20);
        let request = |n: u64| json!({"model": "m", "n": n}).as_object().unwrap().clone();
        let (a, b, c) = (
            key("/x", "", &request(1)),
            key("/x", "", &request(2)),
            key("/x", "", &request(3)),
        );
        assert_ne!(key("/x", "alice", &request(1)), a, "scoped by caller");
        cache.put(a, Kept::Json("1".into()), "p/m".into(), Duration::from_secs(60));
        cache.put(
            b,
            Kept::Stream(vec!["{}".to_string(), "[DONE]".to_string()].into()),
            "p/m".into(),
            Duration::from_secs(60),
        );
        // Stored again: its old place does not evict it.
        cache.put(a, Kept::Json("11".into()), "p/m".into(), Duration::from_secs(60));
        cache.put(c, Kept::Json("3".into()), "p/m".into(), Duration::from_secs(60));
        assert!(cache.get(&b).is_none(), "b was the oldest");
        assert!(matches!(cache.get(&a), Some((Kept::Json(text), _)) if &*text == "11"));
        assert_eq!(cache.len(), 2);
        cache.put(b, Kept::Json("2".into()), "p/m".into(), Duration::ZERO);
        assert!(cache.get(&b).is_none(), "expired at once");
        // Too large for the bound: not kept.
        let small = ExactCache::new(10, 100);
        small.put(
            a,
            Kept::Json("x".repeat(50).into()),
            "p/m".into(),
            Duration::from_secs(60),
        );
        assert!(small.is_empty());
    }

    #[test]
    fn keys_do_not_depend_on_the_order_fields_came_in() {
        let one: Map<String, Value> =
            serde_json::from_str(r#"{"model": "m", "temperature": 0, "messages": []}"#).unwrap();
        let two: Map<String, Value> =
            serde_json::from_str(r#"{"messages": [], "temperature": 0, "model": "m"}"#).unwrap();
        assert_eq!(key("/c", "", &one), key("/c", "", &two));
        let mut unstreamed = one.clone();
        unstreamed.insert("stream".into(), Value::Bool(false));
        assert_eq!(key("/c", "", &unstreamed), key("/c", "", &one));
        unstreamed.insert("stream".into(), Value::Bool(true));
        assert_ne!(key("/c", "", &unstreamed), key("/c", "", &one));
    }
}
