//! Errors on the wire: one exhaustive mapping from error codes to HTTP statuses, and MLflow's JSON body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopline_core::{ErrorCode, HasErrorCode};

/// The longest error message sent.
const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// An error ready to be sent.
#[derive(Debug)]
pub struct ApiError {
    /// Category.
    pub code: ErrorCode,
    /// Message for people.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A 400 naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
}

/// The HTTP status for each code. Client mistakes are always 4xx: the MLflow client retries 5xx for minutes.
#[deny(clippy::wildcard_enum_match_arm)]
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ResourceAlreadyExists | ErrorCode::InvalidParameterValue | ErrorCode::BadRequest => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidState => StatusCode::CONFLICT,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(self.code);
        let message = if status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
            loopline_core::redact::redact_server_paths(&self.message)
        } else {
            self.message
        };
        // A message that echoes a huge input is cut: the answer stays small whatever was sent.
        let message = if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}... ({} bytes in all)", &message[..end], message.len())
        } else {
            message
        };
        let body = serde_json::json!({"error_code": self.code.as_str(), "message": message});
        let mut response = (status, Json(body)).into_response();
        // For the server's request log (the answer's own text, never more).
        response.extensions_mut().insert(Refusal {
            code: self.code.as_str(),
            message,
        });
        response
    }
}

/// What an error answer said, kept on the response for the server's log of refused requests.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// MLflow's error code.
    pub code: &'static str,
    /// The message the client got.
    pub message: String,
}

impl<E: HasErrorCode + std::fmt::Display> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self::new(error.error_code(), error.to_string())
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
