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
use crate::dispatch::{Deployment, Deployments, RoutedError, infer_routed};
use crate::metrics::{Metrics, Outcome};
use crate::prediction_log::{Feedback, Logged, PredictionLog};
use crate::runner::InferError;
use crate::{oip, scoring};
use loopline_model_runtime_api::Tensor;

/// What the serving endpoints share.
#[derive(Clone)]
pub struct ServingState {
    /// The models.
    pub catalog: Arc<dyn Catalog>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Request-body bytes held at once across the inference routes.
    pub body_budget: crate::body_budget::BodyBudget,
    /// Where sampled predictions and feedback go, when logging is on.
    pub log: Option<Arc<PredictionLog>>,
    /// Deployments, when the server has them (requests to a deployment's name route through its policy).
    pub deployments: Option<Arc<dyn Deployments>>,
    /// Other services whose gauges `/metrics` shows (monitors).
    pub extra_metrics: Vec<Arc<dyn MetricsSource>>,
    /// Online features joined into requests of models that declare a feature service.
    pub features: Option<Arc<dyn crate::feature_join::FeatureJoin>>,
}

/// A service that adds its own families to `/metrics`.
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text exposition lines.
    fn render_metrics(&self, out: &mut String);
}

impl ServingState {
    /// Records an answered request when the log samples it.
    fn log(
        &self,
        sampled: bool,
        request_id: &str,
        served: &Served,
        arrived: (i64, std::time::Instant),
        inputs: Vec<Tensor>,
        outputs: &[Tensor],
    ) {
        if let (true, Some(log)) = (sampled, &self.log) {
            log.record(Logged {
                request_id: request_id.to_string(),
                model: served.name.clone(),
                version: served.runner.version().to_string(),
                timestamp_ms: arrived.0,
                inputs,
                outputs: outputs.to_vec(),
                shadow: false,
                latency_ms: arrived.1.elapsed().as_secs_f64() * 1000.0,
            });
        }
    }

    /// Records a shadow version's answer next to the primary's, when the log samples it.
    pub(crate) fn log_shadow(&self, served: &Served, request_id: &str, inputs: Vec<Tensor>, outputs: &[Tensor]) {
        if let Some(log) = self.log.as_ref().filter(|log| log.sampled()) {
            log.record(Logged {
                request_id: request_id.to_string(),
                model: served.name.clone(),
                version: served.runner.version().to_string(),
                timestamp_ms: loopline_core::time::now_millis(),
                inputs,
                outputs: outputs.to_vec(),
                shadow: true,
                latency_ms: 0.0,
            });
        }
    }

    fn sampled(&self) -> bool {
        self.log.as_ref().is_some_and(|log| log.sampled())
    }

    /// Runs a request through the model, recording it in the prediction log when sampled.
    pub(crate) async fn infer_logged(
        &self,
        served: &Served,
        request_id: &str,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, InferError> {
        let sampled = self.sampled();
        let logged_inputs = sampled.then(|| inputs.clone());
        let arrived = (loopline_core::time::now_millis(), std::time::Instant::now());
        let outputs = match served.runner.infer(inputs).await {
            Ok(outputs) => outputs,
            Err(error) => {
                if let (true, Some(log)) = (sampled, &self.log) {
                    log.record_failure(crate::prediction_log::Failed {
                        request_id: request_id.to_string(),
                        model: served.name.clone(),
                        version: served.runner.version().to_string(),
                        timestamp_ms: arrived.0,
                        kind: failure_kind(&error),
                        latency_ms: arrived.1.elapsed().as_secs_f64() * 1000.0,
                    });
                }
                return Err(error);
            }
        };
        self.log(
            sampled,
            request_id,
            served,
            arrived,
            logged_inputs.unwrap_or_default(),
            &outputs,
        );
        Ok(outputs)
    }
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
        .route("/deployments/{name}/invocations", post(deployment_invocations))
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
    (status, axum::Json(json!({"error": answered_message(status, message)}))).into_response()
}

fn catalog_status(error: &CatalogError) -> StatusCode {
    match error {
        CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
        CatalogError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// How a failed request is named in the prediction log's failures.
fn failure_kind(error: &InferError) -> &'static str {
    match error {
        InferError::Input(_) => "bad_input",
        InferError::Busy { .. } => "rejected",
        InferError::Unavailable(_) => "unavailable",
        InferError::Internal(_) => "internal",
        InferError::Timeout(_) => "timeout",
    }
}

fn infer_status(error: &InferError) -> (StatusCode, Outcome) {
    match error {
        InferError::Input(_) => (StatusCode::BAD_REQUEST, Outcome::BadInput),
        InferError::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, Outcome::Rejected),
        InferError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Outcome::Failure),
        InferError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Outcome::Failure),
        InferError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, Outcome::Failure),
    }
}

/// Reads a request body within the route's limit, holding its share of the body budget (returned with the
/// bytes; keep it until the request is answered).
async fn read_body(
    state: &ServingState,
    body: Body,
) -> Result<(axum::body::Bytes, tokio::sync::OwnedSemaphorePermit), String> {
    let limit = state.max_body_bytes;
    let hint = axum::body::HttpBody::size_hint(&body);
    let declared = hint.lower();
    if declared > limit as u64 {
        return Err(format!(
            "the request body of {declared} bytes is larger than the {limit}-byte limit"
        ));
    }
    // A body without a length may be as large as the limit.
    let reserved = match hint.exact() {
        Some(length) => length as usize,
        None => limit,
    };
    let held = state.body_budget.reserve(reserved).await;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| format!("the request body is larger than the {limit}-byte limit"))?;
    Ok((bytes, held))
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

/// The version that answers for `name`: a deployment's stable version when `name` is a deployment (and no
/// version is asked for), else the catalog's.
async fn lookup(state: &ServingState, name: &str, version: Option<&str>) -> Result<Served, CatalogError> {
    if version.is_none()
        && let Some(deployment) = state.deployments.as_ref().and_then(|d| d.find(name))
    {
        return deployment
            .route(None)
            .map(|route| route.fallback.unwrap_or(route.primary));
    }
    state.catalog.get(name, version).await
}

async fn metadata_of(state: &ServingState, name: &str, version: Option<&str>) -> Response {
    let served = match lookup(state, name, version).await {
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
        "name": name,
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
    match lookup(state, name, version).await {
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
    let target = match state.deployments.as_ref().and_then(|d| d.find(&name)) {
        Some(deployment) => Target::Deployment(deployment),
        None => Target::Version(None),
    };
    infer_v2(&state, &name, target, &headers, body).await
}

/// What answers a request: a resolved version, a version to resolve, or a deployment's policy.
pub(crate) enum Target<'a> {
    /// This model.
    Served(Served),
    /// The version (or alias) of the requested model; `None` for the default.
    Version(Option<&'a str>),
    /// A deployment, which picks the version after the request is decoded.
    Deployment(Arc<dyn Deployment>),
}

/// A failure as (status, counted outcome, message).
type Failure = (StatusCode, Outcome, String);

fn routed_failure(error: RoutedError) -> Failure {
    match error {
        RoutedError::Catalog(error) => (catalog_status(&error), Outcome::Failure, error.to_string()),
        RoutedError::Input(message) => (StatusCode::BAD_REQUEST, Outcome::BadInput, message),
        RoutedError::Infer(error) => {
            let (status, outcome) = infer_status(&error);
            (status, outcome, error.to_string())
        }
    }
}

/// Resolves what can be resolved before the body is read: the served version, or the labels a deployment
/// counts early refusals under.
async fn resolve(
    state: &ServingState,
    name: &str,
    target: &Target<'_>,
) -> Result<(Option<Served>, (String, String)), CatalogError> {
    let served = match target {
        Target::Served(served) => served.clone(),
        Target::Version(version) => state.catalog.get(name, *version).await?,
        Target::Deployment(deployment) => {
            return Ok((None, (deployment.model().to_string(), deployment.stable_version())));
        }
    };
    let labels = (served.name.clone(), served.runner.version().to_string());
    Ok((Some(served), labels))
}

/// Runs decoded inputs through the target.
async fn answer(
    state: &ServingState,
    served: Option<Served>,
    target: &Target<'_>,
    headers: &HeaderMap,
    request_id: &str,
    inputs: Vec<Tensor>,
) -> Result<(Served, Vec<Tensor>), Failure> {
    match (served, target) {
        (Some(served), _) => {
            let inputs = conform(served.descriptor.signature(), inputs)
                .map_err(|message| (StatusCode::BAD_REQUEST, Outcome::BadInput, message))?;
            match state.infer_logged(&served, request_id, inputs).await {
                Ok(outputs) => Ok((served, outputs)),
                Err(error) => {
                    let (status, outcome) = infer_status(&error);
                    Err((status, outcome, error.to_string()))
                }
            }
        }
        (None, Target::Deployment(deployment)) => infer_routed(state, deployment, headers, request_id, inputs)
            .await
            .map_err(routed_failure),
        (None, _) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::Failure,
            "no version was resolved for the request".to_string(),
        )),
    }
}

async fn version_infer(
    State(state): State<ServingState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_v2(&state, &name, Target::Version(Some(&version)), &headers, body).await
}

const PROTOCOL_V2: &str = "v2";
const PROTOCOL_MLFLOW: &str = "mlflow";

async fn infer_v2(state: &ServingState, name: &str, target: Target<'_>, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (served, labels) = match resolve(state, name, &target).await {
        Ok(resolved) => resolved,
        Err(error) => return v2_error(catalog_status(&error), error),
    };
    let record = |labels: &(String, String), outcome: Outcome| {
        state
            .metrics
            .request(&labels.0, &labels.1, PROTOCOL_V2, outcome, started.elapsed());
    };
    let (body, _held) = match read_body(state, body).await {
        Ok(read) => read,
        Err(message) => {
            record(&labels, Outcome::BadInput);
            return v2_error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    let header_length = match headers.get("inference-header-content-length") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(length) => Some(length),
            None => {
                record(&labels, Outcome::BadInput);
                return v2_error(
                    StatusCode::BAD_REQUEST,
                    "Inference-Header-Content-Length must be a byte count",
                );
            }
        },
    };
    let mut request = match oip::decode_request(&body, header_length) {
        Ok(request) => request,
        Err(message) => {
            record(&labels, Outcome::BadInput);
            return v2_error(StatusCode::BAD_REQUEST, message);
        }
    };
    let inputs = std::mem::take(&mut request.inputs);
    let inputs = match join_features(state, name, &target, served.as_ref(), inputs).await {
        Ok(joined) => joined,
        Err((status, message)) => {
            record(
                &labels,
                if status.is_client_error() {
                    Outcome::BadInput
                } else {
                    Outcome::Failure
                },
            );
            return v2_error(status, message);
        }
    };
    let request_id = request
        .id
        .clone()
        .filter(|id| usable_request_id(id))
        .unwrap_or_else(new_request_id);
    request.id = Some(request_id.clone());
    let (served, outputs) = match answer(state, served, &target, headers, &request_id, inputs).await {
        Ok(answered) => answered,
        Err((status, outcome, message)) => {
            record(&labels, outcome);
            return v2_error(status, message);
        }
    };
    let labels = (served.name.clone(), served.runner.version().to_string());
    match oip::encode_response(name, served.runner.version(), &request, &outputs) {
        Ok(encoded) => {
            record(&labels, Outcome::Success);
            let mut response = Response::new(Body::from(encoded.body));
            set_request_id(&mut response, &request_id);
            if let Ok(value) = HeaderValue::from_str(served.runner.version()) {
                response.headers_mut().insert(SERVED_VERSION, value);
            }
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
            record(&labels, Outcome::BadInput);
            v2_error(StatusCode::BAD_REQUEST, message)
        }
    }
}

/// The header that carries a request's id both ways (the id feedback refers to).
const REQUEST_ID: &str = "x-request-id";

/// A caller's request id is kept when it can travel in a header and is short enough to log; otherwise the
/// request gets a new one.
fn usable_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// The longest request id a caller may choose.
const MAX_REQUEST_ID_BYTES: usize = 256;

fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn set_request_id(response: &mut Response, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
}

/// `POST /api/loopline/v1/feedback`: ground-truth labels for earlier requests, by request id.
pub fn feedback_routes(state: ServingState) -> Router {
    Router::new()
        .route("/api/loopline/v1/feedback", post(feedback))
        .route("/api/loopline/v1/predictions/flush", post(flush_log))
        .with_state(state)
}

/// `POST /api/loopline/v1/predictions/flush`: writes every buffered prediction and label now (before an
/// export, or before stopping a replica by hand).
async fn flush_log(State(state): State<ServingState>) -> Response {
    let Some(log) = &state.log else {
        return mlflow_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the prediction log is off on this server",
        );
    };
    match log.flush().await {
        Ok(()) => axum::Json(json!({"written_rows": log.written(), "dropped": log.dropped()})).into_response(),
        Err(message) => mlflow_error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

async fn feedback(State(state): State<ServingState>, body: Body) -> Response {
    let error = |status: StatusCode, message: String| {
        (status, axum::Json(json!({"error_code": if status == StatusCode::BAD_REQUEST { "INVALID_PARAMETER_VALUE" } else { "TEMPORARILY_UNAVAILABLE" }, "message": message}))).into_response()
    };
    let (body, _held) = match read_body(&state, body).await {
        Ok(read) => read,
        Err(message) => return error(StatusCode::PAYLOAD_TOO_LARGE, message),
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let items: Vec<&serde_json::Value> = match value.get("feedback") {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "'feedback' must be a list of {request_id, label, reward}".to_string(),
            );
        }
        None => vec![&value],
    };
    let now = loopline_core::time::now_millis();
    let mut labels = Vec::with_capacity(items.len());
    let mut rewards = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(request_id) = item
            .get("request_id")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
        else {
            return error(StatusCode::BAD_REQUEST, format!("feedback {index} has no 'request_id'"));
        };
        let label = item
            .get("label")
            .or_else(|| item.get("labels"))
            .filter(|v| !v.is_null());
        let reward = match item.get("reward").filter(|v| !v.is_null()) {
            None => None,
            Some(value) => match value.as_f64().filter(|r| (0.0..=1.0).contains(r)) {
                Some(reward) => Some(reward),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("feedback {index} ({request_id}): 'reward' must be a number from 0 to 1, got {value}"),
                    );
                }
            },
        };
        if label.is_none() && reward.is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("feedback {index} ({request_id}) has neither a 'label' nor a 'reward'"),
            );
        }
        if let Some(label) = label {
            labels.push(Feedback {
                request_id: request_id.to_string(),
                label: label.to_string(),
                timestamp_ms: now,
            });
        }
        if let Some(reward) = reward {
            rewards.push((request_id.to_string(), reward));
        }
    }
    if !labels.is_empty() && state.log.is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the prediction log is off on this server, so labels cannot be joined to predictions; start it with a prediction log".to_string(),
        );
    }
    if !rewards.is_empty() && state.deployments.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "rewards feed deployments with a bandit policy, and this server has no deployments".to_string(),
        );
    }
    let matched = rewards
        .iter()
        .filter(|(id, reward)| state.deployments.as_ref().is_some_and(|d| d.reward(id, *reward)))
        .count();
    let recorded = labels.len();
    if let (Some(log), false) = (&state.log, labels.is_empty())
        && let Err(message) = log.feedback(labels).await
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, message);
    }
    let mut answer = json!({"recorded": recorded});
    if !rewards.is_empty() {
        answer["rewards"] = json!(rewards.len());
        answer["rewards_matched"] = json!(matched);
    }
    axum::Json(answer).into_response()
}

fn mlflow_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
        StatusCode::TOO_MANY_REQUESTS => "REQUEST_LIMIT_EXCEEDED",
        StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
        StatusCode::PAYLOAD_TOO_LARGE => "RESOURCE_EXHAUSTED",
        StatusCode::INTERNAL_SERVER_ERROR => "INTERNAL_ERROR",
        StatusCode::GATEWAY_TIMEOUT => "DEADLINE_EXCEEDED",
        _ => "BAD_REQUEST",
    };
    (
        status,
        axum::Json(json!({"error_code": code, "message": answered_message(status, message)})),
    )
        .into_response()
}

/// What a client is told: server-side failures lose the server's paths (the log keeps them).
fn answered_message(status: StatusCode, message: impl std::fmt::Display) -> String {
    let message = message.to_string();
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), %message, "model request failed");
        return loopline_core::redact::redact_server_paths(&message);
    }
    message
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
    let name = served.name.clone();
    score(&state, &name, Target::Served(served), &headers, body).await
}

async fn version_invocations(
    State(state): State<ServingState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    score(&state, &name, Target::Version(Some(&version)), &headers, body).await
}

/// `POST /deployments/{name}/invocations`: the MLflow scoring protocol through a deployment's policy.
async fn deployment_invocations(
    State(state): State<ServingState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match state.deployments.as_ref().and_then(|d| d.find(&name)) {
        Some(deployment) => score(&state, &name, Target::Deployment(deployment), &headers, body).await,
        None => mlflow_error(
            StatusCode::NOT_FOUND,
            format!("no deployment named '{name}'; list them at /api/loopline/v1/deployments"),
        ),
    }
}

async fn score(state: &ServingState, name: &str, target: Target<'_>, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (served, labels) = match resolve(state, name, &target).await {
        Ok(resolved) => resolved,
        Err(error) => return mlflow_error(catalog_status(&error), error),
    };
    let record = |labels: &(String, String), outcome: Outcome| {
        state
            .metrics
            .request(&labels.0, &labels.1, PROTOCOL_MLFLOW, outcome, started.elapsed());
    };
    let format = match scoring_format(headers) {
        Ok(format) => format,
        Err(message) => {
            record(&labels, Outcome::BadInput);
            return unsupported_media(message);
        }
    };
    let (body, _held) = match read_body(state, body).await {
        Ok(read) => read,
        Err(message) => {
            record(&labels, Outcome::BadInput);
            return mlflow_error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    // Parameters are checked against the served version's signature; a deployment's versions share one.
    let params = served
        .as_ref()
        .and_then(|s| s.descriptor.signature())
        .map(|s| s.params.clone())
        .unwrap_or_default();
    let decoded = match format {
        Format::Json => scoring::decode_json(&body, &params).map(|request| request.inputs),
        Format::Csv => scoring::decode_csv(&body),
    };
    let inputs = match decoded {
        Ok(inputs) => inputs,
        Err(message) => {
            record(&labels, Outcome::BadInput);
            return mlflow_error(StatusCode::BAD_REQUEST, message);
        }
    };
    let inputs = match join_features(state, name, &target, served.as_ref(), inputs).await {
        Ok(joined) => joined,
        Err((status, message)) => {
            record(
                &labels,
                if status.is_client_error() {
                    Outcome::BadInput
                } else {
                    Outcome::Failure
                },
            );
            return mlflow_error(status, message);
        }
    };
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable_request_id(v))
        .map_or_else(new_request_id, str::to_string);
    match answer(state, served, &target, headers, &request_id, inputs).await {
        Ok((served, outputs)) => {
            record(
                &(served.name.clone(), served.runner.version().to_string()),
                Outcome::Success,
            );
            let mut response = (
                [(header::CONTENT_TYPE, "application/json")],
                scoring::encode_predictions(&outputs),
            )
                .into_response();
            set_request_id(&mut response, &request_id);
            if let Ok(value) = HeaderValue::from_str(served.runner.version()) {
                response.headers_mut().insert(SERVED_VERSION, value);
            }
            response
        }
        Err((status, outcome, message)) => {
            record(&labels, outcome);
            mlflow_error(status, message)
        }
    }
}

/// The request's inputs with the online features of its model's feature service joined, when the model
/// declares one (the server's `FeatureJoin`); unchanged otherwise.
async fn join_features(
    state: &ServingState,
    name: &str,
    target: &Target<'_>,
    served: Option<&Served>,
    inputs: Vec<loopline_model_runtime_api::tensor::Tensor>,
) -> Result<Vec<loopline_model_runtime_api::tensor::Tensor>, (StatusCode, String)> {
    let Some(features) = &state.features else {
        return Ok(inputs);
    };
    let model = match (target, served) {
        (Target::Deployment(deployment), _) => deployment.model().to_string(),
        (_, Some(served)) => served.name.clone(),
        _ => name.to_string(),
    };
    features.join(&model, inputs).await
}

/// The header naming the version that answered (useful behind a deployment).
const SERVED_VERSION: &str = "x-loopline-model-version";

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
    let mut text = state.metrics.render(&queues);
    if let Some(deployments) = &state.deployments {
        deployments.render_metrics(&mut text);
    }
    for source in &state.extra_metrics {
        source.render_metrics(&mut text);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
