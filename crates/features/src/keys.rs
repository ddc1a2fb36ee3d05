//! Join keys encoded as bytes, so one or several key columns of any supported type compare, hash and sort as
//! one value. Integers of every width encode alike (an `int32` entity frame joins an `int64` source); text and
//! bytes are length-prefixed; a row with a null in any key column has no key and matches nothing.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BinaryArray, builder::BinaryBuilder};
use arrow_schema::DataType;

/// The families of key types that can join each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Any integer width, signed or not.
    Integer,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Bytes,
    /// true / false.
    Bool,
}

impl KeyKind {
    /// The family of a column type, or `None` when it cannot be a join key.
    pub fn of(data_type: &DataType) -> Option<KeyKind> {
        match data_type {
            t if t.is_integer() => Some(KeyKind::Integer),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(KeyKind::Text),
            DataType::Dictionary(_, value) => KeyKind::of(value).filter(|k| *k == KeyKind::Text),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Some(KeyKind::Bytes),
            DataType::Boolean => Some(KeyKind::Bool),
            _ => None,
        }
    }

    /// How messages name it.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Integer => "integer",
            KeyKind::Text => "text",
            KeyKind::Bytes => "bytes",
            KeyKind::Bool => "a boolean",
        }
    }
}

/// Encodes the key columns of a batch, row by row; `columns` may be empty (a view without entities), which
/// gives every row the same empty key.
pub fn encode(columns: &[ArrayRef], rows: usize) -> Result<BinaryArray, String> {
    let mut normal = Vec::with_capacity(columns.len());
    for column in columns {
        let kind = KeyKind::of(column.data_type())
            .ok_or_else(|| format!("a key of type {} cannot be joined on", column.data_type()))?;
        let target = match kind {
            KeyKind::Integer => DataType::Int64,
            KeyKind::Text => DataType::Utf8,
            KeyKind::Bytes => DataType::Binary,
            KeyKind::Bool => DataType::Boolean,
        };
        let cast = if column.data_type() == &target {
            column.clone()
        } else {
            // Unsigned values beyond i64's range become errors rather than wrapping.
            let options = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow_cast::cast_with_options(column, &target, &options).map_err(|e| e.to_string())?
        };
        normal.push((kind, cast));
    }
    let mut builder = BinaryBuilder::with_capacity(rows, rows * 9 * columns.len().max(1));
    let mut buffer = Vec::with_capacity(64);
    for row in 0..rows {
        buffer.clear();
        let mut null = false;
        for (kind, column) in &normal {
            if column.is_null(row) {
                null = true;
                break;
            }
            match kind {
                KeyKind::Integer => {
                    let value = column.as_primitive::<Int64Type>().value(row);
                    buffer.push(1);
                    buffer.extend_from_slice(&((value as u64) ^ (1 << 63)).to_be_bytes());
                }
                KeyKind::Text => {
                    let value = column.as_string::<i32>().value(row).as_bytes();
                    buffer.push(2);
                    buffer.extend_from_slice(&(value.len() as u32).to_be_bytes());
                    buffer.extend_from_slice(value);
                }
                KeyKind::Bytes => {
                    let value = column.as_binary::<i32>().value(row);
                    buffer.push(3);
                    buffer.extend_from_slice(&(value.len() as u32).to_be_bytes());
                    buffer.extend_from_slice(value);
                }
                KeyKind::Bool => {
                    buffer.push(4);
                    buffer.push(column.as_boolean().value(row) as u8);
                }
            }
        }
        if null {
            builder.append_null();
        } else {
            builder.append_value(&buffer);
        }
    }
    Ok(builder.finish())
}

/// Which of `partitions` a key belongs to (the same in every pass of one process).
pub fn partition_of(key: &[u8], partitions: usize) -> usize {
    if partitions <= 1 {
        return 0;
    }
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::with_seed(0x6c6f_6f70_6c69_6e65).hash_one(key);
    (hash % partitions as u64) as usize
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn integer_widths_encode_alike_and_nulls_have_no_key() {
        let narrow: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None, Some(-1)]));
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), Some(3), Some(-1)]));
        let a = encode(&[narrow], 3).unwrap();
        let b = encode(&[wide], 3).unwrap();
        assert_eq!(a.value(0), b.value(0));
        assert!(a.is_null(1) && !b.is_null(1));
        assert_eq!(a.value(2), b.value(2));
    }

    #[test]
    fn composite_keys_do_not_run_into_each_other() {
        let first: ArrayRef = Arc::new(StringArray::from(vec!["ab", "a"]));
        let second: ArrayRef = Arc::new(StringArray::from(vec!["c", "bc"]));
        let keys = encode(&[first, second], 2).unwrap();
        assert_ne!(keys.value(0), keys.value(1));
    }
}
