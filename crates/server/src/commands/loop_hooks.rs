//! The loop's steps against a Loopline server, over the HTTP API every client uses (so a pipeline run from a
//! laptop and one run by the server behave alike): a train step's command gets a nested MLflow run of the
//! pipeline's run, so stock `mlflow` code logs into it, with the step's dataset inputs logged as
//! `mlflow.log_input` would (the digest is Loopline's content id); dataset inputs are fetched into the
//! project; the evaluate, gate, register and deploy steps call the registry, where the gate is enforced; a
//! materialize step fills the feature store's online values.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use loopline_pipelines::data::{ContentId, Project};
use loopline_pipelines::pipeline::{Input, LoopHooks, ResolvedDataset, RunContext, Step, StepKind};
use reqwest::Method;
use serde_json::{Value, json};

use super::data::BytesBar;
use super::monitor::segment;
use super::rollout::{Client, ServerArgs};

const MLFLOW: &str = "/api/2.0/mlflow";
const LOOPLINE: &str = "/api/loopline/v1";
/// Metrics logged by one request (MLflow accepts 1,000).
const METRICS_PER_BATCH: usize = 500;

/// The loop's operations on one server, for one project.
pub struct ServerHooks {
    client: Client,
    transfers: reqwest::Client,
    project: Arc<Project>,
    state: Mutex<HookState>,
}

#[derive(Default)]
struct HookState {
    /// Per pipeline run: the experiment and the MLflow run standing for it.
    parents: HashMap<String, (String, String)>,
    /// Per pipeline run and train step: its nested run.
    children: HashMap<(String, String), String>,
    /// Dataset inputs already resolved (a run sees one version of each reference).
    datasets: HashMap<String, ResolvedDataset>,
}

fn now_millis() -> i64 {
    loopline_core::time::now_millis()
}

fn message(answer: &Value, status: u16) -> String {
    format!("({status}) {}", answer["message"].as_str().unwrap_or("no message"))
}

fn text_of(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(text) if !text.is_empty() => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        _ => Err(format!("the server's answer has no {what}")),
    }
}

fn setting<'a>(step: &'a Step, key: &str) -> Result<&'a str, String> {
    step.with
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("with.{key} is required"))
}

/// The result of the step a `step:NAME` setting names.
fn produced<'a>(run: &'a RunContext, reference: &str) -> Result<&'a Value, String> {
    run.results
        .get(reference)
        .ok_or_else(|| format!("step '{reference}' has no result in this run"))
}

/// A version setting: a number, digits, or `step:NAME` (the version a register step made).
fn version_setting(run: &RunContext, step: &Step, key: &str) -> Result<i64, String> {
    let value = step.with.get(key).ok_or_else(|| format!("with.{key} is required"))?;
    let number = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => match text.strip_prefix("step:") {
            Some(producer) => produced(run, producer)?["version"].as_i64(),
            None => text.parse().ok(),
        },
        _ => None,
    };
    number
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("with.{key}: {value} does not name a model version"))
}

/// A metric key MLflow accepts: letters, digits and `_-./ ` kept, anything else `_`.
fn metric_key(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(250)
        .collect()
}

impl ServerHooks {
    /// Hooks for `project` talking to the server at `server`.
    pub fn new(server: &str, project: Arc<Project>) -> Result<ServerHooks, String> {
        Self::with_credentials(server, project, &super::credentials::ClientCredentials::from_env())
    }

    /// Hooks presenting `credentials` (the server's own pipelines use its service account).
    pub fn with_credentials(
        server: &str,
        project: Arc<Project>,
        credentials: &super::credentials::ClientCredentials,
    ) -> Result<ServerHooks, String> {
        Ok(ServerHooks {
            client: Client::with_credentials(
                &ServerArgs {
                    server: server.to_string(),
                },
                credentials,
            )?,
            transfers: super::data_remote::transfer_client(credentials)?,
            project,
            state: Mutex::new(HookState::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HookState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.client.ok(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.client.ok(Method::GET, path, None).await
    }

    async fn experiment(&self, name: &str) -> Result<String, String> {
        for _ in 0..2 {
            let path = format!("{MLFLOW}/experiments/get-by-name?experiment_name={}", segment(name));
            let (status, found) = self.client.call(Method::GET, &path, None).await?;
            if status == 200 {
                return text_of(&found["experiment"]["experiment_id"], "experiment id");
            }
            let (status, created) = self
                .client
                .call(
                    Method::POST,
                    &format!("{MLFLOW}/experiments/create"),
                    Some(json!({"name": name})),
                )
                .await?;
            if (200..300).contains(&status) {
                return text_of(&created["experiment_id"], "experiment id");
            }
            if created["error_code"] != "RESOURCE_ALREADY_EXISTS" {
                return Err(format!(
                    "creating the experiment '{name}': {}",
                    message(&created, status)
                ));
            }
        }
        Err(format!("the experiment '{name}' could not be found or created"))
    }

    /// The MLflow run standing for a pipeline run, made when its first train step starts.
    async fn parent(&self, run: &RunContext, experiment_name: &str) -> Result<(String, String), String> {
        if let Some(parent) = self.state().parents.get(&run.run_id) {
            return Ok(parent.clone());
        }
        let experiment = self.experiment(experiment_name).await?;
        let created = self
            .post(
                &format!("{MLFLOW}/runs/create"),
                json!({
                    "experiment_id": experiment,
                    "run_name": format!("{} {}", run.pipeline, run.run_id),
                    "start_time": now_millis(),
                    "tags": [
                        {"key": "loopline.pipeline", "value": run.pipeline},
                        {"key": "loopline.pipeline_run", "value": run.run_id},
                    ],
                }),
            )
            .await
            .map_err(|e| format!("creating the pipeline's MLflow run: {e}"))?;
        let id = text_of(&created["run"]["info"]["run_id"], "run id")?;
        let parent = (experiment, id);
        self.state().parents.insert(run.run_id.clone(), parent.clone());
        Ok(parent)
    }

    /// Where a registered version came from, for a step's fingerprint.
    fn version_identity(found: &Value) -> Result<String, String> {
        let version = &found["model_version"];
        Ok(format!(
            "{}/{}:{}:{}:{}",
            text_of(&version["name"], "name")?,
            text_of(&version["version"], "version")?,
            version["source"].as_str().unwrap_or_default(),
            version["run_id"].as_str().unwrap_or_default(),
            version["creation_timestamp"]
        ))
    }

    /// The model a finished train run logged: a logged model whose source is the run (MLflow 3), else a
    /// `model` directory of the run's artifacts holding an MLmodel file.
    async fn logged_model(&self, experiment: &str, run_id: &str) -> Result<Option<(String, Option<String>)>, String> {
        let found = self
            .post(
                &format!("{MLFLOW}/logged-models/search"),
                json!({"experiment_ids": [experiment], "filter": format!("source_run_id = '{run_id}'"), "max_results": 10}),
            )
            .await?;
        if let Some(model_id) = found["models"]
            .as_array()
            .and_then(|models| models.first())
            .and_then(|model| model["info"]["model_id"].as_str())
        {
            return Ok(Some((format!("models:/{model_id}"), Some(model_id.to_string()))));
        }
        let path = format!("{MLFLOW}/artifacts/list?run_id={}&path=model", segment(run_id));
        let (status, listed) = self.client.call(Method::GET, &path, None).await?;
        let has_mlmodel = status == 200
            && listed["files"]
                .as_array()
                .is_some_and(|files| files.iter().any(|f| f["path"] == "model/MLmodel"));
        Ok(has_mlmodel.then(|| (format!("runs:/{run_id}/model"), None)))
    }

    /// Logs figures on an MLflow run, in batches.
    async fn log_metrics(&self, run_id: &str, metrics: &[(String, f64)]) -> Result<(), String> {
        let timestamp = now_millis();
        for batch in metrics.chunks(METRICS_PER_BATCH) {
            let metrics: Vec<Value> = batch
                .iter()
                .filter(|(_, value)| value.is_finite())
                .map(|(key, value)| json!({"key": key, "value": value, "timestamp": timestamp, "step": 0}))
                .collect();
            self.post(
                &format!("{MLFLOW}/runs/log-batch"),
                json!({"run_id": run_id, "metrics": metrics}),
            )
            .await?;
        }
        Ok(())
    }

    async fn register(&self, run: &RunContext, step: &Step) -> Result<Value, String> {
        let name = setting(step, "model")?;
        let from = setting(step, "from")?;
        let (source, run_id, model_id) = match from.strip_prefix("step:") {
            Some(producer) => {
                let result = produced(run, producer)?;
                let uri = result["model_uri"].as_str().ok_or_else(|| {
                    format!(
                        "step '{producer}' logged no model (log one in its command with mlflow.<flavour>.log_model)"
                    )
                })?;
                (
                    uri.to_string(),
                    result["run_id"].as_str().map(str::to_string),
                    result["model_id"].as_str().map(str::to_string),
                )
            }
            None => (from.to_string(), None, None),
        };
        let (status, answer) = self
            .client
            .call(
                Method::POST,
                &format!("{MLFLOW}/registered-models/create"),
                Some(json!({"name": name})),
            )
            .await?;
        if !(200..300).contains(&status) && answer["error_code"] != "RESOURCE_ALREADY_EXISTS" {
            return Err(format!(
                "creating the registered model '{name}': {}",
                message(&answer, status)
            ));
        }
        // The same model registered before (its train step was cached) is that version again.
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let listed = self
            .get(&format!(
                "{MLFLOW}/model-versions/search?filter={}&max_results=1000",
                segment(&filter)
            ))
            .await?;
        let same = listed["model_versions"].as_array().and_then(|versions| {
            versions
                .iter()
                .find(|v| v["source"].as_str() == Some(source.as_str()) && v["run_id"].as_str() == run_id.as_deref())
        });
        let (version, reused) = match same {
            Some(version) => (text_of(&version["version"], "version")?, true),
            None => {
                let mut body = json!({
                    "name": name,
                    "source": source,
                    "tags": [{"key": "loopline.pipeline_run", "value": run.run_id}],
                });
                if let Some(run_id) = &run_id {
                    body["run_id"] = json!(run_id);
                }
                if let Some(model_id) = &model_id {
                    body["model_id"] = json!(model_id);
                }
                let created = self
                    .post(&format!("{MLFLOW}/model-versions/create"), body)
                    .await
                    .map_err(|e| {
                        format!(
                            "registering {source} as '{name}': {e} (if the train step's result was reused from a \
                             run against another server, or its model was deleted, rerun it: --force STEP)"
                        )
                    })?;
                (text_of(&created["model_version"]["version"], "version")?, false)
            }
        };
        let number: i64 = version
            .parse()
            .map_err(|_| format!("'{version}' is not a version number"))?;
        Ok(json!({
            "name": name, "version": number, "model_uri": format!("models:/{name}/{number}"),
            "source": source, "run_id": run_id, "reused": reused,
        }))
    }

    async fn evaluate(&self, run: &RunContext, step: &Step) -> Result<Value, String> {
        let model = setting(step, "model")?;
        let (name, version) = match model.strip_prefix("step:") {
            Some(producer) => {
                let result = produced(run, producer)?;
                (
                    result["name"]
                        .as_str()
                        .ok_or_else(|| format!("step '{producer}' registered no model version"))?
                        .to_string(),
                    result["version"].as_i64().unwrap_or(0),
                )
            }
            None => {
                let rest = model.strip_prefix("models:/").unwrap_or(model);
                let (name, version) = rest
                    .rsplit_once('/')
                    .ok_or_else(|| format!("with.model: '{model}' is not models:/NAME/VERSION"))?;
                (
                    name.to_string(),
                    version
                        .parse()
                        .map_err(|_| format!("with.model: '{version}' is not a version number"))?,
                )
            }
        };
        let reference = setting(step, "data")?
            .strip_prefix("dataset:")
            .ok_or("with.data: an evaluation reads a dataset version, dataset:NAME@VERSION")?;
        let dataset = self.dataset(reference).await?;
        let mut body = json!({"dataset": dataset.version, "target": setting(step, "target")?});
        for key in ["task", "positive_label"] {
            if let Some(value) = step.with.get(key) {
                body[key] = value.clone();
            }
        }
        match step.with.get("slices") {
            Some(Value::String(column)) => body["slices"] = json!([column]),
            Some(columns @ Value::Array(_)) => body["slices"] = columns.clone(),
            _ => {}
        }
        let path = format!(
            "{LOOPLINE}/registered-models/{}/versions/{version}/evaluate",
            segment(&name)
        );
        let result = self.post(&path, body).await?;
        // Figures go on the pipeline's MLflow run when it has one, else on the run that made the version.
        let target_run = self.state().parents.get(&run.run_id).map(|(_, parent)| parent.clone());
        let target_run = match target_run {
            Some(run) => Some(run),
            None => {
                let found = self
                    .get(&format!(
                        "{MLFLOW}/model-versions/get?name={}&version={version}",
                        segment(&name)
                    ))
                    .await?;
                found["model_version"]["run_id"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
            }
        };
        if let Some(target_run) = target_run {
            let mut figures = Vec::new();
            if let Some(metrics) = result["metrics"].as_object() {
                for (metric, value) in metrics {
                    figures.push((
                        metric_key(&format!("{}.{metric}", step.name)),
                        value.as_f64().unwrap_or(f64::NAN),
                    ));
                }
            }
            if let Some(slices) = result["slices"].as_object() {
                for (column, groups) in slices {
                    for group in groups.as_array().into_iter().flatten().take(100) {
                        let value = group["value"].as_str().unwrap_or_default();
                        for (metric, figure) in group["metrics"].as_object().into_iter().flatten() {
                            figures.push((
                                metric_key(&format!("{}.{column}.{value}.{metric}", step.name)),
                                figure.as_f64().unwrap_or(f64::NAN),
                            ));
                        }
                    }
                }
            }
            self.log_metrics(&target_run, &figures).await?;
        }
        if let Some(output) = step.with.get("output").and_then(Value::as_str) {
            let path = self.project.root().join(output);
            let text = serde_json::to_vec_pretty(&result).map_err(|e| e.to_string())?;
            loopline_pipelines::data::write_atomically(&path, &text)?;
        }
        Ok(result)
    }

    async fn gate(&self, run: &RunContext, step: &Step) -> Result<Value, String> {
        let name = setting(step, "model")?;
        let version = version_setting(run, step, "candidate")?;
        let policy_path = format!("{LOOPLINE}/registered-models/{}/gate-policy", segment(name));
        let mut note = Value::Null;
        if let Some(policy) = step.with.get("policy") {
            let (status, existing) = self.client.call(Method::GET, &policy_path, None).await?;
            if status == 404 {
                self.client
                    .ok(Method::PUT, &policy_path, Some(policy.clone()))
                    .await
                    .map_err(|e| format!("setting the gate policy of '{name}': {e}"))?;
            } else if status == 200 {
                let ours = loopline_pipelines::gate::policy::GatePolicy::parse(policy.clone())
                    .ok()
                    .and_then(|p| serde_json::to_value(p).ok());
                if ours.as_ref() != Some(&existing["policy"]) {
                    note = json!(format!(
                        "the registry's own policy (revision {}) was applied; the step's policy differs and is not used",
                        existing["revision"]
                    ));
                }
            } else {
                return Err(format!(
                    "reading the gate policy of '{name}': {}",
                    message(&existing, status)
                ));
            }
        }
        let answer = self
            .post(
                &format!("{LOOPLINE}/registered-models/{}/versions/{version}/gate", segment(name)),
                json!({}),
            )
            .await?;
        let evaluation = &answer["evaluation"];
        let passed = evaluation["passed"].as_bool().unwrap_or(false);
        if !passed {
            let failed: Vec<&str> = evaluation["evidence"]["failed"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let note = note.as_str().map(|n| format!(" ({n})")).unwrap_or_default();
            return Err(format!(
                "version {version} of '{name}' failed its gate: {}{note}",
                failed.join("; ")
            ));
        }
        Ok(json!({
            "name": name, "version": version, "passed": true,
            "evaluation_id": evaluation["evaluation_id"], "policy_revision": evaluation["policy_revision"],
            "note": note,
        }))
    }

    /// Starts an incremental materialisation on the server (a background task there, so no request waits on
    /// it) and follows the views until it ends; a view that failed fails the step with the server's message.
    async fn materialize(&self, step: &Step) -> Result<Value, String> {
        let project = setting(step, "project")?;
        let base = format!("/api/loopline/v1/features/projects/{}", segment(project));
        let end = match step.with.get("end").and_then(Value::as_str) {
            Some(end) => end.to_string(),
            None => loopline_features::online_read::rfc3339(now_millis().saturating_mul(1_000_000)),
        };
        let views = step.with.get("views").cloned().unwrap_or(Value::Null);
        // With a start, the window is given whole; without, each view goes on from its watermark.
        let (route, body) = match step.with.get("start").and_then(Value::as_str) {
            Some(start) => (
                "materialize",
                json!({"start_ts": start, "end_ts": end, "feature_views": views}),
            ),
            None => (
                "materialize-incremental",
                json!({"end_ts": end, "feature_views": views}),
            ),
        };
        self.post(&format!("{base}/{route}?async=true"), body)
            .await
            .map_err(|e| format!("materialising feature project '{project}': {e}"))?;
        let wanted: Vec<String> = views
            .as_array()
            .map(|v| v.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let state = self.get(&format!("{base}/views")).await?;
            let views: Vec<&Value> = state["views"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter(|v| wanted.is_empty() || wanted.iter().any(|w| v["name"] == w.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            if views.iter().any(|v| v["materializing"] == true) {
                continue;
            }
            let failed: Vec<String> = views
                .iter()
                .filter_map(|v| v["last_failure"].as_str().map(|f| format!("{}: {f}", v["name"])))
                .collect();
            if !failed.is_empty() {
                return Err(format!(
                    "materialising feature project '{project}' failed: {}",
                    failed.join("; ")
                ));
            }
            let until: serde_json::Map<String, Value> = views
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap_or_default().to_string(),
                        v["materialized_until"].clone(),
                    )
                })
                .collect();
            return Ok(json!({"project": project, "end": end, "materialized_until": until}));
        }
    }

    async fn deploy(&self, run: &RunContext, step: &Step) -> Result<Value, String> {
        let name = setting(step, "model")?;
        let alias = setting(step, "alias")?;
        let version = version_setting(run, step, "version")?;
        self.post(
            &format!("{MLFLOW}/registered-models/alias"),
            json!({"name": name, "alias": alias, "version": version.to_string()}),
        )
        .await
        .map_err(|e| format!("moving '{alias}' of '{name}' to version {version}: {e}"))?;
        Ok(json!({"name": name, "alias": alias, "version": version}))
    }
}

#[async_trait]
impl LoopHooks for ServerHooks {
    async fn train_env(&self, run: &RunContext, step: &Step) -> Result<BTreeMap<String, String>, String> {
        let experiment_name = step
            .with
            .get("experiment")
            .and_then(Value::as_str)
            .unwrap_or(&run.pipeline)
            .to_string();
        let (experiment, parent) = self.parent(run, &experiment_name).await?;
        let run_name = step.with.get("run_name").and_then(Value::as_str).unwrap_or(&step.name);
        let created = self
            .post(
                &format!("{MLFLOW}/runs/create"),
                json!({
                    "experiment_id": experiment,
                    "run_name": run_name,
                    "start_time": now_millis(),
                    "tags": [
                        {"key": "mlflow.parentRunId", "value": parent},
                        {"key": "loopline.pipeline", "value": run.pipeline},
                        {"key": "loopline.pipeline_run", "value": run.run_id},
                        {"key": "loopline.pipeline_step", "value": step.name},
                    ],
                }),
            )
            .await
            .map_err(|e| format!("creating the train step's MLflow run: {e}"))?;
        let child = text_of(&created["run"]["info"]["run_id"], "run id")?;
        let datasets: Vec<Value> = {
            let state = self.state();
            step.inputs
                .iter()
                .filter_map(|input| match input {
                    Input::Dataset(reference) => state.datasets.get(reference),
                    _ => None,
                })
                .map(|dataset| {
                    let (name, number) = dataset.version.split_once('@').unwrap_or((&dataset.version, ""));
                    json!({
                        "tags": [{"key": "mlflow.data.context", "value": "training"}],
                        "dataset": {
                            "name": name,
                            "digest": dataset.hash,
                            "source_type": "loopline",
                            "source": json!({"uri": format!("datasets:/{name}/{number}")}).to_string(),
                        },
                    })
                })
                .collect()
        };
        if !datasets.is_empty() {
            self.post(
                &format!("{MLFLOW}/runs/log-inputs"),
                json!({"run_id": child, "datasets": datasets}),
            )
            .await
            .map_err(|e| format!("logging the train step's dataset inputs: {e}"))?;
        }
        self.state()
            .children
            .insert((run.run_id.clone(), step.name.clone()), child.clone());
        let mut environment = BTreeMap::from([
            ("MLFLOW_TRACKING_URI".to_string(), self.client.base.clone()),
            ("MLFLOW_RUN_ID".to_string(), child),
            ("MLFLOW_EXPERIMENT_ID".to_string(), experiment),
            ("LOOPLINE_PIPELINE_RUN".to_string(), run.run_id.clone()),
        ]);
        // The user's mlflow code logs with the same credentials the pipeline runs with.
        environment.extend(self.client.credentials.environment());
        Ok(environment)
    }

    async fn train_finished(&self, run: &RunContext, step: &Step, succeeded: bool) -> Result<Value, String> {
        let child = self
            .state()
            .children
            .get(&(run.run_id.clone(), step.name.clone()))
            .cloned()
            .ok_or("the train step's MLflow run was never made")?;
        let experiment = self
            .state()
            .parents
            .get(&run.run_id)
            .map(|(experiment, _)| experiment.clone())
            .unwrap_or_default();
        self.post(
            &format!("{MLFLOW}/runs/update"),
            json!({"run_id": child, "status": if succeeded { "FINISHED" } else { "FAILED" }, "end_time": now_millis()}),
        )
        .await?;
        let mut result = json!({"run_id": child, "experiment_id": experiment});
        if succeeded && let Some((uri, model_id)) = self.logged_model(&experiment, &child).await? {
            result["model_uri"] = json!(uri);
            result["model_id"] = json!(model_id);
        }
        Ok(result)
    }

    async fn dataset(&self, reference: &str) -> Result<ResolvedDataset, String> {
        if let Some(resolved) = self.state().datasets.get(reference) {
            return Ok(resolved.clone());
        }
        let (name, version) = reference.split_once('@').unwrap_or((reference, "latest"));
        let found = self
            .get(&format!(
                "{LOOPLINE}/datasets/{}/versions/{}",
                segment(name),
                segment(version)
            ))
            .await?;
        let found = &found["version"];
        let hash = text_of(&found["hash"], "content id")?;
        let id = ContentId::parse(&hash)?;
        let size = found["size"].as_u64().unwrap_or(0);
        let number = text_of(&found["version"], "version")?;
        let file_name = found["source"]
            .as_str()
            .and_then(|source| Path::new(source.trim_end_matches('/')).file_name())
            .and_then(|n| n.to_str())
            .unwrap_or(name)
            .to_string();
        super::data_remote::fetch_content(
            &self.transfers,
            &self.client.base,
            &self.project,
            (&id, size),
            &BytesBar::hidden(),
        )
        .await?;
        let project = self.project.clone();
        let path = tokio::task::spawn_blocking(move || project.materialize(&id, &file_name))
            .await
            .map_err(|e| format!("placing the data stopped: {e}"))??;
        let resolved = ResolvedDataset {
            version: format!("{name}@{number}"),
            hash,
            path,
        };
        self.state().datasets.insert(reference.to_string(), resolved.clone());
        Ok(resolved)
    }

    async fn model(&self, uri: &str) -> Result<String, String> {
        let rest = uri
            .strip_prefix("models:/")
            .ok_or_else(|| format!("'{uri}' is not a models:/ URI"))?;
        let found = if let Some((name, alias)) = rest.split_once('@') {
            self.get(&format!(
                "{MLFLOW}/registered-models/alias?name={}&alias={}",
                segment(name),
                segment(alias)
            ))
            .await?
        } else if let Some((name, version)) = rest.rsplit_once('/') {
            self.get(&format!(
                "{MLFLOW}/model-versions/get?name={}&version={}",
                segment(name),
                segment(version)
            ))
            .await?
        } else {
            return Err(format!("'{uri}' is not models:/NAME/VERSION or models:/NAME@ALIAS"));
        };
        Self::version_identity(&found)
    }

    async fn builtin(&self, run: &RunContext, step: &Step) -> Result<Value, String> {
        match step.kind {
            StepKind::Register => self.register(run, step).await,
            StepKind::Evaluate => self.evaluate(run, step).await,
            StepKind::Gate => self.gate(run, step).await,
            StepKind::Deploy => self.deploy(run, step).await,
            StepKind::Materialize => self.materialize(step).await,
            other => Err(format!("a {other:?} step is not run by the server")),
        }
    }

    async fn finished(&self, run: &RunContext, status: &str) {
        let parent = self.state().parents.get(&run.run_id).cloned();
        if let Some((_, parent)) = parent {
            let status = match status {
                "succeeded" => "FINISHED",
                "cancelled" => "KILLED",
                _ => "FAILED",
            };
            if let Err(error) = self
                .post(
                    &format!("{MLFLOW}/runs/update"),
                    json!({"run_id": parent, "status": status, "end_time": now_millis()}),
                )
                .await
            {
                tracing::warn!(%error, run = %run.run_id, "could not end the pipeline's MLflow run");
            }
        }
    }
}
