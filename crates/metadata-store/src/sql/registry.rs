//! The model registry on SQL: registered models, versions, stages, tags and aliases.

use super::deployments::record_alias_change;
use super::query_text;
use super::rows::{integer, optional_integer, optional_text, text};
use super::{SqlStore, built_query, is_unique_violation};
use crate::entities::*;
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewModelVersion, RegistrySearch};
use crate::search::SqlBuilder;
use crate::traits::RegistryStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;
use std::collections::HashMap;

pub(super) const VERSION_COLUMNS: &str = "v.name, v.version, v.creation_time, v.last_updated_time, v.description, v.user_id, \
     v.current_stage, v.source, v.run_id, v.run_link, v.status, v.storage_location, v.model_id, v.content_digest";

pub(super) fn version_from_row(row: &AnyRow) -> StoreResult<ModelVersion> {
    let version_number = integer(row, "version")?;
    Ok(ModelVersion {
        name: text(row, "name")?,
        version: version_number.to_string(),
        creation_timestamp: integer(row, "creation_time")?,
        last_updated_timestamp: integer(row, "last_updated_time")?,
        user_id: text(row, "user_id")?,
        current_stage: text(row, "current_stage")?,
        description: text(row, "description")?,
        source: text(row, "source")?,
        run_id: text(row, "run_id")?,
        status: text(row, "status")?,
        run_link: text(row, "run_link")?,
        tags: Vec::new(),
        aliases: Vec::new(),
        model_id: optional_text(row, "model_id")?,
        storage_location: text(row, "storage_location")?,
        content_digest: optional_text(row, "content_digest")?,
        version_number,
    })
}

fn model_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: i64) -> StoreError {
    StoreError::NotFound(format!("Model Version (name={name}, version={version}) not found"))
}

impl SqlStore {
    /// Fills tags and aliases of versions.
    pub(super) async fn decorate_versions(&self, versions: &mut [ModelVersion]) -> StoreResult<()> {
        for version_slice in versions.chunks_mut(super::IDS_PER_STATEMENT) {
            self.decorate_version_slice(version_slice).await?;
        }
        Ok(())
    }

    async fn decorate_version_slice(&self, versions: &mut [ModelVersion]) -> StoreResult<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = versions.iter().map(|version| version.name.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let mut tags: HashMap<(String, i64), Vec<Tag>> = HashMap::new();
        let mut builder = SqlBuilder::new("SELECT name, version, key, value FROM model_version_tags WHERE name IN ");
        builder.push_text_list(&names);
        builder.push(" ORDER BY key");
        for row in built_query(&builder, self.dialect).fetch_all(&self.pool).await? {
            tags.entry((text(&row, "name")?, integer(&row, "version")?))
                .or_default()
                .push(Tag::new(text(&row, "key")?, text(&row, "value")?));
        }
        let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
        let mut builder = SqlBuilder::new("SELECT name, alias, version FROM registered_model_aliases WHERE name IN ");
        builder.push_text_list(&names);
        builder.push(" ORDER BY alias");
        for row in built_query(&builder, self.dialect).fetch_all(&self.pool).await? {
            aliases
                .entry((text(&row, "name")?, integer(&row, "version")?))
                .or_default()
                .push(text(&row, "alias")?);
        }
        for version in versions.iter_mut() {
            let key = (version.name.clone(), version.version_number);
            version.tags = tags.remove(&key).unwrap_or_default();
            version.aliases = aliases.remove(&key).unwrap_or_default();
        }
        Ok(())
    }

    /// Assembles registered models from their rows.
    pub(super) async fn load_registered_models(&self, rows: Vec<AnyRow>) -> StoreResult<Vec<RegisteredModel>> {
        let mut models = Vec::with_capacity(rows.len());
        for row in &rows {
            models.push(RegisteredModel {
                name: text(row, "name")?,
                creation_timestamp: integer(row, "creation_time")?,
                last_updated_timestamp: integer(row, "last_updated_time")?,
                description: text(row, "description")?,
                latest_versions: Vec::new(),
                tags: Vec::new(),
                aliases: Vec::new(),
            });
        }
        let names: Vec<String> = models.iter().map(|model| model.name.clone()).collect();
        if names.is_empty() {
            return Ok(models);
        }
        let mut tags =
            super::rows::load_key_values(&self.pool, self.dialect, "registered_model_tags", "name", &names).await?;
        let mut aliases: HashMap<String, Vec<AliasEntry>> = HashMap::new();
        let mut builder = SqlBuilder::new("SELECT name, alias, version FROM registered_model_aliases WHERE name IN ");
        builder.push_text_list(&names);
        builder.push(" ORDER BY alias");
        for row in built_query(&builder, self.dialect).fetch_all(&self.pool).await? {
            aliases.entry(text(&row, "name")?).or_default().push(AliasEntry {
                alias: text(&row, "alias")?,
                version: integer(&row, "version")?.to_string(),
            });
        }
        // Latest version per (model, stage).
        let mut builder = SqlBuilder::new(format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions v WHERE v.name IN "
        ));
        builder.push_text_list(&names);
        builder.push(
            " AND v.version = (SELECT MAX(w.version) FROM model_versions w WHERE w.name = v.name AND w.current_stage = v.current_stage) \
             ORDER BY v.version",
        );
        let mut newest = Vec::new();
        for row in built_query(&builder, self.dialect).fetch_all(&self.pool).await? {
            newest.push(version_from_row(&row)?);
        }
        // With their tags and aliases, as MLflow gives them.
        self.decorate_versions(&mut newest).await?;
        let mut latest: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for version in newest {
            latest.entry(version.name.clone()).or_default().push(version);
        }
        for model in models.iter_mut() {
            model.tags = tags.remove(&model.name).unwrap_or_default();
            model.aliases = aliases.remove(&model.name).unwrap_or_default();
            model.latest_versions = latest.remove(&model.name).unwrap_or_default();
        }
        Ok(models)
    }

    async fn require_registered_model(&self, name: &str) -> StoreResult<()> {
        sqlx::query("SELECT name FROM registered_models WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| model_not_found(name))?;
        Ok(())
    }

    async fn require_version(&self, name: &str, version: i64) -> StoreResult<()> {
        sqlx::query("SELECT version FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name.to_string())
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| version_not_found(name, version))?;
        Ok(())
    }

    async fn touch_registered_model(&self, name: &str) -> StoreResult<()> {
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
            .bind(now_millis())
            .bind(name.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Marks a registered model as updated at `now`, inside a transaction changing one of its versions (as MLflow
/// does for a stage transition or a deleted version).
async fn touch_in(transaction: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
        .bind(now)
        .bind(name.to_string())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

#[async_trait]
impl RegistryStore for SqlStore {
    async fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let now = now_millis();
            sqlx::query("INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES ($1, $2, $3, $4)")
                .bind(name.to_string())
                .bind(now)
                .bind(now)
                .bind(description.to_string())
                .execute(&mut *transaction)
                .await
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::AlreadyExists(format!("Registered Model (name={name}) already exists."))
                    } else {
                        StoreError::Database(error)
                    }
                })?;
            for tag in tags {
                sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value")
                    .bind(name.to_string())
                    .bind(tag.key.clone())
                    .bind(tag.value.clone())
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        }
        self.get_registered_model(name).await
    }

    async fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel> {
        let rows = sqlx::query(
            "SELECT name, creation_time, last_updated_time, description FROM registered_models WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_all(&self.pool)
        .await?;
        self.load_registered_models(rows)
            .await?
            .pop()
            .ok_or_else(|| model_not_found(name))
    }

    async fn rename_registered_model(&self, name: &str, new_name: &str) -> StoreResult<RegisteredModel> {
        self.require_registered_model(name).await?;
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            sqlx::query("UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE name = $3")
                .bind(new_name.to_string())
                .bind(now_millis())
                .bind(name.to_string())
                .execute(&mut *transaction)
                .await
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::AlreadyExists(format!("Registered Model (name={new_name}) already exists."))
                    } else {
                        StoreError::Database(error)
                    }
                })?;
            for table in [
                "registered_model_tags",
                "model_versions",
                "model_version_tags",
                "registered_model_aliases",
                "registered_model_alias_history",
            ] {
                query_text(format!("UPDATE {table} SET name = $1 WHERE name = $2"))
                    .bind(new_name.to_string())
                    .bind(name.to_string())
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        }
        self.get_registered_model(new_name).await
    }

    async fn update_registered_model(&self, name: &str, description: &str) -> StoreResult<RegisteredModel> {
        self.require_registered_model(name).await?;
        {
            let _writer = self.writer_guard().await;
            sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE name = $3")
                .bind(description.to_string())
                .bind(now_millis())
                .bind(name.to_string())
                .execute(&self.pool)
                .await?;
        }
        self.get_registered_model(name).await
    }

    async fn delete_registered_model(&self, name: &str) -> StoreResult<()> {
        self.require_registered_model(name).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        for table in [
            "registered_model_tags",
            "model_version_tags",
            "registered_model_aliases",
            "registered_model_alias_history",
            "model_versions",
            "registered_models",
        ] {
            query_text(format!("DELETE FROM {table} WHERE name = $1"))
                .bind(name.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> StoreResult<()> {
        self.require_registered_model(name).await?;
        let _writer = self.writer_guard().await;
        sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value")
            .bind(name.to_string())
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&self.pool)
            .await?;
        self.touch_registered_model(name).await
    }

    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()> {
        self.require_registered_model(name).await?;
        let _writer = self.writer_guard().await;
        sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2")
            .bind(name.to_string())
            .bind(key.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn search_registered_models(&self, search: &RegistrySearch) -> StoreResult<Page<RegisteredModel>> {
        self.search_registered_models_sql(search).await
    }

    async fn get_latest_versions(&self, name: &str, stages: &[String]) -> StoreResult<Vec<ModelVersion>> {
        let model = self.get_registered_model(name).await?;
        let versions: Vec<ModelVersion> = model
            .latest_versions
            .into_iter()
            .filter(|version| {
                stages.is_empty()
                    || stages
                        .iter()
                        .any(|stage| stage.eq_ignore_ascii_case(&version.current_stage))
            })
            .collect();
        Ok(versions)
    }

    async fn create_model_version(&self, new_version: &NewModelVersion) -> StoreResult<ModelVersion> {
        let version = {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let allocated = sqlx::query(
                "UPDATE registered_models SET next_version = next_version + 1, last_updated_time = $1 WHERE name = $2 \
                 RETURNING next_version - 1 AS version",
            )
            .bind(now_millis())
            .bind(new_version.name.clone())
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or_else(|| model_not_found(&new_version.name))?;
            let version = integer(&allocated, "version")?;
            let now = now_millis();
            sqlx::query(
                "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, current_stage, \
                 source, run_id, run_link, status, storage_location, model_id, content_digest, sealed_path) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'None', $7, $8, $9, 'READY', $10, $11, $12, $13)",
            )
            .bind(new_version.name.clone())
            .bind(version)
            .bind(now)
            .bind(now)
            .bind(new_version.description.clone())
            .bind(new_version.user_id.clone())
            .bind(new_version.source.clone())
            .bind(new_version.run_id.clone())
            .bind(new_version.run_link.clone())
            .bind(new_version.storage_location.clone())
            .bind(new_version.model_id.clone())
            .bind(new_version.content_digest.clone())
            .bind(new_version.sealed_path.clone())
            .execute(&mut *transaction)
            .await?;
            for tag in &new_version.tags {
                sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value")
                    .bind(new_version.name.clone())
                    .bind(version)
                    .bind(tag.key.clone())
                    .bind(tag.value.clone())
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
            version
        };
        self.get_model_version(&new_version.name, version).await
    }

    async fn get_model_version(&self, name: &str, version: i64) -> StoreResult<ModelVersion> {
        let row = query_text(format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions v WHERE v.name = $1 AND v.version = $2"
        ))
        .bind(name.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| version_not_found(name, version))?;
        let mut versions = vec![version_from_row(&row)?];
        self.decorate_versions(&mut versions).await?;
        Ok(versions.remove(0))
    }

    async fn update_model_version(&self, name: &str, version: i64, description: &str) -> StoreResult<ModelVersion> {
        self.require_version(name, version).await?;
        {
            let _writer = self.writer_guard().await;
            sqlx::query(
                "UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE name = $3 AND version = $4",
            )
            .bind(description.to_string())
            .bind(now_millis())
            .bind(name.to_string())
            .bind(version)
            .execute(&self.pool)
            .await?;
        }
        self.get_model_version(name, version).await
    }

    async fn delete_model_version(&self, name: &str, version: i64) -> StoreResult<()> {
        self.require_version(name, version).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let aliases = sqlx::query("SELECT alias FROM registered_model_aliases WHERE name = $1 AND version = $2")
            .bind(name.to_string())
            .bind(version)
            .fetch_all(&mut *transaction)
            .await?;
        for row in &aliases {
            record_alias_change(&mut transaction, name, &text(row, "alias")?, None).await?;
        }
        for table in ["model_version_tags", "registered_model_aliases", "model_versions"] {
            query_text(format!("DELETE FROM {table} WHERE name = $1 AND version = $2"))
                .bind(name.to_string())
                .bind(version)
                .execute(&mut *transaction)
                .await?;
        }
        touch_in(&mut transaction, name, now_millis()).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> StoreResult<()> {
        self.require_version(name, version).await?;
        let _writer = self.writer_guard().await;
        sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value")
            .bind(name.to_string())
            .bind(version)
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_model_version_digest(&self, name: &str, version: i64, digest: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        sqlx::query(
            "UPDATE model_versions SET content_digest = $1 WHERE name = $2 AND version = $3 AND content_digest IS NULL",
        )
        .bind(digest.to_string())
        .bind(name.to_string())
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sealed_version_at(
        &self,
        artifact_path: &str,
        with_descendants: bool,
    ) -> StoreResult<Option<(String, i64)>> {
        let path = artifact_path.trim_matches('/');
        let mut builder = SqlBuilder::new("SELECT name, version FROM model_versions WHERE sealed_path IN ");
        // The path itself and every directory above it.
        let mut enclosing: Vec<String> = Vec::new();
        let mut prefix = String::new();
        for segment in path.split('/').filter(|segment| !segment.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(segment);
            enclosing.push(prefix.clone());
        }
        if enclosing.is_empty() {
            enclosing.push(String::new());
        }
        builder.push_text_list(&enclosing);
        if with_descendants {
            let below = format!("{path}/");
            // The length is ours, written into the text: PostgreSQL has no substr(text, int, bigint).
            let length = below.chars().count();
            let below = builder.bind_text(&below);
            builder.push(&format!(" OR substr(sealed_path, 1, {length}) = {below}"));
            if path.is_empty() {
                builder.push(" OR sealed_path IS NOT NULL");
            }
        }
        builder.push(" LIMIT 1");
        let row = super::built_query(&builder, self.dialect)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((text(&row, "name")?, integer(&row, "version")?)))
            .transpose()
    }

    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str) -> StoreResult<()> {
        self.require_version(name, version).await?;
        let _writer = self.writer_guard().await;
        sqlx::query("DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3")
            .bind(name.to_string())
            .bind(version)
            .bind(key.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn transition_model_version_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion> {
        self.require_version(name, version).await?;
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let now = now_millis();
            if archive_existing_versions && (stage == "Staging" || stage == "Production") {
                sqlx::query(
                    "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
                     WHERE name = $2 AND current_stage = $3 AND version != $4",
                )
                .bind(now)
                .bind(name.to_string())
                .bind(stage.to_string())
                .bind(version)
                .execute(&mut *transaction)
                .await?;
            }
            sqlx::query(
                "UPDATE model_versions SET current_stage = $1, last_updated_time = $2 WHERE name = $3 AND version = $4",
            )
            .bind(stage.to_string())
            .bind(now)
            .bind(name.to_string())
            .bind(version)
            .execute(&mut *transaction)
            .await?;
            touch_in(&mut transaction, name, now).await?;
            transaction.commit().await?;
        }
        self.get_model_version(name, version).await
    }

    async fn search_model_versions(&self, search: &RegistrySearch) -> StoreResult<Page<ModelVersion>> {
        self.search_model_versions_sql(search).await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> StoreResult<()> {
        self.require_version(name, version).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query("INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3) ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version")
            .bind(name.to_string())
            .bind(alias.to_string())
            .bind(version)
            .execute(&mut *transaction)
            .await?;
        record_alias_change(&mut transaction, name, alias, Some(version)).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> StoreResult<()> {
        self.require_registered_model(name).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2")
            .bind(name.to_string())
            .bind(alias.to_string())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if removed > 0 {
            record_alias_change(&mut transaction, name, alias, None).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn get_model_version_by_alias(&self, name: &str, alias: &str) -> StoreResult<ModelVersion> {
        self.require_registered_model(name).await?;
        if alias.eq_ignore_ascii_case("latest") {
            // As MLflow: `latest` (which no alias may be named) is the newest version.
            let row = sqlx::query("SELECT MAX(version) AS version FROM model_versions WHERE name = $1")
                .bind(name.to_string())
                .fetch_one(&self.pool)
                .await?;
            let version = optional_integer(&row, "version")?
                .ok_or_else(|| StoreError::NotFound(format!("Latest version not found for model {name}.")))?;
            return self.get_model_version(name, version).await;
        }
        let row = sqlx::query("SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2")
            .bind(name.to_string())
            .bind(alias.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::InvalidParameter(format!("Registered model alias {alias} not found.")))?;
        self.get_model_version(name, integer(&row, "version")?).await
    }
}
