//! The filter grammar: what passes, and how a bad filter is refused.

use loopline_vector_index::filter::PointView;
use loopline_vector_index::{Filter, PointId};
use proptest::prelude::*;
use serde_json::{Value, json};

struct Point {
    id: u64,
    payload: Value,
}

impl PointView for Point {
    fn id(&self) -> Option<PointId> {
        Some(PointId::Num(self.id))
    }
    fn payload(&self) -> &Value {
        &self.payload
    }
    fn has_vector(&self, name: &str) -> bool {
        name == "text"
    }
}

fn passes(filter: Value, payload: Value) -> bool {
    Filter::from_json(&filter, "filter")
        .unwrap()
        .matches(&Point { id: 7, payload })
}

#[test]
fn field_conditions_match_as_qdrant_does() {
    let payload = json!({
        "city": "London", "count": 5, "price": 9.5, "tags": ["a", "b"], "flag": true,
        "nothing": null, "empty": [], "with_null": [1, null], "when": "2024-03-01T12:00:00Z",
        "title": "The Quick brown fox", "items": [{"k": 1, "v": "x"}, {"k": 2, "v": "y"}]
    });
    let cases = [
        (json!({"must": [{"key": "city", "match": {"value": "London"}}]}), true),
        (json!({"must": [{"key": "city", "match": {"value": "london"}}]}), false),
        (json!({"must": {"key": "count", "match": {"value": 5}}}), true),
        (json!({"must": [{"key": "price", "match": {"value": 9}}]}), false),
        (json!({"must": [{"key": "flag", "match": {"value": true}}]}), true),
        (json!({"must": [{"key": "count", "match": {"value": true}}]}), false),
        (json!({"must": [{"key": "tags", "match": {"value": "b"}}]}), true),
        (json!({"must": [{"key": "tags", "match": {"any": ["z", "a"]}}]}), true),
        (json!({"must": [{"key": "tags", "match": {"except": ["a"]}}]}), true),
        (
            json!({"must": [{"key": "tags", "match": {"except": ["a", "b"]}}]}),
            false,
        ),
        (json!({"must": [{"key": "nothing", "match": {"except": ["a"]}}]}), false),
        (json!({"must": [{"key": "missing", "match": {"except": ["a"]}}]}), false),
        (json!({"must": [{"key": "count", "range": {"gte": 5, "lt": 6}}]}), true),
        (json!({"must": [{"key": "count", "range": {"gt": 5}}]}), false),
        (json!({"must": [{"key": "flag", "range": {"gte": 0}}]}), false),
        (
            json!({"must": [{"key": "when", "range": {"gte": "2024-03-01", "lt": "2024-03-02T00:00:00+00:00"}}]}),
            true,
        ),
        (
            json!({"must": [{"key": "when", "range": {"gt": "2024-03-01T13:00:00+02:00"}}]}),
            true,
        ),
        (
            json!({"must": [{"key": "when", "range": {"gt": "2024-03-01T12:00:00Z"}}]}),
            false,
        ),
        (
            json!({"must": [{"key": "title", "match": {"text": "quick FOX"}}]}),
            true,
        ),
        (
            json!({"must": [{"key": "title", "match": {"text": "quick cat"}}]}),
            false,
        ),
        (
            json!({"must": [{"key": "title", "match": {"text_any": "cat fox"}}]}),
            true,
        ),
        (
            json!({"must": [{"key": "title", "match": {"phrase": "quick brown"}}]}),
            true,
        ),
        (
            json!({"must": [{"key": "title", "match": {"phrase": "brown quick"}}]}),
            false,
        ),
        (json!({"must": [{"key": "title", "match": {"prefix": "The Q"}}]}), true),
        (json!({"must": [{"key": "title", "match": {"prefix": "the"}}]}), false),
        (
            json!({"must": [{"key": "tags", "values_count": {"gte": 2, "lte": 2}}]}),
            true,
        ),
        (json!({"must": [{"key": "missing", "values_count": {"lt": 1}}]}), true),
        (json!({"must": [{"key": "empty", "is_empty": true}]}), true),
        (json!({"must": [{"is_empty": {"key": "missing"}}]}), true),
        (json!({"must": [{"is_empty": {"key": "tags"}}]}), false),
        (json!({"must": [{"is_null": {"key": "nothing"}}]}), true),
        (json!({"must": [{"is_null": {"key": "with_null"}}]}), true),
        (json!({"must": [{"is_null": {"key": "missing"}}]}), false),
        (json!({"must": [{"has_id": [1, 7]}]}), true),
        (
            json!({"must": [{"has_id": ["5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]}]}),
            false,
        ),
        (json!({"must": [{"has_vector": "text"}]}), true),
        (json!({"must": [{"has_vector": "image"}]}), false),
        (
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "k", "match": {"value": 2}}, {"key": "v", "match": {"value": "y"}}]}}}]}),
            true,
        ),
        // Both conditions on one element, not across elements.
        (
            json!({"must": [{"nested": {"key": "items[]", "filter": {"must": [
            {"key": "k", "match": {"value": 1}}, {"key": "v", "match": {"value": "y"}}]}}}]}),
            false,
        ),
        (
            json!({"must": [{"key": "items[].k", "match": {"value": 1}}, {"key": "items[].v", "match": {"value": "y"}}]}),
            true,
        ),
        (json!({"should": []}), true),
        (
            json!({"should": [{"key": "city", "match": {"value": "Paris"}}, {"key": "count", "match": {"value": 5}}]}),
            true,
        ),
        (
            json!({"must_not": [{"key": "city", "match": {"value": "London"}}]}),
            false,
        ),
        (
            json!({"min_should": {"conditions": [
            {"key": "city", "match": {"value": "London"}}, {"key": "count", "match": {"value": 4}},
            {"key": "flag", "match": {"value": true}}], "min_count": 2}}),
            true,
        ),
        (
            json!({"min_should": {"conditions": [
            {"key": "city", "match": {"value": "London"}}, {"key": "count", "match": {"value": 4}}], "min_count": 2}}),
            false,
        ),
        (
            json!({"must": [{"should": [{"key": "city", "match": {"value": "Paris"}}]}]}),
            false,
        ),
        (json!({"must": null, "should": null}), true),
    ];
    for (filter, expected) in cases {
        assert_eq!(passes(filter.clone(), payload.clone()), expected, "{filter}");
    }
}

#[test]
fn bad_filters_are_refused_naming_where() {
    let cases = [
        (json!([]), "filter", "a filter is an object"),
        (json!({"must": [{"key": "a"}]}), "filter.must[0]", "has no test"),
        (
            json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
            "filter.must[0].match.value",
            "not an integer",
        ),
        (
            json!({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}),
            "filter.must[0].match.any",
            "not a mix",
        ),
        (
            json!({"must": [{"key": "a", "match": {"value": 1, "any": [1]}}]}),
            "filter.must[0].match",
            "exactly one",
        ),
        (
            json!({"must": [{"key": "a", "range": {"gte": "yesterday"}}]}),
            "filter.must[0].range.gte",
            "not a valid bound",
        ),
        (
            json!({"must": [{"key": "a", "range": {"over": 1}}]}),
            "filter.must[0].range",
            "unknown bound",
        ),
        (
            json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
            "filter.must[0].key",
            "empty key",
        ),
        (
            json!({"must": [{"key": 5, "match": {"value": 1}}]}),
            "filter.must[0].key",
            "key is a string",
        ),
        (
            json!({"should": [{"has_id": [-1]}]}),
            "filter.should[0].has_id[0]",
            "not a valid point id",
        ),
        (
            json!({"must": [{"key": "a", "geo_radius": {}}]}),
            "filter.must[0].geo_radius",
            "geo conditions",
        ),
        (
            json!({"must": [{"whatever": 1}]}),
            "filter.must[0]",
            "not a known condition",
        ),
        (json!({"musts": []}), "filter", "unknown field 'musts'"),
        (
            json!({"min_should": {"conditions": [], "min_count": 0}}),
            "filter.min_should.min_count",
            "1 or more",
        ),
        (
            json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}),
            "filter.must[0]",
            "several tests",
        ),
    ];
    for (filter, path, words) in cases {
        let error = Filter::from_json(&filter, "filter").unwrap_err();
        assert_eq!(error.path, path, "{filter}: {error}");
        assert!(error.message.contains(words), "{filter}: {error}");
    }
}

#[test]
fn depth_and_size_are_bounded() {
    let mut deep = json!({"must": [{"key": "a", "match": {"value": 1}}]});
    for _ in 0..40 {
        deep = json!({"must": [deep]});
    }
    let error = Filter::from_json(&deep, "filter").unwrap_err();
    assert!(error.message.contains("nest deeper"), "{error}");
    let wide = json!({"must": [{"key": "a", "match": {"any": (0..20_000).collect::<Vec<i64>>()}}]});
    let error = Filter::from_json(&wide, "filter").unwrap_err();
    assert!(error.message.contains("more than 10000"), "{error}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("key".to_string()),
            Just("must".to_string()),
            Just("match".to_string()),
            ".{0,8}".prop_map(String::from)
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("must".to_string()),
                    Just("should".to_string()),
                    Just("must_not".to_string()),
                    Just("key".to_string()),
                    Just("match".to_string()),
                    Just("value".to_string()),
                    Just("any".to_string()),
                    Just("range".to_string()),
                    Just("gt".to_string()),
                    Just("nested".to_string()),
                    Just("filter".to_string()),
                    Just("has_id".to_string()),
                    Just("min_should".to_string()),
                    Just("conditions".to_string()),
                    Just("min_count".to_string()),
                    Just("values_count".to_string()),
                    Just("is_empty".to_string()),
                    ".{0,6}".prop_map(String::from)
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_json_is_a_filter_or_a_refusal_and_never_a_panic(filter in json_value(), payload in json_value()) {
        if let Ok(filter) = Filter::from_json(&filter, "filter") {
            let _ = filter.matches(&Point { id: 1, payload });
        }
    }
}
