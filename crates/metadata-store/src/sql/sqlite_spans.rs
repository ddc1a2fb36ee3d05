//! log_spans (and the deletion of traces) on the SQLite writer's own connection: the same checks and rows as the sqlx path in
//! `trace_spans.rs` (the conformance suite runs both), with prepared statements reused across calls.
//!
//! Every LLM-gateway call and every OTLP export ends here, often a thousand a second. Through the sqlx pool
//! each of a trace's twenty-odd statements was a hand-off to a connection's worker thread, and the writes
//! went through connections set up for reading (a 32 MiB page cache each, the file mapped), so the page
//! caches of several connections filled as traces accumulated. The writer's connection keeps SQLite's
//! small default cache and commits concurrent calls together.

use super::assessment_rows::assessment_row;
use super::rows::Columns;
use super::sqlite_writer::writer_error;
use super::trace_spans::{
    SPAN_UPSERT, STORED_TRACE_COLUMNS, SpanRow, check_span_room, folded_trace, keeps_own_usage, set_token_usage,
    usage_summary,
};
use super::traces::{ASSESSMENT_INSERT, TRACE_UPSERT, string_map};
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewTrace, SpanBatch};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::LazyLock;

/// The shared statements with rusqlite's numbered parameters (`?n`) for sqlx's (`$n`).
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

static SPAN_UPSERT_NUMBERED: LazyLock<String> = LazyLock::new(|| numbered(SPAN_UPSERT));
static TRACE_UPSERT_NUMBERED: LazyLock<String> = LazyLock::new(|| numbered(TRACE_UPSERT));
static ASSESSMENT_INSERT_NUMBERED: LazyLock<String> = LazyLock::new(|| numbered(ASSESSMENT_INSERT));
static STORED_TRACE_SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {STORED_TRACE_COLUMNS} FROM traces WHERE trace_id = ?1"));

/// Each searchable copy of a trace's info: its field, and the statements that clear and fill its table
/// (written out, not formatted for every trace).
const SEARCHABLE: [(&str, &str, &str); 2] = [
    (
        "tags",
        "DELETE FROM trace_tags WHERE trace_id = ?1",
        "INSERT INTO trace_tags (trace_id, key, value) VALUES (?1, ?2, ?3)",
    ),
    (
        "trace_metadata",
        "DELETE FROM trace_metadata WHERE trace_id = ?1",
        "INSERT INTO trace_metadata (trace_id, key, value) VALUES (?1, ?2, ?3)",
    ),
];

/// Stores each trace's batch, all or nothing (the writer runs this in its own savepoint or transaction).
pub(super) fn log_spans(connection: &Connection, batches: &[SpanBatch]) -> StoreResult<()> {
    for batch in batches {
        require_experiment(connection, &batch.trace.experiment_id)?;
    }
    for batch in batches {
        log_batch(connection, batch)?;
    }
    Ok(())
}

fn require_experiment(connection: &Connection, experiment_id: &str) -> StoreResult<()> {
    let id = super::parse_experiment_id(experiment_id)?;
    let found: Option<i64> = connection
        .prepare_cached("SELECT experiment_id FROM experiments WHERE experiment_id = ?1")
        .and_then(|mut statement| statement.query_row([id], |row| row.get(0)).optional())
        .map_err(|error| writer_error(&error))?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("No Experiment with id={id} exists")))
}

fn log_batch(connection: &Connection, batch: &SpanBatch) -> StoreResult<()> {
    let (mut trace, experiment_id) = {
        let mut statement = connection
            .prepare_cached(&STORED_TRACE_SELECT)
            .map_err(|error| writer_error(&error))?;
        let mut rows = statement
            .query([&batch.trace.trace_id])
            .map_err(|error| writer_error(&error))?;
        let stored = rows.next().map_err(|error| writer_error(&error))?;
        folded_trace(batch, stored.map(|row| row as &dyn Columns))?
    };
    let held: i64 = connection
        .prepare_cached("SELECT COUNT(*) FROM trace_spans WHERE trace_id = ?1")
        .and_then(|mut statement| statement.query_row([&trace.trace_id], |row| row.get(0)))
        .map_err(|error| writer_error(&error))?;
    check_span_room(&trace.trace_id, held, batch.spans.len())?;
    let mut usage_seen = false;
    {
        let mut upsert = connection
            .prepare_cached(&SPAN_UPSERT_NUMBERED)
            .map_err(|error| writer_error(&error))?;
        for span in &batch.spans {
            let row = SpanRow::new(span);
            usage_seen |= row.has_usage;
            upsert
                .execute(params![
                    row.trace_id,
                    row.span_id,
                    row.start_ns,
                    row.columns.end_ns.unwrap_or(0),
                    row.columns.name,
                    row.columns.span_type,
                    row.columns.status,
                    row.columns.model_name,
                    row.columns.model_provider,
                    row.columns.input_cost.unwrap_or(0.0),
                    row.columns.output_cost.unwrap_or(0.0),
                    row.columns.total_cost.unwrap_or(0.0),
                    row.mlflow_text,
                    row.content,
                    i64::from(row.columns.end_ns.is_some()),
                    i64::from(row.columns.input_cost.is_some()),
                    i64::from(row.columns.output_cost.is_some()),
                    i64::from(row.columns.total_cost.is_some()),
                ])
                .map_err(|error| writer_error(&error))?;
        }
    }
    // The usage is summed before the trace's row is written, so the row is written once.
    if usage_seen && !keeps_own_usage(&trace.trace_info) {
        let contents = span_contents(connection, &trace.trace_id).map_err(|error| writer_error(&error))?;
        if let Some(usage) = usage_summary(&contents) {
            set_token_usage(&mut trace.trace_info, usage);
        }
    }
    write_trace_rows(connection, &trace, experiment_id).map_err(|error| writer_error(&error))
}

fn span_contents(connection: &Connection, trace_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare_cached("SELECT content FROM trace_spans WHERE trace_id = ?1")?;
    let contents = statement.query_map([trace_id], |row| row.get(0))?;
    contents.collect()
}

/// The trace's row and the searchable copies of its tags, metadata and assessments, as
/// `traces::write_trace_rows` writes them.
fn write_trace_rows(connection: &Connection, trace: &NewTrace, experiment_id: i64) -> rusqlite::Result<()> {
    let trace_id = &trace.trace_id;
    connection.prepare_cached(&TRACE_UPSERT_NUMBERED)?.execute(params![
        trace_id,
        experiment_id,
        trace.timestamp_ms,
        trace.execution_time_ms,
        trace.state,
        trace.trace_info.to_string(),
    ])?;
    for (field, clear, insert) in SEARCHABLE {
        connection.prepare_cached(clear)?.execute([trace_id])?;
        let mut insert = connection.prepare_cached(insert)?;
        for (key, value) in string_map(&trace.trace_info, field) {
            insert.execute(params![trace_id, key, value])?;
        }
    }
    connection
        .prepare_cached("DELETE FROM trace_assessments WHERE trace_id = ?1")?
        .execute([trace_id])?;
    let assessments = trace
        .trace_info
        .get("assessments")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if assessments.is_empty() {
        return Ok(());
    }
    let mut insert = connection.prepare_cached(&ASSESSMENT_INSERT_NUMBERED)?;
    for row in assessments.iter().filter_map(assessment_row) {
        insert.execute(params![
            trace_id,
            row.assessment_id,
            row.kind,
            row.name,
            row.value,
            row.aggregate_value.unwrap_or(0.0),
            i64::from(row.is_numeric),
            i64::from(row.valid),
            row.create_time_ms,
            i64::from(row.aggregate_value.is_some()),
        ])?;
    }
    Ok(())
}

/// The tables holding a trace's rows, the trace itself last.
const TRACE_TABLES: [&str; 6] = [
    "DELETE FROM trace_tags WHERE trace_id = ?1",
    "DELETE FROM trace_metadata WHERE trace_id = ?1",
    "DELETE FROM trace_spans WHERE trace_id = ?1",
    "DELETE FROM trace_assessments WHERE trace_id = ?1",
    "DELETE FROM trace_run_links WHERE trace_id = ?1",
    "DELETE FROM traces WHERE trace_id = ?1",
];

/// Deletes traces of an experiment: the ones named, or else the oldest up to `max_traces` started at or
/// before `max_timestamp`; how many.
pub(super) fn delete_traces(
    connection: &Connection,
    experiment_id: i64,
    trace_ids: &[String],
    max_timestamp: Option<i64>,
    max_traces: Option<i64>,
) -> StoreResult<i64> {
    let fail = |error: rusqlite::Error| writer_error(&error);
    let mut doomed = Vec::new();
    if !trace_ids.is_empty() {
        let mut found = connection
            .prepare_cached("SELECT 1 FROM traces WHERE experiment_id = ?1 AND trace_id = ?2")
            .map_err(fail)?;
        for trace_id in trace_ids {
            if found.exists(params![experiment_id, trace_id]).map_err(fail)? && !doomed.contains(trace_id) {
                doomed.push(trace_id.clone());
            }
        }
    } else if let Some(max_timestamp) = max_timestamp {
        let limit = max_traces.unwrap_or(i64::MAX).max(0);
        let mut oldest = connection
            .prepare_cached(
                "SELECT trace_id FROM traces WHERE experiment_id = ?1 AND timestamp_ms <= ?2 \
                 ORDER BY timestamp_ms LIMIT ?3",
            )
            .map_err(fail)?;
        let rows = oldest
            .query_map(params![experiment_id, max_timestamp, limit], |row| {
                row.get::<_, String>(0)
            })
            .map_err(fail)?;
        for row in rows {
            doomed.push(row.map_err(fail)?);
        }
    }
    for statement in TRACE_TABLES {
        let mut delete = connection.prepare_cached(statement).map_err(fail)?;
        for trace_id in &doomed {
            delete.execute([trace_id]).map_err(fail)?;
        }
    }
    Ok(doomed.len() as i64)
}
