//! The server's local sentence-embedding model (`--embeddings-model`), answering the gateway's local
//! provider. Texts from concurrent requests are batched as serving batches rows: a request's texts queue in
//! a [`BatchQueue`] in pieces of at most one batch; a batch runs when it holds `MAX_BATCH_TEXTS` texts or its
//! oldest piece has waited `MAX_WAIT`; one batch runs at a time on every core; a full queue refuses at once
//! (429, "try again"); the pieces of a request whose caller went away are dropped unrun.

use async_trait::async_trait;
use base64::Engine;
use loopline_embeddings::{Embedded, SentenceEncoder};
use loopline_llm_gateway::provider::{Failure, FailureKind};
use loopline_serving::batching::{BatchQueue, BatchingConfig};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// Texts per batch.
const MAX_BATCH_TEXTS: usize = 64;
/// Longest a request waits for others to join its batch.
const MAX_WAIT: Duration = Duration::from_millis(2);
/// Texts queued at once before requests are refused.
const MAX_QUEUED_TEXTS: usize = 8192;
/// Texts in one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

struct Pending {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embedded, String>>,
}

struct Shared {
    queue: Mutex<BatchQueue<Pending>>,
    wake: Notify,
}

/// The loaded model and its batching queue.
pub struct LocalEmbeddings {
    encoder: Arc<SentenceEncoder>,
    shared: Arc<Shared>,
}

/// The Python interpreters asked, in order, where a packaged model is: `LOOPLINE_PYTHON`, the active virtual
/// environment's, the project's `.venv`, then `python3`.
pub fn pythons() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(python) = std::env::var_os("LOOPLINE_PYTHON") {
        found.push(PathBuf::from(python));
    }
    let environments = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(".venv")]);
    found.extend(
        environments
            .map(|environment| environment.join("bin/python"))
            .filter(|python| python.exists()),
    );
    found.push(PathBuf::from("python3"));
    found
}

impl LocalEmbeddings {
    /// Loads the model `spec` names (a directory, or a model a Python package ships) and starts its batcher.
    pub async fn load(spec: &str) -> anyhow::Result<Arc<LocalEmbeddings>> {
        let spec = spec.to_string();
        let encoder = tokio::task::spawn_blocking(move || {
            let directory = loopline_embeddings::locate::model_directory(&spec, &pythons())?;
            SentenceEncoder::load(&directory, &loopline_embeddings::locate::served_name(&spec))
        })
        .await?
        .map_err(|error| anyhow::anyhow!("--embeddings-model: {error}"))?;
        tracing::info!(
            model = encoder.name(),
            dimensions = encoder.dimensions(),
            max_tokens = encoder.max_length(),
            "the local embedding model is served at /v1/embeddings"
        );
        let config = BatchingConfig {
            max_batch_rows: MAX_BATCH_TEXTS,
            max_wait: MAX_WAIT,
            max_queued_rows: MAX_QUEUED_TEXTS,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(BatchQueue::new(config)),
            wake: Notify::new(),
        });
        let encoder = Arc::new(encoder);
        tokio::spawn(drive(encoder.clone(), shared.clone()));
        Ok(Arc::new(LocalEmbeddings { encoder, shared }))
    }

    /// The name the model is served under.
    pub fn name(&self) -> &str {
        self.encoder.name()
    }

    /// Embeds `texts` in the next batches. A request is queued as pieces of at most one batch, so a large one
    /// shares the model with others between its pieces, and the pieces not yet run are dropped when its
    /// caller goes away.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embedded, Failure> {
        let mut answers = Vec::new();
        {
            let mut queue = self.shared.queue.lock().expect("embedding queue");
            // Admitted whole or not at all.
            if !queue.is_empty() && queue.queued_rows() + texts.len() > MAX_QUEUED_TEXTS {
                return Err(Failure {
                    kind: FailureKind::Retryable,
                    status: Some(429),
                    retry_after: Some(Duration::from_secs(1)),
                    param: None,
                    message: format!(
                        "the local embedding model is busy ({} texts queued, the limit is {MAX_QUEUED_TEXTS}); try \
                         again shortly",
                        queue.queued_rows()
                    ),
                });
            }
            let now = Instant::now();
            let mut texts = texts.into_iter().peekable();
            while texts.peek().is_some() {
                let piece: Vec<String> = texts.by_ref().take(MAX_BATCH_TEXTS).collect();
                let (reply, answer) = oneshot::channel();
                let count = piece.len();
                if queue.offer(Pending { texts: piece, reply }, count, now).is_err() {
                    return Err(stopped());
                }
                answers.push(answer);
            }
        }
        self.shared.wake.notify_one();
        let mut whole = Embedded {
            vectors: Vec::new(),
            tokens: Vec::new(),
        };
        for answer in answers {
            match answer.await {
                Ok(Ok(part)) => {
                    whole.vectors.extend(part.vectors);
                    whole.tokens.extend(part.tokens);
                }
                Ok(Err(message)) => return Err(caller("input", message)),
                Err(_) => return Err(stopped()),
            }
        }
        Ok(whole)
    }
}

fn stopped() -> Failure {
    Failure {
        kind: FailureKind::Retryable,
        status: None,
        retry_after: None,
        param: None,
        message: "the local embedding model stopped before answering".into(),
    }
}

/// A mistake in the request's field `param`.
fn caller(param: &str, message: String) -> Failure {
    Failure {
        kind: FailureKind::Caller,
        status: Some(400),
        retry_after: None,
        param: Some(param.to_string()),
        message,
    }
}

/// Runs batches as they come due, one at a time, on every core.
async fn drive(encoder: Arc<SentenceEncoder>, shared: Arc<Shared>) {
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    loop {
        let notified = shared.wake.notified();
        let deadline = {
            let queue = shared.queue.lock().expect("embedding queue");
            if queue.is_due(Instant::now()) {
                None
            } else {
                Some(queue.deadline())
            }
        };
        match deadline {
            Some(Some(deadline)) => {
                let _ = tokio::time::timeout_at(deadline.into(), notified).await;
                continue;
            }
            Some(None) => {
                notified.await;
                continue;
            }
            None => {}
        }
        let batch = shared
            .queue
            .lock()
            .expect("embedding queue")
            .take_batch(|pending| pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let texts: Vec<String> = batch
            .iter()
            .flat_map(|(pending, _)| pending.texts.iter().cloned())
            .collect();
        let model = encoder.clone();
        let result = tokio::task::spawn_blocking(move || {
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&borrowed, threads)
        })
        .await;
        let mut embedded = match result {
            Ok(Ok(embedded)) => embedded,
            Ok(Err(error)) => {
                batch.into_iter().for_each(|(pending, _)| {
                    let _ = pending.reply.send(Err(error.to_string()));
                });
                continue;
            }
            Err(panic) => {
                tracing::error!(error = %panic, "the local embedding model failed on a batch");
                continue;
            }
        };
        // Hand each request its own rows, in order.
        for (pending, count) in batch.into_iter().rev() {
            let start = embedded.vectors.len() - count;
            let part = Embedded {
                vectors: embedded.vectors.split_off(start),
                tokens: embedded.tokens.split_off(start),
            };
            let _ = pending.reply.send(Ok(part));
        }
    }
}

/// The texts of an OpenAI embeddings request's `input`.
fn texts_of(request: &Map<String, Value>) -> Result<Vec<String>, Failure> {
    let texts: Vec<String> = match request.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(caller(
                    "input",
                    format!(
                        "input[{index}]: the local model takes text; token ids (or anything else) are not accepted"
                    ),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(caller(
                "input",
                "'input' must be a string or a non-empty array of strings.".into(),
            ));
        }
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(caller(
            "input",
            format!("'input' holds {} texts; send between 1 and {MAX_INPUTS}", texts.len()),
        ));
    }
    Ok(texts)
}

#[async_trait]
impl loopline_llm_gateway::local::LocalModels for LocalEmbeddings {
    async fn embeddings(&self, request: &Map<String, Value>) -> Result<Value, Failure> {
        let texts = texts_of(request)?;
        let base64 = match request.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(format)) if format == "float" => false,
            Some(Value::String(format)) if format == "base64" => true,
            Some(other) => {
                return Err(caller(
                    "encoding_format",
                    format!("encoding_format: {other} is neither \"float\" nor \"base64\""),
                ));
            }
        };
        let dimensions = self.encoder.dimensions();
        match request.get("dimensions") {
            None | Some(Value::Null) => {}
            Some(Value::Number(asked)) if asked.as_u64() == Some(dimensions as u64) => {}
            Some(other) => {
                return Err(caller(
                    "dimensions",
                    format!(
                        "dimensions: {} gives {dimensions}-dimensional vectors and cannot give {other}",
                        self.encoder.name()
                    ),
                ));
            }
        }
        let embedded = self.embed(texts).await?;
        let tokens: usize = embedded.tokens.iter().sum();
        let data: Vec<Value> = embedded
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|value| value.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": self.encoder.name(),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
    }
}
