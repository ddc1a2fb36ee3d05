//! log_batch on the SQLite writer's own connection: the same checks and rows as the sqlx path in `runs.rs`
//! (the conformance suite runs both), one prepared statement per row kind, reused across requests.

use super::rows::stored_metric_value;
use super::runs::{
    LATEST_METRIC_UPSERT, RUN_NAME_TAG, latest_per_key, refuse_changed_params, require_active_stage, submitted_params,
};
use super::sqlite_writer::writer_error;
use crate::access::AuditEntry;
use crate::entities::{Metric, Param, Tag};
use crate::error::{StoreError, StoreResult};
use crate::queries::LogBatch;
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter};
use std::sync::OnceLock;

/// Writes one batch, refusing it whole when the run is not active or a param would change.
pub(super) fn log_batch(connection: &Connection, run_id: &str, batch: &LogBatch) -> StoreResult<()> {
    let found: Option<(String, i64)> = connection
        .prepare_cached("SELECT lifecycle_stage, run_key FROM runs WHERE run_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|error| writer_error(&error))?;
    let (stage, run_key) = found.ok_or_else(|| StoreError::NotFound(format!("Run with id={run_id} not found")))?;
    require_active_stage(run_id, &stage)?;
    insert_params(connection, run_id, &batch.params)?;
    insert_metrics(connection, run_key, &batch.metrics).map_err(|error| writer_error(&error))?;
    upsert_tags(connection, run_id, &batch.tags).map_err(|error| writer_error(&error))
}

fn insert_params(connection: &Connection, run_id: &str, params: &[Param]) -> StoreResult<()> {
    if params.is_empty() {
        return Ok(());
    }
    let submitted = submitted_params(params)?;
    let mut stored = Vec::new();
    (|| {
        let mut insert = connection.prepare_cached(
            "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (run_id, key) DO NOTHING",
        )?;
        let mut read = connection.prepare_cached("SELECT value FROM params WHERE run_id = ?1 AND key = ?2")?;
        for (key, value) in &submitted {
            insert.execute(params![run_id, key, value])?;
            let kept: String = read.query_row(params![run_id, key], |row| row.get(0))?;
            stored.push((key.to_string(), kept));
        }
        Ok(())
    })()
    .map_err(|error: rusqlite::Error| writer_error(&error))?;
    refuse_changed_params(run_id, &submitted, stored)
}

/// Points per multi-row INSERT (9 values each, under SQLite's limit of 32,766): one statement run instead
/// of a hundred.
const POINTS_PER_INSERT: usize = 100;

fn insert_metrics(connection: &Connection, run_key: i64, metrics: &[Metric]) -> rusqlite::Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    let values: Vec<(f64, i64)> = metrics.iter().map(|point| stored_metric_value(point.value)).collect();
    let (many, one) = metric_inserts();
    let mut start = 0;
    while start < metrics.len() {
        let rows = if metrics.len() - start >= POINTS_PER_INSERT {
            POINTS_PER_INSERT
        } else {
            1
        };
        let mut insert = connection.prepare_cached(if rows == 1 { one } else { many })?;
        let mut bound: Vec<&dyn ToSql> = Vec::with_capacity(rows * 9);
        for (point, (value, is_nan)) in metrics[start..start + rows].iter().zip(&values[start..start + rows]) {
            bound.extend([
                &run_key as &dyn ToSql,
                &point.key,
                &point.step,
                &point.timestamp,
                value,
                is_nan,
                &point.model_id,
                &point.dataset_name,
                &point.dataset_digest,
            ]);
        }
        insert.execute(params_from_iter(bound))?;
        start += rows;
    }
    static LATEST: OnceLock<String> = OnceLock::new();
    let latest = LATEST.get_or_init(|| {
        format!(
            "INSERT INTO latest_metrics (run_key, key, step, timestamp, value, is_nan) VALUES (?1, ?2, ?3, ?4, ?5, ?6)\
             {LATEST_METRIC_UPSERT}"
        )
    });
    let mut upsert = connection.prepare_cached(latest)?;
    for point in latest_per_key(metrics) {
        let (value, is_nan) = stored_metric_value(point.value);
        upsert.execute(params![run_key, point.key, point.step, point.timestamp, value, is_nan])?;
    }
    Ok(())
}

/// `INSERT INTO metrics` of [`POINTS_PER_INSERT`] points and of one, duplicates ignored (a batch sent twice
/// stores its points once). Made once: the statement cache is looked up by the text.
fn metric_inserts() -> (&'static str, &'static str) {
    static TEXTS: OnceLock<(String, String)> = OnceLock::new();
    let (many, one) = TEXTS.get_or_init(|| {
        let rows = |count: usize| {
            format!(
                "INSERT INTO metrics (run_key, key, step, timestamp, value, is_nan, model_id, dataset_name, \
                 dataset_digest) VALUES {} ON CONFLICT DO NOTHING",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; count].join(", ")
            )
        };
        (rows(POINTS_PER_INSERT), rows(1))
    });
    (many, one)
}

fn upsert_tags(connection: &Connection, run_id: &str, tags: &[Tag]) -> rusqlite::Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut upsert = connection.prepare_cached(
        "INSERT INTO tags (run_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
    )?;
    for tag in tags {
        upsert.execute(params![run_id, tag.key, tag.value])?;
        if tag.key == RUN_NAME_TAG {
            connection
                .prepare_cached("UPDATE runs SET name = ?1 WHERE run_id = ?2")?
                .execute(params![tag.value, run_id])?;
        }
    }
    Ok(())
}

/// Appends audit entries with one prepared statement (the writer's transaction makes them all or none).
pub(super) fn append_audit(connection: &Connection, entries: &[AuditEntry]) -> StoreResult<()> {
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO access_audit (time, principal, token_id, method, path, action, resource_type, \
             resource_id, status, outcome, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(|error| writer_error(&error))?;
    for entry in entries {
        insert
            .execute(params![
                entry.time,
                entry.principal,
                entry.token_id,
                entry.method,
                entry.path,
                entry.action,
                entry.resource_type,
                entry.resource_id,
                entry.status,
                entry.outcome,
                entry.source,
            ])
            .map_err(|error| writer_error(&error))?;
    }
    Ok(())
}
