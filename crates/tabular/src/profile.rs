//! Column profiles: what later comparisons need from a reference table, computed once and saved as JSON so the
//! reference is never read again.
//!
//! A numeric profile keeps the count, nulls, NaN and ±∞ counts, min/max, mean, standard deviation, sum, the exact
//! number of distinct values, 1001 quantiles (every 0.1 percentile, numpy's linear interpolation), a 20-bin
//! histogram over the reference range, the values themselves when there are at most 1000 (small references are
//! tested exactly, as Evidently does), and value counts when there are at most 20 distinct values. A categorical
//! profile keeps counts for its 1000 most frequent labels and the total of the rest.

use std::path::Path;

use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};

use crate::collect::{CategoricalValues, ColumnValues, NumericValues};
use crate::error::TabularError;
use crate::kind::ValueKind;
use crate::quantiles::{Histogram, quantile_summary};

/// The `format` field of profiles this version writes and reads.
pub const PROFILE_FORMAT: &str = "loopline-profile/1";
/// Quantiles kept per numeric column.
pub const QUANTILE_POINTS: usize = 1001;
/// Columns with at most this many finite values keep them all.
pub const EXACT_VALUES_LIMIT: usize = 1000;
/// Numeric columns with at most this many distinct values keep a count per value.
pub const VALUE_COUNTS_LIMIT: usize = 20;
/// Labels kept per categorical column, most frequent first.
pub const CATEGORY_LIMIT: usize = 1000;
/// Histogram bins over the reference range.
pub const HISTOGRAM_BINS: usize = 20;

/// A table's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetProfile {
    /// Always [`PROFILE_FORMAT`].
    pub format: String,
    /// The file the profile was taken from.
    pub source: String,
    /// Rows in the table.
    pub rows: u64,
    /// One profile per column, in table order.
    pub columns: Vec<ColumnProfile>,
}

/// One column's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Arrow type.
    pub data_type: DataType,
    /// Kind of values.
    pub kind: ValueKind,
    /// Non-null cells.
    pub count: u64,
    /// Null cells.
    pub nulls: u64,
    /// For numeric and datetime columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericProfile>,
    /// For categorical columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorical: Option<CategoricalProfile>,
}

/// Summary of a numeric column's finite values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    /// Finite values.
    pub finite: u64,
    /// NaN cells.
    pub nan: u64,
    /// +∞ cells.
    pub positive_infinity: u64,
    /// −∞ cells.
    pub negative_infinity: u64,
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor n − 1, as pandas), of the finite values.
    pub std: Option<f64>,
    /// Sum of the finite values.
    pub sum: f64,
    /// Distinct finite values (exact).
    pub distinct: u64,
    /// Quantiles at probabilities `i / (QUANTILE_POINTS − 1)`.
    pub quantiles: Vec<f64>,
    /// Equal-width histogram over `[min, max]`.
    pub histogram: Option<Histogram>,
    /// All finite values, ascending, when there are at most [`EXACT_VALUES_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// `(value, count)` ascending by value when there are at most [`VALUE_COUNTS_LIMIT`] distinct values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_counts: Option<Vec<(f64, u64)>>,
}

/// Summary of a categorical column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalProfile {
    /// Distinct labels (exact).
    pub distinct: u64,
    /// `(label, count)` for the most frequent labels, most frequent first.
    pub counts: Vec<(String, u64)>,
    /// Cells holding a label beyond those kept.
    pub other: u64,
}

/// Runs of equal values in ascending `sorted`, as `(value, count)`.
pub fn value_runs(sorted: &[f64]) -> impl Iterator<Item = (f64, u64)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let value = *sorted.get(start)?;
        let mut end = start + 1;
        while end < sorted.len() && sorted[end] == value {
            end += 1;
        }
        let run = (value, (end - start) as u64);
        start = end;
        Some(run)
    })
}

/// Mean and sample standard deviation by compensated two-pass sums.
pub fn mean_and_std(values: &[f64]) -> (Option<f64>, Option<f64>, f64) {
    if values.is_empty() {
        return (None, None, 0.0);
    }
    let sum = compensated_sum(values.iter().copied());
    let mean = sum / values.len() as f64;
    let std = (values.len() > 1).then(|| {
        let squares = compensated_sum(values.iter().map(|v| (v - mean) * (v - mean)));
        (squares / (values.len() - 1) as f64).sqrt()
    });
    (Some(mean), std, sum)
}

/// Neumaier's compensated sum.
pub fn compensated_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for value in values {
        let total = sum + value;
        compensation += if sum.abs() >= value.abs() {
            (sum - total) + value
        } else {
            (value - total) + sum
        };
        sum = total;
    }
    sum + compensation
}

impl NumericProfile {
    /// The profile of collected numeric values (sorted).
    pub fn of(values: &NumericValues) -> NumericProfile {
        let sorted = &values.values;
        let (mean, std, sum) = mean_and_std(sorted);
        let distinct = value_runs(sorted).count() as u64;
        let histogram = match (sorted.first(), sorted.last()) {
            (Some(min), Some(max)) => Some(Histogram::of_sorted(
                sorted,
                Histogram::equal_width_edges(*min, *max, HISTOGRAM_BINS),
            )),
            _ => None,
        };
        NumericProfile {
            finite: sorted.len() as u64,
            nan: values.nan,
            positive_infinity: values.positive_infinity,
            negative_infinity: values.negative_infinity,
            min: sorted.first().copied(),
            max: sorted.last().copied(),
            mean,
            std,
            sum,
            distinct,
            quantiles: quantile_summary(sorted, QUANTILE_POINTS),
            histogram,
            values: (sorted.len() <= EXACT_VALUES_LIMIT).then(|| sorted.clone()),
            value_counts: (distinct as usize <= VALUE_COUNTS_LIMIT).then(|| value_runs(sorted).collect()),
        }
    }
}

impl CategoricalProfile {
    /// The profile of collected labels (most frequent first).
    pub fn of(values: &CategoricalValues) -> CategoricalProfile {
        let kept = values.counts.len().min(CATEGORY_LIMIT);
        CategoricalProfile {
            distinct: values.counts.len() as u64,
            counts: values.counts[..kept].to_vec(),
            other: values.counts[kept..].iter().map(|(_, c)| c).sum(),
        }
    }
}

impl ColumnProfile {
    /// The profile of one collected column.
    pub fn of(field: &Field, values: &ColumnValues) -> ColumnProfile {
        let (numeric, categorical) = match values {
            ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => (Some(NumericProfile::of(v)), None),
            ColumnValues::Categorical(v) => (None, Some(CategoricalProfile::of(v))),
            ColumnValues::Other { .. } => (None, None),
        };
        ColumnProfile {
            name: field.name().clone(),
            data_type: field.data_type().clone(),
            kind: values.kind(),
            count: values.rows() - values.nulls(),
            nulls: values.nulls(),
            numeric,
            categorical,
        }
    }
}

impl DatasetProfile {
    /// The profile of collected columns.
    pub fn of(source: &str, rows: u64, columns: &[(Field, ColumnValues)]) -> DatasetProfile {
        DatasetProfile {
            format: PROFILE_FORMAT.to_string(),
            source: source.to_string(),
            rows,
            columns: columns
                .iter()
                .map(|(field, values)| ColumnProfile::of(field, values))
                .collect(),
        }
    }

    /// The profile of a column, by name.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Writes the profile as JSON (to a temporary file renamed into place, so a reader never sees half a profile).
    pub fn save(&self, path: &Path) -> Result<(), TabularError> {
        let text = serde_json::to_vec(self).expect("profiles serialise");
        let temporary = path.with_extension("json.partial");
        std::fs::write(&temporary, text).map_err(|e| TabularError::io(&temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| TabularError::io(path, e))
    }

    /// Reads a profile written by [`DatasetProfile::save`].
    pub fn load(path: &Path) -> Result<DatasetProfile, TabularError> {
        let bad = |message: String| TabularError::BadProfile {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read(path).map_err(|e| TabularError::io(path, e))?;
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(PROFILE_FORMAT) => {}
            Some(other) => {
                return Err(bad(format!(
                    "format {other:?} is not {PROFILE_FORMAT:?}; re-run `loopline profile`"
                )));
            }
            None => return Err(bad(format!("it has no \"format\": {PROFILE_FORMAT:?} field"))),
        }
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
    }

    /// True when `path` looks like a profile rather than data (by name: `*.profile.json` or `*.json`).
    pub fn is_profile_path(path: &Path) -> bool {
        path.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_profile_summarises_values() {
        let values = NumericValues {
            values: vec![1.0, 2.0, 2.0, 3.0, 10.0],
            nulls: 2,
            nan: 1,
            positive_infinity: 1,
            negative_infinity: 0,
        };
        let profile = NumericProfile::of(&values);
        assert_eq!((profile.min, profile.max, profile.distinct), (Some(1.0), Some(10.0), 4));
        assert_eq!(profile.mean, Some(3.6));
        // pandas: pd.Series([1, 2, 2, 3, 10]).std() = 3.6469165057620934
        assert!((profile.std.unwrap() - 3.6469165057620934).abs() < 1e-12);
        assert_eq!(profile.quantiles.len(), QUANTILE_POINTS);
        assert_eq!(profile.quantiles[500], 2.0);
        assert_eq!(
            profile.value_counts.as_deref(),
            Some(&[(1.0, 1), (2.0, 2), (3.0, 1), (10.0, 1)][..])
        );
        let histogram = profile.histogram.unwrap();
        assert_eq!(histogram.counts.iter().sum::<u64>(), 5);
    }

    #[test]
    fn profiles_round_trip_and_refuse_other_files() {
        let directory = tempfile::tempdir().unwrap();
        let field = Field::new("city", DataType::Utf8, true);
        let values = ColumnValues::Categorical(CategoricalValues {
            counts: vec![("paris".to_string(), 3), ("oslo".to_string(), 1)],
            nulls: 1,
        });
        let profile = DatasetProfile::of("data.csv", 5, &[(field, values)]);
        let path = directory.path().join("ref.profile.json");
        profile.save(&path).unwrap();
        assert_eq!(DatasetProfile::load(&path).unwrap(), profile);
        std::fs::write(&path, br#"{"format": "other/9"}"#).unwrap();
        let error = DatasetProfile::load(&path).unwrap_err().to_string();
        assert!(error.contains("other/9"), "{error}");
        std::fs::write(&path, b"not json").unwrap();
        assert!(
            DatasetProfile::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
    }
}
