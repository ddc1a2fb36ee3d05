//! Trace endpoints used by `@mlflow.trace`: StartTraceV3, get, search, tags and deletion. Spans travel as
//! the `traces.json` artifact next to each trace.

use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, one_or_many};
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{NewTrace, PageRequest, Tag, TraceSearch};
use serde::Deserialize;
use serde_json::{Value, json};

/// The most tags, and the most metadata entries, one trace may carry.
const MAX_TRACE_ENTRIES: usize = 1_000;
/// The longest trace tag or metadata value.
const MAX_TRACE_VALUE_LENGTH: usize = 8_000;

/// Refuses a trace tag or metadata entry whose key or value is longer than a trace may hold.
fn check_trace_entry(field: &str, key: &str, value_length: usize) -> ApiResult<()> {
    let max_key = loopline_tracking::validation::MAX_KEY_LENGTH;
    if key.len() <= max_key && value_length <= MAX_TRACE_VALUE_LENGTH {
        return Ok(());
    }
    let shown: String = key.chars().take(100).collect();
    Err(ApiError::invalid(format!(
        "{field} entry '{shown}' is too long: keys may have {max_key} characters and values {MAX_TRACE_VALUE_LENGTH}"
    )))
}

/// Milliseconds since the epoch from an RFC 3339 UTC timestamp such as `2026-11-22T01:45:13.928Z`.
pub(crate) fn parse_timestamp_millis(text: &str) -> Option<i64> {
    let text = text.trim().strip_suffix('Z').unwrap_or(text.trim());
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|part| part.parse::<i64>());
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let time = time.split(['+']).next()?;
    let mut time_parts = time.splitn(3, ':');
    let hours: i64 = time_parts.next()?.parse().ok()?;
    let minutes: i64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = time_parts.next()?.parse().ok()?;
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 86_400 + hours * 3600 + minutes * 60) as f64 * 1000.0 + (seconds * 1000.0).round()) as i64)
}

/// Milliseconds from a proto Duration string such as `0.001s`.
pub(crate) fn parse_duration_millis(text: &str) -> Option<i64> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    Some((seconds * 1000.0).round() as i64)
}

/// A trace info's start (`request_time`), ms.
pub(crate) fn request_time_ms(info: &Value) -> Option<i64> {
    info.get("request_time")
        .and_then(Value::as_str)
        .and_then(parse_timestamp_millis)
}

/// A trace info's duration (`execution_duration`), ms.
pub(crate) fn execution_ms(info: &Value) -> Option<i64> {
    info.get("execution_duration")
        .and_then(Value::as_str)
        .and_then(parse_duration_millis)
}

#[derive(Deserialize)]
pub(super) struct StartRequest {
    trace: Option<Value>,
}

pub(super) async fn start(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<StartRequest>,
) -> JsonResult {
    let mut trace_info = request
        .trace
        .and_then(|trace| trace.get("trace_info").cloned())
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'trace.trace_info'."))?;
    let trace_id = trace_info
        .get("trace_id")
        .and_then(Value::as_str)
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-')
        })
        .ok_or_else(|| ApiError::invalid("Invalid value for parameter 'trace.trace_info.trace_id'."))?
        .to_string();
    let experiment_id = trace_info
        .pointer("/trace_location/mlflow_experiment/experiment_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'trace.trace_info.trace_location.mlflow_experiment.experiment_id'."))?
        .to_string();
    let experiment = state.tracking.store().get_experiment(&experiment_id).await?;
    crate::otlp::trace_stays_in(&state, &trace_id, &experiment.experiment_id).await?;
    let timestamp_ms = request_time_ms(&trace_info).unwrap_or_else(loopline_core::time::now_millis);
    let execution_time_ms = execution_ms(&trace_info).unwrap_or(0);
    let trace_state = trace_info
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("STATE_UNSPECIFIED")
        .to_string();
    let artifact_location = format!(
        "{}/traces/{trace_id}/artifacts",
        experiment.artifact_location.trim_end_matches('/')
    );
    let object = trace_info.as_object_mut().expect("checked to be an object above");
    // Each tag and metadata entry is a row the store rewrites as the trace changes: bounded like a run's.
    for field in ["tags", "trace_metadata"] {
        let Some(entries) = object.get(field).and_then(Value::as_object) else {
            continue;
        };
        if entries.len() > MAX_TRACE_ENTRIES {
            return Err(ApiError::invalid(format!(
                "a trace may carry at most {MAX_TRACE_ENTRIES} {field} entries, got {}",
                entries.len()
            )));
        }
        for (key, value) in entries {
            check_trace_entry(field, key, value.as_str().map_or(value.to_string().len(), str::len))?;
        }
    }
    let tags = object.entry("tags").or_insert_with(|| json!({}));
    if let Some(tags) = tags.as_object_mut() {
        tags.insert("mlflow.artifactLocation".to_string(), Value::String(artifact_location));
    }
    state
        .tracking
        .store()
        .start_trace(&NewTrace {
            trace_id: trace_id.clone(),
            experiment_id,
            timestamp_ms,
            execution_time_ms,
            state: trace_state,
            trace_info,
        })
        .await?;
    // As stored: spans already received over OTLP are named in its tags, so the client does not upload them
    // again as an artifact.
    let stored = state.tracking.store().get_trace_info(&trace_id).await?;
    single("trace", &json!({ "trace_info": stored }))
}

/// A trace with the spans kept in the store (none when its spans are the `traces.json` artifact).
async fn whole_trace(state: &AppState, trace_id: &str) -> ApiResult<Value> {
    let trace_info = state.tracking.store().get_trace_info(trace_id).await?;
    let spans = state.tracking.store().get_trace_spans(trace_id).await?;
    Ok(json!({ "trace_info": trace_info, "spans": spans }))
}

/// Whether a trace whose spans are kept here has them all: as many as the client counted
/// (`mlflow.trace.sizeStats`), or at least one when it did not count.
fn fully_exported(trace: &Value) -> bool {
    let info = &trace["trace_info"];
    if info.pointer("/tags/mlflow.trace.spansLocation").and_then(Value::as_str) != Some("TRACKING_STORE") {
        return true;
    }
    let held = trace["spans"].as_array().map_or(0, Vec::len) as u64;
    let expected = info
        .pointer("/trace_metadata/mlflow.trace.sizeStats")
        .and_then(Value::as_str)
        .and_then(|stats| serde_json::from_str::<Value>(stats).ok())
        .and_then(|stats| stats.get("num_spans").and_then(Value::as_u64));
    match expected {
        Some(expected) => held >= expected,
        None => held > 0,
    }
}

/// A trace as `traces/get` answers it: unless partial traces are asked for, one still missing spans is
/// waited for briefly (the client exports spans and the trace's end concurrently) and then refused, as MLflow.
async fn complete_trace(state: &AppState, trace_id: &str, allow_partial: bool) -> ApiResult<Value> {
    let mut trace = whole_trace(state, trace_id).await?;
    if allow_partial {
        return Ok(trace);
    }
    for pause_ms in [500, 1_000] {
        if fully_exported(&trace) {
            return Ok(trace);
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        trace = whole_trace(state, trace_id).await?;
    }
    if fully_exported(&trace) {
        return Ok(trace);
    }
    Err(ApiError::new(
        loopline_core::ErrorCode::ResourceDoesNotExist,
        format!("Trace with ID {trace_id} is not fully exported yet, please try again later."),
    ))
}

pub(super) async fn get(State(state): State<AppState>, Path(trace_id): Path<String>) -> JsonResult {
    single("trace", &whole_trace(&state, &trace_id).await?)
}

#[derive(Deserialize)]
pub(super) struct GetQuery {
    trace_id: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::lenient_bool")]
    allow_partial: Option<bool>,
}

pub(super) async fn get_by_query(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<GetQuery>,
) -> JsonResult {
    let trace_id = required(&request.trace_id, "trace_id")?;
    let trace = complete_trace(&state, trace_id, request.allow_partial.unwrap_or(false)).await?;
    single("trace", &trace)
}

#[derive(Deserialize)]
pub(super) struct BatchGetQuery {
    #[serde(default, deserialize_with = "one_or_many")]
    trace_ids: Vec<String>,
}

pub(super) async fn batch_get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<BatchGetQuery>,
) -> JsonResult {
    if request.trace_ids.len() > MAX_TRACE_ENTRIES {
        return Err(ApiError::invalid(format!(
            "at most {MAX_TRACE_ENTRIES} traces can be fetched at once, got {}",
            request.trace_ids.len()
        )));
    }
    let mut traces = Vec::with_capacity(request.trace_ids.len());
    for trace_id in &request.trace_ids {
        // As MLflow: traces that do not exist or still miss spans are left out, not an error.
        match whole_trace(&state, trace_id).await {
            Ok(trace) if fully_exported(&trace) => traces.push(trace),
            Ok(_) => {}
            Err(error) if error.code == loopline_core::ErrorCode::ResourceDoesNotExist => {}
            Err(error) => return Err(error),
        }
    }
    page_response("traces", &traces, None)
}

#[derive(Deserialize)]
pub(super) struct BatchInfosRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    trace_ids: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
}

/// Trace infos without spans (the client asks first, to learn where each trace's spans are); unknown ids,
/// and traces outside the experiments named, are left out.
pub(super) async fn batch_get_infos(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<BatchInfosRequest>,
) -> JsonResult {
    if request.trace_ids.len() > MAX_TRACE_ENTRIES {
        return Err(ApiError::invalid(format!(
            "at most {MAX_TRACE_ENTRIES} traces can be fetched at once, got {}",
            request.trace_ids.len()
        )));
    }
    let mut infos = Vec::with_capacity(request.trace_ids.len());
    for trace_id in &request.trace_ids {
        let info = match state.tracking.store().get_trace_info(trace_id).await {
            Ok(info) => info,
            Err(loopline_metadata_store::StoreError::NotFound(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        let experiment = info
            .pointer("/trace_location/mlflow_experiment/experiment_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if request.experiment_ids.is_empty() || request.experiment_ids.iter().any(|id| id == experiment) {
            infos.push(info);
        }
    }
    single("trace_infos", &infos)
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default)]
    locations: Vec<Value>,
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

fn experiment_ids_of(request: &SearchRequest) -> Vec<String> {
    let mut experiment_ids = request.experiment_ids.clone();
    for location in &request.locations {
        if let Some(experiment_id) = location
            .pointer("/mlflow_experiment/experiment_id")
            .and_then(Value::as_str)
        {
            experiment_ids.push(experiment_id.to_string());
        }
    }
    experiment_ids
}

pub(super) async fn search(
    State(state): State<AppState>,
    viewer: crate::access::visibility::Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let max_results = super::page_size(request.max_results, 100)?;
    let asked = experiment_ids_of(&request);
    let experiment_ids = viewer.narrow("experiment", asked.clone());
    if !asked.is_empty() && experiment_ids.is_empty() {
        return page_response::<Value>("traces", &[], None);
    }
    let search = TraceSearch {
        experiment_ids,
        filter: request.filter,
        order_by: request.order_by,
        page: PageRequest {
            max_results,
            page_token: request.page_token,
        },
    };
    let page = state.tracking.store().search_traces(&search).await?;
    page_response("traces", &page.items, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct TagRequest {
    key: Option<String>,
    value: Option<String>,
}

fn tag_of(request: &TagRequest) -> ApiResult<Tag> {
    let key = required(&request.key, "key")?;
    Ok(Tag::new(key, request.value.clone().unwrap_or_default()))
}

/// Tags the server keeps itself: where a trace's spans are (a client changing it would lose them), and its
/// archive. An archival failure may be cleared.
fn refuse_immutable(key: &str, setting: bool) -> ApiResult<()> {
    let immutable = match key {
        "mlflow.trace.spansLocation" | "mlflow.trace.archiveLocation" => true,
        "mlflow.trace.archivalFailure" => setting,
        _ => false,
    };
    if immutable {
        return Err(ApiError::invalid(format!(
            "Tag '{key}' is immutable and cannot be set on a trace."
        )));
    }
    Ok(())
}

pub(super) async fn set_tag(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let tag = tag_of(&request)?;
    refuse_immutable(&tag.key, true)?;
    check_trace_entry("tags", &tag.key, tag.value.len())?;
    // The same bound as at the trace's start, so tags added one at a time cannot grow it past it either.
    let trace_info = state.tracking.store().get_trace_info(&trace_id).await?;
    let tags = trace_info.get("tags").and_then(Value::as_object);
    let count = tags.map_or(0, |tags| tags.len());
    let replaces = tags.is_some_and(|tags| tags.contains_key(&tag.key));
    if count >= MAX_TRACE_ENTRIES && !replaces {
        return Err(ApiError::invalid(format!(
            "trace '{trace_id}' already carries {count} tags, the most a trace may"
        )));
    }
    state.tracking.store().set_trace_tag(&trace_id, &tag).await?;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let key = required(&request.key, "key")?;
    refuse_immutable(key, false)?;
    state.tracking.store().delete_trace_tag(&trace_id, key).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct LinkRequest {
    trace_ids: Option<Value>,
    run_id: Option<String>,
}

/// Links traces to a run (`mlflow.genai.evaluate` links the traces it scores to its run).
pub(super) async fn link_to_run(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LinkRequest>,
) -> JsonResult {
    let run_id = required(&request.run_id, "run_id")?;
    // As MLflow: a list of strings, required.
    let trace_ids: Vec<String> = match &request.trace_ids {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::invalid("Invalid value for parameter 'trace_ids': expected a list of strings"))?,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value for parameter 'trace_ids': expected a list of strings",
            ));
        }
        None => return Err(ApiError::invalid("Missing value for required parameter 'trace_ids'.")),
    };
    state.tracking.store().link_traces_to_run(&trace_ids, run_id).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct LinkPromptsRequest {
    trace_id: Option<String>,
    #[serde(default)]
    prompt_versions: Vec<Value>,
}

/// The tag listing the prompt versions a trace used (the client's own format: `[{"name", "version"}]`).
const LINKED_PROMPTS_TAG: &str = "mlflow.linkedPrompts";

/// Records which prompt versions a trace used (the exporter sends this after a trace that loaded prompts).
pub(super) async fn link_prompts(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LinkPromptsRequest>,
) -> JsonResult {
    let trace_id = required(&request.trace_id, "trace_id")?;
    if request.prompt_versions.len() > MAX_TRACE_ENTRIES {
        return Err(ApiError::invalid(format!(
            "at most {MAX_TRACE_ENTRIES} prompt versions can be linked at once"
        )));
    }
    let mut added = Vec::new();
    for entry in &request.prompt_versions {
        let name = entry.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        let version = entry.get("version").and_then(|v| match v {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        });
        let (Some(name), Some(version)) = (name, version) else {
            return Err(ApiError::invalid(
                "Invalid value for parameter 'prompt_versions': each needs a name and a version",
            ));
        };
        added.push(json!({"name": name, "version": version}));
    }
    let info = state.tracking.store().get_trace_info(trace_id).await?;
    let mut linked: Vec<Value> = info
        .get("tags")
        .and_then(|tags| tags.get(LINKED_PROMPTS_TAG))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for entry in added {
        if !linked.contains(&entry) {
            linked.push(entry);
        }
    }
    let value = Value::Array(linked).to_string();
    check_trace_entry("tags", LINKED_PROMPTS_TAG, value.len())?;
    state
        .tracking
        .store()
        .set_trace_tag(trace_id, &Tag::new(LINKED_PROMPTS_TAG, value))
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct DeleteRequest {
    experiment_id: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    request_ids: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    trace_ids: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_timestamp_millis: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_traces: Option<i64>,
}

pub(super) async fn delete_traces(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<DeleteRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let mut trace_ids = request.request_ids.clone();
    trace_ids.extend(request.trace_ids.iter().cloned());
    let deleted = state
        .tracking
        .store()
        .delete_traces(
            experiment_id,
            &trace_ids,
            request.max_timestamp_millis,
            request.max_traces,
        )
        .await?;
    single("traces_deleted", &deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_timestamps_and_durations_parse() {
        assert_eq!(parse_timestamp_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_timestamp_millis("2026-11-22T01:45:13.928Z"),
            Some(1_795_311_913_928)
        );
        assert_eq!(parse_duration_millis("0.001s"), Some(1));
        assert_eq!(parse_timestamp_millis("garbage"), None);
    }
}
