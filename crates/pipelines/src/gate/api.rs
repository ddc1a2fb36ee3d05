//! Gate routes: `/api/loopline/v1/registered-models/{name}/gate-policy` (PUT, GET, DELETE),
//! `.../versions/{version}/gate` (POST evaluates, GET lists the evidence), `.../versions/{version}/evaluate`
//! (metrics overall and per slice, nothing judged or stored), `.../aliases/{alias}/override`
//! (POST, with a reason) and `.../gate-overrides` (GET).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use loopline_deployments::api::{actor, failure, read_json, refused};
use loopline_metadata_store::{GateEvaluation, GateOverride};
use serde_json::{Value, json};

use super::service::GateService;

/// The largest policy body.
const MAX_POLICY_BYTES: usize = 256 << 10;

/// The routes.
pub fn routes(service: Arc<GateService>) -> Router {
    Router::new()
        .route(
            "/api/loopline/v1/registered-models/{name}/gate-policy",
            get(read_policy).put(set_policy).delete(delete_policy),
        )
        .route(
            "/api/loopline/v1/registered-models/{name}/versions/{version}/gate",
            get(evaluations).post(evaluate),
        )
        .route(
            "/api/loopline/v1/registered-models/{name}/versions/{version}/evaluate",
            post(evaluate_only),
        )
        .route(
            "/api/loopline/v1/registered-models/{name}/aliases/{alias}/override",
            post(override_alias),
        )
        .route(
            "/api/loopline/v1/registered-models/{name}/gate-overrides",
            get(overrides),
        )
        .with_state(service)
}

fn evaluation_json(evaluation: &GateEvaluation) -> Value {
    json!({
        "evaluation_id": evaluation.evaluation_id,
        "name": evaluation.name,
        "version": evaluation.version,
        "policy_revision": evaluation.policy_revision,
        "passed": evaluation.passed,
        "evidence": serde_json::from_str::<Value>(&evaluation.evidence).unwrap_or(Value::Null),
        "created_by": evaluation.created_by,
        "created_time": evaluation.created_time,
    })
}

fn override_json(record: &GateOverride) -> Value {
    json!({
        "name": record.name, "alias": record.alias, "version": record.version, "reason": record.reason,
        "created_by": record.created_by, "created_time": record.created_time,
    })
}

fn version_number(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|v| *v > 0)
}

fn not_a_version(text: &str) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER_VALUE",
        format!("'{text}' is not a version number"),
    )
}

async fn evaluate_only(
    State(service): State<Arc<GateService>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(version) = version_number(&version) else {
        return not_a_version(&version);
    };
    let request: Value = match read_json(&headers, body, MAX_POLICY_BYTES, "the evaluation request").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match service.evaluate_only(&name, version, request).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(error) => refused(error),
    }
}

async fn read_policy(State(service): State<Arc<GateService>>, Path(name): Path<String>) -> Response {
    match service.policy(&name).await {
        Ok((record, policy)) => axum::Json(json!({
            "policy": policy, "revision": record.revision, "updated_by": record.updated_by, "updated_time": record.updated_time,
        }))
        .into_response(),
        Err(error) => refused(error),
    }
}

async fn set_policy(
    State(service): State<Arc<GateService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let policy: Value = match read_json(&headers, body, MAX_POLICY_BYTES, "the gate policy").await {
        Ok(policy) => policy,
        Err(response) => return response,
    };
    match service.set_policy(&name, policy, &actor(&headers)).await {
        Ok(record) => axum::Json(json!({"revision": record.revision})).into_response(),
        Err(error) => refused(error),
    }
}

async fn delete_policy(State(service): State<Arc<GateService>>, Path(name): Path<String>) -> Response {
    match service.delete_policy(&name).await {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(error) => refused(error),
    }
}

async fn evaluate(
    State(service): State<Arc<GateService>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(version) = version_number(&version) else {
        return not_a_version(&version);
    };
    match service.evaluate(&name, version, &actor(&headers)).await {
        Ok(evaluation) => axum::Json(json!({"evaluation": evaluation_json(&evaluation)})).into_response(),
        Err(error) => refused(error),
    }
}

async fn evaluations(
    State(service): State<Arc<GateService>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let Some(version) = version_number(&version) else {
        return not_a_version(&version);
    };
    match service.evaluations(&name, version).await {
        Ok(list) => {
            axum::Json(json!({"evaluations": list.iter().map(evaluation_json).collect::<Vec<_>>()})).into_response()
        }
        Err(error) => refused(error),
    }
}

async fn override_alias(
    State(service): State<Arc<GateService>>,
    Path((name, alias)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        version: i64,
        reason: String,
    }
    let request: Request = match read_json(&headers, body, 8_192, "the override").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match service
        .override_alias(&name, &alias, request.version, &request.reason, &actor(&headers))
        .await
    {
        Ok(record) => axum::Json(json!({"override": override_json(&record)})).into_response(),
        Err(error) => refused(error),
    }
}

async fn overrides(State(service): State<Arc<GateService>>, Path(name): Path<String>) -> Response {
    match service.overrides(&name).await {
        Ok(list) => {
            axum::Json(json!({"overrides": list.iter().map(override_json).collect::<Vec<_>>()})).into_response()
        }
        Err(error) => refused(error),
    }
}
