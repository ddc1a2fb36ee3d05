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
    ArrayRef, RecordBatch, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
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

/// The number of rows of Feast's column-major `df` (column -> list of values): every column a list, all of one
/// length, at most [`MAX_ROWS`].
pub fn df_rows(df: &[(String, Value)]) -> Result<usize, String> {
    let rows = df
        .first()
        .and_then(|(_, v)| v.as_array())
        .map(Vec::len)
        .ok_or("`df` must map column names to lists of values")?;
    if rows > MAX_ROWS {
        return Err(format!("`df` has more than {MAX_ROWS} rows; send them in parts"));
    }
    for (name, column) in df {
        if column.as_array().is_none_or(|values| values.len() != rows) {
            return Err(format!(
                "`df` column `{name}` must be a list of {rows} values, as long as the others"
            ));
        }
    }
    Ok(rows)
}

/// The rows as a batch of the source's schema.
fn batch_of(source: &Source, schema: &SchemaRef, df: &[(String, Value)]) -> Result<RecordBatch, String> {
    df_rows(df)?;
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
        let values = values.as_array().expect("checked by df_rows");
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
        let array = crate::online_read::column_array(&format!("`df` column `{}`", field.name()), values)?;
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

/// Writes a Parquet file at `target` through a hidden temporary file in `directory`, renamed over it only once
/// `fill` has written every batch and the file is on disk (nothing is left behind on failure).
fn write_staged(
    directory: &Path,
    target: &Path,
    schema: SchemaRef,
    fill: impl FnOnce(&mut ArrowWriter<std::fs::File>) -> Result<(), String>,
) -> Result<(), String> {
    let staged = tempfile::Builder::new()
        .prefix(".push-")
        .suffix(".partial")
        .tempfile_in(directory)
        .map_err(|e| format!("{}: {e}", directory.display()))?;
    let file = staged.reopen().map_err(|e| e.to_string())?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| e.to_string())?;
    fill(&mut writer)?;
    writer.close().map_err(|e| e.to_string())?;
    staged.as_file().sync_all().map_err(|e| e.to_string())?;
    staged
        .persist(target)
        .map_err(|e| format!("{}: {}", target.display(), e.error))?;
    set_readable(target);
    Ok(())
}

/// Writes the batch as a new file of the directory.
fn write_new_file(directory: &Path, batch: &RecordBatch) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!(
        "{:08x}",
        crc32fast::hash(format!("{nanos}-{}", std::process::id()).as_bytes())
    );
    let target = directory.join(format!("push-{nanos}-{id}.parquet"));
    write_staged(directory, &target, batch.schema(), |writer| {
        writer.write(batch).map_err(|e| e.to_string())
    })?;
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
    // The file is read again under the lock: another push may have rewritten it since its schema was read.
    let existing = loopline_tabular::TableSource::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if existing.schema().fields() != batch.schema().fields() {
        return Err(format!(
            "{} changed its columns while the rows were prepared; push again",
            path.display()
        ));
    }
    write_staged(directory, path, batch.schema(), |writer| {
        for stored in existing.batches(None).map_err(|e| e.to_string())? {
            let stored = stored.map_err(|e| e.to_string())?;
            let stored = RecordBatch::try_new(batch.schema(), stored.columns().to_vec()).map_err(|e| e.to_string())?;
            writer.write(&stored).map_err(|e| e.to_string())?;
        }
        writer.write(batch).map_err(|e| e.to_string())
    })?;
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

    /// A directory source holding one file (driver Int32, ts, rate Float32) and its definitions.
    fn directory_source() -> (tempfile::TempDir, PathBuf, RecordBatch, Definitions) {
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
        write_staged(&source, &source.join("part-0.parquet"), schema, |w| {
            w.write(&first).map_err(|e| e.to_string())
        })
        .unwrap();
        let yaml = format!(
            "entities: [{{name: d, join_keys: [driver_id]}}]
sources: [{{name: s, path: {}, timestamp_field: ts, field_mapping: {{driver: driver_id}}}}]
push_sources: [{{name: p, batch_source: s}}]
feature_views: [{{name: v, entities: [d], source: p, schema: [{{name: rate, dtype: float32}}]}}]",
            source.display()
        );
        let definitions = Definitions::from_yaml(&yaml, dir.path(), "t").unwrap();
        (dir, source, first, definitions)
    }

    #[test]
    fn a_directory_source_gets_a_new_file_and_keeps_its_schema() {
        let (_dir, source, first, definitions) = directory_source();
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

    fn hostile_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(Value::from(u64::MAX)),
            "\\PC{0,12}".prop_map(Value::from),
            Just(Value::from("2024-05-01T10:00:00Z")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn hostile_rows_are_refused_or_written_whole(
            columns in proptest::collection::vec(
                (proptest::sample::select(vec!["driver_id", "driver", "ts", "rate", "other"]),
                 proptest::collection::vec(hostile_value(), 0..4)),
                0..5,
            )
        ) {
            let (_dir, source, _, definitions) = directory_source();
            let df: Vec<(String, Value)> =
                columns.into_iter().map(|(name, values)| (name.to_string(), Value::Array(values))).collect();
            let written = append(&definitions, "p", &df);
            // Whatever happened, every file of the source reads whole.
            for file in list_files(&source).unwrap() {
                let table = loopline_tabular::TableSource::open(&file).unwrap();
                for batch in table.batches(None).unwrap() {
                    batch.unwrap();
                }
            }
            proptest::prop_assert_eq!(list_files(&source).unwrap().len(), if written.is_ok() { 2 } else { 1 });
        }
    }
}
