//! The review queue: the logged predictions of a window most worth a label, for people to label first.
//! Three reasons make a row worth it: the model was unsure (its probability near the decision boundary), the
//! row lies outside the reference in a column that drifted in the window (a value beyond the reference's
//! central 98%, or a category the reference never had), or a shadow version disagreed with the answer served.
//! Rows that already have a label are left out. Labels posted back become feedback.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use loopline_serving::log_reader::PostedLabel;
use loopline_tabular::DatasetProfile;
use serde::Serialize;
use serde_json::{Value, json};

use crate::evaluate::{cell, class_of, ids_and_answers};
use crate::spec::MonitorSpec;
use crate::window_data::WindowRows;

/// Most items a queue returns.
pub const MAX_ITEMS: usize = 10_000;
/// Rows of one request a label may name (positions 0 to this, excluded).
const MAX_ROW: i64 = 100_000;
/// List cells (labels and the nulls between them) one call may store.
const MAX_LIST_CELLS: i64 = 200_000;
/// Longest label text.
const MAX_LABEL_BYTES: usize = 10_000;

/// One row worth a label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewItem {
    /// The request.
    pub request_id: String,
    /// The row within it.
    pub row: i64,
    /// Why: `uncertain`, `drifted:<column>`, `shadow_disagrees`.
    pub reasons: Vec<String>,
    /// Larger first: the uncertainty (0 to 1), plus 1 per drifted column the row is out of range in, plus 1 when a
    /// shadow disagreed.
    pub score: f64,
    /// The logged inputs.
    pub inputs: BTreeMap<String, Value>,
    /// The answer served.
    pub prediction: Value,
    /// The positive class's probability, when logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// The shadow version's answer, when one disagreed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_prediction: Option<Value>,
}

/// What the queue is built from.
pub struct ReviewInput<'a> {
    /// The monitor.
    pub spec: &'a MonitorSpec,
    /// The window's rows, shadow answers included.
    pub rows: &'a WindowRows,
    /// Labels already posted.
    pub labels: &'a loopline_serving::log_reader::RequestMap<PostedLabel>,
    /// The reference, for out-of-range values.
    pub reference: Option<&'a DatasetProfile>,
    /// Columns that drifted in the window.
    pub drifted: &'a [String],
}

fn role_of(batch: &RecordBatch, row: usize) -> &str {
    batch
        .column_by_name("role")
        .and_then(|c| c.as_string_opt::<i32>())
        .filter(|roles| roles.is_valid(row))
        .map_or("served", |roles| roles.value(row))
}

fn position(batch: &RecordBatch, row: usize) -> i64 {
    batch
        .column_by_name("row")
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
        .map_or(0, |p| p.value(row))
}

/// Whether `value` of `column` lies outside the reference: beyond its 1st–99th percentiles, or unseen.
fn outside_reference(reference: &DatasetProfile, column: &str, value: &Value) -> bool {
    let Some(profile) = reference.column(column) else {
        return false;
    };
    if let (Some(numeric), Some(number)) = (&profile.numeric, value.as_f64()) {
        let quantiles = &numeric.quantiles;
        if quantiles.len() < 3 {
            return false;
        }
        let last = quantiles.len() - 1;
        let (low, high) = (quantiles[last / 100], quantiles[last - last / 100]);
        return number < low || number > high;
    }
    if let (Some(categorical), Some(label)) = (&profile.categorical, value.as_str()) {
        return categorical.other == 0 && !categorical.counts.iter().any(|(known, _)| known == label);
    }
    false
}

/// The queue, best first, at most `limit` items.
pub fn review_queue(input: &ReviewInput<'_>, output: &str, limit: usize) -> Vec<ReviewItem> {
    let probability = input.spec.probability_output.as_ref().map(|p| format!("output.{p}"));
    // Shadow answers by (request, row).
    let mut shadows: HashMap<(String, i64), Value> = HashMap::new();
    for batch in &input.rows.batches {
        let Some((ids, answers)) = ids_and_answers(batch, output) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if role_of(batch, row) == "shadow" && ids.is_valid(row) {
                shadows.insert((ids.value(row).to_string(), position(batch, row)), cell(answers, row));
            }
        }
    }
    let mut items = Vec::new();
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    for batch in &input.rows.batches {
        let Some((ids, answers)) = ids_and_answers(batch, output) else {
            continue;
        };
        let scores = probability.as_ref().and_then(|p| batch.column_by_name(p));
        let schema = batch.schema();
        let inputs: Vec<(String, usize)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(index, f)| f.name().strip_prefix("input.").map(|c| (c.to_string(), index)))
            .collect();
        for row in 0..batch.num_rows() {
            if role_of(batch, row) == "shadow" || !ids.is_valid(row) || input.labels.contains_key(ids.value(row)) {
                continue;
            }
            let key = (ids.value(row).to_string(), position(batch, row));
            if !seen.insert(key.clone()) {
                continue;
            }
            let prediction = cell(answers, row);
            let mut reasons = Vec::new();
            let mut score = 0.0;
            let probability_value = scores.map(|s| cell(s, row)).and_then(|v| v.as_f64());
            if let Some(p) = probability_value.filter(|p| p.is_finite()) {
                let uncertainty = 1.0 - (2.0 * p - 1.0).abs().min(1.0);
                if uncertainty >= 0.5 {
                    reasons.push("uncertain".to_string());
                }
                score += uncertainty;
            }
            let values: BTreeMap<String, Value> = inputs
                .iter()
                .map(|(column, index)| (column.clone(), cell(batch.column(*index), row)))
                .collect();
            if let Some(reference) = input.reference {
                for column in input.drifted {
                    if values
                        .get(column)
                        .is_some_and(|v| outside_reference(reference, column, v))
                    {
                        reasons.push(format!("drifted:{column}"));
                        score += 1.0;
                    }
                }
            }
            let shadow = shadows
                .get(&key)
                .filter(|answer| class_of(answer) != class_of(&prediction))
                .cloned();
            if shadow.is_some() {
                reasons.push("shadow_disagrees".to_string());
                score += 1.0;
            }
            if reasons.is_empty() {
                continue;
            }
            items.push(ReviewItem {
                request_id: key.0,
                row: key.1,
                reasons,
                score,
                inputs: values,
                prediction,
                probability: probability_value,
                shadow_prediction: shadow,
            });
        }
    }
    items.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.request_id.cmp(&b.request_id))
    });
    items.truncate(limit.min(MAX_ITEMS));
    items
}

/// Labels for reviewed rows, grouped into one feedback label per request: a single-row request gets the label,
/// a request with several rows a list with the labelled rows set (the others null).
pub fn labels_as_feedback(labels: &[(String, i64, Value)]) -> Vec<(String, Value)> {
    let mut by_request: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for (request, row, label) in labels {
        by_request
            .entry(request.clone())
            .or_default()
            .push((*row, label.clone()));
    }
    by_request
        .into_iter()
        .map(|(request, rows)| {
            // Always a list: a bare label would stand for every row of a request with several.
            let width = rows.iter().map(|(row, _)| *row).max().unwrap_or(0).max(0) as usize + 1;
            let mut list = vec![Value::Null; width];
            for (row, label) in rows {
                if let Some(slot) = usize::try_from(row).ok().and_then(|r| list.get_mut(r)) {
                    *slot = label;
                }
            }
            (request, json!(list))
        })
        .collect()
}

impl crate::service::Monitoring {
    /// The review queue of window `window` (default: the newest window with traffic).
    pub async fn review(
        &self,
        name: &str,
        window: Option<i64>,
        limit: usize,
    ) -> Result<Value, crate::service::MonitorError> {
        use crate::service::{MonitorError, parse_record};
        let record = self.store.get_monitor(name).await?;
        let (spec, _) = parse_record(&record)?;
        let (model, _) = self.target(&spec).await?;
        let stored = match window {
            Some(key) => self
                .store
                .monitor_windows(name, key, 1)
                .await?
                .into_iter()
                .find(|w| w.window_key == key),
            None => self
                .store
                .latest_monitor_windows(name, 100)
                .await?
                .into_iter()
                .find(|w| w.rows_seen > 0),
        };
        let Some(stored) = stored else {
            return Err(MonitorError::NotFound(format!(
                "monitor '{name}' has no evaluated window{} with traffic",
                window.map(|k| format!(" {k}")).unwrap_or_default()
            )));
        };
        let document: Value = serde_json::from_str(&stored.figures).unwrap_or_default();
        let details = &document["details"];
        let internal = MonitorError::Internal;
        let rows = match spec.window.predictions {
            None => crate::window_data::time_window_rows(
                self.artifacts.as_ref(),
                &model,
                (stored.window_start, stored.window_end),
                true,
                crate::window_data::Reading {
                    limit: spec.sample_rows,
                    inputs: true,
                    ids: true,
                },
            )
            .await
            .map_err(internal)?,
            Some(count) => {
                let from: crate::window_data::LogCursor = serde_json::from_value(details["cursor"]["from"].clone())
                    .map_err(|e| MonitorError::Internal(format!("window {} has no cursor: {e}", stored.window_key)))?;
                crate::window_data::count_window_rows(
                    self.artifacts.as_ref(),
                    &model,
                    &from,
                    (
                        count as usize,
                        crate::window_data::Reading {
                            limit: spec.sample_rows,
                            inputs: true,
                            ids: true,
                        },
                    ),
                    true,
                )
                .await
                .map_err(internal)?
                .map(|(rows, _)| rows)
                .unwrap_or_default()
            }
        };
        let since = loopline_core::time::utc_hour(stored.window_start);
        let wanted = rows.request_ids();
        let labels =
            loopline_serving::log_reader::posted_labels(self.artifacts.as_ref(), (Some(&since), None), Some(&wanted))
                .await
                .map_err(MonitorError::Internal)?;
        let reference = match details["version"].as_str() {
            Some(version) => self.reference_of(&model, version).await?,
            None => None,
        };
        let drifted: Vec<String> = document["figures"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(figure, value)| figure.starts_with("drift.detected.") && value.as_f64() == Some(1.0))
            .map(|(figure, _)| figure.trim_start_matches("drift.detected.").to_string())
            .collect();
        let Some(output) = details["output"].as_str().map(str::to_string) else {
            return Ok(json!({"window": stored.window_key, "items": []}));
        };
        let items = tokio::task::spawn_blocking(move || {
            review_queue(
                &ReviewInput {
                    spec: &spec,
                    rows: &rows,
                    labels: &labels,
                    reference: reference.as_ref(),
                    drifted: &drifted,
                },
                &output,
                limit,
            )
        })
        .await
        .map_err(|e| MonitorError::Internal(format!("the review queue stopped: {e}")))?;
        Ok(json!({"window": stored.window_key, "items": items}))
    }

    /// Labels for reviewed rows, recorded as feedback: `{"labels": [{"request_id", "row", "label"}]}`.
    pub async fn post_review_labels(&self, name: &str, body: &[u8]) -> Result<Value, crate::service::MonitorError> {
        use crate::service::{MonitorError, invalid};
        self.store.get_monitor(name).await?;
        let value: Value = serde_json::from_slice(body).map_err(|e| invalid("body", format!("not JSON: {e}")))?;
        let Some(items) = value["labels"].as_array() else {
            return Err(invalid("labels", "give a list of {request_id, row, label}"));
        };
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(invalid("labels", format!("give 1 to {MAX_ITEMS} labels")));
        }
        let mut labels = Vec::new();
        let mut widths: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let Some(request) = item["request_id"].as_str().filter(|r| !r.is_empty() && r.len() <= 256) else {
                return Err(invalid(&format!("labels[{index}].request_id"), "give the request's id"));
            };
            let row = item
                .get("row")
                .map_or(Some(0), Value::as_i64)
                .filter(|r| (0..MAX_ROW).contains(r));
            let Some(row) = row else {
                return Err(invalid(
                    &format!("labels[{index}].row"),
                    format!("give the row as a number from 0 to {}", MAX_ROW - 1),
                ));
            };
            let width = widths.entry(request).or_insert(0);
            *width = (*width).max(row + 1);
            match item.get("label") {
                Some(Value::String(text)) if text.len() > MAX_LABEL_BYTES => {
                    return Err(invalid(
                        &format!("labels[{index}].label"),
                        format!("at most {MAX_LABEL_BYTES} bytes"),
                    ));
                }
                Some(label @ (Value::Number(_) | Value::String(_) | Value::Bool(_))) => {
                    labels.push((request.to_string(), row, label.clone()));
                }
                _ => {
                    return Err(invalid(
                        &format!("labels[{index}].label"),
                        "give a number, text or true/false",
                    ));
                }
            }
        }
        // Each request's label is a list as long as its highest row: bound what one call may make.
        if widths.values().sum::<i64>() > MAX_LIST_CELLS {
            return Err(invalid(
                "labels",
                format!(
                    "these labels would store more than {MAX_LIST_CELLS} list cells; post rows of fewer requests at a time"
                ),
            ));
        }
        let Some(log) = &self.log else {
            return Err(MonitorError::Conflict(
                "the prediction log is off on this server, so labels cannot be joined to predictions".to_string(),
            ));
        };
        let now = loopline_core::time::now_millis();
        let feedback: Vec<loopline_serving::prediction_log::Feedback> = labels_as_feedback(&labels)
            .into_iter()
            .map(|(request_id, label)| loopline_serving::prediction_log::Feedback {
                request_id,
                label: label.to_string(),
                timestamp_ms: now,
            })
            .collect();
        let recorded = feedback.len();
        log.feedback(feedback).await.map_err(MonitorError::Internal)?;
        Ok(json!({"recorded": recorded}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_grouped_per_request() {
        let grouped = labels_as_feedback(&[
            ("a".into(), 0, json!(1)),
            ("b".into(), 2, json!("cat")),
            ("b".into(), 0, json!("dog")),
        ]);
        assert_eq!(
            grouped,
            [
                ("a".to_string(), json!([1])),
                ("b".to_string(), json!(["dog", null, "cat"]))
            ]
        );
    }
}
