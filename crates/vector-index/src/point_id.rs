//! Point ids as Qdrant spells them: an unsigned 64-bit integer or a UUID.

use serde_json::Value;
use std::fmt;

/// A point's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// An unsigned integer.
    Num(u64),
    /// A UUID, as its 128 bits.
    Uuid(u128),
}

impl PointId {
    /// Reads an id from JSON: a non-negative integer, or a UUID in any of its usual spellings (hyphenated,
    /// 32 hex digits, braced, `urn:uuid:`). Answers why not otherwise.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(number) => number
                .as_u64()
                .map(PointId::Num)
                .ok_or_else(|| format!("{number} is not a valid point id: ids are unsigned integers or UUIDs")),
            Value::String(text) => Self::parse_uuid(text).map(PointId::Uuid).ok_or_else(|| {
                format!(
                    "'{}' is not a valid point id: ids are unsigned integers or UUIDs",
                    shorten(text)
                )
            }),
            other => Err(format!(
                "{} is not a valid point id: ids are unsigned integers or UUIDs",
                kind(other)
            )),
        }
    }

    fn parse_uuid(text: &str) -> Option<u128> {
        // The spellings Qdrant's parser takes: 32 hex digits, hyphenated, hyphenated in braces, or hyphenated
        // after `urn:uuid:`; nothing around them.
        let hyphenated = |body: &str| -> Option<String> {
            let bytes = body.as_bytes();
            if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&at| bytes[at] != b'-') {
                return None;
            }
            Some(body.chars().filter(|character| *character != '-').collect())
        };
        let digits = if let Some(rest) = text.strip_prefix("urn:uuid:") {
            hyphenated(rest)?
        } else if let Some(rest) = text.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
            hyphenated(rest)?
        } else if text.len() == 32 {
            text.to_string()
        } else {
            hyphenated(text)?
        };
        if digits.len() != 32 || !digits.chars().all(|character| character.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(&digits, 16).ok()
    }

    /// The id as JSON: a number, or the UUID hyphenated in lower case.
    pub fn to_json(self) -> Value {
        match self {
            PointId::Num(number) => Value::from(number),
            PointId::Uuid(_) => Value::String(self.to_string()),
        }
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(number) => write!(formatter, "{number}"),
            PointId::Uuid(bits) => {
                let hex = format!("{bits:032x}");
                write!(
                    formatter,
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
        }
    }
}

/// A short quotation of a caller's text for an error message.
pub(crate) fn shorten(text: &str) -> String {
    if text.chars().count() <= 64 {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(64).collect::<String>())
    }
}

/// What kind of JSON value this is, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn ids_in_every_spelling() {
        assert_eq!(PointId::from_json(&json!(7)), Ok(PointId::Num(7)));
        let canonical = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
        let id = PointId::from_json(&json!(canonical)).unwrap();
        for spelling in [
            "5C56C793-69F3-4FBF-87E6-C4BF54C28C26",
            "5c56c79369f34fbf87e6c4bf54c28c26",
            "{5c56c793-69f3-4fbf-87e6-c4bf54c28c26}",
            "urn:uuid:5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
        ] {
            assert_eq!(PointId::from_json(&json!(spelling)), Ok(id), "{spelling}");
        }
        assert_eq!(id.to_json(), json!(canonical));
        for bad in [
            json!(-1),
            json!(1.5),
            json!("abc"),
            json!(null),
            json!([1]),
            json!("5c56c793+69f3-4fbf-87e6-c4bf54c28c26"),
        ] {
            assert!(PointId::from_json(&bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_an_id_or_a_clear_refusal(text in ".{0,80}") {
            if let Ok(PointId::Uuid(bits)) = PointId::from_json(&json!(text)) {
                let again = PointId::from_json(&PointId::Uuid(bits).to_json()).unwrap();
                prop_assert_eq!(again, PointId::Uuid(bits));
            }
        }
    }
}
