//! Reading a filter from JSON, bounded in depth and size, with errors that say where.

use super::{Bounds, Condition, FieldTest, Filter, FilterError, KeyPath, MAX_CONDITIONS, MAX_DEPTH, MatchValue};
use super::{datetime::parse_datetime, words};
use crate::point_id::{PointId, kind, shorten};
use serde_json::{Map, Value};

/// Counts what has been read so far across the whole filter.
#[derive(Default)]
pub(super) struct Parser {
    conditions: usize,
    texts: usize,
}

/// Most full-text conditions one filter may hold: each splits every candidate's text into words.
const MAX_TEXT_CONDITIONS: usize = 16;

fn error(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        message: message.into(),
    }
}

const FILTER_KEYS: [&str; 4] = ["must", "should", "must_not", "min_should"];

impl Parser {
    fn count(&mut self, path: &str, how_many: usize) -> Result<(), FilterError> {
        self.conditions += how_many;
        if self.conditions > MAX_CONDITIONS {
            return Err(error(
                path,
                format!("the filter holds more than {MAX_CONDITIONS} conditions and values"),
            ));
        }
        Ok(())
    }

    pub(super) fn filter(&mut self, value: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(error(path, format!("filters nest deeper than {MAX_DEPTH} levels")));
        }
        let object = value
            .as_object()
            .ok_or_else(|| error(path, format!("a filter is an object, not {}", kind(value))))?;
        if let Some(unknown) = object.keys().find(|key| !FILTER_KEYS.contains(&key.as_str())) {
            return Err(error(
                path,
                format!(
                    "unknown field '{}' (a filter has must, should, must_not, min_should)",
                    shorten(unknown)
                ),
            ));
        }
        let mut filter = Filter::default();
        for (name, clause) in [
            ("must", &mut filter.must),
            ("should", &mut filter.should),
            ("must_not", &mut filter.must_not),
        ] {
            if let Some(value) = object.get(name) {
                *clause = self.clause(value, &format!("{path}.{name}"), depth)?;
            }
        }
        if let Some(value) = object.get("min_should").filter(|value| !value.is_null()) {
            let at = format!("{path}.min_should");
            let inner = value
                .as_object()
                .ok_or_else(|| error(&at, "min_should is an object with conditions and min_count"))?;
            let conditions = match inner.get("conditions") {
                Some(value) => self.clause(value, &format!("{at}.conditions"), depth)?,
                None => return Err(error(&at, "missing field 'conditions'")),
            };
            let min_count = inner
                .get("min_count")
                .ok_or_else(|| error(&at, "missing field 'min_count'"))?
                .as_u64()
                .filter(|count| *count >= 1)
                .ok_or_else(|| error(&format!("{at}.min_count"), "min_count is an integer of 1 or more"))?;
            filter.min_should = Some((conditions, usize::try_from(min_count).unwrap_or(usize::MAX)));
        }
        Ok(filter)
    }

    /// One condition or a list of them (null: none).
    fn clause(&mut self, value: &Value, path: &str, depth: usize) -> Result<Vec<Condition>, FilterError> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| self.condition(item, &format!("{path}[{index}]"), depth))
                .collect(),
            single => Ok(vec![self.condition(single, path, depth)?]),
        }
    }

    fn condition(&mut self, value: &Value, path: &str, depth: usize) -> Result<Condition, FilterError> {
        self.count(path, 1)?;
        let object = value
            .as_object()
            .ok_or_else(|| error(path, format!("a condition is an object, not {}", kind(value))))?;
        if object.contains_key("key") {
            return self.field(value, object, path);
        }
        if let Some(ids) = object.get("has_id") {
            let at = format!("{path}.has_id");
            let items = ids
                .as_array()
                .ok_or_else(|| error(&at, "has_id is a list of point ids"))?;
            self.count(&at, items.len())?;
            let ids = items
                .iter()
                .enumerate()
                .map(|(index, id)| PointId::from_json(id).map_err(|message| error(&format!("{at}[{index}]"), message)))
                .collect::<Result<_, _>>()?;
            return Ok(Condition::HasId(ids));
        }
        if let Some(name) = object.get("has_vector") {
            let name = name
                .as_str()
                .ok_or_else(|| error(&format!("{path}.has_vector"), "has_vector is a vector name"))?;
            return Ok(Condition::HasVector(name.to_string()));
        }
        for (name, empty) in [("is_empty", true), ("is_null", false)] {
            if let Some(inner) = object.get(name) {
                let at = format!("{path}.{name}");
                let key = key_of(inner, &at)?;
                let test = if empty {
                    FieldTest::IsEmpty(true)
                } else {
                    FieldTest::IsNull(true)
                };
                return Ok(Condition::Field { key, test });
            }
        }
        if let Some(inner) = object.get("nested") {
            let at = format!("{path}.nested");
            let key = key_of(inner, &at)?.without_trailing_each();
            let filter = inner
                .get("filter")
                .ok_or_else(|| error(&at, "missing field 'filter'"))?;
            let filter = self.filter(filter, &format!("{at}.filter"), depth + 1)?;
            return Ok(Condition::Nested {
                key,
                filter: Box::new(filter),
            });
        }
        if FILTER_KEYS.iter().any(|key| object.contains_key(*key)) {
            return Ok(Condition::Filter(Box::new(self.filter(value, path, depth + 1)?)));
        }
        if object.keys().any(|key| key == "slice") {
            return Err(error(path, "slice conditions are not supported"));
        }
        Err(error(
            path,
            "not a known condition (a field condition with 'key', has_id, has_vector, is_empty, is_null, nested, or a filter)",
        ))
    }

    fn field(&mut self, value: &Value, object: &Map<String, Value>, path: &str) -> Result<Condition, FilterError> {
        let key = key_of(value, path)?;
        let present: Vec<&str> = [
            "match",
            "range",
            "values_count",
            "is_empty",
            "is_null",
            "geo_bounding_box",
            "geo_radius",
            "geo_polygon",
        ]
        .into_iter()
        .filter(|name| object.get(*name).is_some_and(|value| !value.is_null()))
        .collect();
        let [name] = present.as_slice() else {
            return Err(error(
                path,
                if present.is_empty() {
                    format!(
                        "the condition on '{}' has no test (match, range, values_count, is_empty or is_null)",
                        key.as_str()
                    )
                } else {
                    format!(
                        "the condition on '{}' has several tests ({}); use one condition each",
                        key.as_str(),
                        present.join(", ")
                    )
                },
            ));
        };
        let at = format!("{path}.{name}");
        let value = &object[*name];
        let test = match *name {
            "match" => self.match_test(value, &at)?,
            "range" => range(value, &at)?,
            "values_count" => FieldTest::ValuesCount(bounds(value, &at, |value| value.as_u64())?),
            "is_empty" => FieldTest::IsEmpty(value.as_bool().ok_or_else(|| error(&at, "is_empty is true or false"))?),
            "is_null" => FieldTest::IsNull(value.as_bool().ok_or_else(|| error(&at, "is_null is true or false"))?),
            _ => return Err(error(&at, "geo conditions are not supported")),
        };
        Ok(Condition::Field { key, test })
    }

    fn match_test(&mut self, value: &Value, path: &str) -> Result<FieldTest, FilterError> {
        let full_text = value.as_object().is_some_and(|map| {
            map.keys()
                .any(|key| matches!(key.as_str(), "text" | "text_any" | "phrase"))
        });
        if full_text {
            self.texts += 1;
            if self.texts > MAX_TEXT_CONDITIONS {
                return Err(error(
                    path,
                    format!("a filter holds at most {MAX_TEXT_CONDITIONS} text, text_any and phrase conditions"),
                ));
            }
        }
        let object = value
            .as_object()
            .ok_or_else(|| error(path, format!("match is an object, not {}", kind(value))))?;
        let [(name, inner)] = object.iter().collect::<Vec<_>>()[..] else {
            return Err(error(
                path,
                "match has exactly one of value, any, except, text, text_any, phrase, prefix",
            ));
        };
        let at = format!("{path}.{name}");
        let text = |inner: &Value| {
            inner
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| error(&at, format!("{name} is a string")))
        };
        Ok(match name.as_str() {
            "value" => FieldTest::Value(match_value(inner, &at)?),
            "any" | "except" => {
                let items = inner
                    .as_array()
                    .ok_or_else(|| error(&at, format!("{name} is a list of strings or of integers")))?;
                self.count(&at, items.len())?;
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| match_value(item, &format!("{at}[{index}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let strings = values
                    .iter()
                    .filter(|value| matches!(value, MatchValue::Keyword(_)))
                    .count();
                if values.iter().any(|value| matches!(value, MatchValue::Bool(_)))
                    || (strings != 0 && strings != values.len())
                {
                    return Err(error(
                        &at,
                        format!("{name} is a list of strings or a list of integers, not a mix"),
                    ));
                }
                if name == "any" {
                    FieldTest::Any(values.into_iter().collect())
                } else {
                    FieldTest::Except(values.into_iter().collect())
                }
            }
            "text" => FieldTest::Text(words(&text(inner)?).collect()),
            "text_any" => FieldTest::TextAny(words(&text(inner)?).collect()),
            "phrase" => FieldTest::Phrase(words(&text(inner)?).collect()),
            "prefix" => FieldTest::Prefix(text(inner)?),
            other => return Err(error(path, format!("unknown match '{}'", shorten(other)))),
        })
    }
}

fn key_of(value: &Value, path: &str) -> Result<KeyPath, FilterError> {
    let key = value
        .get("key")
        .ok_or_else(|| error(path, "missing field 'key'"))?
        .as_str()
        .ok_or_else(|| error(&format!("{path}.key"), "key is a string"))?;
    KeyPath::parse(key).map_err(|message| error(&format!("{path}.key"), message))
}

fn match_value(value: &Value, path: &str) -> Result<MatchValue, FilterError> {
    match value {
        Value::String(text) => Ok(MatchValue::Keyword(text.clone())),
        Value::Bool(flag) => Ok(MatchValue::Bool(*flag)),
        Value::Number(number) => number.as_i64().map(MatchValue::Integer).ok_or_else(|| {
            error(
                path,
                format!("{number} is not an integer; match takes strings, integers or booleans"),
            )
        }),
        other => Err(error(
            path,
            format!("match takes strings, integers or booleans, not {}", kind(other)),
        )),
    }
}

fn bounds<T>(value: &Value, path: &str, read: impl Fn(&Value) -> Option<T>) -> Result<Bounds<T>, FilterError> {
    let object = value
        .as_object()
        .ok_or_else(|| error(path, "bounds are an object of gt, gte, lt, lte"))?;
    if let Some(unknown) = object
        .keys()
        .find(|key| !["gt", "gte", "lt", "lte"].contains(&key.as_str()))
    {
        return Err(error(
            path,
            format!("unknown bound '{}' (gt, gte, lt, lte)", shorten(unknown)),
        ));
    }
    let bound = |name: &str| -> Result<Option<T>, FilterError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => read(value).map(Some).ok_or_else(|| {
                error(
                    &format!("{path}.{name}"),
                    format!("{} is not a valid bound here", shorten(&value.to_string())),
                )
            }),
        }
    };
    Ok(Bounds {
        gt: bound("gt")?,
        gte: bound("gte")?,
        lt: bound("lt")?,
        lte: bound("lte")?,
    })
}

/// A range over numbers, or over date-times when its bounds are strings.
fn range(value: &Value, path: &str) -> Result<FieldTest, FilterError> {
    let strings = value
        .as_object()
        .is_some_and(|object| object.values().any(Value::is_string));
    if strings {
        Ok(FieldTest::DatetimeRange(bounds(value, path, |value| {
            value.as_str().and_then(parse_datetime)
        })?))
    } else {
        Ok(FieldTest::Range(bounds(value, path, |value| {
            value.as_f64().filter(|number| number.is_finite())
        })?))
    }
}
