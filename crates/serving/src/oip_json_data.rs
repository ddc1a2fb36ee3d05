//! An OIP v2 JSON tensor's `data`, read straight into the typed vector its datatype names. The request keeps
//! `data` as raw JSON text until the datatype is known; reading it into a `serde_json::Value` tree first cost
//! about 40 bytes per element (a 60 MB body of zeros grew the server by 1.5 GB), this costs the element's own
//! width. Nested arrays are flattened row-major, as the protocol allows.

use std::fmt;

use loopline_model_runtime_api::{DataType, TensorData};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

/// Reads `raw` (a JSON value: an array, possibly nested, or one scalar) as elements of `datatype`.
pub(crate) fn decode_data(name: &str, datatype: DataType, raw: &str, declared: usize) -> Result<TensorData, String> {
    let mut elements = Elements {
        datatype,
        data: empty_data(datatype),
        problem: None,
        declared,
    };
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    let parsed = FlattenInto(&mut elements).deserialize(&mut deserializer);
    if let Some(problem) = elements.problem {
        return Err(format!("input '{name}': {problem}"));
    }
    parsed.map_err(|error| format!("input '{name}': its data is not valid: {error}"))?;
    Ok(elements.data)
}

fn empty_data(datatype: DataType) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(Vec::new()),
        DataType::Fp32 => TensorData::F32(Vec::new()),
        DataType::Fp64 => TensorData::F64(Vec::new()),
        DataType::Bytes => TensorData::Bytes(Vec::new()),
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 | DataType::Uint64 => TensorData::UInt(Vec::new()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => TensorData::Int(Vec::new()),
    }
}

/// A JSON scalar as it arrived, for pushing and for messages.
#[derive(Debug, Clone)]
enum Scalar<'a> {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Text(&'a str),
    Null,
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(value) => write!(formatter, "{value}"),
            Scalar::Signed(value) => write!(formatter, "{value}"),
            Scalar::Unsigned(value) => write!(formatter, "{value}"),
            Scalar::Float(value) => write!(formatter, "{value}"),
            Scalar::Text(text) => {
                let shown: String = text.chars().take(40).collect();
                write!(formatter, "\"{shown}\"")
            }
            Scalar::Null => formatter.write_str("null"),
        }
    }
}

/// A float from a number, or from the names of non-finite values (`"NaN"`, `"Infinity"`, `"-Infinity"`, and
/// numpy's `"nan"`, `"inf"`, `"-inf"`).
fn float(scalar: &Scalar<'_>) -> Option<f64> {
    match scalar {
        Scalar::Signed(value) => Some(*value as f64),
        Scalar::Unsigned(value) => Some(*value as f64),
        Scalar::Float(value) => Some(*value),
        Scalar::Text(text) => crate::python_json::non_finite_word(text).or(match *text {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        }),
        Scalar::Bool(_) | Scalar::Null => None,
    }
}

struct Elements {
    datatype: DataType,
    data: TensorData,
    /// The first element that does not fit the datatype; decoding stops there.
    problem: Option<String>,
    /// The element count the shape declares: decoding stops past it instead of holding the surplus.
    declared: usize,
}

impl Elements {
    fn push(&mut self, scalar: Scalar<'_>) -> Result<(), String> {
        let index = self.data.len();
        if index >= self.declared {
            return Err(format!("it holds more values than its shape's {}", self.declared));
        }
        let refuse = |want: &str| format!("value {index} ({scalar}) is not {want}");
        match &mut self.data {
            TensorData::Bool(values) => match scalar {
                Scalar::Bool(value) => values.push(value),
                _ => return Err(refuse("a boolean")),
            },
            TensorData::F32(values) => values.push(float(&scalar).ok_or_else(|| refuse("a number"))? as f32),
            TensorData::F64(values) => values.push(float(&scalar).ok_or_else(|| refuse("a number"))?),
            TensorData::Bytes(values) => match scalar {
                Scalar::Text(text) => values.push(text.as_bytes().to_vec()),
                _ => return Err(refuse("a string")),
            },
            TensorData::UInt(values) => match scalar {
                Scalar::Unsigned(value) => values.push(value),
                Scalar::Signed(value) if value >= 0 => values.push(value as u64),
                _ => return Err(refuse("an unsigned integer")),
            },
            TensorData::Int(values) => match scalar {
                Scalar::Signed(value) => values.push(value),
                Scalar::Unsigned(value) => values.push(i64::try_from(value).map_err(|_| refuse("an integer"))?),
                _ => return Err(refuse("an integer")),
            },
        }
        Ok(())
    }

    fn accept<E: de::Error>(&mut self, scalar: Scalar<'_>) -> Result<(), E> {
        if self.problem.is_some() {
            return Ok(());
        }
        if let Err(problem) = self.push(scalar) {
            self.problem = Some(problem);
            return Err(E::custom("an element does not fit the datatype"));
        }
        Ok(())
    }
}

/// Visits one JSON value, pushing scalars and descending into arrays.
struct FlattenInto<'e>(&'e mut Elements);

impl<'de> DeserializeSeed<'de> for FlattenInto<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlattenInto<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} elements, in nested arrays", self.0.datatype.name())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.0.accept(Scalar::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.0.accept(Scalar::Signed(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.0.accept(Scalar::Unsigned(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.0.accept(Scalar::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.0.accept(Scalar::Text(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.accept(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<(), A::Error> {
        while sequence.next_element_seed(FlattenInto(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_arrays_flatten_into_the_datatype() {
        assert_eq!(
            decode_data("x", DataType::Fp32, "[[1, 2.5], [\"NaN\", -3]]", 4).map(|d| d.len()),
            Ok(4)
        );
        assert_eq!(
            decode_data("x", DataType::Int64, "[[1, -2], [3, 4]]", 4),
            Ok(TensorData::Int(vec![1, -2, 3, 4]))
        );
        assert_eq!(
            decode_data("x", DataType::Bool, "true", 1),
            Ok(TensorData::Bool(vec![true]))
        );
        assert_eq!(
            decode_data("s", DataType::Bytes, "[\"a\", [\"b\"]]", 2),
            Ok(TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()]))
        );
        let typed = decode_data("x", DataType::Int64, "[1, 1.5]", 2).unwrap_err();
        assert!(typed.contains("value 1 (1.5) is not an integer"), "{typed}");
        let unsigned = decode_data("x", DataType::Uint8, "[1, -1]", 2).unwrap_err();
        assert!(unsigned.contains("not an unsigned integer"), "{unsigned}");
        assert!(decode_data("x", DataType::Fp64, "{\"a\": 1}", 1).is_err());
        assert!(
            decode_data("x", DataType::Fp64, "[null]", 1)
                .unwrap_err()
                .contains("not a number")
        );
        let surplus = decode_data("x", DataType::Fp64, "[1, 2, 3]", 2).unwrap_err();
        assert!(surplus.contains("more values than its shape's 2"), "{surplus}");
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_data("x", DataType::Fp64, &deep, 1).is_err());
    }
}
