//! One column of one record batch seen as cells: numbers (NaN counts as missing, as pandas), text or booleans.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int32Array, LargeStringArray, StringArray};
use arrow_schema::{ArrowError, DataType};
use loopline_tabular::ValueKind;
use serde_json::Value;

/// A present value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A number.
    Number(f64),
    /// Text.
    Text(&'a str),
    /// A boolean.
    Bool(bool),
}

/// A batch's column in the form the rules read.
pub enum Cells {
    /// Numbers; `integer` when the column's type is an integer type.
    Numbers {
        /// Values as `f64`.
        values: Float64Array,
        /// The column holds integers.
        integer: bool,
    },
    /// Text.
    Text(StringArray),
    /// Text with 64-bit offsets (read as is, not copied into 32-bit offsets).
    LargeText(LargeStringArray),
    /// Dictionary-encoded text: per-row keys into distinct values, so rules can judge each value once.
    Dictionary {
        /// Per-row positions in `values`.
        keys: Int32Array,
        /// The distinct values.
        values: StringArray,
    },
    /// Booleans.
    Bools(BooleanArray),
    /// A type the rules do not read.
    Unsupported(usize, DataType),
}

fn is_text_dictionary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Dictionary(key, value) if **key == DataType::Int32 && **value == DataType::Utf8)
}

impl Cells {
    /// Converts a column.
    pub fn of(array: &ArrayRef) -> Result<Cells, ArrowError> {
        let data_type = array.data_type();
        let plain = match data_type {
            DataType::Dictionary(_, value) => value.as_ref(),
            other => other,
        };
        Ok(match ValueKind::of(data_type) {
            ValueKind::Numeric => Cells::Numbers {
                values: arrow_cast::cast(array, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
                integer: plain.is_integer(),
            },
            ValueKind::Categorical if matches!(plain, DataType::Boolean) => {
                Cells::Bools(arrow_cast::cast(array, &DataType::Boolean)?.as_boolean().clone())
            }
            ValueKind::Categorical if is_text_dictionary(data_type) => {
                let dictionary = array.as_dictionary::<Int32Type>();
                Cells::Dictionary {
                    keys: dictionary.keys().clone(),
                    values: dictionary.values().as_string::<i32>().clone(),
                }
            }
            ValueKind::Categorical if matches!(data_type, DataType::LargeUtf8) => {
                Cells::LargeText(array.as_string::<i64>().clone())
            }
            ValueKind::Categorical => Cells::Text(arrow_cast::cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
            _ => Cells::Unsupported(array.len(), data_type.clone()),
        })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Cells::Numbers { values, .. } => values.len(),
            Cells::Text(values) => values.len(),
            Cells::LargeText(values) => values.len(),
            Cells::Dictionary { keys, .. } => keys.len(),
            Cells::Bools(values) => values.len(),
            Cells::Unsupported(len, _) => *len,
        }
    }

    /// True for no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell at `row`, or `None` when it is missing (null, or NaN in a number column).
    pub fn get(&self, row: usize) -> Option<Cell<'_>> {
        match self {
            Cells::Numbers { values, .. } => {
                (values.is_valid(row) && !values.value(row).is_nan()).then(|| Cell::Number(values.value(row)))
            }
            Cells::Text(values) => values.is_valid(row).then(|| Cell::Text(values.value(row))),
            Cells::LargeText(values) => values.is_valid(row).then(|| Cell::Text(values.value(row))),
            Cells::Dictionary { keys, values } => keys
                .is_valid(row)
                .then(|| Cell::Text(values.value(keys.value(row) as usize))),
            Cells::Bools(values) => values.is_valid(row).then(|| Cell::Bool(values.value(row))),
            Cells::Unsupported(..) => None,
        }
    }

    /// True when the column holds integers.
    pub fn is_integer(&self) -> bool {
        matches!(self, Cells::Numbers { integer: true, .. })
    }

    /// A name for the kind of cells, for messages.
    pub fn describe(&self) -> String {
        match self {
            Cells::Numbers { .. } => "numbers".to_string(),
            Cells::Text(_) | Cells::LargeText(_) | Cells::Dictionary { .. } => "text".to_string(),
            Cells::Bools(_) => "booleans".to_string(),
            Cells::Unsupported(_, data_type) => format!("values of type {data_type}"),
        }
    }
}

impl Cell<'_> {
    /// The value as JSON (integers as integers in integer columns).
    pub fn to_json(self, integer: bool) -> Value {
        match self {
            Cell::Number(n) if integer && n.fract() == 0.0 && n.abs() < 9.007e15 => Value::from(n as i64),
            Cell::Number(n) => serde_json::Number::from_f64(n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Cell::Text(text) => Value::from(text),
            Cell::Bool(b) => Value::from(b),
        }
    }

    /// The value as Python's `str()` shows it (GX matches regular expressions against that for non-text columns).
    pub fn python_text(self, integer: bool) -> String {
        match self {
            Cell::Number(n) if integer => format!("{}", n as i64),
            Cell::Number(n) if n.is_infinite() => if n > 0.0 { "inf" } else { "-inf" }.to_string(),
            Cell::Number(n) if n.fract() == 0.0 && n.abs() < 1e16 => format!("{n:.1}"),
            Cell::Number(n) => format!("{n}"),
            Cell::Text(text) => text.to_string(),
            Cell::Bool(true) => "True".to_string(),
            Cell::Bool(false) => "False".to_string(),
        }
    }
}
