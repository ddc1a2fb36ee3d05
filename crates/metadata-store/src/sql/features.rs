//! Feature definitions on SQL: every version a row; the primary key (project, version) makes two writers of
//! the same next version collide, so exactly one of them wins.

use super::SqlStore;
use super::rows::Columns;
use crate::error::StoreResult;
use crate::features::{FeatureDefinitionStore, FeatureDefinitionsRecord};
use async_trait::async_trait;
use sqlx::any::AnyRow;

/// Most projects listed.
const MAX_PROJECTS: i64 = 10_000;

fn record(row: &AnyRow) -> StoreResult<FeatureDefinitionsRecord> {
    Ok(FeatureDefinitionsRecord {
        project: row.text("project")?,
        version: row.integer("version")?,
        body: row.text("body")?,
        created_at: row.integer("created_at")?,
    })
}

#[async_trait]
impl FeatureDefinitionStore for SqlStore {
    async fn feature_definitions(&self, project: &str) -> StoreResult<Option<FeatureDefinitionsRecord>> {
        let row = sqlx::query(
            "SELECT project, version, body, created_at FROM feature_definitions WHERE project = $1
             ORDER BY version DESC LIMIT 1",
        )
        .bind(project.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn feature_definitions_at(
        &self,
        project: &str,
        version: i64,
    ) -> StoreResult<Option<FeatureDefinitionsRecord>> {
        let row = sqlx::query(
            "SELECT project, version, body, created_at FROM feature_definitions WHERE project = $1 AND version = $2",
        )
        .bind(project.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn feature_definitions_version(&self, project: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT MAX(version) AS version FROM feature_definitions WHERE project = $1")
            .bind(project.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.optional_integer("version")?.unwrap_or(0))
    }

    async fn put_feature_definitions(
        &self,
        project: &str,
        expected: i64,
        body: &str,
    ) -> StoreResult<Option<FeatureDefinitionsRecord>> {
        {
            let _writer = self.writer_guard().await;
            if self.feature_definitions_version(project).await? != expected {
                return Ok(None);
            }
            let written = sqlx::query(
                "INSERT INTO feature_definitions (project, version, body, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project, version) DO NOTHING",
            )
            .bind(project.to_string())
            .bind(expected + 1)
            .bind(body.to_string())
            .bind(loopline_core::time::now_millis())
            .execute(&self.pool)
            .await?;
            if written.rows_affected() != 1 {
                return Ok(None);
            }
        }
        self.feature_definitions_at(project, expected + 1).await
    }

    async fn delete_feature_project(&self, project: &str) -> StoreResult<u64> {
        let _writer = self.writer_guard().await;
        let removed = sqlx::query("DELETE FROM feature_definitions WHERE project = $1")
            .bind(project.to_string())
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected())
    }

    async fn feature_projects(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT project, MAX(version) AS version FROM feature_definitions GROUP BY project ORDER BY project LIMIT $1",
        )
        .bind(MAX_PROJECTS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.text("project")?, row.integer("version")?)))
            .collect()
    }
}
