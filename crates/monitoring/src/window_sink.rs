//! What a time window does with each log file it reads: before anything but the footer is read, the row
//! groups' statistics tell which bookkeeping columns need no decoding (times all inside the window, no shadow
//! answers, one model version, one row per request: the usual file); then each decoded batch is counted and
//! sampled ([`window_part`]) on the thread that decoded it, and the columns left undecoded are put back for
//! the kept rows as the constants they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use loopline_serving::parquet_parts::PartSink;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::window_rows::{Part, window_part};

/// What a file's footer told about its bookkeeping columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Known {
    /// Every row's time lies in the window, earliest and latest as given (the times are not read).
    pub times: Option<(i64, i64)>,
    /// No row is a shadow answer (the roles are not read).
    pub all_served: bool,
    /// The one model version of every row (the versions are not read).
    pub version: Option<String>,
    /// The one position of every row within its request (the positions are not read).
    pub position: Option<i64>,
}

/// Reads one file into window parts.
pub(crate) struct WindowSink {
    /// The window, `[start, end)`.
    pub span: (i64, i64),
    /// Whether shadow answers count.
    pub with_shadows: bool,
    /// How far the window's rate has halved when a batch is decoded.
    pub halvings: Arc<AtomicUsize>,
    /// What the footer told.
    pub known: Known,
}

impl PartSink for WindowSink {
    type Out = Part;

    fn plan(&mut self, metadata: &ParquetMetaData, roots: &mut Vec<usize>) {
        let Ok(schema) = parquet::arrow::parquet_to_arrow_schema(
            metadata.file_metadata().schema_descr(),
            metadata.file_metadata().key_value_metadata(),
        ) else {
            return;
        };
        let (start, end) = self.span;
        let mut known = Known::default();
        let mut dropped = Vec::new();
        for &root in roots.iter() {
            let Some(field) = schema.fields().get(root) else {
                continue;
            };
            // Statistics are looked up only for the four bookkeeping columns (a file may have thousands).
            if !["timestamp", "role", "model_version", "row"].contains(&field.name().as_str()) {
                continue;
            }
            let Some(stats) = root_statistics(metadata, root) else {
                continue;
            };
            match (field.name().as_str(), field.data_type()) {
                ("timestamp", DataType::Timestamp(TimeUnit::Millisecond, _)) => {
                    if let Some((low, high)) =
                        int_bounds(&stats, false).filter(|(low, high)| start <= *low && *high < end)
                    {
                        known.times = Some((low, high));
                        dropped.push(root);
                    }
                }
                ("role", DataType::Utf8) if !self.with_shadows => {
                    // Bounds stay bounds even when truncated: "shadow" outside them is in no row.
                    let outside = stats.iter().all(|s| match (s.min_bytes_opt(), s.max_bytes_opt()) {
                        (Some(min), Some(max)) => b"shadow".as_slice() < min || max < b"shadow".as_slice(),
                        _ => false,
                    });
                    if outside {
                        known.all_served = true;
                        dropped.push(root);
                    }
                }
                ("model_version", DataType::Utf8) => {
                    if let Some(version) = one_string(&stats) {
                        known.version = Some(version);
                        dropped.push(root);
                    }
                }
                ("row", DataType::Int64) => {
                    if let Some((low, _)) = int_bounds(&stats, true).filter(|(low, high)| low == high) {
                        known.position = Some(low);
                        dropped.push(root);
                    }
                }
                _ => {}
            }
        }
        // Times are needed to tell which rows count while some rows may be shadows.
        if known.times.is_some() && !known.all_served && !self.with_shadows {
            known.times = None;
            dropped.retain(|root| schema.fields().get(*root).is_none_or(|f| f.name() != "timestamp"));
        }
        roots.retain(|root| !dropped.contains(root));
        self.known = known;
    }

    fn batch(&mut self, batch: RecordBatch) -> Result<Part, String> {
        crate::background::yield_to_serving();
        let halvings = self.halvings.load(Ordering::Relaxed);
        let mut part = window_part(batch, Some(self.span), self.with_shadows, halvings, &self.known)?;
        if let Some(kept) = part.kept.take() {
            part.kept = Some(restore(kept, &self.known)?);
        }
        Ok(part)
    }
}

/// Each row group's statistics of a root column that is a single leaf (`None` when any is missing).
fn root_statistics(metadata: &ParquetMetaData, root: usize) -> Option<Vec<Statistics>> {
    let schema = metadata.file_metadata().schema_descr();
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|leaf| schema.get_column_root_idx(*leaf) == root)
        .collect();
    let [leaf] = leaves.as_slice() else {
        return None;
    };
    metadata
        .row_groups()
        .iter()
        .map(|group| group.columns().get(*leaf).and_then(|c| c.statistics()).cloned())
        .collect()
}

/// The smallest and largest value of a 64-bit integer column over its row groups, when every row group has
/// no nulls (and, when `exact`, exact bounds).
fn int_bounds(stats: &[Statistics], exact: bool) -> Option<(i64, i64)> {
    let mut bounds: Option<(i64, i64)> = None;
    for statistics in stats {
        let Statistics::Int64(values) = statistics else {
            return None;
        };
        if values.null_count_opt() != Some(0) || (exact && !(values.min_is_exact() && values.max_is_exact())) {
            return None;
        }
        let (low, high) = (*values.min_opt()?, *values.max_opt()?);
        bounds = Some(bounds.map_or((low, high), |(l, h)| (l.min(low), h.max(high))));
    }
    bounds
}

/// The one value of a string column with no nulls whose exact bounds are equal in every row group.
fn one_string(stats: &[Statistics]) -> Option<String> {
    let mut value: Option<&[u8]> = None;
    for statistics in stats {
        let Statistics::ByteArray(values) = statistics else {
            return None;
        };
        if values.null_count_opt() != Some(0) || !(values.min_is_exact() && values.max_is_exact()) {
            return None;
        }
        let (min, max) = (statistics.min_bytes_opt()?, statistics.max_bytes_opt()?);
        if min != max || value.is_some_and(|v| v != min) {
            return None;
        }
        value = Some(min);
    }
    value.and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string)
}

/// The kept rows with the columns left undecoded put back as their constant values.
fn restore(kept: RecordBatch, known: &Known) -> Result<RecordBatch, String> {
    let rows = kept.num_rows();
    let mut fields: Vec<Arc<Field>> = kept.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = kept.columns().to_vec();
    if let Some(version) = &known.version {
        fields.push(Arc::new(Field::new("model_version", DataType::Utf8, true)));
        columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            version, rows,
        ))));
    }
    if let Some(position) = known.position {
        fields.push(Arc::new(Field::new("row", DataType::Int64, true)));
        columns.push(Arc::new(Int64Array::from_value(position, rows)));
    }
    if fields.len() == kept.num_columns() {
        return Ok(kept);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window_data::{Reading, WindowRows, time_window_rows};
    use arrow_array::{Float64Array, TimestampMillisecondArray, UInt64Array};
    use futures::StreamExt;
    use loopline_serving::log_reader::{REQUEST_KEY, predictions_prefix, request_hash};

    const HOUR: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000;

    /// A log file of `rows` requests: times from `first` a millisecond apart, versions and roles as given
    /// (cycled), `positions` rows per request.
    fn file(rows: usize, first: i64, versions: &[&str], roles: &[&str], positions: i64) -> RecordBatch {
        let ids: Vec<String> = (0..rows)
            .map(|i| format!("r{first}-{}", i as i64 / positions))
            .collect();
        RecordBatch::try_from_iter([
            (
                REQUEST_KEY,
                Arc::new(UInt64Array::from_iter_values(ids.iter().map(|id| request_hash(id)))) as ArrayRef,
            ),
            (
                "timestamp",
                Arc::new(
                    TimestampMillisecondArray::from_iter_values((0..rows).map(|i| first + i as i64))
                        .with_timezone("UTC"),
                ),
            ),
            (
                "model_version",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| versions[i % versions.len()]),
                )),
            ),
            (
                "role",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| roles[i % roles.len()]))),
            ),
            (
                "row",
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64 % positions))),
            ),
            (
                "latency_ms",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
            ),
            (
                "output.p",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64 / 10.0))),
            ),
        ])
        .unwrap()
    }

    async fn store(
        files: &[RecordBatch],
        statistics: bool,
    ) -> (tempfile::TempDir, loopline_artifact_store::ObjectArtifactStore) {
        let directory = tempfile::tempdir().unwrap();
        let store = loopline_artifact_store::ObjectArtifactStore::open(directory.path().to_str().unwrap()).unwrap();
        for (index, batch) in files.iter().enumerate() {
            let level = if statistics {
                parquet::file::properties::EnabledStatistics::Chunk
            } else {
                parquet::file::properties::EnabledStatistics::None
            };
            let properties = parquet::file::properties::WriterProperties::builder()
                .set_statistics_enabled(level)
                .build();
            let mut bytes = Vec::new();
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
            let hour = loopline_core::time::utc_hour(HOUR);
            let path = format!("{}/hour={hour}/part-{:013}-a.parquet", predictions_prefix("m"), index);
            let path = loopline_artifact_store::ArtifactPath::parse(&path).unwrap();
            let body = futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed();
            loopline_artifact_store::ArtifactStore::put(&store, &path, body)
                .await
                .unwrap();
        }
        (directory, store)
    }

    /// What a window read: counts, span, rate, versions, and the kept values with their positions.
    type Summary = (
        u64,
        u64,
        Option<(i64, i64)>,
        f64,
        Vec<(String, u64)>,
        Vec<f64>,
        Vec<i64>,
    );

    fn summary(rows: &WindowRows) -> Summary {
        let mut values: Vec<f64> = Vec::new();
        let mut positions: Vec<i64> = Vec::new();
        for batch in &rows.batches {
            let p = batch.column_by_name("output.p").unwrap();
            values.extend(arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(p).values());
            let r = batch.column_by_name("row").unwrap();
            positions.extend(arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(r).values());
        }
        let mut pairs: Vec<(f64, i64)> = values.into_iter().zip(positions).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        (
            rows.seen_rows,
            rows.seen_requests,
            rows.span,
            rows.rate,
            rows.version_counts().into_iter().collect(),
            pairs.iter().map(|p| p.0).collect(),
            pairs.iter().map(|p| p.1).collect(),
        )
    }

    #[tokio::test]
    async fn columns_told_by_statistics_give_the_window_a_full_read_gives() {
        let files = [
            // The usual file: inside the window, served, one version, one row per request.
            file(3_000, HOUR + 10, &["1"], &["served"], 1),
            // Shadows among the rows, two versions, requests of two rows.
            file(3_000, HOUR + 100_000, &["1", "2"], &["served", "shadow"], 2),
            // Straddling the window's end.
            file(3_000, HOUR + 3_600_000 - 1_000, &["2"], &["served"], 1),
        ];
        let window = (HOUR, HOUR + 3_600_000);
        for limit in [0, 1_000] {
            let reading = Reading {
                limit,
                inputs: false,
                ids: false,
            };
            let (_planned_directory, planned) = store(&files, true).await;
            let (_decoded_directory, decoded) = store(&files, false).await;
            for with_shadows in [false, true] {
                let planned = time_window_rows(&planned, "m", window, with_shadows, reading)
                    .await
                    .unwrap();
                let decoded = time_window_rows(&decoded, "m", window, with_shadows, reading)
                    .await
                    .unwrap();
                assert_eq!(
                    summary(&planned),
                    summary(&decoded),
                    "limit {limit}, shadows {with_shadows}"
                );
                assert!(planned.seen_rows > 0 && planned.unreadable.is_empty());
            }
        }
    }

    #[test]
    fn statistics_leave_out_only_what_they_tell() {
        let mut sink = WindowSink {
            span: (HOUR, HOUR + 3_600_000),
            with_shadows: false,
            halvings: Arc::new(AtomicUsize::new(0)),
            known: Known::default(),
        };
        let planned = |sink: &mut WindowSink, batch: &RecordBatch| {
            let mut bytes = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
            let reader =
                parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
            let metadata = parquet::file::reader::FileReader::metadata(&reader).clone();
            let mut roots: Vec<usize> = (0..batch.num_columns()).collect();
            sink.plan(&metadata, &mut roots);
            roots
        };
        assert_eq!(planned(&mut sink, &file(100, HOUR, &["7"], &["served"], 1)), [0, 5, 6]);
        assert_eq!(
            sink.known,
            Known {
                times: Some((HOUR, HOUR + 99)),
                all_served: true,
                version: Some("7".into()),
                position: Some(0),
            }
        );
        // Shadows: roles and times are read; two versions: versions are read.
        assert_eq!(
            planned(&mut sink, &file(100, HOUR, &["1", "2"], &["served", "shadow"], 2)),
            [0, 1, 2, 3, 4, 5, 6]
        );
        // Outside the window: times are read.
        assert_eq!(
            planned(&mut sink, &file(100, HOUR - 50, &["1"], &["served"], 1)),
            [0, 1, 5, 6]
        );
    }
}
