//! The figures a window produces, by name: what alert rules watch, what `/metrics` exports and what
//! `loopline monitor status` prints. Names are dotted paths; a column's figures end in the column name.

use std::collections::BTreeMap;

/// A window's figures.
pub type Figures = BTreeMap<String, f64>;

/// The names rules may use (`<column>` stands for a column, `<name>` for a posted business metric).
pub const FIGURE_PATTERNS: [&str; 17] = [
    "rows",
    "requests",
    "labels",
    "drift.share",
    "drift.dataset",
    "drift.columns_drifted",
    "drift.score.<column>",
    "drift.detected.<column>",
    "prediction_drift.score",
    "prediction_drift.detected",
    "quality.findings|problems|<check>",
    "quality.missing_share.<column>",
    "performance.accuracy|precision|recall|f1|roc_auc|log_loss|rmse|mae|mape|r2",
    "estimated.accuracy|roc_auc[_lower|_upper]",
    "health.failures|bad_inputs|rejected|error_rate|latency_p50_ms|latency_p95_ms|latency_p99_ms|unreadable_files",
    "business.<name>",
    "slice[<column>=<value>].<rows|requests|labels|drift.*|quality.*|performance.*|estimated.*>",
];

/// Data-quality checks counted per window.
pub const QUALITY_CHECKS: [&str; 6] = [
    "missing_values_surge",
    "out_of_reference_range",
    "new_categories",
    "type_change",
    "non_finite_values",
    "duplicate_rows",
];

/// Performance figures.
pub const PERFORMANCE_FIGURES: [&str; 10] = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "mape",
    "r2",
];

const COLUMN_PREFIXES: [&str; 3] = ["drift.score.", "drift.detected.", "quality.missing_share."];

/// The column a per-column figure names.
pub fn figure_column(figure: &str) -> Option<&str> {
    COLUMN_PREFIXES
        .iter()
        .find_map(|prefix| figure.strip_prefix(prefix))
        .filter(|column| !column.is_empty())
}

/// Figures a slice has (the rest describe the whole window): names, or prefixes ending in `.`.
const SLICED: [&str; 7] = [
    "rows",
    "requests",
    "labels",
    "drift.",
    "quality.",
    "performance.",
    "estimated.",
];

/// Whether a slice has this figure.
pub fn is_sliced(figure: &str) -> bool {
    SLICED
        .iter()
        .any(|p| figure == *p || (p.ends_with('.') && figure.starts_with(p)))
}

/// A slice figure's column, value and inner figure: `slice[plan=pro].drift.share`.
pub fn slice_parts(figure: &str) -> Option<(&str, &str, &str)> {
    let rest = figure.strip_prefix("slice[")?;
    let (inside, inner) = rest.split_once("].")?;
    let (column, value) = inside.split_once('=')?;
    (!column.is_empty()).then_some((column, value, inner))
}

/// Whether a rule may watch `figure`.
pub fn is_known_figure(figure: &str) -> bool {
    if let Some((_, _, inner)) = slice_parts(figure) {
        return is_sliced(inner) && slice_parts(inner).is_none() && is_known_figure(inner);
    }
    if figure_column(figure).is_some() {
        return true;
    }
    if let Some(name) = figure.strip_prefix("business.") {
        return !name.is_empty() && name.len() <= 200;
    }
    if let Some(name) = figure.strip_prefix("performance.") {
        return PERFORMANCE_FIGURES.contains(&name);
    }
    if let Some(name) = figure.strip_prefix("health.") {
        return matches!(
            name,
            "failures"
                | "unreadable_files"
                | "bad_inputs"
                | "rejected"
                | "error_rate"
                | "latency_p50_ms"
                | "latency_p95_ms"
                | "latency_p99_ms"
        );
    }
    if let Some(name) = figure.strip_prefix("estimated.") {
        let metric = name.trim_end_matches("_lower").trim_end_matches("_upper");
        return matches!(metric, "accuracy" | "roc_auc");
    }
    if let Some(name) = figure.strip_prefix("quality.") {
        return matches!(
            name,
            "findings" | "problems" | "expectations_failed" | "expectations_success_percent"
        ) || QUALITY_CHECKS.contains(&name);
    }
    matches!(
        figure,
        "rows"
            | "requests"
            | "labels"
            | "drift.share"
            | "drift.dataset"
            | "drift.columns_drifted"
            | "prediction_drift.score"
            | "prediction_drift.detected"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_figures() {
        for known in [
            "rows",
            "drift.score.age",
            "quality.new_categories",
            "performance.roc_auc",
            "business.revenue",
        ] {
            assert!(is_known_figure(known), "{known}");
        }
        for unknown in ["drift.score.", "performance.speed", "quality.bad", "nope", "business."] {
            assert!(!is_known_figure(unknown), "{unknown}");
        }
        assert_eq!(figure_column("drift.detected.a.b"), Some("a.b"));
        assert!(is_known_figure("slice[plan=pro].drift.share"));
        assert!(is_known_figure("slice[region=eu.west].performance.accuracy"));
        assert!(!is_known_figure("slice[plan=pro].business.x"));
        assert!(!is_known_figure("slice[plan].rows"));
        assert_eq!(slice_parts("slice[a=b].rows"), Some(("a", "b", "rows")));
    }
}
