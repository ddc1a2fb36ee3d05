//! `/api/loopline/v1/datasets` (versions: list, read, register) and `/api/loopline/v1/data/objects` (content
//! by id: which are missing, upload, download) with `/api/loopline/v1/data/gc`. Errors use the
//! `{error_code, message}` shape of the rest of the API.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{StreamExt, TryStreamExt};
use loopline_deployments::api::{actor, failure, read_json, refused};
use loopline_metadata_store::DatasetVersion;
use serde_json::{Value, json};

use crate::data::ContentId;
use crate::datasets::{DataService, NewVersion};

/// The largest JSON request body (a registration with its profile).
const MAX_BODY_BYTES: usize = 80 << 20;
/// The most ids asked about at once.
const MAX_IDS: usize = 100_000;
/// The most versions listed at once.
const MAX_LIST: usize = 1_000;

/// The routes.
pub fn routes(service: Arc<DataService>) -> Router {
    Router::new()
        .route("/api/loopline/v1/datasets", get(list_datasets))
        .route(
            "/api/loopline/v1/datasets/{name}/versions",
            get(list_versions).post(register),
        )
        .route("/api/loopline/v1/datasets/{name}/versions/{version}", get(read_version))
        .route("/api/loopline/v1/data/objects/missing", post(missing))
        .route("/api/loopline/v1/data/objects/{id}", get(download).put(upload))
        .route("/api/loopline/v1/data/gc", post(collect_garbage))
        .with_state(service)
}

fn bad(message: impl std::fmt::Display) -> Response {
    failure(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// A version as the API shows it (the profile only when asked for one version).
pub fn version_json(version: &DatasetVersion, with_profile: bool) -> Value {
    let parsed = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    let mut shown = json!({
        "name": version.name,
        "version": version.version,
        "hash": version.content_hash,
        "size": version.size_bytes,
        "files": version.file_count,
        "rows": version.row_count,
        "schema": parsed(&version.table_schema),
        "source": version.source,
        "description": version.description,
        "lineage": parsed(&version.lineage),
        "created_by": version.created_by,
        "creation_time": version.creation_time,
        "uri": format!("datasets:/{}/{}", version.name, version.version),
    });
    if with_profile {
        shown["profile"] = parsed(&version.profile);
    }
    shown
}

async fn list_datasets(State(service): State<Arc<DataService>>) -> Response {
    match service.datasets().await {
        Ok(datasets) => axum::Json(json!({
            "datasets": datasets.iter().map(|d| json!({
                "name": d.name,
                "version_count": d.version_count,
                "latest": version_json(&d.latest, false),
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(error) => refused(error),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

async fn list_versions(
    State(service): State<Arc<DataService>>,
    Path(name): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad("'before' and 'limit' must be whole numbers");
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIST);
    match service.versions(&name, query.before, limit).await {
        Ok(versions) => {
            let next = (versions.len() == limit)
                .then(|| versions.last().map(|v| v.version))
                .flatten();
            axum::Json(json!({
                "versions": versions.iter().map(|v| version_json(v, false)).collect::<Vec<_>>(),
                "next_before": next,
            }))
            .into_response()
        }
        Err(error) => refused(error),
    }
}

async fn read_version(
    State(service): State<Arc<DataService>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match service.version(&name, &version).await {
        Ok(version) => axum::Json(json!({"version": version_json(&version, true)})).into_response(),
        Err(error) => refused(error),
    }
}

async fn register(
    State(service): State<Arc<DataService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request: NewVersion = match read_json(&headers, body, MAX_BODY_BYTES, "the version").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match service.register(&name, request, &actor(&headers)).await {
        Ok((version, created)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            (
                status,
                axum::Json(json!({"version": version_json(&version, false), "created": created})),
            )
                .into_response()
        }
        Err(error) => refused(error),
    }
}

async fn missing(State(service): State<Arc<DataService>>, headers: HeaderMap, body: Body) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        ids: Vec<String>,
    }
    let request: Request = match read_json(&headers, body, MAX_IDS * 80, "the list of ids").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.ids.len() > MAX_IDS {
        return bad(format!("at most {MAX_IDS} ids at once"));
    }
    let ids: Result<Vec<ContentId>, String> = request.ids.iter().map(|id| ContentId::parse(id)).collect();
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => return bad(e),
    };
    match service.missing(&ids).await {
        Ok(missing) => {
            axum::Json(json!({"missing": missing.iter().map(ContentId::key).collect::<Vec<_>>()})).into_response()
        }
        Err(error) => refused(error),
    }
}

async fn upload(
    State(service): State<Arc<DataService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = match ContentId::parse(&id) {
        Ok(id) => id,
        Err(e) => return bad(e),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let stream = body.into_data_stream().map_err(std::io::Error::other).boxed();
    match service.put_object(&id, declared, stream).await {
        Ok(true) => (StatusCode::CREATED, axum::Json(json!({"id": id.key(), "stored": true}))).into_response(),
        Ok(false) => axum::Json(json!({"id": id.key(), "stored": false})).into_response(),
        Err(error) => refused(error),
    }
}

async fn download(State(service): State<Arc<DataService>>, Path(id): Path<String>) -> Response {
    let id = match ContentId::parse(&id) {
        Ok(id) => id,
        Err(e) => return bad(e),
    };
    match service.get_object(&id).await {
        Ok(download) => Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, download.size)
            .body(Body::from_stream(download.body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(error) => refused(error),
    }
}

async fn collect_garbage(State(service): State<Arc<DataService>>, headers: HeaderMap, body: Body) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(default = "yes")]
        dry_run: bool,
        #[serde(default)]
        grace_seconds: Option<u32>,
    }
    fn yes() -> bool {
        true
    }
    let request: Request = match read_json(&headers, body, 4_096, "the collection request").await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let grace_ms = i64::from(request.grace_seconds.unwrap_or(3_600)) * 1_000;
    match service.collect_garbage(request.dry_run, grace_ms).await {
        Ok(report) => axum::Json(json!({"report": report})).into_response(),
        Err(error) => refused(error),
    }
}
