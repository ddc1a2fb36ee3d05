//! Reading only some columns of a Parquet file from the artifact store: the footer first, then the byte ranges
//! of the wanted columns' chunks, so a monitor that needs ids, times and outputs does not copy every input
//! column of every log file into memory. Everything the footer declares is checked against the file's size
//! before anything is read.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use loopline_artifact_store::{ArtifactPath, ArtifactStore};
use loopline_tabular::parquet_checks::{chunk_range, without_panics};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::log_reader::LogReadError;

/// Bytes read from the end of a file in the first request (most footers fit).
const TAIL_BYTES: u64 = 64 * 1024;
/// Footers up to this size are decoded where they are read, larger ones on the blocking pool.
const INLINE_FOOTER_BYTES: u64 = 64 * 1024;
/// The largest footer read (a log file's is kilobytes).
const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// A store failure (worth another try) or a file that is not what it should be (never readable).
pub fn read_failure(path: &str, error: loopline_artifact_store::ArtifactError) -> LogReadError {
    match error {
        // Too large to read, or a directory where a file should be: the file, not the store.
        loopline_artifact_store::ArtifactError::PathConflict { .. }
        | loopline_artifact_store::ArtifactError::InvalidPath { .. } => {
            LogReadError::Unreadable(format!("{path}: {error}"))
        }
        other => LogReadError::Storage(format!("{path}: {other}")),
    }
}

/// Parts of one file held in memory, by their offset in it.
struct FileParts {
    size: u64,
    parts: Vec<(u64, Bytes)>,
}

impl FileParts {
    fn slice(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let end = start + length as u64;
        self.parts
            .iter()
            .find(|(offset, bytes)| *offset <= start && end <= offset + bytes.len() as u64)
            .map(|(offset, bytes)| bytes.slice((start - offset) as usize..(end - offset) as usize))
            .ok_or_else(|| ParquetError::General(format!("bytes {start}..{end} were not read")))
    }
}

impl Length for FileParts {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for FileParts {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        // The reader only asks for whole column chunks it has located, so a read from `start` covers the rest
        // of the part that holds it.
        let (offset, bytes) = self
            .parts
            .iter()
            .find(|(offset, bytes)| *offset <= start && start < offset + bytes.len() as u64)
            .ok_or_else(|| ParquetError::General(format!("byte {start} was not read")))?;
        Ok(bytes::Buf::reader(bytes.slice((start - offset) as usize..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        self.slice(start, length)
    }
}

/// The footer of a Parquet file of `size` bytes whose last bytes are `tail`: the metadata, and how many of
/// the file's last bytes hold it (more than `tail` when the metadata is larger).
fn footer(tail: &[u8], size: u64) -> Result<u64, String> {
    if tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return Err("is not a Parquet file (no PAR1 footer)".into());
    }
    let length = u32::from_le_bytes(tail[tail.len() - 8..tail.len() - 4].try_into().unwrap_or_default());
    let needed = u64::from(length) + 8;
    if needed + 4 > size || needed > MAX_FOOTER_BYTES {
        return Err(format!("declares {length} bytes of metadata in a file of {size} bytes"));
    }
    Ok(needed)
}

/// The byte ranges of the column chunks of the wanted root columns, each checked to lie within the file, and
/// none more in total than the file holds.
fn chunk_ranges(metadata: &ParquetMetaData, roots: &[usize], size: u64) -> Result<Vec<Range<u64>>, String> {
    let schema = metadata.file_metadata().schema_descr();
    let mut ranges = Vec::new();
    let mut total: u64 = 0;
    for group in metadata.row_groups() {
        for (leaf, column) in group.columns().iter().enumerate() {
            if leaf >= schema.num_columns() || !roots.contains(&schema.get_column_root_idx(leaf)) {
                continue;
            }
            let range = chunk_range(column, size)?;
            total = total.saturating_add(range.end - range.start);
            if total > size {
                return Err("declares column chunks larger than the file".into());
            }
            ranges.push(range);
        }
    }
    Ok(ranges)
}

/// Rows decoded per batch: as many as keep a batch near 8 MiB for `columns` columns of 8 bytes (fewer,
/// larger batches cost less to allocate, filter and pass on), from 1,024 to 65,536.
fn batch_rows(columns: usize) -> usize {
    ((8 << 20) / (8 * columns.max(1))).clamp(1_024, 65_536)
}

/// Whether a column is among `keep` (names, or prefixes ending in `.`).
pub fn is_kept(keep: &[String], name: &str) -> bool {
    keep.iter()
        .any(|k| k == name || (k.ends_with('.') && name.starts_with(k.as_str())))
}

/// What becomes of a file's decoded batches.
pub trait PartSink: Send + 'static {
    /// What each batch becomes.
    type Out: Send + 'static;
    /// Called with the file's footer before anything else is read: may take out of `roots` (indices of root
    /// columns) the columns the footer's statistics already tell, so they are neither read nor decoded.
    fn plan(&mut self, metadata: &ParquetMetaData, roots: &mut Vec<usize>) {
        let _ = (metadata, roots);
    }
    /// One decoded batch, on the thread that decoded it (an error makes the file unreadable).
    fn batch(&mut self, batch: arrow_array::RecordBatch) -> Result<Self::Out, String>;
}

/// A [`PartSink`] passing each batch through a function.
pub struct EachBatch<F>(pub F);

impl<T: Send + 'static, F: FnMut(arrow_array::RecordBatch) -> Result<T, String> + Send + 'static> PartSink
    for EachBatch<F>
{
    type Out = T;

    fn batch(&mut self, batch: arrow_array::RecordBatch) -> Result<T, String> {
        (self.0)(batch)
    }
}

/// The record batches of the root columns `keep` names (see [`is_kept`]; `None`: every column), reading only
/// their bytes after the footer, each passed to `sink` as it is decoded.
pub async fn read_columns<S: PartSink>(
    store: &dyn ArtifactStore,
    path: &ArtifactPath,
    size_limit: u64,
    keep: Option<Vec<String>>,
    mut sink: S,
) -> Result<Vec<S::Out>, LogReadError> {
    let shown = path.as_string();
    let size = store.size(path).await.map_err(|e| read_failure(&shown, e))?;
    if size == 0 {
        // Nothing to read, or not a regular file (a pipe or a device lists with no size): never opened.
        return Err(LogReadError::Unreadable(format!(
            "{shown} is empty or not a regular file"
        )));
    }
    if size > size_limit {
        return Err(LogReadError::Unreadable(format!(
            "{shown} has {size} bytes, more than the {size_limit} read at once"
        )));
    }
    let read = |ranges: Vec<Range<u64>>| {
        let shown = &shown;
        async move {
            let wanted = ranges.len();
            let parts = store
                .read_ranges(path, &ranges)
                .await
                .map_err(|e| read_failure(shown, e))?;
            if parts.len() != wanted {
                return Err(LogReadError::Storage(format!(
                    "{shown}: {wanted} byte ranges asked for, {} read",
                    parts.len()
                )));
            }
            Ok(parts)
        }
    };
    let last = |parts: Vec<Bytes>| parts.into_iter().next_back().unwrap_or_default();
    let tail_start = size.saturating_sub(TAIL_BYTES);
    let mut tail = last(read(std::iter::once(tail_start..size).collect()).await?);
    let unreadable = |e: String| LogReadError::Unreadable(format!("{shown} {e}"));
    let needed = footer(&tail, size).map_err(unreadable)?;
    if needed > tail.len() as u64 {
        tail = last(read(std::iter::once(size - needed..size).collect()).await?);
        if needed > tail.len() as u64 {
            return Err(unreadable(format!("footer could not be read ({needed} bytes)")));
        }
    }
    let metadata_bytes = tail.slice(tail.len() - needed as usize..tail.len() - 8);
    let decode = move || {
        let metadata =
            without_panics(|| ParquetMetaDataReader::decode_metadata(&metadata_bytes))?.map_err(|e| e.to_string())?;
        let roots: Vec<usize> = metadata
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| keep.as_ref().is_none_or(|keep| is_kept(keep, field.name())))
            .map(|(index, _)| index)
            .collect();
        Ok::<_, String>((metadata, roots))
    };
    // A log file's footer is a few kilobytes, decoded in microseconds: only a large one goes to the blocking
    // pool.
    let decoded = if needed <= INLINE_FOOTER_BYTES {
        decode()
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| LogReadError::Storage(format!("{shown}: reading the footer stopped: {e}")))?
    };
    let (metadata, mut roots) = decoded.map_err(|e| unreadable(format!("has unreadable metadata: {e}")))?;
    sink.plan(&metadata, &mut roots);
    let ranges = chunk_ranges(&metadata, &roots, size).map_err(unreadable)?;
    let chunks = read(ranges.clone()).await?;
    let parts = FileParts {
        size,
        parts: ranges.iter().map(|r| r.start).zip(chunks).collect(),
    };
    tokio::task::spawn_blocking(move || {
        let failed = |e: ParquetError| LogReadError::Unreadable(format!("{shown} is not a readable Parquet file: {e}"));
        let panicked = |e: String| LogReadError::Unreadable(format!("{shown} is not a readable Parquet file: {e}"));
        let mut reader = without_panics(|| {
            let loaded = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::default())?;
            let mask = ProjectionMask::roots(loaded.parquet_schema(), roots.iter().copied());
            ParquetRecordBatchReaderBuilder::new_with_metadata(parts, loaded)
                .with_projection(mask)
                .with_batch_size(batch_rows(roots.len()))
                .build()
        })
        .map_err(panicked)?
        .map_err(failed)?;
        let mut outputs = Vec::new();
        // The parquet crate panics on some damaged pages: each batch is decoded under a guard.
        while let Some(batch) = without_panics(|| reader.next()).map_err(panicked)? {
            let batch = batch.map_err(|e| LogReadError::Unreadable(format!("{shown}: {e}")))?;
            outputs.push(
                sink.batch(batch)
                    .map_err(|e| LogReadError::Unreadable(format!("{shown}: {e}")))?,
            );
        }
        Ok(outputs)
    })
    .await
    .map_err(|e| LogReadError::Storage(format!("{path}: decoding stopped: {e}", path = path.as_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
    use futures::StreamExt;
    use loopline_artifact_store::ObjectArtifactStore;

    fn parquet_file(rows: usize, row_group: usize) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("r{i}")))) as _,
            ),
            (
                "input.x",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as _,
            ),
            (
                "output.y",
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64 * 2))) as _,
            ),
        ])
        .unwrap();
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group))
            .build();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    async fn stored(bytes: Vec<u8>) -> (tempfile::TempDir, ObjectArtifactStore, ArtifactPath) {
        let directory = tempfile::tempdir().unwrap();
        let store = ObjectArtifactStore::open(directory.path().to_str().unwrap()).unwrap();
        let path = ArtifactPath::parse("log/part.parquet").unwrap();
        let body = futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        store.put(&path, body).await.unwrap();
        (directory, store, path)
    }

    #[tokio::test]
    async fn only_the_kept_columns_are_read_from_every_row_group() {
        let (_directory, store, path) = stored(parquet_file(10_000, 1_000)).await;
        let keep = vec!["id".to_string(), "output.".to_string()];
        let batches = read_columns(&store, &path, 1 << 30, Some(keep), EachBatch(Ok))
            .await
            .unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 10_000);
        let names: Vec<String> = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "output.y"]);
        let last = batches.last().unwrap();
        let ids = last.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.value(ids.len() - 1), "r9999");
        let every: usize = read_columns(&store, &path, 1 << 30, None, EachBatch(Ok))
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_columns())
            .max()
            .unwrap();
        assert_eq!(every, 3);
        let too_small = read_columns(&store, &path, 100, Some(vec!["id".into()]), EachBatch(Ok))
            .await
            .unwrap_err();
        assert!(
            matches!(&too_small, LogReadError::Unreadable(m) if m.contains("more than the 100")),
            "{too_small:?}"
        );
    }

    #[tokio::test]
    async fn a_file_cut_short_or_not_parquet_is_an_error_naming_it() {
        let mut cut = parquet_file(1_000, 100);
        cut.drain(4..cut.len() / 2);
        let (_directory, store, path) = stored(cut).await;
        let error = read_columns(&store, &path, 1 << 30, Some(vec!["id".into()]), EachBatch(Ok))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, LogReadError::Unreadable(m) if m.contains("log/part.parquet")),
            "{error:?}"
        );
        let (_other, store, path) = stored(b"just text".to_vec()).await;
        let error = read_columns(&store, &path, 1 << 30, Some(vec!["id".into()]), EachBatch(Ok))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, LogReadError::Unreadable(m) if m.contains("PAR1")),
            "{error:?}"
        );
        let (_empty, store, path) = stored(Vec::new()).await;
        let error = read_columns(&store, &path, 1 << 30, None, EachBatch(Ok))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, LogReadError::Unreadable(m) if m.contains("empty")),
            "{error:?}"
        );
        let missing = ArtifactPath::parse("log/gone.parquet").unwrap();
        let error = read_columns(&store, &missing, 1 << 30, Some(vec!["id".into()]), EachBatch(Ok))
            .await
            .unwrap_err();
        assert!(
            matches!(error, LogReadError::Storage(_)),
            "a missing file may come back: {error:?}"
        );
    }

    #[test]
    fn footers_that_lie_about_their_size_are_refused() {
        let mut tail = vec![0u8; 16];
        tail.extend_from_slice(&u32::MAX.to_le_bytes());
        tail.extend_from_slice(b"PAR1");
        assert!(footer(&tail, 24).unwrap_err().contains("declares"));
        // A footer larger than any log file's, however large the file.
        assert!(footer(&tail, u64::MAX / 2).unwrap_err().contains("declares"));
        assert!(footer(b"not parquet at all", 18).unwrap_err().contains("PAR1"));
        let mut fine = vec![0u8; 100];
        fine.extend_from_slice(&20u32.to_le_bytes());
        fine.extend_from_slice(b"PAR1");
        assert_eq!(footer(&fine, 108), Ok(28));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn damaged_files_are_errors_never_panics(
            flips in proptest::collection::vec((0usize..4_000, proptest::prelude::any::<u8>()), 1..8),
        ) {
            let mut bytes = parquet_file(300, 50);
            for (at, value) in flips {
                let at = bytes.len() - 1 - at % bytes.len();
                bytes[at] = value;
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_directory, store, path) = stored(bytes).await;
                // Whatever the damage, the read ends: with batches or with an error naming the file.
                if let Err(error) = read_columns(&store, &path, 1 << 30, Some(vec!["id".into(), "output.".into()]), EachBatch(Ok)).await {
                    let unreadable = matches!(&error, LogReadError::Unreadable(m) if m.contains("part.parquet"));
                    proptest::prop_assert!(unreadable, "{:?}", error);
                }
                Ok(())
            })?;
        }
    }
}
