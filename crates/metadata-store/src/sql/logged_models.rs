//! Logged models (MLflow 3) on SQL.

use super::query_text;
use super::rows::{integer, load_key_values, metric, optional_text, text};
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits, parse_experiment_id};
use crate::entities::*;
use crate::error::{StoreError, StoreResult};
use crate::queries::{DatasetRef, LoggedModelSearch, NewLoggedModel};
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, compile_expression, identifier_kind, key_value_predicate,
    numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparison, SqlBuilder, parse_filter, parse_order_clause};
use crate::traits::{ExperimentStore, LoggedModelStore};
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;
use std::collections::HashMap;

const MODEL_COLUMNS: &str = "m.model_id, m.experiment_id, m.name, m.artifact_location, m.creation_time, m.last_updated_time, \
     m.status, m.model_type, m.source_run_id";

fn model_info_from_row(row: &AnyRow) -> StoreResult<LoggedModelInfo> {
    Ok(LoggedModelInfo {
        model_id: text(row, "model_id")?,
        experiment_id: integer(row, "experiment_id")?.to_string(),
        name: text(row, "name")?,
        creation_timestamp_ms: integer(row, "creation_time")?,
        last_updated_timestamp_ms: integer(row, "last_updated_time")?,
        artifact_uri: text(row, "artifact_location")?,
        status: text(row, "status")?,
        model_type: text(row, "model_type")?,
        source_run_id: text(row, "source_run_id")?,
        tags: Vec::new(),
    })
}

fn model_not_found(model_id: &str) -> StoreError {
    StoreError::NotFound(format!("Logged model with ID '{model_id}' not found."))
}

/// Maps an attribute (with MLflow's aliases) to its column; says whether it is numeric.
fn attribute_column(key: &str) -> Option<(&'static str, bool)> {
    match key {
        "name" => Some(("m.name", false)),
        "model_id" => Some(("m.model_id", false)),
        "model_type" => Some(("m.model_type", false)),
        "status" => Some(("m.status", false)),
        "source_run_id" => Some(("m.source_run_id", false)),
        "creation_time" | "creation_timestamp" | "creation_timestamp_ms" => Some(("m.creation_time", true)),
        "last_updated_time" | "last_updated_timestamp" | "last_updated_timestamp_ms" => {
            Some(("m.last_updated_time", true))
        }
        _ => None,
    }
}

/// SQL text (with its values bound) true for a metric row `mm` logged on one of `datasets`; empty for none.
fn dataset_condition(datasets: &[DatasetRef], builder: &mut SqlBuilder) -> String {
    if datasets.is_empty() {
        return String::new();
    }
    let alternatives: Vec<String> = datasets
        .iter()
        .map(|dataset| {
            let name = builder.bind_text(&dataset.name);
            match &dataset.digest {
                Some(digest) => format!(
                    "(mm.dataset_name = {name} AND mm.dataset_digest = {})",
                    builder.bind_text(digest)
                ),
                None => format!("mm.dataset_name = {name}"),
            }
        })
        .collect();
    format!(" AND ({})", alternatives.join(" OR "))
}

/// Filters on logged models; metric clauses look only at metrics logged on the search's datasets, if any.
struct LoggedModelClauses<'a> {
    datasets: &'a [DatasetRef],
}

impl ClauseCompiler for LoggedModelClauses<'_> {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        match identifier_kind(comparison.prefix.as_deref())? {
            IdentifierKind::Metric => {
                let key = builder.bind_text(&comparison.key);
                let on_datasets = dataset_condition(self.datasets, builder);
                builder.push(&format!(
                    "EXISTS (SELECT 1 FROM metrics mm WHERE mm.model_id = m.model_id AND mm.key = {key} AND mm.is_nan = 0{on_datasets} AND "
                ));
                numeric_predicate("mm.value", comparison, builder)?;
                builder.push(")");
                Ok(())
            }
            IdentifierKind::Param => {
                let table = KeyValueTable {
                    table: "logged_model_params",
                    join: &[("model_id", "m.model_id")],
                    value_column: "value",
                };
                key_value_predicate(&table, comparison, builder)
            }
            IdentifierKind::Tag => {
                let table = KeyValueTable {
                    table: "logged_model_tags",
                    join: &[("model_id", "m.model_id")],
                    value_column: "value",
                };
                key_value_predicate(&table, comparison, builder)
            }
            IdentifierKind::Attribute => match attribute_column(&comparison.key) {
                Some((column, true)) => numeric_predicate(column, comparison, builder),
                Some((column, false)) => string_predicate(column, comparison, true, builder),
                None => Err(format!("invalid attribute '{}' for logged models", comparison.key)),
            },
            IdentifierKind::Dataset => Err("logged models cannot be filtered by dataset fields".to_string()),
        }
    }
}

/// One order_by entry; a metric sorts by its latest value (by timestamp, then step), as MLflow sorts it, read on
/// `dataset` when one is given.
fn model_order_term(
    field: &str,
    ascending: bool,
    dataset: Option<&DatasetRef>,
    builder: &mut SqlBuilder,
) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(field).map_err(|error| error.reason)?;
    let expression = match identifier_kind(clause.prefix.as_deref())? {
        IdentifierKind::Metric => {
            let key = builder.bind_text(&clause.key);
            let on_dataset = dataset_condition(dataset.map(std::slice::from_ref).unwrap_or_default(), builder);
            format!(
                "(SELECT mm.value FROM metrics mm WHERE mm.model_id = m.model_id AND mm.key = {key} AND mm.is_nan = 0\
                 {on_dataset} ORDER BY mm.timestamp DESC, mm.step DESC LIMIT 1)"
            )
        }
        IdentifierKind::Param => {
            let key = builder.bind_text(&clause.key);
            format!("(SELECT p.value FROM logged_model_params p WHERE p.model_id = m.model_id AND p.key = {key})")
        }
        IdentifierKind::Tag => {
            let key = builder.bind_text(&clause.key);
            format!("(SELECT t.value FROM logged_model_tags t WHERE t.model_id = m.model_id AND t.key = {key})")
        }
        IdentifierKind::Attribute => attribute_column(&clause.key)
            .map(|(column, _)| column.to_string())
            .ok_or_else(|| format!("invalid order_by field '{field}'"))?,
        IdentifierKind::Dataset => return Err("logged models cannot be ordered by dataset fields".to_string()),
    };
    // Metric, param and tag keys may be missing; those sort last.
    let nullable = expression.starts_with('(');
    Ok(OrderTerm {
        expression,
        ascending,
        nullable,
    })
}

impl SqlStore {
    async fn load_logged_models(&self, rows: Vec<AnyRow>) -> StoreResult<Vec<LoggedModel>> {
        let mut models = Vec::with_capacity(rows.len());
        for row_slice in rows.chunks(super::IDS_PER_STATEMENT) {
            models.extend(self.load_logged_model_slice(row_slice).await?);
        }
        Ok(models)
    }

    async fn load_logged_model_slice(&self, rows: &[AnyRow]) -> StoreResult<Vec<LoggedModel>> {
        let infos = rows.iter().map(model_info_from_row).collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<String> = infos.iter().map(|info| info.model_id.clone()).collect();
        let mut params = load_key_values(&self.pool, self.dialect, "logged_model_params", "model_id", &ids).await?;
        let mut tags = load_key_values(&self.pool, self.dialect, "logged_model_tags", "model_id", &ids).await?;
        let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
        if !ids.is_empty() {
            let mut builder = SqlBuilder::new(
                "SELECT r.run_id, m.key, m.value, m.is_nan, m.timestamp, m.step, m.model_id, m.dataset_name, \
                 m.dataset_digest FROM metrics m JOIN runs r ON r.run_key = m.run_key WHERE m.model_id IN ",
            );
            builder.push_text_list(&ids);
            builder.push(" ORDER BY m.key, m.step, m.timestamp");
            for row in built_query(&builder, self.dialect).fetch_all(&self.pool).await? {
                let mut point = metric(&row)?;
                point.run_id = Some(text(&row, "run_id")?);
                point.model_id = optional_text(&row, "model_id")?;
                point.dataset_name = optional_text(&row, "dataset_name")?;
                point.dataset_digest = optional_text(&row, "dataset_digest")?;
                metrics
                    .entry(point.model_id.clone().unwrap_or_default())
                    .or_default()
                    .push(point);
            }
        }
        Ok(infos
            .into_iter()
            .map(|mut info| {
                info.tags = tags.remove(&info.model_id).unwrap_or_default();
                let data = LoggedModelData {
                    params: params.remove(&info.model_id).unwrap_or_default(),
                    metrics: metrics.remove(&info.model_id).unwrap_or_default(),
                };
                LoggedModel { info, data }
            })
            .collect())
    }

    async fn require_live_model(&self, model_id: &str) -> StoreResult<()> {
        let row = sqlx::query("SELECT lifecycle_stage FROM logged_models WHERE model_id = $1")
            .bind(model_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| model_not_found(model_id))?;
        if text(&row, "lifecycle_stage")? != "active" {
            return Err(model_not_found(model_id));
        }
        Ok(())
    }

    async fn upsert_model_key_values(&self, table: &str, model_id: &str, entries: &[Tag]) -> StoreResult<()> {
        self.require_live_model(model_id).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        for entry in entries {
            query_text(format!(
                "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
            ))
            .bind(model_id.to_string())
            .bind(entry.key.clone())
            .bind(entry.value.clone())
            .execute(&mut *transaction)
            .await?;
        }
        sqlx::query("UPDATE logged_models SET last_updated_time = $1 WHERE model_id = $2")
            .bind(now_millis())
            .bind(model_id.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl LoggedModelStore for SqlStore {
    async fn create_logged_model(&self, new_model: &NewLoggedModel) -> StoreResult<LoggedModel> {
        let experiment = self.get_experiment(&new_model.experiment_id).await?;
        if experiment.lifecycle_stage != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "The experiment {} must be in the 'active' state.",
                experiment.experiment_id
            )));
        }
        let experiment_id = parse_experiment_id(&experiment.experiment_id)?;
        let model_id = loopline_core::ids::new_logged_model_id();
        let artifact_location = format!(
            "{}/models/{model_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = now_millis();
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_time, last_updated_time, \
                 status, model_type, source_run_id, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $6, 'LOGGED_MODEL_PENDING', $7, $8, 'active')",
            )
            .bind(model_id.clone())
            .bind(experiment_id)
            .bind(new_model.name.clone())
            .bind(artifact_location)
            .bind(now)
            .bind(now)
            .bind(new_model.model_type.clone())
            .bind(new_model.source_run_id.clone().unwrap_or_default())
            .execute(&mut *transaction)
            .await?;
            for (table, entries) in [
                ("logged_model_params", &new_model.params),
                ("logged_model_tags", &new_model.tags),
            ] {
                for entry in entries {
                    query_text(format!(
                        "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
                    ))
                    .bind(model_id.clone())
                    .bind(entry.key.clone())
                    .bind(entry.value.clone())
                    .execute(&mut *transaction)
                    .await?;
                }
            }
            transaction.commit().await?;
        }
        self.get_logged_model(&model_id).await
    }

    async fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel> {
        let rows = query_text(format!(
            "SELECT {MODEL_COLUMNS} FROM logged_models m WHERE m.model_id = $1 AND m.lifecycle_stage = 'active'"
        ))
        .bind(model_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        self.load_logged_models(rows)
            .await?
            .pop()
            .ok_or_else(|| model_not_found(model_id))
    }

    async fn set_logged_model_status(&self, model_id: &str, status: &str) -> StoreResult<LoggedModel> {
        self.require_live_model(model_id).await?;
        {
            let _writer = self.writer_guard().await;
            sqlx::query("UPDATE logged_models SET status = $1, last_updated_time = $2 WHERE model_id = $3")
                .bind(status.to_string())
                .bind(now_millis())
                .bind(model_id.to_string())
                .execute(&self.pool)
                .await?;
        }
        self.get_logged_model(model_id).await
    }

    async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> StoreResult<()> {
        self.upsert_model_key_values("logged_model_tags", model_id, tags).await
    }

    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()> {
        self.require_live_model(model_id).await?;
        let _writer = self.writer_guard().await;
        let result = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id.to_string())
            .bind(key.to_string())
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "No tag with key '{key}' found for logged model '{model_id}'."
            )));
        }
        Ok(())
    }

    async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> StoreResult<()> {
        self.upsert_model_key_values("logged_model_params", model_id, params)
            .await
    }

    async fn delete_logged_model(&self, model_id: &str) -> StoreResult<()> {
        self.require_live_model(model_id).await?;
        let _writer = self.writer_guard().await;
        sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_time = $1 WHERE model_id = $2")
            .bind(now_millis())
            .bind(model_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn search_logged_models(&self, search: &LoggedModelSearch) -> StoreResult<Page<LoggedModel>> {
        let (max_results, offset) = page_limits(&search.page, 100, 50_000, "search_logged_models")?;
        if search.experiment_ids.is_empty() {
            return Err(StoreError::InvalidParameter(
                "experiment_ids must name at least one experiment".to_string(),
            ));
        }
        let mut builder = SqlBuilder::new(format!(
            "SELECT {MODEL_COLUMNS} FROM logged_models m WHERE m.lifecycle_stage = 'active' AND m.experiment_id IN "
        ));
        super::push_experiment_id_list(&mut builder, &search.experiment_ids)?;
        let filter = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)?;
        let has_metric_filter = filter.as_ref().is_some_and(|expression| {
            expression.any_comparison(&|comparison| {
                matches!(
                    identifier_kind(comparison.prefix.as_deref()),
                    Ok(IdentifierKind::Metric)
                )
            })
        });
        if let Some(expression) = filter {
            builder.push(" AND ");
            compile_expression(
                &expression,
                &LoggedModelClauses {
                    datasets: &search.datasets,
                },
                &mut builder,
            )
            .map_err(|reason| invalid_search("logged model filter", reason))?;
        }
        if !search.datasets.is_empty() && !has_metric_filter {
            // As MLflow: datasets without a metric clause keep the models with any metric on one of them.
            let on_datasets = dataset_condition(&search.datasets, &mut builder);
            builder.push(&format!(
                " AND EXISTS (SELECT 1 FROM metrics mm WHERE mm.model_id = m.model_id{on_datasets})"
            ));
        }
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for (position, (field, ascending)) in search.order_by.iter().enumerate() {
            let dataset = search.order_datasets.get(position).and_then(Option::as_ref);
            terms.push(
                model_order_term(field, *ascending, dataset, &mut builder)
                    .map_err(|reason| invalid_search("order_by", reason))?,
            );
        }
        terms.push(OrderTerm::column("m.creation_time", false));
        terms.push(OrderTerm::column("m.model_id", true));
        builder.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let models = self.load_logged_models(rows).await?;
        Ok(into_page(models, max_results, offset))
    }
}
