//! Qdrant's response envelope and error shape, and reading a JSON body.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopline_vector_index::{OperationError, SegmentError, StorageError};
use serde_json::{Value, json};
use std::time::Instant;

/// An error in Qdrant's shape: `{"status": {"error": message}, "time": ...}` with its status code.
#[derive(Debug)]
pub struct QdrantError {
    /// The status code.
    pub status: StatusCode,
    /// The message, beginning as Qdrant's do ("Not found: ...", "Wrong input: ...").
    pub message: String,
}

impl QdrantError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        QdrantError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn format(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Format error in JSON body: {message}"))
    }
    pub(crate) fn wrong_input(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Wrong input: {message}"))
    }
    pub(crate) fn no_collection(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Not found: Collection `{name}` doesn't exist!"),
        )
    }
    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {message}"),
        )
    }
}

impl From<SegmentError> for QdrantError {
    fn from(error: SegmentError) -> Self {
        match &error {
            SegmentError::WrongDimension { field, expected, got } => QdrantError::wrong_input(format!(
                "Vector dimension error: expected dim: {expected}, got {got} (at {field})"
            )),
            SegmentError::Storage { .. } => QdrantError::internal(error),
            _ => QdrantError::wrong_input(error),
        }
    }
}

impl From<OperationError> for QdrantError {
    fn from(error: OperationError) -> Self {
        match error {
            OperationError::Points(points) => points.into(),
            OperationError::NoPoint(id) => {
                QdrantError::new(StatusCode::NOT_FOUND, format!("Not found: No point with id {id} found"))
            }
            OperationError::BadKey(message) => QdrantError::wrong_input(message),
        }
    }
}

impl From<StorageError> for QdrantError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Refused(refused) => refused.into(),
            other => {
                tracing::error!(error = %other, "a vector collection could not be written");
                QdrantError::internal(other)
            }
        }
    }
}

impl IntoResponse for QdrantError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"status": {"error": self.message}, "time": 0.0})),
        )
            .into_response()
    }
}

/// Largest answer sent (a small request can name many points with large payloads).
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A successful answer: `{"result": ..., "status": "ok", "time": seconds}`, or a 400 when it would pass
/// [`MAX_RESPONSE_BYTES`].
pub(crate) fn ok(result: Value, started: Instant) -> Response {
    let answer = json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()});
    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
    if bytes.len() > MAX_RESPONSE_BYTES {
        return QdrantError::format(format!(
            "the answer would be {} bytes, more than {MAX_RESPONSE_BYTES}: ask for fewer points, fewer payload keys \
             or no vectors",
            bytes.len()
        ))
        .into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Reads a request body as a JSON object (an empty body is an empty object), refusing one larger than
/// [`crate::MAX_BODY_BYTES`] before reading past the limit.
pub(crate) async fn read(body: axum::body::Body) -> Result<serde_json::Map<String, Value>, QdrantError> {
    let limit = crate::MAX_BODY_BYTES;
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    let too_large = || {
        QdrantError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload error: the request body is larger than the limit of {limit} bytes"),
        )
    };
    if declared > limit as u64 {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    self::body(&bytes)
}

/// The body as a JSON object (an empty body is an empty object).
pub(crate) fn body(bytes: &Bytes) -> Result<serde_json::Map<String, Value>, QdrantError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(QdrantError::format("the body is not a JSON object")),
        Err(error) => Err(QdrantError::format(error)),
    }
}

/// Runs collection work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, QdrantError> + Send + 'static,
) -> Result<T, QdrantError> {
    tokio::task::spawn_blocking(work).await.map_err(QdrantError::internal)?
}
