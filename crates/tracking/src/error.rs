//! Errors of the tracking services.

use loopline_core::{ErrorCode, HasErrorCode};
use loopline_metadata_store::StoreError;

/// What can go wrong in a tracking call.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// A request field is missing or has a value that is not allowed.
    #[error("{0}")]
    InvalidParameter(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HasErrorCode for TrackingError {
    fn error_code(&self) -> ErrorCode {
        match self {
            TrackingError::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            TrackingError::Store(error) => error.error_code(),
        }
    }
}

/// Result alias for tracking calls.
pub type TrackingResult<T> = Result<T, TrackingError>;
