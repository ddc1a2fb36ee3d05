//! `get-trace-artifact` (the web UI's route): a trace's `traces.json` (from the spans kept in the store, or
//! the artifact the client uploaded) or one of its attachments.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::MlflowMessage;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use loopline_artifact_store::ArtifactPath;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct TraceArtifactQuery {
    request_id: Option<String>,
    path: Option<String>,
}

/// Where a trace's artifacts are in the store (from its `mlflow.artifactLocation` tag).
fn artifact_directory(info: &Value) -> ApiResult<ArtifactPath> {
    let location = info
        .pointer("/tags/mlflow.artifactLocation")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::new(
                loopline_core::ErrorCode::ResourceDoesNotExist,
                "the trace has no artifact location",
            )
        })?;
    super::ui_artifacts::store_directory(location)
}

fn attachment(file_name: &str, body: Body, size: Option<u64>) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                // Unquoted, as MLflow writes it (the names are traces.json and checked artifact names).
                format!(
                    "attachment; filename={}",
                    file_name.replace(['"', ';', ',', ' ', '\r', '\n'], "_")
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response();
    if let Some(size) = size
        && let Ok(value) = size.to_string().parse()
    {
        response.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    response
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(query): MlflowMessage<TraceArtifactQuery>,
) -> ApiResult<Response> {
    let Some(trace_id) = query.request_id.filter(|id| !id.is_empty()) else {
        return Err(ApiError::new(
            loopline_core::ErrorCode::BadRequest,
            "Request must include the \"request_id\" query parameter.",
        ));
    };
    let store = state.tracking.store();
    let info = store.get_trace_info(&trace_id).await?;
    if let Some(path) = query.path.filter(|path| !path.is_empty()) {
        let artifact = artifact_directory(&info)?.join(&ArtifactPath::parse(&format!("attachments/{path}"))?);
        let download = state.artifacts.get(&artifact).await?;
        let name = artifact.file_name().unwrap_or("attachment").to_string();
        return Ok(attachment(&name, Body::from_stream(download.body), Some(download.size)));
    }
    if info.pointer("/tags/mlflow.trace.spansLocation").and_then(Value::as_str) == Some("TRACKING_STORE") {
        let spans: Vec<Value> = store
            .get_trace_spans(&trace_id)
            .await?
            .iter()
            .map(loopline_metadata_store::sql::mlflow_span_dict)
            .collect();
        let body = json!({"spans": spans}).to_string();
        let size = body.len() as u64;
        return Ok(attachment("traces.json", Body::from(body), Some(size)));
    }
    let artifact = artifact_directory(&info)?.join(&ArtifactPath::parse("traces.json")?);
    let download = state.artifacts.get(&artifact).await?;
    Ok(attachment(
        "traces.json",
        Body::from_stream(download.body),
        Some(download.size),
    ))
}
