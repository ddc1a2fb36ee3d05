//! A whole drift report: which columns are compared, each column's verdict, the dataset verdict and the
//! data-quality findings.

use std::collections::BTreeMap;

use arrow_schema::DataType;
use loopline_drift_statistics::method_choice::{DEFAULT_DRIFT_SHARE, dataset_drift};
use loopline_tabular::collect::ColumnValues;
use loopline_tabular::{DatasetProfile, SchemaDiff, ValueKind};
use serde::Serialize;

use crate::compare::{Choice, compare_labels, compare_numeric, integer_is_categorical};
use crate::plot::{Plot, label_plot, numeric_plot};
use crate::quality::{Finding, column_findings};
use crate::reference::ReferenceColumn;

/// Collected columns: name, Arrow type, values.
pub type NamedColumns = Vec<(String, DataType, ColumnValues)>;

/// The reference side.
#[derive(Debug, Clone)]
pub struct ReferenceData {
    /// File the reference came from (the data or the profile's source).
    pub source: String,
    /// Rows in the reference.
    pub rows: u64,
    /// Every column of the reference with its type (the schema compared).
    pub schema: Vec<(String, DataType)>,
    /// The columns compared.
    pub columns: Vec<ReferenceColumn>,
}

impl ReferenceData {
    /// From collected columns.
    pub fn of_values(source: &str, rows: u64, schema: Vec<(String, DataType)>, columns: NamedColumns) -> ReferenceData {
        ReferenceData {
            source: source.to_string(),
            rows,
            schema,
            columns: columns
                .into_iter()
                .map(|(name, data_type, values)| ReferenceColumn::of_values(&name, data_type, values))
                .collect(),
        }
    }

    /// From a saved profile, keeping the named columns (all when `None`).
    pub fn of_profile(profile: &DatasetProfile, columns: Option<&[String]>) -> ReferenceData {
        ReferenceData {
            source: profile.source.clone(),
            rows: profile.rows,
            schema: profile
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone()))
                .collect(),
            columns: profile
                .columns
                .iter()
                .filter(|c| columns.is_none_or(|names| names.contains(&c.name)))
                .map(ReferenceColumn::of_profile)
                .collect(),
        }
    }
}

/// The current side.
#[derive(Debug, Clone)]
pub struct CurrentData {
    /// File the current data came from.
    pub source: String,
    /// Rows read.
    pub rows: u64,
    /// Every column of the current data with its type (the schema compared).
    pub schema: Vec<(String, DataType)>,
    /// Columns read: name, type, values.
    pub columns: NamedColumns,
    /// Rows equal to an earlier row in every column read, when counted.
    pub duplicate_rows: Option<u64>,
}

/// How the report decides.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftOptions {
    /// Share of drifted columns at which the dataset drifts.
    pub drift_share: f64,
    /// Method and threshold for every column without its own.
    pub default_choice: Choice,
    /// Per-column method and threshold.
    pub column_choices: BTreeMap<String, Choice>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            drift_share: DEFAULT_DRIFT_SHARE,
            default_choice: Choice::default(),
            column_choices: BTreeMap::new(),
        }
    }
}

impl DriftOptions {
    fn choice_for(&self, column: &str) -> Choice {
        let own = self.column_choices.get(column).copied().unwrap_or_default();
        Choice {
            method: own.method.or(self.default_choice.method),
            threshold: own.threshold.or(self.default_choice.threshold),
        }
    }
}

/// A side's summary of one column.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SideSummary {
    /// Cells.
    pub rows: u64,
    /// Null, NaN and infinite cells.
    pub missing: u64,
    /// Distinct values (labels for categorical columns).
    pub distinct: Option<u64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
}

/// One column of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnReport {
    /// Column name.
    pub name: String,
    /// Kind of values.
    pub kind: ValueKind,
    /// Arrow type in the current data.
    pub data_type: String,
    /// Method name (`ks`, `wasserstein`, …), when tested.
    pub method: Option<&'static str>,
    /// What the method measures.
    pub method_description: Option<&'static str>,
    /// Test statistic or distance.
    pub statistic: Option<f64>,
    /// p-value, for tests.
    pub p_value: Option<f64>,
    /// The value compared with the threshold.
    pub score: Option<f64>,
    /// The threshold.
    pub threshold: Option<f64>,
    /// Whether the column drifted.
    pub drifted: bool,
    /// Why the column was not tested, when it was not.
    pub not_tested: Option<String>,
    /// Reference summary.
    pub reference: SideSummary,
    /// Current summary.
    pub current: SideSummary,
    /// Distributions to draw.
    pub plot: Option<Plot>,
}

/// A data set named in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    /// Where it came from.
    pub source: String,
    /// Rows.
    pub rows: u64,
    /// Columns it has.
    pub columns: usize,
}

/// The drift report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// The reference.
    pub reference: DatasetSummary,
    /// The current data.
    pub current: DatasetSummary,
    /// How the current columns differ from the reference's.
    pub schema: SchemaDiff,
    /// Columns tested.
    pub tested_columns: usize,
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / tested_columns`.
    pub share_of_drifted_columns: f64,
    /// The share at which the dataset drifts.
    pub drift_share: f64,
    /// Whether the dataset drifted.
    pub dataset_drift: bool,
    /// Per column, in reference order.
    pub columns: Vec<ColumnReport>,
    /// Data-quality findings.
    pub findings: Vec<Finding>,
}

/// Inputs that cannot be compared, each said in a sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct InputProblems {
    /// The problems.
    pub problems: Vec<String>,
}

fn side_summary(reference: &ReferenceColumn) -> SideSummary {
    let mut summary = SideSummary {
        rows: reference.rows,
        missing: reference.nulls,
        ..Default::default()
    };
    if let Some(numeric) = &reference.numeric {
        summary.missing += numeric.non_finite;
        summary.distinct = Some(numeric.distinct);
        summary.min = numeric.range.map(|r| r.0);
        summary.max = numeric.range.map(|r| r.1);
        summary.mean = numeric.mean;
    }
    if let Some(labels) = &reference.labels {
        summary.distinct = Some(labels.counts.len() as u64 + u64::from(labels.other > 0));
    }
    summary
}

fn current_summary(values: &ColumnValues) -> SideSummary {
    let mut summary = SideSummary {
        rows: values.rows(),
        missing: values.nulls(),
        ..Default::default()
    };
    match values {
        ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => {
            summary.missing = v.set_aside();
            summary.distinct = Some(loopline_tabular::profile::value_runs(&v.values).count() as u64);
            summary.mean = loopline_tabular::profile::mean_and_std(&v.values).0;
            summary.min = v.values.first().copied();
            summary.max = v.values.last().copied();
        }
        ColumnValues::Categorical(v) => summary.distinct = Some(v.counts.len() as u64),
        ColumnValues::Other { .. } => {}
    }
    summary
}

/// Compares every current column with the reference column of the same name.
pub fn build_report(
    reference: &ReferenceData,
    current: &CurrentData,
    options: &DriftOptions,
) -> Result<DriftReport, InputProblems> {
    let mut problems = Vec::new();
    let schema = SchemaDiff::between(&reference.schema, &current.schema);
    if reference.rows == 0 {
        problems.push(format!("the reference ({}) has no rows", reference.source));
    }
    if current.rows == 0 {
        problems.push(format!("the current data ({}) has no rows", current.source));
    }
    let current_names: Vec<&str> = current.columns.iter().map(|(n, _, _)| n.as_str()).collect();
    let missing: Vec<&str> = reference
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !current_names.contains(n))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "the current data lacks reference columns {missing:?}; restore them or leave them out with --columns"
        ));
    }
    let compared = |name: &str| reference.columns.iter().any(|c| c.name == name);
    let all_null: Vec<&str> = current
        .columns
        .iter()
        .filter(|(name, _, values)| compared(name) && values.rows() > 0 && values.nulls() == values.rows())
        .map(|(name, _, _)| name.as_str())
        .collect();
    for name in &all_null {
        problems.push(format!(
            "column '{name}' is entirely null in the current data; drop it with --columns or fix the data"
        ));
    }
    for retyped in schema
        .retyped
        .iter()
        .filter(|r| !r.comparable && compared(&r.name) && !all_null.contains(&r.name.as_str()))
    {
        problems.push(format!(
            "column '{}' is {} in the reference but {} in the current data; the values cannot be compared",
            retyped.name, retyped.reference, retyped.current
        ));
    }
    let mut columns = Vec::new();
    let mut findings = Vec::new();
    for (name, data_type, values) in &current.columns {
        let Some(reference_column) = reference.columns.iter().find(|c| &c.name == name) else {
            continue;
        };
        if reference_column.kind != values.kind() {
            continue; // Reported above as incomparable.
        }
        findings.extend(column_findings(reference_column, values, &schema));
        let mut report = ColumnReport {
            name: name.clone(),
            kind: values.kind(),
            data_type: data_type.to_string(),
            method: None,
            method_description: None,
            statistic: None,
            p_value: None,
            score: None,
            threshold: None,
            drifted: false,
            not_tested: None,
            reference: side_summary(reference_column),
            current: current_summary(values),
            plot: None,
        };
        let choice = options.choice_for(name);
        let outcome = match (values, &reference_column.numeric, &reference_column.labels) {
            (ColumnValues::Numeric(current_values), Some(numeric), _) => {
                report.plot = numeric_plot(numeric, &current_values.values);
                if numeric.finite == 0 || current_values.values.is_empty() {
                    let side = if numeric.finite == 0 {
                        "reference"
                    } else {
                        "current data"
                    };
                    problems.push(format!(
                        "column '{name}' has no finite values in the {side} (all null, NaN or infinite); drop it \
                         with --columns or fix the data"
                    ));
                    None
                } else {
                    let as_categories = data_type.is_integer() && integer_is_categorical(&current_values.values);
                    Some(compare_numeric(numeric, current_values, as_categories, choice))
                }
            }
            (ColumnValues::Categorical(current_values), _, Some(labels)) => {
                report.plot = Some(label_plot(labels, &current_values.counts));
                let reference_total = labels.counts.iter().map(|(_, c)| c).sum::<u64>() + labels.other;
                if reference_total == 0 || current_values.counts.is_empty() {
                    let side = if reference_total == 0 {
                        "reference"
                    } else {
                        "current data"
                    };
                    problems.push(format!(
                        "column '{name}' is entirely null in the {side}; drop it with --columns or fix the data"
                    ));
                    None
                } else {
                    Some(compare_labels(labels, &current_values.counts, choice))
                }
            }
            (ColumnValues::Datetime(current_values), Some(numeric), _) => {
                report.plot = numeric_plot(numeric, &current_values.values);
                report.not_tested = Some("datetime columns are summarised, not tested for drift".to_string());
                None
            }
            _ => {
                report.not_tested = Some(format!("values of type {data_type} are not analysed"));
                None
            }
        };
        match outcome {
            Some(Ok(outcome)) => {
                report.method = Some(outcome.method.name());
                report.method_description = Some(outcome.method.description());
                report.statistic = Some(outcome.statistic);
                report.p_value = outcome.p_value;
                report.score = Some(outcome.score);
                report.threshold = Some(outcome.threshold);
                report.drifted = outcome.drifted;
            }
            Some(Err(message)) => problems.push(format!("column '{name}': {message}")),
            None => {}
        }
        columns.push(report);
    }
    if let Some(duplicates) = current.duplicate_rows.filter(|d| *d > 0) {
        findings.push(Finding::duplicates(duplicates, current.rows));
    }
    if !problems.is_empty() {
        return Err(InputProblems { problems });
    }
    let tested_columns = columns.iter().filter(|c| c.method.is_some()).count();
    let drifted_columns = columns.iter().filter(|c| c.drifted).count();
    Ok(DriftReport {
        reference: DatasetSummary {
            source: reference.source.clone(),
            rows: reference.rows,
            columns: reference.columns.len(),
        },
        current: DatasetSummary {
            source: current.source.clone(),
            rows: current.rows,
            columns: current.columns.len(),
        },
        schema,
        tested_columns,
        drifted_columns,
        share_of_drifted_columns: if tested_columns > 0 {
            drifted_columns as f64 / tested_columns as f64
        } else {
            0.0
        },
        drift_share: options.drift_share,
        dataset_drift: dataset_drift(drifted_columns, tested_columns, options.drift_share),
        columns,
        findings,
    })
}
