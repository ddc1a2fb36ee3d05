//! Spans received over OTLP, kept in the store beside their trace (MLflow 3's `TRACKING_STORE` span
//! location), and the trace they make or update.

use super::rows::text;
use super::traces::{SPANS_LOCATION_POINTER, write_trace_rows};
use super::{SqlStore, parse_experiment_id};
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewTrace, SpanBatch};
use loopline_core::time::rfc3339_millis;
use serde_json::Value;

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
        let mut transaction = self.pool.begin().await?;
        for batch in batches {
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
    for span in &batch.spans {
        sqlx::query(
            "INSERT INTO trace_spans (trace_id, span_id, start_ns, content) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (trace_id, span_id) DO UPDATE SET start_ns = excluded.start_ns, content = excluded.content",
        )
        .bind(span.trace_id.clone())
        .bind(span.span_id.clone())
        .bind(span.start_ns)
        .bind(span.content.to_string())
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}
