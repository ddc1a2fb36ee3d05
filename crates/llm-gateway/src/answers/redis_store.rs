//! Answers kept in Redis, shared by every replica of the gateway.
//!
//! Layout, under the `loopline:gateway:` prefix:
//! - `exact:<key>`: one exact answer (its JSON envelope, below), expiring with its TTL;
//! - `similar:<partition>`: a sorted set of the partition's entry ids, scored by when they expire (ms since
//!   the epoch), at most [`MAX_PER_PARTITION`] (the latest to expire are kept, the keys of those trimmed
//!   deleted);
//! - `similar:<partition>:v:<id>`: the entry's unit embedding (little-endian f32s), and
//!   `similar:<partition>:a:<id>`: its answer envelope, both expiring with its TTL.
//!
//! A semantic lookup reads the partition's ids, then their vectors in one pipeline, compares them here, and reads
//! only the best entry's answer. Every command has a deadline: a slow or absent Redis makes misses (and a
//! warning at most every ten seconds), never a failed or held call; after a failure to reach it, Redis is
//! left alone for a second (doubling up to thirty while it stays down) and then one call probes it, making
//! the connection anew, so an outage costs calls nothing and a Redis that is back (or whose password was
//! changed back) is used again. What is read back is checked like any input: values are read only up to a
//! bound, answers must be JSON objects (stream events too, one line each), embeddings unit vectors,
//! deployment names short; anything else is a miss. The URL, which may hold a password, is never logged.

use super::AnswerStore;
use crate::cache::Kept;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisResult};
use async_trait::async_trait;
use loopline_core::redact::{scrubbed, url_secrets};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries kept per semantic partition in Redis (each lookup reads all their vectors).
pub const MAX_PER_PARTITION: isize = 256;

/// How long one Redis command may take before it counts as a miss.
const DEADLINE: Duration = Duration::from_millis(250);

const PREFIX: &str = "loopline:gateway:";

/// The longest deployment name read back.
const MAX_DEPLOYMENT: usize = 256;

/// The longest Redis is left alone after failing to answer.
const MAX_PAUSE_MS: u64 = 30_000;

/// The stored form of an answer.
#[derive(Serialize, Deserialize)]
struct Envelope {
    deployment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<Vec<String>>,
}

impl Envelope {
    fn of(kept: &Kept, deployment: &str) -> Envelope {
        match kept {
            Kept::Json(text) => Envelope {
                deployment: deployment.to_string(),
                json: Some(text.to_string()),
                stream: None,
            },
            Kept::Stream(events) => Envelope {
                deployment: deployment.to_string(),
                json: None,
                stream: Some(events.to_vec()),
            },
        }
    }

    /// The answer, if it reads as one the gateway itself would have kept.
    fn kept(self) -> Option<(Kept, String)> {
        let object = |text: &str| serde_json::from_str::<serde_json::Value>(text).is_ok_and(|value| value.is_object());
        // A deployment name goes into a response header: printable ASCII, as the gateway's own are.
        if self.deployment.is_empty()
            || self.deployment.len() > MAX_DEPLOYMENT
            || !self
                .deployment
                .bytes()
                .all(|byte| byte.is_ascii_graphic() || byte == b' ')
        {
            return None;
        }
        let kept = match (self.json, self.stream) {
            (Some(text), None) if object(&text) => Kept::Json(text.into()),
            (None, Some(events))
                if events.split_last().is_some_and(|(last, before)| {
                    last == "[DONE]"
                        && before
                            .iter()
                            .all(|event| !event.contains(['\n', '\r']) && object(event))
                }) =>
            {
                Kept::Stream(events.into())
            }
            _ => return None,
        };
        Some((kept, self.deployment))
    }
}

/// The answer stored as `bytes`, if it is one this store would have kept: a well-formed envelope whose answer
/// is no larger than `max_entry_bytes` (anything larger is not one it kept).
fn read_envelope(bytes: &[u8], max_entry_bytes: usize) -> Option<(Kept, String)> {
    serde_json::from_slice::<Envelope>(bytes)
        .ok()?
        .kept()
        .filter(|(kept, _)| kept.size() <= max_entry_bytes)
}

/// The shared store.
pub struct RedisAnswers {
    client: Client,
    connection: Mutex<ConnectionManager>,
    /// The largest answer kept, in bytes (as in memory: a tenth of the cache's byte bound).
    max_entry_bytes: usize,
    /// When the last warning was logged, seconds since the epoch.
    warned_at: AtomicU64,
    /// Redis is not asked before this time (ms since the epoch) after failing to answer; 0 when it answers.
    paused_until: AtomicU64,
    /// Failures to reach Redis in a row.
    failures: AtomicU32,
    /// What the URL's user part holds, kept out of every message.
    secrets: Vec<String>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(DEADLINE)
        .set_response_timeout(DEADLINE)
        .set_number_of_retries(1)
        .set_max_delay(1_000)
}

/// Whether an error says Redis could not be reached or refused who we are (rather than one command, such
/// as a key of another type): what pauses the use of Redis.
fn unreachable(error: &::redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(error.kind(), ::redis::ErrorKind::AuthenticationFailed)
        || error.code() == Some("NOAUTH")
}

/// What a Redis error was, in words that never quote the URL.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for ::redis::RedisError {
    fn kind_text(&self) -> String {
        if self.is_io_error() {
            // The operating system's words ("Connection refused (os error 111)").
            return self.to_string();
        }
        match self.detail() {
            Some(detail) => format!("{:?}: {}", self.kind(), detail.lines().next().unwrap_or_default()),
            None => format!("{:?}", self.kind()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Milliseconds Redis keeps an entry for, or none when it should not be kept at all.
fn ttl_ms(ttl: Duration) -> Option<u64> {
    u64::try_from(ttl.as_millis()).ok().filter(|ms| *ms > 0)
}

fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// A stored embedding of the expected size, if it is the unit vector the gateway keeps (a longer one would
/// score above any threshold).
fn vector_of(bytes: &[u8], dimensions: usize) -> Option<Vec<f32>> {
    if bytes.len() != dimensions * 4 {
        return None;
    }
    let vector: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let norm: f32 = vector.iter().map(|value| value * value).sum();
    ((norm - 1.0).abs() < 1e-3).then_some(vector)
}

impl RedisAnswers {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`; TLS is not built in) and checks
    /// that it answers (a PING, so a missing or wrong password is found now); fails naming the host but
    /// never the password.
    pub async fn connect(url: &str, max_entry_bytes: usize) -> Result<RedisAnswers, String> {
        let secrets = url_secrets(url);
        let scheme = url
            .split_once("://")
            .map_or("", |(scheme, _)| scheme)
            .to_ascii_lowercase();
        if scheme == "rediss" || scheme == "valkeys" {
            return Err(format!(
                "the Redis URL asks for TLS ({scheme}://), which this build does not speak; use redis:// on a \
                 private network, or a local TLS tunnel (stunnel, spiped) to the Redis server"
            ));
        }
        let client = Client::open(url)
            .map_err(|error| scrubbed(format!("the Redis URL is not valid: {}", error.kind_text()), &secrets))?;
        let place = client.get_connection_info().addr.to_string();
        let refused = |what: String| scrubbed(format!("cannot reach Redis at {place}: {what}"), &secrets);
        let mut connection = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client.clone(), manager_config()),
        )
        .await
        .map_err(|_| refused("no answer within 10 s".into()))?
        .map_err(|error| refused(error.kind_text()))?;
        let pong: RedisResult<String> = tokio::time::timeout(Duration::from_secs(10), async {
            ::redis::cmd("PING").query_async(&mut connection).await
        })
        .await
        .map_err(|_| refused("no answer to PING within 10 s".into()))?;
        pong.map_err(|error| refused(error.kind_text()))?;
        Ok(RedisAnswers {
            client,
            connection: Mutex::new(connection),
            max_entry_bytes,
            warned_at: AtomicU64::new(0),
            paused_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            secrets,
        })
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether to ask Redis now: not while it is paused; once the pause is over, one caller probes.
    fn may_ask(&self) -> bool {
        let paused_until = self.paused_until.load(Ordering::Acquire);
        if paused_until == 0 {
            return true;
        }
        let now = now_ms();
        let probe_ends = now + 4 * DEADLINE.as_millis() as u64;
        now >= paused_until
            && self
                .paused_until
                .compare_exchange(paused_until, probe_ends, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Runs one exchange with its deadline; a failure is logged (at most every ten seconds) and is `None`.
    async fn run<T, F>(&self, what: &str, exchange: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        if !self.may_ask() {
            return None;
        }
        if self.failures.load(Ordering::Acquire) >= 2 {
            // Down more than once: the probe makes the connection anew (a restarted Redis, a password
            // changed back).
            let connecting = ConnectionManager::new_with_config(self.client.clone(), manager_config());
            if let Ok(Ok(fresh)) = tokio::time::timeout(DEADLINE, connecting).await {
                *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
            }
        }
        let outcome = tokio::time::timeout(DEADLINE * 2, exchange(self.connection())).await;
        let (problem, down) = match outcome {
            Ok(Ok(value)) => {
                if self.failures.swap(0, Ordering::AcqRel) > 0 {
                    tracing::info!("the shared gateway cache in Redis answers again");
                }
                self.paused_until.store(0, Ordering::Release);
                return Some(value);
            }
            Ok(Err(error)) => (error.kind_text(), unreachable(&error)),
            Err(_) => ("no answer in time".to_string(), true),
        };
        if down {
            let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            let pause = (1_000u64 << failures.saturating_sub(1).min(5)).min(MAX_PAUSE_MS);
            self.paused_until.store(now_ms() + pause, Ordering::Release);
        } else {
            // Redis answered (refusing one command, e.g. a key of another type): it is reachable.
            self.failures.store(0, Ordering::Release);
            self.paused_until.store(0, Ordering::Release);
        }
        let now = now_ms() / 1000;
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let problem = scrubbed(problem, &self.secrets);
            tracing::warn!(%problem, "the shared gateway cache in Redis failed to {what}: answered as a miss");
        }
        None
    }

    /// A string value read only up to `limit` bytes: an empty, missing or longer one is none.
    async fn bounded_get(&self, what: &str, name: String, limit: usize) -> Option<Vec<u8>> {
        let bytes: Vec<u8> = self
            .run(what, |mut connection| async move {
                ::redis::cmd("GETRANGE")
                    .arg(name)
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        (!bytes.is_empty() && bytes.len() <= limit).then_some(bytes)
    }

    fn envelope_bytes(&self, kept: &Kept, deployment: &str) -> Option<Vec<u8>> {
        if kept.size() > self.max_entry_bytes {
            return None;
        }
        serde_json::to_vec(&Envelope::of(kept, deployment)).ok()
    }

    /// The most bytes of an envelope read back: twice the largest answer kept (the envelope escapes the
    /// answer's JSON inside a string), and room for its deployment.
    fn envelope_limit(&self) -> usize {
        self.max_entry_bytes.saturating_mul(2).saturating_add(4096)
    }

    async fn answer(&self, name: String) -> Option<(Kept, String)> {
        let bytes = self.bounded_get("read an answer", name, self.envelope_limit()).await?;
        read_envelope(&bytes, self.max_entry_bytes)
    }
}

#[async_trait]
impl AnswerStore for RedisAnswers {
    async fn exact(&self, key: &[u8; 32]) -> Option<(Kept, String)> {
        self.answer(format!("{PREFIX}exact:{}", hex(key))).await
    }

    async fn keep_exact(&self, key: [u8; 32], kept: Kept, deployment: String, ttl: Duration) {
        let (Some(ms), Some(bytes)) = (ttl_ms(ttl), self.envelope_bytes(&kept, &deployment)) else {
            return;
        };
        let name = format!("{PREFIX}exact:{}", hex(&key));
        let _: Option<()> = self
            .run("keep an answer", |mut connection| async move {
                ::redis::cmd("SET")
                    .arg(name)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut connection)
                    .await
            })
            .await;
    }

    async fn similar(&self, partition: &[u8; 32], vector: &[f32], threshold: f32) -> Option<(Kept, String, f32)> {
        let index = format!("{PREFIX}similar:{}", hex(partition));
        let now = now_ms();
        let ids: Vec<String> = {
            let index = index.clone();
            self.run("read a partition", |mut connection| async move {
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(index)
                    .arg(now)
                    .arg("+inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MAX_PER_PARTITION)
                    .query_async(&mut connection)
                    .await
            })
            .await?
        };
        if ids.is_empty() {
            return None;
        }
        // Each vector read only up to the size of the request's own (one byte more shows a longer one).
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.cmd("GETRANGE")
                .arg(format!("{index}:v:{id}"))
                .arg(0)
                .arg(vector.len() * 4);
        }
        let vectors: Vec<Option<Vec<u8>>> = self
            .run("read embeddings", |mut connection| async move {
                pipe.query_async(&mut connection).await
            })
            .await?;
        let (best, score) = ids
            .iter()
            .zip(vectors)
            .filter_map(|(id, bytes)| {
                let stored = vector_of(&bytes?, vector.len())?;
                Some((id, crate::semantic::similarity(&stored, vector)))
            })
            .filter(|(_, score)| *score >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let (kept, deployment) = self.answer(format!("{index}:a:{best}")).await?;
        Some((kept, deployment, score))
    }

    async fn keep_similar(
        &self,
        partition: [u8; 32],
        vector: Arc<[f32]>,
        kept: Kept,
        deployment: String,
        ttl: Duration,
    ) {
        let (Some(ms), Some(bytes)) = (ttl_ms(ttl), self.envelope_bytes(&kept, &deployment)) else {
            return;
        };
        let index = format!("{PREFIX}similar:{}", hex(&partition));
        let id = format!("{:016x}", rand::random::<u64>());
        let now = now_ms();
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{index}:v:{id}"))
            .arg(vector_bytes(&vector))
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("SET")
            .arg(format!("{index}:a:{id}"))
            .arg(bytes)
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(now.saturating_add(ms))
            .arg(&id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now)
            .ignore()
            // The latest to expire stay (rank 0 is the first to expire); those trimmed are read first, so
            // their keys go too.
            .cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-(MAX_PER_PARTITION + 1))
            .cmd("ZREMRANGEBYRANK")
            .arg(&index)
            .arg(0)
            .arg(-(MAX_PER_PARTITION + 1))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ms)
            .ignore();
        let trimmed: Option<(Vec<String>,)> = self
            .run("keep an answer", |mut connection| async move {
                pipe.query_async(&mut connection).await
            })
            .await;
        let Some((trimmed,)) = trimmed.filter(|(trimmed,)| !trimmed.is_empty()) else {
            return;
        };
        let names: Vec<String> = trimmed
            .iter()
            .flat_map(|id| [format!("{index}:v:{id}"), format!("{index}:a:{id}")])
            .collect();
        let _: Option<()> = self
            .run("trim a partition", |mut connection| async move {
                ::redis::cmd("DEL").arg(names).query_async(&mut connection).await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the gateway promises of any answer read back from Redis, whatever Redis held.
    fn as_kept(found: &(Kept, String), max_entry_bytes: usize) {
        let (kept, deployment) = found;
        assert!(!deployment.is_empty() && deployment.len() <= MAX_DEPLOYMENT);
        assert!(deployment.bytes().all(|byte| byte.is_ascii_graphic() || byte == b' '));
        assert!(kept.size() <= max_entry_bytes);
        let object = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap().is_object();
        match kept {
            Kept::Json(text) => assert!(object(text)),
            Kept::Stream(events) => {
                let (last, before) = events.split_last().unwrap();
                assert_eq!(last, "[DONE]");
                for event in before {
                    assert!(!event.contains(['\n', '\r']) && object(event), "{event:?}");
                }
            }
        }
    }

    /// A JSON object answer with arbitrary text in it.
    fn answer() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|text| serde_json::json!({"choices": [{"text": text}]}).to_string())
    }

    fn kept() -> impl Strategy<Value = Kept> {
        prop_oneof![
            answer().prop_map(|text| Kept::Json(text.into())),
            proptest::collection::vec(answer(), 0..6).prop_map(|mut events| {
                events.push("[DONE]".into());
                Kept::Stream(events.into())
            }),
        ]
    }

    proptest! {
        #[test]
        fn what_the_gateway_keeps_reads_back_the_same(kept in kept(), deployment in "[ -~]{1,256}") {
            let bytes = serde_json::to_vec(&Envelope::of(&kept, &deployment)).unwrap();
            let (back, named) = read_envelope(&bytes, kept.size()).expect("read back");
            prop_assert_eq!(named, deployment);
            match (kept, back) {
                (Kept::Json(a), Kept::Json(b)) => prop_assert_eq!(a, b),
                (Kept::Stream(a), Kept::Stream(b)) => prop_assert_eq!(a, b),
                _ => prop_assert!(false, "the kind changed"),
            }
        }

        #[test]
        fn forged_values_are_refused_or_read_as_answers_the_gateway_would_keep(
            kept in kept(),
            deployment in "\\PC{0,300}",
            cut in any::<prop::sample::Index>(),
            splice in proptest::collection::vec(any::<u8>(), 0..64),
            max in 0usize..4096,
        ) {
            // A genuine envelope with arbitrary bytes spliced in at any place, and arbitrary bytes alone.
            let mut bytes = serde_json::to_vec(&Envelope::of(&kept, &deployment)).unwrap();
            let at = cut.index(bytes.len() + 1);
            bytes.splice(at..at, splice.iter().copied());
            for bytes in [bytes.as_slice(), splice.as_slice()] {
                if let Some(found) = read_envelope(bytes, max) {
                    as_kept(&found, max);
                }
            }
        }

        #[test]
        fn forged_vectors_are_refused_or_unit_vectors_of_the_asked_size(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            dimensions in 0usize..20,
        ) {
            if let Some(vector) = vector_of(&bytes, dimensions) {
                prop_assert_eq!(vector.len(), dimensions);
                prop_assert!(vector.iter().all(|value| value.is_finite()));
                let norm: f32 = vector.iter().map(|value| value * value).sum();
                prop_assert!((norm - 1.0).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn secrets_of_a_url_are_found_and_scrubbed() {
        let secrets = url_secrets("redis://user:p%40ss@host:6379/0");
        assert_eq!(secrets, ["user:p%40ss", "p%40ss"]);
        assert_eq!(scrubbed("at user:p%40ss@host".into(), &secrets), "at ***@host");
        assert_eq!(url_secrets("redis://:hunter2@h"), [":hunter2", "hunter2"]);
        assert!(url_secrets("redis://host:6379").is_empty());
        assert!(url_secrets("not a url").is_empty());
    }

    #[test]
    fn only_answers_the_gateway_would_keep_are_read_back() {
        let envelope = |json: serde_json::Value| serde_json::from_value::<Envelope>(json).unwrap().kept();
        assert!(envelope(serde_json::json!({"deployment": "p/m", "json": "{\"a\": 1}"})).is_some());
        for refused in [
            serde_json::json!({"deployment": "p/m", "json": "not json {"}),
            serde_json::json!({"deployment": "p/m", "json": "42"}),
            serde_json::json!({"deployment": "p/m", "json": "{}", "stream": ["[DONE]"]}),
            serde_json::json!({"deployment": "p/m", "stream": ["{}"]}),
            serde_json::json!({"deployment": "p/m", "stream": ["{}\n\ndata: injected", "[DONE]"]}),
            serde_json::json!({"deployment": "x".repeat(300), "json": "{}"}),
            serde_json::json!({"deployment": "p/m\r\nset-cookie: a", "json": "{}"}),
        ] {
            assert!(envelope(refused.clone()).is_none(), "{refused}");
        }
        assert!(vector_of(&vector_bytes(&[0.6, 0.8]), 2).is_some());
        assert!(
            vector_of(&vector_bytes(&[1000.0, 0.0]), 2).is_none(),
            "not a unit vector"
        );
        assert!(vector_of(&vector_bytes(&[f32::NAN, 0.0]), 2).is_none());
        assert!(vector_of(&vector_bytes(&[1.0]), 2).is_none());
    }
}
