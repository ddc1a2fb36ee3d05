//! OTLP/HTTP trace ingest (`POST /v1/traces`), as MLflow 3's server takes it: OpenTelemetry exporters and the
//! mlflow client's `log_spans` send spans here, with the experiment in the `x-mlflow-experiment-id` header.
//! Spans are kept in the metadata store beside their trace, which is created from them or updated, and served
//! back by `traces/get` and `traces/batchGet` (the trace carries `mlflow.trace.spansLocation: TRACKING_STORE`).
//! Bodies are protobuf or JSON, plain, gzip or deflate; errors are `google.rpc.Status` in the request's own
//! encoding, with MLflow's status codes (422 for a missing header or a span that cannot be converted).

mod genai;
pub mod messages;
mod spans;

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopline_core::time::rfc3339_millis;
use loopline_metadata_store::{NewTrace, SpanBatch};
use messages::{ExportTraceServiceRequest, RpcStatus};
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;

/// The header naming the experiment the spans belong to.
pub const EXPERIMENT_HEADER: &str = "x-mlflow-experiment-id";
/// The largest body once decompressed.
const MAX_DECOMPRESSED_BYTES: u64 = 32 << 20;
/// The most spans one request may carry.
const MAX_SPANS_PER_REQUEST: usize = 50_000;

/// How the request is encoded, and so the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// An OTLP error answer: `google.rpc.Status` with gRPC's code for the kind of failure.
fn failure(encoding: Encoding, status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => 5,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        status if status.is_server_error() => 13,
        _ => 3,
    };
    let message = message.into();
    match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message }.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
    }
}

/// `POST /v1/traces`.
pub async fn export(State(state): State<AppState>, request: Request) -> Response {
    let headers = request.headers().clone();
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let encoding = match media_type.as_deref() {
        Some("application/x-protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        other => {
            return failure(
                Encoding::Json,
                StatusCode::BAD_REQUEST,
                format!(
                    "Invalid Content-Type: {}. Expected: application/x-protobuf or application/json",
                    other.unwrap_or("none")
                ),
            );
        }
    };
    let Some(experiment_id) = experiment_of(&headers) else {
        return failure(
            encoding,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the {EXPERIMENT_HEADER} header naming the experiment is required"),
        );
    };
    let body = match crate::extract::read_body_limited(request.into_body(), state.limits.max_json_body_bytes).await {
        Ok(body) => body,
        Err(error) => return failure(encoding, crate::error::status_for(error.code), error.message),
    };
    let body = match decompress(&headers, body) {
        Ok(body) => body,
        Err((status, message)) => return failure(encoding, status, message),
    };
    let parsed = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|value| messages::from_json(&value)),
    };
    let parsed = match parsed {
        Ok(parsed) if parsed.resource_spans.is_empty() => {
            return failure(
                encoding,
                StatusCode::BAD_REQUEST,
                "Invalid OpenTelemetry format - no spans found",
            );
        }
        Ok(parsed) => parsed,
        Err(reason) => {
            return failure(
                encoding,
                StatusCode::BAD_REQUEST,
                format!("Invalid OpenTelemetry format: {reason}"),
            );
        }
    };
    let converted = match spans::convert(&parsed, MAX_SPANS_PER_REQUEST) {
        Ok(converted) => converted,
        Err(reason) => {
            return failure(
                encoding,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Cannot convert OpenTelemetry span to MLflow span: {reason}"),
            );
        }
    };
    let experiment = match state.tracking.store().get_experiment(&experiment_id).await {
        Ok(experiment) => experiment,
        Err(_) => {
            return failure(
                encoding,
                StatusCode::NOT_FOUND,
                format!("No experiment with id {experiment_id} exists; name one in the {EXPERIMENT_HEADER} header"),
            );
        }
    };
    if experiment.lifecycle_stage != "active" {
        return failure(
            encoding,
            StatusCode::BAD_REQUEST,
            format!("Experiment {experiment_id} is deleted; restore it or send traces to another experiment"),
        );
    }
    let traces = group_by_trace(converted);
    for trace_id in traces.keys() {
        if let Err(error) = trace_stays_in(&state, trace_id, &experiment.experiment_id).await {
            return failure(encoding, crate::error::status_for(error.code), error.message);
        }
    }
    // All traces of the request in one transaction: a request is kept whole or not at all.
    let batches: Vec<SpanBatch> = traces
        .into_iter()
        .map(|(trace_id, trace)| trace.into_batch(&trace_id, &experiment.experiment_id, &experiment.artifact_location))
        .collect();
    if let Err(error) = state.tracking.store().log_spans(batches).await {
        let error = crate::error::ApiError::from(error);
        let status = crate::error::status_for(error.code);
        let message = if status.is_server_error() {
            tracing::error!(message = %error.message, "storing OTLP spans failed");
            loopline_core::redact::redact_server_paths(&error.message)
        } else {
            error.message
        };
        return failure(encoding, status, message);
    }
    match encoding {
        // An empty ExportTraceServiceResponse: no bytes.
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::new(),
        )
            .into_response(),
        Encoding::Json => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
    }
}

/// Spans made inside this server, converted as if they had come over OTLP and grouped into their traces in
/// `experiment`: the work before the store (all computation, no waiting).
pub(crate) fn span_batches(
    experiment: &loopline_metadata_store::Experiment,
    request: &ExportTraceServiceRequest,
) -> Result<Vec<SpanBatch>, String> {
    let converted = spans::convert(request, MAX_SPANS_PER_REQUEST)?;
    Ok(group_by_trace(converted)
        .into_iter()
        .map(|(trace_id, trace)| trace.into_batch(&trace_id, &experiment.experiment_id, &experiment.artifact_location))
        .collect())
}

/// Refuses to add to a trace that belongs to another experiment: its spans and info stay where they are
/// (and whoever may write to one experiment cannot write into another's traces by naming their ids).
pub(crate) async fn trace_stays_in(
    state: &AppState,
    trace_id: &str,
    experiment_id: &str,
) -> Result<(), crate::error::ApiError> {
    use loopline_metadata_store::Owned;
    match state.tracking.store().owner_of(Owned::Trace, trace_id).await? {
        Some(owner) if owner != experiment_id => Err(crate::error::ApiError::new(
            loopline_core::ErrorCode::InvalidState,
            format!("Trace {trace_id} belongs to another experiment; a trace cannot move between experiments."),
        )),
        _ => Ok(()),
    }
}

fn experiment_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(EXPERIMENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// The body, inflated as its `Content-Encoding` says, never past [`MAX_DECOMPRESSED_BYTES`].
fn decompress(headers: &HeaderMap, body: axum::body::Bytes) -> Result<Vec<u8>, (StatusCode, String)> {
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let reader: Box<dyn Read> = match coding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(body))),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(std::io::Cursor::new(body))),
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Unsupported Content-Encoding '{other}': use gzip, deflate or none"),
            ));
        }
    };
    let mut inflated = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the {coding} body could not be decompressed: {e}"),
            )
        })?;
    if inflated.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the decompressed body is larger than {MAX_DECOMPRESSED_BYTES} bytes"),
        ));
    }
    Ok(inflated)
}

/// The spans of one trace in a request, and what they say about it.
#[derive(Default)]
struct TraceSpans {
    spans: Vec<spans::Converted>,
}

fn group_by_trace(converted: Vec<spans::Converted>) -> BTreeMap<String, TraceSpans> {
    let mut traces: BTreeMap<String, TraceSpans> = BTreeMap::new();
    for span in converted {
        traces.entry(span.span.trace_id.clone()).or_default().spans.push(span);
    }
    traces
}

impl TraceSpans {
    fn into_batch(self, trace_id: &str, experiment_id: &str, artifact_root: &str) -> SpanBatch {
        let start_ms = self.spans.iter().map(|s| s.start_ns / 1_000_000).min().unwrap_or(0);
        let end_ms = self
            .spans
            .iter()
            .filter(|s| s.end_ns > 0)
            .map(|s| s.end_ns / 1_000_000)
            .max();
        let root = self.spans.iter().find(|s| s.root);
        let root_state = root.map(|root| if root.error { "ERROR" } else { "OK" }.to_string());
        let mut tags = serde_json::Map::new();
        tags.insert(
            "mlflow.artifactLocation".into(),
            Value::String(format!(
                "{}/traces/{trace_id}/artifacts",
                artifact_root.trim_end_matches('/')
            )),
        );
        tags.insert(
            "mlflow.trace.spansLocation".into(),
            Value::String("TRACKING_STORE".into()),
        );
        let mut metadata = serde_json::Map::new();
        metadata.insert("mlflow.trace_schema.version".into(), Value::String("3".into()));
        if let Some(root) = root {
            tags.insert("mlflow.traceName".into(), Value::String(root.name.clone()));
            for (key, preview) in [
                ("mlflow.traceInputs", &root.inputs),
                ("mlflow.traceOutputs", &root.outputs),
            ] {
                if let Some(preview) = preview {
                    metadata.insert(key.into(), Value::String(preview.clone()));
                }
            }
        }
        // The first session and user a span names (a trace that has them keeps its own).
        for (key, value) in [
            (
                "mlflow.trace.session",
                self.spans.iter().find_map(|s| s.session.clone()),
            ),
            ("mlflow.trace.user", self.spans.iter().find_map(|s| s.user.clone())),
        ] {
            if let Some(value) = value {
                metadata.insert(key.into(), Value::String(value));
            }
        }
        let state = root_state.clone().unwrap_or_else(|| "IN_PROGRESS".to_string());
        let execution_ms = end_ms.map_or(0, |end| (end - start_ms).max(0));
        let trace_info = json!({
            "trace_id": trace_id,
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
            "request_time": rfc3339_millis(start_ms),
            "execution_duration": format!("{}.{:03}s", execution_ms / 1000, execution_ms % 1000),
            "state": state,
            "trace_metadata": metadata,
            "tags": tags,
        });
        let mut trace_info = trace_info;
        if let Some(root) = root {
            for (field, preview) in [
                ("request_preview", &root.request_preview),
                ("response_preview", &root.response_preview),
            ] {
                if let Some(preview) = preview {
                    trace_info[field] = Value::String(preview.clone());
                }
            }
        }
        SpanBatch {
            trace: NewTrace {
                trace_id: trace_id.to_string(),
                experiment_id: experiment_id.to_string(),
                timestamp_ms: start_ms,
                execution_time_ms: execution_ms,
                state,
                trace_info,
            },
            end_ms,
            root_state,
            spans: self.spans.into_iter().map(|s| s.span).collect(),
        }
    }
}
