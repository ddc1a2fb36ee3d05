//! The rows of one window, read from the prediction log: for a time window the hour partitions it covers,
//! filtered to its span; for a count window the next predictions in the order the log wrote them, from a
//! cursor kept in the monitor's state. Only answers served to callers count (shadow answers are compared
//! elsewhere).
//!
//! Rows are counted exactly and sampled to a bounded size as they stream past (see [`crate::window_rows`]).

use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, RecordBatch};
use futures::StreamExt;
use loopline_artifact_store::ArtifactStore;
use loopline_serving::log_reader::{
    LogFile, LogReadError, REQUEST_KEY, failures_prefix, log_files, predictions_prefix, read_log_part,
    read_log_part_with,
};

use crate::window_rows::Part;
use crate::window_sink::{Known, WindowSink};
use serde::{Deserialize, Serialize};

/// Where a count window's next rows begin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    /// The file (its name) the next window begins in; files sorting before it are consumed.
    pub file: String,
    /// Rows of that file already consumed.
    pub offset: usize,
}

pub use crate::window_rows::{WindowRows, key_fraction, request_key};

/// Log files decoded at once, on the blocking pool (each batch counted and sampled where it is decoded).
const PARALLEL_READS: usize = 3;

/// The served rows of `model` logged in `[start_ms, end_ms)`.
pub async fn time_window(
    store: &dyn ArtifactStore,
    model: &str,
    (start_ms, end_ms): (i64, i64),
    reading: Reading,
) -> Result<WindowRows, String> {
    time_window_rows(store, model, (start_ms, end_ms), false, reading).await
}

/// The rows of `model` logged in `[start, end)`, shadow answers too when `with_shadows`.
pub async fn time_window_rows(
    store: &dyn ArtifactStore,
    model: &str,
    span: (i64, i64),
    with_shadows: bool,
    reading: Reading,
) -> Result<WindowRows, String> {
    time_window_from(store, model, span, (with_shadows, reading), 0).await
}

/// As [`time_window_rows`], guessing that the window's sampling rate halves at least `floor` times (the rate
/// a window like it reached): rows under no such rate are dropped as they are decoded. Every row is still
/// counted by its level, so the rate the window needs is known exactly; when it proves higher than the guess
/// the window is read again without one, so the sample is always the one an unguided read gives.
pub async fn time_window_from(
    store: &dyn ArtifactStore,
    model: &str,
    (start_ms, end_ms): (i64, i64),
    (with_shadows, reading): (bool, Reading),
    floor: usize,
) -> Result<WindowRows, String> {
    let first_hour = loopline_core::time::utc_hour(start_ms);
    let last_hour = loopline_core::time::utc_hour(end_ms - 1);
    let files = log_files(store, &predictions_prefix(model), Some(&first_hour), Some(&last_hour)).await?;
    let mut reading = reading;
    let mut floor = if reading.limit == 0 { 0 } else { floor };
    'attempt: loop {
        let mut rows = WindowRows::sampled(reading.limit);
        // How far the window's rate has halved (or is expected to), read by each batch as it is decoded.
        let halvings = Arc::new(AtomicUsize::new(floor));
        let columns = reading.columns();
        let reads: Vec<Read<'_, Part>> = files
            .iter()
            .map(|file| {
                let sink = WindowSink {
                    span: (start_ms, end_ms),
                    with_shadows,
                    halvings: halvings.clone(),
                    known: Known::default(),
                };
                Box::pin(read_log_part_with(store, &file.path, columns, sink)) as Read<'_, Part>
            })
            .collect();
        let mut reads = futures::stream::iter(reads).buffered(PARALLEL_READS);
        let mut index = 0;
        while let Some(read) = reads.next().await {
            let file = &files[index];
            index += 1;
            let Some(parts) = readable(read, &mut rows)? else {
                continue;
            };
            for part in parts {
                if part.no_times {
                    let why = format!("{} has no millisecond timestamp column", file.path);
                    tracing::warn!(problem = %why, "a prediction log file is left out of a monitor window");
                    rows.unreadable.push(why);
                    break;
                }
                let must_thin = rows.seen_rows + part.seen_rows > reading.limit as u64;
                if reading.limit > 0 && !reading.reads_ids() && (part.unkeyed || rows.unkeyed) && must_thin {
                    // Files written before the log held request keys are sampled by their ids: read again
                    // with them (what was read so far is below the limit: the waste is bounded).
                    reading.ids = true;
                    continue 'attempt;
                }
                rows.absorb(part);
                halvings.store(rows.halvings().max(floor), Ordering::Relaxed);
            }
        }
        if rows.halvings() < floor {
            // Rows dropped under the guessed rate belong in the sample: read again without it.
            floor = 0;
            continue 'attempt;
        }
        return Ok(rows.finish());
    }
}

/// A boxed read of one log file (boxed so the stream that runs them is `Send` for any lifetime of its borrows).
type Read<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<T>, LogReadError>> + Send + 'a>>;

/// A file's batches; a file that cannot be read is noted in `rows` and skipped (`None`), so one damaged file
/// costs its own rows, never the window. A store failure is the caller's (the window is tried again later).
fn readable<T>(read: Result<Vec<T>, LogReadError>, rows: &mut WindowRows) -> Result<Option<Vec<T>>, String> {
    match read {
        Ok(batches) => Ok(Some(batches)),
        Err(LogReadError::Unreadable(why)) => {
            tracing::warn!(problem = %why, "a prediction log file is left out of a monitor window");
            rows.unreadable.push(why);
            Ok(None)
        }
        Err(LogReadError::Storage(why)) => Err(why),
    }
}

fn file_reads<'a>(
    store: &'a dyn ArtifactStore,
    files: &'a [LogFile],
    keep: Option<&'a [&'a str]>,
) -> Vec<Read<'a, RecordBatch>> {
    files
        .iter()
        .map(|file| {
            let decode = loopline_serving::parquet_parts::EachBatch(|batch| {
                crate::background::yield_to_serving();
                Ok(batch)
            });
            Box::pin(read_log_part_with(store, &file.path, keep, decode)) as Read<'a, RecordBatch>
        })
        .collect()
}

/// The columns a window needs when it reads no inputs: ids, times, versions, roles, positions, latency and
/// every output.
const WITHOUT_INPUTS: [&str; 8] = [
    "timestamp",
    "model_version",
    "role",
    "row",
    "latency_ms",
    "output.",
    REQUEST_KEY,
    "request_id",
];

/// How a window's rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Most rows kept (0: all).
    pub limit: usize,
    /// Whether the inputs are read (drift, quality, slices and suites need them).
    pub inputs: bool,
    /// Whether request ids are read (labels are joined by them); a time window that has to sample log files
    /// written without request keys reads them anyway.
    pub ids: bool,
}

impl Reading {
    /// What a monitor's checks need.
    pub fn for_spec(spec: &crate::spec::MonitorSpec) -> Reading {
        Reading {
            limit: spec.sample_rows,
            inputs: spec.drift.enabled || !spec.slices.is_empty() || spec.expectations.is_some(),
            ids: spec.task.is_some(),
        }
    }

    /// Every column, or only those the checks need (request ids last, left out when not needed).
    fn columns(self) -> Option<&'static [&'static str]> {
        match (self.inputs, self.ids) {
            (true, _) => None,
            (false, true) => Some(WITHOUT_INPUTS.as_slice()),
            (false, false) => Some(&WITHOUT_INPUTS[..WITHOUT_INPUTS.len() - 1]),
        }
    }

    fn reads_ids(self) -> bool {
        self.inputs || self.ids
    }
}

/// Files a count window may read from: every file at or after the cursor, in the order written. Files are
/// looked for in hour partitions from a day before the cursor's file was written (an entry's hour is never
/// after its file's write time).
async fn files_from(store: &dyn ArtifactStore, model: &str, cursor: &LogCursor) -> Result<Vec<LogFile>, String> {
    let written_ms = cursor
        .file
        .strip_prefix("part-")
        .and_then(|rest| rest.get(..13))
        .and_then(|digits| digits.parse::<i64>().ok());
    let since = written_ms.map(|ms| loopline_core::time::utc_hour(ms - 24 * 3_600_000));
    let mut files = log_files(store, &predictions_prefix(model), since.as_deref(), None).await?;
    files.retain(|f| f.name >= cursor.file);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The next `count` served rows after `cursor`, and the cursor after them; `None` while fewer are logged.
pub async fn count_window(
    store: &dyn ArtifactStore,
    model: &str,
    cursor: &LogCursor,
    count: usize,
    reading: Reading,
) -> Result<Option<(WindowRows, LogCursor)>, String> {
    count_window_rows(store, model, cursor, (count, reading), false).await
}

/// As [`count_window`], keeping the shadow answers logged among those rows when `with_shadows`.
pub async fn count_window_rows(
    store: &dyn ArtifactStore,
    model: &str,
    cursor: &LogCursor,
    (count, reading): (usize, Reading),
    with_shadows: bool,
) -> Result<Option<(WindowRows, LogCursor)>, String> {
    let mut rows = WindowRows::sampled(reading.limit);
    let mut taken = 0usize;
    let files = files_from(store, model, cursor).await?;
    // Rows are sampled as they come, so by request id.
    let reading = Reading { ids: true, ..reading };
    let mut reads = futures::stream::iter(file_reads(store, &files, reading.columns())).buffered(2);
    for file in &files {
        let Some(read) = reads.next().await else { break };
        let Some(batches) = readable(read, &mut rows)? else {
            continue;
        };
        let all = arrow_select::concat::concat_batches(
            &batches
                .first()
                .map(RecordBatch::schema)
                .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty())),
            &batches,
        )
        .map_err(|e| format!("{}: {e}", file.path))?;
        let mut offset = if file.name == cursor.file { cursor.offset } else { 0 };
        // Offsets count every row of the file; walk them and take served ones.
        let roles = crate::window_rows::text_column(&all, "role");
        let is_served = |row: usize| {
            roles
                .as_ref()
                .is_none_or(|r| !r.is_valid(row) || r.value(row) != "shadow")
        };
        let start = offset;
        while offset < all.num_rows() && taken < count {
            if is_served(offset) {
                taken += 1;
            }
            offset += 1;
        }
        let slice = all.slice(start, offset - start);
        rows.push(slice, with_shadows);
        if taken == count {
            return Ok(Some((
                rows.finish(),
                LogCursor {
                    file: file.name.clone(),
                    offset,
                },
            )));
        }
    }
    Ok(None)
}

/// The kinds of the failed requests of `model` that arrived in `[start_ms, end_ms)`.
pub async fn failures(
    store: &dyn ArtifactStore,
    model: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<String>, String> {
    if end_ms <= start_ms {
        return Ok(Vec::new());
    }
    let first_hour = loopline_core::time::utc_hour(start_ms);
    let last_hour = loopline_core::time::utc_hour(end_ms - 1);
    let mut kinds = Vec::new();
    for file in log_files(store, &failures_prefix(model), Some(&first_hour), Some(&last_hour)).await? {
        let batches = match read_log_part(store, &file.path, None).await {
            Ok(batches) => batches,
            // A damaged failure file costs its own entries only.
            Err(LogReadError::Unreadable(why)) => {
                tracing::warn!(problem = %why, "a failure log file is left out of a monitor window");
                continue;
            }
            Err(LogReadError::Storage(why)) => return Err(why),
        };
        for batch in batches {
            let Some(times) = batch
                .column_by_name("timestamp")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            else {
                continue;
            };
            let Some(kind) = batch.column_by_name("kind").and_then(|c| c.as_string_opt::<i32>()) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                if times.is_valid(row) && (start_ms..end_ms).contains(&times.value(row)) && kind.is_valid(row) {
                    kinds.push(kind.value(row).to_string());
                }
            }
        }
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    /// A store holding one log file of `rows` single-row requests of model `m`, all in one hour, with the
    /// request keys serving writes when `keyed` (else as files written before them).
    async fn logged(
        rows: usize,
        keyed: bool,
    ) -> (tempfile::TempDir, loopline_artifact_store::ObjectArtifactStore, i64) {
        use arrow_array::{Float64Array, TimestampMillisecondArray, UInt64Array};
        let start = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000;
        let ids: Vec<String> = (0..rows).map(|i| format!("req-{i}")).collect();
        let keys = UInt64Array::from_iter_values(ids.iter().map(|id| loopline_serving::log_reader::request_hash(id)));
        let batch = RecordBatch::try_from_iter([
            ("request_id", Arc::new(StringArray::from(ids)) as arrow_array::ArrayRef),
            (REQUEST_KEY, Arc::new(keys)),
            (
                "timestamp",
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    (0..rows).map(|i| start + i as i64),
                )),
            ),
            ("row", Arc::new(Int64Array::from(vec![0i64; rows]))),
            (
                "output.p",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
            ),
        ])
        .unwrap();
        let batch = if keyed {
            batch
        } else {
            batch.project(&[0, 2, 3, 4]).unwrap()
        };
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let directory = tempfile::tempdir().unwrap();
        let store = loopline_artifact_store::ObjectArtifactStore::open(directory.path().to_str().unwrap()).unwrap();
        let hour = loopline_core::time::utc_hour(start);
        let path = format!("{}/hour={hour}/part-{start}-a.parquet", predictions_prefix("m"));
        let path = loopline_artifact_store::ArtifactPath::parse(&path).unwrap();
        let body = futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed();
        store.put(&path, body).await.unwrap();
        (directory, store, start)
    }

    #[tokio::test]
    async fn windows_read_ids_only_when_they_must_sample_or_join_labels() {
        let (_directory, store, start) = logged(5_000, false).await;
        let span = (start, start + 3_600_000);
        let read = |limit, ids| {
            time_window(
                &store,
                "m",
                span,
                Reading {
                    limit,
                    inputs: false,
                    ids,
                },
            )
        };
        let has_ids = |rows: &WindowRows| rows.batches.iter().all(|b| b.column_by_name("request_id").is_some());
        // Under the limit and no labels: no ids read, every row kept.
        let whole = read(10_000, false).await.unwrap();
        assert_eq!((whole.rows(), whole.seen_rows, whole.rate), (5_000, 5_000, 1.0));
        assert!(!whole.batches.iter().any(|b| b.column_by_name("request_id").is_some()));
        assert!(has_ids(&read(10_000, true).await.unwrap()));
        // Over the limit: read again with ids, and sampled exactly as a read that asked for them.
        let sampled = read(1_000, false).await.unwrap();
        let asked = read(1_000, true).await.unwrap();
        assert!(has_ids(&sampled) && sampled.is_sampled() && sampled.rows() <= 1_000);
        assert_eq!((sampled.seen_rows, sampled.seen_requests), (5_000, 5_000));
        assert_eq!((sampled.rate, sampled.request_ids()), (asked.rate, asked.request_ids()));
        // A log with request keys is sampled by them: the same requests, and no ids read.
        let (_keyed_directory, keyed_store, _) = logged(5_000, true).await;
        let reading = Reading {
            limit: 1_000,
            inputs: false,
            ids: false,
        };
        let by_keys = time_window(&keyed_store, "m", span, reading).await.unwrap();
        assert!(!by_keys.batches.iter().any(|b| b.column_by_name("request_id").is_some()));
        let values = |rows: &WindowRows| {
            let mut values: Vec<f64> = rows
                .batches
                .iter()
                .flat_map(|b| {
                    b.column_by_name("output.p")
                        .unwrap()
                        .as_primitive::<arrow_array::types::Float64Type>()
                        .values()
                        .to_vec()
                })
                .collect();
            values.sort_by(f64::total_cmp);
            values
        };
        assert_eq!(
            (by_keys.rate, by_keys.seen_rows, by_keys.seen_requests),
            (asked.rate, 5_000, 5_000)
        );
        assert_eq!(values(&by_keys), values(&asked));
        // A guessed rate, too low or too high, gives the same sample.
        for floor in [0, 1, by_keys.halvings(), by_keys.halvings() + 3] {
            let guessed = time_window_from(&keyed_store, "m", span, (false, reading), floor)
                .await
                .unwrap();
            assert_eq!(
                (guessed.rate, guessed.seen_rows),
                (by_keys.rate, 5_000),
                "floor {floor}"
            );
            assert_eq!(values(&guessed), values(&by_keys), "floor {floor}");
        }
    }

    #[tokio::test]
    async fn a_damaged_log_file_costs_its_own_rows_and_is_named() {
        let (_directory, store, start) = logged(300, false).await;
        let hour = loopline_core::time::utc_hour(start);
        let damaged = format!("{}/hour={hour}/part-{start}-b.parquet", predictions_prefix("m"));
        let path = loopline_artifact_store::ArtifactPath::parse(&damaged).unwrap();
        let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"not parquet")) }).boxed();
        store.put(&path, body).await.unwrap();
        for reading in [
            Reading {
                limit: 0,
                inputs: true,
                ids: true,
            },
            Reading {
                limit: 100_000,
                inputs: false,
                ids: false,
            },
        ] {
            let rows = time_window(&store, "m", (start, start + 3_600_000), reading)
                .await
                .unwrap();
            assert_eq!(rows.seen_rows, 300, "{reading:?}");
            assert_eq!(rows.unreadable.len(), 1, "{reading:?}");
            assert!(
                rows.unreadable[0].contains("part-") && rows.unreadable[0].contains("-b.parquet"),
                "{:?}",
                rows.unreadable
            );
        }
        let counted = count_window(
            &store,
            "m",
            &LogCursor::default(),
            200,
            Reading {
                limit: 0,
                inputs: true,
                ids: true,
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(counted.0.seen_rows, 200);
    }
}
