//! Errors of the artifact store.

use loopline_core::{ErrorCode, HasErrorCode};

/// What can go wrong with an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The path tries to leave the artifact root or is malformed.
    #[error("invalid artifact path '{path}': {reason}")]
    InvalidPath {
        /// The path as received.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// No file at that path.
    #[error("No such artifact: '{0}'")]
    NotFound(String),
    /// The storage backend failed.
    #[error("artifact storage failed for '{path}': {source}")]
    Storage {
        /// The path involved.
        path: String,
        /// The backend's error.
        source: object_store::Error,
    },
    /// Reading the upload body failed.
    #[error("reading the upload body for '{path}' failed: {source}")]
    Body {
        /// The path involved.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The path names a file where a directory is needed, or the other way round.
    #[error("artifact path '{path}' {reason}")]
    PathConflict {
        /// The path involved.
        path: String,
        /// What is in the way.
        reason: String,
    },
    /// The destination could not be configured.
    #[error("cannot use artifact destination '{destination}': {reason}")]
    Configuration {
        /// The destination as given.
        destination: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl HasErrorCode for ArtifactError {
    fn error_code(&self) -> ErrorCode {
        match self {
            ArtifactError::InvalidPath { .. } | ArtifactError::PathConflict { .. } => ErrorCode::InvalidParameterValue,
            ArtifactError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            ArtifactError::Body { .. } => ErrorCode::BadRequest,
            ArtifactError::Storage { .. } | ArtifactError::Configuration { .. } => ErrorCode::InternalError,
        }
    }
}

/// Result alias for artifact calls.
pub type ArtifactResult<T> = Result<T, ArtifactError>;
