//! Collecting a column's values from record batches: numbers as sorted `f64` with counts of what was set aside
//! (nulls, NaN, ±∞), labels as counts per distinct value.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};

use crate::error::TabularError;
use crate::kind::ValueKind;
use crate::read::TableSource;

/// The finite numbers of a column, sorted ascending, and what was set aside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumericValues {
    /// Finite values, sorted ascending once collection finishes.
    pub values: Vec<f64>,
    /// Null cells.
    pub nulls: u64,
    /// NaN cells (not nulls: a float column can hold both).
    pub nan: u64,
    /// +∞ cells.
    pub positive_infinity: u64,
    /// −∞ cells.
    pub negative_infinity: u64,
}

impl NumericValues {
    /// Cells that held something other than a finite number.
    pub fn set_aside(&self) -> u64 {
        self.nulls + self.nan + self.positive_infinity + self.negative_infinity
    }

    fn push_f64(&mut self, value: f64) {
        if value.is_finite() {
            self.values.push(value);
        } else if value.is_nan() {
            self.nan += 1;
        } else if value > 0.0 {
            self.positive_infinity += 1;
        } else {
            self.negative_infinity += 1;
        }
    }
}

/// Counts of a column's labels, most frequent first (ties by label).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoricalValues {
    /// `(label, count)`, most frequent first once collection finishes.
    pub counts: Vec<(String, u64)>,
    /// Null cells.
    pub nulls: u64,
}

impl CategoricalValues {
    /// Non-null cells.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum()
    }
}

/// One column's collected values.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Numbers.
    Numeric(NumericValues),
    /// Labels.
    Categorical(CategoricalValues),
    /// Times as microseconds since the epoch (or since midnight for time-of-day columns).
    Datetime(NumericValues),
    /// A type we do not analyse: only counted.
    Other {
        /// Cells.
        rows: u64,
        /// Null cells.
        nulls: u64,
    },
}

impl ColumnValues {
    /// The kind of values held.
    pub fn kind(&self) -> ValueKind {
        match self {
            ColumnValues::Numeric(_) => ValueKind::Numeric,
            ColumnValues::Categorical(_) => ValueKind::Categorical,
            ColumnValues::Datetime(_) => ValueKind::Datetime,
            ColumnValues::Other { .. } => ValueKind::Other,
        }
    }

    /// All cells, nulls included.
    pub fn rows(&self) -> u64 {
        match self {
            ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => v.values.len() as u64 + v.set_aside(),
            ColumnValues::Categorical(v) => v.total() + v.nulls,
            ColumnValues::Other { rows, .. } => *rows,
        }
    }

    /// Null cells.
    pub fn nulls(&self) -> u64 {
        match self {
            ColumnValues::Numeric(v) | ColumnValues::Datetime(v) => v.nulls,
            ColumnValues::Categorical(v) => v.nulls,
            ColumnValues::Other { nulls, .. } => *nulls,
        }
    }
}

/// Accumulates one column while batches stream past.
enum Accumulator {
    Numeric(NumericValues),
    Datetime(NumericValues, f64),
    Categorical(HashMap<String, u64>, u64),
    Other(u64, u64),
}

impl Accumulator {
    fn for_type(data_type: &DataType) -> Accumulator {
        match ValueKind::of(data_type) {
            ValueKind::Numeric => Accumulator::Numeric(NumericValues::default()),
            ValueKind::Categorical => Accumulator::Categorical(HashMap::new(), 0),
            ValueKind::Datetime => Accumulator::Datetime(NumericValues::default(), microseconds_per_unit(data_type)),
            ValueKind::Other => Accumulator::Other(0, 0),
        }
    }

    /// Adds a column's values and returns the column as it was read (cast to `f64`, `i64` or text), so row
    /// fingerprints can reuse the cast instead of casting again.
    fn push(&mut self, array: &ArrayRef) -> Result<ArrayRef, arrow_schema::ArrowError> {
        Ok(match self {
            Accumulator::Numeric(values) => {
                let cast = arrow_cast::cast(array, &DataType::Float64)?;
                let floats = cast.as_primitive::<arrow_array::types::Float64Type>();
                values.nulls += floats.null_count() as u64;
                if floats.null_count() == 0 {
                    floats.values().iter().for_each(|v| values.push_f64(*v));
                } else {
                    floats.iter().flatten().for_each(|v| values.push_f64(v));
                }
                cast
            }
            Accumulator::Datetime(values, scale) => {
                let cast = arrow_cast::cast(array, &DataType::Int64)?;
                let integers = cast.as_primitive::<Int64Type>();
                values.nulls += integers.null_count() as u64;
                integers
                    .iter()
                    .flatten()
                    .for_each(|v| values.push_f64(v as f64 * *scale));
                cast
            }
            Accumulator::Categorical(counts, nulls) => {
                *nulls += array.null_count() as u64;
                if let Some(booleans) = array.as_boolean_opt() {
                    for value in booleans.iter().flatten() {
                        count_label(counts, if value { "true" } else { "false" });
                    }
                    array.clone()
                } else {
                    let strings = arrow_cast::cast(array, &DataType::Utf8)?;
                    for value in strings.as_string::<i32>().iter().flatten() {
                        count_label(counts, value);
                    }
                    strings
                }
            }
            Accumulator::Other(rows, nulls) => {
                *rows += array.len() as u64;
                *nulls += array.logical_null_count() as u64;
                array.clone()
            }
        })
    }

    fn finish(self) -> ColumnValues {
        match self {
            Accumulator::Numeric(mut values) => {
                values.values.sort_unstable_by(f64::total_cmp);
                ColumnValues::Numeric(values)
            }
            Accumulator::Datetime(mut values, _) => {
                values.values.sort_unstable_by(f64::total_cmp);
                ColumnValues::Datetime(values)
            }
            Accumulator::Categorical(counts, nulls) => {
                let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
                counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ColumnValues::Categorical(CategoricalValues { counts, nulls })
            }
            Accumulator::Other(rows, nulls) => ColumnValues::Other { rows, nulls },
        }
    }
}

fn count_label(counts: &mut HashMap<String, u64>, label: &str) {
    match counts.get_mut(label) {
        Some(count) => *count += 1,
        None => {
            counts.insert(label.to_string(), 1);
        }
    }
}

fn microseconds_per_unit(data_type: &DataType) -> f64 {
    let unit = match data_type {
        DataType::Date32 => return 86_400e6,
        DataType::Date64 => return 1e3,
        DataType::Timestamp(unit, _) | DataType::Time32(unit) | DataType::Time64(unit) => unit,
        _ => return 1.0,
    };
    match unit {
        TimeUnit::Second => 1e6,
        TimeUnit::Millisecond => 1e3,
        TimeUnit::Microsecond => 1.0,
        TimeUnit::Nanosecond => 1e-3,
    }
}

/// Collects columns from record batches pushed one at a time.
pub struct Collector {
    fields: Vec<Field>,
    accumulators: Vec<Accumulator>,
    fingerprints: Option<Vec<u64>>,
}

impl Collector {
    /// A collector for every column of `fields`, in that order; batches pushed must have these columns.
    pub fn new(fields: &[Field]) -> Collector {
        Collector {
            fields: fields.to_vec(),
            accumulators: fields.iter().map(|f| Accumulator::for_type(f.data_type())).collect(),
            fingerprints: None,
        }
    }

    /// Also fingerprints every row, to count duplicate rows (see [`crate::rows`]).
    pub fn counting_duplicates(mut self) -> Collector {
        self.fingerprints = Some(Vec::new());
        self
    }

    /// Rows equal to an earlier row in every collected column, when counting was asked for.
    pub fn duplicate_rows(&mut self) -> Option<u64> {
        self.fingerprints.take().map(crate::rows::duplicate_count)
    }

    /// Adds a batch's values. The batch must hold the collector's columns (by name).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), arrow_schema::ArrowError> {
        let start = self.fingerprints.as_ref().map_or(0, Vec::len);
        if let Some(fingerprints) = &mut self.fingerprints {
            fingerprints.resize(start + batch.num_rows(), 0);
        }
        for (field, accumulator) in self.fields.iter().zip(self.accumulators.iter_mut()) {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                arrow_schema::ArrowError::SchemaError(format!("batch has no column '{}'", field.name()))
            })?;
            let read = accumulator.push(column)?;
            if let Some(fingerprints) = &mut self.fingerprints {
                crate::rows::mix_column(&mut fingerprints[start..], &read)?;
            }
        }
        Ok(())
    }

    /// The collected columns, numeric values sorted (columns sorted in parallel).
    pub fn finish(self) -> Vec<(Field, ColumnValues)> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut pending: Vec<(usize, Accumulator)> = self.accumulators.into_iter().enumerate().collect();
        let mut finished: Vec<Option<ColumnValues>> = (0..pending.len()).map(|_| None).collect();
        let chunk = pending.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            while !pending.is_empty() {
                let take = chunk.min(pending.len());
                let work: Vec<(usize, Accumulator)> = pending.drain(..take).collect();
                handles.push(scope.spawn(move || work.into_iter().map(|(i, a)| (i, a.finish())).collect::<Vec<_>>()));
            }
            for handle in handles {
                for (index, values) in handle.join().expect("sorting does not panic") {
                    finished[index] = Some(values);
                }
            }
        });
        self.fields
            .into_iter()
            .zip(finished.into_iter().map(|v| v.expect("every column finished")))
            .collect()
    }
}

/// Collected columns with their fields.
pub type FieldValues = Vec<(Field, ColumnValues)>;

/// Reads `columns` (all when `None`) of a file, calling `progress` with the rows of each batch read.
pub fn collect_columns(
    source: &TableSource,
    columns: Option<&[String]>,
    progress: impl FnMut(u64),
) -> Result<FieldValues, TabularError> {
    collect_table(source, columns, false, progress).map(|(columns, _)| columns)
}

/// As [`collect_columns`], also counting duplicate rows over the columns read when `count_duplicates`.
pub fn collect_table(
    source: &TableSource,
    columns: Option<&[String]>,
    count_duplicates: bool,
    mut progress: impl FnMut(u64),
) -> Result<(FieldValues, Option<u64>), TabularError> {
    let fields: Vec<Field> = match columns {
        Some(names) => source
            .column_indices(names)?
            .into_iter()
            .map(|i| source.schema().field(i).clone())
            .collect(),
        None => source.schema().fields().iter().map(|f| f.as_ref().clone()).collect(),
    };
    let mut collector = Collector::new(&fields);
    if count_duplicates {
        collector = collector.counting_duplicates();
    }
    for batch in source.batches(columns)? {
        let batch = batch?;
        collector.push(&batch).map_err(|e| TabularError::Unreadable {
            path: source.path().to_path_buf(),
            format: source.format().label(),
            message: e.to_string(),
        })?;
        progress(batch.num_rows() as u64);
    }
    let duplicates = collector.duplicate_rows();
    Ok((collector.finish(), duplicates))
}
