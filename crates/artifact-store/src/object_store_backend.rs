//! [`ArtifactStore`] over any `object_store` backend: a local directory or an S3-compatible bucket.

use crate::{ArtifactDownload, ArtifactEntry, ArtifactError, ArtifactPath, ArtifactResult, ArtifactStore, ByteStream};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::sync::Arc;

/// Uploads smaller than this are sent in one request; larger ones stream as a multipart upload.
const SINGLE_PUT_LIMIT: usize = 8 * 1024 * 1024;

/// The cloud clients speak TLS through rustls with the ring provider (no C crypto build); it must be
/// installed once per process before a client is built. Installing twice is harmless.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An S3 bucket as an object store: credentials, region and endpoint from the usual `AWS_*` variables
/// (`AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` for an S3-compatible server). The bucket name must be one
/// S3 accepts (letters, digits, `-`, `_` and `.`, as legacy buckets may have), so it cannot change the URL it
/// goes into.
pub fn s3_bucket(bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let valid = (3..=255).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..");
    if !valid {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
        ));
    }
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("MLFLOW_S3_ENDPOINT_URL")) {
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    install_tls_provider();
    Ok(Arc::new(builder.build().map_err(|error| error.to_string())?))
}

/// Artifacts kept in an `object_store` backend below a prefix.
pub struct ObjectArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
    description: String,
}

impl ObjectArtifactStore {
    /// Opens a destination: a local directory path (created if needed), `file:///path`,
    /// `s3://bucket/prefix` (credentials, region and endpoint from the usual `AWS_*` variables),
    /// `gs://bucket/prefix` (`GOOGLE_*` variables) or `az://container/prefix`, `abfss://` and `wasbs://`
    /// URLs (`AZURE_*` variables).
    pub fn open(destination: &str) -> ArtifactResult<Self> {
        let configuration_error = |reason: String| ArtifactError::Configuration {
            destination: destination.to_string(),
            reason,
        };
        if let Some(rest) = destination.strip_prefix("gs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(configuration_error("the gs url names no bucket".to_string()));
            }
            install_tls_provider();
            let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|error| configuration_error(error.to_string()))?;
            return Self::with_prefix(Arc::new(store), prefix, destination);
        }
        if ["az://", "abfss://", "abfs://", "wasbs://", "adl://"]
            .iter()
            .any(|scheme| destination.starts_with(scheme))
        {
            install_tls_provider();
            let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(destination)
                .build()
                .map_err(|error| configuration_error(error.to_string()))?;
            let path_start = destination.find("://").map(|index| index + 3).unwrap_or_default();
            // Whether the container is the authority (az://container/...) or part of it
            // (abfss://container@account.../...), the prefix is the path after the authority.
            let prefix = destination[path_start..]
                .split_once('/')
                .map(|(_, path)| path)
                .unwrap_or_default();
            return Self::with_prefix(Arc::new(store), prefix, destination);
        }
        if let Some(rest) = destination.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(configuration_error("the s3 url names no bucket".to_string()));
            }
            let prefix_path = ArtifactPath::parse(prefix).map_err(|error| configuration_error(error.to_string()))?;
            let store = s3_bucket(bucket).map_err(configuration_error)?;
            return Ok(Self {
                store,
                prefix: prefix_path.segments().to_vec(),
                description: destination.to_string(),
            });
        }
        if destination.contains("://") && !destination.starts_with("file://") {
            return Err(configuration_error(
                "supported destinations are a local directory, file:// and s3://".to_string(),
            ));
        }
        let directory = destination.strip_prefix("file://").unwrap_or(destination);
        std::fs::create_dir_all(directory).map_err(|error| configuration_error(error.to_string()))?;
        let canonical = std::fs::canonicalize(directory).map_err(|error| configuration_error(error.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&canonical)
            .map_err(|error| configuration_error(error.to_string()))?;
        let staging_root = canonical.clone();
        // In the background: a large artifact tree must not delay start-up.
        std::thread::spawn(move || remove_abandoned_staging_files(&staging_root, STAGING_FILE_MAX_AGE));
        Ok(Self {
            store: Arc::new(store),
            prefix: Vec::new(),
            description: canonical.display().to_string(),
        })
    }

    fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str, destination: &str) -> ArtifactResult<Self> {
        let prefix_path = ArtifactPath::parse(prefix).map_err(|error| ArtifactError::Configuration {
            destination: destination.to_string(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            store,
            prefix: prefix_path.segments().to_vec(),
            description: destination.to_string(),
        })
    }

    /// Wraps an existing object store (used by tests and alternative backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            prefix: Vec::new(),
            description: description.into(),
        }
    }

    /// Where artifacts go, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn object_path(&self, path: &ArtifactPath) -> ObjectPath {
        ObjectPath::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(path.segments().iter().map(String::as_str)),
        )
    }

    /// Opens a file (the root is no file).
    async fn fetch(&self, path: &ArtifactPath) -> ArtifactResult<object_store::GetResult> {
        if path.is_root() {
            return Err(ArtifactError::NotFound(String::new()));
        }
        self.store
            .get(&self.object_path(path))
            .await
            .map_err(|error| Self::storage_error(path, error))
    }

    fn storage_error(path: &ArtifactPath, source: object_store::Error) -> ArtifactError {
        if let object_store::Error::NotFound { .. } = source {
            return ArtifactError::NotFound(path.as_string());
        }
        // A file where the path needs a directory (or a directory where it names a file) is the caller's mistake.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&source);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                let reason = match io.kind() {
                    std::io::ErrorKind::NotADirectory => Some("passes through a file, not a directory"),
                    std::io::ErrorKind::IsADirectory => Some("is a directory, not a file"),
                    std::io::ErrorKind::AlreadyExists => Some("is in the way of a directory"),
                    _ => None,
                };
                if let Some(reason) = reason {
                    return ArtifactError::PathConflict {
                        path: path.as_string(),
                        reason: reason.to_string(),
                    };
                }
            }
            cause = error.source();
        }
        ArtifactError::Storage {
            path: path.as_string(),
            source,
        }
    }
}

/// How old a staging file must be before it counts as abandoned (an upload still under way keeps writing it).
const STAGING_FILE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Removes the staging files of interrupted multipart uploads (`<name>#<digits>` next to the file being
/// written, hidden from listings) that a killed server left in a local artifact directory.
pub fn remove_abandoned_staging_files(root: &std::path::Path, older_than: std::time::Duration) -> usize {
    let mut removed = 0;
    let mut directories = vec![root.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                directories.push(entry.path());
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_staging = name
                .rsplit_once('#')
                .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|byte| byte.is_ascii_digit()));
            let old_enough = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if is_staging && old_enough && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed staging files of interrupted uploads");
    }
    removed
}

#[async_trait]
impl ArtifactStore for ObjectArtifactStore {
    async fn put(&self, path: &ArtifactPath, mut body: ByteStream) -> ArtifactResult<u64> {
        if path.is_root() {
            return Err(ArtifactError::InvalidPath {
                path: String::new(),
                reason: "a file needs a name".to_string(),
            });
        }
        let location = self.object_path(path);
        let body_error = |source| ArtifactError::Body {
            path: path.as_string(),
            source,
        };
        let mut head = BytesMut::new();
        let mut total: u64 = 0;
        while head.len() < SINGLE_PUT_LIMIT {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(body_error)?;
                    total += chunk.len() as u64;
                    head.extend_from_slice(&chunk);
                }
                None => {
                    self.store
                        .put(&location, PutPayload::from(head.freeze()))
                        .await
                        .map_err(|error| Self::storage_error(path, error))?;
                    return Ok(total);
                }
            }
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|error| Self::storage_error(path, error))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, SINGLE_PUT_LIMIT);
        writer.write(&head);
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = match chunk {
                Ok(chunk) => chunk,
                Err(source) => {
                    let _ = writer.abort().await;
                    return Err(body_error(source));
                }
            };
            total += chunk.len() as u64;
            if let Err(error) = writer.wait_for_capacity(4).await {
                let _ = writer.abort().await;
                return Err(Self::storage_error(path, error));
            }
            writer.write(&chunk);
        }
        // A failed finish aborts the upload itself (its parts and, on local disk, its staging file).
        writer
            .finish()
            .await
            .map_err(|error| Self::storage_error(path, error))?;
        Ok(total)
    }

    async fn get(&self, path: &ArtifactPath) -> ArtifactResult<ArtifactDownload> {
        let result = self.fetch(path).await?;
        let size = result.meta.size;
        let owned_path = path.as_string();
        let body = result
            .into_stream()
            .map(move |chunk| chunk.map_err(|error| std::io::Error::other(format!("reading '{owned_path}': {error}"))))
            .boxed();
        Ok(ArtifactDownload { size, body })
    }

    async fn read_all(&self, path: &ArtifactPath, limit: u64) -> ArtifactResult<bytes::Bytes> {
        let result = self.fetch(path).await?;
        if result.meta.size > limit {
            return Err(crate::too_large_to_read(path, result.meta.size, limit));
        }
        result.bytes().await.map_err(|error| Self::storage_error(path, error))
    }

    async fn size(&self, path: &ArtifactPath) -> ArtifactResult<u64> {
        if path.is_root() {
            return Err(ArtifactError::NotFound(String::new()));
        }
        let meta = self
            .store
            .head(&self.object_path(path))
            .await
            .map_err(|error| Self::storage_error(path, error))?;
        Ok(meta.size)
    }

    async fn read_ranges(
        &self,
        path: &ArtifactPath,
        ranges: &[std::ops::Range<u64>],
    ) -> ArtifactResult<Vec<bytes::Bytes>> {
        if path.is_root() {
            return Err(ArtifactError::NotFound(String::new()));
        }
        if let Some(bad) = ranges.iter().find(|r| r.start > r.end) {
            return Err(crate::range_outside(path, bad, 0));
        }
        self.store
            .get_ranges(&self.object_path(path), ranges)
            .await
            .map_err(|error| Self::storage_error(path, error))
    }

    async fn list(&self, path: &ArtifactPath) -> ArtifactResult<Vec<ArtifactEntry>> {
        let location = self.object_path(path);
        let prefix = if location.as_ref().is_empty() {
            None
        } else {
            Some(&location)
        };
        let listing = match self.store.list_with_delimiter(prefix).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(Self::storage_error(path, error)),
        };
        let mut entries = Vec::new();
        for directory in listing.common_prefixes {
            if let Some(name) = directory.filename() {
                entries.push(ArtifactEntry {
                    name: name.to_string(),
                    is_dir: true,
                    size: None,
                    modified_ms: None,
                });
            }
        }
        for object in listing.objects {
            // Listing a file's own path returns the file itself on some backends: a file lists as empty.
            if object.location == location {
                return Ok(Vec::new());
            }
            if let Some(name) = object.location.filename() {
                entries.push(ArtifactEntry {
                    name: name.to_string(),
                    is_dir: false,
                    size: Some(object.size),
                    modified_ms: Some(object.last_modified.timestamp_millis()),
                });
            }
        }
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(entries)
    }

    async fn delete(&self, path: &ArtifactPath) -> ArtifactResult<()> {
        let location = self.object_path(path);
        // A directory is every object below the prefix; a file is the object itself.
        let mut children = self.store.list(Some(&location));
        let mut child_paths = Vec::new();
        while let Some(child) = children.next().await {
            match child {
                Ok(meta) if meta.location != location => child_paths.push(meta.location),
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => break,
                Err(error) => return Err(Self::storage_error(path, error)),
            }
        }
        if !child_paths.is_empty() {
            for child in child_paths {
                self.store
                    .delete(&child)
                    .await
                    .map_err(|error| Self::storage_error(path, error))?;
            }
            return Ok(());
        }
        match self.store.head(&location).await {
            Ok(_) => self
                .store
                .delete(&location)
                .await
                .map_err(|error| Self::storage_error(path, error)),
            Err(object_store::Error::NotFound { .. }) => Err(ArtifactError::NotFound(path.as_string())),
            Err(error) => Err(Self::storage_error(path, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_destinations_are_refused_with_the_reason() {
        for destination in ["gs://", "s3://", "ftp://host/path", "http://example.com/x"] {
            let error = ObjectArtifactStore::open(destination).err().expect("refused");
            assert!(error.to_string().contains(destination), "{error}");
        }
    }

    #[test]
    fn s3_prefixes_are_confined_like_paths() {
        assert!(ObjectArtifactStore::open("s3://bucket/../escape").is_err());
    }
}
