//! The closed set of error codes. Every crate's error enum maps each variant to exactly one code, and the
//! wire layer maps each code to an HTTP status and a protocol-specific body.

use std::fmt;

/// A machine-readable error category, named after MLflow's `error_code` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request names something that does not exist.
    ResourceDoesNotExist,
    /// The request tries to create something that already exists.
    ResourceAlreadyExists,
    /// A field of the request has a value that is not allowed.
    InvalidParameterValue,
    /// The request body or query string could not be parsed at all.
    BadRequest,
    /// No route matches the request path and method.
    EndpointNotFound,
    /// The request body is larger than the server accepts.
    RequestTooLarge,
    /// The server is overloaded or a limit was hit; try again later.
    RequestLimitExceeded,
    /// The operation conflicts with the current state of the resource.
    InvalidState,
    /// A server-side failure that the client cannot fix.
    InternalError,
    /// The server is temporarily unable to answer.
    TemporarilyUnavailable,
    /// No credentials, or credentials that were not accepted.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
}

impl ErrorCode {
    /// The wire name of the code, as MLflow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            ErrorCode::RequestTooLarge => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Implemented by every crate's error type so the wire layer can classify it.
pub trait HasErrorCode {
    /// The code this error maps to.
    fn error_code(&self) -> ErrorCode;
}
