//! Monitors with optimistic revisions, their window results and history, and model versions' reference
//! profiles.

use super::rows::{integer, optional_text, text};
use super::{SqlStore, is_unique_violation};
use crate::entities::{MonitorEvent, MonitorRecord, MonitorWindow, ReferenceRecord};
use crate::error::{StoreError, StoreResult};
use crate::traits::{MonitorStore, MonitorUpdate};
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

const MONITOR_COLUMNS: &str = "name, spec, state, revision, creation_time, last_update_time";
const WINDOW_COLUMNS: &str = "monitor, window_key, window_start, window_end, status, rows_seen, labels_seen, \
                              figures, report_path, evaluated_time";

fn monitor(row: &AnyRow) -> StoreResult<MonitorRecord> {
    Ok(MonitorRecord {
        name: text(row, "name")?,
        spec: text(row, "spec")?,
        state: text(row, "state")?,
        revision: integer(row, "revision")?,
        creation_time: integer(row, "creation_time")?,
        last_update_time: integer(row, "last_update_time")?,
    })
}

fn window(row: &AnyRow) -> StoreResult<MonitorWindow> {
    Ok(MonitorWindow {
        monitor: text(row, "monitor")?,
        window_key: integer(row, "window_key")?,
        window_start: integer(row, "window_start")?,
        window_end: integer(row, "window_end")?,
        status: text(row, "status")?,
        rows_seen: integer(row, "rows_seen")?,
        labels_seen: integer(row, "labels_seen")?,
        figures: text(row, "figures")?,
        report_path: optional_text(row, "report_path")?,
        evaluated_time: integer(row, "evaluated_time")?,
    })
}

fn monitor_event(row: &AnyRow) -> StoreResult<MonitorEvent> {
    Ok(MonitorEvent {
        event_id: integer(row, "event_id")?,
        monitor: text(row, "monitor")?,
        timestamp_ms: integer(row, "timestamp_ms")?,
        kind: text(row, "kind")?,
        actor: text(row, "actor")?,
        message: text(row, "message")?,
        details: text(row, "details")?,
    })
}

fn monitor_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("Monitor '{name}' does not exist."))
}

async fn append_events(transaction: &mut Transaction<'_, Any>, events: &[MonitorEvent]) -> StoreResult<()> {
    for entry in events {
        sqlx::query(
            "INSERT INTO monitor_events (monitor, timestamp_ms, kind, actor, message, details) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.monitor.clone())
        .bind(entry.timestamp_ms)
        .bind(entry.kind.clone())
        .bind(entry.actor.clone())
        .bind(entry.message.clone())
        .bind(entry.details.clone())
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

async fn store_windows(transaction: &mut Transaction<'_, Any>, windows: &[MonitorWindow]) -> StoreResult<()> {
    for result in windows {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO monitor_windows ({WINDOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (monitor, window_key) DO UPDATE SET window_start = excluded.window_start, \
             window_end = excluded.window_end, status = excluded.status, rows_seen = excluded.rows_seen, \
             labels_seen = excluded.labels_seen, figures = excluded.figures, report_path = excluded.report_path, \
             evaluated_time = excluded.evaluated_time"
        )))
        .bind(result.monitor.clone())
        .bind(result.window_key)
        .bind(result.window_start)
        .bind(result.window_end)
        .bind(result.status.clone())
        .bind(result.rows_seen)
        .bind(result.labels_seen)
        .bind(result.figures.clone())
        .bind(result.report_path.clone())
        .bind(result.evaluated_time)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

fn sql_limit(limit: usize) -> i64 {
    limit.min(i64::MAX as usize) as i64
}

#[async_trait]
impl MonitorStore for SqlStore {
    async fn create_monitor(
        &self,
        name: &str,
        spec: &str,
        state: &str,
        event: &MonitorEvent,
    ) -> StoreResult<MonitorRecord> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let now = now_millis();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO monitors ({MONITOR_COLUMNS}) VALUES ($1, $2, $3, 1, $4, $5)"
            )))
            .bind(name.to_string())
            .bind(spec.to_string())
            .bind(state.to_string())
            .bind(now)
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::AlreadyExists(format!("Monitor '{name}' already exists."))
                } else {
                    StoreError::Database(error)
                }
            })?;
            append_events(&mut transaction, std::slice::from_ref(event)).await?;
            transaction.commit().await?;
        }
        self.get_monitor(name).await
    }

    async fn get_monitor(&self, name: &str) -> StoreResult<MonitorRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors WHERE name = $1"
        )))
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| monitor_not_found(name))?;
        monitor(&row)
    }

    async fn list_monitors(&self) -> StoreResult<Vec<MonitorRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(monitor).collect()
    }

    async fn update_monitor(
        &self,
        name: &str,
        expected_revision: i64,
        update: &MonitorUpdate<'_>,
    ) -> StoreResult<MonitorRecord> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE monitors SET spec = $1, state = $2, revision = revision + 1, last_update_time = $3 \
                 WHERE name = $4 AND revision = $5",
            )
            .bind(update.spec.to_string())
            .bind(update.state.to_string())
            .bind(now_millis())
            .bind(name.to_string())
            .bind(expected_revision)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if updated == 0 {
                let current = sqlx::query("SELECT revision FROM monitors WHERE name = $1")
                    .bind(name.to_string())
                    .fetch_optional(&mut *transaction)
                    .await?;
                return Err(match current {
                    None => monitor_not_found(name),
                    Some(row) => StoreError::Conflict(format!(
                        "monitor '{name}' changed meanwhile (revision {} now, the change was based on {expected_revision}); read it again and retry",
                        integer(&row, "revision")?
                    )),
                });
            }
            store_windows(&mut transaction, update.windows).await?;
            append_events(&mut transaction, update.events).await?;
            transaction.commit().await?;
        }
        self.get_monitor(name).await
    }

    async fn delete_monitor(&self, name: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM monitors WHERE name = $1")
            .bind(name.to_string())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(monitor_not_found(name));
        }
        for table in ["monitor_windows", "monitor_events"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE monitor = $1")))
                .bind(name.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn monitor_windows(&self, monitor: &str, from_key: i64, limit: usize) -> StoreResult<Vec<MonitorWindow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WINDOW_COLUMNS} FROM monitor_windows WHERE monitor = $1 AND window_key >= $2 \
             ORDER BY window_key LIMIT $3"
        )))
        .bind(monitor.to_string())
        .bind(from_key)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(window).collect()
    }

    async fn latest_monitor_windows(&self, monitor: &str, limit: usize) -> StoreResult<Vec<MonitorWindow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WINDOW_COLUMNS} FROM monitor_windows WHERE monitor = $1 ORDER BY window_key DESC LIMIT $2"
        )))
        .bind(monitor.to_string())
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(window).collect()
    }

    async fn monitor_events(&self, monitor: &str, after: i64, limit: usize) -> StoreResult<Vec<MonitorEvent>> {
        let rows = sqlx::query(
            "SELECT event_id, monitor, timestamp_ms, kind, actor, message, details FROM monitor_events \
             WHERE monitor = $1 AND event_id > $2 ORDER BY event_id LIMIT $3",
        )
        .bind(monitor.to_string())
        .bind(after)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(monitor_event).collect()
    }

    async fn set_reference(&self, reference: &ReferenceRecord) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        sqlx::query(
            "INSERT INTO model_version_references (name, version, profile, source, set_time) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO UPDATE SET profile = excluded.profile, \
             source = excluded.source, set_time = excluded.set_time",
        )
        .bind(reference.name.clone())
        .bind(reference.version.clone())
        .bind(reference.profile.clone())
        .bind(reference.source.clone())
        .bind(reference.set_time)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_reference(&self, name: &str, version: &str) -> StoreResult<ReferenceRecord> {
        let row = sqlx::query(
            "SELECT name, version, profile, source, set_time FROM model_version_references \
             WHERE name = $1 AND version = $2",
        )
        .bind(name.to_string())
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "model '{name}' version {version} has no reference profile; set one with `loopline monitor reference`"
            ))
        })?;
        Ok(ReferenceRecord {
            name: text(&row, "name")?,
            version: text(&row, "version")?,
            profile: text(&row, "profile")?,
            source: text(&row, "source")?,
            set_time: integer(&row, "set_time")?,
        })
    }
}
