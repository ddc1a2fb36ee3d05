//! Runs a pipeline: steps in dependency order (independent ones together, up to a limit), each skipped
//! when its fingerprint is in the run cache and its outputs restorable (`dvc repro`'s rule), otherwise run
//! with retries and a timeout, its outputs stored in the cache. A failed step stops what depends on it;
//! the run's state is written as it changes, for `pipeline status` and the server's API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::executor::{Executor, Finished, Launch};
use super::fingerprint::{CachedRun, ProducedOutput, ResolvedInput, RunCache, fingerprint, restorable};
use super::spec::{Input, Pipeline, Step, StepKind};
use crate::data::{Project, Quiet, write_atomically};

/// The longest wait between retries.
const MAX_BACKOFF_SECONDS: f64 = 300.0;

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for its dependencies.
    Pending,
    /// Running (attempt number).
    Running(u32),
    /// Reused from the run cache.
    Cached,
    /// Ran and succeeded.
    Succeeded,
    /// Failed, with why.
    Failed(String),
    /// Not run, with why (an upstream step failed, the run was cancelled).
    Skipped(String),
}

impl StepState {
    fn done(&self) -> bool {
        !matches!(self, StepState::Pending | StepState::Running(_))
    }

    fn ok(&self) -> bool {
        matches!(self, StepState::Cached | StepState::Succeeded)
    }
}

/// A step's record in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub name: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: StepState,
    /// Seconds it ran (all attempts).
    pub seconds: f64,
    /// Its fingerprint, once known.
    pub fingerprint: Option<String>,
    /// Its result (a built-in step's figures, a registered version...).
    pub result: Value,
    /// The steps it waits for (what the web UI draws the run's graph from; absent in older records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// A run's record, as `status.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// What started it.
    pub cause: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// When it started and ended, ms since the epoch.
    pub started_ms: i64,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// Its steps, in run order.
    pub steps: Vec<StepRecord>,
}

/// How a run is asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Steps run even when cached (`--force STEP`).
    pub force: BTreeSet<String>,
    /// Every step run even when cached.
    pub force_all: bool,
    /// Steps run at once.
    pub jobs: usize,
    /// The run's id.
    pub run_id: String,
    /// What started it.
    pub cause: String,
}

/// Told what happens as it happens.
pub trait Observer: Send + Sync {
    /// A step's state changed.
    fn state(&self, step: &str, state: &StepState);
    /// A step printed a line.
    fn line(&self, step: &str, text: &str);
}

/// An observer that ignores everything.
pub struct Unobserved;

impl Observer for Unobserved {
    fn state(&self, _step: &str, _state: &StepState) {}
    fn line(&self, _step: &str, _text: &str) {}
}

/// What a run knows while it runs, for the loop's built-in steps.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run's id.
    pub run_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// Results of the steps done so far, by name.
    pub results: BTreeMap<String, Value>,
}

/// The loop's operations on a Loopline server: tracking runs for training, resolving dataset versions and
/// models, and the evaluate, gate, register and deploy steps.
#[async_trait]
pub trait LoopHooks: Send + Sync {
    /// Variables for a train step's command: the tracking server and the id of a nested run prepared for it.
    async fn train_env(&self, run: &RunContext, step: &Step) -> Result<BTreeMap<String, String>, String>;
    /// A train step ended: its nested run is ended with the outcome; returns the step's result.
    async fn train_finished(&self, run: &RunContext, step: &Step, succeeded: bool) -> Result<Value, String>;
    /// A dataset input (`name` or `name@version`): the version it resolves to, its content id, and where its
    /// data was made available in the project (read-only, under `.loopline/datasets/`).
    async fn dataset(&self, reference: &str) -> Result<ResolvedDataset, String>;
    /// A model input: the version it resolves to and its content digest.
    async fn model(&self, uri: &str) -> Result<String, String>;
    /// Runs an evaluate, gate, register or deploy step; returns its result.
    async fn builtin(&self, run: &RunContext, step: &Step) -> Result<Value, String>;
    /// The run ended with `status` (`succeeded`, `failed`, `cancelled`).
    async fn finished(&self, run: &RunContext, status: &str);
}

/// A dataset input, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDataset {
    /// `name@version`.
    pub version: String,
    /// Its content id.
    pub hash: String,
    /// Its data in the project.
    pub path: PathBuf,
}

/// The variable a step reads a dataset input's path from: `LOOPLINE_DATASET_` and the name in capitals
/// (other characters as `_`).
pub fn dataset_variable(name: &str) -> String {
    format!("LOOPLINE_DATASET_{}", variable_part(name))
}

/// A name as part of an environment variable's: capitals, digits and `_`.
fn variable_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs pipelines in a project.
pub struct Runner {
    project: Arc<Project>,
    local: Arc<dyn Executor>,
    ray: Option<Arc<dyn Executor>>,
    hooks: Option<Arc<dyn LoopHooks>>,
    loopline: PathBuf,
}

struct Shared {
    record: Mutex<RunRecord>,
    status_path: PathBuf,
    results: Mutex<BTreeMap<String, Value>>,
    /// What the steps write (trimmed of a trailing `/`).
    outputs: Vec<String>,
    /// Content ids of inputs no step writes, identified once per run (ten steps reading one directory of
    /// ten thousand files look at it once).
    identified: Mutex<BTreeMap<String, String>>,
}

impl Shared {
    /// Whether no step of the run writes `path`, inside it, or around it.
    fn untouched(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let inside = |inner: &str, outer: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
        !self
            .outputs
            .iter()
            .any(|output| inside(path, output) || inside(output, path))
    }
}

impl Shared {
    fn set(&self, step: &str, update: impl FnOnce(&mut StepRecord)) {
        if let Ok(mut record) = self.record.lock() {
            if let Some(entry) = record.steps.iter_mut().find(|s| s.name == step) {
                update(entry);
            }
            let _ = write_atomically(
                &self.status_path,
                &serde_json::to_vec_pretty(&*record).unwrap_or_default(),
            );
        }
    }
}

impl Runner {
    /// A runner for `project`; `loopline` is the binary that runs the validate and profile steps.
    pub fn new(project: Arc<Project>, local: Arc<dyn Executor>, loopline: PathBuf) -> Runner {
        Runner {
            project,
            local,
            ray: None,
            hooks: None,
            loopline,
        }
    }

    /// Runs steps marked `executor: ray` there.
    pub fn with_ray(mut self, ray: Arc<dyn Executor>) -> Runner {
        self.ray = Some(ray);
        self
    }

    /// Connects the loop's steps to a server.
    pub fn with_hooks(mut self, hooks: Arc<dyn LoopHooks>) -> Runner {
        self.hooks = Some(hooks);
        self
    }

    /// Where a run's state and logs are kept.
    pub fn run_directory(&self, run_id: &str) -> PathBuf {
        self.project.root().join(".loopline/pipeline-runs").join(run_id)
    }

    /// Checks what must hold before anything runs: every path input exists or is some step's output, and
    /// the loop's steps have a server to talk to.
    pub fn check(&self, pipeline: &Pipeline) -> Result<(), String> {
        let outputs: std::collections::HashSet<&str> = pipeline
            .steps
            .iter()
            .flat_map(|s| s.outputs.iter().map(|o| o.trim_end_matches('/')))
            .collect();
        for step in &pipeline.steps {
            for input in &step.inputs {
                match input {
                    Input::Path(path) => {
                        let inside = path.trim_end_matches('/');
                        let produced = outputs.contains(inside)
                            || inside.match_indices('/').any(|(at, _)| outputs.contains(&inside[..at]));
                        if !produced && !self.project.root().join(path).exists() {
                            return Err(format!(
                                "step '{}', inputs: '{path}' does not exist and no step writes it",
                                step.name
                            ));
                        }
                    }
                    Input::Dataset(_) | Input::Model(_) if self.hooks.is_none() => {
                        return Err(format!(
                            "step '{}', inputs: dataset and model inputs need a Loopline server (--server URL)",
                            step.name
                        ));
                    }
                    _ => {}
                }
            }
            if step.kind.on_server() && self.hooks.is_none() {
                return Err(format!(
                    "step '{}': a {:?} step needs a Loopline server (--server URL)",
                    step.name, step.kind
                ));
            }
            if step.executor == "ray" {
                let Some(ray) = &self.ray else {
                    return Err(format!(
                        "step '{}', executor: a Ray step needs a cluster (--ray-address http://HEAD:8265)",
                        step.name
                    ));
                };
                if !step.outputs.is_empty() && !ray.outputs_come_back() {
                    return Err(format!(
                        "step '{}', outputs: a Ray step's files stay on the cluster unless the project is on a \
                         filesystem every node shares (--ray-shared-directory); log results to MLflow or drop \
                         the outputs",
                        step.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Runs a pipeline to its end (or its cancellation), telling `observer` as it goes.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        options: &RunOptions,
        cancel: &CancellationToken,
        observer: &dyn Observer,
    ) -> Result<RunRecord, String> {
        self.check(pipeline)?;
        // One run at a time per project: two runs writing the same outputs would record each other's files.
        let lock_path = self.project.root().join(".loopline/pipeline.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            format!(
                "another pipeline run is in progress in {}; wait for it to end",
                self.project.root().display()
            )
        })?;
        let directory = self.run_directory(&options.run_id);
        std::fs::create_dir_all(&directory).map_err(|e| format!("creating {}: {e}", directory.display()))?;
        let shared = Arc::new(Shared {
            record: Mutex::new(RunRecord {
                run_id: options.run_id.clone(),
                pipeline: pipeline.name.clone(),
                cause: options.cause.clone(),
                status: "running".into(),
                started_ms: loopline_core::time::now_millis(),
                ended_ms: None,
                steps: pipeline
                    .steps
                    .iter()
                    .map(|s| StepRecord {
                        name: s.name.clone(),
                        state: StepState::Pending,
                        seconds: 0.0,
                        fingerprint: None,
                        result: Value::Null,
                        needs: pipeline
                            .dependencies
                            .get(&s.name)
                            .map(|needs| needs.iter().cloned().collect())
                            .unwrap_or_default(),
                    })
                    .collect(),
            }),
            status_path: directory.join("status.json"),
            results: Mutex::new(BTreeMap::new()),
            outputs: pipeline
                .steps
                .iter()
                .flat_map(|s| s.outputs.iter().map(|o| o.trim_end_matches('/').to_string()))
                .collect(),
            identified: Mutex::new(BTreeMap::new()),
        });
        let mut states: BTreeMap<String, StepState> = pipeline
            .steps
            .iter()
            .map(|s| (s.name.clone(), StepState::Pending))
            .collect();
        let mut running = FuturesUnordered::new();
        let jobs = options.jobs.max(1);
        loop {
            let mut changed = false;
            for step in &pipeline.steps {
                if states[&step.name] != StepState::Pending {
                    continue;
                }
                let dependencies = &pipeline.dependencies[&step.name];
                if let Some(failed) = dependencies.iter().find(|d| states[*d].done() && !states[*d].ok()) {
                    let state = StepState::Skipped(format!("'{failed}' did not succeed"));
                    observer.state(&step.name, &state);
                    shared.set(&step.name, |r| r.state = state.clone());
                    states.insert(step.name.clone(), state);
                    changed = true;
                    continue;
                }
                if cancel.is_cancelled() {
                    let state = StepState::Skipped("the run was cancelled".into());
                    shared.set(&step.name, |r| r.state = state.clone());
                    observer.state(&step.name, &state);
                    states.insert(step.name.clone(), state);
                    changed = true;
                    continue;
                }
                if running.len() < jobs && dependencies.iter().all(|d| states[d].ok()) {
                    states.insert(step.name.clone(), StepState::Running(1));
                    let forced = options.force_all || options.force.contains(&step.name);
                    running.push(self.run_step(pipeline, step, forced, &directory, cancel, observer, shared.clone()));
                    changed = true;
                }
            }
            if changed {
                continue;
            }
            match running.next().await {
                Some((name, state)) => {
                    states.insert(name, state);
                }
                None => break,
            }
        }
        let mut record = shared.record.lock().map_err(|_| "the run record was poisoned")?.clone();
        record.status = if cancel.is_cancelled() {
            "cancelled"
        } else if states.values().all(StepState::ok) {
            "succeeded"
        } else {
            "failed"
        }
        .into();
        record.ended_ms = Some(loopline_core::time::now_millis());
        if let Some(hooks) = &self.hooks {
            let context = RunContext {
                run_id: record.run_id.clone(),
                pipeline: pipeline.name.clone(),
                results: shared.results.lock().map(|r| r.clone()).unwrap_or_default(),
            };
            hooks.finished(&context, &record.status).await;
        }
        write_atomically(
            &shared.status_path,
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )?;
        Ok(record)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        pipeline: &Pipeline,
        step: &Step,
        forced: bool,
        directory: &Path,
        cancel: &CancellationToken,
        observer: &dyn Observer,
        shared: Arc<Shared>,
    ) -> (String, StepState) {
        let started = Instant::now();
        let outcome = self
            .step_outcome(pipeline, step, forced, directory, cancel, observer, &shared)
            .await;
        let state = match outcome {
            Ok(state) => state,
            Err(message) => StepState::Failed(message),
        };
        let seconds = started.elapsed().as_secs_f64();
        observer.state(&step.name, &state);
        shared.set(&step.name, |r| {
            r.state = state.clone();
            r.seconds = seconds;
        });
        (step.name.clone(), state)
    }

    #[allow(clippy::too_many_arguments)]
    async fn step_outcome(
        &self,
        pipeline: &Pipeline,
        step: &Step,
        forced: bool,
        directory: &Path,
        cancel: &CancellationToken,
        observer: &dyn Observer,
        shared: &Shared,
    ) -> Result<StepState, String> {
        let (inputs, dataset_env) = self.resolve_inputs(step, shared).await?;
        let params: Vec<(String, Value)> = step
            .params
            .iter()
            .map(|k| (k.clone(), pipeline.params[k].clone()))
            .collect();
        let key = fingerprint(step, &params, &inputs);
        shared.set(&step.name, |r| r.fingerprint = Some(key.clone()));
        let cache = RunCache::new(&self.project.root().join(".loopline/run-cache"));
        // The server's steps act on the registry (a new version, an alias moved): they always run.
        let cacheable = step.cache && !step.kind.on_server();
        if cacheable
            && !forced
            && let Some(cached) = cache
                .get(&key)
                .filter(|run| restorable(run, |id| self.project.complete_in_cache(id)))
        {
            let outputs = cached.outputs.clone();
            self.on_project(move |project| {
                for output in &outputs {
                    let id = crate::data::ContentId::parse(&output.hash)?;
                    project.restore(&project.root().join(&output.path), &id, output.size, true, &Quiet)?;
                }
                Ok(())
            })
            .await?;
            self.remember(shared, &step.name, cached.result.clone());
            return Ok(StepState::Cached);
        }
        // Outputs are cleared first (as `dvc repro` does: a file left by an earlier run must not be taken for
        // this run's), and the directories they go in made.
        for output in &step.outputs {
            let path = self.project.root().join(output.trim_end_matches('/'));
            folder_inside(self.project.root(), output, &path)?;
            let kind = std::fs::symlink_metadata(&path).map(|m| m.is_dir());
            let removed = match kind {
                Ok(true) => std::fs::remove_dir_all(&path),
                Ok(false) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| format!("clearing the output {output}: {e}"))?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
        }
        let attempts = step.retry.retries + 1;
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                let wait = (step.retry.backoff_seconds * 2f64.powi(attempt as i32 - 2)).min(MAX_BACKOFF_SECONDS);
                observer.line(
                    &step.name,
                    &format!("retrying in {wait:.1} s (attempt {attempt} of {attempts}): {last_error}"),
                );
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                    () = cancel.cancelled() => return Ok(StepState::Skipped("the run was cancelled".into())),
                }
            }
            observer.state(&step.name, &StepState::Running(attempt));
            shared.set(&step.name, |r| r.state = StepState::Running(attempt));
            match self
                .attempt(pipeline, step, (directory, &dataset_env), cancel, observer, shared)
                .await
            {
                Ok(result) => {
                    let mut outputs = Vec::new();
                    for path in &step.outputs {
                        let absolute = self.project.root().join(path);
                        if !absolute.exists() {
                            return Err(format!("it succeeded but did not write its output '{path}'"));
                        }
                        let snapshot = self
                            .on_project(move |project| project.snapshot(&absolute, &Quiet))
                            .await?;
                        outputs.push(ProducedOutput {
                            path: path.clone(),
                            hash: snapshot.id.key(),
                            size: snapshot.size,
                        });
                    }
                    if cacheable {
                        cache.put(
                            &key,
                            &CachedRun {
                                step: step.name.clone(),
                                outputs,
                                result: result.clone(),
                                finished_ms: loopline_core::time::now_millis(),
                            },
                        )?;
                    }
                    self.remember(shared, &step.name, result);
                    return Ok(StepState::Succeeded);
                }
                Err(Finished::Cancelled) => return Ok(StepState::Skipped("the run was cancelled".into())),
                Err(Finished::TimedOut) => {
                    last_error = format!("it ran past its timeout of {} s", step.timeout_seconds)
                }
                Err(Finished::Failed(message)) => last_error = message,
                Err(Finished::Succeeded) => unreachable!("success is Ok"),
            }
        }
        Err(if attempts > 1 {
            format!("{last_error} (after {attempts} attempts)")
        } else {
            last_error
        })
    }

    /// Work on the project's files (hashing, copying) on a thread meant for blocking, so a run over large
    /// files never holds up the server it runs in.
    async fn on_project<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Project) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let project = self.project.clone();
        tokio::task::spawn_blocking(move || work(&project))
            .await
            .map_err(|e| format!("work on the project's files stopped: {e}"))?
    }

    fn remember(&self, shared: &Shared, step: &str, result: Value) {
        if let Ok(mut results) = shared.results.lock() {
            results.insert(step.to_string(), result.clone());
        }
        shared.set(step, |r| r.result = result);
    }

    /// The content of each input, and the variables naming where dataset inputs were put.
    async fn resolve_inputs(
        &self,
        step: &Step,
        shared: &Shared,
    ) -> Result<(Vec<ResolvedInput>, BTreeMap<String, String>), String> {
        let mut resolved = Vec::new();
        let mut env = BTreeMap::new();
        for input in &step.inputs {
            let (name, content) = match input {
                Input::Path(path) => {
                    let known = shared.identified.lock().ok().and_then(|k| k.get(path).cloned());
                    let key = match known {
                        Some(key) => key,
                        None => {
                            let absolute = self.project.root().join(path);
                            let key = self
                                .on_project(move |project| project.identify_path(&absolute))
                                .await
                                .map_err(|e| format!("input '{path}': {e}"))?
                                .key();
                            if shared.untouched(path)
                                && let Ok(mut identified) = shared.identified.lock()
                            {
                                identified.insert(path.clone(), key.clone());
                            }
                            key
                        }
                    };
                    (format!("path:{path}"), key)
                }
                Input::Dataset(reference) => {
                    let hooks = self.hooks.as_ref().ok_or("dataset inputs need a server")?;
                    let dataset = hooks
                        .dataset(reference)
                        .await
                        .map_err(|e| format!("input dataset '{reference}': {e}"))?;
                    let name = reference.split('@').next().unwrap_or(reference);
                    env.insert(dataset_variable(name), dataset.path.display().to_string());
                    (format!("dataset:{}", dataset.version), dataset.hash)
                }
                Input::Model(uri) => {
                    let hooks = self.hooks.as_ref().ok_or("model inputs need a server")?;
                    (format!("model:{uri}"), hooks.model(uri).await?)
                }
            };
            resolved.push(ResolvedInput { name, content });
        }
        Ok((resolved, env))
    }

    /// One attempt: the command (built-in or the user's) or the server's built-in step.
    async fn attempt(
        &self,
        pipeline: &Pipeline,
        step: &Step,
        (directory, dataset_env): (&Path, &BTreeMap<String, String>),
        cancel: &CancellationToken,
        observer: &dyn Observer,
        shared: &Shared,
    ) -> Result<Value, Finished> {
        let context = || RunContext {
            run_id: shared.record.lock().map(|r| r.run_id.clone()).unwrap_or_default(),
            pipeline: pipeline.name.clone(),
            results: shared.results.lock().map(|r| r.clone()).unwrap_or_default(),
        };
        // A setting naming a dataset version reads the copy its input put in the project.
        let with_text = |key: &str| {
            let text = step.with.get(key).and_then(Value::as_str).unwrap_or_default();
            match text.strip_prefix("dataset:") {
                Some(reference) => {
                    let name = reference.split('@').next().unwrap_or(reference);
                    dataset_env.get(&dataset_variable(name)).cloned().unwrap_or_default()
                }
                None => text.to_string(),
            }
        };
        let loopline = self.loopline.display().to_string();
        let (argv, shell) = match step.kind {
            StepKind::Command | StepKind::Train => (step.run.clone().unwrap_or_default(), step.shell),
            StepKind::Validate => (
                vec![
                    loopline,
                    "validate".into(),
                    with_text("data"),
                    "--suite".into(),
                    with_text("suite"),
                ],
                false,
            ),
            StepKind::Profile => (
                vec![
                    loopline,
                    "profile".into(),
                    with_text("data"),
                    "-o".into(),
                    with_text("output"),
                ],
                false,
            ),
            StepKind::Evaluate | StepKind::Gate | StepKind::Register | StepKind::Deploy | StepKind::Materialize => {
                let hooks = self
                    .hooks
                    .as_ref()
                    .ok_or_else(|| Finished::Failed("needs a server".into()))?;
                let run = context();
                return tokio::select! {
                    result = hooks.builtin(&run, step) => result.map_err(Finished::Failed),
                    () = cancel.cancelled() => Err(Finished::Cancelled),
                };
            }
        };
        let mut env = step.env.clone();
        env.extend(dataset_env.clone());
        env.insert("LOOPLINE_PIPELINE".into(), pipeline.name.clone());
        env.insert("LOOPLINE_STEP".into(), step.name.clone());
        for key in &step.params {
            let variable = variable_part(key);
            let value = match &pipeline.params[key] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            env.insert(format!("LOOPLINE_PARAM_{variable}"), value);
        }
        if step.kind == StepKind::Train
            && let Some(hooks) = &self.hooks
        {
            env.extend(hooks.train_env(&context(), step).await.map_err(Finished::Failed)?);
        }
        let launch = Launch {
            step: step.name.clone(),
            argv,
            shell,
            directory: self.project.root().to_path_buf(),
            env,
            timeout: Duration::from_secs(step.timeout_seconds),
            resources: step.resources,
            log: directory.join(format!("{}.log", step.name)),
        };
        let executor = if step.executor == "ray" {
            self.ray.as_ref().unwrap_or(&self.local)
        } else {
            &self.local
        };
        let name = step.name.clone();
        let finished = executor.run(&launch, cancel, &|text| observer.line(&name, &text)).await;
        let succeeded = finished == Finished::Succeeded;
        let mut result = Value::Null;
        if step.kind == StepKind::Train
            && let Some(hooks) = &self.hooks
        {
            result = hooks
                .train_finished(&context(), step, succeeded)
                .await
                .map_err(Finished::Failed)?;
        }
        match finished {
            Finished::Succeeded => Ok(result),
            Finished::Failed(message) if step.kind == StepKind::Validate => Err(Finished::Failed(format!(
                "the data broke an expectation or could not be read ({message}); see {}",
                launch.log.display()
            ))),
            other => Err(other),
        }
    }
}

/// A new run id: `YYYYMMDD-HHMMSS-mmm-xxxx` (UTC to the millisecond, then random), so ids sort by start.
pub fn new_run_id() -> String {
    let millis = loopline_core::time::now_millis();
    let seconds = millis.div_euclid(1_000);
    let (year, month, day) = loopline_core::time::civil_date(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{:03}-{}",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60,
        millis.rem_euclid(1_000),
        &random[..4]
    )
}

/// Refuses an output whose folder leads out of the project, or into its `.git` or `.loopline`, through a
/// symbolic link (a cloned repository can carry one): clearing the output, or making its folder, would
/// delete or write files there. The output itself may be a link: clearing removes only the link.
fn folder_inside(root: &Path, output: &str, path: &Path) -> Result<(), String> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    // The nearest folder that exists; the ones below it are made afresh inside it.
    let mut existing = parent;
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(up) => existing = up,
            None => return Ok(()),
        }
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("the project at {}: {e}", root.display()))?;
    let real = existing
        .canonicalize()
        .map_err(|e| format!("the output {output}: {}: {e}", existing.display()))?;
    let reserved = real.strip_prefix(&root).map(|relative| {
        relative
            .components()
            .next()
            .is_some_and(|first| matches!(first.as_os_str().to_str(), Some(".git" | ".loopline")))
    });
    match reserved {
        Ok(false) => Ok(()),
        _ => Err(format!(
            "the output {output} lies in {}, which a symbolic link leads to {}: outputs must stay inside the \
             project (and out of .git and .loopline); nothing was cleared",
            existing.display(),
            real.display()
        )),
    }
}
