//! Answers kept in Redis, shared by every replica of the gateway.
//!
//! Layout, under the `loopline:gateway:` prefix:
//! - `exact:<key>`: one exact answer (its JSON envelope, below), expiring with its TTL;
//! - `similar:<partition>`: a sorted set of the partition's entry ids, scored by when they expire (ms since
//!   the epoch), at most [`MAX_PER_PARTITION`] (the latest to expire are kept);
//! - `similar:<partition>:v:<id>`: the entry's unit embedding (little-endian f32s), and
//!   `similar:<partition>:a:<id>`: its answer envelope, both expiring with its TTL.
//!
//! A semantic lookup reads the partition's ids, then their vectors in one MGET, compares them here, and reads
//! only the best entry's answer. Every command has a deadline: a slow or absent Redis makes misses (and a
//! warning at most every ten seconds), never a failed or held call. The URL, which may hold a password, is
//! never logged.

use super::AnswerStore;
use crate::cache::Kept;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, RedisResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries kept per semantic partition in Redis (each lookup reads all their vectors).
pub const MAX_PER_PARTITION: isize = 256;

/// How long one Redis command may take before it counts as a miss.
const DEADLINE: Duration = Duration::from_millis(250);

const PREFIX: &str = "loopline:gateway:";

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

    fn kept(self) -> Option<(Kept, String)> {
        let kept = match (self.json, self.stream) {
            (Some(text), None) => Kept::Json(text.into()),
            (None, Some(events)) if events.last().is_some_and(|last| last.trim() == "[DONE]") => {
                Kept::Stream(events.into())
            }
            _ => return None,
        };
        Some((kept, self.deployment))
    }
}

/// The shared store.
pub struct RedisAnswers {
    connection: ConnectionManager,
    /// The largest answer kept, in bytes (as in memory: a tenth of the cache's byte bound).
    max_entry_bytes: usize,
    /// When the last warning was logged, seconds since the epoch.
    warned_at: AtomicU64,
}

impl RedisAnswers {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` with TLS
    /// off in this build); fails when it cannot be reached, naming the host but never the password.
    pub async fn connect(url: &str, max_entry_bytes: usize) -> Result<RedisAnswers, String> {
        let client = Client::open(url).map_err(|error| format!("the Redis URL is not valid: {}", error.kind_text()))?;
        let place = client.get_connection_info().addr.to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(DEADLINE)
            .set_number_of_retries(2)
            .set_max_delay(1_000);
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| format!("Redis at {place} did not answer within 10 s"))?
        .map_err(|error| format!("cannot reach Redis at {place}: {}", error.kind_text()))?;
        Ok(RedisAnswers {
            connection,
            max_entry_bytes,
            warned_at: AtomicU64::new(0),
        })
    }

    /// Runs one exchange with its deadline; a failure is logged (at most every ten seconds) and is `None`.
    async fn run<T, F>(&self, what: &str, exchange: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(DEADLINE * 2, exchange(self.connection.clone())).await;
        let problem = match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.kind_text(),
            Err(_) => "no answer in time".to_string(),
        };
        let now = now_ms() / 1000;
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%problem, "the shared gateway cache in Redis failed to {what}: answered as a miss");
        }
        None
    }
}

/// What a Redis error was, without anything it may quote of the URL.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for ::redis::RedisError {
    fn kind_text(&self) -> String {
        match self.detail() {
            Some(detail) => format!("{:?}: {detail}", self.kind()),
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

fn vector_of(bytes: &[u8], dimensions: usize) -> Option<Vec<f32>> {
    (bytes.len() == dimensions * 4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

impl RedisAnswers {
    fn envelope_bytes(&self, kept: &Kept, deployment: &str) -> Option<Vec<u8>> {
        if kept.size() > self.max_entry_bytes {
            return None;
        }
        serde_json::to_vec(&Envelope::of(kept, deployment)).ok()
    }

    fn answer_of(&self, bytes: Option<Vec<u8>>) -> Option<(Kept, String)> {
        // What another writer stored is read back only within the bound this one keeps.
        let bytes = bytes.filter(|bytes| bytes.len() <= self.max_entry_bytes.saturating_mul(2) + 4096)?;
        serde_json::from_slice::<Envelope>(&bytes).ok()?.kept()
    }
}

#[async_trait]
impl AnswerStore for RedisAnswers {
    async fn exact(&self, key: &[u8; 32]) -> Option<(Kept, String)> {
        let name = format!("{PREFIX}exact:{}", hex(key));
        let bytes: Option<Vec<u8>> = self
            .run(
                "read an answer",
                |mut connection| async move { connection.get(name).await },
            )
            .await?;
        self.answer_of(bytes)
    }

    async fn keep_exact(&self, key: [u8; 32], kept: Kept, deployment: String, ttl: Duration) {
        let (Some(ms), Some(bytes)) = (ttl_ms(ttl), self.envelope_bytes(&kept, &deployment)) else {
            return;
        };
        let name = format!("{PREFIX}exact:{}", hex(&key));
        let _: Option<()> = self
            .run("keep an answer", |mut connection| async move {
                connection.pset_ex(name, bytes, ms).await
            })
            .await;
    }

    async fn similar(&self, partition: &[u8; 32], vector: &[f32], threshold: f32) -> Option<(Kept, String, f32)> {
        let index = format!("{PREFIX}similar:{}", hex(partition));
        let now = now_ms();
        let ids: Vec<String> = {
            let index = index.clone();
            self.run("read a partition", |mut connection| async move {
                connection
                    .zrangebyscore_limit(index, now, "+inf", 0, MAX_PER_PARTITION)
                    .await
            })
            .await?
        };
        if ids.is_empty() {
            return None;
        }
        let names: Vec<String> = ids.iter().map(|id| format!("{index}:v:{id}")).collect();
        let vectors: Vec<Option<Vec<u8>>> = self
            .run("read embeddings", |mut connection| async move {
                ::redis::cmd("MGET").arg(names).query_async(&mut connection).await
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
        let name = format!("{index}:a:{best}");
        let bytes: Option<Vec<u8>> = self
            .run(
                "read an answer",
                |mut connection| async move { connection.get(name).await },
            )
            .await?;
        let (kept, deployment) = self.answer_of(bytes)?;
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
            // The latest to expire stay: rank 0 is the first to expire.
            .cmd("ZREMRANGEBYRANK")
            .arg(&index)
            .arg(0)
            .arg(-(MAX_PER_PARTITION + 1))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ms)
            .ignore();
        let _: Option<()> = self
            .run("keep an answer", |mut connection| async move {
                pipe.query_async(&mut connection).await
            })
            .await;
    }
}
