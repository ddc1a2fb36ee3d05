//! Every gateway call as an MLflow trace: one LLM span holding the request, the answer, token usage and how
//! the gateway served it (deployment, attempts, fallback, time to first token), stored as if it had come over
//! OTLP, in one experiment (created on first use), so `mlflow.search_traces` and the MLflow UI show them.
//! Written off the request path by one task behind a bounded queue: when the store falls behind, records are
//! dropped and counted, never waited for. The spans are built and written at the system's idle priority.

use crate::otlp::messages::{
    Any, AnyValue, ArrayValue, ExportTraceServiceRequest, KeyValue, KeyValueList, ResourceSpans, ScopeSpans, Span,
    Status,
};
use loopline_llm_gateway::Endpoint;
use loopline_llm_gateway::observe::{CallObserver, CallRecord};
use loopline_metadata_store::{Experiment, MetadataStore, SpanBatch, StoreError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Records waiting to be written.
const QUEUE: usize = 1024;
/// The most records written in one transaction. The background writer holds the database for the
/// transaction, and a request's write may wait behind it; sixteen traces take a few milliseconds.
const BATCH: usize = 16;
/// MLflow endpoints' experiments remembered (looked up again when more are in use).
const MAX_ENDPOINT_EXPERIMENTS: usize = 1024;

/// The trace writer the gateway tells of each call.
pub struct GatewayTraces {
    queue: mpsc::Sender<CallRecord>,
    dropped: Arc<AtomicU64>,
    /// Whether calls of the configuration file's models are traced (MLflow endpoints with usage tracking
    /// always are, in their own experiments).
    models: bool,
}

impl GatewayTraces {
    /// Starts the writer: traces go to the experiment named `experiment` in `store` (when `models`), or to
    /// the MLflow endpoint's experiment.
    pub fn start(
        store: Arc<dyn MetadataStore>,
        experiment: String,
        models: bool,
        retention: Duration,
    ) -> GatewayTraces {
        if !retention.is_zero() {
            tokio::spawn(sweep(store.clone(), experiment.clone(), retention));
        }
        let (queue, mut records) = mpsc::channel::<CallRecord>(QUEUE);
        let builder = SpanBuilder::start();
        tokio::spawn(async move {
            let mut known: Option<Experiment> = None;
            // MLflow endpoints' own experiments, by id.
            let mut endpoints: HashMap<String, Experiment> = HashMap::new();
            while let Some(first) = records.recv().await {
                // What waits is written together: one transaction per experiment for many traces.
                let mut batch = vec![first];
                while batch.len() < BATCH
                    && let Ok(record) = records.try_recv()
                {
                    batch.push(record);
                }
                let mut by_experiment: BTreeMap<Option<String>, Vec<CallRecord>> = BTreeMap::new();
                for record in batch {
                    by_experiment
                        .entry(record.experiment_id.clone())
                        .or_default()
                        .push(record);
                }
                for (experiment_id, records) in by_experiment {
                    let target = match experiment_id {
                        None => match &known {
                            Some(target) => target.clone(),
                            None => match experiment_named(store.as_ref(), &experiment).await {
                                Ok(found) => known.insert(found).clone(),
                                Err(error) => {
                                    tracing::warn!(%experiment, %error, "gateway traces: the experiment could not be made");
                                    continue;
                                }
                            },
                        },
                        Some(id) => match endpoints.get(&id) {
                            Some(target) => target.clone(),
                            None => match store.get_experiment(&id).await {
                                Ok(found) if found.lifecycle_stage == "active" => {
                                    if endpoints.len() >= MAX_ENDPOINT_EXPERIMENTS {
                                        endpoints.clear();
                                    }
                                    endpoints.entry(id).or_insert(found).clone()
                                }
                                Ok(_) | Err(_) => {
                                    tracing::warn!(experiment_id = %id, traces = records.len(), "an MLflow gateway endpoint's experiment is deleted or missing; its calls are not traced");
                                    continue;
                                }
                            },
                        },
                    };
                    // Building the spans is all computation: off the async workers, which answer calls, on
                    // the builder's thread at idle priority; the store writes them at idle priority too.
                    let count = records.len();
                    let prepared = builder.build(records, target.clone()).await;
                    let stored = match prepared {
                        Ok(batches) => store
                            .log_spans_in_background(batches)
                            .await
                            .map_err(|error| error.to_string()),
                        Err(error) => Err(error),
                    };
                    if let Err(error) = stored {
                        tracing::warn!(%error, traces = count, "gateway traces could not be stored");
                        // The experiment may have been deleted: look it up again next time.
                        known = None;
                        endpoints.clear();
                    }
                }
            }
        });
        GatewayTraces {
            queue,
            dropped: Arc::default(),
            models,
        }
    }
}

/// What the writer is told when building a batch's spans panicked (the panic itself is in the log).
const BUILD_PANICKED: &str = "building the spans failed (the server log has the details)";

/// The spans of a batch of calls, one batch per trace.
type Built = Result<Vec<SpanBatch>, String>;
type BuildJob = (Vec<CallRecord>, Experiment, oneshot::Sender<Built>);

/// Builds spans on a thread of its own at the system's idle priority (docs/gateway.md, "Latency"): it ran
/// on the shared blocking threads before, and the calls that woke behind it waited for its time slice.
/// Where the thread cannot be started, the blocking threads build them.
struct SpanBuilder {
    jobs: Option<std::sync::mpsc::Sender<BuildJob>>,
}

impl SpanBuilder {
    fn start() -> SpanBuilder {
        let (jobs, inbox) = std::sync::mpsc::channel::<BuildJob>();
        let started = std::thread::Builder::new()
            .name("gateway-traces".to_string())
            .spawn(move || {
                if let Err(error) = loopline_core::threads::lower_to_idle_priority() {
                    tracing::warn!(%error, "the gateway's trace builder keeps the normal priority");
                }
                // Ends when the writer task (the only sender) does. A batch whose building panics is
                // refused alone, as it was on the blocking threads; the thread goes on with the next.
                while let Ok((records, experiment, answer)) = inbox.recv() {
                    let built =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| span_batches(&records, &experiment)))
                            .unwrap_or_else(|_| Err(BUILD_PANICKED.to_string()));
                    let _ = answer.send(built);
                }
            });
        if let Err(error) = &started {
            tracing::warn!(%error, "the gateway's trace builder thread could not be started; the blocking threads build the spans");
        }
        SpanBuilder {
            jobs: started.ok().map(|_| jobs),
        }
    }

    async fn build(&self, records: Vec<CallRecord>, experiment: Experiment) -> Built {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(move || span_batches(&records, &experiment))
                .await
                .unwrap_or_else(|error| Err(format!("building the spans failed: {error}")));
        };
        let (answer, answered) = oneshot::channel();
        jobs.send((records, experiment, answer))
            .map_err(|_| "the trace builder thread has stopped".to_string())?;
        answered.await.unwrap_or_else(|_| Err(BUILD_PANICKED.to_string()))
    }
}

/// The calls as OTLP spans, then as the store's batches: the same path as spans sent over OTLP.
fn span_batches(records: &[CallRecord], experiment: &Experiment) -> Built {
    let request = ExportTraceServiceRequest {
        resource_spans: records
            .iter()
            .flat_map(|record| export_request(record).resource_spans)
            .collect(),
    };
    crate::otlp::span_batches(experiment, &request)
}

impl CallObserver for GatewayTraces {
    fn records(&self, endpoint_experiment: bool) -> bool {
        endpoint_experiment || self.models
    }

    fn observe(&self, record: CallRecord) {
        if !self.records(record.experiment_id.is_some()) {
            return;
        }
        if self.queue.try_send(record).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "gateway traces are written slower than calls end; some were not kept"
                );
            }
        }
    }
}

/// Traces deleted in one transaction by the retention sweep (the connection is shared with every other write,
/// which waits behind the sweep's idle-priority transaction, and SQLite holds a transaction's changed pages and
/// statement journal in memory until it ends).
const SWEEP_BATCH: i64 = 200;

/// How often the retention sweep runs at most: often, so each sweep is a few small transactions between the
/// trace writes rather than a minute's worth at once (which held the writer for seconds while calls queued).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Deletes the gateway's traces older than `retention` from its experiment, every five seconds (every half
/// retention when that is shorter), a batch at a time, so the database stays the size of the retention window
/// at a steady call rate. MLflow endpoints' experiments are the user's and are left alone.
async fn sweep(store: Arc<dyn MetadataStore>, experiment: String, retention: Duration) {
    let every = (retention / 2).clamp(Duration::from_millis(200), SWEEP_EVERY);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(every).await;
        let found = match store.get_experiment_by_name(&experiment).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) => continue,
            Err(error) => {
                tracing::warn!(%experiment, %error, "gateway traces: the experiment could not be read to delete old traces");
                continue;
            }
        };
        let before = loopline_core::time::now_millis().saturating_sub(retention_ms);
        let mut deleted = 0;
        loop {
            match store
                .delete_old_traces_in_background(&found.experiment_id, before, SWEEP_BATCH)
                .await
            {
                Ok(count) => {
                    deleted += count;
                    if count < SWEEP_BATCH {
                        break;
                    }
                    // Let other writes in between batches.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::warn!(%experiment, %error, "gateway traces: old traces could not be deleted");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(%experiment, deleted, "gateway traces past their retention deleted");
        }
    }
}

/// The experiment, made when it does not exist (another replica may make it at the same time).
async fn experiment_named(store: &dyn MetadataStore, name: &str) -> Result<Experiment, StoreError> {
    match store.get_experiment_by_name(name).await {
        Ok(found) if found.lifecycle_stage == "active" => return Ok(found),
        Ok(_) => {
            return Err(StoreError::InvalidParameter(format!(
                "experiment '{name}' is deleted; restore it"
            )));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(error) => return Err(error),
    }
    match store.create_experiment(name, None, &[]).await {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => store.get_experiment_by_name(name).await,
        Err(error) => Err(error),
    }
}

/// An attribute holding a JSON value as OTel's typed value (objects as key-value lists), which the mlflow
/// client reads back as the value itself.
fn json_text(key: &str, value: &Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any_of(value, 0)),
    }
}

/// Levels of nesting kept as typed values; deeper ones are JSON text (stored spans are read back by a parser
/// with a depth limit, and each level here is several in the stored form).
const MAX_TYPED_DEPTH: usize = 8;

fn any_of(value: &Value, depth: usize) -> AnyValue {
    if depth >= MAX_TYPED_DEPTH && (value.is_array() || value.is_object()) {
        return AnyValue {
            value: Some(Any::String(value.to_string())),
        };
    }
    let value = match value {
        Value::Null => None,
        Value::Bool(flag) => Some(Any::Bool(*flag)),
        Value::Number(number) => Some(match number.as_i64() {
            Some(integer) => Any::Int(integer),
            None => Any::Double(number.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(text) => Some(Any::String(text.clone())),
        Value::Array(items) => Some(Any::Array(ArrayValue {
            values: items.iter().map(|item| any_of(item, depth + 1)).collect(),
        })),
        Value::Object(fields) => Some(Any::KeyValues(KeyValueList {
            values: fields
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: Some(any_of(value, depth + 1)),
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

fn export_request(record: &CallRecord) -> ExportTraceServiceRequest {
    let start_ns = record
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let end_ns = start_ns.saturating_add(record.duration.as_nanos() as u64);
    let (operation, kind) = match record.endpoint {
        Endpoint::ChatCompletions => ("chat.completions", "CHAT_MODEL"),
        Endpoint::Completions => ("completions", "LLM"),
        Endpoint::Embeddings => ("embeddings", "EMBEDDING"),
    };
    let mut attributes = vec![
        json_text("mlflow.spanType", &json!(kind)),
        json_text(
            "mlflow.spanInputs",
            &serde_json::from_str(&record.request).unwrap_or_else(|_| Value::String(record.request.clone())),
        ),
        json_text("mlflow.llm.model", &json!(record.model)),
        json_text("loopline.gateway.outcome", &json!(record.outcome)),
        json_text("loopline.gateway.attempts", &json!(record.attempts)),
        json_text("loopline.gateway.fallback", &json!(record.fell_back)),
        json_text(
            "loopline.gateway.duration_ms",
            &json!(record.duration.as_secs_f64() * 1000.0),
        ),
    ];
    if let Some(response) = &record.response {
        attributes.push(json_text("mlflow.spanOutputs", response));
    }
    if let Some(deployment) = &record.deployment {
        attributes.push(json_text("loopline.gateway.deployment", &json!(deployment)));
        if let Some((provider, _)) = deployment.split_once('/') {
            attributes.push(json_text("mlflow.llm.provider", &json!(provider)));
        }
    }
    if let Some(user) = &record.user {
        // The trace's `mlflow.trace.user`, as MLflow's tracing sets it.
        attributes.push(json_text("user.id", &json!(user)));
    }
    if !record.guardrails.is_empty() {
        let events: Vec<Value> = record.guardrails.iter().map(|event| event.to_json()).collect();
        attributes.push(json_text("loopline.gateway.guardrails", &Value::Array(events)));
    }
    if record.cache_hit {
        attributes.push(json_text("loopline.gateway.cache", &json!("hit")));
        if let Some(similarity) = record.similarity {
            attributes.push(json_text("loopline.gateway.cache_similarity", &json!(similarity)));
        }
    }
    if let Some(first) = record.first_token {
        attributes.push(json_text(
            "loopline.gateway.time_to_first_token_ms",
            &json!(first.as_secs_f64() * 1000.0),
        ));
    }
    if let Some((prompt, completion)) = record.tokens {
        let mut usage = json!({"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt.saturating_add(completion)});
        if record.cached_tokens > 0 {
            usage["cache_read_input_tokens"] = json!(record.cached_tokens);
        }
        attributes.push(json_text("mlflow.chat.tokenUsage", &usage));
    }
    if let Some(cost) = record.cost() {
        attributes.push(json_text(
            "mlflow.llm.cost",
            &json!({"input_cost": cost.input, "output_cost": cost.output, "total_cost": cost.total()}),
        ));
    }
    let failed = record.error.is_some() || record.outcome != "ok";
    let span = Span {
        trace_id: time_ordered_trace_id(start_ns),
        span_id: rand::random::<[u8; 8]>().to_vec(),
        trace_state: String::new(),
        parent_span_id: Vec::new(),
        name: format!("gateway {operation} {}", record.model),
        kind: 3,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns.max(start_ns + 1),
        attributes,
        events: Vec::new(),
        status: Some(Status {
            message: record.error.clone().unwrap_or_default(),
            code: if failed { 2 } else { 1 },
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans { spans: vec![span] }],
        }],
    }
}

/// A trace id that sorts by time: the call's start in milliseconds (6 bytes, big-endian), then 10 random
/// bytes. Each trace then lands at the end of the store's indexes keyed by trace id instead of at a random
/// place in them, so writing a trace touches the few pages already in the writer's cache rather than reading
/// a page per index from a database that grows by gigabytes a day (measured: that reading was most of the
/// writer's time). Trace ids need only be unique; 80 random bits within one millisecond are.
fn time_ordered_trace_id(start_ns: u64) -> Vec<u8> {
    let millis = (start_ns / 1_000_000).to_be_bytes();
    let mut id = millis[2..].to_vec();
    id.extend_from_slice(&rand::random::<[u8; 10]>());
    id
}

#[cfg(test)]
mod tests {
    use super::time_ordered_trace_id;

    #[test]
    fn trace_ids_sort_by_time_and_differ_within_a_millisecond() {
        let earlier = time_ordered_trace_id(1_764_000_000_000_000_000);
        let same_milli = time_ordered_trace_id(1_764_000_000_000_500_000);
        let later = time_ordered_trace_id(1_764_000_000_001_000_000);
        assert_eq!(earlier.len(), 16);
        assert_eq!(earlier[..6], same_milli[..6]);
        assert_ne!(earlier, same_milli);
        assert!(earlier < later && same_milli < later);
        assert_eq!(time_ordered_trace_id(0)[..6], [0; 6]);
        assert_eq!(time_ordered_trace_id(u64::MAX).len(), 16);
    }
}
