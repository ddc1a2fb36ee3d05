//! Reads a few top-level fields of a JSON body without building the rest of it: every other value is
//! skipped as it is parsed (nothing allocated for it), so a large `log-batch` body costs one fast pass.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Every value each wanted field has at the top level (strings, or numbers as their text; empty strings are
/// left out), in the order `wanted` lists them. A key given twice yields both values, so a caller can refuse
/// a body whose duplicates disagree instead of checking one value while a handler acts on the other.
pub fn top_level_values(body: &[u8], wanted: &[&str]) -> Vec<Vec<String>> {
    let mut found = vec![Vec::new(); wanted.len()];
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = Fields {
        wanted,
        found: &mut found,
    }
    .deserialize(&mut deserializer);
    found
}

/// The first value of each wanted field (see `top_level_values`).
pub fn top_level_fields(body: &[u8], wanted: &[&str]) -> Vec<Option<String>> {
    top_level_values(body, wanted)
        .into_iter()
        .map(|values| values.into_iter().next())
        .collect()
}

/// Every non-empty value of any of `names` in a query string.
pub fn query_values(query: Option<&str>, names: &[&str]) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .take(1_000)
        .filter(|(key, value)| names.contains(&key.as_ref()) && !value.is_empty())
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// The first of `names` present in a query string.
pub fn query_field(query: Option<&str>, names: &[&str]) -> Option<String> {
    let values: Vec<(String, String)> = form_urlencoded::parse(query?.as_bytes())
        .take(1_000)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    names.iter().find_map(|name| {
        values
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.clone())
    })
}

/// The one value all of `values` agree on (`None` when there is none); `Err` with the values when they
/// disagree.
pub fn agreed(values: Vec<String>) -> Result<Option<String>, Vec<String>> {
    let mut distinct: Vec<String> = Vec::new();
    for value in values {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    match distinct.len() {
        0 => Ok(None),
        1 => Ok(distinct.pop()),
        _ => Err(distinct),
    }
}

struct Fields<'a> {
    wanted: &'a [&'a str],
    found: &'a mut Vec<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.wanted.iter().position(|name| *name == key) {
                Some(index) => {
                    let value: Scalar = map.next_value()?;
                    if let Some(value) = value.0.filter(|value| !value.is_empty()) {
                        self.found[index].push(value);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A string or a number as text; anything else as nothing.
struct Scalar(Option<String>);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string or a number")
            }
            fn visit_str<E>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wanted_fields_are_found_and_others_skipped() {
        let body = br#"{"metrics":[{"key":"a","value":1}],"run_id":"abc","experiment_id":7,"x":{"run_id":"inner"}}"#;
        assert_eq!(
            top_level_fields(body, &["run_id", "experiment_id", "name"]),
            vec![Some("abc".to_string()), Some("7".to_string()), None]
        );
        assert_eq!(top_level_fields(br#"{"run_id": ["a"]}"#, &["run_id"]), vec![None]);
        assert_eq!(top_level_fields(b"not json", &["run_id"]), vec![None]);
        assert_eq!(top_level_fields(br#"[{"run_id":"a"}]"#, &["run_id"]), vec![None]);
    }

    #[test]
    fn duplicated_keys_yield_every_value_and_disagreement_is_seen() {
        let body = br#"{"name":"prod","name":"mine","run_id":"","run_uuid":"r"}"#;
        let found = top_level_values(body, &["name", "run_id", "run_uuid"]);
        assert_eq!(
            found,
            vec![
                vec!["prod".to_string(), "mine".to_string()],
                vec![],
                vec!["r".to_string()]
            ]
        );
        assert!(agreed(found[0].clone()).is_err());
        assert_eq!(agreed(vec!["a".into(), "a".into()]), Ok(Some("a".to_string())));
        assert_eq!(agreed(Vec::new()), Ok(None));
        assert_eq!(query_values(Some("model=a&model=b&x=1"), &["model"]), vec!["a", "b"]);
    }

    #[test]
    fn the_first_name_present_in_a_query_wins() {
        assert_eq!(
            query_field(Some("run_uuid=b&x=1"), &["run_id", "run_uuid"]),
            Some("b".to_string())
        );
        assert_eq!(
            query_field(Some("run_id=a&run_uuid=b"), &["run_id", "run_uuid"]),
            Some("a".to_string())
        );
        assert_eq!(query_field(None, &["run_id"]), None);
    }

    proptest! {
        #[test]
        fn any_body_is_read_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = top_level_fields(&body, &["run_id", "name"]);
        }

        #[test]
        fn deeply_nested_bodies_are_refused_not_overflowed(depth in 100usize..5_000) {
            let body = format!("{{\"x\":{}{}, \"run_id\": \"r\"}}", "[".repeat(depth), "]".repeat(depth));
            let _ = top_level_fields(body.as_bytes(), &["run_id"]);
        }
    }
}
