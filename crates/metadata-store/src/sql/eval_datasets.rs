//! MLflow 3's GenAI evaluation datasets on SQL: each dataset and record a JSON document; records unique per
//! dataset by the hash of their inputs.

use super::rows::{integer, text};
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits};
use crate::entities::Page;
use crate::error::{StoreError, StoreResult};
use crate::queries::{DatasetFinish, DocumentChange, EvalDatasetSearch, EvalRecord, PageRequest, RecordMerge};
use crate::search::compile::{
    ClauseCompiler, OrderTerm, compile_expression, numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparator, Comparison, SqlBuilder, parse_filter, parse_order_clause};
use crate::traits::EvalDatasetStore;
use async_trait::async_trait;
use serde_json::Value;
use sqlx::{Any, Transaction};

/// The most records one call may upsert or delete.
const MAX_RECORDS_PER_CALL: usize = 10_000;
/// The most records a dataset may hold.
const MAX_RECORDS_PER_DATASET: i64 = 1_000_000;

fn not_found(dataset_id: &str) -> StoreError {
    StoreError::NotFound(format!("Evaluation dataset with id '{dataset_id}' not found"))
}

fn parse(document: &str, what: &str) -> StoreResult<Value> {
    serde_json::from_str(document)
        .map_err(|error| StoreError::InvalidParameter(format!("stored {what} is not valid JSON: {error}")))
}

fn millis(document: &Value, field: &str) -> i64 {
    document.get(field).and_then(Value::as_i64).unwrap_or(0)
}

/// Filters on datasets: their name, times and authors, and their tags (`tags.<key>`), as MLflow's
/// `search_datasets` takes them. Authors and tags are read from the stored document.
struct DatasetClauses {
    dialect: super::Dialect,
}

impl DatasetClauses {
    /// The SQL text of a string field of the document, or of one tag's value (`key` is bound, never spliced).
    fn document_text(&self, field: &str, tag_key: Option<&str>, builder: &mut SqlBuilder) -> String {
        match (self.dialect, tag_key) {
            (super::Dialect::Sqlite, None) => format!("json_extract(d.document, '$.{field}')"),
            (super::Dialect::Postgres, None) => format!("(d.document::jsonb ->> '{field}')"),
            (super::Dialect::Sqlite, Some(key)) => format!(
                "(SELECT j.value FROM json_each(d.document, '$.tags') j WHERE j.key = {})",
                builder.bind_text(key)
            ),
            (super::Dialect::Postgres, Some(key)) => {
                format!("(d.document::jsonb -> 'tags' ->> {})", builder.bind_text(key))
            }
        }
    }
}

impl ClauseCompiler for DatasetClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        let string_comparator = matches!(
            comparison.comparator,
            Comparator::Equal | Comparator::NotEqual | Comparator::Like | Comparator::ILike
        );
        match comparison.prefix.as_deref() {
            Some("tag" | "tags") => {
                if comparison.key.is_empty() {
                    return Err("a tag filter needs a key: tags.<key>".to_string());
                }
                if !string_comparator {
                    return Err(format!("Invalid comparator for tag: {}", comparison.comparator));
                }
                let column = self.document_text("", Some(&comparison.key), builder);
                return string_predicate(&column, comparison, false, builder);
            }
            None | Some("attribute" | "attributes") => {}
            Some(other) => {
                return Err(format!(
                    "Invalid entity type '{other}': evaluation datasets are filtered by their attributes and tags.<key>"
                ));
            }
        }
        match comparison.key.as_str() {
            key @ ("name" | "dataset_name" | "created_by" | "last_updated_by") => {
                let listed = matches!(comparison.comparator, Comparator::In | Comparator::NotIn);
                if !string_comparator && !listed {
                    return Err(format!(
                        "Invalid comparator for string attribute: {}",
                        comparison.comparator
                    ));
                }
                let column = if key == "name" || key == "dataset_name" {
                    "d.name".to_string()
                } else {
                    self.document_text(key, None, builder)
                };
                string_predicate(&column, comparison, true, builder)
            }
            "created_time" => numeric_predicate("d.created_time", comparison, builder),
            "last_update_time" => numeric_predicate("d.last_update_time", comparison, builder),
            other => Err(format!(
                "Invalid attribute key '{other}': use name, created_time, last_update_time, created_by, \
                 last_updated_by or tags.<key>"
            )),
        }
    }
}

async fn load_dataset(transaction: &mut Transaction<'_, Any>, dataset_id: &str) -> StoreResult<Value> {
    let row = sqlx::query("SELECT document FROM eval_datasets WHERE dataset_id = $1")
        .bind(dataset_id.to_string())
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or_else(|| not_found(dataset_id))?;
    parse(&text(&row, "document")?, "dataset")
}

async fn save_dataset(transaction: &mut Transaction<'_, Any>, dataset_id: &str, document: &Value) -> StoreResult<()> {
    sqlx::query("UPDATE eval_datasets SET document = $1, last_update_time = $2 WHERE dataset_id = $3")
        .bind(document.to_string())
        .bind(millis(document, "last_update_time"))
        .bind(dataset_id.to_string())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// How many records are read at a time when a dataset's summary is rebuilt.
const SUMMARY_PAGE: i64 = 1_000;

/// Hands every record of the dataset to `summary` in record order, a page at a time, then lets it write the
/// dataset's document.
async fn summarize_records(
    transaction: &mut Transaction<'_, Any>,
    dataset_id: &str,
    mut summary: DatasetFinish,
    dataset: &mut Value,
) -> StoreResult<()> {
    let mut after: Option<(i64, String)> = None;
    loop {
        let rows = match &after {
            None => sqlx::query(
                "SELECT record_id, created_time, document FROM eval_dataset_records WHERE dataset_id = $1 \
                 ORDER BY created_time, record_id LIMIT $2",
            )
            .bind(dataset_id.to_string())
            .bind(SUMMARY_PAGE),
            Some((created, record_id)) => sqlx::query(
                "SELECT record_id, created_time, document FROM eval_dataset_records WHERE dataset_id = $1 \
                 AND (created_time > $2 OR (created_time = $2 AND record_id > $3)) \
                 ORDER BY created_time, record_id LIMIT $4",
            )
            .bind(dataset_id.to_string())
            .bind(*created)
            .bind(record_id.clone())
            .bind(SUMMARY_PAGE),
        }
        .fetch_all(&mut **transaction)
        .await?;
        for row in &rows {
            summary.add(&parse(&text(row, "document")?, "record")?);
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == SUMMARY_PAGE => {
                after = Some((integer(last, "created_time")?, text(last, "record_id")?));
            }
            _ => break,
        }
    }
    summary.finish(dataset);
    Ok(())
}

impl SqlStore {
    async fn with_experiment_ids(&self, mut dataset: Value, dataset_id: &str) -> StoreResult<Value> {
        let rows = sqlx::query(
            "SELECT experiment_id FROM eval_dataset_experiments WHERE dataset_id = $1 ORDER BY experiment_id",
        )
        .bind(dataset_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let ids = rows
            .iter()
            .map(|row| text(row, "experiment_id").map(Value::String))
            .collect::<StoreResult<Vec<_>>>()?;
        if let Some(object) = dataset.as_object_mut() {
            object.insert("experiment_ids".into(), Value::Array(ids));
        }
        Ok(dataset)
    }
}

#[async_trait]
impl EvalDatasetStore for SqlStore {
    async fn create_eval_dataset(&self, dataset: &Value, experiment_ids: &[String]) -> StoreResult<()> {
        let dataset_id = dataset
            .get("dataset_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = dataset
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for experiment_id in experiment_ids {
            self.experiment_stage(super::parse_experiment_id(experiment_id)?)
                .await?;
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query("INSERT INTO eval_datasets (dataset_id, name, document, created_time, last_update_time) VALUES ($1, $2, $3, $4, $5)")
            .bind(dataset_id.clone())
            .bind(name)
            .bind(dataset.to_string())
            .bind(millis(dataset, "created_time"))
            .bind(millis(dataset, "last_update_time"))
            .execute(&mut *transaction)
            .await?;
        for experiment_id in experiment_ids {
            sqlx::query("INSERT INTO eval_dataset_experiments (dataset_id, experiment_id) VALUES ($1, $2) ON CONFLICT (dataset_id, experiment_id) DO NOTHING")
                .bind(dataset_id.clone())
                .bind(experiment_id.clone())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn get_eval_dataset(&self, dataset_id: &str) -> StoreResult<Value> {
        let row = sqlx::query("SELECT document FROM eval_datasets WHERE dataset_id = $1")
            .bind(dataset_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(dataset_id))?;
        self.with_experiment_ids(parse(&text(&row, "document")?, "dataset")?, dataset_id)
            .await
    }

    async fn delete_eval_dataset(&self, dataset_id: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        load_dataset(&mut transaction, dataset_id).await?;
        for table in ["eval_dataset_records", "eval_dataset_experiments", "eval_datasets"] {
            super::query_text(format!("DELETE FROM {table} WHERE dataset_id = $1"))
                .bind(dataset_id.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn search_eval_datasets(&self, search: &EvalDatasetSearch) -> StoreResult<Page<Value>> {
        let (max_results, offset) = page_limits(&search.page, 1_000, 10_000, "search_datasets")?;
        let mut builder = SqlBuilder::new("SELECT d.dataset_id, d.document FROM eval_datasets d WHERE 1 = 1");
        if !search.experiment_ids.is_empty() {
            builder.push(
                " AND d.dataset_id IN (SELECT e.dataset_id FROM eval_dataset_experiments e WHERE e.experiment_id IN ",
            );
            builder.push_text_list(&search.experiment_ids);
            builder.push(")");
        }
        if let Some(expression) = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)? {
            builder.push(" AND ");
            compile_expression(&expression, &DatasetClauses { dialect: self.dialect }, &mut builder)
                .map_err(|reason| invalid_search("dataset filter", reason))?;
        }
        super::check_order_by_count(search.order_by.len())?;
        let mut terms = Vec::new();
        for clause_text in &search.order_by {
            let clause = parse_order_clause(clause_text).map_err(invalid_filter)?;
            let column = match clause.key.as_str() {
                "name" => "d.name",
                "created_time" => "d.created_time",
                "last_update_time" => "d.last_update_time",
                _ => {
                    return Err(StoreError::InvalidParameter(format!(
                        "cannot order datasets by '{clause_text}'"
                    )));
                }
            };
            terms.push(OrderTerm::column(column, clause.ascending));
        }
        terms.push(OrderTerm::column("d.created_time", false));
        terms.push(OrderTerm::column("d.dataset_id", true));
        builder.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let mut datasets = Vec::with_capacity(rows.len());
        for row in rows {
            let dataset_id = text(&row, "dataset_id")?;
            datasets.push(
                self.with_experiment_ids(parse(&text(&row, "document")?, "dataset")?, &dataset_id)
                    .await?,
            );
        }
        Ok(into_page(datasets, max_results, offset))
    }

    async fn change_eval_dataset(&self, dataset_id: &str, change: DocumentChange) -> StoreResult<Value> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let mut dataset = load_dataset(&mut transaction, dataset_id).await?;
            change(&mut dataset)?;
            save_dataset(&mut transaction, dataset_id, &dataset).await?;
            transaction.commit().await?;
        }
        self.get_eval_dataset(dataset_id).await
    }

    async fn change_eval_dataset_experiments(
        &self,
        dataset_id: &str,
        add: &[String],
        remove: &[String],
    ) -> StoreResult<Value> {
        for experiment_id in add {
            self.experiment_stage(super::parse_experiment_id(experiment_id)?)
                .await?;
        }
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            load_dataset(&mut transaction, dataset_id).await?;
            for experiment_id in add {
                sqlx::query("INSERT INTO eval_dataset_experiments (dataset_id, experiment_id) VALUES ($1, $2) ON CONFLICT (dataset_id, experiment_id) DO NOTHING")
                    .bind(dataset_id.to_string())
                    .bind(experiment_id.clone())
                    .execute(&mut *transaction)
                    .await?;
            }
            for experiment_id in remove {
                sqlx::query("DELETE FROM eval_dataset_experiments WHERE dataset_id = $1 AND experiment_id = $2")
                    .bind(dataset_id.to_string())
                    .bind(experiment_id.clone())
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        }
        self.get_eval_dataset(dataset_id).await
    }

    async fn upsert_eval_records(
        &self,
        dataset_id: &str,
        records: Vec<EvalRecord>,
        merge: RecordMerge,
        finish: DatasetFinish,
    ) -> StoreResult<(i64, i64)> {
        if records.len() > MAX_RECORDS_PER_CALL {
            return Err(StoreError::InvalidParameter(format!(
                "at most {MAX_RECORDS_PER_CALL} records can be upserted at once, got {}",
                records.len()
            )));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let mut dataset = load_dataset(&mut transaction, dataset_id).await?;
        let (mut inserted, mut updated) = (0, 0);
        for record in records {
            let existing = sqlx::query(
                "SELECT record_id, document FROM eval_dataset_records WHERE dataset_id = $1 AND input_key = $2",
            )
            .bind(dataset_id.to_string())
            .bind(record.input_key.clone())
            .fetch_optional(&mut *transaction)
            .await?;
            match existing {
                Some(row) => {
                    let mut stored = parse(&text(&row, "document")?, "record")?;
                    merge(&mut stored, &record.document);
                    sqlx::query(
                        "UPDATE eval_dataset_records SET document = $1 WHERE dataset_id = $2 AND record_id = $3",
                    )
                    .bind(stored.to_string())
                    .bind(dataset_id.to_string())
                    .bind(text(&row, "record_id")?)
                    .execute(&mut *transaction)
                    .await?;
                    updated += 1;
                }
                None => {
                    let record_id = record
                        .document
                        .get("dataset_record_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    sqlx::query("INSERT INTO eval_dataset_records (dataset_id, record_id, input_key, document, created_time) VALUES ($1, $2, $3, $4, $5)")
                        .bind(dataset_id.to_string())
                        .bind(record_id)
                        .bind(record.input_key)
                        .bind(record.document.to_string())
                        .bind(millis(&record.document, "created_time"))
                        .execute(&mut *transaction)
                        .await?;
                    inserted += 1;
                }
            }
        }
        let held = sqlx::query("SELECT COUNT(*) AS records FROM eval_dataset_records WHERE dataset_id = $1")
            .bind(dataset_id.to_string())
            .fetch_one(&mut *transaction)
            .await?;
        if integer(&held, "records")? > MAX_RECORDS_PER_DATASET {
            return Err(StoreError::InvalidParameter(format!(
                "a dataset may hold at most {MAX_RECORDS_PER_DATASET} records"
            )));
        }
        summarize_records(&mut transaction, dataset_id, finish, &mut dataset).await?;
        save_dataset(&mut transaction, dataset_id, &dataset).await?;
        transaction.commit().await?;
        Ok((inserted, updated))
    }

    async fn get_eval_records(&self, dataset_id: &str, page: &PageRequest) -> StoreResult<Page<Value>> {
        self.get_eval_dataset(dataset_id).await?;
        let (max_results, offset) = page_limits(page, 1_000, 10_000, "dataset records")?;
        let rows = super::query_text(format!(
            "SELECT document FROM eval_dataset_records WHERE dataset_id = $1 ORDER BY created_time, record_id LIMIT {} OFFSET {offset}",
            max_results + 1
        ))
        .bind(dataset_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let records = rows
            .iter()
            .map(|row| parse(&text(row, "document")?, "record"))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(records, max_results, offset))
    }

    async fn delete_eval_records(
        &self,
        dataset_id: &str,
        record_ids: &[String],
        finish: DatasetFinish,
    ) -> StoreResult<i64> {
        if record_ids.len() > MAX_RECORDS_PER_CALL {
            return Err(StoreError::InvalidParameter(format!(
                "at most {MAX_RECORDS_PER_CALL} records can be deleted at once, got {}",
                record_ids.len()
            )));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let mut dataset = load_dataset(&mut transaction, dataset_id).await?;
        let mut deleted = 0;
        for record_id in record_ids {
            deleted += sqlx::query("DELETE FROM eval_dataset_records WHERE dataset_id = $1 AND record_id = $2")
                .bind(dataset_id.to_string())
                .bind(record_id.clone())
                .execute(&mut *transaction)
                .await?
                .rows_affected() as i64;
        }
        summarize_records(&mut transaction, dataset_id, finish, &mut dataset).await?;
        save_dataset(&mut transaction, dataset_id, &dataset).await?;
        transaction.commit().await?;
        Ok(deleted)
    }
}
