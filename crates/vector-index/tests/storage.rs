//! Collections on disk: reopening gives back what was acknowledged, after a checkpoint, a torn log tail,
//! or `kill -9` in the middle of writing; a damaged checkpoint is refused, never a panic.

use loopline_vector_index::{
    Distance, FieldType, Filter, HnswParams, Operation, Point, PointId, Query, StorageError, StoredCollection,
    VectorParams,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

fn params() -> BTreeMap<String, VectorParams> {
    BTreeMap::from([(
        String::new(),
        VectorParams {
            size: 8,
            distance: Distance::Cosine,
            hnsw: HnswParams {
                m: 8,
                ef_construction: 32,
            },
            full_scan_threshold_kb: 0,
            int8: true,
            on_disk: false,
        },
    )])
}

fn point(id: u64) -> Point {
    let vector: Vec<f32> = (0..8)
        .map(|component| ((id * 7 + component * 3) % 11) as f32 - 5.0)
        .collect();
    Point {
        id: PointId::Num(id),
        vectors: BTreeMap::from([(String::new(), vector)]),
        payload: json!({"id": id, "group": format!("g{}", id % 3)}),
    }
}

fn upsert(collection: &mut StoredCollection, ids: std::ops::Range<u64>) -> u64 {
    collection.apply(Operation::Upsert(ids.map(point).collect())).unwrap()
}

/// Everything a reader can see: records in id order, and one search's answer.
fn state(collection: &StoredCollection) -> (Vec<loopline_vector_index::Record>, Vec<(PointId, u32)>) {
    let segment = collection.segment();
    let records = segment
        .matching(None)
        .into_iter()
        .map(|node| segment.record(node, true))
        .collect();
    let filter = Filter::from_json(&json!({"must": [{"key": "group", "match": {"value": "g1"}}]}), "filter").unwrap();
    let query = [1.0, 0.5, -0.5, 0.0, 2.0, 1.0, 0.0, -1.0];
    let hits = segment
        .search(&Query {
            using: "",
            vector: &query,
            limit: 5,
            offset: 0,
            filter: Some(&filter),
            ef: Some(64),
            exact: false,
            score_threshold: None,
            use_int8: true,
            rescore: loopline_vector_index::Rescore::All,
        })
        .unwrap();
    (
        records,
        hits.iter()
            .map(|hit| (hit.id, (hit.score * 1e4).round() as u32))
            .collect(),
    )
}

#[test]
fn reopening_gives_back_every_operation_before_and_after_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(), 2).unwrap();
    upsert(&mut collection, 0..300);
    collection
        .apply(Operation::CreateIndex {
            key: "group".into(),
            field_type: FieldType::Keyword,
        })
        .unwrap();
    collection
        .apply(Operation::Delete((0..100).map(PointId::Num).collect()))
        .unwrap();
    collection.checkpoint().unwrap();
    upsert(&mut collection, 280..400);
    collection
        .apply(Operation::SetPayload {
            ids: vec![PointId::Num(150)],
            payload: json!({"colour": "red"}).as_object().unwrap().clone(),
            key: Some("extra.inner".into()),
        })
        .unwrap();
    collection
        .apply(Operation::DeletePayload {
            ids: vec![PointId::Num(151)],
            keys: vec!["group".into()],
        })
        .unwrap();
    let before = state(&collection);
    let last = collection.last_operation();
    drop(collection);
    let reopened = StoredCollection::open(&path, 2).unwrap();
    assert_eq!(reopened.last_operation(), last);
    assert_eq!(state(&reopened), before);
    let record = reopened
        .segment()
        .record(reopened.segment().node_of(PointId::Num(150)).unwrap(), false);
    assert_eq!(record.payload["extra"], json!({"inner": {"colour": "red"}}));
    assert_eq!(reopened.segment().len(), 300);
}

#[test]
fn a_torn_log_tail_is_cut_off_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(), 1).unwrap();
    upsert(&mut collection, 0..10);
    upsert(&mut collection, 10..20);
    drop(collection);
    let wal = path.join("wal.log");
    let length = std::fs::metadata(&wal).unwrap().len();
    // Half of the second record, as a crash in the middle of its write would leave.
    let file = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    file.set_len(length - 100).unwrap();
    drop(file);
    let mut collection = StoredCollection::open(&path, 1).unwrap();
    assert_eq!(collection.segment().len(), 10);
    upsert(&mut collection, 20..25);
    drop(collection);
    // A few bytes after the last record (less than a header) are a cut-short header: cut off.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .unwrap()
        .write_all(&[0xAB; 11])
        .unwrap();
    let collection = StoredCollection::open(&path, 1).unwrap();
    assert_eq!(collection.segment().len(), 15);
    drop(collection);
    // A whole header that disagrees with itself is damage, not a crash: refused.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .unwrap()
        .write_all(&[0xAB; 37])
        .unwrap();
    assert!(StoredCollection::open(&path, 1).is_err());
}

#[test]
fn refused_operations_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(), 1).unwrap();
    upsert(&mut collection, 0..5);
    let length = std::fs::metadata(path.join("wal.log")).unwrap().len();
    let mut bad = point(9);
    bad.vectors.insert(String::new(), vec![f32::NAN; 8]);
    let error = collection.apply(Operation::Upsert(vec![point(8), bad])).unwrap_err();
    assert!(matches!(error, StorageError::Refused(_)), "{error}");
    let error = collection
        .apply(Operation::ClearPayload(vec![PointId::Num(77)]))
        .unwrap_err();
    assert_eq!(error.to_string(), "No point with id 77 found");
    assert_eq!(std::fs::metadata(path.join("wal.log")).unwrap().len(), length);
    assert_eq!(collection.segment().len(), 5);
}

#[test]
fn a_damaged_checkpoint_is_refused_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(), 1).unwrap();
    upsert(&mut collection, 0..50);
    collection.checkpoint().unwrap();
    drop(collection);
    let original = std::fs::read(path.join("segment.bin")).unwrap();
    for position in (0..original.len()).step_by(original.len() / 97 + 1) {
        let mut damaged = original.clone();
        damaged[position] ^= 0x5A;
        std::fs::write(path.join("segment.bin"), &damaged).unwrap();
        match StoredCollection::open(&path, 1) {
            Err(StorageError::Damaged { message, .. }) => assert!(!message.is_empty()),
            Err(other) => panic!("byte {position}: {other}"),
            Ok(_) => panic!("byte {position}: a damaged checkpoint was loaded"),
        }
    }
    std::fs::write(path.join("segment.bin"), &original[..original.len() / 2]).unwrap();
    assert!(matches!(
        StoredCollection::open(&path, 1),
        Err(StorageError::Damaged { .. })
    ));
}

const CHILD: &str = "LOOPLINE_VECTOR_CRASH_DIR";

/// Run as a child process by `acknowledged_writes_survive_kill_9`: writes batches forever, printing each
/// acknowledged operation's number.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let mut collection = StoredCollection::create(Path::new(&dir), params(), 1).unwrap();
    let mut stdout = std::io::stdout();
    for batch in 0.. {
        let number = upsert(&mut collection, batch * 20..batch * 20 + 20);
        writeln!(stdout, "acknowledged {number} {}", batch * 20 + 20).unwrap();
        stdout.flush().unwrap();
        if batch % 7 == 6 {
            collection.checkpoint().unwrap();
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads", "1"])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = (0u64, 0u64);
    while acknowledged.0 < 40 {
        let line = lines.next().expect("the writer stopped early").unwrap();
        if let Some(rest) = line.strip_prefix("acknowledged ") {
            let mut parts = rest.split(' ').map(|part| part.parse::<u64>().unwrap());
            acknowledged = (parts.next().unwrap(), parts.next().unwrap());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let collection = StoredCollection::open(&path, 1).unwrap();
    assert!(collection.last_operation() >= acknowledged.0);
    assert!(collection.segment().len() as u64 >= acknowledged.1);
    for id in 0..acknowledged.1 {
        assert!(
            collection.segment().node_of(PointId::Num(id)).is_some(),
            "point {id} was acknowledged but lost"
        );
    }
}

#[test]
fn a_damaged_record_with_records_after_it_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs");
    let mut collection = StoredCollection::create(&path, params(), 1).unwrap();
    for batch in 0..5 {
        upsert(&mut collection, batch * 10..batch * 10 + 10);
    }
    drop(collection);
    let wal = path.join("wal.log");
    let mut bytes = std::fs::read(&wal).unwrap();
    // A byte inside the second record's body: three complete records follow it.
    let second = bytes.len() / 5 + 40;
    bytes[second] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();
    let error = StoredCollection::open(&path, 1)
        .err()
        .expect("a damaged log must not open");
    assert!(error.to_string().contains("fails its checks"), "{error}");
    // Nothing was cut: the bytes are all still there for whoever repairs it.
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    // A flipped bit in the first record's length: refused too, not taken for a torn tail.
    bytes[second] ^= 0x01;
    bytes[3] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();
    assert!(StoredCollection::open(&path, 1).is_err());
}

#[test]
fn collections_with_the_longest_names_are_created_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = loopline_vector_index::VectorStore::open(&dir.path().join("vectors"), 1).unwrap();
    let name = "y".repeat(loopline_vector_index::storage::catalog::MAX_NAME);
    assert!(store.create(&name, params()).unwrap());
    assert!(store.delete(&name).unwrap());
    assert!(store.names().is_empty());
    let reopened = loopline_vector_index::VectorStore::open(&dir.path().join("vectors"), 1).unwrap();
    assert!(reopened.names().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("vectors")).unwrap().count(), 0);
}

#[test]
fn a_collection_deleted_mid_write_never_touches_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vectors");
    let store = std::sync::Arc::new(loopline_vector_index::VectorStore::open(&root, 1).unwrap());
    assert!(store.create("race", params()).unwrap());
    let old = store.get("race").unwrap();
    let mut writing = old.write().unwrap();
    upsert(&mut writing, 0..30);
    // Deleting waits for the write in progress, but frees the name at once.
    let deleting = {
        let store = store.clone();
        std::thread::spawn(move || store.delete("race").unwrap())
    };
    while store.get("race").is_some() {
        std::thread::yield_now();
    }
    assert!(store.create("race", params()).unwrap());
    upsert(&mut store.get("race").unwrap().write().unwrap(), 100..101);
    // The old collection's last write ends with a checkpoint, in its own directory.
    upsert(&mut writing, 30..40);
    writing.checkpoint().unwrap();
    drop(writing);
    assert!(deleting.join().unwrap());
    // Requests that still hold the old collection find it gone.
    assert!(old.read().is_none());
    drop(store);
    let reopened = loopline_vector_index::VectorStore::open(&root, 1).unwrap();
    assert_eq!(reopened.names(), ["race"]);
    let collection = reopened.get("race").unwrap();
    let stored = collection.read().unwrap();
    assert_eq!(stored.segment().len(), 1);
    assert!(stored.segment().node_of(PointId::Num(100)).is_some());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Log records whose headers and checksums are right but whose bytes are anything (lying counts, huge
    /// declared lengths): opening answers an error or a collection, never a panic.
    #[test]
    fn log_records_with_any_bytes_are_refused_or_replayed(
        bodies in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 1..4),
        tags in proptest::collection::vec(0u8..10, 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        drop(StoredCollection::create(&path, params(), 1).unwrap());
        let mut log = Vec::new();
        for (number, (body, tag)) in bodies.iter().zip(&tags).enumerate() {
            let mut record = vec![*tag];
            record.extend_from_slice(body);
            let operation = number as u64 + 1;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&operation.to_le_bytes());
            hasher.update(&record);
            let length = record.len() as u32;
            log.extend_from_slice(&length.to_le_bytes());
            log.extend_from_slice(&(!length).to_le_bytes());
            log.extend_from_slice(&hasher.finalize().to_le_bytes());
            log.extend_from_slice(&operation.to_le_bytes());
            log.extend_from_slice(&record);
        }
        std::fs::write(path.join("wal.log"), &log).unwrap();
        let _ = StoredCollection::open(&path, 1);
    }
}
