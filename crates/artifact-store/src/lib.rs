//! The artifact store: a trait over `object_store` (local directory by default, S3-compatible storage
//! for replicas), with every user-supplied path confined below the store's root.

mod artifact_path;
mod error;
mod object_store_backend;

pub use artifact_path::ArtifactPath;
pub use error::{ArtifactError, ArtifactResult};
pub use object_store_backend::{ObjectArtifactStore, remove_abandoned_staging_files};

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
}

/// A file being downloaded.
pub struct ArtifactDownload {
    /// Size in bytes.
    pub size: u64,
    /// The file's bytes.
    pub body: ByteStream,
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
}
