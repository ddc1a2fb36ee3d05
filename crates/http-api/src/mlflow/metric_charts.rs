//! `metrics/get-history-bulk-interval`: the points the UI's charts draw for several runs at once, sampled by
//! step in the store (MLflow's request checks and messages).

use super::JsonResult;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{MlflowMessage, one_or_many};
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

/// The most runs one request may chart (MLflow's `MAX_RUNS_GET_METRIC_HISTORY_BULK`).
const MAX_RUNS: usize = 100;
/// The most steps sampled per request (MLflow's `MAX_RESULTS_PER_RUN`).
const MAX_STEPS: i64 = 2_500;

#[derive(Deserialize)]
pub(super) struct IntervalRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    run_ids: Vec<String>,
    metric_key: Option<String>,
    start_step: Option<Value>,
    end_step: Option<Value>,
    max_results: Option<Value>,
}

/// An integer parameter sent as a number or as query text.
fn integer(value: &Option<Value>, field: &str) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) if number.is_i64() => Ok(number.as_i64()),
        Some(Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("Invalid value {text:?} for parameter '{field}' supplied."))),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid value {other} for parameter '{field}' supplied."
        ))),
    }
}

pub(super) async fn bulk_interval(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<IntervalRequest>,
) -> JsonResult {
    if request.run_ids.is_empty() {
        return Err(ApiError::invalid("Missing value for required parameter 'run_ids'."));
    }
    if request.run_ids.len() > MAX_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS} run_ids. Received {} run_ids.",
            request.run_ids.len()
        )));
    }
    let key = request
        .metric_key
        .as_deref()
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'metric_key'."))?;
    let max_results = integer(&request.max_results, "max_results")?.unwrap_or(MAX_STEPS);
    if !(1..=MAX_STEPS).contains(&max_results) {
        return Err(ApiError::invalid(format!(
            "max_results must be between 1 and {MAX_STEPS}."
        )));
    }
    let range = match (
        integer(&request.start_step, "start_step")?,
        integer(&request.end_step, "end_step")?,
    ) {
        (Some(start), Some(end)) if start > end => {
            return Err(ApiError::invalid(format!(
                "end_step must be greater than start_step. Found start_step={start} and end_step={end}."
            )));
        }
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "If either start step or end step are specified, both must be specified.",
            ));
        }
    };
    let points = state
        .tracking
        .store()
        .metric_history_sampled(&request.run_ids, key, max_results as usize, range)
        .await?;
    super::page_response("metrics", &points, None)
}

#[derive(Deserialize)]
pub(super) struct BulkRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    run_id: Vec<String>,
    metric_key: Option<String>,
    max_results: Option<Value>,
}

/// The most points one bulk history answers (MLflow's `MAX_RESULTS_GET_METRIC_HISTORY`).
const MAX_BULK_POINTS: i64 = 25_000;

/// `metrics/get-history-bulk`: the whole history of one metric for several runs, ordered by run, then step,
/// timestamp and value, at most `max_results` points in all (MLflow's older chart route).
pub(super) async fn bulk(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<BulkRequest>,
) -> JsonResult {
    if request.run_id.is_empty() {
        return Err(ApiError::invalid(
            "GetMetricHistoryBulk request must specify at least one run_id.",
        ));
    }
    if request.run_id.len() > MAX_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulk request cannot specify more than {MAX_RUNS} run_ids. Received {} run_ids.",
            request.run_id.len()
        )));
    }
    let key = request
        .metric_key
        .as_deref()
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::invalid("GetMetricHistoryBulk request must specify a metric_key."))?;
    let mut remaining = integer(&request.max_results, "max_results")?
        .unwrap_or(MAX_BULK_POINTS)
        .clamp(0, MAX_BULK_POINTS) as u64;
    let mut run_ids = request.run_id.clone();
    run_ids.sort();
    run_ids.dedup();
    let mut points = Vec::new();
    for run_id in &run_ids {
        if remaining == 0 {
            break;
        }
        let page = loopline_metadata_store::PageRequest {
            max_results: remaining,
            page_token: None,
        };
        let history = match state.tracking.store().metric_history(run_id, key, &page).await {
            Ok(history) => history.items,
            Err(loopline_metadata_store::StoreError::NotFound(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        remaining -= history.len() as u64;
        points.extend(history.into_iter().map(|mut point| {
            point.run_id = Some(run_id.clone());
            point
        }));
    }
    super::page_response("metrics", &points, None)
}
