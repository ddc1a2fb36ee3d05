//! Searching registered models and model versions.

use super::registry::{VERSION_COLUMNS, version_from_row};
use super::{SqlStore, built_query, into_page, invalid_filter, invalid_search, page_limits};
use crate::entities::{ModelVersion, Page, RegisteredModel};
use crate::error::StoreResult;
use crate::queries::RegistrySearch;
use crate::search::compile::{
    ClauseCompiler, IdentifierKind, KeyValueTable, OrderTerm, PROMPT_TAG_KEY, compile_expression, identifier_kind,
    key_value_predicate, key_value_predicate_with_default, numeric_predicate, render_order_terms, string_predicate,
};
use crate::search::{Comparison, SqlBuilder, parse_filter, parse_order_clause};

/// Tag comparisons shared by both registry searches, with the prompt marker reading 'false' when absent.
fn registry_tag_predicate(
    table: &KeyValueTable<'_>,
    comparison: &Comparison,
    builder: &mut SqlBuilder,
) -> Result<(), String> {
    if comparison.key == PROMPT_TAG_KEY {
        return key_value_predicate_with_default(table, comparison, "false", builder);
    }
    key_value_predicate(table, comparison, builder)
}

struct RegisteredModelClauses;

impl ClauseCompiler for RegisteredModelClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        match identifier_kind(comparison.prefix.as_deref())? {
            IdentifierKind::Tag => {
                let table = KeyValueTable {
                    table: "registered_model_tags",
                    join: &[("name", "m.name")],
                    value_column: "value",
                };
                registry_tag_predicate(&table, comparison, builder)
            }
            IdentifierKind::Attribute if comparison.key == "name" => {
                string_predicate("m.name", comparison, true, builder)
            }
            _ => Err(format!(
                "invalid identifier '{}': registered models can be filtered by name and tags.<key>",
                crate::search::compile::identifier(comparison)
            )),
        }
    }
}

struct ModelVersionClauses;

impl ClauseCompiler for ModelVersionClauses {
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
        match identifier_kind(comparison.prefix.as_deref())? {
            IdentifierKind::Tag => {
                let table = KeyValueTable {
                    table: "model_version_tags",
                    join: &[("name", "v.name"), ("version", "v.version")],
                    value_column: "value",
                };
                registry_tag_predicate(&table, comparison, builder)
            }
            IdentifierKind::Attribute => match comparison.key.as_str() {
                "name" => string_predicate("v.name", comparison, true, builder),
                "run_id" => string_predicate("v.run_id", comparison, true, builder),
                "source_path" | "source" => string_predicate("v.source", comparison, true, builder),
                "version_number" | "version" => numeric_predicate("v.version", comparison, builder),
                "current_stage" => string_predicate("v.current_stage", comparison, true, builder),
                other => Err(format!(
                    "invalid attribute '{other}': model versions can be filtered by name, run_id, source_path, version_number and tags.<key>"
                )),
            },
            _ => Err(format!(
                "invalid identifier '{}' for model versions",
                crate::search::compile::identifier(comparison)
            )),
        }
    }
}

fn registered_model_order(clause_text: &str) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(clause_text).map_err(|error| error.reason)?;
    let expression = match clause.key.as_str() {
        "name" => "m.name",
        "creation_timestamp" | "timestamp" => "m.creation_time",
        "last_updated_timestamp" => "m.last_updated_time",
        other => {
            return Err(format!(
                "cannot order registered models by '{other}': use name, creation_timestamp or last_updated_timestamp"
            ));
        }
    };
    Ok(OrderTerm::column(expression, clause.ascending))
}

fn model_version_order(clause_text: &str) -> Result<OrderTerm, String> {
    let clause = parse_order_clause(clause_text).map_err(|error| error.reason)?;
    let expression = match clause.key.as_str() {
        "name" => "v.name",
        "version_number" | "version" => "v.version",
        "creation_timestamp" | "timestamp" => "v.creation_time",
        "last_updated_timestamp" => "v.last_updated_time",
        other => {
            return Err(format!(
                "cannot order model versions by '{other}': use name, version_number, creation_timestamp or last_updated_timestamp"
            ));
        }
    };
    Ok(OrderTerm::column(expression, clause.ascending))
}

fn apply_filter(
    builder: &mut SqlBuilder,
    filter: Option<&str>,
    compiler: &dyn ClauseCompiler,
    what: &str,
) -> StoreResult<()> {
    if let Some(expression) = parse_filter(filter.unwrap_or_default()).map_err(invalid_filter)? {
        builder.push(" WHERE ");
        compile_expression(&expression, compiler, builder).map_err(|reason| invalid_search(what, reason))?;
    }
    Ok(())
}

impl SqlStore {
    pub(super) async fn search_registered_models_sql(
        &self,
        search: &RegistrySearch,
    ) -> StoreResult<Page<RegisteredModel>> {
        let (max_results, offset) = page_limits(&search.page, 100, 1000, "search_registered_models")?;
        let mut builder = SqlBuilder::new(
            "SELECT m.name, m.creation_time, m.last_updated_time, m.description FROM registered_models m",
        );
        apply_filter(
            &mut builder,
            search.filter.as_deref(),
            &RegisteredModelClauses,
            "registered model filter",
        )?;
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for clause in &search.order_by {
            terms.push(registered_model_order(clause).map_err(|reason| invalid_search("order_by clause", reason))?);
        }
        terms.push(OrderTerm::column("m.name", true));
        builder.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let models = self.load_registered_models(rows).await?;
        Ok(into_page(models, max_results, offset))
    }

    pub(super) async fn search_model_versions_sql(&self, search: &RegistrySearch) -> StoreResult<Page<ModelVersion>> {
        let (max_results, offset) = page_limits(&search.page, 10_000, 200_000, "search_model_versions")?;
        let mut builder = SqlBuilder::new(format!("SELECT {VERSION_COLUMNS} FROM model_versions v"));
        apply_filter(
            &mut builder,
            search.filter.as_deref(),
            &ModelVersionClauses,
            "model version filter",
        )?;
        let mut terms = Vec::new();
        super::check_order_by_count(search.order_by.len())?;
        for clause in &search.order_by {
            terms.push(model_version_order(clause).map_err(|reason| invalid_search("order_by clause", reason))?);
        }
        if terms.is_empty() {
            terms.push(OrderTerm::column("v.last_updated_time", false));
        }
        terms.push(OrderTerm::column("v.name", true));
        terms.push(OrderTerm::column("v.version", false));
        builder.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {offset}",
            render_order_terms(&terms),
            max_results + 1
        ));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        let mut versions = rows.iter().map(version_from_row).collect::<StoreResult<Vec<_>>>()?;
        self.decorate_versions(&mut versions).await?;
        Ok(into_page(versions, max_results, offset))
    }
}
