//! MLflow's legacy (v2) trace API, still served by MLflow 3 for older clients: `POST /api/2.0/mlflow/traces`
//! (StartTrace), `PATCH .../traces/{request_id}` (EndTrace), `GET .../traces/{request_id}/info` and
//! `GET .../traces` (SearchTraces). Traces are stored once, in the v3 shape; this module translates.

use super::traces::{execution_ms, request_time_ms};
use super::{JsonResult, page_response, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, one_or_many};
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_core::time::rfc3339_millis;
use loopline_metadata_store::{NewTrace, PageRequest, TraceSearch};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The most metadata entries and tags a v2 call may carry (as the v3 start).
const MAX_ENTRIES: usize = 1_000;

/// v2's `[{key, value}]` lists as a map.
fn entries(list: &[Value], field: &str) -> ApiResult<Map<String, Value>> {
    if list.len() > MAX_ENTRIES {
        return Err(ApiError::invalid(format!(
            "a trace may carry at most {MAX_ENTRIES} {field} entries, got {}",
            list.len()
        )));
    }
    let mut map = Map::new();
    for entry in list {
        let key = entry
            .get("key")
            .and_then(Value::as_str)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::invalid(format!("Missing value for required parameter '{field}.key'.")))?;
        let value = entry.get("value").and_then(Value::as_str).unwrap_or_default();
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(map)
}

fn as_list(map: Option<&Value>) -> Value {
    Value::Array(
        map.and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .map(|(key, value)| json!({"key": key, "value": value.as_str().unwrap_or_default()}))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// A stored (v3) trace info in the v2 shape.
pub(super) fn v2_info(info: &Value) -> Value {
    let timestamp_ms = request_time_ms(info).unwrap_or(0);
    let execution_time_ms = execution_ms(info).unwrap_or(0);
    let status = match info.get("state").and_then(Value::as_str).unwrap_or_default() {
        "OK" => "OK",
        "ERROR" => "ERROR",
        "IN_PROGRESS" => "IN_PROGRESS",
        _ => "TRACE_STATUS_UNSPECIFIED",
    };
    json!({
        "request_id": info.get("trace_id").cloned().unwrap_or(Value::Null),
        "experiment_id": info.pointer("/trace_location/mlflow_experiment/experiment_id").cloned().unwrap_or(Value::Null),
        "timestamp_ms": timestamp_ms.to_string(),
        "execution_time_ms": execution_time_ms.to_string(),
        "status": status,
        "request_metadata": as_list(info.get("trace_metadata")),
        "tags": as_list(info.get("tags")),
    })
}

#[derive(Deserialize)]
pub(super) struct StartRequest {
    experiment_id: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    timestamp_ms: Option<i64>,
    #[serde(default)]
    request_metadata: Vec<Value>,
    #[serde(default)]
    tags: Vec<Value>,
}

/// StartTrace (v2): a new trace, in progress, with an id of the server's choosing.
pub(super) async fn start(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<StartRequest>,
) -> JsonResult {
    let experiment_id = super::required(&request.experiment_id, "experiment_id")?.to_string();
    let experiment = state.tracking.store().get_experiment(&experiment_id).await?;
    let timestamp_ms = request.timestamp_ms.unwrap_or_else(loopline_core::time::now_millis);
    // v2 ids are 32 hex characters, as run ids are.
    let request_id = loopline_core::ids::new_run_id();
    let mut tags = entries(&request.tags, "tags")?;
    tags.insert(
        "mlflow.artifactLocation".into(),
        Value::String(format!(
            "{}/traces/{request_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        )),
    );
    let info = json!({
        "trace_id": request_id,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
        "request_time": rfc3339_millis(timestamp_ms),
        "execution_duration": "0s",
        "state": "IN_PROGRESS",
        "trace_metadata": entries(&request.request_metadata, "request_metadata")?,
        "tags": tags,
    });
    state
        .tracking
        .store()
        .start_trace(&NewTrace {
            trace_id: request_id.clone(),
            experiment_id,
            timestamp_ms,
            execution_time_ms: 0,
            state: "IN_PROGRESS".into(),
            trace_info: info.clone(),
        })
        .await?;
    single("trace_info", &v2_info(&info))
}

#[derive(Deserialize)]
pub(super) struct EndRequest {
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    timestamp_ms: Option<i64>,
    status: Option<String>,
    #[serde(default)]
    request_metadata: Vec<Value>,
    #[serde(default)]
    tags: Vec<Value>,
}

/// EndTrace (v2): the end time and status, and more metadata and tags.
pub(super) async fn end(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    MlflowMessage(request): MlflowMessage<EndRequest>,
) -> JsonResult {
    let status = match request.status.as_deref() {
        Some("OK") => "OK",
        Some("ERROR") => "ERROR",
        Some("IN_PROGRESS") => "IN_PROGRESS",
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid value '{other}' for parameter 'status': use OK, ERROR or IN_PROGRESS"
            )));
        }
        None => return Err(ApiError::invalid("Missing value for required parameter 'status'.")),
    };
    let end_ms = request
        .timestamp_ms
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'timestamp_ms'."))?;
    let mut info = state.tracking.store().get_trace_info(&request_id).await?;
    let start_ms = request_time_ms(&info).unwrap_or(end_ms);
    let execution_ms = (end_ms - start_ms).max(0);
    let metadata = entries(&request.request_metadata, "request_metadata")?;
    let tags = entries(&request.tags, "tags")?;
    let experiment_id = info
        .pointer("/trace_location/mlflow_experiment/experiment_id")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let object = info
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid(format!("trace '{request_id}' is not stored as an object")))?;
    for (field, added) in [("trace_metadata", metadata), ("tags", tags)] {
        let known = object.entry(field).or_insert_with(|| json!({}));
        if let Some(known) = known.as_object_mut() {
            known.extend(added);
            if known.len() > MAX_ENTRIES {
                return Err(ApiError::invalid(format!(
                    "a trace may carry at most {MAX_ENTRIES} {field} entries"
                )));
            }
        }
    }
    object.insert("state".into(), Value::String(status.into()));
    object.insert(
        "execution_duration".into(),
        Value::String(format!("{}.{:03}s", execution_ms / 1000, execution_ms % 1000)),
    );
    state
        .tracking
        .store()
        .start_trace(&NewTrace {
            trace_id: request_id,
            experiment_id,
            timestamp_ms: start_ms,
            execution_time_ms: execution_ms,
            state: status.into(),
            trace_info: info.clone(),
        })
        .await?;
    single("trace_info", &v2_info(&info))
}

/// GetTraceInfo (v2).
pub(super) async fn info(State(state): State<AppState>, Path(request_id): Path<String>) -> JsonResult {
    let info = state.tracking.store().get_trace_info(&request_id).await?;
    single("trace_info", &v2_info(&info))
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// SearchTraces (v2): as the v3 search, each trace in the v2 shape.
pub(super) async fn search(
    State(state): State<AppState>,
    viewer: crate::access::visibility::Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let asked = !request.experiment_ids.is_empty();
    let experiment_ids = viewer.narrow("experiment", request.experiment_ids);
    if asked && experiment_ids.is_empty() {
        return page_response::<Value>("traces", &[], None);
    }
    let search = TraceSearch {
        experiment_ids,
        filter: request.filter,
        order_by: request.order_by,
        page: PageRequest {
            max_results: super::page_size(request.max_results, 100)?,
            page_token: request.page_token,
        },
    };
    let page = state.tracking.store().search_traces(&search).await?;
    let traces: Vec<Value> = page.items.iter().map(v2_info).collect();
    page_response("traces", &traces, page.next_page_token)
}
