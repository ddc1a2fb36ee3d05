//! Traces on SQL. The trace info is kept as the JSON the client sent (with our additions); the columns
//! beside it exist for searching and ordering.

use super::query_text;
use super::rows::text;
use super::sqlite_writer::Lane;
use super::trace_filters;
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits, parse_experiment_id};
use crate::entities::{Page, Tag};
use crate::error::{StoreError, StoreResult};
use crate::queries::{NewTrace, TraceSearch};
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, compile_expression, identifier_kind, key_value_predicate,
    numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparator, Comparison, FilterValue, SqlBuilder, SqlValue, parse_filter, parse_order_clause};
use crate::traits::TraceStore;
use async_trait::async_trait;

fn trace_not_found(trace_id: &str) -> StoreError {
    StoreError::NotFound(format!("Trace with ID {trace_id} is not found."))
}

fn attribute_column(key: &str) -> Option<(&'static str, bool)> {
    match key {
        "timestamp" | "timestamp_ms" => Some(("t.timestamp_ms", true)),
        "execution_time" | "execution_time_ms" => Some(("t.execution_time_ms", true)),
        "end_time" | "end_time_ms" => Some(("(t.timestamp_ms + COALESCE(t.execution_time_ms, 0))", true)),
        "status" | "state" => Some(("t.state", false)),
        "request_id" | "trace_id" => Some(("t.trace_id", false)),
        _ => None,
    }
}

pub(super) const TRACE_TAGS: KeyValueTable<'static> = KeyValueTable {
    table: "trace_tags",
    join: &[("trace_id", "t.trace_id")],
    value_column: "value",
};
pub(super) const TRACE_METADATA: KeyValueTable<'static> = KeyValueTable {
    table: "trace_metadata",
    join: &[("trace_id", "t.trace_id")],
    value_column: "value",
};
/// The most traces one call links to a run (as MLflow).
const MAX_TRACE_LINKS: usize = 100;
/// The longest trace id a link may name (MLflow's ids are about 35 characters).
const MAX_LINKED_TRACE_ID_BYTES: usize = 256;
/// The metadata key under which a trace records the run it was created in.
const SOURCE_RUN_METADATA_KEY: &str = "mlflow.sourceRun";

/// The tag listing the prompt versions a trace used (`[{"name", "version"}]`).
const LINKED_PROMPTS_TAG: &str = "mlflow.linkedPrompts";

struct TraceClauses {
    dialect: super::Dialect,
}

/// A LIKE pattern matching `text` anywhere, with `%`, `_` and `\` taken literally (`ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// `prompt = 'name/version'`: traces that used that prompt version (listed in their linked-prompts tag, written
/// compactly by Loopline or with Python's spacing by a client).
fn prompt_predicate(comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
    let (Comparator::Equal, FilterValue::Text(value)) = (&comparison.comparator, &comparison.value) else {
        return Err("prompts are filtered with prompt = '<name>/<version>' only".to_string());
    };
    let Some((name, version)) = value
        .rsplit_once('/')
        .filter(|(name, version)| !name.is_empty() && !version.is_empty())
    else {
        return Err(format!("Invalid prompt '{value}': expected '<name>/<version>'"));
    };
    let entry = serde_json::json!({"name": name, "version": version});
    let compact = builder.bind_text(&contains_pattern(&entry.to_string()));
    let spaced = builder.bind_text(&contains_pattern(&loopline_core::python_json::dumps(&entry)));
    let key = builder.bind_text(LINKED_PROMPTS_TAG);
    builder.push(&format!(
        "t.trace_id IN (SELECT g.trace_id FROM trace_tags g WHERE g.key = {key} AND \
         (g.value LIKE {compact} ESCAPE '\\' OR g.value LIKE {spaced} ESCAPE '\\'))"
    ));
    Ok(())
}

/// A trace-info field kept only in the stored document (`client_request_id`), as SQL text.
fn trace_info_field(dialect: super::Dialect, field: &str) -> String {
    match dialect {
        super::Dialect::Sqlite => format!("json_extract(t.trace_info, '$.{field}')"),
        super::Dialect::Postgres => format!("(t.trace_info::jsonb ->> '{field}')"),
    }
}

/// The sort key of one trace order_by entry.
fn trace_order_term(clause_text: &str, builder: &mut SqlBuilder) -> StoreResult<OrderTerm> {
    let clause = parse_order_clause(clause_text).map_err(invalid_filter)?;
    let keyed = |table: &str, key: &str, builder: &mut SqlBuilder| {
        let key = builder.bind_text(key);
        OrderTerm {
            expression: format!("(SELECT o.value FROM {table} o WHERE o.trace_id = t.trace_id AND o.key = {key})"),
            ascending: clause.ascending,
            nullable: true,
        }
    };
    Ok(match (clause.prefix.as_deref(), clause.key.as_str()) {
        (Some("tag" | "tags"), key) => keyed("trace_tags", key, builder),
        (Some("metadata" | "request_metadata"), key) => keyed("trace_metadata", key, builder),
        (None | Some("attribute" | "attributes"), "name") => keyed("trace_tags", "mlflow.traceName", builder),
        (None | Some("attribute" | "attributes"), "run_id") => {
            keyed("trace_metadata", SOURCE_RUN_METADATA_KEY, builder)
        }
        (None | Some("attribute" | "attributes"), key) => {
            let (column, _) = attribute_column(key)
                .ok_or_else(|| StoreError::InvalidParameter(format!("cannot order traces by '{clause_text}'")))?;
            OrderTerm::column(column, clause.ascending)
        }
        _ => {
            return Err(StoreError::InvalidParameter(format!(
                "cannot order traces by '{clause_text}'"
            )));
        }
    })
}

impl ClauseCompiler for TraceClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        if trace_filters::is_span_clause(comparison) {
            return trace_filters::spans_predicate(&[comparison], builder);
        }
        match comparison.prefix.as_deref() {
            Some("metadata" | "request_metadata") => return key_value_predicate(&TRACE_METADATA, comparison, builder),
            Some("tag" | "tags") => return key_value_predicate(&TRACE_TAGS, comparison, builder),
            Some("feedback" | "expectation" | "issue") => {
                return trace_filters::assessment_predicate(comparison, builder);
            }
            _ => {}
        }
        if comparison.key == "name" {
            let by_name_tag = Comparison {
                key: "mlflow.traceName".to_string(),
                ..comparison.clone()
            };
            return key_value_predicate(&TRACE_TAGS, &by_name_tag, builder);
        }
        if identifier_kind(comparison.prefix.as_deref()).ok() != Some(IdentifierKind::Attribute) {
            return Err(format!(
                "traces can be filtered by attributes, tag.<key> and metadata.<key>; '{}' is not supported",
                crate::search::compile::identifier(comparison)
            ));
        }
        if comparison.key == "run_id" {
            let by_source_run = Comparison {
                key: SOURCE_RUN_METADATA_KEY.to_string(),
                ..comparison.clone()
            };
            if !matches!(comparison.comparator, Comparator::Equal | Comparator::In) {
                return key_value_predicate(&TRACE_METADATA, &by_source_run, builder);
            }
            // Made in the run, or linked to it afterwards.
            builder.push("(");
            key_value_predicate(&TRACE_METADATA, &by_source_run, builder)?;
            builder.push(" OR t.trace_id IN (SELECT l.trace_id FROM trace_run_links l WHERE ");
            string_predicate("l.run_id", comparison, true, builder)?;
            builder.push("))");
            return Ok(());
        }
        match comparison.key.as_str() {
            "prompt" => return prompt_predicate(comparison, builder),
            "client_request_id" => {
                let column = trace_info_field(self.dialect, "client_request_id");
                return string_predicate(&column, comparison, true, builder);
            }
            _ => {}
        }
        match attribute_column(&comparison.key) {
            Some((column, true)) => numeric_predicate(column, comparison, builder),
            Some((column, false)) => string_predicate(column, comparison, true, builder),
            None => Err(format!(
                "Invalid trace attribute '{}': use timestamp_ms, execution_time_ms, end_time_ms, status, trace_id, \
                 client_request_id, run_id, name or prompt",
                comparison.key
            )),
        }
    }
}

/// Appends ` AND <filter>` for a trace search filter over traces aliased `t`. Span clauses joined by AND
/// are one span's.
pub(super) fn push_trace_filter(
    builder: &mut SqlBuilder,
    filter: Option<&str>,
    dialect: super::Dialect,
) -> StoreResult<()> {
    let Some(expression) = parse_filter(filter.unwrap_or_default()).map_err(invalid_filter)? else {
        return Ok(());
    };
    let comparisons = count_comparisons(&expression);
    if comparisons > MAX_TRACE_FILTER_COMPARISONS {
        return Err(StoreError::InvalidParameter(format!(
            "a trace filter may hold at most {MAX_TRACE_FILTER_COMPARISONS} comparisons, got {comparisons}"
        )));
    }
    let (span_clauses, rest) = trace_filters::split_span_clauses(&expression);
    let compiled = (|| {
        if !span_clauses.is_empty() {
            builder.push(" AND ");
            trace_filters::spans_predicate(&span_clauses, builder)?;
        }
        for part in rest {
            builder.push(" AND ");
            compile_expression(part, &TraceClauses { dialect }, builder)?;
        }
        Ok::<(), String>(())
    })();
    compiled.map_err(|reason| invalid_search("trace filter", reason))
}

/// The most comparisons one trace filter holds: span clauses nest inside one subquery, and SQLite refuses
/// expressions deeper than 1,000.
const MAX_TRACE_FILTER_COMPARISONS: usize = 200;

fn count_comparisons(expression: &crate::search::FilterExpression) -> usize {
    match expression {
        crate::search::FilterExpression::Comparison(_) => 1,
        crate::search::FilterExpression::And(children) | crate::search::FilterExpression::Or(children) => {
            children.iter().map(count_comparisons).sum()
        }
    }
}

/// The string entries of a JSON object field of the trace info (`tags`, `trace_metadata`).
pub(super) fn string_map(trace_info: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    trace_info
        .get(field)
        .and_then(serde_json::Value::as_object)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(key, value)| value.as_str().map(|text| (key.clone(), text.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Where the tag naming a trace's span location sits in its info.
pub(super) const SPANS_LOCATION_POINTER: &str = "/tags/mlflow.trace.spansLocation";

/// Stores a trace's row or replaces the one with its id.
pub(super) const TRACE_UPSERT: &str = "INSERT INTO traces (trace_id, experiment_id, timestamp_ms, execution_time_ms, state, trace_info) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (trace_id) DO UPDATE SET timestamp_ms = excluded.timestamp_ms, \
     execution_time_ms = excluded.execution_time_ms, state = excluded.state, trace_info = excluded.trace_info";

/// Stores one row of a trace's assessments (see [`super::assessment_rows::AssessmentRow`]); `$10` says
/// whether `$6` (the aggregate) is given.
pub(super) const ASSESSMENT_INSERT: &str = "INSERT INTO trace_assessments (trace_id, assessment_id, kind, name, value, aggregate_value, \
     is_numeric, valid, create_time_ms) VALUES ($1, $2, $3, $4, $5, CASE WHEN $10 = 1 THEN $6 END, $7, $8, $9) \
     ON CONFLICT (trace_id, assessment_id) DO NOTHING";

/// Writes a trace's row (inserting or replacing it) and the searchable copies of its tags and metadata.
pub(super) async fn write_trace_rows(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    trace: &NewTrace,
    experiment_id: i64,
) -> StoreResult<()> {
    sqlx::query(TRACE_UPSERT)
        .bind(trace.trace_id.clone())
        .bind(experiment_id)
        .bind(trace.timestamp_ms)
        .bind(trace.execution_time_ms)
        .bind(trace.state.clone())
        .bind(trace.trace_info.to_string())
        .execute(&mut **transaction)
        .await?;
    write_searchable(transaction, &trace.trace_id, &trace.trace_info).await
}

/// Serialises writers of one trace on PostgreSQL (SQLite has one writer at a time anyway): the client's
/// end of a trace and its span batches arrive concurrently, and each reads the trace before writing it, so
/// without this the later writer overwrote what the other had just stored.
pub(super) async fn lock_trace(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: super::Dialect,
    trace_id: &str,
) -> StoreResult<()> {
    if dialect == super::Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7361833, hashtext($1))")
            .bind(trace_id.to_string())
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

/// Rewrites the searchable copies of a trace's tags, metadata and assessments from its info.
pub(super) async fn write_searchable(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    trace_id: &str,
    trace_info: &serde_json::Value,
) -> StoreResult<()> {
    for (table, field) in [("trace_tags", "tags"), ("trace_metadata", "trace_metadata")] {
        query_text(format!("DELETE FROM {table} WHERE trace_id = $1"))
            .bind(trace_id.to_string())
            .execute(&mut **transaction)
            .await?;
        for (key, value) in string_map(trace_info, field) {
            query_text(format!(
                "INSERT INTO {table} (trace_id, key, value) VALUES ($1, $2, $3)"
            ))
            .bind(trace_id.to_string())
            .bind(key)
            .bind(value)
            .execute(&mut **transaction)
            .await?;
        }
    }
    sqlx::query("DELETE FROM trace_assessments WHERE trace_id = $1")
        .bind(trace_id.to_string())
        .execute(&mut **transaction)
        .await?;
    let assessments = trace_info
        .get("assessments")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for assessment in assessments {
        let Some(row) = super::assessment_rows::assessment_row(assessment) else {
            continue;
        };
        sqlx::query(ASSESSMENT_INSERT)
            .bind(trace_id.to_string())
            .bind(row.assessment_id)
            .bind(row.kind)
            .bind(row.name)
            .bind(row.value)
            // Always a number, with a flag for "none": a parameter that is NULL in one call and a number in the
            // next confuses PostgreSQL's cached statement through the Any driver.
            .bind(row.aggregate_value.unwrap_or(0.0))
            .bind(i64::from(row.is_numeric))
            .bind(i64::from(row.valid))
            .bind(row.create_time_ms)
            .bind(i64::from(row.aggregate_value.is_some()))
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

impl SqlStore {
    async fn update_trace_info<R: Send>(
        &self,
        trace_id: &str,
        change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> StoreResult<R> + Send,
    ) -> StoreResult<R> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        lock_trace(&mut transaction, self.dialect, trace_id).await?;
        let row = sqlx::query("SELECT trace_info FROM traces WHERE trace_id = $1")
            .bind(trace_id.to_string())
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or_else(|| trace_not_found(trace_id))?;
        let mut info: serde_json::Value = serde_json::from_str(&text(&row, "trace_info")?).map_err(|error| {
            StoreError::InvalidParameter(format!("stored trace {trace_id} is not valid JSON: {error}"))
        })?;
        let object = info
            .as_object_mut()
            .ok_or_else(|| StoreError::InvalidParameter(format!("stored trace {trace_id} is not a JSON object")))?;
        let answer = change(object)?;
        sqlx::query("UPDATE traces SET trace_info = $1 WHERE trace_id = $2")
            .bind(info.to_string())
            .bind(trace_id.to_string())
            .execute(&mut *transaction)
            .await?;
        write_searchable(&mut transaction, trace_id, &info).await?;
        transaction.commit().await?;
        Ok(answer)
    }
}

#[async_trait]
impl TraceStore for SqlStore {
    async fn start_trace(&self, trace: &NewTrace) -> StoreResult<()> {
        let experiment_id = parse_experiment_id(&trace.experiment_id)?;
        self.experiment_stage(experiment_id).await?;
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        lock_trace(&mut transaction, self.dialect, &trace.trace_id).await?;
        // Spans that came over OTLP before the client finished the trace stay where they are: the client's
        // trace info does not know about them.
        let mut trace = trace.clone();
        if let Some(stored) = sqlx::query("SELECT trace_info FROM traces WHERE trace_id = $1")
            .bind(trace.trace_id.clone())
            .fetch_optional(&mut *transaction)
            .await?
        {
            let stored: serde_json::Value = serde_json::from_str(&text(&stored, "trace_info")?).unwrap_or_default();
            if let Some(location) = stored.pointer(SPANS_LOCATION_POINTER).cloned() {
                super::trace_spans::mark_spans_location(&mut trace.trace_info, location);
            }
        }
        write_trace_rows(&mut transaction, &trace, experiment_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn get_trace_info(&self, trace_id: &str) -> StoreResult<serde_json::Value> {
        let row = sqlx::query("SELECT trace_info FROM traces WHERE trace_id = $1")
            .bind(trace_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| trace_not_found(trace_id))?;
        serde_json::from_str(&text(&row, "trace_info")?).map_err(|error| {
            StoreError::InvalidParameter(format!("stored trace {trace_id} is not valid JSON: {error}"))
        })
    }

    async fn search_traces(&self, search: &TraceSearch) -> StoreResult<Page<serde_json::Value>> {
        let (max_results, offset) = page_limits(&search.page, 100, 50_000, "search_traces")?;
        if search.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut builder = SqlBuilder::new("SELECT t.trace_info FROM traces t WHERE t.experiment_id IN ");
        super::push_experiment_id_list(&mut builder, &search.experiment_ids)?;
        push_trace_filter(&mut builder, search.filter.as_deref(), self.dialect)?;
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for clause_text in &search.order_by {
            terms.push(trace_order_term(clause_text, &mut builder)?);
        }
        terms.push(OrderTerm::column("t.timestamp_ms", false));
        terms.push(OrderTerm::column("t.trace_id", true));
        builder.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let mut infos = Vec::with_capacity(rows.len());
        for row in rows {
            let info: serde_json::Value = serde_json::from_str(&text(&row, "trace_info")?)
                .map_err(|error| StoreError::InvalidParameter(format!("stored trace is not valid JSON: {error}")))?;
            infos.push(info);
        }
        Ok(into_page(infos, max_results, offset))
    }

    async fn set_trace_tag(&self, trace_id: &str, tag: &Tag) -> StoreResult<()> {
        let value = serde_json::Value::String(tag.value.clone());
        let key = tag.key.clone();
        self.update_trace_info(trace_id, move |info| {
            if let Some(tags) = info
                .entry("tags")
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
            {
                tags.insert(key, value);
            }
            Ok(())
        })
        .await
    }

    async fn delete_trace_tag(&self, trace_id: &str, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.update_trace_info(trace_id, move |info| {
            if let Some(tags) = info.get_mut("tags").and_then(serde_json::Value::as_object_mut) {
                tags.remove(&key);
            }
            Ok(())
        })
        .await
    }

    async fn add_trace_assessment(&self, trace_id: &str, assessment: &serde_json::Value) -> StoreResult<()> {
        let assessment = assessment.clone();
        self.update_trace_info(trace_id, move |info| {
            if let Some(assessments) = info
                .entry("assessments")
                .or_insert_with(|| serde_json::json!([]))
                .as_array_mut()
            {
                assessments.push(assessment);
            }
            Ok(())
        })
        .await
    }

    async fn change_trace_assessments(
        &self,
        trace_id: &str,
        change: crate::queries::AssessmentChange,
    ) -> StoreResult<serde_json::Value> {
        self.update_trace_info(trace_id, move |info| {
            let assessments = info.entry("assessments").or_insert_with(|| serde_json::json!([]));
            if !assessments.is_array() {
                *assessments = serde_json::json!([]);
            }
            let list = assessments.as_array_mut().expect("made an array above");
            change(list)
        })
        .await
    }

    async fn log_spans(&self, batches: Vec<crate::queries::SpanBatch>) -> StoreResult<()> {
        self.log_spans_on(Lane::Writer, batches).await
    }

    async fn delete_old_traces_in_background(
        &self,
        experiment_id: &str,
        max_timestamp_millis: i64,
        max_traces: i64,
    ) -> StoreResult<i64> {
        self.delete_traces_on(
            Lane::Background,
            experiment_id,
            &[],
            Some(max_timestamp_millis),
            Some(max_traces),
        )
        .await
    }

    async fn log_spans_in_background(&self, batches: Vec<crate::queries::SpanBatch>) -> StoreResult<()> {
        self.log_spans_on(Lane::Background, batches).await
    }

    async fn link_traces_to_run(&self, trace_ids: &[String], run_id: &str) -> StoreResult<()> {
        if trace_ids.len() > MAX_TRACE_LINKS {
            return Err(StoreError::InvalidParameter(format!(
                "Cannot link more than {MAX_TRACE_LINKS} traces to a run in a single request. Provided {} traces.",
                trace_ids.len()
            )));
        }
        if let Some(position) = trace_ids
            .iter()
            .position(|id| id.is_empty() || id.len() > MAX_LINKED_TRACE_ID_BYTES || id.contains('\0'))
        {
            return Err(StoreError::InvalidParameter(format!(
                "Invalid value for parameter 'trace_ids': trace id number {} is empty, longer than \
                 {MAX_LINKED_TRACE_ID_BYTES} bytes or holds a NUL character",
                position + 1
            )));
        }
        crate::traits::RunStore::get_run(self, run_id).await?;
        if trace_ids.is_empty() {
            return Ok(());
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        // Traces not written yet are linked too, as MLflow links them: the client exports traces in the
        // background, so a trace is often linked before its first write arrives.
        for trace_id in trace_ids {
            sqlx::query(
                "INSERT INTO trace_run_links (trace_id, run_id) VALUES ($1, $2) ON CONFLICT (trace_id, run_id) DO NOTHING",
            )
            .bind(trace_id.clone())
            .bind(run_id.to_string())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn get_trace_spans(&self, trace_id: &str) -> StoreResult<Vec<serde_json::Value>> {
        self.get_trace_spans_sql(trace_id).await
    }

    async fn count_traces(&self, experiment_ids: &[String], filter: Option<&str>) -> StoreResult<i64> {
        if experiment_ids.is_empty() {
            return Ok(0);
        }
        let mut builder = SqlBuilder::new("SELECT COUNT(*) AS traces FROM traces t WHERE t.experiment_id IN ");
        super::push_experiment_id_list(&mut builder, experiment_ids)?;
        push_trace_filter(&mut builder, filter, self.dialect)?;
        let row = built_query(&builder, self.dialect).fetch_one(&self.pool).await?;
        super::rows::integer(&row, "traces")
    }

    async fn trace_metric_rows(
        &self,
        query: &crate::queries::TraceMetricsQuery,
    ) -> StoreResult<Vec<crate::queries::MetricRow>> {
        self.trace_metric_rows_sql(query).await
    }

    async fn delete_traces(
        &self,
        experiment_id: &str,
        trace_ids: &[String],
        max_timestamp_millis: Option<i64>,
        max_traces: Option<i64>,
    ) -> StoreResult<i64> {
        self.delete_traces_on(Lane::Writer, experiment_id, trace_ids, max_timestamp_millis, max_traces)
            .await
    }
}

impl SqlStore {
    /// Stores spans; on SQLite, committed by the thread `lane` names.
    async fn log_spans_on(&self, lane: Lane, batches: Vec<crate::queries::SpanBatch>) -> StoreResult<()> {
        if let Some(writer) = &self.sqlite_writer {
            return writer
                .write_on(lane, move |connection| {
                    super::sqlite_spans::log_spans(connection, &batches)
                })
                .await;
        }
        self.log_spans_sql(&batches).await
    }

    /// `delete_traces`; on SQLite, committed by the thread `lane` names.
    async fn delete_traces_on(
        &self,
        lane: Lane,
        experiment_id: &str,
        trace_ids: &[String],
        max_timestamp_millis: Option<i64>,
        max_traces: Option<i64>,
    ) -> StoreResult<i64> {
        let experiment_id = parse_experiment_id(experiment_id)?;
        if trace_ids.len() > super::MAX_IDS_PER_CALL {
            return Err(StoreError::InvalidParameter(format!(
                "at most {} trace ids can be deleted in one call, got {}",
                super::MAX_IDS_PER_CALL,
                trace_ids.len()
            )));
        }
        if let Some(writer) = &self.sqlite_writer {
            if trace_ids.is_empty() && max_timestamp_millis.is_none() {
                return Err(StoreError::InvalidParameter(
                    "either request_ids or max_timestamp_millis must be given to delete traces".to_string(),
                ));
            }
            // On the writer's own connection, as spans are written: one connection's pages, not a pool's.
            let deleted = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
            let count = deleted.clone();
            let trace_ids = trace_ids.to_vec();
            writer
                .write_on(lane, move |connection| {
                    let doomed = super::sqlite_spans::delete_traces(
                        connection,
                        experiment_id,
                        &trace_ids,
                        max_timestamp_millis,
                        max_traces,
                    )?;
                    count.store(doomed, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                })
                .await?;
            return Ok(deleted.load(std::sync::atomic::Ordering::Relaxed));
        }
        let mut builder = SqlBuilder::new("SELECT trace_id FROM traces WHERE experiment_id = ");
        let placeholder = builder.bind(SqlValue::Integer(experiment_id));
        builder.push(&placeholder);
        if !trace_ids.is_empty() {
            builder.push(" AND trace_id IN ");
            builder.push_text_list(trace_ids);
        } else if let Some(max_timestamp) = max_timestamp_millis {
            let timestamp = builder.bind(SqlValue::Integer(max_timestamp));
            let limit = max_traces.unwrap_or(i64::MAX).max(0);
            builder.push(&format!(
                " AND timestamp_ms <= {timestamp} ORDER BY timestamp_ms LIMIT {limit}"
            ));
        } else {
            return Err(StoreError::InvalidParameter(
                "either request_ids or max_timestamp_millis must be given to delete traces".to_string(),
            ));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let doomed = built_query(&builder, self.dialect)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| text(row, "trace_id"))
            .collect::<StoreResult<Vec<_>>>()?;
        if doomed.is_empty() {
            return Ok(0);
        }
        // In slices, so that no statement binds more parameters than a database accepts.
        for doomed_slice in doomed.chunks(1_000) {
            for table in [
                "trace_tags",
                "trace_metadata",
                "trace_spans",
                "trace_assessments",
                "trace_run_links",
                "traces",
            ] {
                let mut deletion = SqlBuilder::new(format!("DELETE FROM {table} WHERE trace_id IN "));
                deletion.push_text_list(doomed_slice);
                built_query(&deletion, self.dialect).execute(&mut *transaction).await?;
            }
        }
        transaction.commit().await?;
        Ok(doomed.len() as i64)
    }
}
