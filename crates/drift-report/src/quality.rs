//! Data-quality findings that need no suite: missing-value surges, values outside the reference range, new
//! categories, type changes, values set aside (NaN, ±∞) and duplicate rows.

use loopline_tabular::SchemaDiff;
use loopline_tabular::collect::ColumnValues;
use serde::Serialize;

use crate::reference::ReferenceColumn;
use loopline_core::html::format_number;

/// Rise in the share of missing cells (percentage points) reported as a surge.
pub const MISSING_SURGE_POINTS: f64 = 0.05;
/// Share of current values outside the reference range from which it is reported (a few values beyond the
/// extremes are expected whenever the current sample is larger than the reference).
pub const OUT_OF_RANGE_SHARE: f64 = 0.01;
/// New labels listed by name in a finding.
const LISTED_LABELS: usize = 10;

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The column, or none for the whole table.
    pub column: Option<String>,
    /// Which check: `missing_values_surge`, `out_of_reference_range`, `new_categories`, `type_change`,
    /// `non_finite_values`, `duplicate_rows`.
    pub check: &'static str,
    /// What was found, for people.
    pub message: String,
}

impl Finding {
    fn column(column: &str, check: &'static str, message: String) -> Finding {
        Finding {
            column: Some(column.to_string()),
            check,
            message,
        }
    }

    /// Rows repeated in the current data.
    pub fn duplicates(duplicates: u64, rows: u64) -> Finding {
        Finding {
            column: None,
            check: "duplicate_rows",
            message: format!(
                "{duplicates} rows ({}) repeat an earlier row",
                percent(duplicates, rows)
            ),
        }
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".to_string()
    } else {
        format!("{:.2}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Findings for one column present on both sides.
pub fn column_findings(reference: &ReferenceColumn, current: &ColumnValues, schema: &SchemaDiff) -> Vec<Finding> {
    let name = reference.name.as_str();
    let mut findings = Vec::new();
    if let Some(retyped) = schema.retyped.iter().find(|r| r.name == name && r.comparable) {
        findings.push(Finding::column(
            name,
            "type_change",
            format!("type changed from {} to {}", retyped.reference, retyped.current),
        ));
    }
    let reference_missing = reference.nulls + reference.numeric.as_ref().map_or(0, |n| n.non_finite);
    let (current_missing, current_rows) = match current {
        ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => (v.set_aside(), current.rows()),
        other => (other.nulls(), other.rows()),
    };
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    let (before, after) = (
        share(reference_missing, reference.rows),
        share(current_missing, current_rows),
    );
    if after - before >= MISSING_SURGE_POINTS {
        findings.push(Finding::column(
            name,
            "missing_values_surge",
            format!(
                "missing values rose from {:.2}% to {:.2}% of rows",
                100.0 * before,
                100.0 * after
            ),
        ));
    }
    match (current, &reference.numeric, &reference.labels) {
        (ColumnValues::Numeric(values), Some(numeric), _) => {
            let non_finite = values.nan + values.positive_infinity + values.negative_infinity;
            if non_finite > 0 {
                findings.push(Finding::column(
                    name,
                    "non_finite_values",
                    format!(
                        "{} NaN, {} +inf and {} -inf values were set aside",
                        values.nan, values.positive_infinity, values.negative_infinity
                    ),
                ));
            }
            if let Some((low, high)) = numeric.range {
                let below = values.values.partition_point(|v| *v < low) as u64;
                let above = (values.values.len() - values.values.partition_point(|v| *v <= high)) as u64;
                if (below + above) as f64 >= OUT_OF_RANGE_SHARE * values.values.len() as f64 && below + above > 0 {
                    findings.push(Finding::column(
                        name,
                        "out_of_reference_range",
                        format!(
                            "{} values ({}) lie outside the reference range [{}, {}]: {below} below, {above} above",
                            below + above,
                            percent(below + above, values.values.len() as u64),
                            format_number(low),
                            format_number(high),
                        ),
                    ));
                }
            }
        }
        (ColumnValues::Categorical(values), _, Some(labels)) if labels.other == 0 => {
            let new: Vec<&(String, u64)> = values
                .counts
                .iter()
                .filter(|(l, _)| !labels.counts.iter().any(|(r, _)| r == l))
                .collect();
            if !new.is_empty() {
                let rows: u64 = new.iter().map(|(_, c)| c).sum();
                let listed: Vec<&str> = new.iter().take(LISTED_LABELS).map(|(l, _)| l.as_str()).collect();
                let more = if new.len() > LISTED_LABELS {
                    format!(" and {} more", new.len() - LISTED_LABELS)
                } else {
                    String::new()
                };
                findings.push(Finding::column(
                    name,
                    "new_categories",
                    format!(
                        "{} categories not in the reference ({} of rows): {}{more}",
                        new.len(),
                        percent(rows, values.total()),
                        listed.join(", ")
                    ),
                ));
            }
        }
        _ => {}
    }
    findings
}
