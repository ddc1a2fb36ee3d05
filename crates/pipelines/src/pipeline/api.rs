//! Pipeline routes: `/api/loopline/v1/pipelines` (POST registers a project's pipeline, GET lists),
//! `/pipelines/{name}` (GET, PUT registers it again, DELETE), `/pipelines/{name}/runs` (POST queues a run:
//! 202 with its status URL; GET lists), `/pipeline-runs/{id}` (GET: status and steps), `/pipeline-runs/{id}/cancel`
//! (POST) and `/pipeline-runs/{id}/logs/{step}?offset=N` (a step's output from an offset; poll with the
//! offset it returns).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use loopline_deployments::api::{actor, failure, read_json, refused};
use loopline_metadata_store::{PipelineRecord, PipelineRunRecord};
use serde_json::{Value, json};

use super::service::{Cause, PipelineService, RunRequest};

/// The largest request body.
const MAX_BODY_BYTES: usize = 64 << 10;
/// Runs listed at most.
const MAX_RUNS_LISTED: usize = 1_000;

/// The routes.
pub fn routes(service: Arc<PipelineService>) -> Router {
    Router::new()
        .route("/api/loopline/v1/pipelines", get(list).post(register))
        .route(
            "/api/loopline/v1/pipelines/{name}",
            get(describe).put(register_again).delete(delete),
        )
        .route("/api/loopline/v1/pipelines/{name}/runs", get(runs).post(start))
        .route("/api/loopline/v1/pipeline-runs/{run_id}", get(run))
        .route("/api/loopline/v1/pipeline-runs/{run_id}/cancel", post(cancel))
        .route("/api/loopline/v1/pipeline-runs/{run_id}/logs/{step}", get(log))
        .with_state(service)
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A pipeline as the API shows it.
pub fn pipeline_json(record: &PipelineRecord) -> Value {
    json!({
        "name": record.name,
        "spec": parsed(&record.spec),
        "trigger_state": parsed(&record.state),
        "revision": record.revision,
        "creation_time": record.creation_time,
        "last_update_time": record.last_update_time,
    })
}

/// A run as the API shows it.
pub fn run_json(run: &PipelineRunRecord) -> Value {
    let record = parsed(&run.record);
    json!({
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "cause": parsed(&run.cause),
        "status": run.status,
        "steps": record.get("steps").cloned().unwrap_or(json!([])),
        "error": record.get("error").cloned().unwrap_or(Value::Null),
        "owner": run.owner,
        "cancel_requested": run.cancel_requested,
        "creation_time": run.creation_time,
        "last_update_time": run.last_update_time,
        "end_time": run.end_time,
        "status_url": format!("/api/loopline/v1/pipeline-runs/{}", run.run_id),
    })
}

fn disabled() -> Response {
    failure(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "this server runs no pipelines: the operator starts it with --pipeline-root DIR to allow projects under DIR",
    )
}

async fn register_with(
    service: Arc<PipelineService>,
    headers: HeaderMap,
    body: Body,
    replace: Option<String>,
) -> Response {
    if !service.enabled() {
        return disabled();
    }
    let mut request: Value = match read_json(&headers, body, MAX_BODY_BYTES, "the pipeline registration").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let (Some(name), Value::Object(map)) = (&replace, &mut request) {
        map.entry("name").or_insert_with(|| json!(name));
    }
    match service.register(request, &actor(&headers), replace.as_deref()).await {
        Ok(record) => {
            let status = if replace.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, axum::Json(json!({"pipeline": pipeline_json(&record)}))).into_response()
        }
        Err(error) => refused(error),
    }
}

async fn register(State(service): State<Arc<PipelineService>>, headers: HeaderMap, body: Body) -> Response {
    register_with(service, headers, body, None).await
}

async fn register_again(
    State(service): State<Arc<PipelineService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    register_with(service, headers, body, Some(name)).await
}

async fn list(State(service): State<Arc<PipelineService>>) -> Response {
    match service.list().await {
        Ok(pipelines) => axum::Json(json!({
            "pipelines": pipelines.iter().map(pipeline_json).collect::<Vec<_>>(),
            "runs_pipelines": service.enabled(),
        }))
        .into_response(),
        Err(error) => refused(error),
    }
}

async fn describe(State(service): State<Arc<PipelineService>>, Path(name): Path<String>) -> Response {
    let pipeline = match service.get(&name).await {
        Ok(pipeline) => pipeline,
        Err(error) => return refused(error),
    };
    match service.runs(Some(&name), 10).await {
        Ok(runs) => axum::Json(json!({
            "pipeline": pipeline_json(&pipeline),
            "recent_runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => refused(error),
    }
}

async fn delete(State(service): State<Arc<PipelineService>>, Path(name): Path<String>) -> Response {
    match service.delete(&name).await {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(error) => refused(error),
    }
}

async fn start(
    State(service): State<Arc<PipelineService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !service.enabled() {
        return disabled();
    }
    let empty = headers.get("content-length").is_some_and(|v| v == "0");
    let request: RunRequest = if empty {
        RunRequest::default()
    } else {
        let value: Value = match read_json(&headers, body, MAX_BODY_BYTES, "the run request").await {
            Ok(value) => value,
            Err(response) => return response,
        };
        match serde_json::from_value(value) {
            Ok(request) => request,
            Err(error) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    format!("the run request is not valid: {error}"),
                );
            }
        }
    };
    let cause = Cause {
        kind: "manual".into(),
        detail: format!("started by {}", actor(&headers)),
        source: Value::Null,
        params: request.params,
        force: request.force,
        force_all: request.force_all,
        ..Cause::default()
    };
    match service.queue(&name, cause).await {
        Ok(run) => {
            let shown = run_json(&run);
            let location = shown["status_url"].as_str().unwrap_or_default().to_string();
            (
                StatusCode::ACCEPTED,
                [(axum::http::header::LOCATION, location)],
                axum::Json(json!({"run": shown})),
            )
                .into_response()
        }
        Err(error) => refused(error),
    }
}

async fn runs(
    State(service): State<Arc<PipelineService>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match query.get("max_results").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(limit)) if (1..=MAX_RUNS_LISTED).contains(&limit) => limit,
        Some(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("max_results is from 1 to {MAX_RUNS_LISTED}"),
            );
        }
    };
    if let Err(error) = service.get(&name).await {
        return refused(error);
    }
    match service.runs(Some(&name), limit).await {
        Ok(runs) => axum::Json(json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()})).into_response(),
        Err(error) => refused(error),
    }
}

async fn run(State(service): State<Arc<PipelineService>>, Path(run_id): Path<String>) -> Response {
    match service.run(&run_id).await {
        Ok(run) => axum::Json(json!({"run": run_json(&run)})).into_response(),
        Err(error) => refused(error),
    }
}

async fn cancel(State(service): State<Arc<PipelineService>>, Path(run_id): Path<String>) -> Response {
    match service.cancel(&run_id).await {
        Ok(run) => (StatusCode::ACCEPTED, axum::Json(json!({"run": run_json(&run)}))).into_response(),
        Err(error) => refused(error),
    }
}

async fn log(
    State(service): State<Arc<PipelineService>>,
    Path((run_id, step)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let offset = match query.get("offset").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "offset is a number of bytes",
            );
        }
    };
    match service.log(&run_id, &step, offset).await {
        Ok((text, next_offset, done)) => {
            axum::Json(json!({"text": text, "next_offset": next_offset, "done": done})).into_response()
        }
        Err(error) => refused(error),
    }
}
