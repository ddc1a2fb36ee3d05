//! Loopline's own feature-store routes under `/api/loopline/v1/features`: projects, their definitions (every
//! applied version kept), applying new ones with the changes shown first, and the views' materialisation state.

use std::path::Path;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use loopline_features::Definitions;
use loopline_features::online_read::rfc3339;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::FeatureApi;
use crate::error::ApiError;

/// `GET /api/loopline/v1/features/projects`.
pub async fn projects(State(api): State<FeatureApi>) -> Response {
    match api.registry.projects().await {
        Ok(projects) => Json(json!({
            "projects": projects.iter().map(|(name, version)| json!({"name": name, "version": version})).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(error) => error.native(),
    }
}

/// `DELETE /api/loopline/v1/features/projects/{project}`: its definitions (every version) and online values.
pub async fn delete_project(State(api): State<FeatureApi>, UrlPath(project): UrlPath<String>) -> Response {
    let result = async {
        let current = api.registry.current(&project).await?;
        let Some((_, definitions)) = current else {
            return Err(ApiError::not_found(
                "FeastObjectNotFoundException",
                format!("project `{project}` has no feature definitions"),
            ));
        };
        for view in definitions.views.values() {
            api.online
                .drop_view(&project, &view.storage_name())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        api.registry.delete(&project).await
    }
    .await;
    match result {
        Ok(()) => Json(json!({"deleted": project})).into_response(),
        Err(error) => error.native(),
    }
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<i64>,
}

/// `GET /api/loopline/v1/features/projects/{project}[?version=N]`: the definitions as stored.
pub async fn project(
    State(api): State<FeatureApi>,
    UrlPath(project): UrlPath<String>,
    Query(query): Query<VersionQuery>,
) -> Response {
    let result = async {
        let version = match query.version {
            Some(version) => version,
            None => api.registry.current(&project).await?.map_or(0, |(v, _)| v),
        };
        let record = api.registry.record(&project, version).await?.ok_or_else(|| {
            ApiError::not_found(
                "FeastObjectNotFoundException",
                format!("project `{project}` has no definitions at version {version}"),
            )
        })?;
        let definitions: Value = serde_json::from_str(&record.body).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>(json!({
            "project": record.project,
            "version": record.version,
            "created_at": record.created_at,
            "definitions": definitions,
        }))
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.native(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    /// The definitions file's text.
    yaml: Option<String>,
    /// Or a Feast registry (`registry.db`), base64.
    feast_registry: Option<String>,
    /// The absolute directory relative source paths are taken from.
    base_dir: String,
    /// Apply only if the project is still at this version.
    expected_version: Option<i64>,
    /// Show the changes, apply nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/loopline/v1/features/projects/{project}/apply`.
pub async fn apply(State(api): State<FeatureApi>, UrlPath(project): UrlPath<String>, bytes: Bytes) -> Response {
    let result = async {
        let request: ApplyRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not an apply request: {e}")))?;
        let base = Path::new(&request.base_dir);
        if !base.is_dir() {
            return Err(ApiError::bad_request(format!(
                "base_dir {:?} is not a directory this server can see; definitions name files the server reads",
                request.base_dir
            )));
        }
        if !base.is_absolute() {
            return Err(ApiError::bad_request(format!(
                "base_dir {:?} must be an absolute directory",
                request.base_dir
            )));
        }
        let definitions = match (&request.yaml, &request.feast_registry) {
            (Some(yaml), None) => {
                Definitions::from_yaml(yaml, base, "the definitions").map_err(ApiError::from_features)?
            }
            (None, Some(registry)) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(registry)
                    .map_err(|_| ApiError::bad_request("feast_registry is not base64".to_string()))?;
                loopline_features::feast_registry::from_bytes(&bytes, Some(&project), base)
                    .map_err(|m| ApiError::bad_request(format!("the Feast registry: {m}")))?
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give the definitions as `yaml` (Loopline's format) or `feast_registry` (base64 of registry.db)"
                        .to_string(),
                ));
            }
        };
        let missing: Vec<String> = definitions
            .sources
            .values()
            .filter(|source| !crate::remote_sources::is_remote(&source.path) && !source.path.exists())
            .map(|source| format!("{} ({})", source.name, source.path.display()))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(format!(
                "these sources are not on the server: {missing:?}; sources are read from the server's own disk"
            )));
        }
        // Sources on S3 are copied (into the cache materialisation reads from) and checked like the others.
        let checking = crate::remote_sources::localize(&definitions, None, &api.remote_cache)
            .await
            .map_err(ApiError::bad_request)?;
        let problems: Vec<String> = tokio::task::spawn_blocking(move || loopline_features::check_sources(&checking))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .filter_map(|(view, checked)| checked.err().map(|e| format!("feature view `{view}`: {e}")))
            .collect();
        if !problems.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the sources do not fit the definitions: {}",
                problems.join("; ")
            )));
        }
        if definitions.project != project {
            return Err(ApiError::bad_request(format!(
                "the definitions are of project `{}`, not `{project}`",
                definitions.project
            )));
        }
        let applied = api
            .registry
            .apply(definitions, request.expected_version, request.dry_run)
            .await?;
        Ok(json!({
            "project": project,
            "version": applied.version,
            "applied": applied.written,
            "changes": applied.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.native(),
    }
}

/// `GET /api/loopline/v1/features/projects/{project}/views`: each view with its materialisation watermark.
pub async fn views(State(api): State<FeatureApi>, UrlPath(project): UrlPath<String>) -> Response {
    let result = async {
        let Some((version, definitions)) = api.registry.current(&project).await? else {
            return Err(ApiError::not_found(
                "FeastObjectNotFoundException",
                format!("project `{project}` has no feature definitions"),
            ));
        };
        let mut views = Vec::with_capacity(definitions.views.len());
        for view in definitions.views.values() {
            let watermark = api
                .online
                .watermark(&project, &view.storage_name())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            views.push(json!({
                "name": view.name,
                "entities": view.entities,
                "join_keys": view.join_keys,
                "features": view.features.iter().map(|f| json!({"name": f.name, "dtype": f.dtype.name()})).collect::<Vec<_>>(),
                "ttl_seconds": view.ttl_seconds,
                "online": view.online,
                "source": view.source,
                "push_source": view.push_source,
                "materialized_until": watermark.map(rfc3339),
                "materializing": api.running.is_running(&project, &view.name),
                "last_failure": api.running.failure(&project, &view.name),
            }));
        }
        Ok(json!({"project": project, "version": version, "views": views}))
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.native(),
    }
}
