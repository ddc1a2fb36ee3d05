//! Dataset versions, numbered per name, one version per distinct content.

use super::rows::{integer, optional_integer, optional_text, text};
use super::{SqlStore, is_unique_violation};
use crate::entities::{DatasetSummary, DatasetVersion};
use crate::error::{StoreError, StoreResult};
use crate::traits::DatasetStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;

const COLUMNS: &str = "name, version, content_hash, size_bytes, file_count, row_count, table_schema, profile, \
                       source, description, created_by, creation_time, lineage";
/// Attempts at taking the next number when replicas register versions of one dataset at once.
const ATTEMPTS: usize = 5;

fn dataset_version(row: &AnyRow) -> StoreResult<DatasetVersion> {
    Ok(DatasetVersion {
        name: text(row, "name")?,
        version: integer(row, "version")?,
        content_hash: text(row, "content_hash")?,
        size_bytes: integer(row, "size_bytes")?,
        file_count: integer(row, "file_count")?,
        row_count: optional_integer(row, "row_count")?,
        table_schema: optional_text(row, "table_schema")?,
        profile: optional_text(row, "profile")?,
        source: text(row, "source")?,
        description: text(row, "description")?,
        created_by: text(row, "created_by")?,
        creation_time: integer(row, "creation_time")?,
        lineage: optional_text(row, "lineage")?,
    })
}

fn sql_limit(limit: usize) -> i64 {
    limit.min(i64::MAX as usize) as i64
}

impl SqlStore {
    async fn version_with_content(&self, name: &str, hash: &str) -> StoreResult<Option<DatasetVersion>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND content_hash = $2"
        )))
        .bind(name.to_string())
        .bind(hash.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(dataset_version).transpose()
    }

    /// One attempt: `None` when another writer took the number first.
    async fn try_register(&self, new: &DatasetVersion) -> StoreResult<Option<(DatasetVersion, bool)>> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND content_hash = $2"
        )))
        .bind(new.name.clone())
        .bind(new.content_hash.clone())
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = existing {
            return Ok(Some((dataset_version(&row)?, false)));
        }
        let next: i64 = integer(
            &sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS next FROM dataset_versions WHERE name = $1")
                .bind(new.name.clone())
                .fetch_one(&mut *transaction)
                .await?,
            "next",
        )?;
        let stored = DatasetVersion {
            version: next,
            creation_time: now_millis(),
            ..new.clone()
        };
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO dataset_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )))
        .bind(stored.name.clone())
        .bind(stored.version)
        .bind(stored.content_hash.clone())
        .bind(stored.size_bytes)
        .bind(stored.file_count)
        .bind(stored.row_count)
        .bind(stored.table_schema.clone())
        .bind(stored.profile.clone())
        .bind(stored.source.clone())
        .bind(stored.description.clone())
        .bind(stored.created_by.clone())
        .bind(stored.creation_time)
        .bind(stored.lineage.clone())
        .execute(&mut *transaction)
        .await;
        match inserted {
            Ok(_) => {
                transaction.commit().await?;
                Ok(Some((stored, true)))
            }
            Err(error) if is_unique_violation(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl DatasetStore for SqlStore {
    async fn register_dataset_version(&self, version: &DatasetVersion) -> StoreResult<(DatasetVersion, bool)> {
        for _ in 0..ATTEMPTS {
            if let Some(registered) = self.try_register(version).await? {
                return Ok(registered);
            }
            // Another replica stored this content, or took the number: look again.
            if let Some(existing) = self.version_with_content(&version.name, &version.content_hash).await? {
                return Ok((existing, false));
            }
        }
        Err(StoreError::Conflict(format!(
            "dataset '{}' is being given new versions by other writers; retry",
            version.name
        )))
    }

    async fn get_dataset_version(&self, name: &str, version: i64) -> StoreResult<DatasetVersion> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND version = $2"
        )))
        .bind(name.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("Dataset '{name}' has no version {version}.")))?;
        dataset_version(&row)
    }

    async fn latest_dataset_version(&self, name: &str) -> StoreResult<DatasetVersion> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version DESC LIMIT 1"
        )))
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("Dataset '{name}' does not exist.")))?;
        dataset_version(&row)
    }

    async fn dataset_versions(
        &self,
        name: &str,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<DatasetVersion>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND version < $2 ORDER BY version DESC LIMIT $3"
        )))
        .bind(name.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dataset_version).collect()
    }

    async fn list_datasets(&self) -> StoreResult<Vec<DatasetSummary>> {
        let columns: String = COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns}, c.version_count FROM dataset_versions d JOIN \
             (SELECT name, MAX(version) AS newest, COUNT(*) AS version_count FROM dataset_versions GROUP BY name) c \
             ON d.name = c.name AND d.version = c.newest ORDER BY d.name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DatasetSummary {
                    name: text(row, "name")?,
                    latest: dataset_version(row)?,
                    version_count: integer(row, "version_count")?,
                })
            })
            .collect()
    }

    async fn dataset_content_hashes(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT content_hash FROM dataset_versions ORDER BY content_hash")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| text(row, "content_hash")).collect()
    }
}
