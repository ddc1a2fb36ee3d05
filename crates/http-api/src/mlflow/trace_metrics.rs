//! Trace analytics as MLflow 3 serves them: `traces/metrics` (counts, latencies, tokens, costs and
//! assessment values over traces, spans or assessments, by dimension and time bucket) and
//! `traces/calculate-filter-correlation` (how two trace filters co-occur, as NPMI).

use super::JsonResult;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, one_or_many};
use axum::Json;
use axum::extract::State;
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{MetricRow, MetricView, TraceMetricsQuery};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// MLflow's default page of data points.
const DEFAULT_MAX_RESULTS: i64 = 1_000;
/// The fewest seconds a time bucket may span, and the most buckets a query may make.
const MAX_BUCKETS: i64 = 100_000;
/// The most filters one metric query takes (each is a condition of the one SQL query).
const MAX_FILTERS: usize = 50;

const COUNT: &[&str] = &["COUNT"];
const SPREAD: &[&str] = &["AVG", "MIN", "MAX", "PERCENTILE"];
const TOTALS: &[&str] = &["SUM", "AVG", "MIN", "MAX", "PERCENTILE"];

/// The metrics of a view: name, aggregations allowed, dimensions allowed (MLflow's `*_METRICS_CONFIGS`).
fn metric_configs(view: MetricView) -> Vec<(&'static str, &'static [&'static str], &'static [&'static str])> {
    match view {
        MetricView::Traces => vec![
            ("trace_count", COUNT, &["trace_name", "trace_status"]),
            ("session_count", COUNT, &[]),
            ("latency", SPREAD, &["trace_name"]),
            ("input_tokens", TOTALS, &["trace_name"]),
            ("output_tokens", TOTALS, &["trace_name"]),
            ("total_tokens", TOTALS, &["trace_name"]),
            ("cache_read_input_tokens", TOTALS, &["trace_name"]),
            ("cache_creation_input_tokens", TOTALS, &["trace_name"]),
        ],
        MetricView::Spans => vec![
            (
                "span_count",
                COUNT,
                &[
                    "span_name",
                    "span_type",
                    "span_status",
                    "span_model_name",
                    "span_model_provider",
                ],
            ),
            ("latency", SPREAD, &["span_name", "span_status"]),
            ("input_cost", TOTALS, &["span_model_name", "span_model_provider"]),
            ("output_cost", TOTALS, &["span_model_name", "span_model_provider"]),
            ("total_cost", TOTALS, &["span_model_name", "span_model_provider"]),
        ],
        MetricView::Assessments => vec![
            ("assessment_count", COUNT, &["assessment_name", "assessment_value"]),
            ("assessment_value", SPREAD, &["assessment_name"]),
        ],
    }
}

fn python_list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|item| format!("'{item}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[derive(Deserialize)]
struct AggregationRequest {
    aggregation_type: Option<String>,
    percentile_value: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct MetricsRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    view_type: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    aggregations: Vec<AggregationRequest>,
    #[serde(default, deserialize_with = "one_or_many")]
    dimensions: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    filters: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    time_interval_seconds: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    start_time_ms: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    end_time_ms: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

/// One aggregation asked for, with its label in the answer (`COUNT`, `AVG`, `P50.0`).
struct Aggregation {
    kind: String,
    percentile: Option<f64>,
    label: String,
}

fn aggregations(request: &[AggregationRequest], allowed: &[&str]) -> ApiResult<Vec<Aggregation>> {
    if request.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'aggregations'.",
        ));
    }
    let mut invalid = BTreeSet::new();
    let mut parsed = Vec::new();
    for aggregation in request {
        let kind = aggregation.aggregation_type.clone().unwrap_or_default();
        if !allowed.contains(&kind.as_str()) {
            invalid.insert(kind);
            continue;
        }
        let percentile = if kind == "PERCENTILE" {
            match aggregation.percentile_value {
                Some(value) if (0.0..=100.0).contains(&value) => Some(value),
                _ => {
                    return Err(ApiError::invalid(
                        "Percentile value must be between 0 and 100 for the PERCENTILE aggregation",
                    ));
                }
            }
        } else {
            None
        };
        let label = match percentile {
            Some(value) => format!("P{value:?}"),
            None => kind.clone(),
        };
        parsed.push(Aggregation {
            kind,
            percentile,
            label,
        });
    }
    if !invalid.is_empty() {
        let mut supported: Vec<&str> = allowed.to_vec();
        supported.sort_unstable();
        return Err(ApiError::invalid(format!(
            "Found invalid aggregation_type(s): {}. Supported aggregation types: {}",
            python_list(&invalid.iter().map(String::as_str).collect::<Vec<_>>()),
            python_list(&supported)
        )));
    }
    Ok(parsed)
}

/// Linear interpolation between the closest ranks (PostgreSQL's `percentile_cont`).
fn percentile(sorted: &[f64], percent: f64) -> f64 {
    if sorted.len() == 1 {
        return sorted[0];
    }
    let rank = percent / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

fn aggregate(aggregation: &Aggregation, values: &[f64], distinct: usize, counts_distinct: bool) -> Option<f64> {
    if aggregation.kind == "COUNT" {
        return Some(if counts_distinct { distinct } else { values.len() } as f64);
    }
    if values.is_empty() {
        return None;
    }
    Some(match aggregation.kind.as_str() {
        "SUM" => values.iter().sum(),
        "AVG" => values.iter().sum::<f64>() / values.len() as f64,
        "MIN" => values.iter().copied().fold(f64::INFINITY, f64::min),
        "MAX" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            percentile(&sorted, aggregation.percentile.unwrap_or(50.0))
        }
    })
}

/// A time bucket's start as MLflow writes it (`2025-01-01T00:00:00+00:00`).
fn bucket_text(millis: i64) -> String {
    let text = loopline_core::time::rfc3339_millis(millis);
    let seconds = text.split('.').next().unwrap_or(&text).trim_end_matches('Z');
    if millis % 1_000 == 0 {
        format!("{seconds}+00:00")
    } else {
        format!("{}+00:00", text.trim_end_matches('Z'))
    }
}

pub(super) async fn query(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<MetricsRequest>,
) -> JsonResult {
    if request.experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'experiment_ids'.",
        ));
    }
    let view = match request.view_type.as_deref() {
        Some("TRACES") => MetricView::Traces,
        Some("SPANS") => MetricView::Spans,
        Some("ASSESSMENTS") => MetricView::Assessments,
        None => return Err(ApiError::invalid("Missing value for required parameter 'view_type'.")),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "view_type must be one of ['TRACES', 'SPANS', 'ASSESSMENTS'], got '{other}'"
            )));
        }
    };
    let metric_name = super::required(&request.metric_name, "metric_name")?;
    let configs = metric_configs(view);
    let Some((_, allowed_aggregations, allowed_dimensions)) = configs.iter().find(|(name, _, _)| *name == metric_name)
    else {
        let names: Vec<&str> = configs.iter().map(|(name, _, _)| *name).collect();
        return Err(ApiError::invalid(format!(
            "metric_name must be one of {}, got '{metric_name}'",
            python_list(&names)
        )));
    };
    let aggregations = aggregations(&request.aggregations, allowed_aggregations)?;
    let invalid: BTreeSet<&str> = request
        .dimensions
        .iter()
        .map(String::as_str)
        .filter(|dimension| !allowed_dimensions.contains(dimension))
        .collect();
    if !invalid.is_empty() {
        let mut supported = allowed_dimensions.to_vec();
        supported.sort_unstable();
        return Err(ApiError::invalid(format!(
            "Found invalid dimension(s): {}. Supported dimensions: {}",
            python_list(&invalid.into_iter().collect::<Vec<_>>()),
            python_list(&supported)
        )));
    }
    let bucket_ms = match request.time_interval_seconds {
        None | Some(0) => None,
        Some(seconds) if seconds < 0 => {
            return Err(ApiError::invalid("time_interval_seconds must be positive"));
        }
        Some(seconds) => {
            let (Some(start), Some(end)) = (request.start_time_ms, request.end_time_ms) else {
                return Err(ApiError::invalid(
                    "start_time_ms and end_time_ms are required if time_interval_seconds is set",
                ));
            };
            if start < 0 || end < start {
                return Err(ApiError::invalid(format!(
                    "start_time_ms ({start}) and end_time_ms ({end}) must be a range of times since the epoch"
                )));
            }
            if (end - start) / seconds.saturating_mul(1_000).max(1) > MAX_BUCKETS {
                return Err(ApiError::invalid(format!(
                    "time_interval_seconds {seconds} would make more than {MAX_BUCKETS} buckets over this range"
                )));
            }
            Some(seconds.saturating_mul(1_000))
        }
    };
    if request.filters.len() > MAX_FILTERS {
        return Err(ApiError::invalid(format!(
            "a metric query takes at most {MAX_FILTERS} filters, got {}",
            request.filters.len()
        )));
    }
    let max_results = request.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if !(1..=50_000).contains(&max_results) {
        return Err(ApiError::invalid(format!(
            "Invalid value {max_results} for parameter 'max_results' supplied: it must be between 1 and 50000"
        )));
    }
    let token = request.page_token.as_deref().filter(|token| !token.is_empty());
    let offset = loopline_core::page_token::decode_offset(token)
        .map_err(|_| ApiError::invalid(format!("Invalid page token '{}'", token.unwrap_or_default())))?
        as usize;
    let rows = state
        .tracking
        .store()
        .trace_metric_rows(&TraceMetricsQuery {
            experiment_ids: request.experiment_ids.clone(),
            view,
            metric_name: metric_name.to_string(),
            dimensions: request.dimensions.clone(),
            filters: request.filters.clone(),
            start_time_ms: request.start_time_ms,
            end_time_ms: request.end_time_ms,
        })
        .await?;
    let counts_distinct = metric_name == "session_count";
    let points = group(&rows, bucket_ms, counts_distinct);
    let mut data_points = Vec::new();
    for (key, (values, distinct)) in points.iter().skip(offset).take(max_results as usize) {
        let mut dimensions = Map::new();
        let mut names = Vec::new();
        if bucket_ms.is_some() {
            names.push("time_bucket".to_string());
        }
        names.extend(request.dimensions.iter().cloned());
        for (name, value) in names.iter().zip(key) {
            let text = match (name.as_str(), value) {
                ("time_bucket", GroupKey::Bucket(millis)) => bucket_text(*millis),
                (_, GroupKey::Text(text)) => text.clone(),
                (_, GroupKey::Bucket(millis)) => millis.to_string(),
            };
            dimensions.insert(name.clone(), Value::String(text));
        }
        let mut answer = Map::new();
        for aggregation in &aggregations {
            if let Some(value) = aggregate(aggregation, values, distinct.len(), counts_distinct) {
                answer.insert(aggregation.label.clone(), json!(value));
            }
        }
        if answer.is_empty() {
            continue;
        }
        data_points.push(json!({"metric_name": metric_name, "dimensions": dimensions, "values": answer}));
    }
    let mut response = Map::new();
    response.insert("data_points".into(), Value::Array(data_points));
    if points.len() > offset + max_results as usize {
        response.insert(
            "next_page_token".into(),
            Value::String(loopline_core::page_token::encode_offset(
                offset as u64 + max_results as u64,
            )),
        );
    }
    Ok(Json(Value::Object(response)))
}

/// A group's key part: a time bucket or a dimension's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Bucket(i64),
    Text(String),
}

type Groups = BTreeMap<Vec<GroupKey>, (Vec<f64>, BTreeSet<String>)>;

/// Rows grouped by time bucket then dimensions (rows with a missing dimension or value left out, as MLflow).
fn group(rows: &[MetricRow], bucket_ms: Option<i64>, counts_distinct: bool) -> Groups {
    let mut groups = Groups::new();
    for row in rows {
        if row.dimensions.iter().any(Option::is_none) {
            continue;
        }
        let value = match (row.value, counts_distinct) {
            (_, true) if row.distinct.is_none() => continue,
            (None, _) => continue,
            (Some(value), _) => value,
        };
        let mut key = Vec::with_capacity(row.dimensions.len() + 1);
        if let Some(bucket) = bucket_ms {
            key.push(GroupKey::Bucket(row.timestamp_ms.div_euclid(bucket) * bucket));
        }
        key.extend(row.dimensions.iter().flatten().map(|text| GroupKey::Text(text.clone())));
        let entry = groups.entry(key).or_default();
        entry.0.push(value);
        if let Some(distinct) = &row.distinct {
            entry.1.insert(distinct.clone());
        }
    }
    groups
}

#[derive(Deserialize)]
pub(super) struct CorrelationRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter_string1: Option<String>,
    filter_string2: Option<String>,
    base_filter: Option<String>,
}

/// NPMI of a 2×2 table (MLflow's `calculate_npmi_from_counts`); None where it is undefined.
fn npmi(joint: f64, first: f64, second: f64, total: f64) -> Option<f64> {
    let (n11, n10, n01) = (joint, first - joint, second - joint);
    let n00 = total - first - second + joint;
    if total <= 0.0 || first <= 0.0 || second <= 0.0 || n10 < 0.0 || n01 < 0.0 || n00 < 0.0 {
        return None;
    }
    if n11 == 0.0 {
        return Some(-1.0);
    }
    if n10 == 0.0 && n01 == 0.0 && n00 == 0.0 {
        return Some(1.0);
    }
    let pmi = (n11 * total / (first * second)).ln();
    let denominator = -(n11 / total).ln();
    if denominator == 0.0 {
        return Some(1.0);
    }
    Some((pmi / denominator).clamp(-1.0, 1.0))
}

fn smoothed_npmi(joint: f64, first: f64, second: f64, total: f64) -> Option<f64> {
    let (n11, n10, n01) = (joint + 0.5, first - joint + 0.5, second - joint + 0.5);
    let n00 = total - first - second + joint + 0.5;
    if total <= 0.0 || first <= 0.0 || second <= 0.0 || n10 < 0.5 || n01 < 0.5 || n00 < 0.5 {
        return None;
    }
    let total = n11 + n10 + n01 + n00;
    let (first, second) = (n11 + n10, n11 + n01);
    let pmi = (n11 * total / (first * second)).ln();
    let denominator = -(n11 / total).ln();
    (denominator != 0.0).then(|| (pmi / denominator).clamp(-1.0, 1.0))
}

fn joined(base: Option<&str>, filter: &str) -> String {
    match base.filter(|base| !base.trim().is_empty()) {
        Some(base) => format!("{base} AND {filter}"),
        None => filter.to_string(),
    }
}

pub(super) async fn correlation(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CorrelationRequest>,
) -> JsonResult {
    if request.experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'experiment_ids'.",
        ));
    }
    let first = super::required(&request.filter_string1, "filter_string1")?;
    let second = super::required(&request.filter_string2, "filter_string2")?;
    let base = request.base_filter.as_deref();
    let store = state.tracking.store();
    let experiments = &request.experiment_ids;
    let total = store
        .count_traces(experiments, base.filter(|b| !b.trim().is_empty()))
        .await?;
    let first_count = store.count_traces(experiments, Some(&joined(base, first))).await?;
    let second_count = store.count_traces(experiments, Some(&joined(base, second))).await?;
    let joint = store
        .count_traces(experiments, Some(&joined(base, &format!("{first} AND {second}"))))
        .await?;
    let mut response = Map::new();
    let as_f64 = |count: i64| count as f64;
    if let Some(value) = npmi(as_f64(joint), as_f64(first_count), as_f64(second_count), as_f64(total)) {
        response.insert("npmi".into(), json!(value));
    }
    if let Some(value) = smoothed_npmi(as_f64(joint), as_f64(first_count), as_f64(second_count), as_f64(total)) {
        response.insert("npmi_smoothed".into(), json!(value));
    }
    response.insert("filter1_count".into(), json!(first_count));
    response.insert("filter2_count".into(), json!(second_count));
    response.insert("joint_count".into(), json!(joint));
    response.insert("total_count".into(), json!(total));
    Ok(Json(Value::Object(response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npmi_follows_its_definition() {
        assert_eq!(npmi(0.0, 2.0, 2.0, 10.0), Some(-1.0));
        assert_eq!(npmi(5.0, 5.0, 5.0, 5.0), Some(1.0));
        assert_eq!(npmi(1.0, 0.0, 2.0, 10.0), None);
        let value = npmi(3.0, 4.0, 5.0, 10.0).unwrap();
        let expected = (3.0f64 * 10.0 / 20.0).ln() / -(0.3f64).ln();
        assert!((value - expected).abs() < 1e-12);
        assert!(smoothed_npmi(3.0, 4.0, 5.0, 10.0).unwrap() < value);
    }

    #[test]
    fn percentiles_interpolate_and_buckets_read_as_mlflow_writes_them() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert_eq!(bucket_text(0), "1970-01-01T00:00:00+00:00");
    }
}
