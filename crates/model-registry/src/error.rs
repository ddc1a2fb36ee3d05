//! Errors of the registry service.

use loopline_core::{ErrorCode, HasErrorCode};
use loopline_metadata_store::StoreError;
use loopline_tracking::TrackingError;

/// What can go wrong in a registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request field is missing or not allowed.
    #[error("{0}")]
    InvalidParameter(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tracking rule refused the input.
    #[error(transparent)]
    Tracking(#[from] TrackingError),
}

impl HasErrorCode for RegistryError {
    fn error_code(&self) -> ErrorCode {
        match self {
            RegistryError::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            RegistryError::Store(error) => error.error_code(),
            RegistryError::Tracking(error) => error.error_code(),
        }
    }
}

/// Result alias for registry calls.
pub type RegistryResult<T> = Result<T, RegistryError>;
