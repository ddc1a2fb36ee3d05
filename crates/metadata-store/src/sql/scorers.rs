//! Registered scorers on SQL: one row per version.

use super::rows::{integer, text};
use super::{SqlStore, is_unique_violation, parse_experiment_id};
use crate::error::{StoreError, StoreResult};
use crate::queries::ScorerVersion;
use crate::traits::ScorerStore;
use async_trait::async_trait;
use sqlx::any::AnyRow;

/// The most versions one scorer may have, and scorers one listing returns.
const MAX_ROWS: i64 = 10_000;

fn from_row(row: &AnyRow) -> StoreResult<ScorerVersion> {
    Ok(ScorerVersion {
        experiment_id: text(row, "experiment_id")?,
        name: text(row, "name")?,
        version: integer(row, "version")?,
        scorer_id: text(row, "scorer_id")?,
        serialized: text(row, "serialized")?,
        creation_time: integer(row, "creation_time")?,
    })
}

fn missing(experiment_id: &str, name: &str, version: Option<i64>) -> StoreError {
    StoreError::NotFound(match version {
        Some(version) => {
            format!("Scorer with name '{name}' and version {version} not found for experiment {experiment_id}.")
        }
        None => format!("Scorer with name '{name}' not found for experiment {experiment_id}."),
    })
}

const COLUMNS: &str = "experiment_id, name, version, scorer_id, serialized, creation_time";

#[async_trait]
impl ScorerStore for SqlStore {
    async fn register_scorer(&self, experiment_id: &str, name: &str, serialized: &str) -> StoreResult<ScorerVersion> {
        let stage = self.experiment_stage(parse_experiment_id(experiment_id)?).await?;
        if stage != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "experiment {experiment_id} is deleted"
            )));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let newest = sqlx::query(
            "SELECT version, scorer_id FROM scorers WHERE experiment_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(experiment_id.to_string())
        .bind(name.to_string())
        .fetch_optional(&mut *transaction)
        .await?;
        let (version, scorer_id) = match newest {
            Some(row) => (integer(&row, "version")? + 1, text(&row, "scorer_id")?),
            None => (1, loopline_core::ids::new_run_id()),
        };
        if version > MAX_ROWS {
            return Err(StoreError::InvalidParameter(format!(
                "scorer '{name}' already has {MAX_ROWS} versions"
            )));
        }
        let scorer = ScorerVersion {
            experiment_id: experiment_id.to_string(),
            name: name.to_string(),
            version,
            scorer_id,
            serialized: serialized.to_string(),
            creation_time: loopline_core::time::now_millis(),
        };
        let inserted = sqlx::query(
            "INSERT INTO scorers (experiment_id, name, version, scorer_id, serialized, creation_time) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(scorer.experiment_id.clone())
        .bind(scorer.name.clone())
        .bind(scorer.version)
        .bind(scorer.scorer_id.clone())
        .bind(scorer.serialized.clone())
        .bind(scorer.creation_time)
        .execute(&mut *transaction)
        .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "scorer '{name}' was registered by someone else at the same time; register it again"
                )));
            }
            other => {
                other?;
            }
        }
        transaction.commit().await?;
        Ok(scorer)
    }

    async fn list_scorers(&self, experiment_ids: &[String]) -> StoreResult<Vec<ScorerVersion>> {
        let mut builder = super::SqlBuilder::new(format!(
            "SELECT {COLUMNS} FROM scorers s WHERE s.version = (SELECT MAX(t.version) FROM scorers t \
             WHERE t.experiment_id = s.experiment_id AND t.name = s.name)"
        ));
        if experiment_ids.is_empty() {
            builder.push(" AND s.experiment_id IN (SELECT CAST(experiment_id AS TEXT) FROM experiments WHERE lifecycle_stage = 'active')");
        } else {
            builder.push(" AND s.experiment_id IN ");
            builder.push_text_list(experiment_ids);
        }
        builder.push(&format!(" ORDER BY s.experiment_id, s.name LIMIT {MAX_ROWS}"));
        let rows = super::built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    async fn scorer_versions(&self, experiment_id: &str, name: &str) -> StoreResult<Vec<ScorerVersion>> {
        let rows = sqlx::query(
            "SELECT experiment_id, name, version, scorer_id, serialized, creation_time FROM scorers \
             WHERE experiment_id = $1 AND name = $2 ORDER BY version",
        )
        .bind(experiment_id.to_string())
        .bind(name.to_string())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(missing(experiment_id, name, None));
        }
        rows.iter().map(from_row).collect()
    }

    async fn get_scorer(&self, experiment_id: &str, name: &str, version: Option<i64>) -> StoreResult<ScorerVersion> {
        let row = match version {
            Some(version) => {
                sqlx::query(
                    "SELECT experiment_id, name, version, scorer_id, serialized, creation_time FROM scorers \
                     WHERE experiment_id = $1 AND name = $2 AND version = $3",
                )
                .bind(experiment_id.to_string())
                .bind(name.to_string())
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT experiment_id, name, version, scorer_id, serialized, creation_time FROM scorers \
                     WHERE experiment_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                )
                .bind(experiment_id.to_string())
                .bind(name.to_string())
                .fetch_optional(&self.pool)
                .await?
            }
        };
        from_row(&row.ok_or_else(|| missing(experiment_id, name, version))?)
    }

    async fn scorer_by_id(&self, scorer_id: &str, version: i64) -> StoreResult<ScorerVersion> {
        let row = sqlx::query(
            "SELECT experiment_id, name, version, scorer_id, serialized, creation_time FROM scorers \
             WHERE scorer_id = $1 AND version = $2",
        )
        .bind(scorer_id.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return from_row(&row);
        }
        let known = sqlx::query("SELECT 1 FROM scorers WHERE scorer_id = $1 LIMIT 1")
            .bind(scorer_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        Err(StoreError::NotFound(if known {
            format!("Scorer with ID '{scorer_id}' and version {version} not found.")
        } else {
            format!("Scorer with ID '{scorer_id}' not found.")
        }))
    }

    async fn delete_scorer(&self, experiment_id: &str, name: &str, version: Option<i64>) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let deleted = match version {
            Some(version) => {
                sqlx::query("DELETE FROM scorers WHERE experiment_id = $1 AND name = $2 AND version = $3")
                    .bind(experiment_id.to_string())
                    .bind(name.to_string())
                    .bind(version)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM scorers WHERE experiment_id = $1 AND name = $2")
                    .bind(experiment_id.to_string())
                    .bind(name.to_string())
                    .execute(&self.pool)
                    .await?
            }
        };
        if deleted.rows_affected() == 0 {
            return Err(missing(experiment_id, name, version));
        }
        Ok(())
    }
}
