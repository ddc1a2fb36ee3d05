//! Versioned data: content-addressed objects (BLAKE3), directory manifests, pointer files committed to git,
//! the local cache and the working tree.

pub mod cache;
pub mod content;
pub mod dvc;
pub mod files;
pub mod links;
pub mod manifest;
pub mod materialize;
pub mod pointer;
pub mod state;
pub mod workspace;

pub use cache::LocalCache;
pub use content::ContentId;
pub use links::LinkMode;
pub use manifest::{Manifest, ManifestEntry};
pub use pointer::Pointer;
pub use workspace::{Added, CheckedOut, DataStatus, Progress, Project, Quiet, TreeState};

/// Writes a file through a temporary file beside it renamed over it, so a reader (or a crash) never sees half
/// of it; a failed write leaves no temporary file behind.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let staged = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&staged, bytes)
        .and_then(|()| std::fs::rename(&staged, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&staged);
            format!("writing {}: {e}", path.display())
        })
}
