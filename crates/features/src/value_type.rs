//! Feature and join-key types, named as Feast names them (`Int64`, `Float32`, `String`, `UnixTimestamp`...).

use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

/// The type of a feature or an entity's join key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueType {
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// Bytes.
    Bytes,
    /// true / false.
    Bool,
    /// A point in time.
    UnixTimestamp,
}

impl ValueType {
    /// Parses a type name, in any case, with or without underscores.
    pub fn parse(text: &str) -> Result<ValueType, String> {
        let normal: String = text
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match normal.as_str() {
            "int32" | "int" => ValueType::Int32,
            "int64" | "long" => ValueType::Int64,
            "float32" | "float" => ValueType::Float32,
            "float64" | "double" => ValueType::Float64,
            "string" | "str" => ValueType::String,
            "bytes" => ValueType::Bytes,
            "bool" | "boolean" => ValueType::Bool,
            "unixtimestamp" | "timestamp" => ValueType::UnixTimestamp,
            _ => {
                return Err(format!(
                    "unknown type {text:?}; use Int32, Int64, Float32, Float64, String, Bytes, Bool or UnixTimestamp"
                ));
            }
        })
    }

    /// Feast's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Int32 => "Int32",
            ValueType::Int64 => "Int64",
            ValueType::Float32 => "Float32",
            ValueType::Float64 => "Float64",
            ValueType::String => "String",
            ValueType::Bytes => "Bytes",
            ValueType::Bool => "Bool",
            ValueType::UnixTimestamp => "UnixTimestamp",
        }
    }

    /// The family of join keys of this type (`None`: not a key type).
    pub fn key_kind(self) -> Option<crate::keys::KeyKind> {
        use crate::keys::KeyKind;
        match self {
            ValueType::String => Some(KeyKind::Text),
            ValueType::Int32 | ValueType::Int64 => Some(KeyKind::Integer),
            ValueType::Bool => Some(KeyKind::Bool),
            ValueType::Bytes => Some(KeyKind::Bytes),
            _ => None,
        }
    }

    /// Whether a column of `data_type` can hold values of this type.
    pub fn accepts(self, data_type: &DataType) -> bool {
        use DataType as D;
        match self {
            ValueType::Int32 | ValueType::Int64 => data_type.is_integer(),
            ValueType::Float32 | ValueType::Float64 => data_type.is_floating() || data_type.is_integer(),
            ValueType::String => matches!(data_type, D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Dictionary(..)),
            ValueType::Bytes => matches!(
                data_type,
                D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_)
            ),
            ValueType::Bool => matches!(data_type, D::Boolean),
            ValueType::UnixTimestamp => matches!(data_type, D::Timestamp(..) | D::Date32 | D::Date64),
        }
    }
}
