//! Embedded schema migrations, applied at start inside one transaction. A database written by a newer
//! binary (a higher schema version than we know) is refused rather than guessed at.

use super::query_text;
use super::{Dialect, SqlStore};
use crate::error::{StoreError, StoreResult};
use sqlx::Row;

/// The migrations in order; index + 1 is the schema version each one produces.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_deployments.sql"),
    include_str!("../../migrations/0003_version_content_digest.sql"),
    include_str!("../../migrations/0004_monitoring.sql"),
    include_str!("../../migrations/0005_datasets.sql"),
    include_str!("../../migrations/0006_gates.sql"),
    include_str!("../../migrations/0007_pipelines.sql"),
    include_str!("../../migrations/0008_trace_spans.sql"),
    include_str!("../../migrations/0009_trace_run_links.sql"),
    include_str!("../../migrations/0010_eval_datasets.sql"),
    include_str!("../../migrations/0011_scorers.sql"),
    include_str!("../../migrations/0012_assessments_and_issues.sql"),
    include_str!("../../migrations/0013_webhooks.sql"),
    include_str!("../../migrations/0014_span_mlflow_text.sql"),
    include_str!("../../migrations/0015_metrics_by_model_partial.sql"),
];

/// The newest schema version this binary knows.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn render(migration: &str, dialect: Dialect) -> String {
    let (experiment_id_type, without_rowid) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "WITHOUT ROWID"),
        Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", ""),
    };
    migration
        .replace("{{EXPERIMENT_ID_TYPE}}", experiment_id_type)
        .replace("{{WITHOUT_ROWID}}", without_rowid)
        .replace("{{AUTO_ID}}", experiment_id_type)
}

impl SqlStore {
    /// Brings the schema up to date and makes sure the Default experiment exists.
    pub(crate) async fn migrate(&self) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        if self.dialect == Dialect::Postgres {
            // Replicas starting together must not migrate concurrently.
            sqlx::query("SELECT pg_advisory_xact_lock(7361832)")
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS loopline_schema (version BIGINT NOT NULL)")
            .execute(&mut *transaction)
            .await?;
        let current_version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS version FROM loopline_schema")
            .fetch_one(&mut *transaction)
            .await?
            .try_get("version")?;
        if current_version > LATEST_SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: current_version,
                supported: LATEST_SCHEMA_VERSION,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(current_version as usize) {
            let version = index as i64 + 1;
            tracing::info!(version, "applying metadata schema migration");
            for statement in render(migration, self.dialect).split(';') {
                let statement = strip_comments(statement);
                if statement.is_empty() {
                    continue;
                }
                query_text(statement).execute(&mut *transaction).await?;
            }
            sqlx::query("DELETE FROM loopline_schema")
                .execute(&mut *transaction)
                .await?;
            sqlx::query("INSERT INTO loopline_schema (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *transaction)
                .await?;
        }
        let now = loopline_core::time::now_millis();
        let default_location = format!("{}/0", self.default_artifact_root);
        sqlx::query(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (0, 'Default', $1, 'active', $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(default_location)
        .bind(now)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn comments_hold_no_statement_separator() {
        // Statements are split at ';' before comments are dropped: one in a comment cuts a statement in two.
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            for line in migration.lines().filter(|line| line.trim_start().starts_with("--")) {
                assert!(
                    !line.contains(';'),
                    "migration {} has ';' in a comment: {line}",
                    index + 1
                );
            }
        }
    }
}
