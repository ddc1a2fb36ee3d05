//! Feature values as the online store keeps them: one row per entity and view (its event time, created time
//! and values), in a small binary form, and as Feast's online API writes them in JSON.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use base64::Engine;
use serde_json::Value;

/// One feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    /// No value.
    Null,
    /// An integer.
    Int(i64),
    /// A 32-bit float (Feast writes its widened double).
    Float32(f32),
    /// A 64-bit float.
    Float64(f64),
    /// Text.
    Text(String),
    /// Bytes (base64 in JSON).
    Bytes(Vec<u8>),
    /// true / false.
    Bool(bool),
    /// A time, microseconds since the epoch (whole seconds in JSON, as Feast's `unix_timestamp_val`).
    Time(i64),
}

impl FeatureValue {
    /// Feast's JSON for the value: natives, base64 bytes, non-finite floats as strings.
    pub fn to_json(&self) -> Value {
        let float = |f: f64| {
            if f.is_finite() {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            } else if f.is_nan() {
                Value::from("NaN")
            } else if f > 0.0 {
                Value::from("Infinity")
            } else {
                Value::from("-Infinity")
            }
        };
        match self {
            FeatureValue::Null => Value::Null,
            FeatureValue::Int(v) => Value::from(*v),
            FeatureValue::Float32(v) => float(f64::from(*v)),
            FeatureValue::Float64(v) => float(*v),
            FeatureValue::Text(v) => Value::from(v.as_str()),
            FeatureValue::Bytes(v) => Value::from(base64::engine::general_purpose::STANDARD.encode(v)),
            FeatureValue::Bool(v) => Value::from(*v),
            FeatureValue::Time(micros) => Value::from(micros.div_euclid(1_000_000)),
        }
    }

    /// The value at `row` of a column of one of the output types.
    pub fn from_array(array: &ArrayRef, row: usize) -> FeatureValue {
        if array.is_null(row) {
            return FeatureValue::Null;
        }
        match array.data_type() {
            DataType::Int8 => FeatureValue::Int(array.as_primitive::<Int8Type>().value(row).into()),
            DataType::Int16 => FeatureValue::Int(array.as_primitive::<Int16Type>().value(row).into()),
            DataType::Int32 => FeatureValue::Int(array.as_primitive::<Int32Type>().value(row).into()),
            DataType::Int64 => FeatureValue::Int(array.as_primitive::<Int64Type>().value(row)),
            DataType::UInt8 => FeatureValue::Int(array.as_primitive::<UInt8Type>().value(row).into()),
            DataType::UInt16 => FeatureValue::Int(array.as_primitive::<UInt16Type>().value(row).into()),
            DataType::UInt32 => FeatureValue::Int(array.as_primitive::<UInt32Type>().value(row).into()),
            DataType::UInt64 => FeatureValue::Int(array.as_primitive::<UInt64Type>().value(row) as i64),
            DataType::Float32 => FeatureValue::Float32(array.as_primitive::<Float32Type>().value(row)),
            DataType::Float64 => FeatureValue::Float64(array.as_primitive::<Float64Type>().value(row)),
            DataType::Utf8 => FeatureValue::Text(array.as_string::<i32>().value(row).to_string()),
            DataType::LargeUtf8 => FeatureValue::Text(array.as_string::<i64>().value(row).to_string()),
            DataType::Binary => FeatureValue::Bytes(array.as_binary::<i32>().value(row).to_vec()),
            DataType::LargeBinary => FeatureValue::Bytes(array.as_binary::<i64>().value(row).to_vec()),
            DataType::Boolean => FeatureValue::Bool(array.as_boolean().value(row)),
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
                FeatureValue::Time(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            _ => FeatureValue::Null,
        }
    }
}

/// One entity's values of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineRow {
    /// Event time, nanoseconds since the epoch.
    pub event_time: i64,
    /// Created time, nanoseconds since the epoch.
    pub created_time: Option<i64>,
    /// The view's values, in the view's feature order.
    pub values: Vec<FeatureValue>,
}

/// The first byte of an encoded row.
const FORMAT: u8 = 1;

impl OnlineRow {
    /// The order rows replace each other in: a later event time, then a later created time (none is earliest).
    pub fn order(&self) -> (i64, Option<i64>) {
        (self.event_time, self.created_time)
    }

    /// The order as text that sorts as the numbers do (for stores that compare strings).
    pub fn order_text(&self) -> String {
        let shift = |v: i64| (v as u64) ^ (1 << 63);
        format!(
            "{:020}{}{:020}",
            shift(self.event_time),
            if self.created_time.is_some() { 1 } else { 0 },
            shift(self.created_time.unwrap_or(0))
        )
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.values.len() * 10);
        out.push(FORMAT);
        out.extend_from_slice(&self.event_time.to_le_bytes());
        match self.created_time {
            Some(created) => {
                out.push(1);
                out.extend_from_slice(&created.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.values.len() as u32).to_le_bytes());
        for value in &self.values {
            match value {
                FeatureValue::Null => out.push(0),
                FeatureValue::Int(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                FeatureValue::Float32(v) => {
                    out.push(2);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                FeatureValue::Float64(v) => {
                    out.push(3);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                FeatureValue::Text(v) => {
                    out.push(4);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v.as_bytes());
                }
                FeatureValue::Bytes(v) => {
                    out.push(5);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                FeatureValue::Bool(v) => {
                    out.push(6);
                    out.push(*v as u8);
                }
                FeatureValue::Time(v) => {
                    out.push(7);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads the binary form; `None` for bytes that are not one (a damaged or foreign value is not a row).
    pub fn decode(bytes: &[u8]) -> Option<OnlineRow> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(1)?[0] != FORMAT {
            return None;
        }
        let event_time = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let created_time = match reader.take(1)?[0] {
            0 => None,
            1 => Some(i64::from_le_bytes(reader.take(8)?.try_into().ok()?)),
            _ => return None,
        };
        let count = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
        // Each value takes at least one byte: a count larger than what is left is a lie.
        if count > bytes.len() {
            return None;
        }
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let value = match reader.take(1)?[0] {
                0 => FeatureValue::Null,
                1 => FeatureValue::Int(i64::from_le_bytes(reader.take(8)?.try_into().ok()?)),
                2 => FeatureValue::Float32(f32::from_le_bytes(reader.take(4)?.try_into().ok()?)),
                3 => FeatureValue::Float64(f64::from_le_bytes(reader.take(8)?.try_into().ok()?)),
                4 => {
                    let length = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
                    FeatureValue::Text(String::from_utf8(reader.take(length)?.to_vec()).ok()?)
                }
                5 => {
                    let length = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
                    FeatureValue::Bytes(reader.take(length)?.to_vec())
                }
                6 => FeatureValue::Bool(reader.take(1)?[0] != 0),
                7 => FeatureValue::Time(i64::from_le_bytes(reader.take(8)?.try_into().ok()?)),
                _ => return None,
            };
            values.push(value);
        }
        if reader.at != bytes.len() {
            return None;
        }
        Some(OnlineRow {
            event_time,
            created_time,
            values,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = FeatureValue> {
        prop_oneof![
            Just(FeatureValue::Null),
            any::<i64>().prop_map(FeatureValue::Int),
            any::<f32>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(FeatureValue::Float32),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(FeatureValue::Float64),
            ".{0,20}".prop_map(FeatureValue::Text),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(FeatureValue::Bytes),
            any::<bool>().prop_map(FeatureValue::Bool),
            any::<i64>().prop_map(FeatureValue::Time),
        ]
    }

    proptest! {
        #[test]
        fn rows_survive_encoding(event in any::<i64>(), created in any::<Option<i64>>(),
                                 values in proptest::collection::vec(value(), 0..12)) {
            let row = OnlineRow { event_time: event, created_time: created, values };
            prop_assert_eq!(OnlineRow::decode(&row.encode()), Some(row));
        }

        #[test]
        fn any_bytes_decode_to_a_row_or_nothing_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OnlineRow::decode(&bytes);
        }

        #[test]
        fn order_text_sorts_as_the_order(a in any::<i64>(), b in any::<i64>(), ca in any::<Option<i64>>(), cb in any::<Option<i64>>()) {
            let row = |event, created| OnlineRow { event_time: event, created_time: created, values: vec![] };
            let (x, y) = (row(a, ca), row(b, cb));
            prop_assert_eq!(x.order().cmp(&y.order()), x.order_text().cmp(&y.order_text()));
        }
    }
}
