//! 401 and 403 in each protocol's own shape. Never says whether a user exists or why credentials failed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopline_core::ErrorCode;
use serde_json::json;

/// Which challenges a 401 offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Challenges {
    /// HTTP Basic (users and passwords).
    pub basic: bool,
    /// Bearer tokens (API tokens, OIDC).
    pub bearer: bool,
}

/// The message of a 401.
pub const UNAUTHENTICATED: &str = "You are not authenticated: send a user name and password (HTTP Basic) or \
     'Authorization: Bearer <token>'. With the mlflow client set MLFLOW_TRACKING_USERNAME and \
     MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN.";

/// Another answer of the guard (a body it cannot read, one too large, a check that failed), shaped for the
/// protocol `path` belongs to.
pub fn error_for(path: &str, code: ErrorCode, message: &str) -> Response {
    let status = crate::error::status_for(code);
    if crate::anthropic::is_anthropic_path(path) {
        return crate::anthropic::error(status, message);
    }
    if crate::openai::is_openai_path(path) {
        return crate::openai::errors::OpenAiError {
            status,
            message: message.to_string(),
            kind: if status.is_server_error() {
                "api_error"
            } else {
                "invalid_request_error"
            },
            param: None,
            code: (code == ErrorCode::RequestTooLarge).then_some("request_too_large"),
            retry_after: None,
        }
        .into_response();
    }
    crate::error::ApiError::new(code, message).into_response()
}

/// A refusal for `path`, shaped for the protocol the path belongs to.
pub fn refuse(path: &str, code: ErrorCode, message: &str, challenges: Challenges) -> Response {
    let status = if code == ErrorCode::Unauthenticated {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut response = if crate::anthropic::is_anthropic_path(path) {
        crate::anthropic::error(status, message)
    } else if crate::openai::is_openai_path(path) {
        let code = if code == ErrorCode::Unauthenticated {
            "invalid_api_key"
        } else {
            "permission_denied"
        };
        (
            status,
            axum::Json(
                json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
            ),
        )
            .into_response()
    } else if path.starts_with("/v2") {
        // Open Inference Protocol v2.
        (status, axum::Json(json!({"error": message}))).into_response()
    } else if path.starts_with("/loopline") || path == "/metrics" {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{message}\n"),
        )
            .into_response()
    } else {
        (
            status,
            axum::Json(json!({"error_code": code.as_str(), "message": message})),
        )
            .into_response()
    };
    if code == ErrorCode::Unauthenticated {
        let mut offered = Vec::new();
        if challenges.basic {
            offered.push("Basic realm=\"loopline\", charset=\"UTF-8\"");
        }
        if challenges.bearer {
            offered.push("Bearer realm=\"loopline\"");
        }
        for challenge in offered {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
    }
    response.extensions_mut().insert(crate::error::Refusal {
        code: code.as_str(),
        message: message.to_string(),
    });
    response
}
