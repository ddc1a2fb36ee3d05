//! The two inputs of a point-in-time join, checked before any row is read: the entity frame (its time column and
//! join keys) and each view's source files (key, time and feature columns, and their types).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use loopline_tabular::TableSource;

use crate::definitions::Source;
use crate::error::FeatureError;
use crate::keys::{self, KeyKind};
use crate::refs::ViewSelection;
use crate::time;
use crate::value_type::ValueType;

/// The most files one source directory may hold.
pub const MAX_SOURCE_FILES: usize = 100_000;

/// The entity frame, opened and checked.
pub struct EntityFrame {
    pub table: TableSource,
    /// The name of its time column.
    pub time_column: String,
}

impl EntityFrame {
    /// Opens the frame and finds its time column: `event_timestamp`, or else its only time column.
    pub fn open(path: &Path) -> Result<EntityFrame, FeatureError> {
        let error = |message: String| FeatureError::EntityFrame {
            path: path.to_path_buf(),
            message,
        };
        let metadata = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
        if !metadata.is_file() {
            return Err(error("it is not a regular file (a table file is needed)".to_string()));
        }
        let table = TableSource::open(path)?;
        let schema = table.schema().clone();
        let time_column = if let Ok(field) = schema.field_with_name("event_timestamp") {
            if !time::readable_as_time(field.data_type()) {
                return Err(error(format!(
                    "its `event_timestamp` column is {}, not a time",
                    field.data_type()
                )));
            }
            field.name().clone()
        } else {
            let times: Vec<&String> = schema
                .fields()
                .iter()
                .filter(|f| time::is_time(f.data_type()))
                .map(|f| f.name())
                .collect();
            match times.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(error(format!(
                        "it has no time column; add `event_timestamp` (the time each row's features are wanted \
                         at); its columns are {:?}",
                        table.column_names()
                    )));
                }
                many => {
                    return Err(error(format!(
                        "it has several time columns {many:?} and none is named `event_timestamp`; rename the one \
                         to join at"
                    )));
                }
            }
        };
        Ok(EntityFrame { table, time_column })
    }

    /// The kind of one of its join-key columns, or an error naming the column.
    pub fn key_kind(&self, key: &str, view: &str) -> Result<KeyKind, FeatureError> {
        let error = |message: String| FeatureError::EntityFrame {
            path: self.table.path().to_path_buf(),
            message,
        };
        let field = self.table.schema().field_with_name(key).map_err(|_| {
            error(format!(
                "feature view `{view}` joins on `{key}`, which it lacks; its columns are {:?}",
                self.table.column_names()
            ))
        })?;
        KeyKind::of(field.data_type()).ok_or_else(|| {
            error(format!(
                "join key `{key}` is {}, which cannot be joined on",
                field.data_type()
            ))
        })
    }
}

/// One view's source, checked: its files and the columns read from them.
pub struct ViewSource {
    pub source: Source,
    pub files: Vec<TableSource>,
    /// Source columns of the join keys, in the view's order.
    pub key_columns: Vec<String>,
    /// Source columns of the features, in the selection's order.
    pub feature_columns: Vec<String>,
    /// The type each feature is given in the output.
    pub feature_types: Vec<DataType>,
    /// Rows in all files, when the files record it.
    pub rows: Option<u64>,
}

impl ViewSource {
    /// Opens and checks every file of the view's source against the entity frame's key kinds.
    pub fn open(
        selection: &ViewSelection,
        source: &Source,
        entity: Option<&EntityFrame>,
    ) -> Result<ViewSource, FeatureError> {
        let view = &selection.view;
        let error = |path: &Path, message: String| FeatureError::Source {
            source_name: source.name.clone(),
            path: path.to_path_buf(),
            message,
        };
        let key_columns: Vec<String> = view.join_keys.iter().map(|k| source.column_for(k)).collect();
        let feature_columns: Vec<String> = selection.features.iter().map(|(f, _)| source.column_for(f)).collect();
        let feature_types: Vec<DataType> = selection
            .features
            .iter()
            .map(|(name, _)| {
                let dtype = view.features.iter().find(|f| &f.name == name).expect("resolved").dtype;
                output_type(dtype)
            })
            .collect();
        let mut files = Vec::new();
        let mut rows = Some(0u64);
        for path in list_files(&source.path).map_err(|m| error(&source.path, m))? {
            let table = TableSource::open(&path)?;
            let schema = table.schema().clone();
            let column = |name: &str, role: &str| {
                schema.field_with_name(name).cloned().map_err(|_| {
                    error(
                        &path,
                        format!(
                            "it has no column `{name}` ({role}); its columns are {:?}",
                            table.column_names()
                        ),
                    )
                })
            };
            for (key, column_name) in view.join_keys.iter().zip(&key_columns) {
                let field = column(
                    column_name,
                    &format!("join key `{key}` of feature view `{}`", view.name),
                )?;
                let source_kind = KeyKind::of(field.data_type());
                let Some(entity) = entity else {
                    if source_kind.is_none() {
                        return Err(error(
                            &path,
                            format!("join key `{key}` is {}, which cannot be joined on", field.data_type()),
                        ));
                    }
                    continue;
                };
                let entity_kind = entity.key_kind(key, &view.name)?;
                if source_kind != Some(entity_kind) {
                    return Err(FeatureError::EntityFrame {
                        path: entity.table.path().to_path_buf(),
                        message: format!(
                            "join key `{key}` is {} in the entity frame but {} in source `{}` ({}); convert one of \
                             them",
                            entity_kind.label(),
                            field.data_type(),
                            source.name,
                            path.display()
                        ),
                    });
                }
            }
            let time_field = column(&source.timestamp_field, "its timestamp_field")?;
            if !time::readable_as_time(time_field.data_type()) {
                return Err(error(
                    &path,
                    format!(
                        "timestamp_field `{}` is {}, not a time",
                        source.timestamp_field,
                        time_field.data_type()
                    ),
                ));
            }
            if let Some(created) = &source.created_timestamp_column {
                let field = column(created, "its created_timestamp_column")?;
                if !time::readable_as_time(field.data_type()) {
                    return Err(error(
                        &path,
                        format!(
                            "created_timestamp_column `{created}` is {}, not a time",
                            field.data_type()
                        ),
                    ));
                }
            }
            for ((name, _), column_name) in selection.features.iter().zip(&feature_columns) {
                let field = column(
                    column_name,
                    &format!("feature `{name}` of feature view `{}`", view.name),
                )?;
                let dtype = view.features.iter().find(|f| &f.name == name).expect("resolved").dtype;
                if !dtype.accepts(field.data_type()) {
                    return Err(error(
                        &path,
                        format!(
                            "feature `{name}` of feature view `{}` is declared {} but the column `{column_name}` is {}",
                            view.name,
                            dtype.name(),
                            field.data_type()
                        ),
                    ));
                }
            }
            rows = rows.zip(table.rows()).map(|(a, b)| a + b);
            files.push(table);
        }
        Ok(ViewSource {
            source: source.clone(),
            files,
            key_columns,
            feature_columns,
            feature_types,
            rows,
        })
    }

    /// The columns read from each file.
    pub fn projection(&self) -> Vec<String> {
        let mut columns = self.key_columns.clone();
        columns.push(self.source.timestamp_field.clone());
        if let Some(created) = &self.source.created_timestamp_column {
            columns.push(created.clone());
        }
        columns.extend(self.feature_columns.iter().cloned());
        let mut unique = Vec::with_capacity(columns.len());
        for column in columns {
            if !unique.contains(&column) {
                unique.push(column);
            }
        }
        unique
    }

    /// The schema of prepared source rows: key, event time, created time, features (named by output name).
    pub fn prepared_schema(&self, outputs: &[String]) -> SchemaRef {
        let mut fields = vec![
            Field::new("__key", DataType::Binary, true),
            Field::new("__time", DataType::Int64, true),
            Field::new("__created", DataType::Int64, true),
        ];
        for (name, data_type) in outputs.iter().zip(&self.feature_types) {
            fields.push(Field::new(name, data_type.clone(), true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Turns a batch read from a file into prepared rows, dropping rows without a key or an event time.
    pub fn prepare(&self, batch: &RecordBatch, schema: &SchemaRef, path: &Path) -> Result<RecordBatch, FeatureError> {
        let error = |message: String| FeatureError::Source {
            source_name: self.source.name.clone(),
            path: path.to_path_buf(),
            message,
        };
        let by_name = |name: &str| -> ArrayRef { batch.column_by_name(name).expect("projected column").clone() };
        let key_arrays: Vec<ArrayRef> = self.key_columns.iter().map(|c| by_name(c)).collect();
        let keys = keys::encode(&key_arrays, batch.num_rows()).map_err(|m| error(format!("join key: {m}")))?;
        let times = time::to_nanos(&by_name(&self.source.timestamp_field))
            .map_err(|m| error(format!("timestamp_field `{}`: {m}", self.source.timestamp_field)))?;
        let created = match &self.source.created_timestamp_column {
            Some(column) => time::to_nanos(&by_name(column))
                .map_err(|m| error(format!("created_timestamp_column `{column}`: {m}")))?,
            None => Int64Array::new_null(batch.num_rows()),
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys.clone()), Arc::new(times.clone()), Arc::new(created)];
        for (column, data_type) in self.feature_columns.iter().zip(&self.feature_types) {
            let array = by_name(column);
            let options = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            let cast = arrow_cast::cast_with_options(&array, data_type, &options).map_err(|e| {
                error(format!(
                    "column `{column}` does not fit its declared type {data_type}: {e}"
                ))
            })?;
            columns.push(cast);
        }
        let prepared = RecordBatch::try_new(schema.clone(), columns).map_err(|e| error(e.to_string()))?;
        if keys.null_count() == 0 && times.null_count() == 0 {
            return Ok(prepared);
        }
        let keep = BooleanArray::from_iter((0..batch.num_rows()).map(|i| Some(!keys.is_null(i) && !times.is_null(i))));
        arrow_select::filter::filter_record_batch(&prepared, &keep).map_err(|e| error(e.to_string()))
    }
}

use arrow_array::Array;

/// The schema of prepared entity rows: key, time, row number.
pub fn entity_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("__key", DataType::Binary, true),
        Field::new("__time", DataType::Int64, true),
        Field::new("__row", DataType::UInt64, false),
    ]))
}

/// Prepared entity rows for a view joining on `keys`, numbered from `first_row`.
pub fn prepare_entities(
    batch: &RecordBatch,
    keys: &[String],
    time_column: &str,
    first_row: u64,
    path: &Path,
) -> Result<RecordBatch, FeatureError> {
    let error = |message: String| FeatureError::EntityFrame {
        path: path.to_path_buf(),
        message,
    };
    let key_arrays: Vec<ArrayRef> = keys
        .iter()
        .map(|k| batch.column_by_name(k).expect("projected").clone())
        .collect();
    let encoded = keys::encode(&key_arrays, batch.num_rows()).map_err(|m| error(format!("join key: {m}")))?;
    let times = time::to_nanos(batch.column_by_name(time_column).expect("projected"))
        .map_err(|m| error(format!("time column `{time_column}`: {m}")))?;
    let rows = UInt64Array::from_iter_values(first_row..first_row + batch.num_rows() as u64);
    RecordBatch::try_new(
        entity_schema(),
        vec![Arc::new(encoded), Arc::new(times), Arc::new(rows)],
    )
    .map_err(|e| error(e.to_string()))
}

/// The output type of a feature declared `dtype`.
pub fn output_type(dtype: ValueType) -> DataType {
    match dtype {
        ValueType::Int32 => DataType::Int32,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float32 => DataType::Float32,
        ValueType::Float64 => DataType::Float64,
        ValueType::String => DataType::Utf8,
        ValueType::Bytes => DataType::Binary,
        ValueType::Bool => DataType::Boolean,
        ValueType::UnixTimestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The table files of a source: the file itself, or every table file under the directory (hidden files and
/// names starting with `_`, such as `_SUCCESS`, skipped), in name order.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() && loopline_tabular::FileFormat::detect(&entry.path()).is_ok() {
                files.push(entry.path());
                if files.len() > MAX_SOURCE_FILES {
                    return Err(format!("it holds more than {MAX_SOURCE_FILES} files"));
                }
            }
        }
    }
    if files.is_empty() {
        return Err("the directory holds no Parquet, CSV or Arrow files".to_string());
    }
    files.sort();
    Ok(files)
}
