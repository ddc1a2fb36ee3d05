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
    include_str!("../../migrations/0016_integer_run_keys.sql"),
    include_str!("../../migrations/0017_access.sql"),
    include_str!("../../migrations/0018_gateway_keys.sql"),
    include_str!("../../migrations/0019_gateway_catalog.sql"),
    include_str!("../../migrations/0020_feature_definitions.sql"),
    include_str!("../../migrations/0021_dataset_lineage.sql"),
];

/// The newest schema version this binary knows.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn render(migration: &str, dialect: Dialect) -> String {
    let (experiment_id_type, without_rowid) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "WITHOUT ROWID"),
        Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", ""),
    };
    // Run keys: PostgreSQL draws them from a sequence; SQLite numbers the existing runs by their row id and
    // gives each new run the next one under its single writer (`next_run_key`).
    let (run_key_sequence, next_run_key) = match dialect {
        Dialect::Sqlite => ("", "rowid"),
        Dialect::Postgres => ("CREATE SEQUENCE IF NOT EXISTS run_keys", "nextval('run_keys')"),
    };
    migration
        .replace("{{EXPERIMENT_ID_TYPE}}", experiment_id_type)
        .replace("{{WITHOUT_ROWID}}", without_rowid)
        .replace("{{RUN_KEY_SEQUENCE}}", run_key_sequence)
        .replace("{{NEXT_RUN_KEY}}", next_run_key)
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
    use super::{Dialect, MIGRATIONS, render, strip_comments};
    use crate::SqlStore;
    use crate::queries::PageRequest;
    use crate::traits::RunStore;
    use sqlx::AssertSqlSafe;

    /// A store written before integer run keys (schema 15) keeps every point and the latest values after
    /// the upgrade, and new runs get keys of their own.
    #[tokio::test]
    async fn metric_tables_move_to_integer_run_keys_without_losing_points() {
        sqlx::any::install_default_drivers();
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("old.db");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        for migration in &MIGRATIONS[..15] {
            for statement in render(migration, Dialect::Sqlite).split(';') {
                let statement = strip_comments(statement);
                if !statement.is_empty() {
                    sqlx::query(AssertSqlSafe(statement)).execute(&pool).await.unwrap();
                }
            }
        }
        let setup = [
            "CREATE TABLE loopline_schema (version BIGINT NOT NULL)",
            "INSERT INTO loopline_schema (version) VALUES (15)",
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, \
             last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 1)",
            "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, lifecycle_stage, artifact_uri) \
             VALUES ('aaaa', 0, 'a', 'u', 'FINISHED', 1, 'active', 'x'), ('bbbb', 0, 'b', 'u', 'RUNNING', 2, 'active', 'y')",
            "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan, model_id) VALUES \
             ('aaaa', 'loss', 0, 10, 0.5, 0, NULL), ('aaaa', 'loss', 1, 11, 0.25, 0, 'm-1'), \
             ('bbbb', 'loss', 0, 12, 0.0, 1, NULL)",
            "INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) VALUES \
             ('aaaa', 'loss', 1, 11, 0.25, 0), ('bbbb', 'loss', 0, 12, 0.0, 1)",
        ];
        for statement in setup {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqlStore::connect(&format!("sqlite:///{}", path.display()), "mlflow-artifacts:")
            .await
            .unwrap();
        let page = PageRequest {
            max_results: 100,
            page_token: None,
        };
        let history = store.metric_history("aaaa", "loss", &page).await.unwrap().items;
        let values: Vec<(i64, f64)> = history.iter().map(|point| (point.step, point.value)).collect();
        assert_eq!(values, vec![(0, 0.5), (1, 0.25)]);
        let latest = store.get_run("aaaa").await.unwrap().data.metrics;
        assert_eq!((latest.len(), latest[0].value), (1, 0.25));
        assert!(store.get_run("bbbb").await.unwrap().data.metrics[0].value.is_nan());

        let new_run = store
            .create_run(&crate::queries::NewRun {
                experiment_id: "0".into(),
                run_name: "new".into(),
                user_id: "u".into(),
                start_time: 3,
                tags: vec![],
            })
            .await
            .unwrap();
        let batch = crate::queries::LogBatch {
            metrics: vec![crate::entities::Metric {
                key: "loss".into(),
                value: 9.0,
                timestamp: 13,
                step: 0,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            }],
            ..Default::default()
        };
        store.log_batch(&new_run.info.run_id, &batch).await.unwrap();
        let history = store.metric_history("aaaa", "loss", &page).await.unwrap().items;
        assert_eq!(history.len(), 2, "the new run's points must not land on an old run");
        let fresh = store
            .metric_history(&new_run.info.run_id, "loss", &page)
            .await
            .unwrap()
            .items;
        assert_eq!(fresh.iter().map(|point| point.value).collect::<Vec<_>>(), vec![9.0]);
        store.close().await;
    }

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
