//! How a column's values are understood, from its Arrow type.

use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

/// The family of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Integers, floats and decimals, read as `f64`.
    Numeric,
    /// Strings and booleans, read as labels.
    Categorical,
    /// Dates, times and timestamps, read as numbers of microseconds since the epoch.
    Datetime,
    /// Nested, binary and other types that are counted but not analysed.
    Other,
}

impl ValueKind {
    /// The kind of values an Arrow type holds.
    pub fn of(data_type: &DataType) -> ValueKind {
        match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => ValueKind::Numeric,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => ValueKind::Categorical,
            DataType::Dictionary(_, value) => match ValueKind::of(value) {
                ValueKind::Categorical => ValueKind::Categorical,
                ValueKind::Numeric => ValueKind::Numeric,
                _ => ValueKind::Other,
            },
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_) => ValueKind::Datetime,
            _ => ValueKind::Other,
        }
    }

    /// A short name for messages and reports.
    pub fn label(self) -> &'static str {
        match self {
            ValueKind::Numeric => "numeric",
            ValueKind::Categorical => "categorical",
            ValueKind::Datetime => "datetime",
            ValueKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_arrow_types() {
        assert_eq!(ValueKind::of(&DataType::Int64), ValueKind::Numeric);
        assert_eq!(ValueKind::of(&DataType::Float32), ValueKind::Numeric);
        assert_eq!(ValueKind::of(&DataType::Utf8View), ValueKind::Categorical);
        assert_eq!(ValueKind::of(&DataType::Boolean), ValueKind::Categorical);
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(ValueKind::of(&dictionary), ValueKind::Categorical);
        assert_eq!(ValueKind::of(&DataType::Date32), ValueKind::Datetime);
        assert_eq!(ValueKind::of(&DataType::Binary), ValueKind::Other);
    }
}
