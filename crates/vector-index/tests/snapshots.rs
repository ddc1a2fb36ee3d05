//! Snapshots: a collection restored under another name or over itself gives back what it held when the
//! snapshot was taken; a damaged snapshot is refused and leaves the collection as it was; a restore
//! interrupted at any step leaves one directory holding the name after a restart.

use loopline_vector_index::{Distance, HnswParams, Operation, Point, PointId, VectorParams, VectorStore};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn params(size: usize) -> BTreeMap<String, VectorParams> {
    BTreeMap::from([(
        String::new(),
        VectorParams {
            size,
            distance: Distance::Cosine,
            hnsw: HnswParams {
                m: 8,
                ef_construction: 32,
            },
            full_scan_threshold_kb: 0,
            int8: false,
            on_disk: false,
        },
    )])
}

fn points(ids: std::ops::Range<u64>) -> Operation {
    Operation::Upsert(
        ids.map(|id| Point {
            id: PointId::Num(id),
            vectors: BTreeMap::from([(String::new(), (0..4).map(|c| ((id * 5 + c) % 7) as f32 + 0.5).collect())]),
            payload: json!({"id": id}),
        })
        .collect(),
    )
}

fn ids(store: &VectorStore, name: &str) -> Vec<u64> {
    let collection = store.get(name).unwrap();
    let stored = collection.read().unwrap();
    let segment = stored.segment();
    segment
        .matching(None)
        .into_iter()
        .map(|node| match segment.record(node, false).id {
            PointId::Num(id) => id,
            PointId::Uuid(_) => unreachable!(),
        })
        .collect()
}

fn directories(root: &Path) -> usize {
    std::fs::read_dir(root).unwrap().count()
}

/// A store with collection `docs` holding points `0..count`, and a snapshot of it.
fn docs(count: u64) -> (tempfile::TempDir, std::path::PathBuf, VectorStore, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vectors");
    let store = VectorStore::open(&root, 1).unwrap();
    assert!(store.create("docs", params(4)).unwrap());
    store
        .get("docs")
        .unwrap()
        .write()
        .unwrap()
        .apply(points(0..count))
        .unwrap();
    let snapshot = store.get("docs").unwrap().read().unwrap().snapshot().unwrap();
    (dir, root, store, snapshot)
}

#[test]
fn a_snapshot_restores_under_another_name_and_over_itself() {
    let (_dir, root, store, snapshot) = docs(20);
    // Changed after the snapshot: the restore goes back to what it held then.
    store
        .get("docs")
        .unwrap()
        .write()
        .unwrap()
        .apply(points(20..30))
        .unwrap();
    store.restore("copy", &snapshot).unwrap();
    assert_eq!(ids(&store, "copy"), (0..20).collect::<Vec<_>>());
    let held = store.get("docs").unwrap();
    store.restore("docs", &snapshot).unwrap();
    assert_eq!(ids(&store, "docs"), (0..20).collect::<Vec<_>>());
    assert!(
        held.read().is_none(),
        "requests holding the replaced collection find it gone"
    );
    // The restored collection takes writes, and everything survives a restart.
    store
        .get("copy")
        .unwrap()
        .write()
        .unwrap()
        .apply(points(40..41))
        .unwrap();
    drop((store, held));
    let reopened = VectorStore::open(&root, 1).unwrap();
    assert_eq!(reopened.names(), ["copy", "docs"]);
    assert_eq!(ids(&reopened, "docs"), (0..20).collect::<Vec<_>>());
    assert_eq!(ids(&reopened, "copy").len(), 21);
    assert_eq!(directories(&root), 2);
}

#[test]
fn damaged_snapshots_are_refused_and_change_nothing() {
    let (_dir, root, store, snapshot) = docs(5);
    let mut cut = snapshot.clone();
    cut.truncate(snapshot.len() - 3);
    let mut flipped = snapshot.clone();
    let last = flipped.len() - 40;
    flipped[last] ^= 0x40;
    let mut lying = snapshot.clone();
    lying[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    for damaged in [
        cut,
        flipped,
        lying,
        b"LLVSNAP1".to_vec(),
        b"not a snapshot".to_vec(),
        Vec::new(),
    ] {
        assert!(store.restore("docs", &damaged).is_err());
        assert!(store.restore("other", &damaged).is_err());
    }
    assert_eq!(store.names(), ["docs"]);
    assert_eq!(ids(&store, "docs"), (0..5).collect::<Vec<_>>());
    assert_eq!(directories(&root), 1, "no staging directory is left behind");
    assert!(store.restore("../escape", &snapshot).is_err());
}

#[test]
fn an_interrupted_restore_leaves_one_directory_per_name() {
    let (_dir, root, store, snapshot) = docs(5);
    store.get("docs").unwrap().write().unwrap().apply(points(5..9)).unwrap();
    let old = std::fs::read_dir(&root).unwrap().next().unwrap().unwrap().path();
    drop(store);

    // Stopped before the rename: the staging directory is removed, the old collection stays.
    let staging = root.join(".restoring-1-0");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("name"), "docs").unwrap();
    let reopened = VectorStore::open(&root, 1).unwrap();
    assert_eq!(ids(&reopened, "docs").len(), 9);
    assert!(!staging.exists());
    drop(reopened);

    // Stopped after the rename: the new directory names the one it replaces, which goes.
    let scratch = tempfile::tempdir().unwrap();
    let other = VectorStore::open(scratch.path(), 1).unwrap();
    other.restore("docs", &snapshot).unwrap();
    let restored = std::fs::read_dir(scratch.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let moved = root.join("c-2-0");
    std::fs::rename(&restored, &moved).unwrap();
    std::fs::write(
        moved.join("replaces"),
        old.file_name().unwrap().to_string_lossy().as_bytes(),
    )
    .unwrap();
    let reopened = VectorStore::open(&root, 1).unwrap();
    assert_eq!(ids(&reopened, "docs"), (0..5).collect::<Vec<_>>());
    assert!(!old.exists());
    assert_eq!(directories(&root), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any bytes, or a real snapshot with bytes changed anywhere: restored whole or refused, never a panic,
    /// and a refused one leaves the collection as it was.
    #[test]
    fn any_snapshot_bytes_are_restored_or_refused(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 0..8),
    ) {
        let (_dir, _root, store, snapshot) = docs(5);
        let _ = store.restore("noise", &noise);
        let mut changed = snapshot.clone();
        for (at, bits) in flips {
            let at = at % changed.len();
            changed[at] ^= bits;
        }
        if store.restore("docs", &changed).is_err() {
            proptest::prop_assert_eq!(ids(&store, "docs"), (0..5).collect::<Vec<_>>());
        }
    }
}
