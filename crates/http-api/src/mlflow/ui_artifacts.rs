//! The artifact routes the web UI uses: listings of a run's or a logged model's artifacts (`artifacts/list`,
//! `logged-models/{id}/artifacts/directories`) and file downloads by run (`/get-artifact`), logged model
//! (`logged-models/{id}/artifacts/files`) and model version (`/model-versions/get-artifact`). Files are
//! read through the artifact store, below the run's or version's directory only.

use super::JsonResult;
use super::artifacts::content_type_for;
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

/// The store directory an `mlflow-artifacts:` location names.
pub(super) fn store_directory(location: &str) -> ApiResult<ArtifactPath> {
    let rest = location.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        ApiError::invalid(format!(
            "artifacts at '{location}' are not in this server's store; read them where they are"
        ))
    })?;
    // `mlflow-artifacts://host:port/path` carries an authority; `mlflow-artifacts:/path` does not.
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map(|(_, path)| path).unwrap_or_default(),
        None => rest,
    };
    Ok(ArtifactPath::parse(path.trim_matches('/'))?)
}

/// A path as a client names it, relative to a run's, model's or version's directory (no way out of it:
/// `ArtifactPath` refuses one), checked before anything is looked up; MLflow's message when it is not one.
fn relative(path: Option<&str>) -> ApiResult<ArtifactPath> {
    ArtifactPath::parse(path.unwrap_or_default()).map_err(|_| ApiError::invalid("Invalid path"))
}

async fn run_directory(state: &AppState, run_id: Option<&String>) -> ApiResult<(String, ArtifactPath)> {
    let run_id = run_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'run_id'."))?;
    let run = state.tracking.store().get_run(run_id).await?;
    let directory = store_directory(&run.info.artifact_uri)?;
    Ok((run.info.artifact_uri, directory))
}

#[derive(Deserialize)]
pub(super) struct ListRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// A run's artifacts in one directory: paths relative to the run's root, as MLflow lists them.
pub(super) async fn list(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<ListRequest>,
) -> JsonResult {
    let run_id = request.run_id.as_ref().or(request.run_uuid.as_ref());
    Ok(axum::Json(
        list_run_artifacts(&state, run_id, request.path.as_deref()).await?,
    ))
}

/// One directory of a run's artifacts, as `artifacts/list` answers it (also for GraphQL's `mlflowListArtifacts`).
pub(crate) async fn list_run_artifacts(
    state: &AppState,
    run_id: Option<&String>,
    path: Option<&str>,
) -> ApiResult<Value> {
    let relative = relative(path)?;
    let (root_uri, directory) = run_directory(state, run_id).await?;
    Ok(listing(state, root_uri, &directory, &relative).await?.0)
}

/// A file answered for the browser: the type MLflow gives it, never sniffed, offered as a download.
async fn file(state: &AppState, path: &ArtifactPath) -> ApiResult<Response> {
    if path.is_root() {
        return Err(ApiError::invalid("Missing value for required parameter 'path'."));
    }
    let download = state.artifacts.get(path).await?;
    let name = path.file_name().unwrap_or("artifact");
    // Unquoted, as MLflow writes it; characters that would end or split the header value are replaced.
    let safe_name: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_graphic() && !matches!(character, '"' | ';' | ',' | '\\') {
                character
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, content_type_for(name).to_string()),
            (header::CONTENT_LENGTH, download.size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename={safe_name}")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
        ],
        Body::from_stream(download.body),
    )
        .into_response())
}

/// Lists one directory below `directory`, paths relative to `directory`, as MLflow lists artifacts.
async fn listing(state: &AppState, root_uri: String, directory: &ArtifactPath, relative: &ArtifactPath) -> JsonResult {
    let entries = state.artifacts.list(&directory.join(relative)).await?;
    let prefix = relative.as_string();
    let mut files: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let path = if prefix.is_empty() {
                entry.name.clone()
            } else {
                format!("{prefix}/{}", entry.name)
            };
            match entry.size {
                Some(size) if !entry.is_dir => json!({"path": path, "is_dir": false, "file_size": size}),
                _ => json!({"path": path, "is_dir": true}),
            }
        })
        .collect();
    files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let mut answer = json!({"root_uri": root_uri});
    if !files.is_empty() {
        answer["files"] = Value::Array(files);
    }
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
pub(super) struct ModelListRequest {
    artifact_directory_path: Option<String>,
}

/// `logged-models/{id}/artifacts/directories`: one directory of a logged model's files.
pub(super) async fn model_list(
    State(state): State<AppState>,
    axum::extract::Path(model_id): axum::extract::Path<String>,
    MlflowMessage(request): MlflowMessage<ModelListRequest>,
) -> JsonResult {
    let relative = relative(request.artifact_directory_path.as_deref())?;
    let model = state.tracking.store().get_logged_model(&model_id).await?;
    let directory = store_directory(&model.info.artifact_uri)?;
    listing(&state, model.info.artifact_uri, &directory, &relative).await
}

#[derive(Deserialize)]
pub(super) struct ModelFileRequest {
    artifact_file_path: Option<String>,
}

/// `logged-models/{id}/artifacts/files?artifact_file_path=...`: one file of a logged model.
pub(super) async fn model_file(
    State(state): State<AppState>,
    axum::extract::Path(model_id): axum::extract::Path<String>,
    MlflowMessage(request): MlflowMessage<ModelFileRequest>,
) -> ApiResult<Response> {
    let relative = relative(request.artifact_file_path.as_deref())?;
    let model = state.tracking.store().get_logged_model(&model_id).await?;
    let directory = store_directory(&model.info.artifact_uri)?;
    file(&state, &directory.join(&relative)).await
}

#[derive(Deserialize)]
pub(super) struct RunFileRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// `/get-artifact?run_id=...&path=...`: one file of a run.
pub(super) async fn run_file(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RunFileRequest>,
) -> ApiResult<Response> {
    let relative = relative(request.path.as_deref())?;
    let (_, directory) = run_directory(&state, request.run_id.as_ref().or(request.run_uuid.as_ref())).await?;
    file(&state, &directory.join(&relative)).await
}

#[derive(Deserialize)]
pub(super) struct VersionFileRequest {
    name: Option<String>,
    version: Option<String>,
    path: Option<String>,
}

/// `/model-versions/get-artifact?name=...&version=...&path=...`: one file of a registered version.
pub(super) async fn version_file(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<VersionFileRequest>,
) -> ApiResult<Response> {
    let relative = relative(request.path.as_deref())?;
    let name = super::required(&request.name, "name")?;
    let version = super::required(&request.version, "version")?;
    let location = state.registry.download_uri(name, version).await?;
    let directory = store_directory(&location)?;
    file(&state, &directory.join(&relative)).await
}

/// `POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=...&path=...`: the UI uploads one file into a run.
pub(super) async fn upload(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    body: Body,
) -> ApiResult<Response> {
    let run_id = query
        .get("run_uuid")
        .or_else(|| query.get("run_id"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid("Request must specify run_uuid."))?;
    let relative = query
        .get("path")
        .filter(|path| !path.is_empty())
        .ok_or_else(|| ApiError::invalid("Request must specify path."))?;
    let relative = ArtifactPath::parse(relative)
        .ok()
        .filter(|path| !path.is_root())
        .ok_or_else(|| ApiError::invalid(format!("Invalid path: '{relative}' must be a file path inside the run")))?;
    if axum::body::HttpBody::is_end_stream(&body) || axum::body::HttpBody::size_hint(&body).upper() == Some(0) {
        return Err(ApiError::invalid("Request must specify data."));
    }
    let (_, directory) = run_directory(&state, Some(run_id)).await?;
    super::artifacts::store_body(&state, &directory.join(&relative), body).await?;
    Ok(axum::Json(json!({})).into_response())
}
