//! Errors of the metadata store.

use loopline_core::{ErrorCode, HasErrorCode};

/// What can go wrong in a metadata store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named entity does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An entity with that identity already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is not valid in the current state (deleted run, changed param, bad filter...).
    #[error("{0}")]
    InvalidParameter(String),
    /// The change was based on an outdated copy, or conflicts with work under way (409).
    #[error("{0}")]
    Conflict(String),
    /// The database refused or failed.
    #[error("{}", describe_database_error(.0))]
    Database(#[from] sqlx::Error),
    /// The embedded SQLite writer refused or failed.
    #[error("{0}")]
    Embedded(String),
    /// The database was written by a newer Loopline.
    #[error(
        "the database schema is at version {found} but this loopline binary knows only up to version {supported}; upgrade loopline"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this binary can run.
        supported: i64,
    },
    /// The backend URI is not usable.
    #[error("unsupported backend store uri '{0}': use a sqlite:// path or a postgresql:// url")]
    UnsupportedUri(String),
}

impl HasErrorCode for StoreError {
    fn error_code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            StoreError::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            StoreError::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            StoreError::Conflict(_) => ErrorCode::InvalidState,
            StoreError::Database(error) => database_error_code(error),
            StoreError::Embedded(_) | StoreError::SchemaTooNew { .. } | StoreError::UnsupportedUri(_) => {
                ErrorCode::InternalError
            }
        }
    }
}

/// A database refusal caused by the values a client sent is the client's mistake (PostgreSQL's class 22,
/// "data exception": a NUL byte in text, a number out of range); a full pool is temporary; the rest is ours.
fn database_error_code(error: &sqlx::Error) -> ErrorCode {
    match error {
        sqlx::Error::Database(database_error) => {
            let client_data = database_error.code().is_some_and(|code| code.starts_with("22"));
            if client_data {
                ErrorCode::InvalidParameterValue
            } else {
                ErrorCode::InternalError
            }
        }
        sqlx::Error::PoolTimedOut => ErrorCode::TemporarilyUnavailable,
        _ => ErrorCode::InternalError,
    }
}

/// What a database error says to a person: a value the database cannot hold is named as the client's to fix.
fn describe_database_error(error: &sqlx::Error) -> String {
    if let sqlx::Error::Database(database_error) = error {
        match database_error.code().as_deref() {
            // PostgreSQL: a NUL byte in text (22021), or \u0000 in JSON (22P05).
            Some("22021" | "22P05") => {
                return "a value sent holds a NUL character (\\0 or \\u0000), which the database cannot store; \
                        remove it and send the request again"
                    .to_string();
            }
            Some(code) if code.starts_with("22") => {
                return format!("a value sent cannot be stored: {}", database_error.message());
            }
            _ => {}
        }
    }
    format!("database error: {error}")
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;
