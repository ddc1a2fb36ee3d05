//! The server's side of versioned data: objects by content id in the artifact store (under
//! `datasets/objects/`, laid out as the local cache is), checked against their id as they arrive, versions
//! registered only when all their objects are stored, and garbage collection of objects no version needs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use loopline_artifact_store::{ArtifactDownload, ArtifactError, ArtifactPath, ArtifactStore, ByteStream};
use loopline_metadata_store::{DatasetSummary, DatasetVersion, MetadataStore};

use crate::data::manifest::MAX_MANIFEST_BYTES;
use crate::data::pointer::check_name;
use crate::data::{ContentId, Manifest};

/// Where objects live in the artifact store.
pub const OBJECTS_PREFIX: &str = "datasets/objects";
/// Objects checked for presence at once.
const PRESENCE_CONCURRENCY: usize = 32;
/// Manifests read or received at once.
const MANIFESTS_AT_ONCE: usize = 2;
/// The largest object accepted.
pub const MAX_OBJECT_BYTES: u64 = 64 << 30;
/// The largest profile stored with a version.
const MAX_PROFILE_BYTES: usize = 16 << 20;
/// The largest lineage a version may carry.
const MAX_LINEAGE_BYTES: usize = 1 << 20;
/// The deepest nesting of a lineage (readers of the lineage parse it again, with their own depth limits).
const MAX_LINEAGE_DEPTH: usize = 32;

/// A lineage nested no deeper than [`MAX_LINEAGE_DEPTH`].
fn shallow(lineage: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, DataError> {
    if let Some(value) = &lineage {
        let mut pending = vec![(value, 1usize)];
        while let Some((value, depth)) = pending.pop() {
            if depth > MAX_LINEAGE_DEPTH {
                return Err(DataError::Invalid(format!(
                    "the lineage nests deeper than {MAX_LINEAGE_DEPTH} levels"
                )));
            }
            match value {
                serde_json::Value::Array(items) => pending.extend(items.iter().map(|v| (v, depth + 1))),
                serde_json::Value::Object(map) => pending.extend(map.values().map(|v| (v, depth + 1))),
                _ => {}
            }
        }
    }
    Ok(lineage)
}
/// The largest schema stored with a version.
const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// What went wrong, by who can fix it (the deployments' error kinds, answered alike).
pub use loopline_deployments::CommandError as DataError;

fn storage(error: ArtifactError) -> DataError {
    match error {
        ArtifactError::NotFound(m) => DataError::NotFound(m),
        other => DataError::Internal(other.to_string()),
    }
}

/// A version to register, as a client describes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    /// The content id.
    pub hash: String,
    /// Total bytes (checked against the stored objects).
    pub size: u64,
    /// Number of files (checked against the manifest).
    pub files: u64,
    /// Rows, for a table.
    #[serde(default)]
    pub rows: Option<u64>,
    /// Column names and types, for a table.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// The profile, for a table.
    #[serde(default)]
    pub profile: Option<serde_json::Value>,
    /// Where it came from.
    #[serde(default)]
    pub source: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What it was computed from, for a derived dataset (a training set: definitions, sources, entity frame).
    #[serde(default)]
    pub lineage: Option<serde_json::Value>,
}

/// What garbage collection found (and, unless a dry run, removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// Objects stored.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects no version needs.
    pub unreferenced: u64,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Unreferenced objects kept because they were written within the grace period (a push in progress).
    pub kept_recent: u64,
    /// Objects removed.
    pub removed: u64,
    /// Some of the unreferenced ids, for the report.
    pub examples: Vec<String>,
    /// Registered directory versions whose manifest is not stored (push it again).
    pub versions_without_manifest: Vec<String>,
}

/// Versioned data on the server.
pub struct DataService {
    store: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    uploading: Mutex<HashSet<String>>,
    /// Registration and collection exclude each other: a version registered while garbage is collected could
    /// otherwise lose objects the collection had already judged unreferenced.
    collecting: tokio::sync::RwLock<()>,
    /// Manifests (up to hundreds of megabytes once parsed) are handled a few at a time.
    manifests: tokio::sync::Semaphore,
}

/// Forgets an upload in progress when it ends, however it ends.
struct Uploading<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for Uploading<'_> {
    fn drop(&mut self) {
        if let Ok(mut uploading) = self.0.lock() {
            uploading.remove(&self.1);
        }
    }
}

impl DataService {
    /// The service over a metadata and an artifact store.
    pub fn new(store: Arc<dyn MetadataStore>, artifacts: Arc<dyn ArtifactStore>) -> Arc<DataService> {
        Arc::new(DataService {
            store,
            artifacts,
            uploading: Mutex::new(HashSet::new()),
            collecting: tokio::sync::RwLock::new(()),
            manifests: tokio::sync::Semaphore::new(MANIFESTS_AT_ONCE),
        })
    }

    fn object_path(id: &ContentId) -> Result<ArtifactPath, DataError> {
        ArtifactPath::parse(&format!("{OBJECTS_PREFIX}/{}", id.object_path())).map_err(storage)
    }

    /// The stored size of each object (`None` when missing).
    async fn sizes(&self, ids: &[ContentId]) -> Result<Vec<Option<u64>>, DataError> {
        let checks = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                match self.artifacts.size(&Self::object_path(&id)?).await {
                    Ok(size) => Ok(Some(size)),
                    Err(ArtifactError::NotFound(_)) => Ok(None),
                    Err(other) => Err(storage(other)),
                }
            })
            .buffered(PRESENCE_CONCURRENCY);
        checks.try_collect().await
    }

    /// The ids of `ids` the store lacks.
    pub async fn missing(&self, ids: &[ContentId]) -> Result<Vec<ContentId>, DataError> {
        let checks = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                match self.artifacts.size(&Self::object_path(&id)?).await {
                    Ok(_) => Ok(None),
                    Err(ArtifactError::NotFound(_)) => Ok(Some(id)),
                    Err(other) => Err(storage(other)),
                }
            })
            .buffered(PRESENCE_CONCURRENCY);
        let found: Vec<Option<ContentId>> = checks.try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Stores an object arriving as a stream, if its bytes hash to its id (a manifest must also be a valid
    /// one). An object already stored is not written again (and its body not read): nobody can replace
    /// stored content. Returns whether it was written.
    pub async fn put_object(
        &self,
        id: &ContentId,
        declared_length: Option<u64>,
        body: ByteStream,
    ) -> Result<bool, DataError> {
        let limit = if id.is_directory() {
            MAX_MANIFEST_BYTES
        } else {
            MAX_OBJECT_BYTES
        };
        if let Some(length) = declared_length.filter(|length| *length > limit) {
            return Err(DataError::Invalid(format!(
                "object {id} declares {length} bytes, more than the {limit} accepted"
            )));
        }
        let path = Self::object_path(id)?;
        {
            let mut uploading = self
                .uploading
                .lock()
                .map_err(|_| DataError::Internal("upload registry poisoned".into()))?;
            if !uploading.insert(id.key()) {
                return Err(DataError::Conflict(format!(
                    "object {id} is being uploaded by another request; retry"
                )));
            }
        }
        let _uploading = Uploading(&self.uploading, id.key());
        if self.missing(std::slice::from_ref(id)).await?.is_empty() {
            return Ok(false);
        }
        if id.is_directory() {
            let _permit = self
                .manifests
                .acquire()
                .await
                .map_err(|e| DataError::Internal(e.to_string()))?;
            let chunks: Vec<bytes::Bytes> = bounded(body, limit)
                .try_collect()
                .await
                .map_err(|e| DataError::Invalid(e.to_string()))?;
            let bytes = chunks.concat();
            if !id.matches(&bytes) {
                return Err(DataError::Invalid(format!(
                    "the bytes sent for object {id} do not hash to it"
                )));
            }
            Manifest::parse(&bytes)
                .map_err(|e| DataError::Invalid(format!("object {id} is not a valid manifest: {e}")))?;
            let body = futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed();
            self.artifacts.put(&path, body).await.map_err(storage)?;
            return Ok(true);
        }
        let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
        let hashing = hasher.clone();
        let body = bounded(body, limit)
            .map_ok(move |chunk| {
                if let Ok(mut hasher) = hashing.lock() {
                    hasher.update(&chunk);
                }
                chunk
            })
            .boxed();
        let written = self.artifacts.put(&path, body).await.map_err(|e| match e {
            ArtifactError::Body { source, .. } => DataError::Invalid(format!("receiving object {id}: {source}")),
            other => storage(other),
        });
        let hash = hasher
            .lock()
            .map(|h| h.finalize())
            .map_err(|_| DataError::Internal("hasher poisoned".into()))?;
        if written.is_err() || hash.to_hex().as_str() != id.hex() {
            // Nothing was stored here before (checked above, and no other request writes this id meanwhile).
            let _ = self.artifacts.delete(&path).await;
            written?;
            return Err(DataError::Invalid(format!(
                "the bytes sent for object {id} hash to {}; nothing was stored",
                hash.to_hex()
            )));
        }
        Ok(true)
    }

    /// Opens a stored object.
    pub async fn get_object(&self, id: &ContentId) -> Result<ArtifactDownload, DataError> {
        self.artifacts.get(&Self::object_path(id)?).await.map_err(|e| match e {
            ArtifactError::NotFound(_) => DataError::NotFound(format!("object {id} is not stored")),
            other => storage(other),
        })
    }

    /// A stored manifest, checked.
    pub async fn manifest(&self, id: &ContentId) -> Result<Manifest, DataError> {
        let _permit = self
            .manifests
            .acquire()
            .await
            .map_err(|e| DataError::Internal(e.to_string()))?;
        let bytes = self
            .artifacts
            .read_all(&Self::object_path(id)?, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                ArtifactError::NotFound(_) => {
                    DataError::Invalid(format!("the manifest {id} is not stored; push it first"))
                }
                other => storage(other),
            })?;
        if !id.matches(&bytes) {
            return Err(DataError::Internal(format!("the stored manifest {id} is damaged")));
        }
        Manifest::parse(&bytes).map_err(|e| DataError::Internal(format!("the stored manifest {id}: {e}")))
    }

    /// Registers a version once every object it needs is stored and its declared size and file count match
    /// them; the same content under the same name returns the existing version.
    pub async fn register(
        &self,
        name: &str,
        new: NewVersion,
        actor: &str,
    ) -> Result<(DatasetVersion, bool), DataError> {
        check_name(name).map_err(DataError::Invalid)?;
        let id = ContentId::parse(&new.hash).map_err(DataError::Invalid)?;
        let _not_collecting = self.collecting.read().await;
        let (size, files) = if id.is_directory() {
            let manifest = self.manifest(&id).await?;
            let mut expected: std::collections::BTreeMap<ContentId, u64> = std::collections::BTreeMap::new();
            for entry in manifest.entries() {
                expected.insert(entry.id().map_err(DataError::Internal)?, entry.size);
            }
            let unique: Vec<ContentId> = expected.keys().cloned().collect();
            let sizes = self.sizes(&unique).await?;
            let missing: Vec<&ContentId> = unique
                .iter()
                .zip(&sizes)
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| id)
                .collect();
            if let Some(first) = missing.first() {
                return Err(DataError::Invalid(format!(
                    "{} object(s) of this version are not stored (first: {first}); push them first",
                    missing.len()
                )));
            }
            if let Some((id, stored)) = unique
                .iter()
                .zip(&sizes)
                .find(|(id, size)| **size != Some(expected[*id]))
            {
                return Err(DataError::Invalid(format!(
                    "the manifest gives object {id} {} bytes; the stored object has {}",
                    expected[id],
                    stored.unwrap_or(0)
                )));
            }
            (manifest.size(), manifest.entries().len() as u64)
        } else {
            let size = self
                .artifacts
                .size(&Self::object_path(&id)?)
                .await
                .map_err(|e| match e {
                    ArtifactError::NotFound(_) => {
                        DataError::Invalid(format!("object {id} is not stored; push it first"))
                    }
                    other => storage(other),
                })?;
            (size, 1)
        };
        if (size, files) != (new.size, new.files) {
            return Err(DataError::Invalid(format!(
                "the version declares {} bytes in {} file(s); its stored content has {size} bytes in {files}",
                new.size, new.files
            )));
        }
        let text_within = |value: Option<serde_json::Value>, limit: usize, what: &str| {
            value
                .filter(|v| !v.is_null())
                .map(|v| {
                    let text = v.to_string();
                    if text.len() > limit {
                        return Err(DataError::Invalid(format!("the {what} is larger than {limit} bytes")));
                    }
                    Ok(text)
                })
                .transpose()
        };
        let bounded_text = |text: String, what: &str| {
            if text.len() > 4_096 {
                return Err(DataError::Invalid(format!("the {what} is longer than 4096 bytes")));
            }
            Ok(text)
        };
        let as_i64 = |value: u64, what: &str| {
            i64::try_from(value).map_err(|_| DataError::Invalid(format!("{what} {value} is too large")))
        };
        let version = DatasetVersion {
            name: name.to_string(),
            version: 0,
            content_hash: id.key(),
            size_bytes: as_i64(size, "size")?,
            file_count: as_i64(files, "file count")?,
            row_count: new.rows.map(|rows| as_i64(rows, "row count")).transpose()?,
            table_schema: text_within(new.schema, MAX_SCHEMA_BYTES, "schema")?,
            profile: text_within(new.profile, MAX_PROFILE_BYTES, "profile")?,
            lineage: text_within(shallow(new.lineage)?, MAX_LINEAGE_BYTES, "lineage")?,
            source: bounded_text(new.source, "source")?,
            description: bounded_text(new.description, "description")?,
            created_by: actor.to_string(),
            creation_time: 0,
        };
        Ok(self.store.register_dataset_version(&version).await?)
    }

    /// One version (`latest` for the newest).
    pub async fn version(&self, name: &str, version: &str) -> Result<DatasetVersion, DataError> {
        if version == "latest" {
            return Ok(self.store.latest_dataset_version(name).await?);
        }
        let number: i64 = version
            .parse()
            .map_err(|_| DataError::Invalid(format!("'{version}' is not a version number or 'latest'")))?;
        Ok(self.store.get_dataset_version(name, number).await?)
    }

    /// Versions of a dataset, newest first.
    pub async fn versions(
        &self,
        name: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DatasetVersion>, DataError> {
        let versions = self.store.dataset_versions(name, before, limit).await?;
        if versions.is_empty() && before.is_none() {
            return Err(DataError::NotFound(format!("Dataset '{name}' does not exist.")));
        }
        Ok(versions)
    }

    /// Every dataset.
    pub async fn datasets(&self) -> Result<Vec<DatasetSummary>, DataError> {
        Ok(self.store.list_datasets().await?)
    }

    /// Finds objects no version needs; removes those older than `grace_ms` unless `dry_run`.
    pub async fn collect_garbage(&self, dry_run: bool, grace_ms: i64) -> Result<GcReport, DataError> {
        let _no_registrations = self.collecting.write().await;
        let mut referenced: HashSet<String> = HashSet::new();
        let mut broken = Vec::new();
        for hash in self.store.dataset_content_hashes().await? {
            let Ok(id) = ContentId::parse(&hash) else { continue };
            if id.is_directory() {
                match self.manifest(&id).await {
                    Ok(manifest) => referenced.extend(manifest.entries().iter().map(|e| e.hash.clone())),
                    // The version's files are unknown; it is reported, and its manifest can be pushed again.
                    Err(_) => broken.push(id.key()),
                }
            }
            referenced.insert(id.key());
        }
        let now = loopline_core::time::now_millis();
        let mut report = GcReport {
            dry_run,
            versions_without_manifest: broken,
            ..GcReport::default()
        };
        let root = ArtifactPath::parse(OBJECTS_PREFIX).map_err(storage)?;
        for prefix in self.artifacts.list(&root).await.map_err(storage)? {
            if !prefix.is_dir || prefix.name.len() != 2 {
                continue;
            }
            let directory = ArtifactPath::parse(&format!("{OBJECTS_PREFIX}/{}", prefix.name)).map_err(storage)?;
            for entry in self.artifacts.list(&directory).await.map_err(storage)? {
                let Ok(id) = ContentId::parse(&format!("{}{}", prefix.name, entry.name)) else {
                    continue;
                };
                let size = entry.size.unwrap_or(0);
                report.objects += 1;
                report.bytes += size;
                if referenced.contains(&id.key()) {
                    continue;
                }
                report.unreferenced += 1;
                report.unreferenced_bytes += size;
                if report.examples.len() < 20 {
                    report.examples.push(id.key());
                }
                if entry.modified_ms.is_none_or(|modified| now - modified < grace_ms) {
                    report.kept_recent += 1;
                    continue;
                }
                if !dry_run {
                    self.artifacts.delete(&Self::object_path(&id)?).await.map_err(storage)?;
                    report.removed += 1;
                }
            }
        }
        Ok(report)
    }
}

/// A body stream that fails once it passes `limit` bytes.
fn bounded(body: ByteStream, limit: u64) -> ByteStream {
    let mut received = 0u64;
    body.map(move |chunk| {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(std::io::Error::other(format!(
                "the object is larger than the {limit} bytes accepted"
            )));
        }
        Ok(chunk)
    })
    .boxed()
}

#[cfg(test)]
mod lineage_tests {
    use super::*;

    #[test]
    fn a_lineage_nested_too_deep_is_refused() {
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_LINEAGE_DEPTH {
            deep = serde_json::json!({ "a": deep });
        }
        assert!(shallow(Some(deep.clone())).is_err());
        let fits = deep["a"].clone();
        assert_eq!(shallow(Some(fits.clone())).unwrap(), Some(fits));
        assert_eq!(shallow(None).unwrap(), None);
    }
}
