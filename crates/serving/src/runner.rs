//! The task that drives one model's [`BatchQueue`]: requests are admitted (or refused at once when the queue
//! is full), a batch is taken as soon as a worker slot is free and the queue says it is due, the batch's
//! requests are stacked into one call of the model on the blocking pool, and each request gets its own rows
//! back. Requests whose caller went away before their batch started are skipped.
//!
//! With the default wait of zero a request runs as soon as a slot is free, so batches form on their own
//! under load (requests that arrive while every slot is busy run together) without adding latency when idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loopline_model_runtime_api::tensor::{request_rows, split_rows, stack, stackable};
use loopline_model_runtime_api::{Model, PredictError, Tensor};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::batching::{BatchQueue, BatchingConfig, QueueFull};
use crate::metrics::Metrics;

/// Why a request got no prediction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The input does not fit the model.
    #[error("{0}")]
    Input(String),
    /// The queue is full; try again later (429).
    #[error("the model's queue is full ({queued} rows waiting, limit {limit}); retry later or add replicas")]
    Busy {
        /// Rows queued.
        queued: usize,
        /// Limit.
        limit: usize,
    },
    /// The model cannot answer now (503).
    #[error("{0}")]
    Unavailable(String),
    /// The model failed (500).
    #[error("{0}")]
    Internal(String),
    /// No answer within the request timeout (504); the request was abandoned and is skipped if still queued.
    #[error(
        "no prediction within the {0:?} request timeout; the request was abandoned (raise --timeout if the model is this slow)"
    )]
    Timeout(Duration),
}

impl From<PredictError> for InferError {
    fn from(error: PredictError) -> InferError {
        match error {
            PredictError::Input(message) => InferError::Input(message),
            PredictError::Unavailable(message) => InferError::Unavailable(message),
            PredictError::Internal(message) => InferError::Internal(message),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Tensor>, InferError>>;

struct Pending {
    inputs: Vec<Tensor>,
    reply: Reply,
    arrived: Instant,
}

struct Shared {
    queue: Mutex<BatchQueue<Pending>>,
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
    /// Model calls running now (batches and inline requests share the limit).
    slots: Arc<Semaphore>,
    /// Recent compute time per row in nanoseconds (an average over batches; `u64::MAX` until measured).
    nanos_per_row: AtomicU64,
    metrics: Arc<Metrics>,
    labels: (String, String),
    inline_budget_nanos: u64,
    timeout: Option<Duration>,
}

impl Shared {
    fn record_compute(&self, rows: usize, took: Duration) {
        let per_row = (took.as_nanos() as u64) / rows.max(1) as u64;
        let previous = self.nanos_per_row.load(Ordering::Relaxed);
        let next = if previous == u64::MAX {
            per_row
        } else {
            (previous * 7 + per_row) / 8
        };
        self.nanos_per_row.store(next, Ordering::Relaxed);
    }
}

/// One loaded model with its batching task.
pub struct ModelRunner {
    model: Arc<dyn Model>,
    shared: Arc<Shared>,
    name: String,
    version: String,
}

impl std::fmt::Debug for ModelRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRunner")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// How a runner batches and how many batches run at once.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Batching limits.
    pub batching: BatchingConfig,
    /// Batches running at once (blocking threads).
    pub concurrency: usize,
    /// Requests expected to compute within this run in the caller's task when a slot is free and nothing
    /// queues: handing a few microseconds of work to another thread costs more than the work. Zero turns it off.
    pub inline_budget: Duration,
    /// How long a caller waits for its prediction before it is answered 504 (as `mlflow models serve
    /// --timeout`); `None` waits as long as the model takes.
    pub timeout: Option<Duration>,
    /// Whether registry versions that need the Python worker are loaded (they run their own code).
    pub python_models: loopline_model_runtimes::PythonModels,
}

/// The most model calls one model may run at once (a deployment's `runtime.concurrency` is checked against
/// it; more threads than this only add contention).
pub const MAX_CONCURRENCY: usize = 1_024;
/// The longest request timeout and batch wait a deployment may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest batch a deployment may set, in rows.
pub const MAX_BATCH_ROWS: usize = 1 << 20;

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batching: BatchingConfig {
                max_batch_rows: 256,
                max_wait: Duration::ZERO,
                max_queued_rows: 16_384,
            },
            concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            inline_budget: Duration::from_micros(50),
            timeout: Some(Duration::from_secs(60)),
            python_models: loopline_model_runtimes::PythonModels::Refused,
        }
    }
}

impl ModelRunner {
    /// Starts the batching task for `model` (call inside a Tokio runtime).
    pub fn start(
        name: &str,
        version: &str,
        model: Arc<dyn Model>,
        config: RunnerConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<ModelRunner> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(BatchQueue::new(config.batching)),
            wake: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(config.concurrency.clamp(1, MAX_CONCURRENCY))),
            nanos_per_row: AtomicU64::new(u64::MAX),
            metrics,
            labels: (name.to_string(), version.to_string()),
            inline_budget_nanos: config.inline_budget.as_nanos() as u64,
            timeout: config.timeout,
        });
        model.limit_call_time(config.timeout);
        let runner = Arc::new(ModelRunner {
            model: model.clone(),
            shared: shared.clone(),
            name: name.to_string(),
            version: version.to_string(),
        });
        tokio::spawn(drive(shared, model));
        runner
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// The version it serves.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Rows waiting.
    pub fn queued_rows(&self) -> usize {
        self.lock().queued_rows()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BatchQueue<Pending>> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Predicts one request (its rows may share a batch with others).
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let rows = request_rows(&inputs).map_err(InferError::Input)?;
        if rows == 0 {
            return Err(InferError::Input("the request has no rows".to_string()));
        }
        if let Some(answer) = self.try_inline(&inputs, rows) {
            return answer;
        }
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        let offered = self.lock().offer(
            Pending {
                inputs,
                reply,
                arrived: now,
            },
            rows,
            now,
        );
        if let Err((_, QueueFull { queued_rows, limit })) = offered {
            return Err(InferError::Busy {
                queued: queued_rows,
                limit,
            });
        }
        self.shared.wake.notify_one();
        let answer = match self.shared.timeout {
            // Dropping the receiver marks the request abandoned: a batch not yet taken skips it.
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(answer) => answer,
                Err(_) => return Err(InferError::Timeout(limit)),
            },
            None => answer.await,
        };
        answer.unwrap_or_else(|_| Err(InferError::Unavailable("the model was unloaded".to_string())))
    }

    /// Runs a cheap request at once in the caller's task, when its expected compute time is within the inline
    /// budget, nothing waits in the queue, and a slot is free.
    fn try_inline(&self, inputs: &[Tensor], rows: usize) -> Option<Result<Vec<Tensor>, InferError>> {
        let per_row = self.shared.nanos_per_row.load(Ordering::Relaxed);
        if per_row == u64::MAX || per_row.saturating_mul(rows as u64) >= self.shared.inline_budget_nanos {
            return None;
        }
        let permit = self.shared.slots.clone().try_acquire_owned().ok()?;
        if !self.lock().is_empty() {
            return None;
        }
        let started = Instant::now();
        let result = predict_guarded(self.model.as_ref(), inputs);
        let took = started.elapsed();
        drop(permit);
        self.shared.record_compute(rows, took);
        let (model, version) = &self.shared.labels;
        self.shared.metrics.batch(model, version, rows, &[Duration::ZERO], took);
        Some(result.map_err(InferError::from))
    }

    /// Stops the batching task once the queue is empty.
    pub fn stop(&self) {
        self.shared.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

impl Drop for ModelRunner {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn drive(shared: Arc<Shared>, model: Arc<dyn Model>) {
    loop {
        // Wait until a batch is due, holding no slot meanwhile so idle time leaves every slot to inline requests.
        loop {
            let notified = shared.wake.notified();
            let deadline = {
                let queue = shared.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if queue.is_due(Instant::now()) {
                    break;
                }
                queue.deadline()
            };
            if shared.closed.load(std::sync::atomic::Ordering::SeqCst) && deadline.is_none() {
                return;
            }
            match deadline {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), notified).await;
                }
                None => notified.await,
            }
        }
        let Ok(permit) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        // Requests that arrived while every slot was busy join this batch.
        let batch = shared
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_batch(|pending| pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let model = model.clone();
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || run_batch(model.as_ref(), batch, &shared, permit));
    }
}

/// Calls the model, turning a panic into an error for this request alone. A panic is a bug (inputs are
/// checked before they reach a model), but it must cost one 500, not the batch's other callers their answers
/// nor the process.
fn predict_guarded(model: &dyn Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.predict(inputs))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        tracing::error!(panic = %message, "a model panicked while predicting; this is a bug in loopline");
        Err(PredictError::Internal(format!(
            "the model's evaluator failed unexpectedly ({message}); this is a bug in loopline, please report it"
        )))
    })
}

/// Gives each request of a stacked batch its rows of the outputs, once the outputs are checked to hold one
/// row per input row (a model that answers with fewer rows fails the batch instead of panicking).
fn split_batch_outputs(outputs: &[Tensor], rows: &[usize]) -> Result<Vec<Vec<Tensor>>, PredictError> {
    let total_rows: usize = rows.iter().sum();
    for output in outputs {
        let consistent = output.rows() == total_rows
            && loopline_model_runtime_api::tensor::element_count(&output.shape) == Some(output.data.len());
        if !consistent {
            return Err(PredictError::Internal(format!(
                "the model answered {total_rows} input rows with output '{}' of shape {:?}",
                output.name, output.shape
            )));
        }
    }
    Ok(split_rows(outputs, rows))
}

/// Runs requests in groups of consecutive stackable ones, then frees the slot and replies to each (so a caller
/// holding its answer can count on the slot being free again).
fn run_batch(model: &dyn Model, batch: Vec<(Pending, usize)>, shared: &Shared, slot: OwnedSemaphorePermit) {
    let started = Instant::now();
    let mut groups: Vec<Vec<(Pending, usize)>> = Vec::new();
    for item in batch {
        match groups.last_mut() {
            Some(group) if stackable(&group[0].0.inputs, &item.0.inputs) => group.push(item),
            _ => groups.push(vec![item]),
        }
    }
    let mut answers: Vec<(Reply, Result<Vec<Tensor>, InferError>)> = Vec::new();
    for group in groups {
        let queued: Vec<Duration> = group.iter().map(|(p, _)| started.duration_since(p.arrived)).collect();
        let rows: Vec<usize> = group.iter().map(|(_, rows)| *rows).collect();
        let compute_start = Instant::now();
        let outcome = if group.len() == 1 {
            predict_guarded(model, &group[0].0.inputs).map(|outputs| vec![outputs])
        } else {
            let parts: Vec<&[Tensor]> = group.iter().map(|(p, _)| p.inputs.as_slice()).collect();
            predict_guarded(model, &stack(&parts)).and_then(|outputs| split_batch_outputs(&outputs, &rows))
        };
        let took = compute_start.elapsed();
        let (model_name, version) = &shared.labels;
        shared
            .metrics
            .batch(model_name, version, rows.iter().sum(), &queued, took);
        if outcome.is_ok() {
            shared.record_compute(rows.iter().sum(), took);
        }
        match outcome {
            Ok(per_request) => {
                for ((pending, _), outputs) in group.into_iter().zip(per_request) {
                    answers.push((pending.reply, Ok(outputs)));
                }
            }
            Err(PredictError::Input(_)) if group.len() > 1 => {
                // One request spoiled the batch: run each alone so only that one fails.
                for (pending, _) in group {
                    let result = predict_guarded(model, &pending.inputs).map_err(InferError::from);
                    answers.push((pending.reply, result));
                }
            }
            Err(error) => {
                let error = InferError::from(error);
                for (pending, _) in group {
                    answers.push((pending.reply, Err(error.clone())));
                }
            }
        }
    }
    drop(slot);
    for (reply, answer) in answers {
        let _ = reply.send(answer);
    }
}
