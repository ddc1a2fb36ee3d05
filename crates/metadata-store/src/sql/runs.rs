//! Runs, metrics, params, tags, inputs and outputs on SQL.

use super::query_text;
use super::rows::{Columns, integer, metric, optional_integer, optional_text, stored_metric_value, text};
use super::{Dialect, SqlStore, built_query, into_page, page_limits, parse_experiment_id};
use crate::entities::*;
use crate::error::{StoreError, StoreResult};
use crate::queries::{LogBatch, NewRun, PageRequest, RunSearch, RunUpdate};
use crate::search::SqlBuilder;
use crate::traits::RunStore;
use async_trait::async_trait;
use sqlx::{Any, AssertSqlSafe, Transaction};
use std::collections::{BTreeMap, HashMap};

/// The tag MLflow keeps equal to the run name.
pub const RUN_NAME_TAG: &str = "mlflow.runName";

/// Rows per multi-row INSERT; keeps placeholders well under both databases' limits.
const INSERT_CHUNK_ROWS: usize = 400;

const RUN_COLUMNS: &str = "r.run_id, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time, r.lifecycle_stage, r.artifact_uri";

pub(super) fn run_info_from_row(row: &(impl Columns + ?Sized)) -> StoreResult<RunInfo> {
    let run_id = text(row, "run_id")?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        experiment_id: integer(row, "experiment_id")?.to_string(),
        run_name: text(row, "name")?,
        user_id: text(row, "user_id")?,
        status: text(row, "status")?,
        start_time: integer(row, "start_time")?,
        end_time: optional_integer(row, "end_time")?,
        artifact_uri: text(row, "artifact_uri")?,
        lifecycle_stage: text(row, "lifecycle_stage")?,
        run_id,
    })
}

/// The key a new run gets: the next number under SQLite's single writer, the sequence's next on PostgreSQL.
fn next_run_key(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "(SELECT COALESCE(MAX(run_key), 0) + 1 FROM runs)",
        Dialect::Postgres => "nextval('run_keys')",
    }
}

fn run_not_found(run_id: &str) -> StoreError {
    StoreError::NotFound(format!("Run with id={run_id} not found"))
}

/// Checks that the run exists and is active, inside a write transaction; answers its integer key.
async fn require_active_run(transaction: &mut Transaction<'static, Any>, run_id: &str) -> StoreResult<i64> {
    let row = sqlx::query("SELECT lifecycle_stage, run_key FROM runs WHERE run_id = $1")
        .bind(run_id.to_string())
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
    require_active_stage(run_id, &text(&row, "lifecycle_stage")?)?;
    integer(&row, "run_key")
}

/// Refuses writes to a run that is not active.
pub(super) fn require_active_stage(run_id: &str, stage: &str) -> StoreResult<()> {
    if stage != "active" {
        return Err(StoreError::InvalidParameter(format!(
            "The run {run_id} must be in the 'active' state. Current state is {stage}."
        )));
    }
    Ok(())
}

async fn upsert_run_tags(transaction: &mut Transaction<'static, Any>, run_id: &str, tags: &[Tag]) -> StoreResult<()> {
    for tag in tags {
        sqlx::query("INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value")
            .bind(run_id.to_string())
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&mut **transaction)
            .await?;
        if tag.key == RUN_NAME_TAG {
            sqlx::query("UPDATE runs SET name = $1 WHERE run_id = $2")
                .bind(tag.value.clone())
                .bind(run_id.to_string())
                .execute(&mut **transaction)
                .await?;
        }
    }
    Ok(())
}

async fn insert_params(
    transaction: &mut Transaction<'static, Any>,
    dialect: Dialect,
    run_id: &str,
    params: &[Param],
) -> StoreResult<()> {
    if params.is_empty() {
        return Ok(());
    }
    let submitted = submitted_params(params)?;
    for chunk in params.chunks(INSERT_CHUNK_ROWS) {
        let mut builder = SqlBuilder::new("INSERT INTO params (run_id, key, value) VALUES ");
        for (index, param) in chunk.iter().enumerate() {
            if index > 0 {
                builder.push(", ");
            }
            let run = builder.bind_text(run_id);
            let key = builder.bind_text(&param.key);
            let value = builder.bind_text(&param.value);
            builder.push(&format!("({run}, {key}, {value})"));
        }
        builder.push(" ON CONFLICT (run_id, key) DO NOTHING");
        built_query(&builder, dialect).execute(&mut **transaction).await?;
    }
    let keys: Vec<String> = submitted.keys().map(|key| key.to_string()).collect();
    let mut builder = SqlBuilder::new("SELECT key, value FROM params WHERE run_id = ");
    let run = builder.bind_text(run_id);
    builder.push(&format!("{run} AND key IN "));
    builder.push_text_list(&keys);
    let stored = built_query(&builder, dialect).fetch_all(&mut **transaction).await?;
    let stored = stored
        .iter()
        .map(|row| Ok((text(row, "key")?, text(row, "value")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    refuse_changed_params(run_id, &submitted, stored)
}

/// The params of a request by key, refusing one key sent with two values.
pub(super) fn submitted_params(params: &[Param]) -> StoreResult<BTreeMap<&str, &str>> {
    let mut submitted: BTreeMap<&str, &str> = BTreeMap::new();
    for param in params {
        if let Some(previous) = submitted.insert(&param.key, &param.value)
            && previous != param.value
        {
            return Err(StoreError::InvalidParameter(format!(
                "Duplicate parameter keys have been submitted: ['{}']. Please ensure the request contains only one param value per param key.",
                param.key
            )));
        }
    }
    Ok(submitted)
}

/// Refuses the request when a stored `(key, value)` differs from what was submitted: params are immutable.
pub(super) fn refuse_changed_params(
    run_id: &str,
    submitted: &BTreeMap<&str, &str>,
    stored: impl IntoIterator<Item = (String, String)>,
) -> StoreResult<()> {
    let mut conflicts = Vec::new();
    for (key, old_value) in stored {
        let new_value = submitted.get(key.as_str()).copied().unwrap_or_default();
        if old_value != new_value {
            conflicts.push(format!(
                "{{'key': '{key}', 'old_value': '{old_value}', 'new_value': '{new_value}'}}"
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err(StoreError::InvalidParameter(format!(
            "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{run_id}'.",
            conflicts.join(", ")
        )));
    }
    Ok(())
}

/// Orders metric points the way MLflow picks the "latest": by step, then timestamp, then value.
fn is_later(candidate: &Metric, current: &Metric) -> bool {
    let candidate_value = stored_metric_value(candidate.value).0;
    let current_value = stored_metric_value(current.value).0;
    (candidate.step, candidate.timestamp)
        .cmp(&(current.step, current.timestamp))
        .then(
            candidate_value
                .partial_cmp(&current_value)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
        .is_gt()
}

/// The newest point of each key in a batch, by key.
pub(super) fn latest_per_key(metrics: &[Metric]) -> Vec<&Metric> {
    let mut latest_per_key: BTreeMap<&str, &Metric> = BTreeMap::new();
    for point in metrics {
        match latest_per_key.get(point.key.as_str()) {
            Some(current) if !is_later(point, current) => {}
            _ => {
                latest_per_key.insert(&point.key, point);
            }
        }
    }
    latest_per_key.into_values().collect()
}

/// Keeps `latest_metrics` at the newest point of each key (step, then timestamp, then value).
pub(super) const LATEST_METRIC_UPSERT: &str = " ON CONFLICT (run_key, key) DO UPDATE SET step = excluded.step, \
     timestamp = excluded.timestamp, value = excluded.value, is_nan = excluded.is_nan \
     WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step AND \
     (excluded.timestamp > latest_metrics.timestamp OR (excluded.timestamp = latest_metrics.timestamp \
     AND excluded.value > latest_metrics.value)))";

async fn insert_metrics(
    transaction: &mut Transaction<'static, Any>,
    dialect: Dialect,
    run_key: i64,
    metrics: &[Metric],
) -> StoreResult<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    for chunk in metrics.chunks(INSERT_CHUNK_ROWS) {
        let mut builder = SqlBuilder::new(
            "INSERT INTO metrics (run_key, key, step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest) VALUES ",
        );
        for (index, point) in chunk.iter().enumerate() {
            if index > 0 {
                builder.push(", ");
            }
            let (value, is_nan) = stored_metric_value(point.value);
            let placeholders = [
                builder.bind_integer(run_key),
                builder.bind_text(&point.key),
                builder.bind_integer(point.step),
                builder.bind_integer(point.timestamp),
                builder.bind(crate::search::SqlValue::Real(value)),
                builder.bind_integer(is_nan),
            ];
            builder.push(&format!("({}, ", placeholders.join(", ")));
            for optional in [&point.model_id, &point.dataset_name, &point.dataset_digest] {
                match optional {
                    Some(text_value) => {
                        let placeholder = builder.bind_text(text_value);
                        builder.push(&format!("{placeholder}, "));
                    }
                    None => builder.push("NULL, "),
                }
            }
            builder.sql.truncate(builder.sql.len() - 2);
            builder.push(")");
        }
        builder.push(" ON CONFLICT DO NOTHING");
        built_query(&builder, dialect).execute(&mut **transaction).await?;
    }
    let latest = latest_per_key(metrics);
    for chunk in latest.chunks(INSERT_CHUNK_ROWS) {
        let mut builder =
            SqlBuilder::new("INSERT INTO latest_metrics (run_key, key, step, timestamp, value, is_nan) VALUES ");
        for (index, point) in chunk.iter().enumerate() {
            if index > 0 {
                builder.push(", ");
            }
            let (value, is_nan) = stored_metric_value(point.value);
            let placeholders = [
                builder.bind_integer(run_key),
                builder.bind_text(&point.key),
                builder.bind_integer(point.step),
                builder.bind_integer(point.timestamp),
                builder.bind(crate::search::SqlValue::Real(value)),
                builder.bind_integer(is_nan),
            ];
            builder.push(&format!("({})", placeholders.join(", ")));
        }
        builder.push(LATEST_METRIC_UPSERT);
        built_query(&builder, dialect).execute(&mut **transaction).await?;
    }
    Ok(())
}

impl SqlStore {
    /// Assembles whole runs for the given ids, in the given order.
    pub(super) async fn load_runs(&self, run_ids: &[String]) -> StoreResult<Vec<Run>> {
        let mut runs = Vec::with_capacity(run_ids.len());
        for run_id_slice in run_ids.chunks(super::IDS_PER_STATEMENT) {
            runs.extend(self.load_run_slice(run_id_slice).await?);
        }
        Ok(runs)
    }

    async fn load_run_slice(&self, run_ids: &[String]) -> StoreResult<Vec<Run>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = SqlBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id IN "));
        builder.push_text_list(run_ids);
        let mut infos: HashMap<String, RunInfo> = HashMap::new();
        for info in self.decoded_rows(&builder, |row| run_info_from_row(row)).await? {
            infos.insert(info.run_id.clone(), info);
        }
        let mut params = self.run_key_values("params", run_ids).await?;
        let mut tags = self.run_key_values("tags", run_ids).await?;
        let mut metrics = self.load_latest_metrics(run_ids).await?;
        let mut inputs = self.load_run_inputs(run_ids).await?;
        let mut outputs = self.load_run_outputs(run_ids).await?;
        let mut runs = Vec::with_capacity(run_ids.len());
        for run_id in run_ids {
            let Some(info) = infos.remove(run_id) else { continue };
            runs.push(Run {
                info,
                data: RunData {
                    metrics: metrics.remove(run_id).unwrap_or_default(),
                    params: params.remove(run_id).unwrap_or_default(),
                    tags: tags.remove(run_id).unwrap_or_default(),
                },
                inputs: inputs.remove(run_id).unwrap_or_default(),
                outputs: outputs.remove(run_id).unwrap_or_default(),
            });
        }
        Ok(runs)
    }

    /// The `(key, value)` rows of `params` or `tags` for the given runs, by run.
    async fn run_key_values(&self, table: &str, run_ids: &[String]) -> StoreResult<HashMap<String, Vec<Tag>>> {
        let mut builder = SqlBuilder::new(format!("SELECT run_id, key, value FROM {table} WHERE run_id IN "));
        builder.push_text_list(run_ids);
        builder.push(" ORDER BY key");
        let mut grouped: HashMap<String, Vec<Tag>> = HashMap::new();
        let rows = self
            .decoded_rows(&builder, |row| {
                Ok((text(row, "run_id")?, Tag::new(text(row, "key")?, text(row, "value")?)))
            })
            .await?;
        for (run_id, tag) in rows {
            grouped.entry(run_id).or_default().push(tag);
        }
        Ok(grouped)
    }

    async fn load_latest_metrics(&self, run_ids: &[String]) -> StoreResult<HashMap<String, Vec<Metric>>> {
        let mut builder = SqlBuilder::new(
            "SELECT r.run_id, lm.key, lm.value, lm.is_nan, lm.timestamp, lm.step FROM latest_metrics lm \
                             JOIN runs r ON r.run_key = lm.run_key WHERE r.run_id IN ",
        );
        builder.push_text_list(run_ids);
        builder.push(" ORDER BY lm.key");
        let mut grouped: HashMap<String, Vec<Metric>> = HashMap::new();
        let rows = self
            .decoded_rows(&builder, |row| Ok((text(row, "run_id")?, metric(row)?)))
            .await?;
        for (run_id, point) in rows {
            grouped.entry(run_id).or_default().push(point);
        }
        Ok(grouped)
    }

    async fn load_run_inputs(&self, run_ids: &[String]) -> StoreResult<HashMap<String, RunInputs>> {
        let mut grouped: HashMap<String, RunInputs> = HashMap::new();
        let mut builder = SqlBuilder::new(
            "SELECT i.run_id, d.dataset_id, d.name, d.digest, d.source_type, d.source, d.dataset_schema, d.profile \
             FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id WHERE i.run_id IN ",
        );
        builder.push_text_list(run_ids);
        builder.push(" ORDER BY d.name, d.digest");
        let dataset_rows = self
            .decoded_rows(&builder, |row| {
                let dataset = Dataset {
                    name: text(row, "name")?,
                    digest: text(row, "digest")?,
                    source_type: text(row, "source_type")?,
                    source: text(row, "source")?,
                    schema: optional_text(row, "dataset_schema")?,
                    profile: optional_text(row, "profile")?,
                };
                Ok((text(row, "run_id")?, text(row, "dataset_id")?, dataset))
            })
            .await?;
        let mut tag_builder =
            SqlBuilder::new("SELECT run_id, dataset_id, key, value FROM run_dataset_input_tags WHERE run_id IN ");
        tag_builder.push_text_list(run_ids);
        tag_builder.push(" ORDER BY key");
        let mut input_tags: HashMap<(String, String), Vec<Tag>> = HashMap::new();
        let tag_rows = self
            .decoded_rows(&tag_builder, |row| {
                let owner = (text(row, "run_id")?, text(row, "dataset_id")?);
                Ok((owner, Tag::new(text(row, "key")?, text(row, "value")?)))
            })
            .await?;
        for (owner, tag) in tag_rows {
            input_tags.entry(owner).or_default().push(tag);
        }
        for (run_id, dataset_id, dataset) in dataset_rows {
            let tags = input_tags.remove(&(run_id.clone(), dataset_id)).unwrap_or_default();
            grouped
                .entry(run_id)
                .or_default()
                .dataset_inputs
                .push(DatasetInput { tags, dataset });
        }
        let mut model_builder = SqlBuilder::new("SELECT run_id, model_id FROM run_model_inputs WHERE run_id IN ");
        model_builder.push_text_list(run_ids);
        let model_rows = self
            .decoded_rows(&model_builder, |row| Ok((text(row, "run_id")?, text(row, "model_id")?)))
            .await?;
        for (run_id, model_id) in model_rows {
            grouped
                .entry(run_id)
                .or_default()
                .model_inputs
                .push(ModelInput { model_id });
        }
        Ok(grouped)
    }

    async fn load_run_outputs(&self, run_ids: &[String]) -> StoreResult<HashMap<String, RunOutputs>> {
        let mut builder = SqlBuilder::new("SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id IN ");
        builder.push_text_list(run_ids);
        let mut grouped: HashMap<String, RunOutputs> = HashMap::new();
        let rows = self
            .decoded_rows(&builder, |row| {
                let output = ModelOutput {
                    model_id: text(row, "model_id")?,
                    step: integer(row, "step")?,
                };
                Ok((text(row, "run_id")?, output))
            })
            .await?;
        for (run_id, output) in rows {
            grouped.entry(run_id).or_default().model_outputs.push(output);
        }
        Ok(grouped)
    }

    /// A run's experiment id, or not-found.
    pub(super) async fn run_experiment_id(&self, run_id: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT experiment_id FROM runs WHERE run_id = $1")
            .bind(run_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| run_not_found(run_id))?;
        integer(&row, "experiment_id")
    }
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_run(&self, new_run: &NewRun) -> StoreResult<Run> {
        let experiment = crate::traits::ExperimentStore::get_experiment(self, &new_run.experiment_id).await?;
        if experiment.lifecycle_stage != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "The experiment {} must be in the 'active' state. Current state is {}.",
                experiment.experiment_id, experiment.lifecycle_stage
            )));
        }
        let experiment_id = parse_experiment_id(&new_run.experiment_id)?;
        let run_id = loopline_core::ids::new_run_id();
        let artifact_uri = format!(
            "{}/{run_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let mut tags: Vec<Tag> = new_run
            .tags
            .iter()
            .filter(|tag| tag.key != RUN_NAME_TAG)
            .cloned()
            .collect();
        tags.push(Tag::new(RUN_NAME_TAG, new_run.run_name.clone()));
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time, lifecycle_stage, \
                 artifact_uri, run_key) VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, 'active', $6, {})",
            next_run_key(self.dialect)
        )))
        .bind(run_id.clone())
        .bind(experiment_id)
        .bind(new_run.run_name.clone())
        .bind(new_run.user_id.clone())
        .bind(new_run.start_time)
        .bind(artifact_uri)
        .execute(&mut *transaction)
        .await?;
        upsert_run_tags(&mut transaction, &run_id, &tags).await?;
        transaction.commit().await?;
        drop(_writer);
        self.get_run(&run_id).await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Run> {
        self.load_runs(&[run_id.to_string()])
            .await?
            .pop()
            .ok_or_else(|| run_not_found(run_id))
    }

    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> StoreResult<RunInfo> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            require_active_run(&mut transaction, run_id).await?;
            if let Some(status) = &update.status {
                sqlx::query("UPDATE runs SET status = $1 WHERE run_id = $2")
                    .bind(status.clone())
                    .bind(run_id.to_string())
                    .execute(&mut *transaction)
                    .await?;
            }
            if let Some(end_time) = update.end_time {
                sqlx::query("UPDATE runs SET end_time = $1 WHERE run_id = $2")
                    .bind(end_time)
                    .bind(run_id.to_string())
                    .execute(&mut *transaction)
                    .await?;
            }
            if let Some(run_name) = update.run_name.as_ref().filter(|name| !name.is_empty()) {
                upsert_run_tags(&mut transaction, run_id, &[Tag::new(RUN_NAME_TAG, run_name.clone())]).await?;
            }
            transaction.commit().await?;
        }
        Ok(self.get_run(run_id).await?.info)
    }

    async fn set_run_lifecycle(&self, run_id: &str, stage: LifecycleStage) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let deleted_time = (stage == LifecycleStage::Deleted).then(loopline_core::time::now_millis);
        let result = sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_id = $3")
            .bind(stage.as_str().to_string())
            .bind(deleted_time)
            .bind(run_id.to_string())
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(run_not_found(run_id));
        }
        Ok(())
    }

    async fn log_owned_batch(&self, run_id: &str, batch: LogBatch) -> StoreResult<()> {
        let Some(writer) = &self.sqlite_writer else {
            return self.log_batch(run_id, &batch).await;
        };
        let run_id = run_id.to_string();
        writer
            .write(move |connection| super::sqlite_batch::log_batch(connection, &run_id, &batch))
            .await
    }

    async fn log_batch(&self, run_id: &str, batch: &LogBatch) -> StoreResult<()> {
        if self.sqlite_writer.is_some() {
            return self.log_owned_batch(run_id, batch.clone()).await;
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let run_key = require_active_run(&mut transaction, run_id).await?;
        insert_params(&mut transaction, self.dialect, run_id, &batch.params).await?;
        insert_metrics(&mut transaction, self.dialect, run_key, &batch.metrics).await?;
        upsert_run_tags(&mut transaction, run_id, &batch.tags).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn delete_run_tag(&self, run_id: &str, key: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        require_active_run(&mut transaction, run_id).await?;
        let result = sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2")
            .bind(run_id.to_string())
            .bind(key.to_string())
            .execute(&mut *transaction)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn metric_history(&self, run_id: &str, key: &str, page: &PageRequest) -> StoreResult<Page<Metric>> {
        self.run_experiment_id(run_id).await?;
        let (max_results, offset) = page_limits(page, 25_000, 25_000, "get_metric_history")?;
        let rows = query_text(format!(
            "SELECT key, value, is_nan, timestamp, step FROM metrics \
             WHERE run_key = (SELECT run_key FROM runs WHERE run_id = $1) AND key = $2 \
             ORDER BY step, timestamp, value LIMIT {} OFFSET {offset}",
            max_results + 1
        ))
        .bind(run_id.to_string())
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        let metrics = rows.iter().map(metric).collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(metrics, max_results, offset))
    }

    async fn metric_history_sampled(
        &self,
        run_ids: &[String],
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>> {
        self.metric_history_sampled_sql(run_ids, key, max_results, range).await
    }

    async fn dataset_summaries(&self, experiment_ids: &[String], limit: u64) -> StoreResult<Vec<RunDatasetSummary>> {
        if experiment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = SqlBuilder::new(
            "SELECT DISTINCT d.experiment_id, d.name, d.digest, ctx.value AS context FROM datasets d \
             JOIN run_dataset_inputs i ON i.dataset_id = d.dataset_id \
             LEFT JOIN run_dataset_input_tags ctx ON ctx.run_id = i.run_id AND ctx.dataset_id = i.dataset_id \
             AND ctx.key = 'mlflow.data.context' WHERE d.experiment_id IN ",
        );
        super::push_experiment_id_list(&mut builder, experiment_ids)?;
        builder.push(&format!(" ORDER BY d.experiment_id, d.name, d.digest LIMIT {limit}"));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(RunDatasetSummary {
                    experiment_id: integer(row, "experiment_id")?.to_string(),
                    name: text(row, "name")?,
                    digest: text(row, "digest")?,
                    context: optional_text(row, "context")?,
                })
            })
            .collect()
    }

    async fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput], models: &[ModelInput]) -> StoreResult<()> {
        let experiment_id = self.run_experiment_id(run_id).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        require_active_run(&mut transaction, run_id).await?;
        for input in datasets {
            let dataset = &input.dataset;
            sqlx::query(
                "INSERT INTO datasets (dataset_id, experiment_id, name, digest, source_type, source, dataset_schema, profile) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (experiment_id, name, digest) DO NOTHING",
            )
            .bind(loopline_core::ids::new_run_id())
            .bind(experiment_id)
            .bind(dataset.name.clone())
            .bind(dataset.digest.clone())
            .bind(dataset.source_type.clone())
            .bind(dataset.source.clone())
            .bind(dataset.schema.clone())
            .bind(dataset.profile.clone())
            .execute(&mut *transaction)
            .await?;
            let row =
                sqlx::query("SELECT dataset_id FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3")
                    .bind(experiment_id)
                    .bind(dataset.name.clone())
                    .bind(dataset.digest.clone())
                    .fetch_one(&mut *transaction)
                    .await?;
            let dataset_id = text(&row, "dataset_id")?;
            sqlx::query("INSERT INTO run_dataset_inputs (run_id, dataset_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(run_id.to_string())
                .bind(dataset_id.clone())
                .execute(&mut *transaction)
                .await?;
            for tag in &input.tags {
                sqlx::query(
                    "INSERT INTO run_dataset_input_tags (run_id, dataset_id, key, value) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (run_id, dataset_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(run_id.to_string())
                .bind(dataset_id.clone())
                .bind(tag.key.clone())
                .bind(tag.value.clone())
                .execute(&mut *transaction)
                .await?;
            }
        }
        for model in models {
            sqlx::query("INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(run_id.to_string())
                .bind(model.model_id.clone())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        require_active_run(&mut transaction, run_id).await?;
        for model in models {
            sqlx::query(
                "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
            )
            .bind(run_id.to_string())
            .bind(model.model_id.clone())
            .bind(model.step)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn search_runs(&self, search: &RunSearch) -> StoreResult<Page<Run>> {
        self.search_runs_sql(search).await
    }
}
