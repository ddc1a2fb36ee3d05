//! Errors from defining features and building training sets. Each says what failed, with which name or file,
//! and what to do about it.

use std::path::PathBuf;

use loopline_tabular::TabularError;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The definitions file is not valid.
    #[error("{origin}: {message}")]
    Definitions {
        /// The file (or "the request") the definitions came from.
        origin: String,
        /// What is wrong, naming the object and field.
        message: String,
    },
    /// A feature reference names a view or feature that is not defined.
    #[error("{0}")]
    UnknownFeature(String),
    /// A feature reference is malformed, or there are none or too many.
    #[error("{0}")]
    BadReference(String),
    /// Two requested features would get the same output column name.
    #[error(
        "feature name collision: {names:?} appear in more than one feature view; ask for full feature names \
         (--full-feature-names, `full_feature_names: true`) to get `<view>__<feature>` columns"
    )]
    NameCollision {
        /// The colliding names.
        names: Vec<String>,
    },
    /// The entity frame cannot be used.
    #[error("entity frame {path}: {message}")]
    EntityFrame {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A data source cannot be used.
    #[error("source `{source_name}` ({path}): {message}")]
    Source {
        /// The source's name.
        source_name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading a table failed.
    #[error(transparent)]
    Table(#[from] TabularError),
    /// Writing or reading a spill or output file failed.
    #[error("{what} ({path}): {message}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        message: String,
    },
}

impl FeatureError {
    pub(crate) fn definitions(origin: &str, message: impl Into<String>) -> FeatureError {
        FeatureError::Definitions {
            origin: origin.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, error: impl std::fmt::Display) -> FeatureError {
        FeatureError::Io {
            what,
            path: path.into(),
            message: error.to_string(),
        }
    }
}
