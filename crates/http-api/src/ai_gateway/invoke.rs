//! The invocation routes MLflow gives its gateway endpoints, over the same gateway as `/v1`:
//! `POST /gateway/{endpoint}/mlflow/invocations` (a chat or embeddings body without `model`),
//! `POST /gateway/mlflow/v1/chat/completions` and `GET /gateway/mlflow/v1/models` (OpenAI's API, the endpoint
//! named in `model`), and the provider-shaped `POST /gateway/openai/v1/chat/completions|embeddings` and
//! `POST /gateway/anthropic/v1/messages`. Refusals on the MLflow routes take FastAPI's `{"detail": ...}` shape,
//! as MLflow's server answers them.

use crate::openai::GatewayApi;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The largest error body rewritten into FastAPI's shape (gateway errors are small).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The invocation routes.
pub fn routes(api: Arc<GatewayApi>) -> Router {
    Router::new()
        .route("/gateway/{endpoint}/mlflow/invocations", post(invocations))
        .route("/gateway/mlflow/v1/chat/completions", post(mlflow_chat))
        .route("/gateway/mlflow/v1/models", get(models))
        .route("/gateway/openai/v1/chat/completions", post(crate::openai::chat))
        .route("/gateway/openai/v1/embeddings", post(crate::openai::embeddings))
        .route("/gateway/anthropic/v1/messages", post(crate::anthropic::messages))
        .with_state(api)
}

/// Every invocation route (method, path), for the permission table.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/gateway/{endpoint}/mlflow/invocations"),
    ("POST", "/gateway/mlflow/v1/chat/completions"),
    ("GET", "/gateway/mlflow/v1/models"),
    ("POST", "/gateway/openai/v1/chat/completions"),
    ("POST", "/gateway/openai/v1/embeddings"),
    ("POST", "/gateway/anthropic/v1/messages"),
];

fn detail(status: StatusCode, detail: Value) -> Response {
    (status, axum::Json(json!({ "detail": detail }))).into_response()
}

/// An endpoint's invocation: chat when the body has `messages`, embeddings when it has `input`.
async fn invocations(State(api): State<Arc<GatewayApi>>, Path(endpoint): Path<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(held) = crate::openai::reserve_body(crate::openai::declared_size(&parts.headers)) else {
        return detail(StatusCode::TOO_MANY_REQUESTS, json!(crate::openai::BUSY));
    };
    let bytes = match crate::extract::read_body_limited(body, crate::openai::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(failure) => return detail(crate::error::status_for(failure.code), json!(failure.message)),
    };
    let mut body: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return detail(StatusCode::BAD_REQUEST, json!("Invalid JSON payload: not an object")),
        Err(error) => return detail(StatusCode::BAD_REQUEST, json!(format!("Invalid JSON payload: {error}"))),
    };
    drop(bytes);
    if body.contains_key("model") {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!(
                "The parameter 'model' is not permitted to be passed. The route being queried already defines a model instance."
            ),
        );
    }
    if let Some(sync) = &api.sync {
        // Served when the live gateway has it as a catalog endpoint (not a configuration-file model); only
        // otherwise is the stored catalog read, to say why not in MLflow's words.
        let served = sync.live.base().model(&endpoint).is_none()
            && api.gateway_for(&endpoint).await.config().model(&endpoint).is_some();
        if !served {
            return match sync.load().await {
                Ok((_, catalog)) => not_served(&catalog, &endpoint),
                Err(error) => error.into_response(),
            };
        }
    }
    let embeddings = if body.contains_key("messages") {
        false
    } else if body.contains_key("input") {
        true
    } else {
        return detail(
            StatusCode::BAD_REQUEST,
            json!("Invalid request: payload format must be either chat or embeddings"),
        );
    };
    body.insert("model".into(), Value::String(endpoint));
    let text = Value::Object(body).to_string();
    // The forwarded call holds its own share of the body pool, by its real length: without a length it
    // would hold the largest body for the whole call, and concurrent invocations would be refused as busy.
    drop(held);
    let length = header::HeaderValue::from(text.len());
    let mut forwarded = Request::from_parts(parts, Body::from(text));
    forwarded.headers_mut().insert(header::CONTENT_LENGTH, length);
    forwarded.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let answer = if embeddings {
        crate::openai::embeddings(State(api), forwarded).await
    } else {
        crate::openai::chat(State(api), forwarded).await
    };
    as_detail(answer).await
}

/// Why the catalog's endpoint `endpoint` is not served: missing, without primaries, or with none that can be
/// called.
fn not_served(catalog: &loopline_llm_gateway::catalog::Catalog, endpoint: &str) -> Response {
    let message = match catalog.endpoint_named(endpoint) {
        Err(missing) => missing.message,
        Ok(found)
            if !found
                .model_mappings
                .iter()
                .any(|mapping| mapping.linkage_type == loopline_llm_gateway::catalog::Linkage::Primary) =>
        {
            format!("Endpoint '{endpoint}' has no PRIMARY models configured")
        }
        Ok(_) => format!(
            "Endpoint '{endpoint}' has no PRIMARY model that can be called: its secret was deleted or does not open \
             with this server's key, or its address is not allowed (the server log says which)"
        ),
    };
    detail(
        StatusCode::NOT_FOUND,
        json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message}),
    )
}

/// OpenAI's chat completions with the endpoint in `model` (missing: MLflow's words).
async fn mlflow_chat(State(api): State<Arc<GatewayApi>>, request: Request) -> Response {
    as_detail(crate::openai::chat(State(api), request).await).await
}

/// An error answer in FastAPI's shape: `{"detail": message}`.
async fn as_detail(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return detail(status, json!(status.canonical_reason().unwrap_or("error")));
    };
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let mut answer = detail(status, json!(message));
    for name in [header::RETRY_AFTER.as_str(), "x-request-id"] {
        if let Some(value) = parts.headers.get(name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// The catalog's endpoints (those with models), sorted by name, in OpenAI's list shape.
async fn models(State(api): State<Arc<GatewayApi>>) -> Response {
    let Some(sync) = &api.sync else {
        return axum::Json(json!({"object": "list", "data": []})).into_response();
    };
    let catalog = match sync.load().await {
        Ok((_, catalog)) => catalog,
        Err(error) => return error.into_response(),
    };
    let mut endpoints: Vec<_> = catalog
        .endpoints
        .iter()
        .filter(|endpoint| !endpoint.model_mappings.is_empty())
        .collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    let data: Vec<Value> = endpoints
        .iter()
        .map(|endpoint| {
            json!({"id": endpoint.name, "object": "model", "created": endpoint.created_at / 1000, "owned_by": "mlflow"})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
