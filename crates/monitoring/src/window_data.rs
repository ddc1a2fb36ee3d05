//! The rows of one window, read from the prediction log: for a time window the hour partitions it covers,
//! filtered to its span; for a count window the next predictions in the order the log wrote them, from a
//! cursor kept in the monitor's state. Only answers served to callers count (shadow answers are compared
//! elsewhere).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use loopline_artifact_store::ArtifactStore;
use loopline_serving::log_reader::{LogFile, failures_prefix, log_files, predictions_prefix, read_log_file};
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
#[derive(Debug, Default)]
pub struct WindowRows {
    /// Served rows, as the log holds them.
    pub batches: Vec<RecordBatch>,
    /// Earliest and latest prediction time among them.
    pub span: Option<(i64, i64)>,
}

impl WindowRows {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
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
        self.batches.push(batch);
    }
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

fn timestamps(batch: &RecordBatch) -> Result<arrow_array::TimestampMillisecondArray, String> {
    batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .cloned()
        .ok_or_else(|| "a prediction log file has no millisecond timestamp column".to_string())
}

/// The served rows of `model` logged in `[start_ms, end_ms)`.
pub async fn time_window(
    store: &dyn ArtifactStore,
    model: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<WindowRows, String> {
    time_window_rows(store, model, (start_ms, end_ms), false).await
}

/// The rows of `model` logged in `[start, end)`, shadow answers too when `with_shadows`.
pub async fn time_window_rows(
    store: &dyn ArtifactStore,
    model: &str,
    (start_ms, end_ms): (i64, i64),
    with_shadows: bool,
) -> Result<WindowRows, String> {
    let first_hour = loopline_core::time::utc_hour(start_ms);
    let last_hour = loopline_core::time::utc_hour(end_ms - 1);
    let files = log_files(store, &predictions_prefix(model), Some(&first_hour), Some(&last_hour)).await?;
    let mut rows = WindowRows::default();
    for file in files {
        for batch in read_log_file(store, &file.path).await? {
            let times = timestamps(&batch)?;
            let inside = keep_rows(&batch, |row| {
                times.is_valid(row) && (start_ms..end_ms).contains(&times.value(row))
            })?;
            rows.push(if with_shadows { inside } else { served(&inside)? });
        }
    }
    Ok(rows)
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
) -> Result<Option<(WindowRows, LogCursor)>, String> {
    count_window_rows(store, model, cursor, count, false).await
}

/// As [`count_window`], keeping the shadow answers logged among those rows when `with_shadows`.
pub async fn count_window_rows(
    store: &dyn ArtifactStore,
    model: &str,
    cursor: &LogCursor,
    count: usize,
    with_shadows: bool,
) -> Result<Option<(WindowRows, LogCursor)>, String> {
    let mut rows = WindowRows::default();
    let mut taken = 0usize;
    for file in files_from(store, model, cursor).await? {
        let batches = read_log_file(store, &file.path).await?;
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
                    file: file.name,
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
        for batch in read_log_file(store, &file.path).await? {
            let times = timestamps(&batch)?;
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
