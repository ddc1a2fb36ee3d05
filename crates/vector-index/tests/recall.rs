//! Recall of the graph against exact search on clustered data, with and without filters, and with int8.

use loopline_vector_index::{
    Distance, FieldType, Filter, HnswParams, Plan, Point, PointId, Query, Segment, VectorParams,
};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

/// A small deterministic generator (xorshift), so the data is the same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

const DIM: usize = 32;
const POINTS: usize = 12_000;

/// A mixture of Gaussians: 24 centres, points spread 0.15 around them.
fn clustered(random: &mut Random, count: usize) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..24)
        .map(|_| (0..DIM).map(|_| random.uniform() * 2.0 - 1.0).collect())
        .collect();
    (0..count)
        .map(|_| {
            let centre = &centres[(random.next() % 24) as usize];
            centre.iter().map(|value| value + 0.15 * random.normal()).collect()
        })
        .collect()
}

fn segment(distance: Distance, int8: bool, full_scan_threshold_kb: usize, threads: usize) -> (Segment, Vec<Vec<f32>>) {
    segment_with(distance, int8, false, full_scan_threshold_kb, threads)
}

fn segment_with(
    distance: Distance,
    int8: bool,
    on_disk: bool,
    full_scan_threshold_kb: usize,
    threads: usize,
) -> (Segment, Vec<Vec<f32>>) {
    let mut random = Random(0x5EED_1234_ABCD_0001);
    let data = clustered(&mut random, POINTS + 100);
    let params = VectorParams {
        size: DIM,
        distance,
        hnsw: HnswParams {
            m: 16,
            ef_construction: 100,
        },
        full_scan_threshold_kb,
        int8,
        on_disk,
    };
    let mut segment = Segment::new(BTreeMap::from([(String::new(), params)]), threads);
    let points = data[..POINTS]
        .iter()
        .enumerate()
        .map(|(index, vector)| Point {
            id: PointId::Num(index as u64),
            vectors: BTreeMap::from([(String::new(), vector.clone())]),
            payload: json!({"one_in_100": index % 100, "one_in_10": format!("t{}", index % 10), "half": index % 2 == 0}),
        })
        .collect();
    segment.upsert(points, 1, "points").unwrap();
    (segment, data[POINTS..].to_vec())
}

/// Mean recall@10 of the planner's answers against exact answers over the queries.
fn recall(segment: &Segment, queries: &[Vec<f32>], filter: Option<&Filter>, ef: usize, int8: bool) -> (f64, Plan) {
    let mut total = 0.0;
    let mut plan = Plan::Exact;
    for vector in queries {
        let query = Query {
            using: "",
            vector,
            limit: 10,
            offset: 0,
            filter,
            ef: Some(ef),
            exact: false,
            score_threshold: None,
            use_int8: int8,
            rescore: loopline_vector_index::Rescore::All,
        };
        let (found, used) = segment.search_with_plan(&query).unwrap();
        plan = used;
        let truth = segment
            .search(&Query {
                exact: true,
                ..query.clone()
            })
            .unwrap();
        assert_eq!(truth.len(), 10);
        let truth: HashSet<PointId> = truth.iter().map(|hit| hit.id).collect();
        total += found.iter().filter(|hit| truth.contains(&hit.id)).count() as f64 / 10.0;
    }
    let mean = total / queries.len() as f64;
    eprintln!("recall@10 {mean:.3} ({plan:?}, int8 {int8})");
    (mean, plan)
}

#[test]
fn graph_recall_against_exact_search() {
    for distance in [Distance::Cosine, Distance::Euclid, Distance::Dot] {
        let (segment, queries) = segment(distance, false, 1, 2);
        let (found, plan) = recall(&segment, &queries, None, 64, false);
        assert!(matches!(plan, Plan::Graph(_)), "{plan:?}");
        assert!(found >= 0.95, "{distance:?}: recall@10 {found}");
    }
}

#[test]
fn filtered_recall_at_every_selectivity() {
    // A threshold of 64 KiB is 512 vectors of 32 dimensions: 1% of 12,000 points (120) is under it; 10% and
    // 50% are over it, and the planner weighs scoring the passing points against a walk.
    let (mut segment, queries) = segment(Distance::Cosine, false, 64, 2);
    let one_percent = Filter::from_json(
        &json!({"must": [{"key": "one_in_100", "match": {"value": 42}}]}),
        "filter",
    )
    .unwrap();
    let ten_percent = Filter::from_json(
        &json!({"must": [{"key": "one_in_10", "match": {"value": "t3"}}]}),
        "filter",
    )
    .unwrap();
    let half = Filter::from_json(&json!({"must": [{"key": "half", "match": {"value": true}}]}), "filter").unwrap();
    for (name, filter, expect_graph) in [
        ("1%", &one_percent, false),
        // 1,200 passing points cost less to score than a walk that must look at ten times ef's worth.
        ("10%", &ten_percent, false),
        ("50%", &half, true),
    ] {
        let (found, plan) = recall(&segment, &queries, Some(filter), 64, false);
        assert_eq!(matches!(plan, Plan::Graph(_)), expect_graph, "{name}: {plan:?}");
        assert!(found >= 0.95, "{name} unindexed: recall@10 {found}");
    }
    segment.create_index("one_in_100", FieldType::Integer).unwrap();
    segment.create_index("one_in_10", FieldType::Keyword).unwrap();
    for (name, filter) in [("1%", &one_percent), ("10%", &ten_percent)] {
        let (found, _) = recall(&segment, &queries, Some(filter), 64, false);
        assert!(found >= 0.95, "{name} indexed: recall@10 {found}");
    }
}

#[test]
fn int8_recall_after_rescoring_and_its_memory() {
    let (segment, queries) = segment(Distance::Cosine, true, 1, 2);
    let (found, plan) = recall(&segment, &queries, None, 64, true);
    assert!(matches!(plan, Plan::Graph(_)));
    assert!(found >= 0.95, "int8 recall@10 {found}");
    let (floats, int8, _) = segment.memory()[""];
    assert!(int8 * 100 <= floats * 30, "int8 {int8} bytes vs float32 {floats}");
}

#[test]
fn one_thread_and_two_build_graphs_of_the_same_quality() {
    let (single, queries) = segment(Distance::Euclid, false, 1, 1);
    let (found, _) = recall(&single, &queries, None, 64, false);
    assert!(found >= 0.95, "single-threaded build: recall@10 {found}");
}

#[test]
fn a_graph_built_on_the_int8_codes_as_for_vectors_on_disk_keeps_its_recall() {
    for distance in [Distance::Cosine, Distance::Euclid] {
        let (segment, queries) = segment_with(distance, true, true, 1, 2);
        let (found, plan) = recall(&segment, &queries, None, 64, true);
        assert!(matches!(plan, Plan::Graph(_)));
        assert!(found >= 0.95, "{distance:?}: recall@10 {found}");
    }
}

/// Collections often hold the same vector many times (a chunk ingested twice, boilerplate text). The
/// neighbour-selection heuristic must not let one copy stand in for every direction: a point's links would
/// then reach only its copies, and whole groups of copies become islands the walk cannot leave (0.88 here
/// when ties pruned). Recall is counted by score, since copies tie.
#[test]
fn recall_holds_when_most_vectors_have_exact_copies() {
    const DISTINCT: usize = 1_000;
    const COPIES: usize = 10;
    let mut random = Random(0x5EED_1234_ABCD_0002);
    let data = clustered(&mut random, DISTINCT + 100);
    let params = VectorParams {
        size: DIM,
        distance: Distance::Cosine,
        hnsw: HnswParams {
            m: 16,
            ef_construction: 100,
        },
        full_scan_threshold_kb: 1,
        int8: false,
        on_disk: false,
    };
    // One thread: the same graph on every run.
    let mut segment = Segment::new(BTreeMap::from([(String::new(), params)]), 1);
    let points = (0..DISTINCT * COPIES)
        .map(|index| Point {
            id: PointId::Num(index as u64),
            vectors: BTreeMap::from([(String::new(), data[index % DISTINCT].clone())]),
            payload: json!({}),
        })
        .collect();
    segment.upsert(points, 1, "points").unwrap();
    let mut total = 0.0;
    for vector in &data[DISTINCT..] {
        let query = Query {
            using: "",
            vector,
            limit: 10,
            offset: 0,
            filter: None,
            ef: Some(64),
            exact: false,
            score_threshold: None,
            use_int8: false,
            rescore: loopline_vector_index::Rescore::All,
        };
        let (found, plan) = segment.search_with_plan(&query).unwrap();
        assert!(matches!(plan, Plan::Graph(_)), "{plan:?}");
        let truth = segment
            .search(&Query {
                exact: true,
                ..query.clone()
            })
            .unwrap();
        let tenth = truth[9].score;
        total += found.iter().filter(|hit| hit.score >= tenth - 1e-6).count() as f64 / 10.0;
    }
    let mean = total / 100.0;
    eprintln!("recall@10 with copies {mean:.3}");
    assert!(mean >= 0.95, "recall@10 with copies {mean}");
}
