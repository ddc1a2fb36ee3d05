//! The storage traits. Domain services depend on these, never on a concrete store; every implementation
//! runs the same conformance suite (`tests/conformance`).

use crate::entities::*;
use crate::error::StoreResult;
use crate::queries::*;
use async_trait::async_trait;

/// Experiments.
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Creates an experiment and returns its id. Without a location it gets `<default root>/<id>`.
    async fn create_experiment(&self, name: &str, artifact_location: Option<&str>, tags: &[Tag])
    -> StoreResult<String>;
    /// Gets an experiment by id.
    async fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment>;
    /// Gets an experiment by name.
    async fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment>;
    /// Searches experiments.
    async fn search_experiments(&self, search: &ExperimentSearch) -> StoreResult<Page<Experiment>>;
    /// Renames an experiment.
    async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()>;
    /// Soft-deletes or restores an experiment (and its runs).
    async fn set_experiment_lifecycle(&self, experiment_id: &str, stage: LifecycleStage) -> StoreResult<()>;
    /// Sets an experiment tag.
    async fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> StoreResult<()>;
    /// Deletes an experiment tag.
    async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()>;
}

/// Runs, their metrics, params, tags, inputs and outputs.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates a run in an active experiment.
    async fn create_run(&self, new_run: &NewRun) -> StoreResult<Run>;
    /// Gets a whole run.
    async fn get_run(&self, run_id: &str) -> StoreResult<Run>;
    /// Updates status, end time or name.
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> StoreResult<RunInfo>;
    /// Soft-deletes or restores a run.
    async fn set_run_lifecycle(&self, run_id: &str, stage: LifecycleStage) -> StoreResult<()>;
    /// Logs metrics, params and tags atomically to an active run.
    async fn log_batch(&self, run_id: &str, batch: &LogBatch) -> StoreResult<()>;
    /// [`RunStore::log_batch`] of a batch the caller no longer needs (no copy is made to hand it over).
    async fn log_owned_batch(&self, run_id: &str, batch: LogBatch) -> StoreResult<()> {
        self.log_batch(run_id, &batch).await
    }
    /// Deletes a run tag.
    async fn delete_run_tag(&self, run_id: &str, key: &str) -> StoreResult<()>;
    /// All points of one metric, ordered by step then timestamp.
    async fn metric_history(&self, run_id: &str, key: &str, page: &PageRequest) -> StoreResult<Page<Metric>>;
    /// Records datasets and models used by a run.
    async fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput], models: &[ModelInput]) -> StoreResult<()>;
    /// Records models produced by a run.
    async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> StoreResult<()>;
    /// Searches runs.
    async fn search_runs(&self, search: &RunSearch) -> StoreResult<Page<Run>>;
    /// Points of one metric of several runs at sampled steps, for charts (MLflow's
    /// `get-history-bulk-interval`): at most `max_results` steps spread over `range` (default: from 0 to the
    /// last step), each run's first and last step kept, each point tagged with its run.
    async fn metric_history_sampled(
        &self,
        run_ids: &[String],
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>>;
    /// The distinct datasets runs of these experiments used, with the context they were used in (the
    /// `mlflow.data.context` input tag), at most `limit` of them.
    async fn dataset_summaries(&self, experiment_ids: &[String], limit: u64) -> StoreResult<Vec<RunDatasetSummary>>;
}

/// Logged models (MLflow 3).
#[async_trait]
pub trait LoggedModelStore: Send + Sync {
    /// Creates a model in PENDING state; `artifact_uri` is computed from the experiment location.
    async fn create_logged_model(&self, new_model: &NewLoggedModel) -> StoreResult<LoggedModel>;
    /// Gets a model.
    async fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel>;
    /// Sets the status (READY, UPLOAD_FAILED).
    async fn set_logged_model_status(&self, model_id: &str, status: &str) -> StoreResult<LoggedModel>;
    /// Sets tags.
    async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> StoreResult<()>;
    /// Deletes a tag.
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()>;
    /// Adds params.
    async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> StoreResult<()>;
    /// Soft-deletes a model.
    async fn delete_logged_model(&self, model_id: &str) -> StoreResult<()>;
    /// Searches models.
    async fn search_logged_models(&self, search: &LoggedModelSearch) -> StoreResult<Page<LoggedModel>>;
}

/// The model registry.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Creates a registered model.
    async fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: &str,
    ) -> StoreResult<RegisteredModel>;
    /// Gets a registered model with latest versions, tags and aliases.
    async fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel>;
    /// Renames a registered model (versions, tags and aliases follow).
    async fn rename_registered_model(&self, name: &str, new_name: &str) -> StoreResult<RegisteredModel>;
    /// Sets the description.
    async fn update_registered_model(&self, name: &str, description: &str) -> StoreResult<RegisteredModel>;
    /// Deletes a registered model with all its versions.
    async fn delete_registered_model(&self, name: &str) -> StoreResult<()>;
    /// Sets a tag.
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> StoreResult<()>;
    /// Deletes a tag.
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()>;
    /// Searches registered models.
    async fn search_registered_models(&self, search: &RegistrySearch) -> StoreResult<Page<RegisteredModel>>;
    /// Newest version per stage (all stages when `stages` is empty).
    async fn get_latest_versions(&self, name: &str, stages: &[String]) -> StoreResult<Vec<ModelVersion>>;
    /// Creates the next version of a model.
    async fn create_model_version(&self, new_version: &NewModelVersion) -> StoreResult<ModelVersion>;
    /// Gets a version.
    async fn get_model_version(&self, name: &str, version: i64) -> StoreResult<ModelVersion>;
    /// Sets a version's description.
    async fn update_model_version(&self, name: &str, version: i64, description: &str) -> StoreResult<ModelVersion>;
    /// Deletes a version (and aliases pointing at it).
    async fn delete_model_version(&self, name: &str, version: i64) -> StoreResult<()>;
    /// Sets a version tag.
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> StoreResult<()>;
    /// Deletes a version tag.
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str) -> StoreResult<()>;
    /// Records the digest of a version's files when it has none yet (taken at its first load).
    async fn record_model_version_digest(&self, name: &str, version: i64, digest: &str) -> StoreResult<()>;
    /// A version whose files were sealed at registration at `artifact_path` or a directory above it (and, with
    /// `with_descendants`, anywhere below it), as (name, version).
    async fn sealed_version_at(
        &self,
        artifact_path: &str,
        with_descendants: bool,
    ) -> StoreResult<Option<(String, i64)>>;
    /// Moves a version to a stage, optionally archiving the others in that stage.
    async fn transition_model_version_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion>;
    /// Searches versions.
    async fn search_model_versions(&self, search: &RegistrySearch) -> StoreResult<Page<ModelVersion>>;
    /// Points an alias at a version.
    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> StoreResult<()>;
    /// Removes an alias.
    async fn delete_alias(&self, name: &str, alias: &str) -> StoreResult<()>;
    /// The version an alias points at.
    async fn get_model_version_by_alias(&self, name: &str, alias: &str) -> StoreResult<ModelVersion>;
}

/// Traces recorded by `@mlflow.trace`.
#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Records a trace.
    async fn start_trace(&self, trace: &NewTrace) -> StoreResult<()>;
    /// Gets a trace's info JSON.
    async fn get_trace_info(&self, trace_id: &str) -> StoreResult<serde_json::Value>;
    /// Searches traces.
    async fn search_traces(&self, search: &TraceSearch) -> StoreResult<Page<serde_json::Value>>;
    /// Sets a trace tag.
    async fn set_trace_tag(&self, trace_id: &str, tag: &Tag) -> StoreResult<()>;
    /// Deletes a trace tag.
    async fn delete_trace_tag(&self, trace_id: &str, key: &str) -> StoreResult<()>;
    /// Appends an assessment (feedback or expectation, already given its id) to a trace.
    async fn add_trace_assessment(&self, trace_id: &str, assessment: &serde_json::Value) -> StoreResult<()>;
    /// Changes a trace's assessments in one transaction (get, update, override, delete).
    async fn change_trace_assessments(
        &self,
        trace_id: &str,
        change: AssessmentChange,
    ) -> StoreResult<serde_json::Value>;
    /// Stores spans received over OTLP, one batch per trace, all or nothing: creates each trace from
    /// `batch.trace` when it does not exist yet, or folds the batch's times and root state into it, marks its
    /// spans as kept in this store (`mlflow.trace.spansLocation`), and stores the spans (replacing ones with
    /// the same ids).
    async fn log_spans(&self, batches: Vec<SpanBatch>) -> StoreResult<()>;
    /// `log_spans` for writes nobody waits for (the LLM gateway's traces): a store that can, runs them
    /// behind every other use of the machine's processors (SQLite: a writer thread at idle priority).
    async fn log_spans_in_background(&self, batches: Vec<SpanBatch>) -> StoreResult<()> {
        self.log_spans(batches).await
    }
    /// Links traces to a run (at most 100 at once; ids of traces that do not exist are skipped); the run
    /// must exist.
    async fn link_traces_to_run(&self, trace_ids: &[String], run_id: &str) -> StoreResult<()>;
    /// A trace's spans kept in this store, by start time (none for a trace whose spans are an artifact).
    async fn get_trace_spans(&self, trace_id: &str) -> StoreResult<Vec<serde_json::Value>>;
    /// How many traces of the experiments match a search filter (all when none).
    async fn count_traces(&self, experiment_ids: &[String], filter: Option<&str>) -> StoreResult<i64>;
    /// The rows behind a trace metric, oldest first; refuses to read more than a bounded number.
    async fn trace_metric_rows(&self, query: &TraceMetricsQuery) -> StoreResult<Vec<MetricRow>>;
    /// Deletes traces by id, or the oldest ones before a time; returns how many.
    async fn delete_traces(
        &self,
        experiment_id: &str,
        trace_ids: &[String],
        max_timestamp_millis: Option<i64>,
        max_traces: Option<i64>,
    ) -> StoreResult<i64>;
    /// `delete_traces` of the oldest traces before a time, for sweeps nobody waits for: a store that can,
    /// runs it behind every other use of the machine's processors, as `log_spans_in_background`.
    async fn delete_old_traces_in_background(
        &self,
        experiment_id: &str,
        max_timestamp_millis: i64,
        max_traces: i64,
    ) -> StoreResult<i64> {
        self.delete_traces(experiment_id, &[], Some(max_timestamp_millis), Some(max_traces))
            .await
    }
}

/// Everything a server needs from metadata storage.
pub trait MetadataStore:
    ExperimentStore
    + RunStore
    + LoggedModelStore
    + RegistryStore
    + TraceStore
    + DeploymentStore
    + MonitorStore
    + DatasetStore
    + GateStore
    + PipelineStore
    + EvalDatasetStore
    + ScorerStore
    + IssueStore
    + WebhookStore
    + crate::access::AccessStore
    + crate::gateway::GatewayKeyStore
    + crate::features::FeatureDefinitionStore
{
}

impl<
    T: ExperimentStore
        + RunStore
        + LoggedModelStore
        + RegistryStore
        + TraceStore
        + DeploymentStore
        + MonitorStore
        + DatasetStore
        + GateStore
        + PipelineStore
        + EvalDatasetStore
        + ScorerStore
        + IssueStore
        + WebhookStore
        + crate::access::AccessStore
        + crate::gateway::GatewayKeyStore
        + crate::features::FeatureDefinitionStore,
> MetadataStore for T
{
}

/// Deployments, their audit trail, and the history of registry aliases. Updates are optimistic: each names
/// the revision it read, so two replicas (or a user and the rollout controller) never overwrite each other.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores a new deployment at revision 1 with its first event; `AlreadyExists` if the name is taken.
    async fn create_deployment(
        &self,
        name: &str,
        spec: &str,
        state: &str,
        event: &DeploymentEvent,
    ) -> StoreResult<DeploymentRecord>;
    /// One deployment; `NotFound` if missing.
    async fn get_deployment(&self, name: &str) -> StoreResult<DeploymentRecord>;
    /// Every deployment, by name.
    async fn list_deployments(&self) -> StoreResult<Vec<DeploymentRecord>>;
    /// Replaces spec and state if the stored revision is still `expected_revision`, appending `events` in the
    /// same transaction; `Conflict` otherwise, and nothing is written.
    async fn update_deployment(
        &self,
        name: &str,
        expected_revision: i64,
        spec: &str,
        state: &str,
        events: &[DeploymentEvent],
    ) -> StoreResult<DeploymentRecord>;
    /// Deletes a deployment and its events.
    async fn delete_deployment(&self, name: &str) -> StoreResult<()>;
    /// Appends an event that changes no state (a guardrail reading, a refused request).
    async fn append_deployment_event(&self, event: &DeploymentEvent) -> StoreResult<()>;
    /// Events with an id above `after`, oldest first, at most `limit`.
    async fn deployment_events(&self, name: &str, after: i64, limit: usize) -> StoreResult<Vec<DeploymentEvent>>;
    /// Alias changes of a registered model (one alias, or all), oldest first.
    async fn alias_history(&self, name: &str, alias: Option<&str>) -> StoreResult<Vec<AliasChange>>;
}

/// Monitors, their window results and history, and reference profiles of model versions. Monitor updates are
/// optimistic as deployments' are: two replicas evaluating the same monitor never both record a window.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Stores a new monitor at revision 1 with its first event; `AlreadyExists` if the name is taken.
    async fn create_monitor(
        &self,
        name: &str,
        spec: &str,
        state: &str,
        event: &MonitorEvent,
    ) -> StoreResult<MonitorRecord>;
    /// One monitor; `NotFound` if missing.
    async fn get_monitor(&self, name: &str) -> StoreResult<MonitorRecord>;
    /// Every monitor, by name.
    async fn list_monitors(&self) -> StoreResult<Vec<MonitorRecord>>;
    /// Replaces spec and state if the stored revision is still `expected_revision`, storing `windows` (each
    /// replacing any earlier result of the same window) and appending `events` in the same transaction;
    /// `Conflict` otherwise, and nothing is written.
    async fn update_monitor(
        &self,
        name: &str,
        expected_revision: i64,
        update: &MonitorUpdate<'_>,
    ) -> StoreResult<MonitorRecord>;
    /// Deletes a monitor with its windows and events.
    async fn delete_monitor(&self, name: &str) -> StoreResult<()>;
    /// Window results with a key of at least `from_key`, oldest first, at most `limit`.
    async fn monitor_windows(&self, monitor: &str, from_key: i64, limit: usize) -> StoreResult<Vec<MonitorWindow>>;
    /// The newest `limit` window results, newest first.
    async fn latest_monitor_windows(&self, monitor: &str, limit: usize) -> StoreResult<Vec<MonitorWindow>>;
    /// Events with an id above `after`, oldest first, at most `limit`.
    async fn monitor_events(&self, monitor: &str, after: i64, limit: usize) -> StoreResult<Vec<MonitorEvent>>;
    /// Sets (or replaces) a model version's reference profile.
    async fn set_reference(&self, reference: &ReferenceRecord) -> StoreResult<()>;
    /// A model version's reference profile; `NotFound` if none was set.
    async fn get_reference(&self, name: &str, version: &str) -> StoreResult<ReferenceRecord>;
}

/// What one monitor update writes.
#[derive(Debug, Clone, Copy)]
pub struct MonitorUpdate<'a> {
    /// The new specification, JSON.
    pub spec: &'a str,
    /// The new state, JSON.
    pub state: &'a str,
    /// Window results to store.
    pub windows: &'a [MonitorWindow],
    /// Events to append.
    pub events: &'a [MonitorEvent],
}

/// Dataset versions. Registering content a name already has returns that version, so pushing the same data
/// twice (or from two machines) makes one version.
#[async_trait]
pub trait DatasetStore: Send + Sync {
    /// Stores `version` under the next number of its name (its `version` and `creation_time` are set here),
    /// or returns the existing version with the same content; the flag says whether it is new.
    async fn register_dataset_version(&self, version: &DatasetVersion) -> StoreResult<(DatasetVersion, bool)>;
    /// One version; `NotFound` if missing.
    async fn get_dataset_version(&self, name: &str, version: i64) -> StoreResult<DatasetVersion>;
    /// The newest version of a dataset; `NotFound` if it has none.
    async fn latest_dataset_version(&self, name: &str) -> StoreResult<DatasetVersion>;
    /// Versions of a dataset below `before` (all when `None`), newest first, at most `limit`.
    async fn dataset_versions(&self, name: &str, before: Option<i64>, limit: usize)
    -> StoreResult<Vec<DatasetVersion>>;
    /// Every dataset with its newest version, by name.
    async fn list_datasets(&self) -> StoreResult<Vec<DatasetSummary>>;
    /// Every distinct content id any version refers to (for garbage collection).
    async fn dataset_content_hashes(&self) -> StoreResult<Vec<String>>;
}

/// Gate policies, evaluations and overrides.
#[async_trait]
pub trait GateStore: Send + Sync {
    /// Sets (or replaces) a model's policy; returns it with its new revision.
    async fn set_gate_policy(&self, name: &str, policy: &str, actor: &str) -> StoreResult<GatePolicyRecord>;
    /// A model's policy; `NotFound` if it has none.
    async fn get_gate_policy(&self, name: &str) -> StoreResult<GatePolicyRecord>;
    /// Removes a model's policy.
    async fn delete_gate_policy(&self, name: &str) -> StoreResult<()>;
    /// Records an evaluation (its id and time are set here).
    async fn record_gate_evaluation(&self, evaluation: &GateEvaluation) -> StoreResult<GateEvaluation>;
    /// The newest evaluations of a version, newest first, at most `limit`.
    async fn gate_evaluations(&self, name: &str, version: i64, limit: usize) -> StoreResult<Vec<GateEvaluation>>;
    /// Records an override (its id and time are set here).
    async fn record_gate_override(&self, record: &GateOverride) -> StoreResult<GateOverride>;
    /// A model's overrides, newest first, at most `limit`.
    async fn gate_overrides(&self, name: &str, limit: usize) -> StoreResult<Vec<GateOverride>>;
}

/// Pipelines registered on the server and their runs. Pipeline updates are optimistic (two replicas checking
/// triggers never both start a run for one event); run updates name the replica that owns the run.
#[async_trait]
pub trait PipelineStore: Send + Sync {
    /// Stores a new pipeline at revision 1; `AlreadyExists` if the name is taken.
    async fn create_pipeline(&self, name: &str, spec: &str, state: &str) -> StoreResult<PipelineRecord>;
    /// One pipeline; `NotFound` if missing.
    async fn get_pipeline(&self, name: &str) -> StoreResult<PipelineRecord>;
    /// Every pipeline, by name.
    async fn list_pipelines(&self) -> StoreResult<Vec<PipelineRecord>>;
    /// Replaces spec and state if the stored revision is still `expected_revision`; `Conflict` otherwise.
    async fn update_pipeline(
        &self,
        name: &str,
        expected_revision: i64,
        spec: &str,
        state: &str,
    ) -> StoreResult<PipelineRecord>;
    /// Deletes a pipeline (its runs are kept as history).
    async fn delete_pipeline(&self, name: &str) -> StoreResult<()>;
    /// Stores a new run (its times are set here).
    async fn create_pipeline_run(&self, run: &PipelineRunRecord) -> StoreResult<PipelineRunRecord>;
    /// Sets a run's status, record, owner and end (and its heartbeat).
    async fn update_pipeline_run(
        &self,
        run_id: &str,
        status: &str,
        record: &str,
        owner: &str,
        end_time: Option<i64>,
    ) -> StoreResult<()>;
    /// Takes a queued run for `owner` (it becomes `running`); false if it was no longer queued (another
    /// replica took it, or it was cancelled).
    async fn claim_pipeline_run(&self, run_id: &str, owner: &str) -> StoreResult<bool>;
    /// Marks a run as asked to stop; `NotFound` if missing.
    async fn request_pipeline_run_cancel(&self, run_id: &str) -> StoreResult<()>;
    /// One run; `NotFound` if missing.
    async fn get_pipeline_run(&self, run_id: &str) -> StoreResult<PipelineRunRecord>;
    /// Runs of a pipeline (all when `None`), newest first, at most `limit`.
    async fn pipeline_runs(&self, pipeline: Option<&str>, limit: usize) -> StoreResult<Vec<PipelineRunRecord>>;
    /// Runs queued or running, oldest first.
    async fn active_pipeline_runs(&self) -> StoreResult<Vec<PipelineRunRecord>>;
}

/// MLflow 3's GenAI evaluation datasets. A dataset and each record are JSON documents in the shape the
/// client reads; records are keyed by a hash of their inputs, so the same inputs update one record.
#[async_trait]
pub trait EvalDatasetStore: Send + Sync {
    /// Creates a dataset (its document complete) linked to experiments.
    async fn create_eval_dataset(&self, dataset: &serde_json::Value, experiment_ids: &[String]) -> StoreResult<()>;
    /// A dataset, with its experiment ids.
    async fn get_eval_dataset(&self, dataset_id: &str) -> StoreResult<serde_json::Value>;
    /// Deletes a dataset and its records.
    async fn delete_eval_dataset(&self, dataset_id: &str) -> StoreResult<()>;
    /// Datasets linked to any of the experiments (all when none are given), filtered and ordered.
    async fn search_eval_datasets(&self, search: &EvalDatasetSearch) -> StoreResult<Page<serde_json::Value>>;
    /// Changes a dataset's document (tags) in one transaction.
    async fn change_eval_dataset(&self, dataset_id: &str, change: DocumentChange) -> StoreResult<serde_json::Value>;
    /// Links and unlinks experiments; answers the dataset.
    async fn change_eval_dataset_experiments(
        &self,
        dataset_id: &str,
        add: &[String],
        remove: &[String],
    ) -> StoreResult<serde_json::Value>;
    /// Inserts records, or merges each into the record with the same inputs (`merge` makes the stored
    /// document from the old one and the new one), then lets `finish` update the dataset's document from
    /// all its records. Answers (inserted, updated).
    async fn upsert_eval_records(
        &self,
        dataset_id: &str,
        records: Vec<EvalRecord>,
        merge: RecordMerge,
        finish: DatasetFinish,
    ) -> StoreResult<(i64, i64)>;
    /// A page of a dataset's records, oldest first.
    async fn get_eval_records(&self, dataset_id: &str, page: &PageRequest) -> StoreResult<Page<serde_json::Value>>;
    /// Deletes records by id; answers how many.
    async fn delete_eval_records(
        &self,
        dataset_id: &str,
        record_ids: &[String],
        finish: DatasetFinish,
    ) -> StoreResult<i64>;
}

/// MLflow 3's registered scorers: serialized scorers, versioned per experiment and name. Stored, never run.
#[async_trait]
pub trait ScorerStore: Send + Sync {
    /// Registers the next version of a scorer (its id stays the same across versions); answers it.
    async fn register_scorer(&self, experiment_id: &str, name: &str, serialized: &str) -> StoreResult<ScorerVersion>;
    /// The newest version of each scorer of the experiments (all active experiments when none are given).
    async fn list_scorers(&self, experiment_ids: &[String]) -> StoreResult<Vec<ScorerVersion>>;
    /// Every version of one scorer, oldest first.
    async fn scorer_versions(&self, experiment_id: &str, name: &str) -> StoreResult<Vec<ScorerVersion>>;
    /// One version, or the newest.
    async fn get_scorer(&self, experiment_id: &str, name: &str, version: Option<i64>) -> StoreResult<ScorerVersion>;
    /// One version of the scorer with this id (its id is the same across versions).
    async fn scorer_by_id(&self, scorer_id: &str, version: i64) -> StoreResult<ScorerVersion>;
    /// Deletes one version, or all of them.
    async fn delete_scorer(&self, experiment_id: &str, name: &str, version: Option<i64>) -> StoreResult<()>;
}

/// MLflow 3's issues: problems found in traces, with a status and a severity.
#[async_trait]
pub trait IssueStore: Send + Sync {
    /// Records a new issue (its id, status default and times already set); the experiment must be active.
    async fn create_issue(&self, issue: &Issue) -> StoreResult<()>;
    /// One issue.
    async fn get_issue(&self, issue_id: &str) -> StoreResult<Issue>;
    /// Changes an issue, bumping its last-updated time; answers it.
    async fn update_issue(&self, issue_id: &str, change: &IssueChange) -> StoreResult<Issue>;
    /// Issues, most severe first, then newest.
    async fn search_issues(&self, search: &IssueSearch) -> StoreResult<Page<Issue>>;
}

/// Registry webhooks: where registry events are delivered. Deleted webhooks are kept out of every answer.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Records a new webhook.
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()>;
    /// One webhook (not deleted).
    async fn get_webhook(&self, webhook_id: &str) -> StoreResult<Webhook>;
    /// Webhooks, newest first.
    async fn list_webhooks(&self, page: &PageRequest) -> StoreResult<Page<Webhook>>;
    /// Changes a webhook; answers it.
    async fn update_webhook(&self, webhook_id: &str, change: &WebhookChange) -> StoreResult<Webhook>;
    /// Deletes a webhook (it stops receiving events at once).
    async fn delete_webhook(&self, webhook_id: &str) -> StoreResult<()>;
    /// The active webhooks subscribed to an event.
    async fn webhooks_for_event(&self, entity: &str, action: &str) -> StoreResult<Vec<Webhook>>;
}
