//! Versioned data: content-addressed objects (BLAKE3), directory manifests, pointer files committed to git,
//! the local cache and the working tree.

pub mod cache;
pub mod content;
pub mod dvc;
pub mod files;
pub mod manifest;
pub mod pointer;
pub mod state;
pub mod workspace;

pub use cache::LocalCache;
pub use content::ContentId;
pub use manifest::{Manifest, ManifestEntry};
pub use pointer::Pointer;
pub use workspace::{Added, CheckedOut, DataStatus, Progress, Project, Quiet, TreeState};
