//! Why a suite cannot be used.

/// A suite that cannot be evaluated, found before any data is read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SuiteError {
    /// Not a suite in GX's JSON layout.
    #[error("not an expectation suite: {0}")]
    Malformed(String),
    /// An expectation type this version does not evaluate.
    #[error("expectation {index} has type '{kind}', which Loopline does not evaluate; supported types: {supported}")]
    UnknownExpectation {
        /// Position in the suite (0-based).
        index: usize,
        /// The type given.
        kind: String,
        /// The supported types, comma-separated.
        supported: String,
    },
    /// An argument is missing or has the wrong form.
    #[error("expectation {index} ({kind}): {message}")]
    BadArgument {
        /// Position in the suite (0-based).
        index: usize,
        /// The expectation type.
        kind: String,
        /// What is wrong.
        message: String,
    },
}
