//! MLflow's gateway scorer guardrails, which this server covers its own way: guardrails are set in the
//! gateway's configuration file and run inside the gateway. MLflow's UI lists them on an endpoint's page: the
//! lists answer empty (there are no MLflow scorer guardrails here), and creating one is refused with what to
//! use instead, rather than a missing route.

use crate::error::ApiError;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use loopline_core::ErrorCode;
use serde_json::json;

const PREFIX: &str = "/api/3.0/mlflow/gateway";

const GUARDRAILS: &str = "MLflow's scorer guardrails are not offered by this server: guardrails (PII, secrets, prompt \
     injection, banned topics, input size) are set in the gateway's configuration file and run inside the gateway \
     (see docs/gateway.md, \"Guardrails\").";

/// Every route (method, path), for the permission table.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/3.0/mlflow/gateway/guardrails/list"),
    ("GET", "/api/3.0/mlflow/gateway/guardrails/list-for-endpoint"),
    ("GET", "/api/3.0/mlflow/gateway/guardrails/get"),
    ("POST", "/api/3.0/mlflow/gateway/guardrails/create"),
    ("DELETE", "/api/3.0/mlflow/gateway/guardrails/delete"),
    ("POST", "/api/3.0/mlflow/gateway/guardrails/add-to-endpoint"),
    ("DELETE", "/api/3.0/mlflow/gateway/guardrails/remove-from-endpoint"),
    ("PATCH", "/api/3.0/mlflow/gateway/guardrails/update-config"),
];

fn refused(message: &'static str) -> Response {
    ApiError::new(ErrorCode::InvalidParameterValue, message).into_response()
}

fn missing(what: &'static str, message: &'static str) -> Response {
    ApiError::new(ErrorCode::ResourceDoesNotExist, format!("{what} not found: {message}")).into_response()
}

/// The routes.
pub fn routes() -> Router {
    let at = |path: &str| format!("{PREFIX}{path}");
    Router::new()
        .route(
            &at("/guardrails/list"),
            get(|| async { axum::Json(json!({"guardrails": []})) }),
        )
        .route(
            &at("/guardrails/list-for-endpoint"),
            get(|| async { axum::Json(json!({"configs": []})) }),
        )
        .route(
            &at("/guardrails/get"),
            get(|| async { missing("GatewayGuardrail", GUARDRAILS) }),
        )
        .route(&at("/guardrails/create"), post(|| async { refused(GUARDRAILS) }))
        .route(&at("/guardrails/delete"), delete(|| async { refused(GUARDRAILS) }))
        .route(
            &at("/guardrails/add-to-endpoint"),
            post(|| async { refused(GUARDRAILS) }),
        )
        .route(
            &at("/guardrails/remove-from-endpoint"),
            delete(|| async { refused(GUARDRAILS) }),
        )
        .route(
            &at("/guardrails/update-config"),
            patch(|| async { refused(GUARDRAILS) }),
        )
}
