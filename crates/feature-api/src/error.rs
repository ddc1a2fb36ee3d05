//! Errors in the shape of the API that was called: Feast's routes answer as Feast's feature server does (a
//! JSON string holding `{"module", "class", "message"}`, or FastAPI's 422 `{"detail": [...]}` for a body
//! that is not the request), Loopline's own routes with `{error_code, message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure of a feature-store request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Feast's exception class name for it.
    pub class: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// A request that cannot be served as asked.
    pub fn bad_request(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            class: "FeastError",
            message,
        }
    }

    /// A named object that does not exist.
    pub fn not_found(class: &'static str, message: String) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            class,
            message,
        }
    }

    /// A change that lost a race, or work already running.
    pub fn conflict(message: String) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            class: "FeastError",
            message,
        }
    }

    /// A failure of the server or a store it depends on.
    pub fn internal(message: String) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            class: "FeastError",
            message,
        }
    }

    /// A failure of the metadata store.
    pub fn store(error: loopline_metadata_store::StoreError) -> ApiError {
        ApiError::internal(format!("metadata store: {error}"))
    }

    /// From the feature library's errors: unknown names are 404s, collisions and bad input 400s.
    pub fn from_features(error: loopline_features::FeatureError) -> ApiError {
        use loopline_features::FeatureError as E;
        match &error {
            E::UnknownFeature(message) => {
                let class = if message.contains("feature service") {
                    "FeatureServiceNotFoundException"
                } else {
                    "FeatureViewNotFoundException"
                };
                ApiError::not_found(class, message.clone())
            }
            E::NameCollision { .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                class: "FeatureNameCollisionError",
                message: error.to_string(),
            },
            E::Io { .. } => ApiError::internal(error.to_string()),
            _ => ApiError::bad_request(error.to_string()),
        }
    }

    /// Feast's shape.
    pub fn feast(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(message = %self.message, "feature store request failed");
        }
        let detail = json!({"module": "feast.errors", "class": self.class, "message": self.message}).to_string();
        (self.status, axum::Json(serde_json::Value::String(detail))).into_response()
    }

    /// Loopline's own shape.
    pub fn native(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(message = %self.message, "feature store request failed");
        }
        let code = match self.status {
            StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
            StatusCode::CONFLICT => "RESOURCE_CONFLICT",
            s if s.is_client_error() => "INVALID_PARAMETER_VALUE",
            _ => "INTERNAL_ERROR",
        };
        (
            self.status,
            axum::Json(json!({"error_code": code, "message": self.message})),
        )
            .into_response()
    }
}

/// FastAPI's answer to a body that is not the request: 422 with `detail`.
pub fn unprocessable(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": [{"type": "value_error", "loc": ["body"], "msg": message, "input": null}]})),
    )
        .into_response()
}
