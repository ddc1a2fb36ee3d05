//! `/api/loopline/v1/deployments`: create, list, read, update, delete, promote, roll back and read the audit
//! trail; `/api/loopline/v1/registered-models/alias-history`: which version an alias named when. Errors use
//! the `{error_code, message}` shape of the rest of the API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use loopline_metadata_store::MetadataStore;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::manager::{CommandError, Manager};
use crate::spec::DeploymentSpec;

/// What the endpoints share.
#[derive(Clone)]
pub struct ApiState {
    /// The deployments.
    pub manager: Arc<Manager>,
    /// For the alias history.
    pub store: Arc<dyn MetadataStore>,
}

/// The routes.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/api/loopline/v1/deployments", get(list).post(create))
        .route(
            "/api/loopline/v1/deployments/{name}",
            get(read).put(update).patch(update).delete(delete),
        )
        .route("/api/loopline/v1/deployments/{name}/promote", post(promote))
        .route("/api/loopline/v1/deployments/{name}/rollback", post(rollback))
        .route("/api/loopline/v1/deployments/{name}/events", get(events))
        .route("/api/loopline/v1/registered-models/alias-history", get(alias_history))
        .with_state(state)
}

/// An error in the `{error_code, message}` shape (server errors logged and their paths redacted).
pub fn failure(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let mut message = message.to_string();
    if status.is_server_error() {
        tracing::error!(%message, "deployment request failed");
        message = loopline_core::redact::redact_server_paths(&message);
    }
    (status, axum::Json(json!({"error_code": code, "message": message}))).into_response()
}

/// A command's error as an API answer.
pub fn refused(error: CommandError) -> Response {
    match error {
        CommandError::Invalid(m) => failure(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", m),
        CommandError::NotFound(m) => failure(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", m),
        CommandError::Conflict(m) => failure(StatusCode::CONFLICT, "INVALID_STATE", m),
        CommandError::Internal(m) => failure(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", m),
    }
}

fn answer(result: Result<Value, CommandError>) -> Response {
    match result {
        Ok(deployment) => axum::Json(json!({"deployment": deployment})).into_response(),
        Err(error) => refused(error),
    }
}

/// Who asked: the `X-Loopline-User` header, else `api`.
pub fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-loopline-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| "api".to_string(), |user| format!("user:{user}"))
}

fn bad(message: String) -> Response {
    failure(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// The largest deployment request body.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a request body, refusing at once one whose declared length is past `limit`.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RESOURCE_EXHAUSTED",
            format!("the request body is larger than the {limit}-byte limit"),
        )
    };
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// Reads a JSON request body: refused at once past its limit, and when it does not say it is JSON.
async fn read_json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    read_json_body_within(headers, body, MAX_BODY_BYTES).await
}

/// [`read_json_body`] with another limit (for the other `/api/loopline/v1` resources).
pub async fn read_json_body_within(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let body = read_body(body, limit).await?;
    declared_json(headers, &body).map_err(bad)?;
    Ok(body)
}

/// Reads a JSON body of at most `limit` bytes (an empty body reads as `{}`) into `T`; a 400 naming `what`
/// otherwise.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<T, Response> {
    let body = read_json_body_within(headers, body, limit).await?;
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(text).map_err(|e| bad(format!("{what} is not valid: {e}")))
}

/// A body must say it is JSON: browsers send form and text bodies cross-origin without asking first.
fn declared_json(headers: &HeaderMap, body: &Bytes) -> Result<(), String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if body.iter().all(u8::is_ascii_whitespace) || loopline_core::media_type::is_json_media_type(content_type) {
        return Ok(());
    }
    Err("Content-Type must be application/json".to_string())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("the body is not a valid request: {}", e.inner())
        } else {
            format!("field '{path}': {}", e.inner())
        }
    })
}

/// Splits a body into the spec and the named extra fields (`name`, `revision`).
fn spec_and(body: &Bytes, extra: &[&str]) -> Result<(DeploymentSpec, serde_json::Map<String, Value>), String> {
    let mut fields: serde_json::Map<String, Value> = json_body(body)?;
    let taken: serde_json::Map<String, Value> = extra
        .iter()
        .filter_map(|key| fields.remove(*key).map(|value| (key.to_string(), value)))
        .collect();
    let spec = json_body(&Bytes::from(Value::Object(fields).to_string()))?;
    Ok((spec, taken))
}

async fn create(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (spec, extra) = match spec_and(&body, &["name"]) {
        Ok(parsed) => parsed,
        Err(message) => return bad(message),
    };
    let Some(name) = extra.get("name").and_then(Value::as_str) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "field 'name': a deployment needs a name",
        );
    };
    answer(state.manager.create(name, spec, &actor(&headers)).await)
}

async fn list(State(state): State<ApiState>) -> Response {
    match state.manager.list().await {
        Ok(deployments) => axum::Json(json!({"deployments": deployments})).into_response(),
        Err(error) => refused(error),
    }
}

async fn read(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    answer(state.manager.get(&name).await)
}

async fn update(State(state): State<ApiState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (spec, extra) = match spec_and(&body, &["revision", "name"]) {
        Ok(parsed) => parsed,
        Err(message) => return bad(message),
    };
    let revision = match extra.get("revision") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(revision) => Some(revision),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    format!("field 'revision': expected an integer, got {value}"),
                );
            }
        },
    };
    answer(state.manager.update(&name, spec, revision, &actor(&headers)).await)
}

async fn delete(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.manager.delete(&name).await {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(error) => refused(error),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    version: Option<String>,
}

async fn promote(State(state): State<ApiState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let body: PromoteBody = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return bad(message),
    };
    answer(
        state
            .manager
            .promote(&name, body.version.as_deref(), &actor(&headers))
            .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn rollback(State(state): State<ApiState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let body: RollbackBody = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return bad(message),
    };
    answer(
        state
            .manager
            .rollback(&name, body.reason.as_deref(), &actor(&headers))
            .await,
    )
}

fn number<T: std::str::FromStr>(query: &HashMap<String, String>, key: &str, default: T) -> Result<T, String> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("query parameter '{key}' must be a whole number, got '{text}'")),
    }
}

async fn events(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = match (number(&query, "after", 0i64), number(&query, "limit", 1000usize)) {
        (Ok(after), Ok(limit)) => (after, limit),
        (Err(message), _) | (_, Err(message)) => return bad(message),
    };
    match state.manager.events(&name, after, limit.min(10_000)).await {
        Ok(events) => axum::Json(json!({"events": events})).into_response(),
        Err(error) => refused(error),
    }
}

async fn alias_history(State(state): State<ApiState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(name) = query.get("name").filter(|n| !n.is_empty()) else {
        return bad("query parameter 'name' (the registered model) is required".to_string());
    };
    if state.store.get_registered_model(name).await.is_err() {
        return failure(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("registered model '{name}' does not exist"),
        );
    }
    match state
        .store
        .alias_history(name, query.get("alias").map(String::as_str))
        .await
    {
        Ok(changes) => axum::Json(json!({
            "changes": changes
                .into_iter()
                .map(|c| json!({"alias": c.alias, "version": c.version.map(|v| v.to_string()), "set_time": c.set_time}))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(error) => failure(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", error),
    }
}
