//! What each access API handler gets: the service, the authenticated caller, and the request's parameters.

use super::params::Params;
use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use loopline_access::{Access, Principal};
use loopline_core::ErrorCode;
use loopline_metadata_store::{MetadataStore, StoreError};
use std::sync::{Arc, Mutex};

/// Largest access API request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// State of the access APIs.
pub struct AccessApi {
    /// The service.
    pub access: Arc<Access>,
    /// For checking that a granted resource exists.
    pub store: Arc<dyn MetadataStore>,
    /// The one-time code that creates the first admin, while no admin exists.
    pub bootstrap_code: Mutex<Option<String>>,
    /// The audit trail (flushed before it is read).
    pub audit: super::audit::AuditSink,
}

/// One request to an access API route.
pub struct Ctx {
    /// The service.
    pub api: Arc<AccessApi>,
    /// Who is calling (`None` only on the bootstrap route).
    pub caller: Option<Principal>,
    /// Parameters.
    pub params: Params,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request method.
    pub method: Method,
}

impl Ctx {
    /// The authenticated caller.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.caller
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, super::refusal::UNAUTHENTICATED))
    }

    /// Refuses unless the caller is an admin.
    pub fn require_admin(&self) -> Result<&Principal, ApiError> {
        let principal = self.principal()?;
        if principal.is_admin {
            Ok(principal)
        } else {
            Err(denied())
        }
    }

    /// Refuses unless the caller is `username` or an admin.
    pub fn require_self_or_admin(&self, username: &str) -> Result<&Principal, ApiError> {
        let principal = self.principal()?;
        if principal.is_admin || *principal.username == *username {
            Ok(principal)
        } else {
            Err(denied())
        }
    }
}

/// 403 in MLflow's words.
pub fn denied() -> ApiError {
    ApiError::new(ErrorCode::PermissionDenied, "Permission denied.")
}

/// A store error as the client sees it.
pub fn store_error(error: StoreError) -> ApiError {
    ApiError::from(error)
}

impl FromRequest<Arc<AccessApi>> for Ctx {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<AccessApi>) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
            ApiError::new(
                ErrorCode::RequestTooLarge,
                format!("An access API request body is at most {MAX_BODY_BYTES} bytes."),
            )
            .into_response()
        })?;
        let params = Params::read(&parts.method, &parts.headers, parts.uri.query(), &body)
            .map_err(IntoResponse::into_response)?;
        Ok(Ctx {
            api: state.clone(),
            caller: parts.extensions.get::<Principal>().cloned(),
            params,
            headers: parts.headers,
            method: parts.method,
        })
    }
}

/// A handler's result as a response.
pub fn respond(result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}
