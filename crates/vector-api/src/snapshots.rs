//! Collection snapshots in the artifact store (a local directory, or S3 when the server is configured so):
//! Qdrant's create, list, download, delete and recover routes. A snapshot is Loopline's own file (the
//! collection's configuration and a checkpoint of its points), kept at
//! `vector-snapshots/<collection>/<name>` with its SHA-256 beside it. Recovering reads only snapshots in this
//! store: `location` is a snapshot's name, or the URL or path of a snapshot route of this server (other
//! URLs are refused, so a request cannot make the server fetch from elsewhere).

use crate::envelope::{QdrantError, blocking, ok, read};
use crate::{Target, VectorApi};
use axum::body::Body;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use loopline_artifact_store::{ArtifactError, ArtifactPath, ArtifactStore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Where snapshots live in the artifact store.
const SNAPSHOT_DIR: &str = "vector-snapshots";
/// The largest snapshot read back.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

fn store(api: &VectorApi) -> Result<Arc<dyn ArtifactStore>, QdrantError> {
    api.artifacts.clone().ok_or_else(|| {
        QdrantError::new(
            StatusCode::BAD_REQUEST,
            "Bad request: snapshots need an artifact store, and this server has none",
        )
    })
}

fn stored(error: ArtifactError) -> QdrantError {
    match error {
        ArtifactError::NotFound(path) => QdrantError::new(StatusCode::NOT_FOUND, format!("Not found: {path}")),
        other => QdrantError::internal(format!("the artifact store: {other}")),
    }
}

/// Qdrant's 404 for a snapshot that is not there.
fn missing(what: &str) -> QdrantError {
    QdrantError::new(StatusCode::NOT_FOUND, format!("Not found: {what} not found"))
}

/// A snapshot's name: letters, digits, `.`, `_` and `-`, ending in `.snapshot`.
fn check_name(name: &str) -> Result<(), QdrantError> {
    let fine = name.len() <= 255
        && name.ends_with(".snapshot")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(QdrantError::wrong_input(format!(
            "'{name}' is not a snapshot name (letters, digits, '.', '_' and '-', ending in .snapshot)"
        )))
    }
}

fn path_of(collection: &str, snapshot: Option<&str>) -> Result<ArtifactPath, QdrantError> {
    let raw = match snapshot {
        Some(snapshot) => format!("{SNAPSHOT_DIR}/{collection}/{snapshot}"),
        None => format!("{SNAPSHOT_DIR}/{collection}"),
    };
    ArtifactPath::parse(&raw).map_err(|error| QdrantError::wrong_input(error.to_string()))
}

fn checksum_path(collection: &str, snapshot: &str) -> Result<ArtifactPath, QdrantError> {
    path_of(collection, Some(&format!("{snapshot}.sha256")))
}

fn stream(bytes: Bytes) -> loopline_artifact_store::ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Qdrant's `creation_time`: `2026-12-06T08:00:00` (UTC, no zone).
fn creation_time(millis: i64) -> String {
    let text = loopline_core::time::rfc3339_millis(millis);
    text[..19].to_string()
}

/// `POST /collections/{name}/snapshots`.
pub(crate) async fn create(Target { api, name }: Target) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let artifacts = store(&api)?;
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let bytes = blocking(move || {
        let stored = collection
            .read()
            .ok_or_else(|| QdrantError::no_collection(collection.name()))?;
        stored.snapshot().map_err(QdrantError::internal)
    })
    .await?;
    let millis = now_millis();
    let stamp: String = creation_time(millis).replace([':', 'T'], "-");
    // Unique within the process (a counter) and across replicas (random), not only to the millisecond.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let snapshot = format!(
        "{name}-{count}{:06x}-{stamp}.snapshot",
        rand::random::<u32>() & 0xff_ffff
    );
    let checksum: String = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let size = bytes.len() as u64;
    artifacts
        .put(&path_of(&name, Some(&snapshot))?, stream(Bytes::from(bytes)))
        .await
        .map_err(stored)?;
    artifacts
        .put(&checksum_path(&name, &snapshot)?, stream(Bytes::from(checksum.clone())))
        .await
        .map_err(stored)?;
    Ok(ok(
        json!({"name": snapshot, "creation_time": creation_time(millis), "size": size, "checksum": checksum}),
        started,
    ))
}

/// `GET /collections/{name}/snapshots`.
pub(crate) async fn list(Target { api, name }: Target) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let artifacts = store(&api)?;
    if api.store.get(&name).is_none() {
        return Err(QdrantError::no_collection(&name));
    }
    let entries = artifacts.list(&path_of(&name, None)?).await.map_err(stored)?;
    let mut found = Vec::new();
    for entry in entries
        .iter()
        .filter(|entry| !entry.is_dir && entry.name.ends_with(".snapshot"))
    {
        let checksum = artifacts
            .read_all(&checksum_path(&name, &entry.name)?, 128)
            .await
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        found.push(json!({
            "name": entry.name,
            "creation_time": entry.modified_ms.map(creation_time),
            "size": entry.size.unwrap_or_default(),
            "checksum": checksum,
        }));
    }
    Ok(ok(Value::Array(found), started))
}

/// `GET /collections/{name}/snapshots/{snapshot}`: the file.
pub(crate) async fn download(
    State(api): State<VectorApi>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<Response, QdrantError> {
    let artifacts = store(&api)?;
    check_name(&snapshot)?;
    let download = artifacts
        .get(&path_of(&name, Some(&snapshot))?)
        .await
        .map_err(|error| match error {
            ArtifactError::NotFound(_) => missing(&format!("Snapshot {snapshot}")),
            other => stored(other),
        })?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, download.size)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{snapshot}\""),
        )
        .body(Body::from_stream(download.body))
        .map_err(QdrantError::internal)
}

/// `DELETE /collections/{name}/snapshots/{snapshot}`.
pub(crate) async fn remove(
    State(api): State<VectorApi>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let artifacts = store(&api)?;
    check_name(&snapshot)?;
    let path = path_of(&name, Some(&snapshot))?;
    if artifacts.size(&path).await.is_err() {
        return Err(missing(&format!("Snapshot {snapshot}")));
    }
    artifacts.delete(&path).await.map_err(stored)?;
    let _ = artifacts.delete(&checksum_path(&name, &snapshot)?).await;
    Ok(ok(json!(true), started))
}

/// The collection and snapshot a `location` names: `NAME.snapshot` (of the collection being recovered), or
/// a URL or path ending in `/collections/{collection}/snapshots/{snapshot}`.
fn locate(location: &str, target: &str) -> Result<(String, String), QdrantError> {
    let path = match location.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            rest.find('/').map_or("", |at| &rest[at..])
        }
        // s3://, file:// and the rest would read as if they named another place, which they do not.
        Some(_) => "",
        None => location,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(4).collect();
    let (collection, snapshot) = match parts.as_slice() {
        [snapshot, "snapshots", collection, "collections"] => (collection.to_string(), snapshot.to_string()),
        [snapshot] if !location.contains("://") => (target.to_string(), snapshot.to_string()),
        _ => {
            return Err(QdrantError::wrong_input(format!(
                "location '{location}': Loopline recovers only snapshots in its artifact store: give a snapshot's \
                 name, or the URL of a snapshot of this server (.../collections/NAME/snapshots/SNAPSHOT); upload \
                 others to the artifact store first"
            )));
        }
    };
    if let Some(problem) = loopline_vector_index::storage::catalog::name_problem(&collection) {
        return Err(QdrantError::wrong_input(format!("location '{location}': {problem}")));
    }
    check_name(&snapshot)?;
    Ok((collection, snapshot))
}

/// `PUT /collections/{name}/snapshots/recover`: makes (or replaces) the collection from a snapshot.
pub(crate) async fn recover(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let artifacts = store(&api)?;
    if let Some(problem) = loopline_vector_index::storage::catalog::name_problem(&name) {
        return Err(QdrantError::wrong_input(problem));
    }
    let request = read(body).await?;
    let location = request
        .get("location")
        .and_then(Value::as_str)
        .ok_or_else(|| QdrantError::wrong_input("location: a snapshot's name or URL is required"))?;
    let expected = match request.get("checksum") {
        None | Some(Value::Null) => None,
        Some(Value::String(checksum)) => Some(checksum.to_ascii_lowercase()),
        Some(_) => return Err(QdrantError::wrong_input("checksum: a SHA-256 in hex")),
    };
    let (source, snapshot) = locate(location, &name)?;
    let bytes = artifacts
        .read_all(&path_of(&source, Some(&snapshot))?, MAX_SNAPSHOT_BYTES)
        .await
        .map_err(|error| match error {
            ArtifactError::NotFound(_) => missing(&format!("Snapshot {snapshot} of collection {source}")),
            other => stored(other),
        })?;
    let store = api.store.clone();
    blocking(move || {
        if let Some(expected) = expected {
            let actual: String = Sha256::digest(&bytes)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            if actual != expected {
                return Err(QdrantError::wrong_input(format!(
                    "checksum: the snapshot's SHA-256 is {actual}, not {expected}"
                )));
            }
        }
        store.restore(&name, &bytes).map_err(|error| match error {
            loopline_vector_index::StorageError::Damaged { message, .. } => {
                QdrantError::wrong_input(format!("the snapshot cannot be recovered: {message}"))
            }
            other => QdrantError::internal(other),
        })
    })
    .await?;
    Ok(ok(json!(true), started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_snapshots_of_this_store_only() {
        let named = |location: &str| locate(location, "target").map_err(|error| error.message);
        assert_eq!(named("a-1.snapshot"), Ok(("target".into(), "a-1.snapshot".into())));
        assert_eq!(
            named("http://127.0.0.1:6333/collections/docs/snapshots/docs-1.snapshot"),
            Ok(("docs".into(), "docs-1.snapshot".into()))
        );
        assert_eq!(
            named("/collections/docs/snapshots/docs-1.snapshot?x=1"),
            Ok(("docs".into(), "docs-1.snapshot".into()))
        );
        for refused in [
            "file:///etc/passwd",
            "file:///collections/docs/snapshots/docs-1.snapshot",
            "s3://bucket/collections/docs/snapshots/docs-1.snapshot",
            "http://example.com/x.snapshot",
            "../../x.snapshot",
            "http://h/collections/../snapshots/x.snapshot",
            "docs.tar",
            "",
        ] {
            assert!(named(refused).is_err(), "{refused}");
        }
    }
}
