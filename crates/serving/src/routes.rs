//! HTTP endpoints: the Open Inference Protocol v2 (`/v2/...`), the MLflow scoring protocol (`/invocations`,
//! `/ping`, `/health`, `/version` for one served model; `/models/{name}/versions/{v}/invocations` inside the
//! registry server) and `/metrics`. Each protocol answers failures in its own error shape.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::catalog::{Catalog, CatalogError, Served};
use crate::conform::conform;
use crate::metrics::{Metrics, Outcome};
use crate::runner::InferError;
use crate::{oip, scoring};

/// What the serving endpoints share.
#[derive(Clone)]
pub struct ServingState {
    /// The models.
    pub catalog: Arc<dyn Catalog>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// The Open Inference Protocol v2 endpoints and `/metrics`.
pub fn v2_routes(state: ServingState) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}", get(version_metadata))
        .route("/v2/models/{name}/versions/{version}/ready", get(version_ready))
        .route("/v2/models/{name}/versions/{version}/infer", post(version_infer))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The MLflow scoring endpoint for registry versions: `/models/{name}/versions/{version-or-alias}/invocations`.
pub fn registry_scoring_routes(state: ServingState) -> Router {
    Router::new()
        .route(
            "/models/{name}/versions/{version}/invocations",
            post(version_invocations),
        )
        .with_state(state)
}

/// Everything `loopline serve -m` answers for its one model: MLflow scoring at the root plus v2.
pub fn standalone_routes(state: ServingState) -> Router {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .with_state(state.clone())
        .merge(v2_routes(state))
}

fn v2_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": message.to_string()}))).into_response()
}

fn catalog_status(error: &CatalogError) -> StatusCode {
    match error {
        CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
        CatalogError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn infer_status(error: &InferError) -> (StatusCode, Outcome) {
    match error {
        InferError::Input(_) => (StatusCode::BAD_REQUEST, Outcome::BadInput),
        InferError::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, Outcome::Rejected),
        InferError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Outcome::Failure),
        InferError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Outcome::Failure),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, String> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| format!("the request body is larger than the {limit}-byte limit"))
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "loopline",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

async fn ready(State(state): State<ServingState>) -> Response {
    match state.catalog.ready() {
        Ok(()) => axum::Json(json!({"ready": true})).into_response(),
        Err(reason) => v2_error(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metadata_of(state: &ServingState, name: &str, version: Option<&str>) -> Response {
    let served = match state.catalog.get(name, version).await {
        Ok(served) => served,
        Err(error) => return v2_error(catalog_status(&error), error),
    };
    let metadata = served.runner.model().metadata();
    let tensors = |list: &[loopline_model_runtime_api::TensorMetadata]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype.name(), "shape": t.shape}))
            .collect()
    };
    axum::Json(json!({
        "name": served.name,
        "versions": [served.runner.version()],
        "platform": metadata.platform,
        "inputs": tensors(&metadata.inputs),
        "outputs": tensors(&metadata.outputs),
    }))
    .into_response()
}

async fn model_metadata(State(state): State<ServingState>, Path(name): Path<String>) -> Response {
    metadata_of(&state, &name, None).await
}

async fn version_metadata(
    State(state): State<ServingState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata_of(&state, &name, Some(&version)).await
}

async fn ready_of(state: &ServingState, name: &str, version: Option<&str>) -> Response {
    match state.catalog.get(name, version).await {
        Ok(_) => axum::Json(json!({"name": name, "ready": true})).into_response(),
        Err(error) => v2_error(catalog_status(&error), error),
    }
}

async fn model_ready(State(state): State<ServingState>, Path(name): Path<String>) -> Response {
    ready_of(&state, &name, None).await
}

async fn version_ready(State(state): State<ServingState>, Path((name, version)): Path<(String, String)>) -> Response {
    ready_of(&state, &name, Some(&version)).await
}

async fn infer(
    State(state): State<ServingState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_v2(&state, &name, None, &headers, body).await
}

async fn version_infer(
    State(state): State<ServingState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_v2(&state, &name, Some(&version), &headers, body).await
}

const PROTOCOL_V2: &str = "v2";
const PROTOCOL_MLFLOW: &str = "mlflow";

async fn infer_v2(
    state: &ServingState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let served = match state.catalog.get(name, version).await {
        Ok(served) => served,
        Err(error) => return v2_error(catalog_status(&error), error),
    };
    let record = |outcome: Outcome| {
        state.metrics.request(
            &served.name,
            served.runner.version(),
            PROTOCOL_V2,
            outcome,
            started.elapsed(),
        );
    };
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(message) => {
            record(Outcome::BadInput);
            return v2_error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    let header_length = match headers.get("inference-header-content-length") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(length) => Some(length),
            None => {
                record(Outcome::BadInput);
                return v2_error(
                    StatusCode::BAD_REQUEST,
                    "Inference-Header-Content-Length must be a byte count",
                );
            }
        },
    };
    let prepared = oip::decode_request(&body, header_length).and_then(|mut request| {
        let inputs = std::mem::take(&mut request.inputs);
        conform(served.descriptor.signature(), inputs).map(|inputs| (request, inputs))
    });
    let (request, inputs) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            record(Outcome::BadInput);
            return v2_error(StatusCode::BAD_REQUEST, message);
        }
    };
    let outputs = match served.runner.infer(inputs).await {
        Ok(outputs) => outputs,
        Err(error) => {
            let (status, outcome) = infer_status(&error);
            record(outcome);
            return v2_error(status, error);
        }
    };
    match oip::encode_response(&served.name, served.runner.version(), &request, &outputs) {
        Ok(encoded) => {
            record(Outcome::Success);
            let mut response = Response::new(Body::from(encoded.body));
            let content_type = if let Some(length) = encoded.header_length {
                response
                    .headers_mut()
                    .insert("inference-header-content-length", HeaderValue::from(length));
                "application/octet-stream"
            } else {
                "application/json"
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Err(message) => {
            record(Outcome::BadInput);
            v2_error(StatusCode::BAD_REQUEST, message)
        }
    }
}

fn mlflow_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
        StatusCode::TOO_MANY_REQUESTS => "REQUEST_LIMIT_EXCEEDED",
        StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
        StatusCode::PAYLOAD_TOO_LARGE => "RESOURCE_EXHAUSTED",
        StatusCode::INTERNAL_SERVER_ERROR => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    };
    (
        status,
        axum::Json(json!({"error_code": code, "message": message.to_string()})),
    )
        .into_response()
}

fn unsupported_media(message: String) -> Response {
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

enum Format {
    Json,
    Csv,
}

/// MLflow's content negotiation: `application/json` or `text/csv`, only a utf-8 charset parameter.
fn scoring_format(headers: &HeaderMap) -> Result<Format, String> {
    let accepted = "accepted content types are application/json and text/csv";
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(format!("the request has no Content-Type; {accepted}"));
    };
    let mut parts = value.split(';').map(str::trim);
    let mime = parts.next().unwrap_or_default().to_ascii_lowercase();
    for parameter in parts.filter(|p| !p.is_empty()) {
        let (key, setting) = parameter.split_once('=').unwrap_or((parameter, ""));
        if !key.trim().eq_ignore_ascii_case("charset") {
            return Err(format!(
                "unrecognised content type parameter '{parameter}'; since MLflow 2.0 the format is chosen by the JSON body's keys, not by a Content-Type parameter"
            ));
        }
        if !setting.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
            return Err(format!("charset '{setting}' is not supported; send utf-8"));
        }
    }
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "text/csv" => Ok(Format::Csv),
        other => Err(format!("content type '{other}' is not supported; {accepted}")),
    }
}

async fn invocations(State(state): State<ServingState>, headers: HeaderMap, body: Body) -> Response {
    let Some(served) = state.catalog.loaded().into_iter().next() else {
        return mlflow_error(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded");
    };
    score(&state, served, &headers, body).await
}

async fn version_invocations(
    State(state): State<ServingState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match state.catalog.get(&name, Some(&version)).await {
        Ok(served) => score(&state, served, &headers, body).await,
        Err(error) => mlflow_error(catalog_status(&error), error),
    }
}

async fn score(state: &ServingState, served: Served, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let record = |outcome: Outcome| {
        state.metrics.request(
            &served.name,
            served.runner.version(),
            PROTOCOL_MLFLOW,
            outcome,
            started.elapsed(),
        );
    };
    let format = match scoring_format(headers) {
        Ok(format) => format,
        Err(message) => {
            record(Outcome::BadInput);
            return unsupported_media(message);
        }
    };
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(message) => {
            record(Outcome::BadInput);
            return mlflow_error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    let signature = served.descriptor.signature();
    let decoded = match format {
        Format::Json => {
            let params = signature.map(|s| s.params.as_slice()).unwrap_or_default();
            scoring::decode_json(&body, params).map(|request| request.inputs)
        }
        Format::Csv => scoring::decode_csv(&body),
    };
    let inputs = match decoded.and_then(|inputs| conform(signature, inputs)) {
        Ok(inputs) => inputs,
        Err(message) => {
            record(Outcome::BadInput);
            return mlflow_error(StatusCode::BAD_REQUEST, message);
        }
    };
    match served.runner.infer(inputs).await {
        Ok(outputs) => {
            record(Outcome::Success);
            (
                [(header::CONTENT_TYPE, "application/json")],
                scoring::encode_predictions(&outputs),
            )
                .into_response()
        }
        Err(error) => {
            let (status, outcome) = infer_status(&error);
            record(outcome);
            mlflow_error(status, error)
        }
    }
}

async fn ping(State(state): State<ServingState>) -> Response {
    match state.catalog.ready() {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], "\n").into_response(),
        Err(reason) => mlflow_error(StatusCode::NOT_FOUND, reason),
    }
}

async fn version() -> Response {
    env!("CARGO_PKG_VERSION").into_response()
}

async fn metrics(State(state): State<ServingState>) -> Response {
    let queues: Vec<(String, String, usize)> = state
        .catalog
        .loaded()
        .into_iter()
        .map(|s| (s.name.clone(), s.runner.version().to_string(), s.runner.queued_rows()))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&queues),
    )
        .into_response()
}
