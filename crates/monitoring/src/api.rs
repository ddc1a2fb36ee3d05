//! `/api/loopline/v1/monitors` (create, list, status, run, windows, reports, roll-ups, history, acknowledge,
//! silence, business figures) and `/api/loopline/v1/registered-models/{name}/versions/{version}/reference`.
//! Errors use the `{error_code, message}` shape of the rest of the API, and an invalid request names its
//! field in the message.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use loopline_artifact_store::ArtifactPath;
use loopline_deployments::api::{actor, failure, read_json_body_within};
use serde_json::{Value, json};

use crate::service::{MonitorError, Monitoring};

/// The largest monitor request body.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The largest reference profile.
const MAX_PROFILE_BYTES: usize = 64 << 20;

/// The routes.
pub fn routes(service: Arc<Monitoring>) -> Router {
    Router::new()
        .route("/api/loopline/v1/monitors", get(list).post(create))
        .route("/api/loopline/v1/monitors/{name}", get(status).delete(delete))
        .route("/api/loopline/v1/monitors/{name}/run", post(run))
        .route("/api/loopline/v1/monitors/{name}/windows", get(windows))
        .route("/api/loopline/v1/monitors/{name}/windows/{window}/report", get(report))
        .route("/api/loopline/v1/monitors/{name}/events", get(events))
        .route("/api/loopline/v1/monitors/{name}/rollup", get(rollup))
        .route(
            "/api/loopline/v1/monitors/{name}/alerts/{rule}/acknowledge",
            post(acknowledge),
        )
        .route("/api/loopline/v1/monitors/{name}/alerts/{rule}/silence", post(silence))
        .route("/api/loopline/v1/monitors/{name}/business-metrics", post(business))
        .route("/api/loopline/v1/monitors/{name}/review-queue", get(review_queue))
        .route(
            "/api/loopline/v1/monitors/{name}/review-queue/labels",
            post(review_labels),
        )
        .route(
            "/api/loopline/v1/registered-models/{name}/versions/{version}/reference",
            get(get_reference).put(set_reference),
        )
        .with_state(service)
}

fn refused(error: MonitorError) -> Response {
    match error {
        MonitorError::Invalid { field, message } => failure(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            format!("{field}: {message}"),
        ),
        MonitorError::NotFound(message) => failure(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message),
        MonitorError::Conflict(message) => failure(StatusCode::CONFLICT, "RESOURCE_ALREADY_EXISTS", message),
        MonitorError::Internal(message) => failure(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message),
    }
}

fn answer(result: Result<Value, MonitorError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => refused(error),
    }
}

fn bad(field: &str, message: impl std::fmt::Display) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER_VALUE",
        format!("{field}: {message}"),
    )
}

fn number<T: std::str::FromStr>(query: &HashMap<String, String>, key: &str, default: T) -> Result<T, Box<Response>> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| Box::new(bad(key, format!("'{text}' is not a number")))),
    }
}

async fn create(State(service): State<Arc<Monitoring>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body_within(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    answer(
        service
            .create(&body, &actor(&headers))
            .await
            .map(|m| json!({"monitor": m})),
    )
}

async fn list(State(service): State<Arc<Monitoring>>) -> Response {
    answer(service.list().await.map(|m| json!({"monitors": m})))
}

async fn status(State(service): State<Arc<Monitoring>>, Path(name): Path<String>) -> Response {
    answer(service.status(&name).await.map(|m| json!({"monitor": m})))
}

async fn delete(State(service): State<Arc<Monitoring>>, Path(name): Path<String>) -> Response {
    answer(service.delete(&name).await.map(|()| json!({})))
}

async fn run(State(service): State<Arc<Monitoring>>, Path(name): Path<String>) -> Response {
    answer(
        service
            .in_background(|service| async move { service.run(&name, true).await })
            .await,
    )
}

async fn windows(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // `newest=N`: the N most recent windows (oldest first), as a chart of the recent past wants them.
    if query.contains_key("newest") {
        return match number(&query, "newest", 100usize) {
            Ok(newest) => answer(
                service
                    .newest_windows(&name, newest)
                    .await
                    .map(|w| json!({"windows": w})),
            ),
            Err(response) => *response,
        };
    }
    let (from, limit) = match (number(&query, "from", i64::MIN), number(&query, "limit", 100usize)) {
        (Ok(from), Ok(limit)) => (from, limit),
        (Err(response), _) | (_, Err(response)) => return *response,
    };
    answer(service.windows(&name, from, limit).await.map(|w| json!({"windows": w})))
}

async fn events(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = match (number(&query, "after", 0i64), number(&query, "limit", 100usize)) {
        (Ok(after), Ok(limit)) => (after, limit),
        (Err(response), _) | (_, Err(response)) => return *response,
    };
    let kind = query.get("kind").map(String::as_str);
    answer(
        service
            .events(&name, after, limit, kind)
            .await
            .map(|e| json!({"events": e})),
    )
}

/// `GET .../windows/{window}/report?format=html|json`: the stored report of one window.
async fn report(
    State(service): State<Arc<Monitoring>>,
    Path((name, window)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(key) = window.parse::<i64>() else {
        return bad("window", format!("'{window}' is not a window number"));
    };
    let html = match query.get("format").map(String::as_str) {
        None | Some("html") => true,
        Some("json") => false,
        Some(other) => return bad("format", format!("'{other}' is neither html nor json")),
    };
    let windows = match service.windows(&name, key, 1).await {
        Ok(windows) => windows,
        Err(error) => return refused(error),
    };
    let Some(found) = windows.into_iter().find(|w| w["window"] == key) else {
        return refused(MonitorError::NotFound(format!("monitor '{name}' has no window {key}")));
    };
    let Some(directory) = found["report"].as_str() else {
        return refused(MonitorError::NotFound(format!(
            "window {key} of monitor '{name}' has no report ({})",
            found["status"].as_str().unwrap_or("no comparison was made")
        )));
    };
    let file = if html { "report.html" } else { "report.json" };
    let Ok(path) = ArtifactPath::parse(&format!("{directory}/{file}")) else {
        return refused(MonitorError::Internal(format!(
            "window {key} names an unusable report path"
        )));
    };
    let download = match service.artifacts.get(&path).await {
        Ok(download) => download,
        Err(error) => {
            return refused(MonitorError::Internal(format!(
                "the report of window {key} cannot be read: {error}"
            )));
        }
    };
    let chunks: Result<Vec<bytes::Bytes>, _> = download.body.try_collect().await;
    let Ok(chunks) = chunks else {
        return refused(MonitorError::Internal(format!(
            "the report of window {key} cannot be read"
        )));
    };
    let content_type = if html {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    };
    ([(header::CONTENT_TYPE, content_type)], chunks.concat()).into_response()
}

/// `GET .../rollup?from=&to=&format=json|html`: the windows within `[from, to)` merged (times as
/// milliseconds, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]Z`, UTC); HTML is the merged span's drift report.
async fn rollup(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut bounds = [0i64; 2];
    for (slot, field) in bounds.iter_mut().zip(["from", "to"]) {
        let Some(text) = query.get(field) else {
            return bad(
                field,
                "is required (milliseconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z, UTC)",
            );
        };
        match loopline_core::time::parse_utc_millis(text) {
            Some(millis) => *slot = millis,
            None => {
                return bad(
                    field,
                    format!("'{text}' is not milliseconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z"),
                );
            }
        }
    }
    let html = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => return bad("format", format!("'{other}' is neither json nor html")),
    };
    let (from, to) = (bounds[0], bounds[1]);
    let rolled = match service
        .in_background({
            let name = name.clone();
            |service| async move { service.rollup(&name, from, to).await }
        })
        .await
    {
        Ok(rolled) => rolled,
        Err(error) => return refused(error),
    };
    if !html {
        return answer(Ok(json!({"rollup": rolled.summary, "report": rolled.report})));
    }
    match &rolled.report {
        Some(report) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::rollup::render_html(&rolled, report),
        )
            .into_response(),
        None => {
            let notes: Vec<&str> = rolled.summary["notes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let why = if notes.is_empty() {
                "none of its windows compared columns with a reference".to_string()
            } else {
                notes.join("; ")
            };
            refused(MonitorError::NotFound(format!(
                "no drift report for this span of monitor '{name}': {why}"
            )))
        }
    }
}

async fn acknowledge(
    State(service): State<Arc<Monitoring>>,
    Path((name, rule)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(response) = read_json_body_within(&headers, body, MAX_BODY_BYTES).await {
        return response;
    }
    answer(
        service
            .acknowledge(&name, &rule, &actor(&headers))
            .await
            .map(|m| json!({"monitor": m})),
    )
}

async fn silence(
    State(service): State<Arc<Monitoring>>,
    Path((name, rule)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json_body_within(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let until = match (value.get("until_ms"), value.get("seconds")) {
        (Some(until), None) => until.as_i64(),
        (None, Some(seconds)) => seconds.as_i64().filter(|s| (0..=366 * 86_400).contains(s)).map(|s| {
            if s == 0 {
                0
            } else {
                loopline_core::time::now_millis() + s * 1000
            }
        }),
        _ => None,
    };
    let Some(until) = until else {
        return bad(
            "seconds",
            "give {\"seconds\": N} (up to a year; 0 lifts the silence) or {\"until_ms\": T}",
        );
    };
    answer(
        service
            .silence(&name, &rule, until, &actor(&headers))
            .await
            .map(|m| json!({"monitor": m})),
    )
}

async fn business(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json_body_within(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return bad("body", error),
    };
    let Some(metric) = value.get("name").and_then(Value::as_str) else {
        return bad("name", "give the figure's name");
    };
    let Some(figure) = value.get("value").and_then(Value::as_f64) else {
        return bad("value", "give a number");
    };
    let window = value.get("window").and_then(Value::as_i64);
    let timestamp = value.get("timestamp_ms").and_then(Value::as_i64);
    answer(service.post_business(&name, metric, figure, window, timestamp).await)
}

async fn set_reference(
    State(service): State<Arc<Monitoring>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json_body_within(&headers, body, MAX_PROFILE_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let source = headers
        .get("x-loopline-reference-source")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("api");
    answer(service.set_reference(&name, &version, &body, source).await)
}

async fn get_reference(
    State(service): State<Arc<Monitoring>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    answer(service.get_reference(&name, &version).await)
}

async fn review_queue(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match number(&query, "limit", 100usize) {
        Ok(limit) => limit,
        Err(response) => return *response,
    };
    let window = match query.get("window") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(key) => Some(key),
            Err(_) => return bad("window", format!("'{text}' is not a window number")),
        },
    };
    let limit = limit.clamp(1, crate::review::MAX_ITEMS);
    answer(
        service
            .in_background(|service| async move { service.review(&name, window, limit).await })
            .await,
    )
}

async fn review_labels(
    State(service): State<Arc<Monitoring>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json_body_within(&headers, body, 16 << 20).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    answer(service.post_review_labels(&name, &body).await)
}
