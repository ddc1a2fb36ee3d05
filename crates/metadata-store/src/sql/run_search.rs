//! Run search: MLflow's filter grammar over metrics, params, tags, attributes and datasets, compiled to SQL.

use super::rows::text;
use super::{SqlStore, into_page, invalid_filter, invalid_search, page_limits};
use crate::entities::{Page, Run};
use crate::error::StoreResult;
use crate::queries::RunSearch;
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, compile_expression, identifier, identifier_kind,
    key_value_predicate, numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{
    Comparator, Comparison, FilterExpression, FilterValue, SqlBuilder, parse_filter, parse_order_clause,
};

const PARAMS_TABLE: KeyValueTable<'static> = KeyValueTable {
    table: "params",
    join: &[("run_id", "r.run_id")],
    value_column: "value",
};
const TAGS_TABLE: KeyValueTable<'static> = KeyValueTable {
    table: "tags",
    join: &[("run_id", "r.run_id")],
    value_column: "value",
};

/// Maps a run attribute (with MLflow's aliases) to its column; says whether it is numeric.
fn attribute_column(key: &str) -> Option<(&'static str, bool)> {
    match key {
        "run_id" | "run_uuid" => Some(("r.run_id", false)),
        "run_name" | "run name" | "Run name" | "Run Name" => Some(("r.name", false)),
        "status" => Some(("r.status", false)),
        "user_id" => Some(("r.user_id", false)),
        "artifact_uri" => Some(("r.artifact_uri", false)),
        "lifecycle_stage" => Some(("r.lifecycle_stage", false)),
        "experiment_id" => Some(("r.experiment_id", true)),
        "start_time" | "created" | "Created" => Some(("r.start_time", true)),
        "end_time" => Some(("r.end_time", true)),
        _ => None,
    }
}

/// Compiles run filters. `correlated` writes metric, param and tag clauses as correlated `EXISTS` lookups
/// (a few index probes per run, for a search driven from another index) instead of `IN` lists (built once,
/// for a search that reads every run of the experiments anyway).
struct RunClauses<'a> {
    correlated: bool,
    /// In a search read from one metric's index, that metric's key: the row `o` already holds its latest
    /// value (not NaN), so a clause on it is checked on `o.value` without a lookup.
    ordered_by: Option<&'a str>,
}

/// A correlated lookup of one key of a run's params or tags.
fn correlated_key_value(table: &str, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
    let key = builder.bind_text(&comparison.key);
    let rows = format!("SELECT 1 FROM {table} kv WHERE kv.run_id = r.run_id AND kv.key = {key}");
    match comparison.comparator {
        Comparator::IsNull => builder.push(&format!("NOT EXISTS ({rows})")),
        Comparator::IsNotNull => builder.push(&format!("EXISTS ({rows})")),
        _ => {
            builder.push(&format!("EXISTS ({rows} AND "));
            string_predicate("kv.value", comparison, true, builder)?;
            builder.push(")");
        }
    }
    Ok(())
}

impl ClauseCompiler for RunClauses<'_> {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        let kind = identifier_kind(comparison.prefix.as_deref())?;
        if self.correlated {
            match kind {
                IdentifierKind::Metric if self.ordered_by == Some(comparison.key.as_str()) => {
                    builder.push("(");
                    numeric_predicate("o.value", comparison, builder)?;
                    builder.push(")");
                    return Ok(());
                }
                IdentifierKind::Metric => {
                    let key = builder.bind_text(&comparison.key);
                    builder.push(&format!(
                        "EXISTS (SELECT 1 FROM latest_metrics lm WHERE lm.run_key = r.run_key AND lm.key = {key} \
                         AND lm.is_nan = 0 AND "
                    ));
                    numeric_predicate("lm.value", comparison, builder)?;
                    builder.push(")");
                    return Ok(());
                }
                IdentifierKind::Param => return correlated_key_value("params", comparison, builder),
                IdentifierKind::Tag => return correlated_key_value("tags", comparison, builder),
                _ => {}
            }
        }
        match kind {
            IdentifierKind::Metric => {
                let key = builder.bind_text(&comparison.key);
                builder.push(&format!(
                    "r.run_key IN (SELECT lm.run_key FROM latest_metrics lm WHERE lm.key = {key} AND lm.is_nan = 0 AND "
                ));
                numeric_predicate("lm.value", comparison, builder)?;
                builder.push(")");
                Ok(())
            }
            IdentifierKind::Param => key_value_predicate(&PARAMS_TABLE, comparison, builder),
            IdentifierKind::Tag => key_value_predicate(&TAGS_TABLE, comparison, builder),
            IdentifierKind::Attribute => {
                let Some((column, numeric)) = attribute_column(&comparison.key) else {
                    return Err(format!(
                        "invalid attribute key '{}' specified: valid keys are run_id, run_name, status, user_id, artifact_uri, start_time, end_time, created",
                        comparison.key
                    ));
                };
                if numeric {
                    numeric_predicate(column, comparison, builder)
                } else {
                    string_predicate(column, comparison, true, builder)
                }
            }
            IdentifierKind::Dataset => {
                let column = match comparison.key.as_str() {
                    "name" => "d.name",
                    "digest" => "d.digest",
                    "context" => "ctx.value",
                    other => {
                        return Err(format!(
                            "invalid dataset key '{other}': expected name, digest or context"
                        ));
                    }
                };
                builder.push(
                    "EXISTS (SELECT 1 FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id \
                     LEFT JOIN run_dataset_input_tags ctx ON ctx.run_id = i.run_id AND ctx.dataset_id = i.dataset_id \
                     AND ctx.key = 'mlflow.data.context' WHERE i.run_id = r.run_id AND ",
                );
                string_predicate(column, comparison, true, builder)?;
                builder.push(")");
                Ok(())
            }
        }
    }
}

/// Checks MLflow's typing rules that the generic compilers do not know.
fn check_value_types(comparison: &Comparison) -> Result<(), String> {
    let kind = identifier_kind(comparison.prefix.as_deref())?;
    let is_number = matches!(comparison.value, crate::search::FilterValue::Number(_));
    if matches!(kind, IdentifierKind::Param | IdentifierKind::Tag) && is_number {
        return Err(format!(
            "parameter and tag values must be quoted strings: '{}' was compared with a number",
            identifier(comparison)
        ));
    }
    if kind == IdentifierKind::Metric && !matches!(comparison.value, crate::search::FilterValue::Number(_)) {
        return Err(format!(
            "metric '{}' must be compared with an unquoted number",
            identifier(comparison)
        ));
    }
    if kind == IdentifierKind::Metric && !comparison.comparator.is_numeric() {
        return Err(format!(
            "invalid comparator '{}' not one of '{{'>=', '<=', '>', '<', '!=', '='}}' for metric '{}'",
            comparison.comparator,
            identifier(comparison)
        ));
    }
    if matches!(comparison.comparator, Comparator::In | Comparator::NotIn)
        && matches!(
            kind,
            IdentifierKind::Metric | IdentifierKind::Param | IdentifierKind::Tag
        )
    {
        return Err(format!(
            "'{}' is not supported for '{}'",
            comparison.comparator,
            identifier(comparison)
        ));
    }
    Ok(())
}

struct CheckedRunClauses<'a>(RunClauses<'a>);

impl ClauseCompiler for CheckedRunClauses<'_> {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        check_value_types(comparison)?;
        self.0.compile_comparison(comparison, builder)
    }
}

fn run_order_term(clause_text: &str, builder: &mut SqlBuilder) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(clause_text).map_err(|error| error.reason)?;
    let expression = match identifier_kind(clause.prefix.as_deref())? {
        IdentifierKind::Metric => {
            let key = builder.bind_text(&clause.key);
            format!(
                "(SELECT lm.value FROM latest_metrics lm WHERE lm.run_key = r.run_key AND lm.key = {key} AND lm.is_nan = 0)"
            )
        }
        IdentifierKind::Param => {
            let key = builder.bind_text(&clause.key);
            format!("(SELECT p.value FROM params p WHERE p.run_id = r.run_id AND p.key = {key})")
        }
        IdentifierKind::Tag => {
            let key = builder.bind_text(&clause.key);
            format!("(SELECT t.value FROM tags t WHERE t.run_id = r.run_id AND t.key = {key})")
        }
        IdentifierKind::Attribute => attribute_column(&clause.key)
            .map(|(column, _)| column.to_string())
            .ok_or_else(|| format!("invalid order_by attribute '{}'", clause.key))?,
        IdentifierKind::Dataset => return Err("runs cannot be ordered by dataset fields".to_string()),
    };
    // Metric, param and tag keys may be missing, and so may end_time; those sort last.
    let nullable = expression.starts_with('(') || expression == "r.end_time";
    Ok(OrderTerm {
        expression,
        ascending: clause.ascending,
        nullable,
    })
}

/// The first ordering metric's index drives the search when at most this many runs are needed.
const ORDER_DRIVEN_MAX: u64 = 5_000;
/// When the experiments searched, or the rows behind one equality clause or metric range, are fewer than
/// this, those rows drive the search instead (the smaller set is read, then sorted).
const SELECTIVE_ROWS: i64 = 2_000;

/// The small set of rows that drives a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// The runs of the experiments searched.
    Experiments,
    /// The rows one clause matches.
    Clause,
}

/// The comparisons every result must satisfy (the top level of a conjunction).
fn required_comparisons(filter: Option<&FilterExpression>) -> Vec<&Comparison> {
    match filter {
        Some(FilterExpression::Comparison(comparison)) => vec![comparison],
        Some(FilterExpression::And(children)) => children
            .iter()
            .filter_map(|child| match child {
                FilterExpression::Comparison(comparison) => Some(comparison),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl SqlStore {
    /// `r.experiment_id IN (...) AND r.lifecycle_stage IN (...) [AND filter]`.
    fn push_run_scope(
        builder: &mut SqlBuilder,
        search: &RunSearch,
        filter: Option<&FilterExpression>,
        (correlated, ordered_by): (bool, Option<&str>),
    ) -> StoreResult<()> {
        builder.push("r.experiment_id IN ");
        super::push_experiment_id_list(builder, &search.experiment_ids)?;
        builder.push(" AND r.lifecycle_stage IN ");
        let stages: Vec<String> = search
            .view_type
            .stages()
            .iter()
            .map(|stage| stage.to_string())
            .collect();
        builder.push_text_list(&stages);
        if let Some(expression) = filter {
            builder.push(" AND ");
            compile_expression(
                expression,
                &CheckedRunClauses(RunClauses { correlated, ordered_by }),
                builder,
            )
            .map_err(|reason| invalid_search("search filter", reason))?;
        }
        Ok(())
    }

    /// Which small set of rows should drive the search, if any: the experiments' runs when they are few, or
    /// the rows of a clause that matches few (each counted only up to [`SELECTIVE_ROWS`]).
    /// The clauses are counted only when `clauses` (a clause can only drive against an order-driven plan).
    async fn selective(
        &self,
        search: &RunSearch,
        filter: Option<&FilterExpression>,
        clauses: bool,
    ) -> StoreResult<Option<Driver>> {
        let mut sizes = Vec::new();
        let mut runs = SqlBuilder::new("SELECT COUNT(*) AS n FROM (SELECT 1 FROM runs r WHERE r.experiment_id IN ");
        super::push_experiment_id_list(&mut runs, &search.experiment_ids)?;
        runs.push(&format!(" LIMIT {SELECTIVE_ROWS}) c"));
        sizes.push(runs);
        let counted = if clauses {
            required_comparisons(filter)
        } else {
            Vec::new()
        };
        for comparison in counted {
            let table = match identifier_kind(comparison.prefix.as_deref()) {
                Ok(IdentifierKind::Param) => "params",
                Ok(IdentifierKind::Tag) => "tags",
                Ok(IdentifierKind::Metric) => {
                    // A metric range that few runs reach (`metrics.acc > 0.999`) is a small set too.
                    let mut rows =
                        SqlBuilder::new("SELECT COUNT(*) AS n FROM (SELECT 1 FROM latest_metrics lm WHERE lm.key = ");
                    let key = rows.bind_text(&comparison.key);
                    rows.push(&key);
                    rows.push(" AND lm.is_nan = 0 AND ");
                    if numeric_predicate("lm.value", comparison, &mut rows).is_err() {
                        continue;
                    }
                    rows.push(&format!(" LIMIT {SELECTIVE_ROWS}) c"));
                    sizes.push(rows);
                    continue;
                }
                _ => continue,
            };
            let (Comparator::Equal, FilterValue::Text(value)) = (comparison.comparator, &comparison.value) else {
                continue;
            };
            let mut rows = SqlBuilder::new(format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM {table} WHERE key = "));
            let key = rows.bind_text(&comparison.key);
            rows.push(&key);
            rows.push(" AND value = ");
            let value = rows.bind_text(value);
            rows.push(&value);
            rows.push(&format!(" LIMIT {SELECTIVE_ROWS}) c"));
            sizes.push(rows);
        }
        for (index, size) in sizes.into_iter().enumerate() {
            let counted = self.decoded_rows(&size, |row| super::rows::integer(row, "n")).await?;
            if counted.first().copied().unwrap_or_default() < SELECTIVE_ROWS {
                return Ok(Some(if index == 0 {
                    Driver::Experiments
                } else {
                    Driver::Clause
                }));
            }
        }
        Ok(None)
    }

    /// The first `need` run ids in order, read from the ordering metric's index: runs with the metric by its
    /// value, then (when more are needed) the runs without it, as the general plan orders them.
    async fn order_driven_run_ids(
        &self,
        search: &RunSearch,
        filter: Option<&FilterExpression>,
        (key, ascending): (&str, bool),
        need: u64,
    ) -> StoreResult<Vec<String>> {
        let rest = |builder: &mut SqlBuilder| -> StoreResult<Vec<OrderTerm>> {
            let mut terms = Vec::new();
            for clause in search.order_by.iter().skip(1) {
                terms
                    .push(run_order_term(clause, builder).map_err(|reason| invalid_search("order_by clause", reason))?);
            }
            terms.push(OrderTerm::column("r.start_time", false));
            terms.push(OrderTerm::column("r.run_id", true));
            Ok(terms)
        };
        let mut with_metric = SqlBuilder::new(
            "SELECT r.run_id FROM latest_metrics o CROSS JOIN runs r WHERE r.run_key = o.run_key AND o.key = ",
        );
        let bound_key = with_metric.bind_text(key);
        with_metric.push(&bound_key);
        with_metric.push(" AND o.is_nan = 0 AND ");
        let mut terms = vec![OrderTerm {
            expression: "o.value".into(),
            ascending,
            nullable: false,
        }];
        terms.extend(rest(&mut with_metric)?);
        Self::push_run_scope(&mut with_metric, search, filter, (true, Some(key)))?;
        with_metric.push(&format!(" ORDER BY {} LIMIT {need}", render_order_terms(&terms)));
        let mut ids = self.decoded_rows(&with_metric, |row| text(row, "run_id")).await?;
        if (ids.len() as u64) < need {
            let mut without = SqlBuilder::new(
                "SELECT r.run_id FROM runs r WHERE NOT EXISTS (SELECT 1 FROM latest_metrics o WHERE o.run_key = r.run_key \
                 AND o.key = ",
            );
            let bound_key = without.bind_text(key);
            without.push(&bound_key);
            without.push(" AND o.is_nan = 0) AND ");
            let terms = rest(&mut without)?;
            Self::push_run_scope(&mut without, search, filter, (false, None))?;
            without.push(&format!(
                " ORDER BY {} LIMIT {}",
                render_order_terms(&terms),
                need - ids.len() as u64
            ));
            ids.extend(self.decoded_rows(&without, |row| text(row, "run_id")).await?);
        }
        Ok(ids)
    }

    pub(super) async fn search_runs_sql(&self, search: &RunSearch) -> StoreResult<Page<Run>> {
        let (max_results, offset) = page_limits(&search.page, 1000, 50_000, "search_runs")?;
        if search.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        super::check_order_by_count(search.order_by.len())?;
        let filter = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)?;
        let need = offset + max_results + 1;
        // Ordered by a metric, a page near the top is read from that metric's index (most runs need not be
        // looked at), unless a small set of runs can be read directly.
        let ordering_metric = match search.order_by.first().map(|clause| parse_order_clause(clause)) {
            Some(Ok(clause)) if identifier_kind(clause.prefix.as_deref()) == Ok(IdentifierKind::Metric) => {
                Some((clause.key, clause.ascending))
            }
            _ => None,
        };
        let order_driven = ordering_metric.is_some() && need <= ORDER_DRIVEN_MAX;
        let driver = self.selective(search, filter.as_ref(), order_driven).await?;
        let run_ids = match (ordering_metric, driver) {
            (Some((key, ascending)), None) if need <= ORDER_DRIVEN_MAX => {
                let ids = self
                    .order_driven_run_ids(search, filter.as_ref(), (&key, ascending), need)
                    .await?;
                ids.into_iter().skip(offset as usize).collect()
            }
            // A few runs in the experiments are each checked by index probes, rather than the whole store's
            // rows of each clause gathered into lists (a small experiment beside a million runs).
            (_, driver) => {
                let correlated = driver == Some(Driver::Experiments);
                self.filter_driven_run_ids(search, filter.as_ref(), (max_results, offset), correlated)
                    .await?
            }
        };
        let page = into_page(run_ids, max_results, offset);
        let runs = self.load_runs(&page.items).await?;
        Ok(Page {
            items: runs,
            next_page_token: page.next_page_token,
        })
    }

    /// One page of run ids, the filter's rows read first, then sorted.
    async fn filter_driven_run_ids(
        &self,
        search: &RunSearch,
        filter: Option<&FilterExpression>,
        (max_results, offset): (u64, u64),
        correlated: bool,
    ) -> StoreResult<Vec<String>> {
        let mut statement = SqlBuilder::new("SELECT r.run_id FROM runs r WHERE ");
        let mut terms = Vec::new();
        for clause in &search.order_by {
            terms.push(
                run_order_term(clause, &mut statement).map_err(|reason| invalid_search("order_by clause", reason))?,
            );
        }
        terms.push(OrderTerm::column("r.start_time", false));
        terms.push(OrderTerm::column("r.run_id", true));
        Self::push_run_scope(&mut statement, search, filter, (correlated, None))?;
        statement.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        self.decoded_rows(&statement, |row| text(row, "run_id")).await
    }
}
