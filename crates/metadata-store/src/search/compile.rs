//! Compiles parsed filters and order clauses into SQL predicates for each searchable entity.

use super::parser::{Comparator, Comparison, FilterExpression, FilterValue, OrderClause};
use super::sql_builder::{SqlBuilder, SqlValue};

/// Compiles one comparison of a particular entity into a SQL predicate.
pub trait ClauseCompiler {
    /// Appends a predicate for `comparison` to `builder`, or explains why the comparison is not allowed.
    fn compile_comparison(&self, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String>;
}

/// Appends the predicate for a whole expression.
pub fn compile_expression(
    expression: &FilterExpression,
    compiler: &dyn ClauseCompiler,
    builder: &mut SqlBuilder,
) -> Result<(), String> {
    let (children, joiner) = match expression {
        FilterExpression::Comparison(comparison) => return compiler.compile_comparison(comparison, builder),
        FilterExpression::And(children) => (children, " AND "),
        FilterExpression::Or(children) => (children, " OR "),
    };
    builder.push("(");
    for (index, child) in children.iter().enumerate() {
        if index > 0 {
            builder.push(joiner);
        }
        compile_expression(child, compiler, builder)?;
    }
    builder.push(")");
    Ok(())
}

fn text_value(comparison: &Comparison) -> Result<&str, String> {
    match &comparison.value {
        FilterValue::Text(text) => Ok(text),
        other => Err(format!(
            "expected a quoted string value for '{}', got {}",
            identifier(comparison),
            describe_value(other)
        )),
    }
}

fn describe_value(value: &FilterValue) -> String {
    match value {
        FilterValue::Text(text) => format!("'{text}'"),
        FilterValue::Number(number) => format!("the number {number}"),
        FilterValue::List(_) => "a list".to_string(),
        FilterValue::Null => "NULL".to_string(),
    }
}

/// The identifier as the user wrote it, for messages.
pub fn identifier(comparison: &Comparison) -> String {
    match &comparison.prefix {
        Some(prefix) => format!("{prefix}.{}", comparison.key),
        None => comparison.key.clone(),
    }
}

/// `column <op> value` for string attributes: `= != LIKE ILIKE` and, when `allow_lists`, `IN`/`NOT IN`.
pub fn string_predicate(
    column: &str,
    comparison: &Comparison,
    allow_lists: bool,
    builder: &mut SqlBuilder,
) -> Result<(), String> {
    if matches!(comparison.comparator, Comparator::Like | Comparator::ILike) {
        check_like_pattern(text_value(comparison)?)?;
    }
    match comparison.comparator {
        Comparator::Equal | Comparator::NotEqual | Comparator::Like => {
            let placeholder = builder.bind_text(text_value(comparison)?);
            builder.push(&format!(
                "{column} {} {placeholder}",
                comparison.comparator.sql_operator()
            ));
        }
        Comparator::ILike => {
            let placeholder = builder.bind_text(text_value(comparison)?);
            builder.push(&format!("LOWER({column}) LIKE LOWER({placeholder})"));
        }
        Comparator::In | Comparator::NotIn if allow_lists => {
            let FilterValue::List(values) = &comparison.value else {
                return Err(format!("'{}' needs a list of quoted values", comparison.comparator));
            };
            builder.push(&format!("{column} {} ", comparison.comparator.sql_operator()));
            builder.push_text_list(values);
        }
        other => {
            return Err(format!("invalid comparator '{other}' for '{}'", identifier(comparison)));
        }
    }
    Ok(())
}

/// The longest LIKE pattern accepted, in bytes (SQLite refuses patterns past 50,000 bytes).
pub const MAX_LIKE_PATTERN_BYTES: usize = 10_000;

/// Refuses LIKE patterns that a database would reject at run time: too long for SQLite, or ending in a lone
/// backslash, which PostgreSQL reads as an escape with nothing to escape.
fn check_like_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_LIKE_PATTERN_BYTES {
        return Err(format!(
            "the LIKE pattern is {} bytes long, more than the {MAX_LIKE_PATTERN_BYTES} accepted",
            pattern.len()
        ));
    }
    let trailing_backslashes = pattern.chars().rev().take_while(|character| *character == '\\').count();
    if trailing_backslashes % 2 == 1 {
        return Err(format!(
            "the LIKE pattern '{pattern}' ends with an escape character '\\' that escapes nothing"
        ));
    }
    Ok(())
}

/// `column <op> number` for numeric attributes.
pub fn numeric_predicate(column: &str, comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
    if !comparison.comparator.is_numeric() {
        return Err(format!(
            "invalid comparator '{}' for '{}': expected one of '=', '!=', '>', '>=', '<', '<='",
            comparison.comparator,
            identifier(comparison)
        ));
    }
    let number = match &comparison.value {
        FilterValue::Number(number) => *number,
        FilterValue::Text(text) => text
            .parse::<f64>()
            .map_err(|_| format!("expected a number for '{}', got '{text}'", identifier(comparison)))?,
        other => {
            return Err(format!(
                "expected a number for '{}', got {}",
                identifier(comparison),
                describe_value(other)
            ));
        }
    };
    let value = if number.fract() == 0.0 && number.abs() < 9.0e18 {
        SqlValue::Integer(number as i64)
    } else {
        SqlValue::Real(number)
    };
    let placeholder = builder.bind(value);
    builder.push(&format!(
        "{column} {} {placeholder}",
        comparison.comparator.sql_operator()
    ));
    Ok(())
}

/// Where a key/value table (tags, params) lives and how it joins its owner.
pub struct KeyValueTable<'a> {
    /// Table name.
    pub table: &'a str,
    /// `child_column = parent_expression` pairs joining the child rows to the outer row.
    pub join: &'a [(&'a str, &'a str)],
    /// The value column ("value").
    pub value_column: &'a str,
}

impl KeyValueTable<'_> {
    fn correlated_subquery(&self, alias: &str, key_placeholder: &str) -> String {
        let join: Vec<String> = self
            .join
            .iter()
            .map(|(child, parent)| format!("{alias}.{child} = {parent}"))
            .collect();
        format!(
            "FROM {} {alias} WHERE {} AND {alias}.key = {key_placeholder}",
            self.table,
            join.join(" AND ")
        )
    }
}

/// A predicate over a key/value child table: `IS NULL` means the key is absent, every other comparator
/// requires the key to be present with a matching value.
///
/// Written as `owner IN (SELECT owner FROM child WHERE key = ? AND value ...)` when the child joins on one
/// column, so the database can drive the search from the child's `(key, value)` index instead of probing
/// once per candidate row.
pub fn key_value_predicate(
    table: &KeyValueTable<'_>,
    comparison: &Comparison,
    builder: &mut SqlBuilder,
) -> Result<(), String> {
    if let [(child_column, parent_expression)] = table.join {
        let key_placeholder = builder.bind_text(&comparison.key);
        let keyed = format!(
            "SELECT kv.{child_column} FROM {} kv WHERE kv.key = {key_placeholder}",
            table.table
        );
        match comparison.comparator {
            Comparator::IsNull => builder.push(&format!("{parent_expression} NOT IN ({keyed})")),
            Comparator::IsNotNull => builder.push(&format!("{parent_expression} IN ({keyed})")),
            _ => {
                builder.push(&format!("{parent_expression} IN ({keyed} AND "));
                string_predicate(&format!("kv.{}", table.value_column), comparison, true, builder)?;
                builder.push(")");
            }
        }
        return Ok(());
    }
    let key_placeholder = builder.bind_text(&comparison.key);
    let alias = "kv";
    let subquery = table.correlated_subquery(alias, &key_placeholder);
    match comparison.comparator {
        Comparator::IsNull => builder.push(&format!("NOT EXISTS (SELECT 1 {subquery})")),
        Comparator::IsNotNull => builder.push(&format!("EXISTS (SELECT 1 {subquery})")),
        _ => {
            builder.push(&format!("EXISTS (SELECT 1 {subquery} AND "));
            string_predicate(&format!("{alias}.{}", table.value_column), comparison, true, builder)?;
            builder.push(")");
        }
    }
    Ok(())
}

/// The prompt marker MLflow's client appends to every registered-model search. Models without the tag
/// are not prompts, so the tag reads as 'false' when absent.
pub const PROMPT_TAG_KEY: &str = "mlflow.prompt.is_prompt";

/// Like [`key_value_predicate`], but a missing tag reads as `default_value` (used for the prompt marker).
pub fn key_value_predicate_with_default(
    table: &KeyValueTable<'_>,
    comparison: &Comparison,
    default_value: &str,
    builder: &mut SqlBuilder,
) -> Result<(), String> {
    let key_placeholder = builder.bind_text(&comparison.key);
    let default_placeholder = builder.bind_text(default_value);
    let subquery = table.correlated_subquery("kv", &key_placeholder);
    let column = format!(
        "COALESCE((SELECT kv.{} {subquery}), {default_placeholder})",
        table.value_column
    );
    string_predicate(&column, comparison, true, builder)
}

/// How one order_by entry sorts: the SQL expression, and its direction.
pub struct OrderTerm {
    /// Expression that yields the sort key (NULL when missing).
    pub expression: String,
    /// Ascending?
    pub ascending: bool,
    /// Whether the expression can be NULL. Only those get the extra "missing values last" sort key,
    /// which would otherwise stop the database from reading rows in index order.
    pub nullable: bool,
}

impl OrderTerm {
    /// A term over a NOT NULL column.
    pub fn column(expression: &str, ascending: bool) -> Self {
        Self {
            expression: expression.to_string(),
            ascending,
            nullable: false,
        }
    }

    /// A term over an expression that is NULL when the key is missing (a subquery, a nullable column).
    pub fn nullable(expression: String, ascending: bool) -> Self {
        Self {
            expression,
            ascending,
            nullable: true,
        }
    }
}

/// Renders order terms so that rows missing the key sort last in either direction.
pub fn render_order_terms(terms: &[OrderTerm]) -> String {
    let rendered: Vec<String> = terms
        .iter()
        .map(|term| {
            let direction = if term.ascending { "ASC" } else { "DESC" };
            if term.nullable {
                format!("({} IS NULL) ASC, {} {direction}", term.expression, term.expression)
            } else {
                format!("{} {direction}", term.expression)
            }
        })
        .collect();
    rendered.join(", ")
}

/// Normalises the ways MLflow spells each identifier prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    /// `metrics`, `metric`
    Metric,
    /// `params`, `param`, `parameter`, `parameters`
    Param,
    /// `tags`, `tag`
    Tag,
    /// `attributes`, `attribute`, `attr`, `run`, or no prefix
    Attribute,
    /// `datasets`, `dataset`
    Dataset,
}

/// Classifies a prefix, or explains which prefixes exist.
pub fn identifier_kind(prefix: Option<&str>) -> Result<IdentifierKind, String> {
    match prefix {
        None | Some("attributes" | "attribute" | "attr" | "run" | "trace") => Ok(IdentifierKind::Attribute),
        Some("metrics" | "metric") => Ok(IdentifierKind::Metric),
        Some("params" | "param" | "parameter" | "parameters") => Ok(IdentifierKind::Param),
        Some("tags" | "tag") => Ok(IdentifierKind::Tag),
        Some("datasets" | "dataset") => Ok(IdentifierKind::Dataset),
        Some(other) => Err(format!(
            "invalid entity type '{other}': expected one of metrics, params, tags, attributes, datasets"
        )),
    }
}

/// Resolves an order clause's identifier into a kind and key, for entity compilers.
pub fn order_kind(clause: &OrderClause) -> Result<IdentifierKind, String> {
    identifier_kind(clause.prefix.as_deref())
}
