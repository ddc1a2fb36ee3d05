//! Pushed rows written to the offline store (Feast's `push` with `to: offline` or `online_and_offline`): the
//! rows are added to the push source's batch source, so training sets and later materialisations see them.
//!
//! - A directory source gets a new Parquet file (`push-<time>-<id>.parquet`), written under a hidden name and
//!   renamed into place whole, so a reader never sees part of it.
//! - A one-file Parquet source is rewritten with the rows added (as Feast's file store does), batch by batch
//!   into a temporary file renamed over it, under an exclusive lock beside it so two pushes do not lose each
//!   other's rows.
//!
//! The rows must give every column the source's files have (by source column name, or by the feature or key
//! name a field mapping gives it), and no others; each is cast to the column's type, and a value that does not
//! fit refuses the whole push.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, NullArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use crate::definitions::{Definitions, Source};
use crate::historical::inputs::list_files;

/// The most rows one write may carry.
pub const MAX_ROWS: usize = 100_000;

/// Adds `df` (column -> values) to the batch source of push source `push`; the file written.
pub fn append(definitions: &Definitions, push: &str, df: &[(String, Value)]) -> Result<PathBuf, String> {
    let batch_source = definitions
        .push_sources
        .get(push)
        .ok_or_else(|| format!("no push source `{push}`"))?;
    let source = &definitions.sources[batch_source];
    if source.path.to_str().is_some_and(|p| p.contains("://")) {
        return Err(format!(
            "source `{}` is at {}; rows are written to sources on local disk only",
            source.name,
            source.path.display()
        ));
    }
    let files = list_files(&source.path).map_err(|e| format!("source `{}`: {e}", source.name))?;
    let parquet = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let Some(first) = files.first() else {
        return Err(format!(
            "source `{}` has no files yet, so the columns and types of new rows are unknown",
            source.name
        ));
    };
    if !files.iter().all(|f| parquet(f)) {
        return Err(format!(
            "source `{}` holds files that are not Parquet; rows are added as Parquet only",
            source.name
        ));
    }
    let schema = loopline_tabular::TableSource::open(first)
        .map_err(|e| format!("{}: {e}", first.display()))?
        .schema()
        .clone();
    let batch = batch_of(source, &schema, df)?;
    if source.path.is_dir() {
        write_new_file(&source.path, &batch)
    } else {
        rewrite_with(&source.path, &batch)
    }
}

/// The rows as a batch of the source's schema.
fn batch_of(source: &Source, schema: &SchemaRef, df: &[(String, Value)]) -> Result<RecordBatch, String> {
    let rows = df
        .first()
        .and_then(|(_, v)| v.as_array())
        .map(Vec::len)
        .ok_or("`df` must map column names to lists of values")?;
    if rows > MAX_ROWS {
        return Err(format!("`df` has more than {MAX_ROWS} rows; send them in parts"));
    }
    // A df column is the source column of that name, or the one a field mapping renames to it.
    let source_column = |name: &str| -> String {
        if schema.field_with_name(name).is_ok() {
            name.to_string()
        } else {
            source.column_for(name)
        }
    };
    let mut given: Vec<(String, &Vec<Value>)> = Vec::with_capacity(df.len());
    for (name, values) in df {
        let values = values
            .as_array()
            .filter(|v| v.len() == rows)
            .ok_or_else(|| format!("`df` column `{name}` must be a list of {rows} values, as long as the others"))?;
        let column = source_column(name);
        if schema.field_with_name(&column).is_err() {
            return Err(format!(
                "`df` column `{name}` is not a column of source `{}`; its columns are {:?}",
                source.name,
                schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            ));
        }
        if given.iter().any(|(c, _)| *c == column) {
            return Err(format!("`df` gives source column `{column}` twice"));
        }
        given.push((column, values));
    }
    let mut arrays = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let values = given
            .iter()
            .find(|(c, _)| c == field.name())
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("`df` lacks column `{}` of source `{}`", field.name(), source.name))?;
        let array = json_array(values).map_err(|e| format!("`df` column `{}`: {e}", field.name()))?;
        if let DataType::Timestamp(unit, zone) = field.data_type() {
            arrays.push(
                timestamps(&array, *unit, zone.clone()).map_err(|e| format!("`df` column `{}`: {e}", field.name()))?,
            );
            continue;
        }
        let options = arrow_cast::CastOptions {
            safe: false,
            ..Default::default()
        };
        let cast = arrow_cast::cast_with_options(&array, field.data_type(), &options).map_err(|e| {
            format!(
                "`df` column `{}`: its values do not fit the source's {} column: {e}",
                field.name(),
                field.data_type()
            )
        })?;
        arrays.push(cast);
    }
    let plain = Arc::new(Schema::new(schema.fields().clone()));
    RecordBatch::try_new(plain, arrays).map_err(|e| e.to_string())
}

/// JSON values as the Arrow array they read as: integers, floats, booleans or text (times as text).
fn json_array(values: &[Value]) -> Result<ArrayRef, String> {
    let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
    let array: ArrayRef = if present.is_empty() {
        Arc::new(NullArray::new(values.len()))
    } else if present.iter().all(|v| v.is_i64()) {
        Arc::new(Int64Array::from(values.iter().map(Value::as_i64).collect::<Vec<_>>()))
    } else if present.iter().all(|v| v.is_number()) {
        Arc::new(Float64Array::from(values.iter().map(Value::as_f64).collect::<Vec<_>>()))
    } else if present.iter().all(|v| v.is_boolean()) {
        Arc::new(BooleanArray::from(
            values.iter().map(Value::as_bool).collect::<Vec<_>>(),
        ))
    } else if present.iter().all(|v| v.is_string()) {
        Arc::new(StringArray::from(values.iter().map(Value::as_str).collect::<Vec<_>>()))
    } else {
        return Err("mixes types, or holds lists or objects".to_string());
    };
    Ok(array)
}

/// Times (text, as pushes give them; naive is UTC) as a timestamp column of `unit` in zone `zone`.
fn timestamps(array: &ArrayRef, unit: TimeUnit, zone: Option<Arc<str>>) -> Result<ArrayRef, String> {
    let nanos = crate::time::to_nanos(array)?;
    let per = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let values: Vec<Option<i64>> = nanos.iter().map(|n| n.map(|n| n.div_euclid(per))).collect();
    Ok(match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(values).with_timezone_opt(zone)),
        TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values).with_timezone_opt(zone)),
        TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(zone)),
        TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values).with_timezone_opt(zone)),
    })
}

fn writer_for(file: std::fs::File, schema: SchemaRef) -> Result<ArrowWriter<std::fs::File>, String> {
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| e.to_string())
}

/// Writes the batch as a new file of the directory, through a hidden temporary name.
fn write_new_file(directory: &Path, batch: &RecordBatch) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = &format!(
        "{:08x}",
        crc32fast::hash(format!("{nanos}-{}", std::process::id()).as_bytes())
    );
    let target = directory.join(format!("push-{nanos}-{id}.parquet"));
    let staged = tempfile::Builder::new()
        .prefix(".push-")
        .suffix(".partial")
        .tempfile_in(directory)
        .map_err(|e| format!("{}: {e}", directory.display()))?;
    let file = staged.reopen().map_err(|e| e.to_string())?;
    let mut writer = writer_for(file, batch.schema())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    staged.as_file().sync_all().map_err(|e| e.to_string())?;
    staged
        .persist(&target)
        .map_err(|e| format!("{}: {}", target.display(), e.error))?;
    set_readable(&target);
    Ok(target)
}

/// Rewrites a one-file source with the batch added, under a lock so pushes at once keep each other's rows.
fn rewrite_with(path: &Path, batch: &RecordBatch) -> Result<PathBuf, String> {
    let directory = path.parent().ok_or("the source file has no directory")?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let lock_path = directory.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let staged = tempfile::Builder::new()
        .prefix(".push-")
        .suffix(".partial")
        .tempfile_in(directory)
        .map_err(|e| format!("{}: {e}", directory.display()))?;
    let file = staged.reopen().map_err(|e| e.to_string())?;
    let mut writer = writer_for(file, batch.schema())?;
    // The file is read again under the lock: another push may have rewritten it since its schema was read.
    let existing = loopline_tabular::TableSource::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if existing.schema().fields() != batch.schema().fields() {
        return Err(format!(
            "{} changed its columns while the rows were prepared; push again",
            path.display()
        ));
    }
    for stored in existing.batches(None).map_err(|e| e.to_string())? {
        let stored = stored.map_err(|e| e.to_string())?;
        let stored = RecordBatch::try_new(batch.schema(), stored.columns().to_vec()).map_err(|e| e.to_string())?;
        writer.write(&stored).map_err(|e| e.to_string())?;
    }
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    staged.as_file().sync_all().map_err(|e| e.to_string())?;
    staged
        .persist(path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    set_readable(path);
    Ok(path.to_path_buf())
}

/// Data files are shared like the others in the source (a temporary file is private to its writer).
fn set_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_source_gets_a_new_file_and_keeps_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("stats");
        std::fs::create_dir(&source).unwrap();
        let schema = Arc::new(Schema::new(vec![
            arrow_schema::Field::new("driver", DataType::Int32, false),
            arrow_schema::Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            arrow_schema::Field::new("rate", DataType::Float32, true),
        ]));
        let first = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::Int32Array::from(vec![1])),
                Arc::new(TimestampNanosecondArray::from(vec![0]).with_timezone("+00:00")),
                Arc::new(arrow_array::Float32Array::from(vec![0.5])),
            ],
        )
        .unwrap();
        let mut writer = writer_for(std::fs::File::create(source.join("part-0.parquet")).unwrap(), schema).unwrap();
        writer.write(&first).unwrap();
        writer.close().unwrap();
        let yaml = format!(
            "entities: [{{name: d, join_keys: [driver_id]}}]
sources: [{{name: s, path: {}, timestamp_field: ts, field_mapping: {{driver: driver_id}}}}]
push_sources: [{{name: p, batch_source: s}}]
feature_views: [{{name: v, entities: [d], source: p, schema: [{{name: rate, dtype: float32}}]}}]",
            source.display()
        );
        let definitions = Definitions::from_yaml(&yaml, dir.path(), "t").unwrap();
        // Columns by mapped name or source name; a value that does not fit refuses the push.
        let df = |rate: Value| {
            vec![
                ("driver_id".to_string(), serde_json::json!([7])),
                ("ts".to_string(), serde_json::json!(["2024-05-01 10:00:00+00:00"])),
                ("rate".to_string(), serde_json::json!([rate])),
            ]
        };
        assert!(append(&definitions, "p", &df(Value::from("fast"))).is_err());
        let written = append(&definitions, "p", &df(Value::from(0.25))).unwrap();
        assert!(written.file_name().unwrap().to_string_lossy().starts_with("push-"));
        let files = list_files(&source).unwrap();
        assert_eq!(files.len(), 2, "no temporary files are listed");
        let added = loopline_tabular::TableSource::open(&written).unwrap();
        assert_eq!(added.schema().fields(), first.schema().fields());
        let batch = added.batches(None).unwrap().next().unwrap().unwrap();
        assert_eq!(
            batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap()
                .value(0),
            1_714_557_600_000_000_000
        );
        let extra = vec![("colour".to_string(), serde_json::json!(["red"]))];
        assert!(
            append(&definitions, "p", &extra)
                .unwrap_err()
                .contains("not a column of source")
        );
    }
}
