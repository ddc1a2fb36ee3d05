//! The prediction log: a sampled record of requests (inputs, outputs, model version, request id, time) and
//! of ground-truth feedback, written in the background as Parquet files in the artifact store:
//!
//! ```text
//! predictions/model=<name>/hour=<YYYY-MM-DDTHH>/part-<written-ms>-<uuid>.parquet
//! feedback/hour=<YYYY-MM-DDTHH>/part-<written-ms>-<uuid>.parquet
//! ```
//!
//! The request path only offers an entry to a bounded channel (`try_send`): when the writer falls behind,
//! entries are dropped and counted rather than slowing requests. A writer task buffers rows per
//! (model, version, hour, column layout) and writes a file when a buffer reaches `flush_rows`, every
//! `flush_interval`, and on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use loopline_artifact_store::{ArtifactPath, ArtifactStore};
use loopline_model_runtime_api::Tensor;
use loopline_model_runtime_api::tensor::batch_from_tensors;
use tokio::sync::{mpsc, oneshot};

/// Prediction log settings.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Share of requests recorded, 0 to 1.
    pub sample_rate: f64,
    /// Rows buffered per file before it is written.
    pub flush_rows: usize,
    /// Longest a row waits before its file is written.
    pub flush_interval: Duration,
    /// Entries that may wait for the writer; beyond it entries are dropped.
    pub queue: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            sample_rate: 1.0,
            flush_rows: 10_000,
            flush_interval: Duration::from_secs(60),
            queue: 4096,
        }
    }
}

/// One answered request.
pub struct Logged {
    /// Its id (the caller's, or generated).
    pub request_id: String,
    /// Model name.
    pub model: String,
    /// Version that answered.
    pub version: String,
    /// When it arrived, ms since the epoch.
    pub timestamp_ms: i64,
    /// Inputs as the model received them.
    pub inputs: Vec<Tensor>,
    /// Outputs.
    pub outputs: Vec<Tensor>,
    /// A shadow version's answer (compared, never returned to the caller).
    pub shadow: bool,
    /// Time from arrival to the answer, in milliseconds.
    pub latency_ms: f64,
}

/// A request the model failed to answer.
#[derive(Debug, Clone)]
pub struct Failed {
    /// Its id.
    pub request_id: String,
    /// Model name.
    pub model: String,
    /// Version that was asked.
    pub version: String,
    /// When it arrived, ms since the epoch.
    pub timestamp_ms: i64,
    /// `bad_input`, `rejected` (busy), `unavailable`, `timeout` or `internal`.
    pub kind: &'static str,
    /// Time until it failed, in milliseconds.
    pub latency_ms: f64,
}

/// A ground-truth label for a request.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// The request it is for.
    pub request_id: String,
    /// The label, as JSON text.
    pub label: String,
    /// When it was received, ms since the epoch.
    pub timestamp_ms: i64,
}

enum Message {
    Prediction(Box<Logged>),
    Failure(Failed),
    Feedback(Vec<Feedback>),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The handle requests use.
pub struct PredictionLog {
    config: LogConfig,
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog").field("config", &self.config).finish()
    }
}

impl PredictionLog {
    /// Starts the writer task (inside a Tokio runtime) writing into `store`.
    pub fn start(config: LogConfig, store: Arc<dyn ArtifactStore>) -> Arc<PredictionLog> {
        let (sender, receiver) = mpsc::channel(config.queue.max(1));
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(config, store, receiver, written.clone()));
        Arc::new(PredictionLog {
            config,
            sender,
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Whether this request is recorded (the sampling decision).
    pub fn sampled(&self) -> bool {
        self.config.sample_rate >= 1.0
            || (self.config.sample_rate > 0.0 && rand::random::<f64>() < self.config.sample_rate)
    }

    /// Offers a request to the log without waiting; dropped (and counted) when the writer is behind.
    pub fn record(&self, entry: Logged) {
        if self.sender.try_send(Message::Prediction(Box::new(entry))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Offers a failed request to the log without waiting (dropped and counted when the writer is behind).
    pub fn record_failure(&self, entry: Failed) {
        if self.sender.try_send(Message::Failure(entry)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues feedback; waits for room, as feedback is never sampled away.
    pub async fn feedback(&self, entries: Vec<Feedback>) -> Result<(), String> {
        self.sender
            .send(Message::Feedback(entries))
            .await
            .map_err(|_| "the prediction log has stopped".to_string())
    }

    /// Writes every buffered row now.
    pub async fn flush(&self) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(Message::Flush(reply))
            .await
            .map_err(|_| "the prediction log has stopped".to_string())?;
        done.await.map_err(|_| "the prediction log has stopped".to_string())?
    }

    /// Entries dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Rows written to files so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// Rows waiting for one file.
struct Buffer {
    directory: String,
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// Buffers by directory, one per column layout (a buffer always holds at least one batch).
type Buffers = HashMap<String, Vec<Buffer>>;

fn prediction_rows(entry: &Logged) -> Result<RecordBatch, String> {
    let rows = entry.outputs.first().map(Tensor::rows).unwrap_or(0);
    let prefixed = |tensors: &[Tensor], prefix: &str| -> Vec<Tensor> {
        tensors
            .iter()
            .map(|t| Tensor {
                name: format!("{prefix}{}", t.name),
                ..t.clone()
            })
            .collect()
    };
    let mut tensors = prefixed(&entry.inputs, "input.");
    tensors.extend(prefixed(&entry.outputs, "output."));
    let values = batch_from_tensors(&tensors)?;
    let mut columns: Vec<(String, ArrayRef)> = vec![
        (
            "request_id".to_string(),
            Arc::new(StringArray::from(vec![entry.request_id.as_str(); rows])),
        ),
        (
            crate::log_reader::REQUEST_KEY.to_string(),
            Arc::new(arrow_array::UInt64Array::from(vec![
                crate::log_reader::request_hash(
                    &entry.request_id
                );
                rows
            ])),
        ),
        (
            "timestamp".to_string(),
            Arc::new(TimestampMillisecondArray::from(vec![entry.timestamp_ms; rows]).with_timezone("UTC")),
        ),
        (
            "model_version".to_string(),
            Arc::new(StringArray::from(vec![entry.version.as_str(); rows])),
        ),
        (
            "role".to_string(),
            Arc::new(StringArray::from(vec![
                if entry.shadow { "shadow" } else { "served" };
                rows
            ])),
        ),
        (
            "row".to_string(),
            Arc::new(arrow_array::Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
        ),
    ];
    columns.push((
        "latency_ms".to_string(),
        Arc::new(arrow_array::Float64Array::from(vec![entry.latency_ms; rows])),
    ));
    for (field, column) in values.schema().fields().iter().zip(values.columns()) {
        columns.push((field.name().clone(), column.clone()));
    }
    RecordBatch::try_from_iter(columns).map_err(|e| e.to_string())
}

fn failure_rows(entry: &Failed) -> Result<RecordBatch, String> {
    RecordBatch::try_from_iter([
        (
            "request_id",
            Arc::new(StringArray::from(vec![entry.request_id.as_str()])) as ArrayRef,
        ),
        (
            "timestamp",
            Arc::new(TimestampMillisecondArray::from(vec![entry.timestamp_ms]).with_timezone("UTC")),
        ),
        (
            "model_version",
            Arc::new(StringArray::from(vec![entry.version.as_str()])),
        ),
        ("kind", Arc::new(StringArray::from(vec![entry.kind]))),
        (
            "latency_ms",
            Arc::new(arrow_array::Float64Array::from(vec![entry.latency_ms])),
        ),
    ])
    .map_err(|e| e.to_string())
}

fn feedback_rows(entries: &[Feedback]) -> Result<RecordBatch, String> {
    RecordBatch::try_from_iter([
        (
            "request_id",
            Arc::new(StringArray::from_iter_values(
                entries.iter().map(|f| f.request_id.as_str()),
            )) as ArrayRef,
        ),
        (
            "timestamp",
            Arc::new(
                TimestampMillisecondArray::from_iter_values(entries.iter().map(|f| f.timestamp_ms))
                    .with_timezone("UTC"),
            ),
        ),
        (
            "label",
            Arc::new(StringArray::from_iter_values(entries.iter().map(|f| f.label.as_str()))),
        ),
    ])
    .map_err(|e| e.to_string())
}

/// The time a file is written, ms since the epoch, strictly increasing within this process (so two files
/// written in one millisecond still sort in the order they were written).
fn increasing_write_time() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = loopline_core::time::now_millis().max(0);
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
        .unwrap_or(now);
    now.max(previous + 1)
}

/// Most buffered batches joined into one before it is written.
const JOINED_BATCHES: usize = 4_096;

async fn write_file(store: &dyn ArtifactStore, buffer: Buffer) -> Result<u64, String> {
    let schema = buffer.batches[0].schema();
    let mut bytes = Vec::new();
    {
        let properties = crate::log_encoding::writer_properties(&buffer.batches);
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties))
            .map_err(|e| e.to_string())?;
        // Each prediction arrives as a batch of its own; handed over one by one, the writer paid its per-batch
        // work (levels, statistics, encoders) for every row, a sixth of a fast model's prediction. Joined
        // into batches of many rows, that work is paid once per batch.
        for chunk in buffer.batches.chunks(JOINED_BATCHES) {
            match arrow_select::concat::concat_batches(&schema, chunk) {
                Ok(joined) => writer.write(&joined).map_err(|e| e.to_string())?,
                // Only a real failure to join (string offsets past 2 GiB in one chunk) ends here: each batch
                // then goes alone.
                Err(_) => {
                    for batch in chunk {
                        writer.write(batch).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        writer.close().map_err(|e| e.to_string())?;
    }
    // The write time leads the name so that names sort in the order files were written (count windows read
    // the log in that order).
    let name = format!(
        "{}/part-{:013}-{}.parquet",
        buffer.directory,
        increasing_write_time(),
        uuid::Uuid::new_v4().simple()
    );
    let path = ArtifactPath::parse(&name).map_err(|e| e.to_string())?;
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) });
    store
        .put(&path, Box::pin(body))
        .await
        .map_err(|e| format!("cannot write {name}: {e}"))?;
    Ok(buffer.rows as u64)
}

async fn write_loop(
    config: LogConfig,
    store: Arc<dyn ArtifactStore>,
    mut receiver: mpsc::Receiver<Message>,
    written: Arc<AtomicU64>,
) {
    let mut buffers: Buffers = HashMap::new();
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            _ = ticker.tick() => {
                flush_all(store.as_ref(), &mut buffers, &written).await.ok();
                continue;
            }
        };
        let Some(message) = message else {
            let _ = flush_all(store.as_ref(), &mut buffers, &written).await;
            return;
        };
        let (directory, batch) = match message {
            Message::Flush(reply) => {
                let _ = reply.send(flush_all(store.as_ref(), &mut buffers, &written).await);
                continue;
            }
            Message::Prediction(entry) => {
                let directory = format!(
                    "predictions/model={}/hour={}",
                    crate::log_reader::model_segment(&entry.model),
                    loopline_core::time::utc_hour(entry.timestamp_ms)
                );
                (directory, prediction_rows(&entry))
            }
            Message::Failure(entry) => {
                let directory = format!(
                    "failures/model={}/hour={}",
                    crate::log_reader::model_segment(&entry.model),
                    loopline_core::time::utc_hour(entry.timestamp_ms)
                );
                (directory, failure_rows(&entry))
            }
            Message::Feedback(entries) => {
                let hour = loopline_core::time::utc_hour(entries.first().map(|f| f.timestamp_ms).unwrap_or_default());
                (format!("feedback/hour={hour}"), feedback_rows(&entries))
            }
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "a prediction log entry could not be laid out; skipped");
                continue;
            }
        };
        // One buffer per directory and column layout, so every file has one schema. Layouts are compared
        // field by field (writing them out as text to key a map cost more than the row itself).
        if !buffers.contains_key(&directory) {
            buffers.insert(directory.clone(), Vec::new());
        }
        let layouts = buffers.get_mut(&directory).expect("inserted above");
        let index = match layouts
            .iter()
            .position(|buffer| buffer.batches[0].schema().fields() == batch.schema().fields())
        {
            Some(index) => index,
            None => {
                layouts.push(Buffer {
                    directory,
                    batches: Vec::new(),
                    rows: 0,
                });
                layouts.len() - 1
            }
        };
        let buffer = &mut layouts[index];
        buffer.rows += batch.num_rows();
        buffer.batches.push(batch);
        if buffer.rows >= config.flush_rows {
            let full = layouts.swap_remove(index);
            if layouts.is_empty() {
                buffers.remove(&full.directory);
            }
            match write_file(store.as_ref(), full).await {
                Ok(rows) => {
                    written.fetch_add(rows, Ordering::Relaxed);
                }
                Err(error) => tracing::error!(%error, "prediction log file not written"),
            }
        }
    }
}

async fn flush_all(store: &dyn ArtifactStore, buffers: &mut Buffers, written: &AtomicU64) -> Result<(), String> {
    let mut first_error = None;
    for buffer in buffers.drain().flat_map(|(_, layouts)| layouts) {
        match write_file(store, buffer).await {
            Ok(rows) => {
                written.fetch_add(rows, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(%error, "prediction log file not written");
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
