//! Vectors kept on disk (`on_disk`): after a checkpoint their rows are read from a file beside it, not
//! memory; every answer is the same as before; later checkpoints append; compaction writes a new file and
//! removes the old; a damaged or short file is refused at open; bytes past the rows a checkpoint names (a
//! crash mid-append) are ignored; files nothing names are removed.

use loopline_vector_index::{
    Distance, Filter, HnswParams, Operation, Point, PointId, Query, Record, StorageError, StoredCollection,
    VectorParams,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DIM: usize = 16;

fn params(int8: bool) -> BTreeMap<String, VectorParams> {
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
            int8,
            on_disk: true,
        },
    )])
}

fn point(id: u64) -> Point {
    let vector: Vec<f32> = (0..DIM as u64)
        .map(|component| ((id * 7 + component * 13 + id * id % 5) % 17) as f32 - 8.0)
        .collect();
    Point {
        id: PointId::Num(id),
        vectors: BTreeMap::from([(String::new(), vector)]),
        payload: json!({"group": id % 3}),
    }
}

fn upsert(collection: &mut StoredCollection, ids: std::ops::Range<u64>) {
    collection.apply(Operation::Upsert(ids.map(point).collect())).unwrap();
}

/// Every record (vectors included), and exact and graph answers to a few queries, filtered and not.
fn state(collection: &StoredCollection) -> (Vec<Record>, Vec<Vec<(PointId, i64)>>) {
    let segment = collection.segment();
    let records = segment
        .matching(None)
        .into_iter()
        .map(|node| segment.record(node, true))
        .collect();
    let filter = Filter::from_json(&json!({"must": [{"key": "group", "match": {"value": 1}}]}), "filter").unwrap();
    let mut answers = Vec::new();
    for seed in 0..4u64 {
        let query: Vec<f32> = point(seed * 31 + 5).vectors[""]
            .iter()
            .map(|value| value + 0.25)
            .collect();
        for (exact, filter) in [(true, None), (false, None), (false, Some(&filter))] {
            let hits = segment
                .search(&Query {
                    using: "",
                    vector: &query,
                    limit: 5,
                    offset: 0,
                    filter,
                    ef: Some(200),
                    exact,
                    score_threshold: None,
                    use_int8: true,
                    rescore: loopline_vector_index::Rescore::All,
                })
                .unwrap();
            answers.push(
                hits.iter()
                    .map(|hit| (hit.id, (f64::from(hit.score) * 1e5).round() as i64))
                    .collect(),
            );
        }
    }
    (records, answers)
}

fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("vectors-"))
        .collect();
    files.sort();
    files
}

/// A collection of int8 vectors kept on disk in a fresh directory, holding points `0..count`, checkpointed.
fn checkpointed(count: u64) -> (tempfile::TempDir, PathBuf, StoredCollection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(true), 1).unwrap();
    upsert(&mut collection, 0..count);
    collection.checkpoint().unwrap();
    (dir, path, collection)
}

fn float_bytes_in_memory(collection: &StoredCollection) -> usize {
    collection.segment().memory()[""].0
}

#[test]
fn after_a_checkpoint_the_vectors_are_read_from_their_file_and_every_answer_is_the_same() {
    for int8 in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut collection = StoredCollection::create(&path, params(int8), 1).unwrap();
        upsert(&mut collection, 0..300);
        assert_eq!(float_bytes_in_memory(&collection), 300 * DIM * 4);
        let before = state(&collection);
        collection.checkpoint().unwrap();
        assert_eq!(float_bytes_in_memory(&collection), 0, "int8 {int8}");
        assert_eq!(collection.segment().disk_bytes()[""], 300 * DIM * 4);
        assert_eq!(state(&collection), before, "int8 {int8}");
        let files = vector_files(&path);
        assert_eq!(files.len(), 1);
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), (300 * DIM * 4) as u64);

        // Rows written since stay in memory until the next checkpoint, which appends them to the same file.
        upsert(&mut collection, 300..420);
        assert_eq!(float_bytes_in_memory(&collection), 120 * DIM * 4);
        let before = state(&collection);
        collection.checkpoint().unwrap();
        assert_eq!(vector_files(&path), files);
        assert_eq!(float_bytes_in_memory(&collection), 0);
        assert_eq!(state(&collection), before);
        drop(collection);

        let reopened = StoredCollection::open(&path, 1).unwrap();
        assert_eq!(float_bytes_in_memory(&reopened), 0);
        assert_eq!(state(&reopened), before, "int8 {int8}");
        let config = std::fs::read_to_string(path.join("config.json")).unwrap();
        assert!(config.contains("\"on_disk\": true"), "{config}");
    }
}

#[test]
fn a_compaction_writes_a_new_file_and_removes_the_old_one() {
    let (_dir, path, mut collection) = checkpointed(200);
    let old = vector_files(&path);
    collection
        .apply(Operation::Delete((0..120).map(PointId::Num).collect()))
        .unwrap();
    let before = state(&collection);
    collection.checkpoint().unwrap();
    assert_eq!(collection.segment().written(), 80, "compacted");
    let new = vector_files(&path);
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(std::fs::metadata(&new[0]).unwrap().len(), (80 * DIM * 4) as u64);
    // Compaction writes each vector again, normalising it again: the last bit of a component may move.
    assert_eq!(rounded(&state(&collection).0), rounded(&before.0));
    drop(collection);
    assert_eq!(
        rounded(&state(&StoredCollection::open(&path, 1).unwrap()).0),
        rounded(&before.0)
    );
}

/// Records with their vectors' components rounded to 1e-5.
fn rounded(records: &[Record]) -> Vec<(PointId, serde_json::Value, Vec<i64>)> {
    records
        .iter()
        .map(|record| {
            let vector = record.vectors[""]
                .iter()
                .map(|value| (f64::from(*value) * 1e5).round() as i64)
                .collect();
            (record.id, record.payload.clone(), vector)
        })
        .collect()
}

#[test]
fn bytes_past_the_rows_a_checkpoint_names_are_ignored_and_then_overwritten() {
    let (_dir, path, mut collection) = checkpointed(100);
    upsert(&mut collection, 100..150);
    drop(collection);
    // A crash in the middle of the next checkpoint's append leaves part of a row past the named ones.
    let file = vector_files(&path).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&file, &bytes).unwrap();

    let mut collection = StoredCollection::open(&path, 1).unwrap();
    assert_eq!(collection.segment().len(), 150);
    let before = state(&collection);
    collection.checkpoint().unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), (150 * DIM * 4) as u64);
    drop(collection);
    assert_eq!(state(&StoredCollection::open(&path, 1).unwrap()), before);
}

#[test]
fn a_damaged_or_short_vector_file_is_refused_with_its_name() {
    let (_dir, path, collection) = checkpointed(100);
    drop(collection);
    let file = vector_files(&path).remove(0);
    let good = std::fs::read(&file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();

    let mut flipped = good.clone();
    flipped[1234] ^= 0x10;
    std::fs::write(&file, &flipped).unwrap();
    match StoredCollection::open(&path, 1) {
        Err(StorageError::Damaged { message, .. }) => {
            assert!(message.contains(&name) && message.contains("checksum"), "{message}")
        }
        other => panic!("a flipped bit was not refused: {:?}", other.err()),
    }

    std::fs::write(&file, &good[..good.len() - 4]).unwrap();
    match StoredCollection::open(&path, 1) {
        Err(StorageError::Damaged { message, .. }) => {
            assert!(message.contains(&name) && message.contains("100 vectors"), "{message}")
        }
        other => panic!("a short file was not refused: {:?}", other.err()),
    }

    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        StoredCollection::open(&path, 1),
        Err(StorageError::Damaged { .. })
    ));
    std::fs::write(&file, &good).unwrap();
    assert_eq!(StoredCollection::open(&path, 1).unwrap().segment().len(), 100);
}

#[test]
fn a_vector_file_no_checkpoint_names_is_removed_at_open() {
    let (_dir, path, collection) = checkpointed(50);
    drop(collection);
    let kept = vector_files(&path);
    let stray = path.join("vectors-dead-1-0.f32");
    std::fs::write(&stray, [0u8; 64]).unwrap();
    // Not of our shape: left alone.
    let other = path.join("vectors-notes.txt");
    std::fs::write(&other, b"mine").unwrap();
    let reopened = StoredCollection::open(&path, 1).unwrap();
    assert_eq!(reopened.segment().len(), 50);
    assert!(!stray.exists());
    assert!(other.exists());
    assert_eq!(
        vector_files(&path)
            .into_iter()
            .filter(|path| path.extension().is_some_and(|extension| extension == "f32"))
            .collect::<Vec<_>>(),
        kept
    );
}

#[test]
fn a_snapshot_of_vectors_on_disk_holds_them_and_restores_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = loopline_vector_index::VectorStore::open(dir.path(), 1).unwrap();
    store.create("docs", params(true)).unwrap();
    let collection = store.get("docs").unwrap();
    {
        let mut stored = collection.write().unwrap();
        stored.apply(Operation::Upsert((0..120).map(point).collect())).unwrap();
        stored.checkpoint().unwrap();
    }
    let stored = collection.read().unwrap();
    assert_eq!(float_bytes_in_memory(&stored), 0);
    let snapshot = stored.snapshot().unwrap();
    let before = state(&stored);
    drop(stored);
    store.restore("copy", &snapshot).unwrap();
    let copy = store.get("copy").unwrap();
    assert_eq!(state(&copy.read().unwrap()), before);
    copy.write().unwrap().checkpoint().unwrap();
    assert_eq!(float_bytes_in_memory(&copy.read().unwrap()), 0);
    assert_eq!(state(&copy.read().unwrap()), before);
}

#[test]
fn a_compaction_that_cannot_read_a_vector_fails_and_writes_nothing() {
    let (_dir, path, mut collection) = checkpointed(200);
    let file = vector_files(&path).remove(0);
    let good = std::fs::read(&file).unwrap();
    // The file loses its second half while the collection is open (a disk fault).
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let checkpoint = std::fs::read(path.join("segment.bin")).unwrap();
    collection
        .apply(Operation::Delete((0..60).map(PointId::Num).collect()))
        .unwrap();
    match collection.checkpoint() {
        Err(StorageError::Damaged { message, .. }) => {
            assert!(message.contains("could not be compacted"), "{message}")
        }
        other => panic!("a compaction over unreadable vectors went on: {other:?}"),
    }
    assert_eq!(std::fs::read(path.join("segment.bin")).unwrap(), checkpoint);
    assert_eq!(vector_files(&path), std::slice::from_ref(&file));
    drop(collection);
    // With the file mended, every point is back with its own vector (the delete replayed from the log).
    std::fs::write(&file, &good).unwrap();
    let reopened = StoredCollection::open(&path, 1).unwrap();
    assert_eq!(reopened.segment().len(), 140);
    let node = reopened.segment().node_of(PointId::Num(199)).unwrap();
    let vector = &reopened.segment().record(node, true).vectors[""];
    assert!(vector.iter().any(|value| *value != 0.0));
}

#[test]
fn a_failed_read_is_reported_to_the_request_that_made_it_and_no_other() {
    let (_dir, path, collection) = checkpointed(200);
    let file = vector_files(&path).remove(0);
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let segment = collection.segment();
    let unreadable = segment.node_of(PointId::Num(190)).unwrap();
    let readable: Vec<PointId> = (0..5).map(PointId::Num).collect();
    let filter = Filter::from_json(&json!({"must": [{"has_id": [0, 1, 2, 3, 4]}]}), "filter").unwrap();
    let query = point(3).vectors[""].clone();
    std::thread::scope(|scope| {
        let failing = scope.spawn(|| {
            let _ = segment.record(unreadable, true);
            segment.check_reads()
        });
        let fine = scope.spawn(|| {
            segment.search(&Query {
                using: "",
                vector: &query,
                limit: 5,
                offset: 0,
                filter: Some(&filter),
                ef: None,
                exact: true,
                score_threshold: None,
                use_int8: true,
                rescore: loopline_vector_index::Rescore::All,
            })
        });
        let message = failing.join().unwrap().unwrap_err().to_string();
        assert!(message.contains("could not be read from disk"), "{message}");
        let hits = fine.join().unwrap().unwrap();
        let mut found: Vec<PointId> = hits.iter().map(|hit| hit.id).collect();
        found.sort();
        assert_eq!(found, readable);
    });
    // Searching the unreadable row is an error, not a zero vector ranked among real ones.
    let all = segment.search(&Query {
        using: "",
        vector: &query,
        limit: 5,
        offset: 0,
        filter: None,
        ef: None,
        exact: true,
        score_threshold: None,
        use_int8: true,
        rescore: loopline_vector_index::Rescore::All,
    });
    assert!(
        matches!(all, Err(loopline_vector_index::SegmentError::Storage { .. })),
        "{all:?}"
    );
}
