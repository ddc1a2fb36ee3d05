//! Upserts linked after they are written: staged points are stored and found by exact search at once, by
//! the graph once linked; a checkpoint taken before the links were made is linked when it is read back; a
//! batch staged before a compaction is never linked into the compacted segment (which linked it itself).
//! Graphs here are built on one thread, so each test builds the same graph every time (two threads link in
//! a different order on each run, and a point's own vector is then, rarely, not its first hit).

use loopline_vector_index::{
    Distance, HnswParams, Operation, Point, PointId, Query, Segment, StoredCollection, VectorParams,
};
use serde_json::json;
use std::collections::BTreeMap;

const DIM: usize = 16;

fn params() -> BTreeMap<String, VectorParams> {
    BTreeMap::from([(
        String::new(),
        VectorParams {
            size: DIM,
            distance: Distance::Cosine,
            hnsw: HnswParams {
                m: 8,
                ef_construction: 48,
            },
            full_scan_threshold_kb: 0,
            int8: true,
            on_disk: false,
        },
    )])
}

/// A distinct vector per id (a hash of id and component).
fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|component| {
            let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ component.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 29;
            x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 32;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn points(ids: std::ops::Range<u64>) -> Vec<Point> {
    ids.map(|id| Point {
        id: PointId::Num(id),
        vectors: BTreeMap::from([(String::new(), vector(id))]),
        payload: json!({"id": id}),
    })
    .collect()
}

/// The best hit for point `id`'s own vector, through the graph (or exactly).
fn nearest(segment: &Segment, id: u64, exact: bool, int8: bool) -> Option<PointId> {
    let vector = vector(id);
    let query = Query {
        using: "",
        vector: &vector,
        limit: 1,
        offset: 0,
        filter: None,
        // Small enough that the planner walks the graph (a larger ef over these few hundred points would
        // score them all exactly).
        ef: Some(64),
        exact,
        score_threshold: None,
        use_int8: int8,
        rescore: loopline_vector_index::Rescore::All,
    };
    segment.search(&query).unwrap().first().map(|hit| hit.id)
}

#[test]
fn staged_points_are_found_exactly_at_once_and_through_the_graph_once_linked() {
    let mut segment = Segment::new(params(), 1);
    segment.upsert(points(0..600), 1, "points").unwrap();
    let staged = segment.stage_upsert(points(600..900), 2, "points").unwrap();
    assert_eq!(segment.len(), 900);
    assert_eq!(nearest(&segment, 700, true, false), Some(PointId::Num(700)));
    // No link leads to a staged point yet.
    for id in [600, 750, 899] {
        assert_ne!(nearest(&segment, id, false, false), Some(PointId::Num(id)));
    }
    segment.link_staged(&staged);
    for id in (600..900).step_by(7).chain([5, 300]) {
        assert_eq!(
            nearest(&segment, id, false, false),
            Some(PointId::Num(id)),
            "point {id}"
        );
        assert_eq!(
            nearest(&segment, id, false, true),
            Some(PointId::Num(id)),
            "point {id} (int8)"
        );
    }
}

#[test]
fn a_checkpoint_taken_before_the_links_links_them_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let mut collection = StoredCollection::create(&path, params(), 1).unwrap();
    collection.apply(Operation::Upsert(points(0..400))).unwrap();
    // The first batch of an empty collection too: nothing linked, no entry point.
    let empty_path = dir.path().join("empty");
    let mut empty = StoredCollection::create(&empty_path, params(), 1).unwrap();
    for stored in [&mut collection, &mut empty] {
        let (_, staged) = stored.apply_staged(Operation::Upsert(points(400..700))).unwrap();
        assert!(staged.is_some());
        stored.checkpoint().unwrap();
    }
    drop((collection, empty));
    for (path, first) in [(&path, 0u64), (&empty_path, 400)] {
        let reopened = StoredCollection::open(path, 1).unwrap();
        assert_eq!(reopened.segment().len() as u64, 700 - first);
        for id in (first..700).step_by(11) {
            assert_eq!(
                nearest(reopened.segment(), id, false, false),
                Some(PointId::Num(id)),
                "point {id} after reopening {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_batch_staged_before_a_compaction_is_not_linked_into_its_successor() {
    let mut segment = Segment::new(params(), 1);
    segment.upsert(points(0..300), 1, "points").unwrap();
    let staged = segment.stage_upsert(points(300..500), 2, "points").unwrap();
    let compacted = segment.compacted().unwrap();
    // The successor numbers its points afresh and linked every one itself; the stale batch changes nothing.
    compacted.link_staged(&staged);
    for id in (0..500).step_by(13) {
        assert_eq!(
            nearest(&compacted, id, false, false),
            Some(PointId::Num(id)),
            "point {id}"
        );
    }
}
