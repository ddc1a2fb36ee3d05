//! Spans received over OTLP, kept in the store beside their trace (MLflow 3's `TRACKING_STORE` span
//! location), and the trace they make or update.

use super::rows::{Columns, text};
use super::span_columns::{SpanColumns, span_columns, token_usage};
use super::traces::{SPANS_LOCATION_POINTER, write_trace_rows};
use super::{SqlStore, parse_experiment_id};
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewSpan, NewTrace, SpanBatch};
use loopline_core::time::rfc3339_millis;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

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

/// The stored columns of a trace a batch of spans folds into (`SELECT STORED_TRACE_COLUMNS ...`).
pub(super) const STORED_TRACE_COLUMNS: &str = "trace_info, experiment_id, timestamp_ms, execution_time_ms, state";

/// The trace a batch writes and its experiment: the batch's own when the trace is new, else the stored one
/// with the batch's times, root state and what its spans tell folded in. Marks the spans' location.
pub(super) fn folded_trace(batch: &SpanBatch, stored: Option<&dyn Columns>) -> StoreResult<(NewTrace, i64)> {
    let created = &batch.trace;
    let (mut trace, experiment_id) = match stored {
        None => (created.clone(), parse_experiment_id(&created.experiment_id)?),
        Some(row) => {
            let mut info: Value = serde_json::from_str(&text(row, "trace_info")?).map_err(|error| {
                StoreError::InvalidParameter(format!("stored trace {} is not valid JSON: {error}", created.trace_id))
            })?;
            let stored_start = super::rows::integer(row, "timestamp_ms")?;
            let stored_end = stored_start + super::rows::integer(row, "execution_time_ms")?;
            let stored_state = text(row, "state")?;
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
            let stored_experiment = super::rows::integer(row, "experiment_id")?;
            // Checked here, inside the write, so two batches racing to make one trace in two experiments
            // cannot both land.
            if parse_experiment_id(&created.experiment_id)? != stored_experiment {
                return Err(StoreError::Conflict(format!(
                    "Trace {} belongs to another experiment; a trace cannot move between experiments.",
                    created.trace_id
                )));
            }
            (trace, stored_experiment)
        }
    };
    if trace.trace_info.pointer(SPANS_LOCATION_POINTER).is_none() {
        mark_spans_location(&mut trace.trace_info, Value::String("TRACKING_STORE".into()));
    }
    Ok((trace, experiment_id))
}

/// Refuses a batch that would take a trace past the most spans it may hold.
pub(super) fn check_span_room(trace_id: &str, held: i64, adding: usize) -> StoreResult<()> {
    if held.saturating_add(adding as i64) > MAX_SPANS_PER_TRACE {
        return Err(StoreError::InvalidParameter(format!(
            "trace {trace_id} would hold more than {MAX_SPANS_PER_TRACE} spans"
        )));
    }
    Ok(())
}

/// The statement that stores a span or replaces the one with its id; its parameters are [`SpanRow::values`]
/// in order (written `$n` here, `?n` for rusqlite).
pub(super) const SPAN_UPSERT: &str = "INSERT INTO trace_spans (trace_id, span_id, start_ns, end_ns, name, span_type, status, model_name, \
     model_provider, input_cost, output_cost, total_cost, mlflow_text, content) \
     VALUES ($1, $2, $3, CASE WHEN $15 = 1 THEN $4 END, $5, $6, $7, $8, $9, CASE WHEN $16 = 1 THEN $10 END, \
     CASE WHEN $17 = 1 THEN $11 END, CASE WHEN $18 = 1 THEN $12 END, $13, $14) \
     ON CONFLICT (trace_id, span_id) DO UPDATE SET start_ns = excluded.start_ns, end_ns = excluded.end_ns, \
     name = excluded.name, span_type = excluded.span_type, status = excluded.status, \
     model_name = excluded.model_name, model_provider = excluded.model_provider, \
     input_cost = excluded.input_cost, output_cost = excluded.output_cost, total_cost = excluded.total_cost, \
     mlflow_text = excluded.mlflow_text, content = excluded.content";

/// One span's row, in [`SPAN_UPSERT`]'s terms.
pub(super) struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub start_ns: i64,
    pub columns: SpanColumns,
    pub mlflow_text: String,
    pub content: String,
    /// Whether the span reports token usage.
    pub has_usage: bool,
}

impl SpanRow {
    pub(super) fn new(span: &NewSpan) -> Self {
        let columns = span_columns(&span.content);
        SpanRow {
            has_usage: token_usage(&columns).is_some(),
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            start_ns: span.start_ns,
            columns,
            mlflow_text: super::span_columns::mlflow_text(&span.content),
            content: span.content.to_string(),
        }
    }
}

/// One trace's batch, inside the transaction of the whole request.
async fn log_batch(transaction: &mut sqlx::Transaction<'_, sqlx::Any>, batch: &SpanBatch) -> StoreResult<()> {
    let stored = super::query_text(format!("SELECT {STORED_TRACE_COLUMNS} FROM traces WHERE trace_id = $1"))
        .bind(batch.trace.trace_id.clone())
        .fetch_optional(&mut **transaction)
        .await?;
    let (trace, experiment_id) = folded_trace(batch, stored.as_ref().map(|row| row as &dyn Columns))?;
    write_trace_rows(transaction, &trace, experiment_id).await?;
    let held = sqlx::query("SELECT COUNT(*) AS spans FROM trace_spans WHERE trace_id = $1")
        .bind(trace.trace_id.clone())
        .fetch_one(&mut **transaction)
        .await?;
    check_span_room(
        &trace.trace_id,
        super::rows::integer(&held, "spans")?,
        batch.spans.len(),
    )?;
    let mut usage_seen = false;
    for span in &batch.spans {
        let row = SpanRow::new(span);
        usage_seen |= row.has_usage;
        sqlx::query(SPAN_UPSERT)
            .bind(row.trace_id)
            .bind(row.span_id)
            .bind(row.start_ns)
            .bind(row.columns.end_ns.unwrap_or(0))
            .bind(row.columns.name)
            .bind(row.columns.span_type)
            .bind(row.columns.status)
            .bind(row.columns.model_name)
            .bind(row.columns.model_provider)
            .bind(row.columns.input_cost.unwrap_or(0.0))
            .bind(row.columns.output_cost.unwrap_or(0.0))
            .bind(row.columns.total_cost.unwrap_or(0.0))
            .bind(row.mlflow_text)
            .bind(row.content)
            .bind(i64::from(row.columns.end_ns.is_some()))
            .bind(i64::from(row.columns.input_cost.is_some()))
            .bind(i64::from(row.columns.output_cost.is_some()))
            .bind(i64::from(row.columns.total_cost.is_some()))
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
    let mut info = parse_trace_info(trace_id, &text(&info_row, "trace_info")?)?;
    if keeps_own_usage(&info) {
        return Ok(());
    }
    let rows = sqlx::query("SELECT content FROM trace_spans WHERE trace_id = $1")
        .bind(trace_id.to_string())
        .fetch_all(&mut **transaction)
        .await?;
    let contents = rows
        .iter()
        .map(|row| text(row, "content"))
        .collect::<StoreResult<Vec<_>>>()?;
    let Some(usage) = usage_summary(&contents) else {
        return Ok(());
    };
    set_token_usage(&mut info, usage);
    sqlx::query("UPDATE traces SET trace_info = $1 WHERE trace_id = $2")
        .bind(info.to_string())
        .bind(trace_id.to_string())
        .execute(&mut **transaction)
        .await?;
    super::traces::write_searchable(transaction, trace_id, &info).await
}

/// A stored trace info, parsed.
pub(super) fn parse_trace_info(trace_id: &str, stored: &str) -> StoreResult<Value> {
    serde_json::from_str(stored)
        .map_err(|error| StoreError::InvalidParameter(format!("stored trace {trace_id} is not valid JSON: {error}")))
}

/// Whether a trace the client finished keeps the token usage it gave.
pub(super) fn keeps_own_usage(info: &Value) -> bool {
    let finalized = info
        .pointer("/trace_metadata/mlflow.trace.infoFinalized")
        .and_then(Value::as_str)
        == Some("true");
    finalized && info.pointer("/trace_metadata/mlflow.trace.tokenUsage").is_some()
}

/// Puts the summed usage into a trace's metadata.
pub(super) fn set_token_usage(info: &mut Value, usage: String) {
    if let Some(metadata) = info
        .as_object_mut()
        .map(|object| object.entry("trace_metadata").or_insert_with(|| serde_json::json!({})))
        .and_then(Value::as_object_mut)
    {
        metadata.insert("mlflow.trace.tokenUsage".into(), Value::String(usage));
    }
}

/// The token usage of a trace's spans (their stored JSON) as MLflow sums it into `mlflow.trace.tokenUsage`,
/// or none when no span reports any.
pub(super) fn usage_summary(contents: &[String]) -> Option<String> {
    let mut parents = HashMap::new();
    let mut usages = HashMap::new();
    for content in contents {
        let content: Value = serde_json::from_str(content).unwrap_or_default();
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
    // Whether a span has an ancestor with usage, found once per span: each walk up stops at a span already
    // known, so a trace of 100,000 spans (a long chain, or hostile ids making a cycle) is walked in linear
    // time, inside the write transaction.
    let mut above: HashMap<&str, bool> = HashMap::new();
    for (span_id, usage) in &usages {
        let mut path: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut node = span_id.as_str();
        let covered = loop {
            let Some(parent) = parents.get(node).map(String::as_str) else {
                break false;
            };
            if usages.contains_key(parent) {
                break true;
            }
            if let Some(known) = above.get(parent) {
                break *known;
            }
            if !seen.insert(parent) {
                break false;
            }
            path.push(parent);
            node = parent;
        };
        above.insert(span_id.as_str(), covered);
        for visited in path {
            above.insert(visited, covered);
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
    (!entries.is_empty()).then(|| format!("{{{}}}", entries.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::usage_summary;
    use serde_json::json;

    fn span(id: &str, parent: Option<&str>, usage: Option<i64>) -> String {
        let mut attributes = Vec::new();
        if let Some(tokens) = usage {
            let usage = json!({"input_tokens": tokens, "output_tokens": 1}).to_string();
            attributes.push(json!({"key": "mlflow.chat.tokenUsage", "value": {"string_value": usage}}));
        }
        let mut content = json!({"span_id": id, "name": id, "attributes": attributes});
        if let Some(parent) = parent {
            content["parent_span_id"] = json!(parent);
        }
        content.to_string()
    }

    #[test]
    fn usage_is_summed_once_per_branch_in_linear_time_whatever_the_parents() {
        // A parent's usage covers its children's.
        let nested = [
            span("r", None, Some(10)),
            span("c", Some("r"), Some(4)),
            span("o", None, Some(2)),
        ];
        assert_eq!(
            usage_summary(&nested).as_deref(),
            Some("{\"input_tokens\": 12, \"output_tokens\": 2, \"total_tokens\": 14}")
        );
        // Twenty thousand spans under a cycle of parents without usage, and one under a chain of fifty
        // thousand: each counted, each walk stopping where an earlier one did.
        let mut hostile = vec![span("a", Some("b"), None), span("b", Some("a"), None)];
        hostile.extend((0..20_000).map(|n| span(&format!("l{n}"), Some("a"), Some(1))));
        hostile.extend((0..50_000).map(|n| {
            span(
                &format!("k{n}"),
                (n > 0).then(|| format!("k{}", n - 1)).as_deref(),
                None,
            )
        }));
        hostile.push(span("deep", Some("k49999"), Some(5)));
        assert_eq!(
            usage_summary(&hostile).as_deref(),
            Some("{\"input_tokens\": 20005, \"output_tokens\": 20001, \"total_tokens\": 40006}")
        );
        assert_eq!(usage_summary(&[span("x", None, None)]), None);
    }
}
