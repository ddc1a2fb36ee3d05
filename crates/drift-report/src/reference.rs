//! The reference side of a comparison, from collected values or from a saved profile.

use arrow_schema::DataType;
use loopline_tabular::collect::{CategoricalValues, ColumnValues, NumericValues};
use loopline_tabular::profile::ColumnProfile;
use loopline_tabular::{ValueKind, profile::NumericProfile};

/// What is known of a numeric reference column.
#[derive(Debug, Clone)]
pub struct NumericReference {
    /// Every finite value, ascending, when known (raw data, or a small profiled column).
    pub values: Option<Vec<f64>>,
    /// Quantiles at evenly spaced probabilities (always present for a non-empty column).
    pub quantiles: Vec<f64>,
    /// Finite values.
    pub finite: u64,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Population standard deviation (divisor n), as numpy's `std`.
    pub population_std: f64,
    /// Smallest and largest finite value.
    pub range: Option<(f64, f64)>,
    /// Distinct finite values.
    pub distinct: u64,
    /// `(value, count)` when there are few distinct values.
    pub value_counts: Option<Vec<(f64, u64)>>,
    /// NaN and ±∞ cells.
    pub non_finite: u64,
}

/// What is known of a categorical reference column.
#[derive(Debug, Clone)]
pub struct LabelReference {
    /// `(label, count)`, most frequent first.
    pub counts: Vec<(String, u64)>,
    /// Cells whose label was pooled (profiles keep the most frequent labels only).
    pub other: u64,
}

/// One reference column.
#[derive(Debug, Clone)]
pub struct ReferenceColumn {
    /// Column name.
    pub name: String,
    /// Arrow type.
    pub data_type: DataType,
    /// Kind of values.
    pub kind: ValueKind,
    /// All cells.
    pub rows: u64,
    /// Null cells.
    pub nulls: u64,
    /// Numbers (numeric and datetime columns).
    pub numeric: Option<NumericReference>,
    /// Labels (categorical columns).
    pub labels: Option<LabelReference>,
}

fn population_std(sample_std: Option<f64>, count: u64) -> f64 {
    match sample_std {
        Some(std) if count > 1 => std * ((count - 1) as f64 / count as f64).sqrt(),
        _ => 0.0,
    }
}

impl NumericReference {
    /// From collected values (moved in: the sorted values are kept), summarised as a profile would be.
    pub fn of_values(values: NumericValues) -> NumericReference {
        let mut reference = NumericReference::of_profile(&NumericProfile::of(&values));
        reference.values = Some(values.values);
        reference
    }

    /// From a profile.
    pub fn of_profile(profile: &NumericProfile) -> NumericReference {
        NumericReference {
            values: profile.values.clone(),
            quantiles: profile.quantiles.clone(),
            finite: profile.finite,
            mean: profile.mean,
            population_std: population_std(profile.std, profile.finite),
            range: profile.min.zip(profile.max),
            distinct: profile.distinct,
            value_counts: profile.value_counts.clone(),
            non_finite: profile.nan + profile.positive_infinity + profile.negative_infinity,
        }
    }
}

impl ReferenceColumn {
    /// From a collected column.
    pub fn of_values(name: &str, data_type: DataType, values: ColumnValues) -> ReferenceColumn {
        let (kind, rows, nulls) = (values.kind(), values.rows(), values.nulls());
        let (numeric, labels) = match values {
            ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => (Some(NumericReference::of_values(v)), None),
            ColumnValues::Categorical(CategoricalValues { counts, .. }) => {
                (None, Some(LabelReference { counts, other: 0 }))
            }
            ColumnValues::Other { .. } => (None, None),
        };
        ReferenceColumn {
            name: name.to_string(),
            data_type,
            kind,
            rows,
            nulls,
            numeric,
            labels,
        }
    }

    /// From a column profile.
    pub fn of_profile(profile: &ColumnProfile) -> ReferenceColumn {
        ReferenceColumn {
            name: profile.name.clone(),
            data_type: profile.data_type.clone(),
            kind: profile.kind,
            rows: profile.count + profile.nulls,
            nulls: profile.nulls,
            numeric: profile.numeric.as_ref().map(NumericReference::of_profile),
            labels: profile.categorical.as_ref().map(|c| LabelReference {
                counts: c.counts.clone(),
                other: c.other,
            }),
        }
    }
}
