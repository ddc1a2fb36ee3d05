//! The parts of MLflow's trace filter grammar that read spans and assessments: `trace.text`, `span.name`,
//! `span.type`, `span.status`, `span.attributes.<key>`, `feedback.<name>`, `expectation.<name>` and
//! `issue.id`. Span clauses joined by AND must hold for one and the same span, as in MLflow.

use crate::search::compile::{identifier, numeric_predicate, string_predicate};
use crate::search::{Comparator, Comparison, FilterExpression, FilterValue, SqlBuilder};
use loopline_core::python_json;

/// Whether a comparison reads spans.
pub(super) fn is_span_clause(comparison: &Comparison) -> bool {
    match comparison.prefix.as_deref() {
        Some("span") => true,
        None | Some("trace" | "attribute" | "attributes") => comparison.key == "text",
        _ => false,
    }
}

fn trim_backticks(key: &str) -> &str {
    key.trim_matches('`').trim_matches('"')
}

/// The predicate on one span row (alias `s`) for a span clause.
fn span_row_predicate(comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
    let key = comparison.key.as_str();
    if comparison.prefix.as_deref() != Some("span") || key == "content" {
        // trace.text / span.content: a substring of the span's JSON as MLflow writes it.
        if !matches!(comparison.comparator, Comparator::Like | Comparator::ILike) {
            return Err(format!(
                "'{}' supports LIKE and ILIKE only, got '{}'",
                identifier(comparison),
                comparison.comparator
            ));
        }
        return string_predicate("s.mlflow_text", comparison, false, builder);
    }
    if key == "attributes" || key == "attributes." {
        return Err("Span attribute name cannot be empty: use span.attributes.<name>".to_string());
    }
    if let Some(attribute) = key.strip_prefix("attributes.") {
        if trim_backticks(attribute).is_empty() {
            return Err("Span attribute name cannot be empty: use span.attributes.<name>".to_string());
        }
        if !matches!(comparison.comparator, Comparator::Like | Comparator::ILike) {
            return Err(format!(
                "span attributes support LIKE and ILIKE, got '{}'",
                comparison.comparator
            ));
        }
        let FilterValue::Text(value) = &comparison.value else {
            return Err(format!("'{}' needs a quoted value", identifier(comparison)));
        };
        // As MLflow: a pattern over the span's text, the quoted key followed by the value's pattern.
        let pattern = format!("%\"{}\"{value}%", trim_backticks(attribute));
        let patterned = Comparison {
            value: FilterValue::Text(pattern),
            ..comparison.clone()
        };
        return string_predicate("s.mlflow_text", &patterned, false, builder);
    }
    let column = match key {
        "name" => "s.name",
        "type" => "s.span_type",
        "status" => "s.status",
        other => {
            return Err(format!(
                "Invalid span attribute '{other}'. Supported attributes: name, status, type, attributes.<attribute_name>."
            ));
        }
    };
    string_predicate(column, comparison, true, builder)
}

/// `EXISTS` a span of the trace (alias `t`) for which every clause holds.
pub(super) fn spans_predicate(clauses: &[&Comparison], builder: &mut SqlBuilder) -> Result<(), String> {
    builder.push("EXISTS (SELECT 1 FROM trace_spans s WHERE s.trace_id = t.trace_id");
    for clause in clauses {
        builder.push(" AND ");
        span_row_predicate(clause, builder)?;
    }
    builder.push(")");
    Ok(())
}

/// Splits the top level of a filter into span clauses (to be matched by one span) and the rest.
pub(super) fn split_span_clauses(expression: &FilterExpression) -> (Vec<&Comparison>, Vec<&FilterExpression>) {
    let children: Vec<&FilterExpression> = match expression {
        FilterExpression::And(children) => children.iter().collect(),
        other => vec![other],
    };
    let mut spans = Vec::new();
    let mut rest = Vec::new();
    for child in children {
        match child {
            FilterExpression::Comparison(comparison) if is_span_clause(comparison) => spans.push(comparison),
            other => rest.push(other),
        }
    }
    (spans, rest)
}

/// `feedback.<name>` / `expectation.<name>` / `issue.id` on the trace (alias `t`).
pub(super) fn assessment_predicate(comparison: &Comparison, builder: &mut SqlBuilder) -> Result<(), String> {
    let kind = comparison.prefix.as_deref().unwrap_or_default();
    if kind == "issue" {
        if comparison.key != "id" || comparison.comparator != Comparator::Equal {
            return Err("issues are filtered with issue.id = '<issue id>' only".into());
        }
        let FilterValue::Text(issue_id) = &comparison.value else {
            return Err("issue.id needs a quoted issue id".into());
        };
        let placeholder = builder.bind_text(issue_id);
        builder.push(&format!(
            "t.trace_id IN (SELECT a.trace_id FROM trace_assessments a WHERE a.kind = 'issue' AND a.name = {placeholder})"
        ));
        return Ok(());
    }
    let kind_literal = if kind == "feedback" {
        "'feedback'"
    } else {
        "'expectation'"
    };
    let name = builder.bind_text(trim_backticks(&comparison.key));
    let scope = format!(
        "SELECT a.trace_id FROM trace_assessments a WHERE a.kind = {kind_literal} AND a.name = {name} AND a.valid = 1"
    );
    match comparison.comparator {
        Comparator::IsNull => builder.push(&format!("t.trace_id NOT IN ({scope})")),
        Comparator::IsNotNull => builder.push(&format!("t.trace_id IN ({scope})")),
        Comparator::Greater | Comparator::GreaterOrEqual | Comparator::Less | Comparator::LessOrEqual => {
            builder.push(&format!("t.trace_id IN ({scope} AND a.is_numeric = 1 AND "));
            numeric_predicate("a.aggregate_value", comparison, builder)?;
            builder.push(")");
        }
        Comparator::Equal | Comparator::NotEqual => {
            // The stored JSON equals the value as written, or its JSON encoding ('yes' matches "yes").
            let raw = match &comparison.value {
                FilterValue::Text(text) => text.clone(),
                FilterValue::Number(number) => python_json::dumps(&serde_json::json!(number)),
                _ => return Err(format!("'{}' needs a value", identifier(comparison))),
            };
            let encoded = python_json::dumps(&serde_json::Value::String(raw.clone()));
            let (raw, encoded) = (builder.bind_text(&raw), builder.bind_text(&encoded));
            let operator = if comparison.comparator == Comparator::Equal {
                "IN"
            } else {
                "NOT IN"
            };
            builder.push(&format!(
                "t.trace_id IN ({scope} AND a.value {operator} ({raw}, {encoded}))"
            ));
        }
        Comparator::Like | Comparator::ILike => {
            builder.push(&format!("t.trace_id IN ({scope} AND "));
            string_predicate("a.value", comparison, false, builder)?;
            builder.push(")");
        }
        other => return Err(format!("invalid comparator '{other}' for '{}'", identifier(comparison))),
    }
    Ok(())
}
