//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with the status the `openai`
//! SDK picks its exception class from, and `retry-after` on 429.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopline_core::{ErrorCode, HasErrorCode};
use loopline_llm_gateway::GatewayError;
use serde_json::json;

/// An error for an OpenAI-API caller.
#[derive(Debug)]
pub struct OpenAiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for people.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `rate_limit_error`, `api_error`, ...).
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, ...).
    pub code: Option<&'static str>,
    /// Seconds to wait, on 429.
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    /// A 400 about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after: None,
        }
    }

    /// A 404 for a model name.
    pub fn model_not_found(name: &str) -> OpenAiError {
        OpenAiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model '{name}' does not exist or you do not have access to it."),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after: None,
        }
    }
}

impl From<crate::error::ApiError> for OpenAiError {
    fn from(error: crate::error::ApiError) -> OpenAiError {
        OpenAiError {
            status: crate::error::status_for(error.code),
            message: error.message,
            kind: "invalid_request_error",
            param: None,
            code: (error.code == ErrorCode::RequestTooLarge).then_some("request_too_large"),
            retry_after: None,
        }
    }
}

impl From<GatewayError> for OpenAiError {
    fn from(error: GatewayError) -> OpenAiError {
        let status = crate::error::status_for(error.error_code());
        let (kind, code, param, retry_after) = match &error {
            GatewayError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found"), Some("model"), None),
            GatewayError::Rejected { param, .. } => ("invalid_request_error", None, param.as_deref(), None),
            GatewayError::ContextWindow(_) => (
                "invalid_request_error",
                Some("context_length_exceeded"),
                Some("messages"),
                None,
            ),
            GatewayError::RateLimited { retry_after, .. } => (
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                None,
                Some(retry_after.map_or(1, |wait| wait.as_secs_f64().ceil() as u64).max(1)),
            ),
            GatewayError::Unavailable { .. } => ("api_error", Some("upstream_unavailable"), None, None),
            GatewayError::Blocked(_) => ("invalid_request_error", Some("guardrail_blocked"), None, None),
        };
        OpenAiError {
            status,
            message: error.to_string(),
            kind,
            param: param.map(str::to_string),
            code,
            retry_after,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "gateway request failed");
        }
        let body =
            json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
