//! MLflow 3's issues on SQL: one row each; trace counts from the searchable assessments.

use super::rows::{integer, text};
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits, parse_experiment_id};
use crate::entities::Page;
use crate::error::{StoreError, StoreResult};
use crate::queries::{Issue, IssueChange, IssueSearch};
use crate::search::compile::{ClauseCompiler, compile_expression, string_predicate};
use crate::search::{Comparator, Comparison, FilterExpression, SqlBuilder, parse_filter};
use crate::traits::IssueStore;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "i.issue_id, i.experiment_id, i.name, i.description, i.status, i.severity, i.root_causes, \
                       i.source_run_id, i.categories, i.created_by, i.created_timestamp, i.last_updated_timestamp";

fn not_found(issue_id: &str) -> StoreError {
    StoreError::NotFound(format!("Issue with ID '{issue_id}' not found"))
}

fn optional_text(row: &AnyRow, column: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn list(row: &AnyRow, column: &str) -> StoreResult<Vec<String>> {
    Ok(optional_text(row, column)?
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

fn from_row(row: &AnyRow, with_count: bool) -> StoreResult<Issue> {
    Ok(Issue {
        issue_id: text(row, "issue_id")?,
        experiment_id: text(row, "experiment_id")?,
        name: text(row, "name")?,
        description: text(row, "description")?,
        status: text(row, "status")?,
        severity: optional_text(row, "severity")?,
        root_causes: list(row, "root_causes")?,
        source_run_id: optional_text(row, "source_run_id")?,
        categories: list(row, "categories")?,
        created_by: optional_text(row, "created_by")?,
        created_timestamp: integer(row, "created_timestamp")?,
        last_updated_timestamp: integer(row, "last_updated_timestamp")?,
        trace_count: if with_count {
            Some(integer(row, "trace_count")?)
        } else {
            None
        },
    })
}

fn json_list(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| serde_json::to_string(items).unwrap_or_default())
}

struct IssueClauses;

impl ClauseCompiler for IssueClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        let column = match (comparison.prefix.as_deref(), comparison.key.as_str()) {
            (None | Some("attribute" | "attributes"), "status") => "i.status",
            (None | Some("attribute" | "attributes"), "source_run_id") => "i.source_run_id",
            _ => {
                return Err(format!(
                    "Invalid filter field '{}'. Supported fields: status, source_run_id",
                    crate::search::compile::identifier(comparison)
                ));
            }
        };
        if !matches!(comparison.comparator, Comparator::Equal | Comparator::NotEqual) {
            return Err(format!(
                "Invalid comparator '{}'. Supported comparators: =, !=",
                comparison.comparator
            ));
        }
        string_predicate(column, comparison, false, builder)
    }
}

fn has_or(expression: &FilterExpression) -> bool {
    match expression {
        FilterExpression::Or(_) => true,
        FilterExpression::And(children) => children.iter().any(has_or),
        FilterExpression::Comparison(_) => false,
    }
}

/// Severity ranks for ordering, lowest first (unknown and unset below all).
const SEVERITY_ORDER: &str =
    "CASE i.severity WHEN 'not_an_issue' THEN 0 WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE -1 END";

#[async_trait]
impl IssueStore for SqlStore {
    async fn create_issue(&self, issue: &Issue) -> StoreResult<()> {
        let stage = self
            .experiment_stage(parse_experiment_id(&issue.experiment_id)?)
            .await?;
        if stage != "active" {
            return Err(StoreError::InvalidParameter(format!(
                "experiment {} is deleted",
                issue.experiment_id
            )));
        }
        let _writer = self.writer_guard().await;
        sqlx::query(
            "INSERT INTO issues (issue_id, experiment_id, name, description, status, severity, root_causes, source_run_id, \
             categories, created_by, created_timestamp, last_updated_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(issue.issue_id.clone())
        .bind(issue.experiment_id.clone())
        .bind(issue.name.clone())
        .bind(issue.description.clone())
        .bind(issue.status.clone())
        .bind(issue.severity.clone())
        .bind(json_list(&issue.root_causes))
        .bind(issue.source_run_id.clone())
        .bind(json_list(&issue.categories))
        .bind(issue.created_by.clone())
        .bind(issue.created_timestamp)
        .bind(issue.last_updated_timestamp)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_issue(&self, issue_id: &str) -> StoreResult<Issue> {
        let row = super::query_text(format!("SELECT {COLUMNS} FROM issues i WHERE i.issue_id = $1"))
            .bind(issue_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(issue_id))?;
        from_row(&row, false)
    }

    async fn update_issue(&self, issue_id: &str, change: &IssueChange) -> StoreResult<Issue> {
        {
            let _writer = self.writer_guard().await;
            let updated = sqlx::query(
                "UPDATE issues SET name = COALESCE($1, name), description = COALESCE($2, description), \
                 status = COALESCE($3, status), severity = COALESCE($4, severity), last_updated_timestamp = $5 \
                 WHERE issue_id = $6",
            )
            .bind(change.name.clone())
            .bind(change.description.clone())
            .bind(change.status.clone())
            .bind(change.severity.clone())
            .bind(loopline_core::time::now_millis())
            .bind(issue_id.to_string())
            .execute(&self.pool)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(not_found(issue_id));
            }
        }
        self.get_issue(issue_id).await
    }

    async fn search_issues(&self, search: &IssueSearch) -> StoreResult<Page<Issue>> {
        let (max_results, offset) = page_limits(&search.page, 100, 50_000, "search_issues")?;
        let count = if search.include_trace_count {
            ", (SELECT COUNT(DISTINCT a.trace_id) FROM trace_assessments a WHERE a.kind = 'issue' AND a.name = i.issue_id) AS trace_count"
        } else {
            ""
        };
        let mut builder = SqlBuilder::new(format!("SELECT {COLUMNS}{count} FROM issues i WHERE 1 = 1"));
        if let Some(experiment_id) = &search.experiment_id {
            let placeholder = builder.bind_text(experiment_id);
            builder.push(&format!(" AND i.experiment_id = {placeholder}"));
        }
        if let Some(expression) = parse_filter(search.filter.as_deref().unwrap_or_default()).map_err(invalid_filter)? {
            if has_or(&expression) {
                return Err(StoreError::InvalidParameter(
                    "Invalid clause(s) in filter string: issues are filtered with clauses joined by AND".into(),
                ));
            }
            builder.push(" AND ");
            compile_expression(&expression, &IssueClauses, &mut builder)
                .map_err(|reason| invalid_search("issue filter", reason))?;
        }
        let by_count = if search.include_trace_count {
            "trace_count DESC, "
        } else {
            ""
        };
        builder.push(&format!(
            " ORDER BY {SEVERITY_ORDER} DESC, {by_count}i.created_timestamp DESC, i.issue_id DESC LIMIT {} OFFSET {offset}",
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let issues = rows
            .iter()
            .map(|row| from_row(row, search.include_trace_count))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(issues, max_results, offset))
    }
}
