//! Reading the prediction log back: which files hold a model's predictions (by hour partition), their rows,
//! and the labels posted as feedback. Used by `loopline predictions export` and by the monitors.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use loopline_artifact_store::{ArtifactPath, ArtifactStore};

/// Request ids to values, hashed with foldhash (seeded per process, so callers' ids cannot be chosen to
/// collide; several times faster than the standard SipHash on the label joins of large windows).
pub type RequestMap<V> = HashMap<String, V, foldhash::fast::RandomState>;
/// A set of request ids (see [`RequestMap`]).
pub type RequestSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// A model name as its partition directory spells it (`predictions/model=<segment>`).
pub fn model_segment(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The directory holding a model's logged predictions.
pub fn predictions_prefix(model: &str) -> String {
    format!("predictions/model={}", model_segment(model))
}

/// The directory holding a model's failed requests.
pub fn failures_prefix(model: &str) -> String {
    format!("failures/model={}", model_segment(model))
}

/// The column holding each logged row's request key: [`request_hash`] of its request id. Monitors sample
/// whole requests by it without reading (or hashing) the ids; files written before it existed have only ids.
pub const REQUEST_KEY: &str = "request_key";

/// A stable 64-bit hash of a request id: the same on every machine, in every release and in every language
/// that writes the log (the benchmark's generator computes it too). FNV-1a over the id's bytes, then
/// SplitMix64's finaliser: FNV-1a alone leaves its top bits nearly unmoved by the last bytes, so ids that
/// differ only at the end (`req-1`, `req-2`, ...) would share them, and samples choose by the top bits.
pub fn request_hash(request_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Where feedback labels lie.
pub const FEEDBACK_PREFIX: &str = "feedback";

/// A Parquet file of the log, with the hour partition it lies in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogFile {
    /// The hour partition, `YYYY-MM-DDTHH`.
    pub hour: String,
    /// The file's full path in the artifact store.
    pub path: String,
    /// The file name (`part-<written-ms>-<uuid>.parquet`: names sort in the order files were written).
    pub name: String,
}

/// The hour partitions under `prefix` (`YYYY-MM-DDTHH`), in no particular order.
pub async fn log_hours(store: &dyn ArtifactStore, prefix: &str) -> Result<Vec<String>, String> {
    let root = ArtifactPath::parse(prefix).map_err(|e| e.to_string())?;
    Ok(store
        .list(&root)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| e.name.strip_prefix("hour=").map(str::to_string))
        .collect())
}

/// Files under `prefix/hour=H/` for the hours in range (inclusive), oldest hour first, then by name.
pub async fn log_files(
    store: &dyn ArtifactStore,
    prefix: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Vec<LogFile>, String> {
    let mut hours: Vec<String> = log_hours(store, prefix)
        .await?
        .into_iter()
        .filter(|h| since.is_none_or(|s| h.as_str() >= s) && until.is_none_or(|u| h.as_str() <= u))
        .collect();
    hours.sort();
    let mut found = Vec::new();
    for hour in hours {
        let directory = format!("{prefix}/hour={hour}");
        let path = ArtifactPath::parse(&directory).map_err(|e| e.to_string())?;
        let mut names: Vec<LogFile> = store
            .list(&path)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|e| !e.is_dir && e.name.ends_with(".parquet"))
            .map(|e| LogFile {
                hour: hour.clone(),
                path: format!("{directory}/{}", e.name),
                name: e.name,
            })
            .collect();
        names.sort();
        found.extend(names);
    }
    Ok(found)
}

/// The largest log file read (the writer makes files of `--prediction-log-flush-rows` rows, far smaller).
pub const MAX_LOG_FILE_BYTES: u64 = 1 << 30;

/// Every record batch of one log file.
pub async fn read_log_file(store: &dyn ArtifactStore, path: &str) -> Result<Vec<RecordBatch>, String> {
    read_log_columns(store, path, None).await
}

/// The record batches of one log file with only the columns `keep` names: a column is kept when its name is
/// in the list, or starts with an entry ending in `.` (`output.` keeps every output). `None` keeps them all.
/// Unread columns are neither read nor decoded.
pub async fn read_log_columns(
    store: &dyn ArtifactStore,
    path: &str,
    keep: Option<&[&str]>,
) -> Result<Vec<RecordBatch>, String> {
    read_log_part(store, path, keep)
        .await
        .map_err(LogReadError::into_message)
}

/// Why a log file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogReadError {
    /// The store failed (worth trying again later).
    Storage(String),
    /// The file itself is not a readable log file (too large, not Parquet, damaged): it will not read later
    /// either. The message names the file.
    Unreadable(String),
}

impl LogReadError {
    /// The message.
    pub fn into_message(self) -> String {
        match self {
            LogReadError::Storage(message) | LogReadError::Unreadable(message) => message,
        }
    }
}

/// As [`read_log_columns`], telling a store failure from a damaged file.
pub async fn read_log_part(
    store: &dyn ArtifactStore,
    path: &str,
    keep: Option<&[&str]>,
) -> Result<Vec<RecordBatch>, LogReadError> {
    read_log_part_with(store, path, keep, crate::parquet_parts::EachBatch(Ok)).await
}

/// As [`read_log_part`], handing each decoded batch to `sink` as it is decoded (on the thread that decodes
/// it, so callers that filter or summarise batches use every core the reads do), after letting it leave out
/// the columns the file's statistics already tell.
pub async fn read_log_part_with<S: crate::parquet_parts::PartSink>(
    store: &dyn ArtifactStore,
    path: &str,
    keep: Option<&[&str]>,
    sink: S,
) -> Result<Vec<S::Out>, LogReadError> {
    let artifact = ArtifactPath::parse(path).map_err(|e| LogReadError::Unreadable(e.to_string()))?;
    let keep = keep.map(|names| names.iter().map(|n| n.to_string()).collect());
    crate::parquet_parts::read_columns(store, &artifact, MAX_LOG_FILE_BYTES, keep, sink).await
}

/// One posted label.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedLabel {
    /// The label, as JSON text.
    pub label: String,
    /// When it was received, ms since the epoch.
    pub timestamp_ms: i64,
}

/// Labels by request id from feedback received in the hours `since` to `until` (inclusive; open when `None`;
/// the newest label wins), only for the `wanted` requests when given (so memory follows what is joined, not
/// every label ever posted).
pub async fn posted_labels(
    store: &dyn ArtifactStore,
    (since, until): (Option<&str>, Option<&str>),
    wanted: Option<&RequestSet>,
) -> Result<RequestMap<PostedLabel>, String> {
    let mut labels: RequestMap<PostedLabel> = RequestMap::default();
    for file in log_files(store, FEEDBACK_PREFIX, since, until).await? {
        for batch in read_log_file(store, &file.path).await? {
            let (Some(ids), Some(values)) = (batch.column_by_name("request_id"), batch.column_by_name("label")) else {
                continue;
            };
            let (Some(ids), Some(values)) = (ids.as_string_opt::<i32>(), values.as_string_opt::<i32>()) else {
                continue;
            };
            let times = batch
                .column_by_name("timestamp")
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::TimestampMillisecondType>());
            for row in 0..batch.num_rows() {
                if !ids.is_valid(row) || !values.is_valid(row) || wanted.is_some_and(|w| !w.contains(ids.value(row))) {
                    continue;
                }
                let timestamp_ms = times.map(|t| t.value(row)).unwrap_or_default();
                let posted = PostedLabel {
                    label: values.value(row).to_string(),
                    timestamp_ms,
                };
                match labels.get(ids.value(row)) {
                    Some(known) if known.timestamp_ms > timestamp_ms => {}
                    _ => {
                        labels.insert(ids.value(row).to_string(), posted);
                    }
                }
            }
        }
    }
    Ok(labels)
}
