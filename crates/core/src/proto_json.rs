//! Proto3-JSON number encodings: doubles carry NaN and infinities as strings, int64 values may arrive as
//! numbers or strings. Used with `#[serde(with = ...)]` on wire and entity fields.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

/// Serialises an f64 as a JSON number, or as `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn serialize_double<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() && *value > 0.0 {
        serializer.serialize_str("Infinity")
    } else if value.is_infinite() {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

/// Parses the proto3-JSON spelling of a double.
pub fn parse_double_text(text: &str) -> Option<f64> {
    match text {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.trim().parse().ok(),
    }
}

struct DoubleVisitor;

impl Visitor<'_> for DoubleVisitor {
    type Value = f64;
    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a number or one of \"NaN\", \"Infinity\", \"-Infinity\"")
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
        Ok(value)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
        Ok(value as f64)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
        Ok(value as f64)
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<f64, E> {
        parse_double_text(value).ok_or_else(|| E::custom(format!("'{value}' is not a number")))
    }
}

/// Deserialises a double from a number or its proto3-JSON string spelling.
pub fn deserialize_double<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    deserializer.deserialize_any(DoubleVisitor)
}

struct Int64Visitor;

impl Visitor<'_> for Int64Visitor {
    type Value = i64;
    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an integer, as a number or a string")
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::custom(format!("{value} does not fit in int64")))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
        if value.fract() == 0.0 && value.abs() < 9.2e18 {
            Ok(value as i64)
        } else {
            Err(E::custom(format!("{value} is not an integer")))
        }
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
        value
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("'{value}' is not an integer")))
    }
}

/// Deserialises an int64 from a number or a decimal string.
pub fn deserialize_int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(Int64Visitor)
}

/// Deserialises an optional int64 from null, a number or a decimal string.
pub fn deserialize_optional_int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "deserialize_int64")] i64);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|wrapped| wrapped.0))
}

/// Deserialises an optional double from null, a number or its string spelling.
pub fn deserialize_optional_double<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "deserialize_double")] f64);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|wrapped| wrapped.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, Deserialize)]
    struct Sample {
        #[serde(serialize_with = "serialize_double", deserialize_with = "deserialize_double")]
        value: f64,
        #[serde(deserialize_with = "deserialize_int64")]
        step: i64,
    }

    #[test]
    fn doubles_and_int64_use_proto3_json_spellings() {
        let parsed: Sample = serde_json::from_str(r#"{"value":"NaN","step":"7"}"#).unwrap();
        assert!(parsed.value.is_nan());
        assert_eq!(parsed.step, 7);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"{"value":"NaN","step":7}"#);
        let infinite = Sample {
            value: f64::NEG_INFINITY,
            step: 1,
        };
        assert_eq!(
            serde_json::to_string(&infinite).unwrap(),
            r#"{"value":"-Infinity","step":1}"#
        );
        assert!(serde_json::from_str::<Sample>(r#"{"value":"abc","step":1}"#).is_err());
    }
}
