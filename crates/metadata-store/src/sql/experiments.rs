//! Experiments on SQL.

use super::rows::{integer, load_key_values, text};
use super::{
    SqlStore, built_query, into_page, invalid_filter, invalid_search, is_unique_violation, page_limits,
    parse_experiment_id,
};
use crate::entities::{Experiment, LifecycleStage, Page, Tag};
use crate::error::{StoreError, StoreResult};
use crate::queries::ExperimentSearch;
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, compile_expression, identifier_kind, key_value_predicate,
    numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparison, SqlBuilder, parse_filter, parse_order_clause};
use crate::traits::ExperimentStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;

const EXPERIMENT_COLUMNS: &str =
    "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

fn experiment_from_row(row: &AnyRow) -> StoreResult<Experiment> {
    Ok(Experiment {
        experiment_id: integer(row, "experiment_id")?.to_string(),
        name: text(row, "name")?,
        artifact_location: text(row, "artifact_location")?,
        lifecycle_stage: text(row, "lifecycle_stage")?,
        last_update_time: integer(row, "last_update_time")?,
        creation_time: integer(row, "creation_time")?,
        tags: Vec::new(),
    })
}

struct ExperimentClauses;

impl ClauseCompiler for ExperimentClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        match identifier_kind(comparison.prefix.as_deref())? {
            IdentifierKind::Tag => {
                let table = KeyValueTable {
                    table: "experiment_tags",
                    join: &[("experiment_id", "e.experiment_id")],
                    value_column: "value",
                };
                key_value_predicate(&table, comparison, builder)
            }
            IdentifierKind::Attribute => match comparison.key.as_str() {
                "name" => string_predicate("e.name", comparison, true, builder),
                "experiment_id" => string_predicate(EXPERIMENT_ID_AS_TEXT, comparison, true, builder),
                "creation_time" | "last_update_time" => {
                    numeric_predicate(&format!("e.{}", comparison.key), comparison, builder)
                }
                other => Err(format!(
                    "invalid attribute key '{other}': expected one of name, experiment_id, creation_time, last_update_time"
                )),
            },
            other => Err(format!("experiments cannot be filtered by {other:?} identifiers")),
        }
    }
}

/// The experiment id as text, so string comparators and IN lists apply to it on both databases.
const EXPERIMENT_ID_AS_TEXT: &str = "CAST(e.experiment_id AS TEXT)";

fn experiment_order_term(clause_text: &str) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(clause_text).map_err(|error| error.reason)?;
    if identifier_kind(clause.prefix.as_deref())? != IdentifierKind::Attribute {
        return Err(format!("cannot order experiments by '{clause_text}'"));
    }
    let expression = match clause.key.as_str() {
        "name" | "experiment_id" | "creation_time" | "last_update_time" => format!("e.{}", clause.key),
        other => {
            return Err(format!(
                "cannot order experiments by '{other}': use name, experiment_id, creation_time or last_update_time"
            ));
        }
    };
    Ok(OrderTerm::column(&expression, clause.ascending))
}

impl SqlStore {
    async fn attach_experiment_tags(&self, experiments: &mut [Experiment]) -> StoreResult<()> {
        let ids: Vec<String> = experiments
            .iter()
            .map(|experiment| experiment.experiment_id.clone())
            .collect();
        // experiment_tags.experiment_id is an integer; compare as text for a portable IN list.
        let mut tags = load_key_values(
            &self.pool,
            self.dialect,
            "(SELECT CAST(experiment_id AS TEXT) AS experiment_id, key, value FROM experiment_tags) t",
            "experiment_id",
            &ids,
        )
        .await?;
        for experiment in experiments.iter_mut() {
            experiment.tags = tags.remove(&experiment.experiment_id).unwrap_or_default();
        }
        Ok(())
    }

    async fn fetch_experiment(
        &self,
        predicate: &str,
        value: crate::search::SqlValue,
        missing: String,
    ) -> StoreResult<Experiment> {
        let mut builder = SqlBuilder::new(format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments e WHERE {predicate} = "
        ));
        let placeholder = builder.bind(value);
        builder.push(&placeholder);
        let row = built_query(&builder, self.dialect)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(missing))?;
        let mut experiments = vec![experiment_from_row(&row)?];
        self.attach_experiment_tags(&mut experiments).await?;
        Ok(experiments.remove(0))
    }

    /// Fails unless the experiment exists; returns its stored id and stage.
    pub(super) async fn experiment_stage(&self, experiment_id: i64) -> StoreResult<String> {
        let row = sqlx::query("SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1")
            .bind(experiment_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("No Experiment with id={experiment_id} exists")))?;
        text(&row, "lifecycle_stage")
    }
}

#[async_trait]
impl ExperimentStore for SqlStore {
    async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> StoreResult<String> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let existing = sqlx::query("SELECT lifecycle_stage FROM experiments WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
        if let Some(row) = existing {
            let stage = text(&row, "lifecycle_stage")?;
            let suffix = if stage == "deleted" { " in deleted state" } else { "" };
            return Err(StoreError::AlreadyExists(format!(
                "Experiment '{name}' already exists{suffix}."
            )));
        }
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, 'active', $3, $4) RETURNING experiment_id",
        )
        .bind(name.to_string())
        .bind(artifact_location.unwrap_or_default().to_string())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *transaction)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::AlreadyExists(format!("Experiment '{name}' already exists."))
            } else {
                StoreError::Database(error)
            }
        })?;
        let experiment_id = integer(&inserted, "experiment_id")?;
        if artifact_location.is_none_or(str::is_empty) {
            sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                .bind(format!("{}/{experiment_id}", self.default_artifact_root))
                .bind(experiment_id)
                .execute(&mut *transaction)
                .await?;
        }
        for tag in tags {
            sqlx::query(
                "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(experiment_id)
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(experiment_id.to_string())
    }

    async fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment> {
        let missing = format!("No Experiment with id={experiment_id} exists");
        let Ok(numeric_id) = parse_experiment_id(experiment_id) else {
            return Err(StoreError::NotFound(missing));
        };
        self.fetch_experiment("e.experiment_id", crate::search::SqlValue::Integer(numeric_id), missing)
            .await
    }

    async fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment> {
        let missing = format!("Could not find experiment with name '{name}'");
        self.fetch_experiment("e.name", crate::search::SqlValue::Text(name.to_string()), missing)
            .await
    }

    async fn search_experiments(&self, search: &ExperimentSearch) -> StoreResult<Page<Experiment>> {
        let (max_results, offset) = page_limits(&search.page, 1000, 50_000, "search_experiments")?;
        let mut builder = SqlBuilder::new(format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments e WHERE e.lifecycle_stage IN "
        ));
        let stages: Vec<String> = search
            .view_type
            .stages()
            .iter()
            .map(|stage| stage.to_string())
            .collect();
        builder.push_text_list(&stages);
        if let Some(expression) = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)? {
            builder.push(" AND ");
            compile_expression(&expression, &ExperimentClauses, &mut builder)
                .map_err(|reason| invalid_search("experiment search filter", reason))?;
        }
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for clause in &search.order_by {
            terms.push(experiment_order_term(clause).map_err(|reason| invalid_search("order_by clause", reason))?);
        }
        if terms.is_empty() {
            terms.push(OrderTerm::column("e.creation_time", false));
        }
        terms.push(OrderTerm::column("e.experiment_id", true));
        builder.push(&format!(" ORDER BY {}", render_order_terms(&terms)));
        builder.push(&format!(" LIMIT {} OFFSET {offset}", max_results + 1));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let mut experiments = rows.iter().map(experiment_from_row).collect::<StoreResult<Vec<_>>>()?;
        self.attach_experiment_tags(&mut experiments).await?;
        Ok(into_page(experiments, max_results, offset))
    }

    async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()> {
        let numeric_id = parse_experiment_id(experiment_id)?;
        let stage = self.experiment_stage(numeric_id).await?;
        if stage != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "Cannot rename a non-active experiment {experiment_id}."
            )));
        }
        let _writer = self.writer_guard().await;
        sqlx::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(new_name.to_string())
            .bind(now_millis())
            .bind(numeric_id)
            .execute(&self.pool)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::AlreadyExists(format!("Experiment '{new_name}' already exists."))
                } else {
                    StoreError::Database(error)
                }
            })?;
        Ok(())
    }

    async fn set_experiment_lifecycle(&self, experiment_id: &str, stage: LifecycleStage) -> StoreResult<()> {
        let numeric_id = parse_experiment_id(experiment_id)?;
        self.experiment_stage(numeric_id).await?;
        if numeric_id == 0 && stage == LifecycleStage::Deleted {
            return Err(StoreError::InvalidParameter(
                "Cannot delete the default experiment '0'.".to_string(),
            ));
        }
        let _writer = self.writer_guard().await;
        let now = now_millis();
        let mut transaction = self.begin_write().await?;
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(stage.as_str().to_string())
            .bind(now)
            .bind(numeric_id)
            .execute(&mut *transaction)
            .await?;
        let deleted_time = (stage == LifecycleStage::Deleted).then_some(now);
        sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3")
            .bind(stage.as_str().to_string())
            .bind(deleted_time)
            .bind(numeric_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> StoreResult<()> {
        let numeric_id = parse_experiment_id(experiment_id)?;
        if self.experiment_stage(numeric_id).await? != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "The experiment {experiment_id} must be in the 'active' state."
            )));
        }
        let _writer = self.writer_guard().await;
        sqlx::query(
            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(numeric_id)
        .bind(tag.key.clone())
        .bind(tag.value.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()> {
        let numeric_id = parse_experiment_id(experiment_id)?;
        self.experiment_stage(numeric_id).await?;
        let _writer = self.writer_guard().await;
        let result = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
            .bind(numeric_id)
            .bind(key.to_string())
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        Ok(())
    }
}
