//! Event and entity times as nanoseconds since the Unix epoch in UTC, as pandas (and so Feast) holds them.
//! Naive times are taken as UTC. Text is parsed as RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff][+zz:zz]`.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Date64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, Int64Array};
use arrow_cast::CastOptions;
use arrow_schema::{DataType, TimeUnit};

/// Whether a column of this type holds times we read.
pub fn is_time(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)
}

/// Whether a column of this type can be read as times (times, dates or text).
pub fn readable_as_time(data_type: &DataType) -> bool {
    is_time(data_type) || matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The column as nanoseconds since the epoch (null stays null), or a message saying why it cannot be.
pub fn to_nanos(array: &ArrayRef) -> Result<Int64Array, String> {
    let scaled = |values: &Int64Array, scale: i64| -> Result<Int64Array, String> {
        let mut out = Vec::with_capacity(values.len());
        for value in values.iter() {
            out.push(match value {
                None => None,
                Some(v) => Some(v.checked_mul(scale).ok_or_else(|| {
                    format!(
                        "the time {v} (in units of 1/{} s) is outside 1677..2262, which nanoseconds can hold",
                        1_000_000_000 / scale
                    )
                })?),
            });
        }
        Ok(Int64Array::from(out))
    };
    match array.data_type() {
        DataType::Timestamp(unit, _) => {
            let raw = arrow_cast::cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
            let raw = raw.as_primitive::<arrow_array::types::Int64Type>();
            match unit {
                TimeUnit::Nanosecond => Ok(raw.clone()),
                TimeUnit::Microsecond => scaled(raw, 1_000),
                TimeUnit::Millisecond => scaled(raw, 1_000_000),
                TimeUnit::Second => scaled(raw, 1_000_000_000),
            }
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>();
            scaled(
                &Int64Array::from_iter(days.iter().map(|d| d.map(i64::from))),
                86_400_000_000_000,
            )
        }
        DataType::Date64 => {
            let millis = array.as_primitive::<Date64Type>();
            scaled(&Int64Array::from_iter(millis.iter()), 1_000_000)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let options = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            let parsed = arrow_cast::cast_with_options(
                array,
                &DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                &options,
            )
            .map_err(|e| format!("text that is not a time: {e}"))?;
            let parsed = parsed.as_primitive::<TimestampNanosecondType>();
            Ok(Int64Array::from_iter(parsed.iter()))
        }
        other => Err(format!(
            "its type {other} is not a time; store times as timestamps or RFC 3339 text"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{StringArray, TimestampMillisecondArray};

    use super::*;

    #[test]
    fn units_and_text_agree_on_the_same_instant() {
        let millis: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(1_714_557_600_000), None]));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("2024-05-01T10:00:00Z"), None]));
        let text_offset: ArrayRef = Arc::new(StringArray::from(vec![Some("2024-05-01 12:00:00+02:00"), None]));
        let expected = Int64Array::from(vec![Some(1_714_557_600_000_000_000), None]);
        assert_eq!(to_nanos(&millis).unwrap(), expected);
        assert_eq!(to_nanos(&text).unwrap(), expected);
        assert_eq!(to_nanos(&text_offset).unwrap(), expected);
    }

    #[test]
    fn times_nanoseconds_cannot_hold_and_text_that_is_no_time_are_refused() {
        let far: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(i64::MAX / 10)]));
        assert!(to_nanos(&far).unwrap_err().contains("outside"));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("yesterday")]));
        assert!(to_nanos(&text).unwrap_err().contains("not a time"));
    }
}
