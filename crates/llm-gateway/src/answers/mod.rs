//! Where kept answers live: each replica's own memory ([`LocalAnswers`], the exact and semantic caches) and,
//! when replicas should share them, Redis ([`redis_store::RedisAnswers`]). Both are [`AnswerStore`]s and pass the
//! same conformance suite (`tests/answer_stores.rs`).
//!
//! The gateway always looks in its own memory first and then in the shared store, and keeps each answer in
//! both: a replica answers what it kept itself without a round trip, and what another replica kept with one.

pub mod redis_store;

use crate::cache::{ExactCache, Kept};
use crate::semantic::SemanticCache;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A store of kept answers. Reads that fail are misses and writes that fail are dropped (a cache never
/// fails a call); each implementation says why in its log.
#[async_trait]
pub trait AnswerStore: Send + Sync {
    /// The answer kept under an exact key and the deployment that gave it.
    async fn exact(&self, key: &[u8; 32]) -> Option<(Kept, String)>;
    /// Keeps an answer under an exact key for `ttl`.
    async fn keep_exact(&self, key: [u8; 32], kept: Kept, deployment: String, ttl: Duration);
    /// The closest answer in `partition` whose embedding is at least `threshold` similar to `vector` (a unit
    /// vector), with its deployment and the similarity.
    async fn similar(&self, partition: &[u8; 32], vector: &[f32], threshold: f32) -> Option<(Kept, String, f32)>;
    /// Keeps an answer under its request's unit embedding in `partition` for `ttl`.
    async fn keep_similar(
        &self,
        partition: [u8; 32],
        vector: Arc<[f32]>,
        kept: Kept,
        deployment: String,
        ttl: Duration,
    );
}

/// The replica's own memory: the exact and the semantic cache.
#[derive(Clone)]
pub struct LocalAnswers {
    /// Exact keys.
    pub exact: Arc<ExactCache>,
    /// Embeddings.
    pub semantic: Arc<SemanticCache>,
}

#[async_trait]
impl AnswerStore for LocalAnswers {
    async fn exact(&self, key: &[u8; 32]) -> Option<(Kept, String)> {
        self.exact.get(key)
    }

    async fn keep_exact(&self, key: [u8; 32], kept: Kept, deployment: String, ttl: Duration) {
        self.exact.put(key, kept, deployment, ttl);
    }

    async fn similar(&self, partition: &[u8; 32], vector: &[f32], threshold: f32) -> Option<(Kept, String, f32)> {
        self.semantic.get(partition, vector, threshold)
    }

    async fn keep_similar(
        &self,
        partition: [u8; 32],
        vector: Arc<[f32]>,
        kept: Kept,
        deployment: String,
        ttl: Duration,
    ) {
        self.semantic.put(partition, vector, kept, deployment, ttl);
    }
}

/// Where one answer is put once it is whole.
pub struct ToKeep {
    /// Its exact key.
    pub key: [u8; 32],
    /// Its request's semantic partition and unit embedding, when the model keeps answers by meaning.
    pub meaning: Option<([u8; 32], Arc<[f32]>)>,
    /// The deployment that gave it.
    pub deployment: String,
    /// How long it is kept.
    pub ttl: Duration,
}

/// Keeps whole answers: in the replica's own memory at once and, when replicas share answers, in the shared
/// store after. The one way both a whole answer (before it is given) and a finished stream (after its last
/// event) are kept.
#[derive(Clone)]
pub struct Keeper {
    /// The replica's own caches.
    pub local: LocalAnswers,
    /// The store shared with the other replicas.
    pub shared: Option<Arc<dyn AnswerStore>>,
}

impl Keeper {
    /// Puts `kept` in the replica's memory now and returns the write to the shared store, if there is one,
    /// for the caller to await or to leave running.
    pub fn keep(&self, to: ToKeep, kept: Kept) -> Option<impl Future<Output = ()> + Send + 'static> {
        let ToKeep {
            key,
            meaning,
            deployment,
            ttl,
        } = to;
        if let Some((partition, vector)) = &meaning {
            let local = &self.local.semantic;
            local.put(*partition, vector.clone(), kept.clone(), deployment.clone(), ttl);
        }
        self.local.exact.put(key, kept.clone(), deployment.clone(), ttl);
        let shared = self.shared.clone()?;
        Some(async move {
            if let Some((partition, vector)) = meaning {
                shared
                    .keep_similar(partition, vector, kept.clone(), deployment.clone(), ttl)
                    .await;
            }
            shared.keep_exact(key, kept, deployment, ttl).await;
        })
    }
}
