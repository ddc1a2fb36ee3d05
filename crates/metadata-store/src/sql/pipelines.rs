//! Registered pipelines (optimistic revisions) and their runs.

use super::rows::{integer, optional_integer, text};
use super::{SqlStore, is_unique_violation};
use crate::entities::{PipelineRecord, PipelineRunRecord};
use crate::error::{StoreError, StoreResult};
use crate::traits::PipelineStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;

const PIPELINE_COLUMNS: &str = "name, spec, state, revision, creation_time, last_update_time";
const RUN_COLUMNS: &str = "run_id, pipeline, cause, status, record, owner, cancel_requested, creation_time, \
                           last_update_time, end_time";

fn pipeline(row: &AnyRow) -> StoreResult<PipelineRecord> {
    Ok(PipelineRecord {
        name: text(row, "name")?,
        spec: text(row, "spec")?,
        state: text(row, "state")?,
        revision: integer(row, "revision")?,
        creation_time: integer(row, "creation_time")?,
        last_update_time: integer(row, "last_update_time")?,
    })
}

fn run(row: &AnyRow) -> StoreResult<PipelineRunRecord> {
    Ok(PipelineRunRecord {
        run_id: text(row, "run_id")?,
        pipeline: text(row, "pipeline")?,
        cause: text(row, "cause")?,
        status: text(row, "status")?,
        record: text(row, "record")?,
        owner: text(row, "owner")?,
        cancel_requested: integer(row, "cancel_requested")? != 0,
        creation_time: integer(row, "creation_time")?,
        last_update_time: integer(row, "last_update_time")?,
        end_time: optional_integer(row, "end_time")?,
    })
}

fn pipeline_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("Pipeline '{name}' does not exist."))
}

fn run_not_found(run_id: &str) -> StoreError {
    StoreError::NotFound(format!("Pipeline run '{run_id}' does not exist."))
}

#[async_trait]
impl PipelineStore for SqlStore {
    async fn create_pipeline(&self, name: &str, spec: &str, state: &str) -> StoreResult<PipelineRecord> {
        {
            let _writer = self.writer_guard().await;
            let now = now_millis();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO pipelines ({PIPELINE_COLUMNS}) VALUES ($1, $2, $3, 1, $4, $5)"
            )))
            .bind(name.to_string())
            .bind(spec.to_string())
            .bind(state.to_string())
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::AlreadyExists(format!("Pipeline '{name}' already exists."))
                } else {
                    StoreError::Database(error)
                }
            })?;
        }
        self.get_pipeline(name).await
    }

    async fn get_pipeline(&self, name: &str) -> StoreResult<PipelineRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE name = $1"
        )))
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| pipeline_not_found(name))?;
        pipeline(&row)
    }

    async fn list_pipelines(&self) -> StoreResult<Vec<PipelineRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pipeline).collect()
    }

    async fn update_pipeline(
        &self,
        name: &str,
        expected_revision: i64,
        spec: &str,
        state: &str,
    ) -> StoreResult<PipelineRecord> {
        {
            let _writer = self.writer_guard().await;
            let updated = sqlx::query(
                "UPDATE pipelines SET spec = $1, state = $2, revision = revision + 1, last_update_time = $3 \
                 WHERE name = $4 AND revision = $5",
            )
            .bind(spec.to_string())
            .bind(state.to_string())
            .bind(now_millis())
            .bind(name.to_string())
            .bind(expected_revision)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if updated == 0 {
                let current = sqlx::query("SELECT revision FROM pipelines WHERE name = $1")
                    .bind(name.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                return Err(match current {
                    None => pipeline_not_found(name),
                    Some(row) => StoreError::Conflict(format!(
                        "pipeline '{name}' changed meanwhile (revision {} now, the change was based on {expected_revision}); read it again and retry",
                        integer(&row, "revision")?
                    )),
                });
            }
        }
        self.get_pipeline(name).await
    }

    async fn delete_pipeline(&self, name: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let deleted = sqlx::query("DELETE FROM pipelines WHERE name = $1")
            .bind(name.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(pipeline_not_found(name));
        }
        Ok(())
    }

    async fn create_pipeline_run(&self, record: &PipelineRunRecord) -> StoreResult<PipelineRunRecord> {
        {
            let _writer = self.writer_guard().await;
            let now = now_millis();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO pipeline_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            )))
            .bind(record.run_id.clone())
            .bind(record.pipeline.clone())
            .bind(record.cause.clone())
            .bind(record.status.clone())
            .bind(record.record.clone())
            .bind(record.owner.clone())
            .bind(i64::from(record.cancel_requested))
            .bind(now)
            .bind(now)
            .bind(record.end_time)
            .execute(&self.pool)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::AlreadyExists(format!("Pipeline run '{}' already exists.", record.run_id))
                } else {
                    StoreError::Database(error)
                }
            })?;
        }
        self.get_pipeline_run(&record.run_id).await
    }

    async fn update_pipeline_run(
        &self,
        run_id: &str,
        status: &str,
        record: &str,
        owner: &str,
        end_time: Option<i64>,
    ) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let updated = sqlx::query(
            "UPDATE pipeline_runs SET status = $1, record = $2, owner = $3, end_time = $4, last_update_time = $5 \
             WHERE run_id = $6",
        )
        .bind(status.to_string())
        .bind(record.to_string())
        .bind(owner.to_string())
        .bind(end_time)
        .bind(now_millis())
        .bind(run_id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(run_not_found(run_id));
        }
        Ok(())
    }

    async fn claim_pipeline_run(&self, run_id: &str, owner: &str) -> StoreResult<bool> {
        let _writer = self.writer_guard().await;
        let updated = sqlx::query(
            "UPDATE pipeline_runs SET status = 'running', owner = $1, last_update_time = $2 \
             WHERE run_id = $3 AND status = 'queued'",
        )
        .bind(owner.to_string())
        .bind(now_millis())
        .bind(run_id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn request_pipeline_run_cancel(&self, run_id: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let updated = sqlx::query("UPDATE pipeline_runs SET cancel_requested = 1 WHERE run_id = $1")
            .bind(run_id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(run_not_found(run_id));
        }
        Ok(())
    }

    async fn get_pipeline_run(&self, run_id: &str) -> StoreResult<PipelineRunRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE run_id = $1"
        )))
        .bind(run_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
        run(&row)
    }

    async fn pipeline_runs(&self, pipeline: Option<&str>, limit: usize) -> StoreResult<Vec<PipelineRunRecord>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = match pipeline {
            Some(name) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE pipeline = $1 \
                     ORDER BY creation_time DESC, run_id DESC LIMIT $2"
                )))
                .bind(name.to_string())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_runs ORDER BY creation_time DESC, run_id DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(run).collect()
    }

    async fn active_pipeline_runs(&self) -> StoreResult<Vec<PipelineRunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE status IN ('queued', 'running') \
             ORDER BY creation_time, run_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run).collect()
    }
}
