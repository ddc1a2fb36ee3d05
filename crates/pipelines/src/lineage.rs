//! Lineage of a model version, walked through what the server recorded: the dataset versions its training
//! run read (by the digest logged with them) -> the pipeline run that trained it (and what caused that run)
//! -> the training run -> the version -> its gate evaluations and overrides -> the deployments serving the
//! model -> the monitors watching them -> their alerts and retraining requests -> the pipeline runs those
//! caused and the versions they registered. `GET /api/loopline/v1/lineage?model=NAME&version=V`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use loopline_deployments::api::{failure, refused};
use loopline_metadata_store::{MetadataStore, StoreError};
use serde_json::{Value, json};

use crate::datasets::DataError;

/// Monitor events read per monitor.
const EVENTS_PER_MONITOR: usize = 1_000;
/// Pipeline runs looked through for the ones alerts caused.
const RUNS_SEARCHED: usize = 5_000;
/// Dataset versions looked through per dataset to match a digest.
const VERSIONS_SEARCHED: usize = 1_000;

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn tag<'a>(tags: &'a [loopline_metadata_store::Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// The lineage of `name` version `version`.
pub async fn lineage(store: &Arc<dyn MetadataStore>, name: &str, version: i64) -> Result<Value, DataError> {
    let model_version = store.get_model_version(name, version).await?;
    let aliases: Vec<String> = store
        .get_registered_model(name)
        .await?
        .aliases
        .into_iter()
        .filter(|a| a.version == model_version.version)
        .map(|a| a.alias)
        .collect();
    let mut lineage = json!({
        "model_version": {
            "name": name, "version": version, "source": model_version.source, "run_id": model_version.run_id,
            "creation_timestamp": model_version.creation_timestamp, "aliases": aliases,
        },
    });
    // The training run, the datasets it read and the pipeline run it belonged to.
    let mut datasets = Vec::new();
    if !model_version.run_id.is_empty()
        && let Ok(run) = store.get_run(&model_version.run_id).await
    {
        for input in &run.inputs.dataset_inputs {
            datasets.push(dataset_entry(store, &input.dataset.name, &input.dataset.digest).await?);
        }
        let pipeline_run = tag(&run.data.tags, "loopline.pipeline_run").map(str::to_string);
        lineage["training_run"] = json!({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
            "status": run.info.status, "parent_run_id": tag(&run.data.tags, "mlflow.parentRunId"),
            "pipeline": tag(&run.data.tags, "loopline.pipeline"), "pipeline_step": tag(&run.data.tags, "loopline.pipeline_step"),
        });
        if let Some(pipeline_run) = pipeline_run {
            lineage["pipeline_run"] = match store.get_pipeline_run(&pipeline_run).await {
                Ok(record) => json!({
                    "run_id": record.run_id, "pipeline": record.pipeline, "status": record.status,
                    "cause": parsed(&record.cause), "on_server": true,
                }),
                // Run from a laptop (`loopline pipeline run`): only its id is known here.
                Err(StoreError::NotFound(_)) => json!({"run_id": pipeline_run, "on_server": false}),
                Err(other) => return Err(other.into()),
            };
        }
    }
    lineage["datasets"] = Value::Array(datasets);
    let gates: Vec<Value> = store
        .gate_evaluations(name, version, 20)
        .await?
        .iter()
        .map(|e| {
            let evidence = parsed(&e.evidence);
            json!({
                "evaluation_id": e.evaluation_id, "passed": e.passed, "policy_revision": e.policy_revision,
                "dataset": evidence["dataset"], "dataset_hash": evidence["dataset_hash"],
                "champion_version": evidence["champion_version"], "failed": evidence["failed"],
                "created_time": e.created_time,
            })
        })
        .collect();
    lineage["gates"] = Value::Array(gates);
    let overrides: Vec<Value> = store
        .gate_overrides(name, 100)
        .await?
        .iter()
        .filter(|o| o.version == version)
        .map(|o| json!({"alias": o.alias, "reason": o.reason, "created_by": o.created_by, "created_time": o.created_time}))
        .collect();
    lineage["overrides"] = Value::Array(overrides);
    // Deployments of the model, and whether they serve this version.
    let mut deployment_names = BTreeSet::new();
    let mut deployments = Vec::new();
    for deployment in store.list_deployments().await? {
        let spec = parsed(&deployment.spec);
        let target = spec["model"].as_str().unwrap_or_default();
        let of_model = target
            .strip_prefix("models:/")
            .is_some_and(|rest| rest.split(['@', '/']).next() == Some(name));
        if !of_model {
            continue;
        }
        let state = parsed(&deployment.state);
        let stable = state["stable"].as_str().unwrap_or_default();
        let shown = version.to_string();
        let candidate = state["rollout"]["candidates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|v| v.as_str() == Some(shown.as_str())));
        deployment_names.insert(deployment.name.clone());
        deployments.push(json!({
            "name": deployment.name, "model": target, "stable": stable,
            "rollout": state["rollout"], "serves_this_version": stable == shown || candidate,
        }));
    }
    lineage["deployments"] = Value::Array(deployments);
    // Monitors of the model or its deployments, their alerts, and the runs their requests caused.
    let mut monitors = Vec::new();
    let mut alerts = Vec::new();
    let mut requests: HashMap<String, Vec<i64>> = HashMap::new();
    for monitor in store.list_monitors().await? {
        let spec = parsed(&monitor.spec);
        let watches = spec["model"] == name
            || spec["deployment"]
                .as_str()
                .is_some_and(|d| deployment_names.contains(d));
        if !watches {
            continue;
        }
        monitors.push(json!({"name": monitor.name, "model": spec["model"], "deployment": spec["deployment"], "alias": spec["alias"]}));
        for event in store.monitor_events(&monitor.name, 0, EVENTS_PER_MONITOR).await? {
            if matches!(event.kind.as_str(), "alert_firing" | "retraining_requested") {
                if event.kind == "retraining_requested" {
                    requests.entry(monitor.name.clone()).or_default().push(event.event_id);
                }
                alerts.push(json!({
                    "monitor": monitor.name, "event_id": event.event_id, "kind": event.kind,
                    "message": event.message, "timestamp_ms": event.timestamp_ms,
                }));
            }
        }
    }
    lineage["monitors"] = Value::Array(monitors);
    lineage["alerts"] = Value::Array(alerts);
    let mut caused = Vec::new();
    if !requests.is_empty() {
        for run in store.pipeline_runs(None, RUNS_SEARCHED).await? {
            let cause = parsed(&run.cause);
            let sources = match &cause["source"] {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            let by_request = sources.iter().any(|source| {
                source["monitor"]
                    .as_str()
                    .and_then(|m| requests.get(m))
                    .is_some_and(|ids| source["event_id"].as_i64().is_some_and(|id| ids.contains(&id)))
            });
            if !by_request {
                continue;
            }
            let record = parsed(&run.record);
            let registered: Vec<Value> = record["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|step| {
                    let result = &step["result"];
                    (result["name"].is_string() && result["version"].is_i64() && result["model_uri"].is_string())
                        .then(|| json!({"name": result["name"], "version": result["version"]}))
                })
                .collect();
            caused.push(json!({
                "run_id": run.run_id, "pipeline": run.pipeline, "status": run.status, "cause": cause,
                "registered": registered,
            }));
        }
    }
    lineage["retraining_runs"] = Value::Array(caused);
    Ok(lineage)
}

/// A dataset input, matched to the registered version with the same content.
async fn dataset_entry(store: &Arc<dyn MetadataStore>, name: &str, digest: &str) -> Result<Value, DataError> {
    let versions = match store.dataset_versions(name, None, VERSIONS_SEARCHED).await {
        Ok(versions) => versions,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    let matched = versions.iter().find(|v| v.content_hash == digest);
    Ok(json!({
        "name": name, "digest": digest,
        "version": matched.map(|v| v.version),
        "rows": matched.and_then(|v| v.row_count),
        "registered": matched.is_some(),
        // A training set built by the feature store names its definitions, sources and entity frame.
        "computed_from": matched.and_then(|v| v.lineage.as_deref()).map(parsed),
    }))
}

/// The route.
pub fn routes(store: Arc<dyn MetadataStore>) -> Router {
    Router::new()
        .route("/api/loopline/v1/lineage", get(answer))
        .with_state(store)
}

async fn answer(State(store): State<Arc<dyn MetadataStore>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let (Some(name), Some(version)) = (query.get("model"), query.get("version")) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "give the model version: ?model=NAME&version=V",
        );
    };
    let Some(version) = version.parse::<i64>().ok().filter(|v| *v > 0) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            format!("'{version}' is not a version number"),
        );
    };
    match lineage(&store, name, version).await {
        Ok(lineage) => axum::Json(lineage).into_response(),
        Err(error) => refused(error),
    }
}
