//! Errors from reading tables and profiles. Each names the file and says what to do.

use std::path::PathBuf;

/// What went wrong reading a table or a profile.
#[derive(Debug, thiserror::Error)]
pub enum TabularError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Neither the extension nor the first bytes tell the format.
    #[error(
        "cannot tell the format of {path}: name it .parquet, .csv, .arrow (Arrow IPC file) or .arrows (Arrow IPC stream)"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a valid file of its format.
    #[error("{path} is not a readable {format} file: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// "Parquet", "CSV" or "Arrow IPC".
        format: &'static str,
        /// The decoder's explanation.
        message: String,
    },
    /// A CSV column changes type part-way through the file.
    #[error(
        "{path}: {message}. The column mixes types (for example numbers and text); clean it or quote the whole column as text"
    )]
    MixedTypes {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with the column and line.
        message: String,
    },
    /// Columns asked for are not in the file.
    #[error("{path} has no column {missing:?}; its columns are {available:?}")]
    MissingColumns {
        /// The file.
        path: PathBuf,
        /// The names asked for and not found.
        missing: Vec<String>,
        /// The names the file has.
        available: Vec<String>,
    },
    /// A profile file is not one this version understands.
    #[error("{path} is not a Loopline profile: {message}")]
    BadProfile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl TabularError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TabularError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
