//! Spans received over OTLP, kept in the store beside their trace (MLflow 3's `TRACKING_STORE` span
//! location), and the trace they make or update.

use super::rows::text;
use super::span_columns::{span_columns, token_usage};
use super::traces::{SPANS_LOCATION_POINTER, write_trace_rows};
use super::{SqlStore, parse_experiment_id};
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewTrace, SpanBatch};
use loopline_core::time::rfc3339_millis;
use serde_json::Value;
use std::collections::HashMap;

/// The most spans one trace may hold.
const MAX_SPANS_PER_TRACE: i64 = 100_000;

/// Sets the tag that tells clients where a trace's spans are.
pub(super) fn mark_spans_location(trace_info: &mut Value, location: Value) {
    if let Some(info) = trace_info.as_object_mut()
        && let Some(tags) = info
            .entry("tags")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
    {
        tags.insert("mlflow.trace.spansLocation".to_string(), location);
    }
}

/// A duration as proto JSON writes it (`1.234s`).
fn duration_text(millis: i64) -> String {
    format!("{}.{:03}s", millis / 1000, millis % 1000)
}

impl SqlStore {
    pub(super) async fn log_spans_sql(&self, batches: &[SpanBatch]) -> StoreResult<()> {
        for batch in batches {
            self.experiment_stage(parse_experiment_id(&batch.trace.experiment_id)?)
                .await?;
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        for batch in batches {
            super::traces::lock_trace(&mut transaction, self.dialect, &batch.trace.trace_id).await?;
            log_batch(&mut transaction, batch).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn get_trace_spans_sql(&self, trace_id: &str) -> StoreResult<Vec<Value>> {
        let rows = sqlx::query("SELECT content FROM trace_spans WHERE trace_id = $1 ORDER BY start_ns, span_id")
            .bind(trace_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let spans: Vec<Value> = rows
            .iter()
            .map(|row| {
                serde_json::from_str(&text(row, "content")?)
                    .map_err(|error| StoreError::InvalidParameter(format!("a stored span is not valid JSON: {error}")))
            })
            .collect::<StoreResult<_>>()?;
        // Root spans first, then by start time, as MLflow serves them.
        let (mut roots, children): (Vec<Value>, Vec<Value>) =
            spans.into_iter().partition(|span| span.get("parent_span_id").is_none());
        roots.extend(children);
        Ok(roots)
    }
}

/// One trace's batch, inside the transaction of the whole request.
async fn log_batch(transaction: &mut sqlx::Transaction<'_, sqlx::Any>, batch: &SpanBatch) -> StoreResult<()> {
    let created = &batch.trace;
    let experiment_id = parse_experiment_id(&created.experiment_id)?;
    let stored = sqlx::query(
        "SELECT trace_info, experiment_id, timestamp_ms, execution_time_ms, state FROM traces WHERE trace_id = $1",
    )
    .bind(created.trace_id.clone())
    .fetch_optional(&mut **transaction)
    .await?;
    let (trace, experiment_id) = match stored {
        None => (created.clone(), experiment_id),
        Some(row) => {
            let mut info: Value = serde_json::from_str(&text(&row, "trace_info")?).map_err(|error| {
                StoreError::InvalidParameter(format!("stored trace {} is not valid JSON: {error}", created.trace_id))
            })?;
            let stored_start = super::rows::integer(&row, "timestamp_ms")?;
            let stored_end = stored_start + super::rows::integer(&row, "execution_time_ms")?;
            let stored_state = text(&row, "state")?;
            let start = stored_start.min(created.timestamp_ms);
            let end = stored_end.max(batch.end_ms.unwrap_or(stored_end));
            // A state the client has set when it finished the trace stands; spans only end an open one.
            let state = match (stored_state.as_str(), &batch.root_state) {
                ("OK" | "ERROR", _) | (_, None) => stored_state.clone(),
                (_, Some(root)) => root.clone(),
            };
            if let Some(object) = info.as_object_mut() {
                // What these spans tell (the root's name, previews) fills in what the trace lacks.
                for field in ["tags", "trace_metadata"] {
                    let Some(learned) = created.trace_info.get(field).and_then(Value::as_object) else {
                        continue;
                    };
                    if let Some(known) = object
                        .entry(field)
                        .or_insert_with(|| serde_json::json!({}))
                        .as_object_mut()
                    {
                        for (key, value) in learned {
                            known.entry(key.clone()).or_insert_with(|| value.clone());
                        }
                    }
                }
                // Previews the trace lacks come from the root span, as in MLflow.
                for field in ["request_preview", "response_preview"] {
                    if object.get(field).is_none_or(Value::is_null)
                        && let Some(preview) = created.trace_info.get(field).filter(|v| !v.is_null())
                    {
                        object.insert(field.into(), preview.clone());
                    }
                }
                object.insert("request_time".into(), Value::String(rfc3339_millis(start)));
                object.insert(
                    "execution_duration".into(),
                    Value::String(duration_text((end - start).max(0))),
                );
                object.insert("state".into(), Value::String(state.clone()));
            }
            let trace = NewTrace {
                trace_id: created.trace_id.clone(),
                experiment_id: String::new(),
                timestamp_ms: start,
                execution_time_ms: (end - start).max(0),
                state,
                trace_info: info,
            };
            (trace, super::rows::integer(&row, "experiment_id")?)
        }
    };
    let mut trace = trace;
    if trace.trace_info.pointer(SPANS_LOCATION_POINTER).is_none() {
        mark_spans_location(&mut trace.trace_info, Value::String("TRACKING_STORE".into()));
    }
    write_trace_rows(transaction, &trace, experiment_id).await?;
    let held = sqlx::query("SELECT COUNT(*) AS spans FROM trace_spans WHERE trace_id = $1")
        .bind(trace.trace_id.clone())
        .fetch_one(&mut **transaction)
        .await?;
    if super::rows::integer(&held, "spans")? + batch.spans.len() as i64 > MAX_SPANS_PER_TRACE {
        return Err(StoreError::InvalidParameter(format!(
            "trace {} would hold more than {MAX_SPANS_PER_TRACE} spans",
            trace.trace_id
        )));
    }
    let mut usage_seen = false;
    for span in &batch.spans {
        let columns = span_columns(&span.content);
        usage_seen |= token_usage(&columns).is_some();
        sqlx::query(
            "INSERT INTO trace_spans (trace_id, span_id, start_ns, end_ns, name, span_type, status, model_name, \
             model_provider, input_cost, output_cost, total_cost, mlflow_text, content) \
             VALUES ($1, $2, $3, CASE WHEN $15 = 1 THEN $4 END, $5, $6, $7, $8, $9, CASE WHEN $16 = 1 THEN $10 END, \
             CASE WHEN $17 = 1 THEN $11 END, CASE WHEN $18 = 1 THEN $12 END, $13, $14) \
             ON CONFLICT (trace_id, span_id) DO UPDATE SET start_ns = excluded.start_ns, end_ns = excluded.end_ns, \
             name = excluded.name, span_type = excluded.span_type, status = excluded.status, \
             model_name = excluded.model_name, model_provider = excluded.model_provider, \
             input_cost = excluded.input_cost, output_cost = excluded.output_cost, total_cost = excluded.total_cost, \
             mlflow_text = excluded.mlflow_text, content = excluded.content",
        )
        .bind(span.trace_id.clone())
        .bind(span.span_id.clone())
        .bind(span.start_ns)
        // Numbers always bound as numbers, with flags for "none" (see write_searchable).
        .bind(columns.end_ns.unwrap_or(0))
        .bind(columns.name)
        .bind(columns.span_type)
        .bind(columns.status)
        .bind(columns.model_name)
        .bind(columns.model_provider)
        .bind(columns.input_cost.unwrap_or(0.0))
        .bind(columns.output_cost.unwrap_or(0.0))
        .bind(columns.total_cost.unwrap_or(0.0))
        .bind(super::span_columns::mlflow_text(&span.content))
        .bind(span.content.to_string())
        .bind(i64::from(columns.end_ns.is_some()))
        .bind(i64::from(columns.input_cost.is_some()))
        .bind(i64::from(columns.output_cost.is_some()))
        .bind(i64::from(columns.total_cost.is_some()))
        .execute(&mut **transaction)
        .await?;
    }
    if usage_seen {
        record_token_usage(transaction, &trace.trace_id).await?;
    }
    Ok(())
}

/// The token usage keys MLflow sums, in the order it writes them.
const USAGE_KEYS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_above_1hr_input_tokens",
];

/// Sums the token usage of a trace's spans into its `mlflow.trace.tokenUsage` metadata, as MLflow does: a
/// span counts only when no span above it has usage of its own (a parent's usage already includes its
/// children's). A trace the client finished with usage of its own keeps it.
async fn record_token_usage(transaction: &mut sqlx::Transaction<'_, sqlx::Any>, trace_id: &str) -> StoreResult<()> {
    let info_row = sqlx::query("SELECT trace_info FROM traces WHERE trace_id = $1")
        .bind(trace_id.to_string())
        .fetch_one(&mut **transaction)
        .await?;
    let mut info: Value = serde_json::from_str(&text(&info_row, "trace_info")?)
        .map_err(|error| StoreError::InvalidParameter(format!("stored trace {trace_id} is not valid JSON: {error}")))?;
    let finalized = info
        .pointer("/trace_metadata/mlflow.trace.infoFinalized")
        .and_then(Value::as_str)
        == Some("true");
    if finalized && info.pointer("/trace_metadata/mlflow.trace.tokenUsage").is_some() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT span_id, content FROM trace_spans WHERE trace_id = $1")
        .bind(trace_id.to_string())
        .fetch_all(&mut **transaction)
        .await?;
    let mut parents = HashMap::new();
    let mut usages = HashMap::new();
    for row in &rows {
        let content: Value = serde_json::from_str(&text(row, "content")?).unwrap_or_default();
        let columns = span_columns(&content);
        let own_id = content
            .get("span_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(usage) = token_usage(&columns) {
            usages.insert(own_id.clone(), usage);
        }
        if let Some(parent) = columns.parent_span_id {
            parents.insert(own_id, parent);
        }
    }
    let mut totals: Vec<Option<i64>> = vec![None; USAGE_KEYS.len()];
    for (span_id, usage) in &usages {
        // Walk up; the chain is bounded by the span count, so a cycle in hostile ids cannot loop forever.
        let mut current = parents.get(span_id);
        let mut covered = false;
        for _ in 0..parents.len() {
            let Some(parent) = current else { break };
            if usages.contains_key(parent) {
                covered = true;
                break;
            }
            current = parents.get(parent);
        }
        if covered {
            continue;
        }
        for (total, key) in totals.iter_mut().zip(USAGE_KEYS) {
            // Counts are whole and not negative; anything else a client sent is left out.
            if let Some(count) = usage.get(key).and_then(Value::as_i64).filter(|count| *count >= 0) {
                *total = Some(total.unwrap_or(0).saturating_add(count));
            }
        }
    }
    if totals[2].is_none() && (totals[0].is_some() || totals[1].is_some()) {
        totals[2] = Some(totals[0].unwrap_or(0).saturating_add(totals[1].unwrap_or(0)));
    }
    let entries: Vec<String> = USAGE_KEYS
        .iter()
        .zip(&totals)
        .filter_map(|(key, total)| total.map(|total| format!("\"{key}\": {total}")))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let usage = format!("{{{}}}", entries.join(", "));
    if let Some(metadata) = info
        .as_object_mut()
        .map(|object| object.entry("trace_metadata").or_insert_with(|| serde_json::json!({})))
        .and_then(Value::as_object_mut)
    {
        metadata.insert("mlflow.trace.tokenUsage".into(), Value::String(usage.clone()));
    }
    sqlx::query("UPDATE traces SET trace_info = $1 WHERE trace_id = $2")
        .bind(info.to_string())
        .bind(trace_id.to_string())
        .execute(&mut **transaction)
        .await?;
    super::traces::write_searchable(transaction, trace_id, &info).await
}
