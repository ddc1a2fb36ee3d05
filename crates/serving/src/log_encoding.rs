//! How the prediction log's Parquet files are encoded. Files are uncompressed (the log is written on the
//! request path's heels and read back by monitors many times; its bulk is numbers that compress little).
//! A column is dictionary-encoded only when it has few distinct values (at most a quarter of the first 1,024
//! rows, the writer's sample: versions, roles, classes, categories): for continuous inputs, probabilities,
//! times, request ids and keys a dictionary is as large as the values themselves, so it only adds index bits
//! to write and a gather to every read.

use std::collections::HashSet;
use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// The writer settings for a file holding `batches` (all of one schema).
pub fn writer_properties(batches: &[RecordBatch]) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    let Some(first) = batches.first() else {
        return builder.build();
    };
    let rows: usize = batches
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>()
        .min(SAMPLE_ROWS);
    for (index, field) in first.schema().fields().iter().enumerate() {
        let columns: Vec<&ArrayRef> = batches.iter().filter_map(|b| b.columns().get(index)).collect();
        if !few_distinct(&columns, rows, rows / 4) {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder.build()
}

/// Rows looked at to choose a column's encoding (the writer runs beside the request path: it stays cheap).
const SAMPLE_ROWS: usize = 1_024;

/// Whether the columns' first `rows` values hold at most `limit` distinct ones (by a hash of each value;
/// columns of other types than numbers, times and strings count as few).
fn few_distinct(columns: &[&ArrayRef], rows: usize, limit: usize) -> bool {
    let hasher = foldhash::fast::FixedState::default();
    let mut seen: HashSet<u64, foldhash::fast::FixedState> = HashSet::with_hasher(hasher.clone());
    let mut looked = 0;
    for column in columns {
        let hashes: Box<dyn Iterator<Item = u64> + '_> = match column.data_type() {
            DataType::Float64 => Box::new(
                column
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|v| v.to_bits()),
            ),
            DataType::Float32 => Box::new(
                column
                    .as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|v| u64::from(v.to_bits())),
            ),
            DataType::Int64 => Box::new(column.as_primitive::<Int64Type>().values().iter().map(|v| *v as u64)),
            DataType::Int32 => Box::new(column.as_primitive::<Int32Type>().values().iter().map(|v| *v as u64)),
            DataType::UInt64 => Box::new(column.as_primitive::<UInt64Type>().values().iter().copied()),
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => Box::new(
                column
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .iter()
                    .map(|v| *v as u64),
            ),
            DataType::Utf8 => Box::new(column.as_string::<i32>().iter().map(|v| hasher.hash_one(v))),
            _ => return true,
        };
        for hash in hashes {
            if looked == rows {
                return true;
            }
            looked += 1;
            if seen.insert(hash) && seen.len() > limit {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray, UInt64Array};
    use std::sync::Arc;

    fn encodings(batch: &RecordBatch) -> Vec<(String, bool)> {
        let mut bytes = Vec::new();
        let properties = writer_properties(std::slice::from_ref(batch));
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = parquet::file::reader::FileReader::metadata(&reader);
        metadata
            .row_group(0)
            .columns()
            .iter()
            .map(|c| {
                let dictionary = c.dictionary_page_offset().is_some();
                (c.column_path().string(), dictionary)
            })
            .collect()
    }

    #[test]
    fn only_columns_with_few_values_get_a_dictionary() {
        let rows = 1_000;
        let batch = RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("r{i}")))) as ArrayRef,
            ),
            ("request_key", Arc::new(UInt64Array::from_iter_values(0..rows as u64))),
            ("model_version", Arc::new(StringArray::from(vec!["1"; rows]))),
            (
                "input.x",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64 / 7.0))),
            ),
            (
                "output.class",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| (i % 2) as f64))),
            ),
        ])
        .unwrap();
        assert_eq!(
            encodings(&batch),
            [
                ("request_id".to_string(), false),
                ("request_key".to_string(), false),
                ("model_version".to_string(), true),
                ("input.x".to_string(), false),
                ("output.class".to_string(), true),
            ]
        );
    }
}
