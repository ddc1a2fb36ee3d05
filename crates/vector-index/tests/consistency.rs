//! Writes, deletes and searches in any order agree with a plain model of the points.

use loopline_vector_index::{Distance, Filter, HnswParams, Point, PointId, Query, Segment, VectorParams};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Step {
    Upsert(Vec<(u64, Vec<f32>, i64)>),
    Delete(Vec<u64>),
    Compact,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => proptest::collection::vec((0u64..40, proptest::collection::vec(-1f32..1.0, 4), 0i64..3), 1..12).prop_map(Step::Upsert),
        2 => proptest::collection::vec(0u64..40, 1..6).prop_map(Step::Delete),
        1 => Just(Step::Compact),
    ]
}

fn params(full_scan_threshold_kb: usize) -> BTreeMap<String, VectorParams> {
    BTreeMap::from([(
        String::new(),
        VectorParams {
            size: 4,
            distance: Distance::Euclid,
            hnsw: HnswParams {
                m: 4,
                ef_construction: 16,
            },
            full_scan_threshold_kb,
            int8: false,
            on_disk: false,
        },
    )])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_segment_agrees_with_a_model(steps in proptest::collection::vec(step(), 1..20), query in proptest::collection::vec(-1f32..1.0, 4)) {
        let mut segment = Segment::new(params(0), 2);
        let mut model: BTreeMap<u64, (Vec<f32>, i64)> = BTreeMap::new();
        for (version, step) in steps.into_iter().enumerate() {
            match step {
                Step::Upsert(points) => {
                    let batch = points.iter().map(|(id, vector, group)| Point {
                        id: PointId::Num(*id),
                        vectors: BTreeMap::from([(String::new(), vector.clone())]),
                        payload: json!({"group": group}),
                    }).collect();
                    segment.upsert(batch, version as u64, "points").unwrap();
                    for (id, vector, group) in points {
                        model.insert(id, (vector, group));
                    }
                }
                Step::Delete(ids) => {
                    let existed = ids.iter().collect::<std::collections::BTreeSet<_>>().iter().filter(|id| model.contains_key(id)).count();
                    let ids: Vec<PointId> = ids.iter().map(|id| PointId::Num(*id)).collect();
                    prop_assert_eq!(segment.delete(&ids), existed);
                    for id in ids {
                        if let PointId::Num(id) = id { model.remove(&id); }
                    }
                }
                Step::Compact => segment = segment.compacted().unwrap(),
            }
        }
        prop_assert_eq!(segment.len(), model.len());
        let filter = Filter::from_json(&json!({"must_not": [{"key": "group", "match": {"value": 1}}]}), "filter").unwrap();
        let mut expected: Vec<(f32, u64)> = model
            .iter()
            .filter(|(_, (_, group))| *group != 1)
            .map(|(id, (vector, _))| (vector.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), *id))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for exact in [true, false] {
            let found = segment.search(&Query {
                using: "", vector: &query, limit: 5, offset: 0, filter: Some(&filter),
                ef: Some(200), exact, score_threshold: None, use_int8: false,
 rescore: loopline_vector_index::Rescore::All,
            }).unwrap();
            prop_assert_eq!(found.len(), expected.len().min(5));
            for (hit, (distance, _)) in found.iter().zip(&expected) {
                prop_assert!((hit.score - distance.sqrt()).abs() < 1e-4, "{} vs {}", hit.score, distance.sqrt());
            }
            let mut ids: Vec<PointId> = found.iter().map(|hit| hit.id).collect();
            ids.dedup();
            prop_assert_eq!(ids.len(), found.len());
        }
        // Scrolling visits every live point once, in id order.
        let mut seen = Vec::new();
        let mut from = None;
        loop {
            let (page, next) = segment.scroll(from, 3, None);
            seen.extend(page.iter().map(|&node| segment.record(node, false).id));
            match next { Some(next) => from = Some(next), None => break }
        }
        let live: Vec<PointId> = model.keys().map(|id| PointId::Num(*id)).collect();
        prop_assert_eq!(seen, live);
    }
}

#[test]
fn a_refused_batch_writes_nothing() {
    let mut segment = Segment::new(params(10), 1);
    let good = Point {
        id: PointId::Num(1),
        vectors: BTreeMap::from([(String::new(), vec![0.0; 4])]),
        payload: json!({}),
    };
    let short = Point {
        id: PointId::Num(2),
        vectors: BTreeMap::from([(String::new(), vec![0.0; 3])]),
        payload: json!({}),
    };
    let nan = Point {
        id: PointId::Num(3),
        vectors: BTreeMap::from([(String::new(), vec![0.0, f32::NAN, 0.0, 0.0])]),
        payload: json!({}),
    };
    let named = Point {
        id: PointId::Num(4),
        vectors: BTreeMap::from([("image".to_string(), vec![0.0; 4])]),
        payload: json!({}),
    };
    let error = segment.upsert(vec![good.clone(), short], 1, "points").unwrap_err();
    assert_eq!(
        error.to_string(),
        "points[1].vector: wrong vector dimension: expected 4, got 3"
    );
    let error = segment.upsert(vec![good.clone(), nan], 1, "points").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("points[1].vector: vectors may not hold NaN"),
        "{error}"
    );
    let error = segment.upsert(vec![named], 1, "points").unwrap_err();
    assert_eq!(
        error.to_string(),
        "points[0].vector.image: the collection has no vector named 'image'"
    );
    assert_eq!(segment.len(), 0);
    assert_eq!(segment.written(), 0);
    segment.upsert(vec![good], 1, "points").unwrap();
    assert_eq!(segment.len(), 1);
}

fn one_point(id: u64, payload: serde_json::Value) -> Point {
    Point {
        id: PointId::Num(id),
        vectors: BTreeMap::from([(String::new(), vec![0.5; 4])]),
        payload,
    }
}

#[test]
fn payloads_nest_only_as_deep_as_they_can_be_read_back() {
    use loopline_vector_index::Operation;
    let mut segment = Segment::new(params(10), 1);
    let mut deep = json!(1);
    for _ in 0..70 {
        deep = json!({"a": deep});
    }
    let error = segment.upsert(vec![one_point(1, deep)], 1, "points").unwrap_err();
    assert!(error.to_string().contains("nest at most 64"), "{error}");
    segment.upsert(vec![one_point(1, json!({}))], 1, "points").unwrap();
    let key = vec!["a"; 70].join(".");
    let set = Operation::SetPayload {
        ids: vec![PointId::Num(1)],
        payload: json!({"z": 1}).as_object().unwrap().clone(),
        key: Some(key),
    };
    assert!(segment.check(&set).is_err());
    let into_array = Operation::SetPayload {
        ids: vec![PointId::Num(1)],
        payload: json!({"z": 1}).as_object().unwrap().clone(),
        key: Some("a[0].b".into()),
    };
    assert!(
        segment
            .check(&into_array)
            .unwrap_err()
            .to_string()
            .contains("object keys only")
    );
}

#[test]
fn payload_indexes_never_miss_a_point_and_forget_old_values() {
    use loopline_vector_index::{FieldType, Operation};
    let mut params = params(0);
    params.get_mut("").unwrap().full_scan_threshold_kb = 1_000_000;
    let mut segment = Segment::new(params, 1);
    let points = vec![
        one_point(1, json!({"x": 3})),
        one_point(2, json!({"x": 3.5})),
        one_point(3, json!({"x": "a"})),
        one_point(4, json!({"x": 4})),
    ];
    segment.upsert(points, 1, "points").unwrap();
    segment.create_index("x", FieldType::Integer).unwrap();
    for (filter, expected) in [
        (
            json!({"must": [{"key": "x", "range": {"gte": 3, "lte": 4}}]}),
            vec![1, 2, 4],
        ),
        (json!({"must": [{"key": "x", "match": {"any": ["a"]}}]}), vec![3]),
        (json!({"must": [{"key": "x", "match": {"value": 3}}]}), vec![1]),
    ] {
        let filter = Filter::from_json(&filter, "filter").unwrap();
        let mut found: Vec<PointId> = segment
            .search(&Query {
                using: "",
                vector: &[0.5; 4],
                limit: 10,
                offset: 0,
                filter: Some(&filter),
                ef: None,
                exact: false,
                score_threshold: None,
                use_int8: false,
                rescore: loopline_vector_index::Rescore::All,
            })
            .unwrap()
            .iter()
            .map(|hit| hit.id)
            .collect();
        found.sort();
        assert_eq!(
            found,
            expected.into_iter().map(PointId::Num).collect::<Vec<_>>(),
            "{filter:?}"
        );
    }
    for round in 0..200 {
        let change = Operation::OverwritePayload {
            ids: vec![PointId::Num(1)],
            payload: json!({"x": 1000 + round}).as_object().unwrap().clone(),
        };
        segment.apply(change, 2 + round as u64).unwrap();
    }
    let (_, _, points) = segment.payload_schema().next().unwrap();
    assert_eq!(points, 3, "one entry per point holding an integer");
}

#[test]
fn vectors_too_large_for_finite_distances_are_refused() {
    let mut segment = Segment::new(params(10), 1);
    let huge = Point {
        id: PointId::Num(1),
        vectors: BTreeMap::from([(String::new(), vec![3e38, -3e38, 0.0, 0.0])]),
        payload: json!({}),
    };
    let error = segment.upsert(vec![huge], 1, "points").unwrap_err();
    assert!(error.to_string().contains("too large"), "{error}");
}
