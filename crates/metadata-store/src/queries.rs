//! Inputs of store calls that carry more than a handful of fields.

use crate::entities::{Metric, Param, Tag, ViewType};

/// A page request: where to start and how many.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Maximum number of items.
    pub max_results: u64,
    /// Token from a previous page.
    pub page_token: Option<String>,
}

/// Search over experiments.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSearch {
    /// Filter text in MLflow's grammar.
    pub filter: Option<String>,
    /// order_by entries.
    pub order_by: Vec<String>,
    /// Which lifecycle stages.
    pub view_type: ViewType,
    /// Paging.
    pub page: PageRequest,
}

/// Search over runs.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter text.
    pub filter: Option<String>,
    /// order_by entries.
    pub order_by: Vec<String>,
    /// Which lifecycle stages.
    pub view_type: ViewType,
    /// Paging.
    pub page: PageRequest,
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Experiment id.
    pub experiment_id: String,
    /// Who starts it.
    pub user_id: String,
    /// Display name (already generated if the client sent none).
    pub run_name: String,
    /// Start time, ms.
    pub start_time: i64,
    /// Initial tags (the `mlflow.runName` tag is kept in sync by the store).
    pub tags: Vec<Tag>,
}

/// Changes to a run's info.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    /// New status.
    pub status: Option<String>,
    /// New end time.
    pub end_time: Option<i64>,
    /// New name.
    pub run_name: Option<String>,
}

/// Metrics, params and tags to log in one atomic batch.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    /// Metric points.
    pub metrics: Vec<Metric>,
    /// Params (immutable once logged).
    pub params: Vec<Param>,
    /// Tags (overwrite).
    pub tags: Vec<Tag>,
}

/// A logged model to create.
#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    /// Experiment id.
    pub experiment_id: String,
    /// Name ("model" by default in the client).
    pub name: String,
    /// Producing run, if any.
    pub source_run_id: Option<String>,
    /// Params.
    pub params: Vec<Param>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Free-form type.
    pub model_type: String,
}

/// Search over logged models.
#[derive(Debug, Clone, Default)]
pub struct LoggedModelSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter text.
    pub filter: Option<String>,
    /// Order: (identifier, ascending); a metric is ordered by its latest value, on the dataset given with it.
    pub order_by: Vec<(String, bool)>,
    /// The dataset (if any) each `order_by` entry's metric is read on, by position; missing entries: none.
    pub order_datasets: Vec<Option<DatasetRef>>,
    /// Only models with metrics on one of these datasets (metric filters then look at those metrics alone).
    pub datasets: Vec<DatasetRef>,
    /// Paging.
    pub page: PageRequest,
}

/// A dataset that metrics were logged on: its name, and its digest when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetRef {
    /// `dataset_name`.
    pub name: String,
    /// `dataset_digest`; none matches any digest.
    pub digest: Option<String>,
}

/// Search over registered models or model versions.
#[derive(Debug, Clone, Default)]
pub struct RegistrySearch {
    /// Filter text.
    pub filter: Option<String>,
    /// order_by entries.
    pub order_by: Vec<String>,
    /// Paging.
    pub page: PageRequest,
}

/// A model version to create.
#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    /// Registered model name.
    pub name: String,
    /// Source URI as given.
    pub source: String,
    /// Producing run, if known.
    pub run_id: String,
    /// Link to the run.
    pub run_link: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Logged model behind the version.
    pub model_id: Option<String>,
    /// Artifact location to download from.
    pub storage_location: String,
    /// Creator.
    pub user_id: String,
    /// Digest of the version's files, when the server took one.
    pub content_digest: Option<String>,
    /// The artifact path (below the proxy's root) the digest was taken of.
    pub sealed_path: Option<String>,
}

/// Search over traces.
#[derive(Debug, Clone, Default)]
pub struct TraceSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter text (attributes `timestamp_ms`, `execution_time_ms`, `status`, `name`, `run_id`, tags, metadata).
    pub filter: Option<String>,
    /// Order entries such as `timestamp_ms DESC`.
    pub order_by: Vec<String>,
    /// Paging.
    pub page: PageRequest,
}

/// A change to a trace's assessments, made in one transaction; it answers what the caller gets back.
pub type AssessmentChange =
    Box<dyn FnOnce(&mut Vec<serde_json::Value>) -> crate::error::StoreResult<serde_json::Value> + Send>;

/// A change to a stored JSON document, made in one transaction.
pub type DocumentChange = Box<dyn FnOnce(&mut serde_json::Value) -> crate::error::StoreResult<()> + Send>;
/// How a record arriving with inputs already in the dataset merges into the stored one.
pub type RecordMerge = fn(&mut serde_json::Value, &serde_json::Value);
/// Updates a dataset's document (digest, schema, profile, times) from all its records after a change. The store
/// hands it the records one at a time, in their order, so no dataset is ever held in memory whole.
pub trait RecordSummary: Send {
    /// Sees the next record.
    fn add(&mut self, record: &serde_json::Value);
    /// Writes what it saw into the dataset's document.
    fn finish(self: Box<Self>, dataset: &mut serde_json::Value);
}
/// The summary a change of records ends with.
pub type DatasetFinish = Box<dyn RecordSummary>;

/// An evaluation dataset record to insert or merge: the hash of its inputs and its document.
#[derive(Debug, Clone)]
pub struct EvalRecord {
    /// Hash of the inputs (records with equal inputs are one record).
    pub input_key: String,
    /// The record as the client reads it (`dataset_record_id`, `inputs`, `expectations`, ...).
    pub document: serde_json::Value,
}

/// A search of evaluation datasets.
#[derive(Debug, Clone, Default)]
pub struct EvalDatasetSearch {
    /// Experiments (any of); none: all datasets.
    pub experiment_ids: Vec<String>,
    /// MLflow filter on `name`, `created_time`, `last_update_time`.
    pub filter: Option<String>,
    /// `name`, `created_time` or `last_update_time`, with ASC/DESC.
    pub order_by: Vec<String>,
    /// Page.
    pub page: PageRequest,
}

/// An issue (MLflow 3): a problem found in traces. `status` is `pending`, `rejected` or `resolved`;
/// `severity` `not_an_issue`, `low`, `medium` or `high`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Issue {
    /// `iss-` + 32 hex.
    pub issue_id: String,
    /// Experiment.
    pub experiment_id: String,
    /// Short name.
    pub name: String,
    /// What is wrong.
    pub description: String,
    /// Status.
    pub status: String,
    /// Severity, when judged.
    pub severity: Option<String>,
    /// Root cause analyses.
    pub root_causes: Vec<String>,
    /// The run that found it.
    pub source_run_id: Option<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Who made it.
    pub created_by: Option<String>,
    /// Made at, ms.
    pub created_timestamp: i64,
    /// Last changed at, ms.
    pub last_updated_timestamp: i64,
    /// Traces that reference it (assessments of kind "issue" named by its id), when asked for.
    pub trace_count: Option<i64>,
}

/// A change to an issue; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IssueChange {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New status.
    pub status: Option<String>,
    /// New severity.
    pub severity: Option<String>,
}

/// Search over issues.
#[derive(Debug, Clone, Default)]
pub struct IssueSearch {
    /// One experiment, or all.
    pub experiment_id: Option<String>,
    /// `status` and `source_run_id` with `=` / `!=`, joined by AND.
    pub filter: Option<String>,
    /// Count the traces of each issue.
    pub include_trace_count: bool,
    /// Page.
    pub page: PageRequest,
}

/// A registry webhook (MLflow 3). `events` are `(entity, action)` pairs in lower case
/// (`model_version`, `created`); `secret` is sealed by the caller and never leaves the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Webhook {
    /// uuid.
    pub webhook_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed events.
    pub events: Vec<(String, String)>,
    /// `ACTIVE` or `DISABLED`.
    pub status: String,
    /// The sealed signing secret.
    pub secret: Option<String>,
    /// Made at, ms.
    pub creation_timestamp: i64,
    /// Changed at, ms.
    pub last_updated_timestamp: i64,
}

/// A change to a webhook; `None` leaves a field as it is (`Some(None)` clears the description or secret).
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New URL.
    pub url: Option<String>,
    /// New events (replacing the old ones).
    pub events: Option<Vec<(String, String)>>,
    /// New sealed secret.
    pub secret: Option<Option<String>>,
    /// New status.
    pub status: Option<String>,
}

/// What trace metrics count: traces, spans or assessments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricView {
    /// One row per trace.
    Traces,
    /// One row per span.
    Spans,
    /// One row per assessment.
    Assessments,
}

/// The rows behind a trace metric (MLflow 3's `traces/metrics`): one per trace, span or assessment of the
/// experiments in the time range, with the metric's value and the dimensions asked for.
#[derive(Debug, Clone)]
pub struct TraceMetricsQuery {
    /// Experiments.
    pub experiment_ids: Vec<String>,
    /// What a row is.
    pub view: MetricView,
    /// MLflow's metric name (`trace_count`, `latency`, `input_tokens`, `span_count`, `total_cost`, ...).
    pub metric_name: String,
    /// MLflow's dimension names (`trace_name`, `span_type`, `assessment_name`, ...).
    pub dimensions: Vec<String>,
    /// MLflow's metric filters (`trace.status = 'OK'`, `trace.tag.k = 'v'`, `span.type = 'LLM'`, ...).
    pub filters: Vec<String>,
    /// From (inclusive), ms.
    pub start_time_ms: Option<i64>,
    /// To (exclusive), ms.
    pub end_time_ms: Option<i64>,
}

/// One row behind a trace metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// When (trace start, span start or assessment time), ms.
    pub timestamp_ms: i64,
    /// The dimensions, in the order asked.
    pub dimensions: Vec<Option<String>>,
    /// The metric's value (1 for counts); None when the row has none.
    pub value: Option<f64>,
    /// For distinct counts (sessions): what is counted.
    pub distinct: Option<String>,
}

/// A registered scorer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScorerVersion {
    /// Experiment.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Version, from 1.
    pub version: i64,
    /// Stable across versions.
    pub scorer_id: String,
    /// The scorer as the client serialized it (JSON text).
    pub serialized: String,
    /// Registered at, ms.
    pub creation_time: i64,
}

/// A span received over OTLP, kept as the JSON it is served back as.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpan {
    /// Its trace (`tr-` + 32 hex).
    pub trace_id: String,
    /// Its id (16 hex).
    pub span_id: String,
    /// Start, nanoseconds since the epoch.
    pub start_ns: i64,
    /// The OTel span as proto JSON.
    pub content: serde_json::Value,
}

/// What a batch of spans says about their trace: the trace to create when it does not exist yet, and the
/// times and state to fold into one that does.
#[derive(Debug, Clone)]
pub struct SpanBatch {
    /// The trace as it would be created from these spans alone.
    pub trace: NewTrace,
    /// The latest end among the spans, ms.
    pub end_ms: Option<i64>,
    /// The root span's state (`OK`, `ERROR`) when the batch holds the root.
    pub root_state: Option<String>,
    /// The spans.
    pub spans: Vec<NewSpan>,
}

/// A trace to record.
#[derive(Debug, Clone)]
pub struct NewTrace {
    /// `tr-` + 32 hex.
    pub trace_id: String,
    /// Experiment id.
    pub experiment_id: String,
    /// Request time, ms.
    pub timestamp_ms: i64,
    /// Duration, ms.
    pub execution_time_ms: i64,
    /// OK, ERROR, IN_PROGRESS.
    pub state: String,
    /// The whole trace info as JSON (tags and metadata included).
    pub trace_info: serde_json::Value,
}
