//! Whether a point passes a filter.

use super::path::Step;
use super::{Condition, FieldTest, Filter, MatchValue, datetime::parse_datetime, words};
use crate::point_id::PointId;
use serde_json::Value;

/// What a filter sees of a point.
pub trait PointView {
    /// Its id (`None` for the objects a nested condition looks at).
    fn id(&self) -> Option<PointId>;
    /// Its payload (an object, or null when it has none).
    fn payload(&self) -> &Value;
    /// Whether it has the named vector.
    fn has_vector(&self, name: &str) -> bool;
}

/// One object of an array that a nested condition looks at.
struct Element<'a>(&'a Value);

impl PointView for Element<'_> {
    fn id(&self) -> Option<PointId> {
        None
    }
    fn payload(&self) -> &Value {
        self.0
    }
    fn has_vector(&self, _name: &str) -> bool {
        false
    }
}

impl Filter {
    /// Whether the point passes.
    pub fn matches(&self, point: &impl PointView) -> bool {
        let mut scratch = Vec::new();
        self.check(point, &mut scratch)
    }

    fn check<'a>(&self, point: &'a impl PointView, scratch: &mut Vec<&'a Value>) -> bool {
        self.must.iter().all(|condition| condition.check(point, scratch))
            && !self.must_not.iter().any(|condition| condition.check(point, scratch))
            && (self.should.is_empty() || self.should.iter().any(|condition| condition.check(point, scratch)))
            && self.min_should.as_ref().is_none_or(|(conditions, min_count)| {
                let mut passed = 0;
                for condition in conditions {
                    if condition.check(point, scratch) {
                        passed += 1;
                        if passed >= *min_count {
                            return true;
                        }
                    }
                }
                false
            })
    }
}

impl Condition {
    fn check<'a>(&self, point: &'a impl PointView, scratch: &mut Vec<&'a Value>) -> bool {
        match self {
            Condition::HasId(ids) => point.id().is_some_and(|id| ids.contains(&id)),
            Condition::HasVector(name) => point.has_vector(name),
            Condition::Filter(filter) => filter.check(point, scratch),
            Condition::Nested { key, filter } => {
                key.values(point.payload(), false, scratch);
                let elements: Vec<&Value> = scratch
                    .iter()
                    .filter_map(|value| value.as_array())
                    .flatten()
                    .filter(|element| element.is_object())
                    .collect();
                elements.into_iter().any(|element| filter.matches(&Element(element)))
            }
            Condition::Field { key, test } => {
                let flat = !matches!(
                    test,
                    FieldTest::ValuesCount(_) | FieldTest::IsEmpty(_) | FieldTest::IsNull(_)
                );
                // A top-level key (the usual case) is looked up directly, without collecting values.
                if let [Step::Key(name)] = key.steps() {
                    return match point.payload().as_object().and_then(|map| map.get(name)) {
                        None => test.check(&[]),
                        Some(Value::Array(items)) if flat => items.iter().any(|item| test.check_one(item)),
                        Some(value) if flat => test.check_one(value),
                        Some(value) => test.check(&[value]),
                    };
                }
                key.values(point.payload(), flat, scratch);
                test.check(scratch)
            }
        }
    }
}

impl FieldTest {
    /// Whether the values a key reached pass (flattened for value tests, as they are for counts and emptiness).
    pub(crate) fn check(&self, values: &[&Value]) -> bool {
        match self {
            FieldTest::IsEmpty(expected) => values.iter().all(|value| is_empty(value)) == *expected,
            FieldTest::IsNull(expected) => values.iter().any(|value| is_null(value)) == *expected,
            FieldTest::ValuesCount(bounds) => {
                if values.iter().all(|value| value.is_null()) {
                    return bounds.contains(0);
                }
                values.iter().any(|value| {
                    let count = match value {
                        Value::Null => 0,
                        Value::Array(items) => items.len() as u64,
                        _ => 1,
                    };
                    bounds.contains(count)
                })
            }
            other => values.iter().any(|value| other.check_one(value)),
        }
    }

    /// Whether one (flattened) value passes a value test.
    pub(crate) fn check_one(&self, value: &Value) -> bool {
        match self {
            FieldTest::Value(expected) => equals(value, expected),
            FieldTest::Any(expected) => match_key(value).is_some_and(|key| expected.contains(&key)),
            FieldTest::Except(excluded) => {
                !value.is_null() && match_key(value).is_none_or(|key| !excluded.contains(&key))
            }
            FieldTest::Text(query) => value.as_str().is_some_and(|text| {
                let document: Vec<String> = words(text).collect();
                !query.is_empty() && query.iter().all(|word| document.contains(word))
            }),
            FieldTest::TextAny(query) => value.as_str().is_some_and(|text| {
                let document: Vec<String> = words(text).collect();
                query.iter().any(|word| document.contains(word))
            }),
            FieldTest::Phrase(phrase) => value.as_str().is_some_and(|text| {
                let document: Vec<String> = words(text).collect();
                !phrase.is_empty() && document.windows(phrase.len()).any(|window| window == phrase.as_slice())
            }),
            FieldTest::Prefix(prefix) => value.as_str().is_some_and(|text| text.starts_with(prefix.as_str())),
            FieldTest::Range(bounds) => match value {
                Value::Number(number) => number.as_f64().is_some_and(|number| bounds.contains(number)),
                _ => false,
            },
            FieldTest::DatetimeRange(bounds) => value
                .as_str()
                .and_then(parse_datetime)
                .is_some_and(|instant| bounds.contains(instant)),
            FieldTest::ValuesCount(_) | FieldTest::IsEmpty(_) | FieldTest::IsNull(_) => self.check(&[value]),
        }
    }
}

/// The match value a payload value equals, if any (what `any` and `except` look up in their sets).
fn match_key(value: &Value) -> Option<MatchValue> {
    match value {
        Value::String(text) => Some(MatchValue::Keyword(text.clone())),
        Value::Bool(flag) => Some(MatchValue::Bool(*flag)),
        Value::Number(number) if !number.is_f64() => number.as_i64().map(MatchValue::Integer),
        _ => None,
    }
}

/// Exact match: strings with strings, integers with integers (never floats), booleans with booleans.
fn equals(value: &Value, expected: &MatchValue) -> bool {
    match (value, expected) {
        (Value::String(text), MatchValue::Keyword(expected)) => text == expected,
        (Value::Bool(flag), MatchValue::Bool(expected)) => flag == expected,
        (Value::Number(number), MatchValue::Integer(expected)) => {
            !number.is_f64() && (number.as_i64() == Some(*expected))
        }
        _ => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn is_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(Value::is_null),
        _ => false,
    }
}
