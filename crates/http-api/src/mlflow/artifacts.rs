//! The artifact proxy: streaming upload and download, listing and deletion, all confined below the
//! artifact root by `ArtifactPath`.

use super::{JsonResult, empty_object};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use loopline_artifact_store::ArtifactPath;
use loopline_core::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What MLflow's server treats as text, by extension (or by the whole name of a file without one).
const TEXT_EXTENSIONS: &[&str] = &[
    "txt",
    "log",
    "err",
    "cfg",
    "conf",
    "cnf",
    "cf",
    "ini",
    "properties",
    "prop",
    "hocon",
    "toml",
    "yaml",
    "yml",
    "xml",
    "json",
    "js",
    "py",
    "py3",
    "csv",
    "tsv",
    "md",
    "rst",
    "MLmodel",
    "mlproject",
];

/// A content type from the file name, as MLflow's server guesses it: its text extensions are `text/plain`,
/// other known types as Python's `mimetypes` names them, anything else `application/octet-stream`.
pub(crate) fn content_type_for(name: &str) -> &'static str {
    let name = name.rsplit('/').next().unwrap_or(name);
    // As Python's `splitext`: leading dots do not start an extension.
    let extension = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.trim_start_matches('.').is_empty() => extension,
        _ => name,
    };
    if TEXT_EXTENSIONS.contains(&extension) {
        return "text/plain";
    }
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "png" => "image/png",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/vnd.microsoft.icon",
        "tif" | "tiff" => "image/tiff",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        "wav" => "audio/x-wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Files of registered versions stay as they were registered: writes inside a version's model directory (and
/// deletions of it or of a directory holding one) are refused.
async fn refuse_sealed(state: &AppState, path: &ArtifactPath, with_descendants: bool) -> ApiResult<()> {
    let store = state.registry.store();
    if let Some((name, version)) = store.sealed_version_at(&path.as_string(), with_descendants).await? {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "artifact '{}' holds files of model '{name}' version {version}, which is registered: its files \
                 cannot be changed or deleted; log the new files elsewhere and register them as a new version",
                path.as_string()
            ),
        ));
    }
    Ok(())
}

/// Top-level directories of the artifact store that hold Loopline's own records (the prediction log, failed
/// requests, feedback labels, monitor reports and sketches, dataset contents). They are written only by the
/// server's own services: through the MLflow artifact API they could be forged (fake predictions and labels
/// in a monitor's figures) or erased.
const RESERVED_DIRECTORIES: [&str; 5] = ["predictions", "failures", "feedback", "monitoring", "datasets"];

fn refuse_reserved(path: &ArtifactPath) -> ApiResult<()> {
    let text = path.as_string();
    let first = text.split('/').next().unwrap_or_default();
    if RESERVED_DIRECTORIES.contains(&first) {
        return Err(ApiError::invalid(format!(
            "artifact path '{text}' lies in '{first}/', which holds Loopline's own records (prediction log, \
             feedback, monitor reports, dataset contents) and is written only by the server; log artifacts under \
             a run's or an experiment's location"
        )));
    }
    Ok(())
}

pub(super) async fn upload(
    State(state): State<AppState>,
    Path(raw_path): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let path = ArtifactPath::parse(&raw_path)?;
    store_body(&state, &path, body).await?;
    Ok(StatusCode::OK.into_response())
}

/// Streams a request body into the store at `path`, within the upload limit (counted as it arrives), unless
/// the path holds a registered version's files.
pub(super) async fn store_body(state: &AppState, path: &ArtifactPath, body: Body) -> ApiResult<()> {
    refuse_reserved(path)?;
    refuse_sealed(state, path, false).await?;
    let limit = state.limits.max_artifact_bytes;
    if axum::body::HttpBody::size_hint(&body).lower() > limit {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "artifact '{}' is larger than the limit of {limit} bytes",
                path.as_string()
            ),
        ));
    }
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let stream = body
        .into_data_stream()
        .map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            let total = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if total > limit {
                return Err(std::io::Error::other(format!(
                    "upload exceeds the limit of {limit} bytes"
                )));
            }
            Ok(chunk)
        })
        .boxed();
    match state.artifacts.put(path, stream).await {
        Ok(_) => Ok(()),
        Err(_) if received.load(Ordering::Relaxed) > limit => Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "artifact '{}' is larger than the limit of {limit} bytes",
                path.as_string()
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

pub(super) async fn download(State(state): State<AppState>, Path(raw_path): Path<String>) -> ApiResult<Response> {
    let path = ArtifactPath::parse(&raw_path)?;
    let download = state.artifacts.get(&path).await?;
    let file_name = path.file_name().unwrap_or("artifact").replace('"', "");
    let headers = [
        (header::CONTENT_TYPE, content_type_for(&file_name).to_string()),
        (header::CONTENT_LENGTH, download.size.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    Ok((headers, Body::from_stream(download.body)).into_response())
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    path: Option<String>,
}

pub(super) async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> JsonResult {
    let path = ArtifactPath::parse(query.path.as_deref().unwrap_or_default())?;
    let entries = state.artifacts.list(&path).await?;
    if entries.is_empty() {
        return empty_object();
    }
    let files: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| match entry.size {
            Some(size) if !entry.is_dir => serde_json::json!({"path": entry.name, "is_dir": false, "file_size": size}),
            _ => serde_json::json!({"path": entry.name, "is_dir": entry.is_dir}),
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "files": files })))
}

pub(super) async fn delete(State(state): State<AppState>, Path(raw_path): Path<String>) -> JsonResult {
    let path = ArtifactPath::parse(&raw_path)?;
    if path.is_root() {
        return Err(ApiError::invalid("refusing to delete the whole artifact root"));
    }
    refuse_reserved(&path)?;
    refuse_sealed(&state, &path, true).await?;
    state.artifacts.delete(&path).await?;
    empty_object()
}

#[cfg(test)]
mod tests {
    use super::content_type_for;

    #[test]
    fn content_types_follow_mlflow() {
        for (name, expected) in [
            ("a.txt", "text/plain"),
            ("dir/b.json", "text/plain"),
            ("b.pkl", "application/octet-stream"),
            ("c.png", "image/png"),
            ("d.pdf", "application/pdf"),
            ("MLmodel", "text/plain"),
            ("mlproject", "text/plain"),
            ("conda.yaml", "text/plain"),
            ("page.HTML", "text/html"),
            (".bashrc", "application/octet-stream"),
            ("noextension", "application/octet-stream"),
        ] {
            assert_eq!(content_type_for(name), expected, "{name}");
        }
    }
}
