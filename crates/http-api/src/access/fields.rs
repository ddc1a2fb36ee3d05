//! Reads a few top-level fields of a JSON body without building the rest of it: every other value is
//! skipped as it is parsed (nothing allocated for it), so a large `log-batch` body costs one fast pass.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// The values of the wanted fields (strings, or numbers as their text), in the order `wanted` lists them.
pub fn top_level_fields(body: &[u8], wanted: &[&str]) -> Vec<Option<String>> {
    let mut found = vec![None; wanted.len()];
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = Fields {
        wanted,
        found: &mut found,
    }
    .deserialize(&mut deserializer);
    found
}

/// The first of `names` present in a query string.
pub fn query_field(query: Option<&str>, names: &[&str]) -> Option<String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query?.as_bytes())
        .take(1_000)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    names.iter().find_map(|name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
}

struct Fields<'a> {
    wanted: &'a [&'a str],
    found: &'a mut Vec<Option<String>>,
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
                    if self.found[index].is_none() {
                        self.found[index] = value.0;
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
