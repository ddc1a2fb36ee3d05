//! Run search: MLflow's filter grammar over metrics, params, tags, attributes and datasets, compiled to SQL.

use super::rows::text;
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits};
use crate::entities::{Page, Run};
use crate::error::StoreResult;
use crate::queries::RunSearch;
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, compile_expression, identifier, identifier_kind,
    key_value_predicate, numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparator, Comparison, SqlBuilder, parse_filter, parse_order_clause};

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

struct RunClauses;

impl ClauseCompiler for RunClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        match identifier_kind(comparison.prefix.as_deref())? {
            IdentifierKind::Metric => {
                let key = builder.bind_text(&comparison.key);
                builder.push(&format!(
                    "r.run_id IN (SELECT lm.run_id FROM latest_metrics lm WHERE lm.key = {key} AND lm.is_nan = 0 AND "
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

struct CheckedRunClauses;

impl ClauseCompiler for CheckedRunClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        check_value_types(comparison)?;
        RunClauses.compile_comparison(comparison, builder)
    }
}

fn run_order_term(clause_text: &str, builder: &mut SqlBuilder) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(clause_text).map_err(|error| error.reason)?;
    let expression = match identifier_kind(clause.prefix.as_deref())? {
        IdentifierKind::Metric => {
            let key = builder.bind_text(&clause.key);
            format!(
                "(SELECT lm.value FROM latest_metrics lm WHERE lm.run_id = r.run_id AND lm.key = {key} AND lm.is_nan = 0)"
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

impl SqlStore {
    pub(super) async fn search_runs_sql(&self, search: &RunSearch) -> StoreResult<Page<Run>> {
        let (max_results, offset) = page_limits(&search.page, 1000, 50_000, "search_runs")?;
        if search.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut statement = SqlBuilder::new("SELECT r.run_id FROM runs r WHERE r.experiment_id IN ");
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for clause in &search.order_by {
            terms.push(
                run_order_term(clause, &mut statement).map_err(|reason| invalid_search("order_by clause", reason))?,
            );
        }
        terms.push(OrderTerm::column("r.start_time", false));
        terms.push(OrderTerm::column("r.run_id", true));
        let order_sql = render_order_terms(&terms);
        super::push_experiment_id_list(&mut statement, &search.experiment_ids)?;
        statement.push(" AND r.lifecycle_stage IN ");
        let stages: Vec<String> = search
            .view_type
            .stages()
            .iter()
            .map(|stage| stage.to_string())
            .collect();
        statement.push_text_list(&stages);
        if let Some(expression) = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)? {
            statement.push(" AND ");
            compile_expression(&expression, &CheckedRunClauses, &mut statement)
                .map_err(|reason| invalid_search("search filter", reason))?;
        }
        statement.push(&format!(
            " ORDER BY {order_sql} LIMIT {} OFFSET {offset}",
            max_results + 1
        ));
        let rows = built_query(&statement, self.dialect).fetch_all(&self.pool).await?;
        let run_ids = rows
            .iter()
            .map(|row| text(row, "run_id"))
            .collect::<StoreResult<Vec<_>>>()?;
        let page = into_page(run_ids, max_results, offset);
        let runs = self.load_runs(&page.items).await?;
        Ok(Page {
            items: runs,
            next_page_token: page.next_page_token,
        })
    }
}
