//! The rows of one window, read from the prediction log: for a time window the hour partitions it covers,
//! filtered to its span; for a count window the next predictions in the order the log wrote them, from a
//! cursor kept in the monitor's state. Only answers served to callers count (shadow answers are compared
//! elsewhere).
//!
//! Memory stays bounded whatever a window's size: rows, requests and the span are counted exactly as files
//! stream past, but at most `sample_rows` rows are kept. Requests are sampled whole by a hash of their id
//! (FNV-1a, so the sample is the same on every machine and every run): a request is kept while its hash
//! falls under the sampling rate, and the rate halves whenever the kept rows pass the limit. The sample of a
//! longer span is therefore the union of its parts' samples thinned to one rate: samples merge.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use futures::StreamExt;
use loopline_artifact_store::ArtifactStore;
use loopline_serving::log_reader::{
    LogFile, LogReadError, failures_prefix, log_files, predictions_prefix, read_log_part,
};
use serde::{Deserialize, Serialize};

/// Where a count window's next rows begin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    /// The file (its name) the next window begins in; files sorting before it are consumed.
    pub file: String,
    /// Rows of that file already consumed.
    pub offset: usize,
}

/// Rows read for a window.
#[derive(Debug)]
pub struct WindowRows {
    /// Served rows kept (all of them, or the sample), as the log holds them.
    pub batches: Vec<RecordBatch>,
    /// Earliest and latest prediction time among all rows seen.
    pub span: Option<(i64, i64)>,
    /// Rows seen, kept or not.
    pub seen_rows: u64,
    /// Requests seen (rows at position 0 of their request).
    pub seen_requests: u64,
    /// Share of requests kept: 1 until the window outgrows the limit.
    pub rate: f64,
    /// Most rows kept; 0 keeps every row.
    pub limit: usize,
    /// Log files left out because they cannot be read (damaged, not Parquet, too large), with why.
    pub unreadable: Vec<String>,
}

impl Default for WindowRows {
    fn default() -> Self {
        WindowRows::sampled(0)
    }
}

/// A stable 64-bit FNV-1a hash of a request id, as a number in [0, 1).
pub fn request_key(request_id: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

impl WindowRows {
    /// An empty window that keeps at most `limit` rows (0: all).
    pub fn sampled(limit: usize) -> WindowRows {
        WindowRows {
            batches: Vec::new(),
            span: None,
            seen_rows: 0,
            seen_requests: 0,
            rate: 1.0,
            limit,
            unreadable: Vec::new(),
        }
    }

    /// A window holding exactly these rows (a slice of another window).
    pub fn of(batches: Vec<RecordBatch>, span: Option<(i64, i64)>) -> WindowRows {
        let mut rows = WindowRows::sampled(0);
        rows.span = span;
        rows.seen_rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        rows.seen_requests = batches.iter().map(first_rows).sum();
        rows.batches = batches;
        rows
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The request ids among the kept rows (the labels worth reading).
    pub fn request_ids(&self) -> loopline_serving::log_reader::RequestSet {
        self.batches
            .iter()
            .filter_map(|b| b.column_by_name("request_id").and_then(|c| c.as_string_opt::<i32>()))
            .flat_map(|ids| ids.iter().flatten())
            .map(str::to_string)
            .collect()
    }

    /// Kept rows per model version that answered them.
    pub fn version_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for batch in &self.batches {
            if let Some(column) = batch
                .column_by_name("model_version")
                .and_then(|c| c.as_string_opt::<i32>())
            {
                // Versions come in long runs: count a run, then look it up once.
                let mut run: Option<(&str, u64)> = None;
                for version in column.iter().flatten() {
                    match &mut run {
                        Some((current, length)) if *current == version => *length += 1,
                        _ => {
                            if let Some((finished, length)) = run.replace((version, 1)) {
                                *counts.entry(finished).or_insert(0) += length;
                            }
                        }
                    }
                }
                if let Some((finished, length)) = run {
                    *counts.entry(finished).or_insert(0) += length;
                }
            }
        }
        counts
            .into_iter()
            .map(|(version, count)| (version.to_string(), count))
            .collect()
    }

    /// Whether rows were left out.
    pub fn is_sampled(&self) -> bool {
        self.rate < 1.0
    }

    fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        if let Some(times) = batch
            .column_by_name("timestamp")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        {
            for time in times.iter().flatten() {
                self.span = Some(match self.span {
                    None => (time, time),
                    Some((low, high)) => (low.min(time), high.max(time)),
                });
            }
        }
        self.seen_rows += batch.num_rows() as u64;
        self.seen_requests += first_rows(&batch);
        if self.limit == 0 {
            self.batches.push(batch);
            return;
        }
        if self.rate >= 1.0 {
            // Every request is under a rate of 1: nothing to hash or filter.
            self.batches.push(batch);
        } else if let Some(kept) = under_rate(&batch, self.rate) {
            self.batches.push(kept);
        }
        while self.rows() > self.limit && self.rate > f64::MIN_POSITIVE {
            self.rate /= 2.0;
            let rate = self.rate;
            self.batches = std::mem::take(&mut self.batches)
                .iter()
                .filter_map(|b| under_rate(b, rate))
                .collect();
        }
    }
}

/// Rows at position 0 of their request (one per request).
fn first_rows(batch: &RecordBatch) -> u64 {
    match batch
        .column_by_name("row")
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
    {
        Some(positions) => positions.iter().filter(|p| *p == Some(0)).count() as u64,
        None => batch.num_rows() as u64,
    }
}

/// The rows of requests whose key falls under `rate` (none kept: `None`).
fn under_rate(batch: &RecordBatch, rate: f64) -> Option<RecordBatch> {
    let ids = batch
        .column_by_name("request_id")
        .and_then(|c| c.as_string_opt::<i32>())?;
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|row| Some(ids.is_valid(row) && request_key(ids.value(row)) < rate))
        .collect();
    arrow_select::filter::filter_record_batch(batch, &mask)
        .ok()
        .filter(|kept| kept.num_rows() > 0)
}

/// Keeps rows where `keep` holds.
fn keep_rows(batch: &RecordBatch, keep: impl Fn(usize) -> bool) -> Result<RecordBatch, String> {
    let mask: BooleanArray = (0..batch.num_rows()).map(|row| Some(keep(row))).collect();
    arrow_select::filter::filter_record_batch(batch, &mask).map_err(|e| e.to_string())
}

/// Which rows answered callers (the `role` column; files without it predate shadows and were all served).
fn served(batch: &RecordBatch) -> Result<RecordBatch, String> {
    let Some(roles) = batch
        .column_by_name("role")
        .and_then(|c| c.as_string_opt::<i32>().cloned())
    else {
        return Ok(batch.clone());
    };
    keep_rows(batch, |row| !roles.is_valid(row) || roles.value(row) != "shadow")
}

/// A batch's prediction times; a file without them is noted in `rows` as unreadable (`None`).
fn timestamps(
    batch: &RecordBatch,
    path: &str,
    rows: &mut WindowRows,
) -> Option<arrow_array::TimestampMillisecondArray> {
    let times = batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .cloned();
    if times.is_none() {
        let why = format!("{path} has no millisecond timestamp column");
        tracing::warn!(problem = %why, "a prediction log file is left out of a monitor window");
        rows.unreadable.push(why);
    }
    times
}

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
    (start_ms, end_ms): (i64, i64),
    with_shadows: bool,
    reading: Reading,
) -> Result<WindowRows, String> {
    let first_hour = loopline_core::time::utc_hour(start_ms);
    let last_hour = loopline_core::time::utc_hour(end_ms - 1);
    let files = log_files(store, &predictions_prefix(model), Some(&first_hour), Some(&last_hour)).await?;
    let mut reading = reading;
    'attempt: loop {
        let mut rows = WindowRows::sampled(reading.limit);
        // Two files decode at once (on the blocking pool), in order.
        let mut reads = futures::stream::iter(file_reads(store, &files, reading.columns())).buffered(2);
        let mut index = 0;
        while let Some(read) = reads.next().await {
            let file = &files[index];
            index += 1;
            let Some(batches) = readable(read, &mut rows)? else {
                continue;
            };
            for batch in batches {
                let Some(times) = timestamps(&batch, &file.path, &mut rows) else {
                    break;
                };
                // Most files lie wholly inside their hour's window: no row-by-row filter for them.
                let wholly_inside =
                    times.null_count() == 0 && times.values().iter().all(|time| (start_ms..end_ms).contains(time));
                let inside = if wholly_inside {
                    batch
                } else {
                    keep_rows(&batch, |row| {
                        times.is_valid(row) && (start_ms..end_ms).contains(&times.value(row))
                    })?
                };
                let inside = if with_shadows { inside } else { served(&inside)? };
                if !reading.reads_ids() && reading.limit > 0 && rows.rows() + inside.num_rows() > reading.limit {
                    // The window outgrows its sample: requests are sampled by id, so read again with the ids
                    // (what was read so far is below the limit: the waste is bounded).
                    reading.ids = true;
                    continue 'attempt;
                }
                rows.push(inside);
            }
        }
        return Ok(rows);
    }
}

/// A file's batches; a file that cannot be read is noted in `rows` and skipped (`None`), so one damaged file
/// costs its own rows, never the window. A store failure is the caller's (the window is tried again later).
fn readable(
    read: Result<Vec<RecordBatch>, LogReadError>,
    rows: &mut WindowRows,
) -> Result<Option<Vec<RecordBatch>>, String> {
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

/// A boxed read per file (boxed so the stream that runs them is `Send` for any lifetime of its borrows).
type FileRead<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RecordBatch>, LogReadError>> + Send + 'a>>;

fn file_reads<'a>(
    store: &'a dyn ArtifactStore,
    files: &'a [LogFile],
    keep: Option<&'a [&'a str]>,
) -> Vec<FileRead<'a>> {
    files
        .iter()
        .map(|file| Box::pin(read_log_part(store, &file.path, keep)) as FileRead<'a>)
        .collect()
}

/// The columns a window needs when it reads no inputs: ids, times, versions, roles, positions, latency and
/// every output.
const WITHOUT_INPUTS: [&str; 7] = [
    "timestamp",
    "model_version",
    "role",
    "row",
    "latency_ms",
    "output.",
    "request_id",
];

/// How a window's rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Most rows kept (0: all).
    pub limit: usize,
    /// Whether the inputs are read (drift, quality, slices and suites need them).
    pub inputs: bool,
    /// Whether request ids are read (labels are joined by them); a time window that has to sample reads them
    /// anyway.
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
        let roles = all
            .column_by_name("role")
            .and_then(|c| c.as_string_opt::<i32>().cloned());
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
        rows.push(if with_shadows { slice } else { served(&slice)? });
        if taken == count {
            return Ok(Some((
                rows,
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

    fn batch(ids: &[String]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(StringArray::from(ids.to_vec())) as arrow_array::ArrayRef,
            ),
            ("row", Arc::new(Int64Array::from(vec![0i64; ids.len()]))),
        ])
        .unwrap()
    }

    #[test]
    fn samples_stay_under_the_limit_and_counts_stay_exact() {
        let mut rows = WindowRows::sampled(1_000);
        for chunk in 0..50 {
            let ids: Vec<String> = (0..1_000).map(|i| format!("req-{chunk}-{i}")).collect();
            rows.push(batch(&ids));
        }
        assert_eq!((rows.seen_rows, rows.seen_requests), (50_000, 50_000));
        assert!(rows.rows() <= 1_000 && rows.rows() > 250, "{}", rows.rows());
        assert!(rows.is_sampled());
        // The sample is the requests under the final rate, whatever order they came in.
        let mut again = WindowRows::sampled(1_000);
        for chunk in (0..50).rev() {
            let ids: Vec<String> = (0..1_000).map(|i| format!("req-{chunk}-{i}")).collect();
            again.push(batch(&ids));
        }
        assert_eq!((rows.rate, rows.rows()), (again.rate, again.rows()));
    }

    /// A store holding one log file of `rows` single-row requests of model `m`, all in one hour.
    async fn logged(rows: usize) -> (tempfile::TempDir, loopline_artifact_store::ObjectArtifactStore, i64) {
        use arrow_array::{Float64Array, TimestampMillisecondArray};
        let start = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000;
        let batch = RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("req-{i}")))) as arrow_array::ArrayRef,
            ),
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
        let (_directory, store, start) = logged(5_000).await;
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
    }

    #[tokio::test]
    async fn a_damaged_log_file_costs_its_own_rows_and_is_named() {
        let (_directory, store, start) = logged(300).await;
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

    #[test]
    fn request_keys_are_stable() {
        assert_eq!(request_key("a"), request_key("a"));
        assert!((0.0..1.0).contains(&request_key("")));
        assert_ne!(request_key("a"), request_key("b"));
    }
}
