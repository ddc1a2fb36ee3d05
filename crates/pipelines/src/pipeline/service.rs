//! Pipelines registered on the server: a project directory the operator allowed (`--pipeline-root`), runs
//! queued by a person or a trigger and run as tasks (a status URL, step states, logs, cancellation) up to a
//! concurrency limit, one at a time per pipeline. Run state is in the metadata store; a run whose server
//! stopped is marked failed with the reason when that server starts again (or, for another replica, when its
//! heartbeat goes stale), never left running.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use loopline_metadata_store::{MetadataStore, PipelineRecord, PipelineRunRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::executor::LocalExecutor;
use super::runner::{LoopHooks, RunOptions, RunRecord, Runner, Unobserved, new_run_id};
use super::spec::{Pipeline, Trigger, read_pipeline_file};
use crate::data::Project;
use crate::datasets::DataError;

/// The most bytes of a step's log one request returns.
pub const MAX_LOG_CHUNK: u64 = 1 << 20;

/// How the server runs pipelines.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Directories under which registered projects may live; none: the server runs no pipelines.
    pub roots: Vec<PathBuf>,
    /// Runs at once on this server.
    pub max_concurrent_runs: usize,
    /// How often triggers are checked and queued runs started.
    pub tick: Duration,
    /// This server's lasting identity (the same after a restart on the same data directory).
    pub replica: String,
    /// Another replica's run whose heartbeat is older than this is marked failed.
    pub stale_after: Duration,
    /// The binary validate and profile steps run.
    pub loopline: PathBuf,
    /// The Ray cluster for steps marked `executor: ray`.
    pub ray: Option<super::ray::RaySettings>,
}

/// Makes the loop's hooks (the server's own API) for a project.
pub trait HooksFactory: Send + Sync {
    /// Hooks for `project`.
    fn hooks(&self, project: Arc<Project>) -> Result<Arc<dyn LoopHooks>, String>;
}

/// The time, replaceable in tests (a paused clock).
pub trait Clock: Send + Sync {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        loopline_core::time::now_millis()
    }
}

/// What a registered pipeline is, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// The project's root (canonical).
    pub directory: String,
    /// The pipeline file, relative to the directory.
    pub file: String,
    /// Parameter values replacing the file's.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Its triggers, as the file gave them when it was registered.
    pub triggers: Vec<Trigger>,
    /// Its steps, in run order.
    pub steps: Vec<String>,
    /// Its parameters' keys (a run may set only these).
    #[serde(default)]
    pub param_keys: Vec<String>,
    /// Who registered it.
    pub registered_by: String,
}

/// Where each trigger has got to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerState {
    /// Schedules are due after this time.
    #[serde(default)]
    pub schedule_checked_ms: i64,
    /// The newest version seen of each dataset.
    #[serde(default)]
    pub datasets: BTreeMap<String, i64>,
    /// The newest version seen of each registered model.
    #[serde(default)]
    pub models: BTreeMap<String, i64>,
    /// The last event seen of each monitor.
    #[serde(default)]
    pub alerts: BTreeMap<String, i64>,
}

/// Why a run was started, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// `manual`, `schedule`, `dataset`, `model` or `alert`.
    pub kind: String,
    /// In words.
    pub detail: String,
    /// What caused it (the dataset version, the model version, the monitor event...).
    #[serde(default)]
    pub source: Value,
    /// Parameter values for this run.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Steps run even when cached.
    #[serde(default)]
    pub force: BTreeSet<String>,
    /// Every step run even when cached.
    #[serde(default)]
    pub force_all: bool,
    /// The project's directory when the run was queued (its logs are found there whatever happens to the
    /// registration later).
    #[serde(default)]
    pub directory: String,
    /// The pipeline's steps when the run was queued.
    #[serde(default)]
    pub steps: Vec<String>,
    /// The registration (directory, file, steps) the run was queued against: a run that starts after the
    /// pipeline is registered again still runs what it was queued for, and its logs stay where they were.
    #[serde(default)]
    pub registration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    #[serde(default)]
    name: Option<String>,
    directory: String,
    #[serde(default = "default_file")]
    file: String,
    #[serde(default)]
    params: BTreeMap<String, Value>,
}

fn default_file() -> String {
    "loopline.yaml".into()
}

/// A run asked for through the API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Parameter values for this run.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Steps run even when cached.
    #[serde(default)]
    pub force: BTreeSet<String>,
    /// Every step run even when cached.
    #[serde(default)]
    pub force_all: bool,
}

/// Pipelines on the server.
pub struct PipelineService {
    pub(super) store: Arc<dyn MetadataStore>,
    settings: PipelineSettings,
    hooks: Arc<dyn HooksFactory>,
    pub(super) clock: Arc<dyn Clock>,
    running: Mutex<HashMap<String, CancellationToken>>,
    wake: tokio::sync::Notify,
}

impl PipelineService {
    /// The service; [`PipelineService::start`] begins checking triggers and running queued runs.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        settings: PipelineSettings,
        hooks: Arc<dyn HooksFactory>,
        clock: Arc<dyn Clock>,
    ) -> Arc<PipelineService> {
        Arc::new(PipelineService {
            store,
            settings,
            hooks,
            clock,
            running: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Whether this server runs pipelines at all.
    pub fn enabled(&self) -> bool {
        !self.settings.roots.is_empty()
    }

    /// Marks runs this server left behind as failed, then checks triggers and starts queued runs every tick.
    pub async fn start(self: &Arc<Self>) {
        if let Err(error) = self.recover().await {
            tracing::warn!(%error, "could not check pipeline runs left by an earlier start");
        }
        if !self.enabled() {
            return;
        }
        let service: Weak<PipelineService> = Arc::downgrade(self);
        let tick = self.settings.tick;
        tokio::spawn(async move {
            loop {
                let Some(current) = service.upgrade() else { return };
                if let Err(error) = current.tick().await {
                    tracing::warn!(%error, "pipeline triggers and queue");
                }
                let wake = current.clone();
                drop(current);
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    () = wake.wake.notified() => {}
                }
            }
        });
    }

    /// One round: triggers checked, stale runs of other replicas failed, queued runs started.
    pub async fn tick(self: &Arc<Self>) -> Result<(), DataError> {
        self.check_triggers().await?;
        self.reap_stale().await?;
        self.dispatch().await
    }

    fn running_here(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    async fn recover(&self) -> Result<(), DataError> {
        for run in self.store.active_pipeline_runs().await? {
            if run.status == "running" && run.owner == self.settings.replica {
                // What its steps left running goes, and its steps are marked as ended.
                let cause: Cause = serde_json::from_str(&run.cause).unwrap_or_default();
                let mut record = json!({});
                if !cause.directory.is_empty() {
                    let project = PathBuf::from(&cause.directory);
                    let directory = project.join(".loopline/pipeline-runs").join(&run.run_id);
                    let status_path = directory.join("status.json");
                    record = tokio::task::spawn_blocking(move || {
                        super::executor::kill_leftovers(&directory, &project);
                        std::fs::read(&status_path)
                            .ok()
                            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                            .unwrap_or_else(|| json!({}))
                    })
                    .await
                    .unwrap_or_else(|_| json!({}));
                }
                for step in record["steps"].as_array_mut().into_iter().flatten() {
                    match step["state"].as_str() {
                        Some("running") => {
                            step["state"] = json!("failed");
                            step["reason"] = json!("the server stopped while it ran");
                        }
                        Some("pending") => {
                            step["state"] = json!("skipped");
                            step["reason"] = json!("the server stopped before it ran");
                        }
                        _ => {}
                    }
                }
                self.fail_with(
                    &run,
                    record,
                    "the server stopped while this run was in progress (found when it started again); start the run again",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn reap_stale(&self) -> Result<(), DataError> {
        let now = self.clock.now_ms();
        let stale = self.settings.stale_after.as_millis() as i64;
        for run in self.store.active_pipeline_runs().await? {
            if run.status == "running" && run.owner != self.settings.replica && now - run.last_update_time > stale {
                self.fail(
                    &run,
                    &format!(
                        "the server running it ({}) stopped answering {} s ago; start the run again",
                        run.owner,
                        (now - run.last_update_time) / 1000
                    ),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn fail(&self, run: &PipelineRunRecord, why: &str) -> Result<(), DataError> {
        let record: Value = serde_json::from_str(&run.record).unwrap_or_else(|_| json!({}));
        self.fail_with(run, record, why).await
    }

    /// Records a run as failed, with `why` added to `record`.
    async fn fail_with(&self, run: &PipelineRunRecord, mut record: Value, why: &str) -> Result<(), DataError> {
        record["error"] = json!(why);
        self.store
            .update_pipeline_run(
                &run.run_id,
                "failed",
                &record.to_string(),
                &run.owner,
                Some(self.clock.now_ms()),
            )
            .await?;
        Ok(())
    }

    /// Starts queued runs while this server has room, one at a time per pipeline.
    async fn dispatch(self: &Arc<Self>) -> Result<(), DataError> {
        let active = self.store.active_pipeline_runs().await?;
        // One run at a time per pipeline, and per project directory (two pipelines may share one).
        let directory = |run: &PipelineRunRecord| {
            serde_json::from_str::<Cause>(&run.cause)
                .map(|c| c.directory)
                .unwrap_or_default()
        };
        let mut busy: HashSet<String> = active
            .iter()
            .filter(|r| r.status == "running")
            .flat_map(|r| [r.pipeline.clone(), format!("directory:{}", directory(r))])
            .collect();
        for run in active.into_iter().filter(|r| r.status == "queued") {
            if run.cancel_requested {
                self.store
                    .update_pipeline_run(
                        &run.run_id,
                        "cancelled",
                        &json!({"error": "cancelled before it started"}).to_string(),
                        &run.owner,
                        Some(self.clock.now_ms()),
                    )
                    .await?;
                continue;
            }
            if self.running_here() >= self.settings.max_concurrent_runs.max(1) {
                break;
            }
            let place = format!("directory:{}", directory(&run));
            if busy.contains(&run.pipeline)
                || busy.contains(&place)
                || !self
                    .store
                    .claim_pipeline_run(&run.run_id, &self.settings.replica)
                    .await?
            {
                continue;
            }
            busy.insert(run.pipeline.clone());
            busy.insert(place);
            let token = CancellationToken::new();
            if let Ok(mut running) = self.running.lock() {
                running.insert(run.run_id.clone(), token.clone());
            }
            let service = self.clone();
            tokio::spawn(async move {
                let outcome = service.execute(&run, &token).await;
                let (status, record) = match outcome {
                    Ok(record) => (record.status.clone(), serde_json::to_value(&record).unwrap_or_default()),
                    Err(why) => ("failed".to_string(), json!({"error": why})),
                };
                if let Err(error) = service
                    .store
                    .update_pipeline_run(
                        &run.run_id,
                        &status,
                        &record.to_string(),
                        &service.settings.replica,
                        Some(service.clock.now_ms()),
                    )
                    .await
                {
                    tracing::error!(%error, run = %run.run_id, "could not record the end of a pipeline run");
                }
                if let Ok(mut running) = service.running.lock() {
                    running.remove(&run.run_id);
                }
                service.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Runs one claimed run to its end, recording its steps as they change.
    async fn execute(&self, run: &PipelineRunRecord, cancel: &CancellationToken) -> Result<RunRecord, String> {
        let cause: Cause = serde_json::from_str(&run.cause).map_err(|e| format!("the run's cause: {e}"))?;
        let stored_spec = match &cause.registration {
            Some(registration) => registration.clone(),
            // Runs queued before registrations were kept with them.
            None => {
                self.store
                    .get_pipeline(&run.pipeline)
                    .await
                    .map_err(|e| format!("the pipeline: {e}"))?
                    .spec
            }
        };
        let spec: PipelineSpec = serde_json::from_str(&stored_spec).map_err(|e| format!("the stored pipeline: {e}"))?;
        let name = run.pipeline.clone();
        let (pipeline, project) = {
            let spec = spec.clone();
            let params = cause.params.clone();
            let roots = self.settings.roots.clone();
            tokio::task::spawn_blocking(move || read_registered(&spec, &name, &params, &roots))
                .await
                .map_err(|e| format!("reading the pipeline stopped: {e}"))??
        };
        let hooks = self.hooks.hooks(project.clone())?;
        let runner = with_ray(
            Runner::new(project, Arc::new(LocalExecutor), self.settings.loopline.clone()).with_hooks(hooks),
            self.settings.ray.as_ref(),
        )?;
        let options = RunOptions {
            force: cause.force.clone(),
            force_all: cause.force_all,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            run_id: run.run_id.clone(),
            cause: cause.detail.clone(),
        };
        let status_path = runner.run_directory(&run.run_id).join("status.json");
        let heartbeat = async {
            let every = self.settings.tick.min(Duration::from_secs(2));
            loop {
                tokio::time::sleep(every).await;
                let record = tokio::fs::read_to_string(&status_path)
                    .await
                    .unwrap_or_else(|_| "{}".to_string());
                let _ = self
                    .store
                    .update_pipeline_run(&run.run_id, "running", &record, &self.settings.replica, None)
                    .await;
                if self
                    .store
                    .get_pipeline_run(&run.run_id)
                    .await
                    .is_ok_and(|r| r.cancel_requested)
                {
                    cancel.cancel();
                }
            }
        };
        tokio::select! {
            record = runner.run(&pipeline, &options, cancel, &Unobserved) => record,
            () = heartbeat => unreachable!("the heartbeat never ends"),
        }
    }

    /// Registers a pipeline (or, with `replace`, registers it again after its file changed).
    pub async fn register(
        &self,
        request: Value,
        actor: &str,
        replace: Option<&str>,
    ) -> Result<PipelineRecord, DataError> {
        if !request.is_object() {
            return Err(DataError::Invalid(
                "the pipeline registration is a JSON object: {\"directory\", \"file\", \"name\", \"params\"}".into(),
            ));
        }
        let registration: Registration = serde_json::from_value(request)
            .map_err(|e| DataError::Invalid(format!("the pipeline registration is not valid: {e}")))?;
        let roots = self.settings.roots.clone();
        let loopline = self.settings.loopline.clone();
        let ray = self.settings.ray.clone();
        let hooks = self.hooks.clone();
        let actor = actor.to_string();
        let (spec, name) = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let directory = confined(Path::new(&registration.directory), &roots)?;
            let fallback = registration.name.clone().unwrap_or_else(|| "pipeline".into());
            let mut spec = PipelineSpec {
                directory: directory.display().to_string(),
                file: registration.file.clone(),
                params: registration.params.clone(),
                triggers: Vec::new(),
                steps: Vec::new(),
                param_keys: Vec::new(),
                registered_by: actor,
            };
            let (pipeline, project) = read_registered(&spec, &fallback, &BTreeMap::new(), &roots)?;
            let runner = with_ray(
                Runner::new(project.clone(), Arc::new(LocalExecutor), loopline).with_hooks(hooks.hooks(project)?),
                ray.as_ref(),
            )?;
            runner.check(&pipeline)?;
            let name = registration.name.unwrap_or(pipeline.name.clone());
            crate::data::pointer::check_name(&name).map_err(|e| format!("name: {e}"))?;
            spec.triggers = pipeline.triggers.clone();
            spec.steps = pipeline.steps.iter().map(|s| s.name.clone()).collect();
            spec.param_keys = pipeline.params.keys().cloned().collect();
            Ok((spec, name))
        })
        .await
        .map_err(|e| DataError::Internal(format!("checking the pipeline stopped: {e}")))?
        .map_err(DataError::Invalid)?;
        if let Some(replaced) = replace
            && replaced != name
        {
            return Err(DataError::Invalid(format!(
                "the registration names the pipeline '{name}', not '{replaced}' (the URL's); give \"name\": \"{replaced}\""
            )));
        }
        let spec_text = serde_json::to_string(&spec).map_err(|e| DataError::Internal(e.to_string()))?;
        let state = self.initial_state(&spec.triggers).await?;
        let state_text = serde_json::to_string(&state).map_err(|e| DataError::Internal(e.to_string()))?;
        Ok(match replace {
            None => self.store.create_pipeline(&name, &spec_text, &state_text).await?,
            Some(_) => {
                let current = self.store.get_pipeline(&name).await?;
                self.store
                    .update_pipeline(&name, current.revision, &spec_text, &state_text)
                    .await?
            }
        })
    }

    /// A pipeline.
    pub async fn get(&self, name: &str) -> Result<PipelineRecord, DataError> {
        Ok(self.store.get_pipeline(name).await?)
    }

    /// Every pipeline.
    pub async fn list(&self) -> Result<Vec<PipelineRecord>, DataError> {
        Ok(self.store.list_pipelines().await?)
    }

    /// Removes a pipeline (its runs stay as history; a run in progress finishes).
    pub async fn delete(&self, name: &str) -> Result<(), DataError> {
        Ok(self.store.delete_pipeline(name).await?)
    }

    /// Queues a run; it starts when the server has room and no other run of the pipeline is in progress.
    pub async fn queue(&self, name: &str, cause: Cause) -> Result<PipelineRunRecord, DataError> {
        let pipeline = self.store.get_pipeline(name).await?;
        let spec: PipelineSpec =
            serde_json::from_str(&pipeline.spec).map_err(|e| DataError::Internal(e.to_string()))?;
        for step in &cause.force {
            if !spec.steps.contains(step) {
                return Err(DataError::Invalid(format!("force: the pipeline has no step '{step}'")));
            }
        }
        for key in cause.params.keys() {
            if !spec.param_keys.contains(key) {
                return Err(DataError::Invalid(format!(
                    "params: '{key}' is not a parameter of the pipeline (it has {})",
                    if spec.param_keys.is_empty() {
                        "none".to_string()
                    } else {
                        spec.param_keys.join(", ")
                    }
                )));
            }
        }
        confined(Path::new(&spec.directory), &self.settings.roots).map_err(DataError::Invalid)?;
        let mut cause = cause;
        cause.directory = spec.directory.clone();
        cause.steps = spec.steps.clone();
        cause.registration = Some(pipeline.spec.clone());
        let cause_text = serde_json::to_string(&cause).map_err(|e| DataError::Internal(e.to_string()))?;
        let run = self
            .store
            .create_pipeline_run(&PipelineRunRecord {
                run_id: new_run_id(),
                pipeline: name.to_string(),
                cause: cause_text,
                status: "queued".into(),
                record: "{}".into(),
                owner: String::new(),
                cancel_requested: false,
                creation_time: 0,
                last_update_time: 0,
                end_time: None,
            })
            .await?;
        self.wake.notify_one();
        Ok(run)
    }

    /// Asks a run to stop (a queued run never starts; a running one stops its steps).
    pub async fn cancel(&self, run_id: &str) -> Result<PipelineRunRecord, DataError> {
        let run = self.store.get_pipeline_run(run_id).await?;
        if !matches!(run.status.as_str(), "queued" | "running") {
            return Err(DataError::Conflict(format!(
                "run {run_id} has already ended ({})",
                run.status
            )));
        }
        self.store.request_pipeline_run_cancel(run_id).await?;
        if let Some(token) = self.running.lock().ok().and_then(|r| r.get(run_id).cloned()) {
            token.cancel();
        }
        self.wake.notify_one();
        Ok(self.store.get_pipeline_run(run_id).await?)
    }

    /// A run.
    pub async fn run(&self, run_id: &str) -> Result<PipelineRunRecord, DataError> {
        Ok(self.store.get_pipeline_run(run_id).await?)
    }

    /// Runs of a pipeline (or all), newest first.
    pub async fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<PipelineRunRecord>, DataError> {
        Ok(self.store.pipeline_runs(pipeline, limit).await?)
    }

    /// Part of a step's log from `offset`: the text, the offset to ask from next, and whether the step is done
    /// writing (the run has ended).
    pub async fn log(&self, run_id: &str, step: &str, offset: u64) -> Result<(String, u64, bool), DataError> {
        let run = self.store.get_pipeline_run(run_id).await?;
        let cause: Cause = serde_json::from_str(&run.cause).map_err(|e| DataError::Internal(e.to_string()))?;
        if !cause.steps.iter().any(|s| s == step) {
            return Err(DataError::NotFound(format!(
                "run {run_id} of '{}' has no step '{step}'",
                run.pipeline
            )));
        }
        let done = !matches!(run.status.as_str(), "queued" | "running");
        let path = Path::new(&cause.directory)
            .join(".loopline/pipeline-runs")
            .join(&run.run_id)
            .join(format!("{step}.log"));
        let (text, next) = tokio::task::spawn_blocking(move || read_from(&path, offset))
            .await
            .map_err(|e| DataError::Internal(e.to_string()))?
            .map_err(DataError::Internal)?;
        Ok((text, next, done))
    }
}

/// The runner with the Ray executor when a cluster is configured.
pub fn with_ray(runner: Runner, ray: Option<&super::ray::RaySettings>) -> Result<Runner, String> {
    Ok(match ray {
        Some(settings) => runner.with_ray(Arc::new(super::ray::RayExecutor::new(settings.clone())?)),
        None => runner,
    })
}

/// Reads at most [`MAX_LOG_CHUNK`] bytes of a file from `offset` (whole characters only).
fn read_from(path: &Path, offset: u64) -> Result<(String, u64), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), offset)),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let length = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    if offset >= length {
        return Ok((String::new(), offset.min(length)));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_CHUNK)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Stop before a character cut in half; the next request starts with it.
    let mut end = bytes.len();
    while end > 0 && std::str::from_utf8(&bytes[..end]).is_err() && bytes.len() - end < 4 {
        end -= 1;
    }
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    Ok((text, offset + end as u64))
}

/// The registered directory, canonical and inside one of the allowed roots.
fn confined(directory: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if roots.is_empty() {
        return Err(
            "this server runs no pipelines; start it with --pipeline-root DIR to allow projects under DIR".into(),
        );
    }
    if !directory.is_absolute() {
        return Err(format!(
            "directory: '{}' is not an absolute path on the server",
            directory.display()
        ));
    }
    let canonical = directory
        .canonicalize()
        .map_err(|e| format!("directory: {}: {e}", directory.display()))?;
    if !canonical.is_dir() {
        return Err(format!("directory: {} is not a directory", directory.display()));
    }
    let allowed = roots
        .iter()
        .filter_map(|root| root.canonicalize().ok())
        .any(|root| canonical.starts_with(root));
    if !allowed {
        return Err(format!(
            "directory: {} is outside the directories this server runs pipelines from (--pipeline-root)",
            canonical.display()
        ));
    }
    Ok(canonical)
}

/// Reads a registered pipeline's file (as it is now) with the registration's and the run's parameters. The
/// directory is checked against the allowed roots again (they may have changed, or the directory been swapped
/// for a link), the file must be a regular file inside it, and the directory itself is the project: a
/// `.loopline` or `.git` above it, outside the root, is never used.
fn read_registered(
    spec: &PipelineSpec,
    name: &str,
    params: &BTreeMap<String, Value>,
    roots: &[PathBuf],
) -> Result<(Pipeline, Arc<Project>), String> {
    let directory = confined(Path::new(&spec.directory), roots)?;
    let file = pipeline_file(&directory, &spec.file)?;
    let text = read_pipeline_file(&file)?;
    let mut overrides = spec.params.clone();
    overrides.extend(params.clone());
    let pipeline = Pipeline::parse_with_params(&text, name, &overrides).map_err(|e| format!("{}: {e}", spec.file))?;
    let project = Project::open(&directory)?;
    Ok((pipeline, Arc::new(project)))
}

/// The pipeline file: canonical, inside the directory, a regular file (a link leading out, a FIFO or a device
/// is refused before it is opened).
fn pipeline_file(directory: &Path, file: &str) -> Result<PathBuf, String> {
    crate::data::manifest::check_data_path(file).map_err(|e| format!("file: {e}"))?;
    let path = directory
        .join(file)
        .canonicalize()
        .map_err(|e| format!("file: {file}: {e}"))?;
    if !path.starts_with(directory) {
        return Err(format!("file: {file} leads outside {}", directory.display()));
    }
    let metadata = std::fs::metadata(&path).map_err(|e| format!("file: {file}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("file: {file} is not a regular file"));
    }
    Ok(path)
}
