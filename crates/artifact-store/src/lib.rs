//! The artifact store: a trait over `object_store` (local directory by default, S3-compatible storage
//! for replicas), with every user-supplied path confined below the store's root.

mod artifact_path;
mod error;
mod object_store_backend;

pub use artifact_path::ArtifactPath;
pub use error::{ArtifactError, ArtifactResult};
pub use object_store_backend::{ObjectArtifactStore, remove_abandoned_staging_files, s3_bucket};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Name relative to the listed directory (a basename).
    pub name: String,
    /// True for a directory.
    pub is_dir: bool,
    /// Size in bytes, for files.
    pub size: Option<u64>,
    /// When a file was last written, ms since the epoch, where the store says.
    pub modified_ms: Option<i64>,
}

/// A file being downloaded.
pub struct ArtifactDownload {
    /// Size in bytes.
    pub size: u64,
    /// The file's bytes.
    pub body: ByteStream,
}

/// A file refused by [`ArtifactStore::read_all`] for its size.
pub fn too_large_to_read(path: &ArtifactPath, size: u64, limit: u64) -> ArtifactError {
    ArtifactError::PathConflict {
        path: path.as_string(),
        reason: format!("is {size} bytes, more than the {limit} read at once"),
    }
}

/// Where artifacts are kept.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Writes a file from a stream, replacing any existing one; returns the bytes written.
    async fn put(&self, path: &ArtifactPath, body: ByteStream) -> ArtifactResult<u64>;
    /// Opens a file for download; a directory or missing file is `NotFound`.
    async fn get(&self, path: &ArtifactPath) -> ArtifactResult<ArtifactDownload>;
    /// Lists a directory; a file or a missing path lists as empty.
    async fn list(&self, path: &ArtifactPath) -> ArtifactResult<Vec<ArtifactEntry>>;
    /// Deletes a file or a whole directory.
    async fn delete(&self, path: &ArtifactPath) -> ArtifactResult<()>;
    /// Reads a whole file of at most `limit` bytes at once (for small files read in full, such as prediction
    /// log parts: one read instead of a stream of chunks); larger files are refused before being read.
    async fn read_all(&self, path: &ArtifactPath, limit: u64) -> ArtifactResult<bytes::Bytes> {
        use futures::TryStreamExt;
        let download = self.get(path).await?;
        if download.size > limit {
            return Err(too_large_to_read(path, download.size, limit));
        }
        let chunks: Vec<bytes::Bytes> = download
            .body
            .try_collect()
            .await
            .map_err(|source| ArtifactError::Body {
                path: path.as_string(),
                source,
            })?;
        Ok(bytes::Bytes::from(chunks.concat()))
    }
    /// A file's size in bytes; a directory or missing file is `NotFound`.
    async fn size(&self, path: &ArtifactPath) -> ArtifactResult<u64> {
        Ok(self.get(path).await?.size)
    }
    /// Reads byte ranges of a file (for formats read in parts, such as the columns of a Parquet file). A range
    /// past the end of the file is refused. This default reads the file once and slices it.
    async fn read_ranges(
        &self,
        path: &ArtifactPath,
        ranges: &[std::ops::Range<u64>],
    ) -> ArtifactResult<Vec<bytes::Bytes>> {
        let end = ranges.iter().map(|r| r.end).max().unwrap_or(0);
        let whole = self.read_all(path, end.max(self.size(path).await?)).await?;
        ranges
            .iter()
            .map(|range| {
                if range.start > range.end || range.end > whole.len() as u64 {
                    return Err(range_outside(path, range, whole.len() as u64));
                }
                Ok(whole.slice(range.start as usize..range.end as usize))
            })
            .collect()
    }
}

/// A byte range that does not lie within a file.
pub fn range_outside(path: &ArtifactPath, range: &std::ops::Range<u64>, size: u64) -> ArtifactError {
    ArtifactError::PathConflict {
        path: path.as_string(),
        reason: format!(
            "has {size} bytes; bytes {}..{} do not lie within it",
            range.start, range.end
        ),
    }
}
