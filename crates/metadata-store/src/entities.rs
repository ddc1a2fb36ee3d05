//! Tracking entities as stored and as served. Field names and omission rules follow MLflow's proto3 JSON so
//! the wire layer can serialise them directly: empty lists and unset options are left out.

use loopline_core::proto_json::serialize_double;
use serde::Serialize;

/// A key/value tag on an experiment, run, logged model or registry object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

impl Tag {
    /// Builds a tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter; immutable once logged.
pub type Param = Tag;

/// Whether an entity is live or soft-deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleStage {
    /// Visible in default searches.
    Active,
    /// Soft-deleted; restorable.
    Deleted,
}

impl LifecycleStage {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    /// Only active entities (the default).
    #[default]
    ActiveOnly,
    /// Only deleted entities.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    /// The lifecycle stages this view includes.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            ViewType::ActiveOnly => &["active"],
            ViewType::DeletedOnly => &["deleted"],
            ViewType::All => &["active", "deleted"],
        }
    }
}

/// An experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    /// Decimal id; "0" is the Default experiment.
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// Root URI under which run artifacts live.
    pub artifact_location: String,
    /// "active" or "deleted".
    pub lifecycle_stage: String,
    /// Last change, ms since epoch.
    pub last_update_time: i64,
    /// Creation, ms since epoch.
    pub creation_time: i64,
    /// Experiment tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Metric key.
    pub key: String,
    /// Value; NaN and infinities allowed.
    #[serde(serialize_with = "serialize_double")]
    pub value: f64,
    /// Wall-clock time of the measurement, ms since epoch.
    pub timestamp: i64,
    /// Training step.
    pub step: i64,
    /// Dataset the metric was computed on, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// Digest of that dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// Logged model the metric belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Run that logged it (present in logged-model metric lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Run status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Still running.
    Running,
    /// Queued.
    Scheduled,
    /// Finished successfully.
    Finished,
    /// Failed.
    Failed,
    /// Killed.
    Killed,
}

impl RunStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Parses the name or the proto enum number.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "RUNNING" | "1" => Some(RunStatus::Running),
            "SCHEDULED" | "2" => Some(RunStatus::Scheduled),
            "FINISHED" | "3" => Some(RunStatus::Finished),
            "FAILED" | "4" => Some(RunStatus::Failed),
            "KILLED" | "5" => Some(RunStatus::Killed),
            _ => None,
        }
    }
}

/// Run metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// Legacy duplicate of `run_id`.
    pub run_uuid: String,
    /// Experiment holding the run.
    pub experiment_id: String,
    /// Display name, kept in sync with the `mlflow.runName` tag.
    pub run_name: String,
    /// Who started it.
    pub user_id: String,
    /// RUNNING, FINISHED...
    pub status: String,
    /// Start, ms since epoch.
    pub start_time: i64,
    /// End, ms since epoch, once ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Where the run's artifacts live.
    pub artifact_uri: String,
    /// "active" or "deleted".
    pub lifecycle_stage: String,
    /// 32 hex characters.
    pub run_id: String,
}

/// Metrics (latest value per key), params and tags of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RunData {
    /// Latest value per metric key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A dataset description as logged with `mlflow.log_input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// Dataset name.
    pub name: String,
    /// Content digest.
    pub digest: String,
    /// Kind of source (local, s3, ...).
    pub source_type: String,
    /// Source description, usually JSON.
    pub source: String,
    /// Schema JSON, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Profile JSON, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset used by a run, with its input tags (for example `mlflow.data.context`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInput {
    /// Input tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// The dataset.
    pub dataset: Dataset,
}

/// A logged model used as an input of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInput {
    /// Logged model id.
    pub model_id: String,
}

/// A logged model produced by a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOutput {
    /// Logged model id.
    pub model_id: String,
    /// Step at which it was produced.
    pub step: i64,
}

/// Inputs of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RunInputs {
    /// Datasets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
    /// Logged models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelInput>,
}

/// Outputs of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RunOutputs {
    /// Logged models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelOutput>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Metrics, params, tags.
    pub data: RunData,
    /// Dataset and model inputs.
    pub inputs: RunInputs,
    /// Model outputs.
    pub outputs: RunOutputs,
}

/// Logged-model metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelInfo {
    /// `m-` + 32 hex.
    pub model_id: String,
    /// Experiment holding the model.
    pub experiment_id: String,
    /// Model name (e.g. "model").
    pub name: String,
    /// Creation, ms since epoch.
    pub creation_timestamp_ms: i64,
    /// Last change, ms since epoch.
    pub last_updated_timestamp_ms: i64,
    /// Where the model files live.
    pub artifact_uri: String,
    /// LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED.
    pub status: String,
    /// Free-form type.
    pub model_type: String,
    /// Run that produced it, or "".
    pub source_run_id: String,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// Params and metrics of a logged model.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LoggedModelData {
    /// Params.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// Metric points linked to the model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

/// A logged model (MLflow 3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModel {
    /// Metadata.
    pub info: LoggedModelInfo,
    /// Params and metrics.
    pub data: LoggedModelData,
}

/// An alias pointing at a version, as listed on a registered model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasEntry {
    /// Alias name.
    pub alias: String,
    /// Version number as a string.
    pub version: String,
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisteredModel {
    /// Unique name.
    pub name: String,
    /// Creation, ms since epoch.
    pub creation_timestamp: i64,
    /// Last change, ms since epoch.
    pub last_updated_timestamp: i64,
    /// Description, if set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Newest version per stage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Aliases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasEntry>,
}

/// A model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number as a string.
    pub version: String,
    /// Creation, ms since epoch.
    pub creation_timestamp: i64,
    /// Last change, ms since epoch.
    pub last_updated_timestamp: i64,
    /// Creator, if known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// None, Staging, Production or Archived.
    pub current_stage: String,
    /// Description.
    pub description: String,
    /// Source URI as given.
    pub source: String,
    /// Run that produced it, or "".
    pub run_id: String,
    /// READY.
    pub status: String,
    /// Link to the run, as given.
    pub run_link: String,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Aliases pointing at this version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Logged model behind the version, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Resolved artifact location used for downloads (not part of MLflow's JSON).
    #[serde(skip)]
    pub storage_location: String,
    /// Digest of the version's files taken at registration (not part of MLflow's JSON).
    #[serde(skip)]
    pub content_digest: Option<String>,
    /// Version as a number, for ordering.
    #[serde(skip)]
    pub version_number: i64,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token of the next page, when more may exist.
    pub next_page_token: Option<String>,
}

/// The stages a model version can be in, in MLflow's spelling.
pub const MODEL_VERSION_STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// A deployment as stored: its specification and rollout state are JSON documents owned by the deployments
/// crate; the store only keeps them consistent (`revision` grows by one on every update).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    /// Unique name.
    pub name: String,
    /// The specification, JSON.
    pub spec: String,
    /// The rollout state, JSON.
    pub state: String,
    /// Bumped on every update; updates name the revision they were based on.
    pub revision: i64,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Last update time, ms since the epoch.
    pub last_update_time: i64,
}

/// One entry of a deployment's audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentEvent {
    /// Increasing id (assigned by the store; ignored when appending).
    pub event_id: i64,
    /// The deployment.
    pub deployment: String,
    /// When, ms since the epoch.
    pub timestamp_ms: i64,
    /// What happened (`created`, `step`, `promoted`, `rolled_back`...).
    pub kind: String,
    /// Who or what caused it (`user:<name>`, `controller`...).
    pub actor: String,
    /// A sentence for people.
    pub message: String,
    /// The figures behind it, JSON.
    pub details: String,
}

/// A change of a registry alias: the version it pointed at from `set_time` on (`None`: removed).
#[derive(Debug, Clone, PartialEq)]
pub struct AliasChange {
    /// Registered model.
    pub name: String,
    /// Alias.
    pub alias: String,
    /// Version, or `None` once the alias was removed.
    pub version: Option<i64>,
    /// When, ms since the epoch.
    pub set_time: i64,
}

/// A monitor as stored: its specification and evaluation state are JSON documents owned by the monitoring
/// crate; `revision` grows by one on every update, as for deployments.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRecord {
    /// Unique name.
    pub name: String,
    /// The specification, JSON.
    pub spec: String,
    /// Where evaluation stands (window cursor, alert states), JSON.
    pub state: String,
    /// Bumped on every update; updates name the revision they were based on.
    pub revision: i64,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Last update time, ms since the epoch.
    pub last_update_time: i64,
}

/// The result of one window of a monitor. Evaluating a window again (late labels) replaces its row.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorWindow {
    /// The monitor.
    pub monitor: String,
    /// The window's key: its start (ms since the epoch) for time windows, its number for count windows.
    pub window_key: i64,
    /// First moment covered, ms since the epoch.
    pub window_start: i64,
    /// End of the window (exclusive), ms since the epoch.
    pub window_end: i64,
    /// `ok`, `alerting`, `no_traffic`, `failed`...
    pub status: String,
    /// Predictions in the window.
    pub rows_seen: i64,
    /// Labels joined to them.
    pub labels_seen: i64,
    /// Every figure of the window, JSON.
    pub figures: String,
    /// Where the full report lies in the artifact store, when written.
    pub report_path: Option<String>,
    /// When it was (last) evaluated, ms since the epoch.
    pub evaluated_time: i64,
}

/// One entry of a monitor's history: alerts firing and resolving, notifications, actions, acknowledgements.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorEvent {
    /// Increasing id (assigned by the store; ignored when appending).
    pub event_id: i64,
    /// The monitor.
    pub monitor: String,
    /// When, ms since the epoch.
    pub timestamp_ms: i64,
    /// What happened (`created`, `alert_firing`, `alert_resolved`, `notified`, `action`...).
    pub kind: String,
    /// Who or what caused it.
    pub actor: String,
    /// A sentence for people.
    pub message: String,
    /// The figures behind it, JSON.
    pub details: String,
}

/// The reference profile of a model version (the `loopline profile` format, JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRecord {
    /// Registered model.
    pub name: String,
    /// Version.
    pub version: String,
    /// The profile, JSON.
    pub profile: String,
    /// Where it came from (`api`, `cli`, `run-artifact`, `window`...).
    pub source: String,
    /// When it was set, ms since the epoch.
    pub set_time: i64,
}

/// A version of a dataset: a content-addressed snapshot in the artifact store.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetVersion {
    /// The dataset's name.
    pub name: String,
    /// Its number, from 1 per name.
    pub version: i64,
    /// The content id (BLAKE3 hex; `.dir` after a directory's manifest).
    pub content_hash: String,
    /// Total bytes.
    pub size_bytes: i64,
    /// Number of files.
    pub file_count: i64,
    /// Rows, for a table.
    pub row_count: Option<i64>,
    /// Column names and types, JSON, for a table.
    pub table_schema: Option<String>,
    /// Its profile (the `loopline profile` format, JSON), for a table.
    pub profile: Option<String>,
    /// What it was computed from (JSON), for a derived dataset such as a training set.
    pub lineage: Option<String>,
    /// Where it was added from (a path, a URI, `dvc-import`...).
    pub source: String,
    /// Free text.
    pub description: String,
    /// Who registered it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub creation_time: i64,
}

/// A dataset: its name, newest version and how many it has.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// The name.
    pub name: String,
    /// The newest version.
    pub latest: DatasetVersion,
    /// How many versions.
    pub version_count: i64,
}

/// A registered model's gate policy.
#[derive(Debug, Clone, PartialEq)]
pub struct GatePolicyRecord {
    /// The registered model.
    pub name: String,
    /// The policy, JSON.
    pub policy: String,
    /// Bumped at each change.
    pub revision: i64,
    /// Who set it.
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_time: i64,
}

/// One evaluation of a version against its model's gate policy.
#[derive(Debug, Clone, PartialEq)]
pub struct GateEvaluation {
    /// Its id.
    pub evaluation_id: i64,
    /// The registered model.
    pub name: String,
    /// The version evaluated.
    pub version: i64,
    /// The policy revision it was judged by.
    pub policy_revision: i64,
    /// Whether every check passed.
    pub passed: bool,
    /// Every figure, the data's hash, both versions and each check's outcome, JSON.
    pub evidence: String,
    /// Who asked for it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_time: i64,
}

/// An alias moved without a passing gate, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOverride {
    /// Its id.
    pub override_id: i64,
    /// The registered model.
    pub name: String,
    /// The alias.
    pub alias: String,
    /// The version it was moved to.
    pub version: i64,
    /// The reason given.
    pub reason: String,
    /// Who.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_time: i64,
}

/// A pipeline registered on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRecord {
    /// Its name.
    pub name: String,
    /// Where its project is and how it runs, JSON.
    pub spec: String,
    /// Its triggers' cursors, JSON.
    pub state: String,
    /// Bumped at each change.
    pub revision: i64,
    /// When it was registered, ms since the epoch.
    pub creation_time: i64,
    /// When it last changed.
    pub last_update_time: i64,
}

/// One run of a registered pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRunRecord {
    /// Its id.
    pub run_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// What started it, JSON.
    pub cause: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Its steps and their states, JSON.
    pub record: String,
    /// The server (replica) running it.
    pub owner: String,
    /// Whether someone asked for it to stop.
    pub cancel_requested: bool,
    /// When it was asked for, ms since the epoch.
    pub creation_time: i64,
    /// When it last changed (a running run's heartbeat).
    pub last_update_time: i64,
    /// When it ended.
    pub end_time: Option<i64>,
}

/// A dataset some run of an experiment used, and in what context (`training`, `eval`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDatasetSummary {
    /// The experiment.
    pub experiment_id: String,
    /// The dataset's name.
    pub name: String,
    /// Its digest.
    pub digest: String,
    /// The `mlflow.data.context` tag of its use, when it had one.
    pub context: Option<String>,
}
