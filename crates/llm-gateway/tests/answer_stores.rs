//! One conformance suite for every store of kept answers: the replica's own memory always, and Redis when
//! `LOOPLINE_TEST_REDIS_URL` names one (scripts/test.sh starts one and sets it).

use loopline_llm_gateway::answers::redis_store::RedisAnswers;
use loopline_llm_gateway::answers::{AnswerStore, LocalAnswers};
use loopline_llm_gateway::cache::{ExactCache, Kept};
use loopline_llm_gateway::semantic::{SemanticCache, unit};
use std::sync::Arc;
use std::time::Duration;

const MAX_BYTES: usize = 1 << 20;

fn random_key() -> [u8; 32] {
    rand::random()
}

async fn exact_answers_round_trip(store: &dyn AnswerStore) {
    let (key, other) = (random_key(), random_key());
    assert!(store.exact(&key).await.is_none(), "nothing kept yet");
    store
        .keep_exact(
            key,
            Kept::Json("{\"a\": 1}".into()),
            "p/m".into(),
            Duration::from_secs(60),
        )
        .await;
    let (kept, deployment) = store.exact(&key).await.expect("kept");
    assert!(matches!(kept, Kept::Json(text) if &*text == "{\"a\": 1}"));
    assert_eq!(deployment, "p/m");
    assert!(store.exact(&other).await.is_none(), "another key is another entry");
    // Kept again: the newer answer.
    store
        .keep_exact(
            key,
            Kept::Json("{\"b\": 2}".into()),
            "p/n".into(),
            Duration::from_secs(60),
        )
        .await;
    let (kept, deployment) = store.exact(&key).await.expect("kept again");
    assert!(matches!(kept, Kept::Json(text) if &*text == "{\"b\": 2}"));
    assert_eq!(deployment, "p/n");
    // A stream comes back as the same events.
    let events: Vec<String> = vec!["{\"x\": 1}".into(), "{\"x\": 2}".into(), "[DONE]".into()];
    store
        .keep_exact(
            other,
            Kept::Stream(events.clone().into()),
            "p/m".into(),
            Duration::from_secs(60),
        )
        .await;
    let (kept, _) = store.exact(&other).await.expect("stream kept");
    assert!(matches!(kept, Kept::Stream(kept) if kept.to_vec() == events));
    // No time to live is not kept; neither is an answer past a tenth of the byte bound.
    let (gone, large) = (random_key(), random_key());
    store
        .keep_exact(gone, Kept::Json("x".into()), "p/m".into(), Duration::ZERO)
        .await;
    assert!(store.exact(&gone).await.is_none());
    let big = "y".repeat(MAX_BYTES / 10 + 1);
    store
        .keep_exact(large, Kept::Json(big.into()), "p/m".into(), Duration::from_secs(60))
        .await;
    assert!(store.exact(&large).await.is_none());
}

async fn similar_answers_are_found_above_the_threshold_in_their_partition(store: &dyn AnswerStore) {
    let partition = random_key();
    let near = unit(&[1.0, 0.0, 0.0]).unwrap();
    let far = unit(&[0.0, 1.0, 0.0]).unwrap();
    assert!(store.similar(&partition, &near, 0.5).await.is_none());
    store
        .keep_similar(
            partition,
            near.clone(),
            Kept::Json("{\"near\": true}".into()),
            "p/m".into(),
            Duration::from_secs(60),
        )
        .await;
    store
        .keep_similar(
            partition,
            far,
            Kept::Json("{\"far\": true}".into()),
            "p/m".into(),
            Duration::from_secs(60),
        )
        .await;
    let query = unit(&[0.9, 0.1, 0.0]).unwrap();
    let (kept, deployment, similarity) = store.similar(&partition, &query, 0.9).await.expect("near enough");
    assert!(matches!(kept, Kept::Json(text) if &*text == "{\"near\": true}"));
    assert_eq!(deployment, "p/m");
    assert!((similarity - 0.9939).abs() < 1e-3, "{similarity}");
    let between = unit(&[1.0, 1.0, 0.0]).unwrap();
    assert!(
        store.similar(&partition, &between, 0.9).await.is_none(),
        "below the threshold"
    );
    assert!(
        store.similar(&random_key(), &near, 0.5).await.is_none(),
        "another partition (model, caller) sees none of it"
    );
    let wider = unit(&[1.0, 0.0, 0.0, 0.0]).unwrap();
    assert!(
        store.similar(&partition, &wider, 0.0).await.is_none(),
        "an embedding of another size matches nothing"
    );
    let expired = random_key();
    store
        .keep_similar(
            expired,
            near.clone(),
            Kept::Json("x".into()),
            "p/m".into(),
            Duration::ZERO,
        )
        .await;
    assert!(store.similar(&expired, &near, 0.5).await.is_none());
}

async fn conformance(store: &dyn AnswerStore) {
    exact_answers_round_trip(store).await;
    similar_answers_are_found_above_the_threshold_in_their_partition(store).await;
}

#[tokio::test]
async fn the_replicas_own_memory_conforms() {
    let store = LocalAnswers {
        exact: Arc::new(ExactCache::new(1000, MAX_BYTES)),
        semantic: Arc::new(SemanticCache::new(1000, MAX_BYTES)),
    };
    conformance(&store).await;
}

#[tokio::test]
async fn redis_conforms_and_shares_between_connections() {
    let Ok(url) = std::env::var("LOOPLINE_TEST_REDIS_URL") else {
        eprintln!(
            "LOOPLINE_TEST_REDIS_URL is not set: the Redis answer store was not tested (scripts/test.sh sets it)"
        );
        return;
    };
    let store = RedisAnswers::connect(&url, MAX_BYTES / 10).await.unwrap();
    conformance(&store).await;
    // What one replica keeps, another finds.
    let other = RedisAnswers::connect(&url, MAX_BYTES / 10).await.unwrap();
    let key = random_key();
    store
        .keep_exact(
            key,
            Kept::Json("{\"shared\": true}".into()),
            "p/m".into(),
            Duration::from_secs(60),
        )
        .await;
    assert!(matches!(other.exact(&key).await, Some((Kept::Json(text), _)) if &*text == "{\"shared\": true}"));
}

#[tokio::test]
async fn an_unreachable_or_malformed_redis_url_is_refused_without_its_password() {
    let refused = RedisAnswers::connect("redis://:hunter2secret@127.0.0.1:1/0", 1024)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(refused.contains("127.0.0.1"), "{refused}");
    assert!(!refused.contains("hunter2secret"), "{refused}");
    let malformed = RedisAnswers::connect("http://:hunter2secret@example", 1024)
        .await
        .err()
        .expect("not a Redis URL");
    assert!(!malformed.contains("hunter2secret"), "{malformed}");
    let tls = RedisAnswers::connect("rediss://:hunter2secret@127.0.0.1:6380/0", 1024)
        .await
        .err()
        .expect("TLS is not built in");
    assert!(tls.contains("TLS") && tls.contains("rediss://"), "{tls}");
    assert!(!tls.contains("hunter2secret"), "{tls}");
}
