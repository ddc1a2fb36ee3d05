//! Opening Parquet, CSV and Arrow IPC files as streams of record batches.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use crate::csv_schema::{CsvLayout, infer_csv_schema, null_pattern};
use crate::error::TabularError;
use crate::parquet_checks::{check_chunks, without_panics};

/// Rows per record batch when the format lets us choose.
pub const BATCH_ROWS: usize = 65_536;

/// A file format we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma- (or tab-, for `.tsv`) separated text with a header row.
    Csv,
    /// Arrow IPC file format (`.arrow`, `.feather` v2, `.ipc`).
    ArrowFile,
    /// Arrow IPC streaming format (`.arrows`).
    ArrowStream,
}

impl FileFormat {
    /// The format named by the extension, or failing that by the first bytes of the file.
    pub fn detect(path: &Path) -> Result<FileFormat, TabularError> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("parquet" | "pq" | "parq") => return Ok(FileFormat::Parquet),
            Some("csv" | "tsv" | "txt") => return Ok(FileFormat::Csv),
            Some("arrow" | "feather" | "ipc") => return Ok(FileFormat::ArrowFile),
            Some("arrows") => return Ok(FileFormat::ArrowStream),
            _ => {}
        }
        let mut head = [0u8; 6];
        let read = {
            use std::io::Read;
            let mut file = File::open(path).map_err(|e| TabularError::io(path, e))?;
            file.read(&mut head).map_err(|e| TabularError::io(path, e))?
        };
        match &head[..read] {
            [b'P', b'A', b'R', b'1', ..] => Ok(FileFormat::Parquet),
            b"ARROW1" => Ok(FileFormat::ArrowFile),
            _ => Err(TabularError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// The name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            FileFormat::Parquet => "Parquet",
            FileFormat::Csv => "CSV",
            FileFormat::ArrowFile | FileFormat::ArrowStream => "Arrow IPC",
        }
    }
}

/// An opened table file: its format, schema and (when the format records it) row count.
#[derive(Debug, Clone)]
pub struct TableSource {
    path: PathBuf,
    format: FileFormat,
    schema: SchemaRef,
    rows: Option<u64>,
    csv: Option<CsvLayout>,
}

impl TableSource {
    /// Opens a file, reading only what is needed to know its schema (all of a CSV file, whose types are inferred
    /// from every row so a value late in the file cannot contradict them).
    pub fn open(path: impl AsRef<Path>) -> Result<TableSource, TabularError> {
        let path = path.as_ref();
        let format = FileFormat::detect(path)?;
        let file = File::open(path).map_err(|e| TabularError::io(path, e))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(TabularError::Unreadable {
                path: path.to_path_buf(),
                format: format.label(),
                message: "it is a directory; pass one file".to_string(),
            });
        }
        let unreadable = |error: &dyn std::fmt::Display| TabularError::Unreadable {
            path: path.to_path_buf(),
            format: format.label(),
            message: error.to_string(),
        };
        let (schema, rows, csv) = match format {
            FileFormat::Parquet => {
                let size = file.metadata().map_err(|e| TabularError::io(path, e))?.len();
                let builder = without_panics(|| ParquetRecordBatchReaderBuilder::try_new(file))
                    .map_err(|e| unreadable(&e))?
                    .map_err(|e| unreadable(&e))?;
                check_chunks(builder.metadata(), size).map_err(|e| unreadable(&e))?;
                let rows = builder.metadata().file_metadata().num_rows();
                (builder.schema().clone(), Some(rows.max(0) as u64), None)
            }
            FileFormat::ArrowFile => {
                let reader =
                    arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None).map_err(|e| unreadable(&e))?;
                (reader.schema(), None, None)
            }
            FileFormat::ArrowStream => {
                let reader =
                    arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None).map_err(|e| unreadable(&e))?;
                (reader.schema(), None, None)
            }
            FileFormat::Csv => {
                let layout = CsvLayout::for_path(path);
                let (schema, rows) = infer_csv_schema(path, file, &layout)?;
                (Arc::new(schema), Some(rows), Some(layout))
            }
        };
        Ok(TableSource {
            path: path.to_path_buf(),
            format,
            schema,
            rows,
            csv,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The file's schema (for CSV, the inferred one).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The number of rows, when the file records it (Parquet) or it was counted (CSV).
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }

    /// The column names of the file.
    pub fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// Positions of the named columns, or an error naming those the file lacks.
    pub fn column_indices(&self, columns: &[String]) -> Result<Vec<usize>, TabularError> {
        let mut indices = Vec::with_capacity(columns.len());
        let mut missing = Vec::new();
        for name in columns {
            match self.schema.index_of(name) {
                Ok(index) => indices.push(index),
                Err(_) => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(indices)
        } else {
            Err(TabularError::MissingColumns {
                path: self.path.clone(),
                missing,
                available: self.column_names(),
            })
        }
    }

    /// Streams the file as record batches holding only `columns` (all columns when `None`), in file order.
    pub fn batches(&self, columns: Option<&[String]>) -> Result<Batches, TabularError> {
        self.batches_with(columns, false)
    }

    /// As [`TableSource::batches`]; with `dictionary_text`, Parquet text columns come as dictionary arrays
    /// (`Dictionary(Int32, Utf8)`), so work per distinct value can be done once per batch instead of per row.
    pub fn batches_with(&self, columns: Option<&[String]>, dictionary_text: bool) -> Result<Batches, TabularError> {
        let projection = columns.map(|c| self.column_indices(c)).transpose()?;
        let file = File::open(&self.path).map_err(|e| TabularError::io(&self.path, e))?;
        let unreadable = |error: ArrowError| self.decode_error(error);
        let inner: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send> = match self.format {
            FileFormat::Parquet => {
                let mut options = ArrowReaderOptions::new();
                if dictionary_text {
                    options = options.with_schema(Arc::new(dictionary_text_schema(&self.schema)));
                }
                let size = file.metadata().map_err(|e| TabularError::io(&self.path, e))?.len();
                let builder = without_panics(|| ParquetRecordBatchReaderBuilder::try_new_with_options(file, options))
                    .map_err(|e| self.unreadable(e))?
                    .map_err(|e| unreadable(ArrowError::ExternalError(Box::new(e))))?;
                // The file may have changed since it was opened: its chunks are checked again.
                check_chunks(builder.metadata(), size).map_err(|e| self.unreadable(e))?;
                let mask = match &projection {
                    Some(indices) => ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied()),
                    None => ProjectionMask::all(),
                };
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| unreadable(ArrowError::ExternalError(Box::new(e))))?;
                Box::new(reader)
            }
            FileFormat::ArrowFile => {
                Box::new(arrow_ipc::reader::FileReader::try_new(BufReader::new(file), projection).map_err(unreadable)?)
            }
            FileFormat::ArrowStream => Box::new(
                arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), projection).map_err(unreadable)?,
            ),
            FileFormat::Csv => {
                let layout = self.csv.as_ref().expect("CSV sources carry their layout");
                let mut builder = arrow_csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(true)
                    .with_delimiter(layout.delimiter)
                    .with_null_regex(null_pattern())
                    .with_batch_size(BATCH_ROWS);
                if let Some(indices) = projection {
                    builder = builder.with_projection(indices);
                }
                Box::new(
                    builder
                        .build(BufReader::with_capacity(1 << 20, file))
                        .map_err(unreadable)?,
                )
            }
        };
        Ok(Batches {
            inner,
            source: self.clone(),
            stopped: false,
        })
    }

    fn unreadable(&self, message: String) -> TabularError {
        TabularError::Unreadable {
            path: self.path.clone(),
            format: self.format.label(),
            message,
        }
    }

    fn decode_error(&self, error: ArrowError) -> TabularError {
        match error {
            ArrowError::ParseError(message) | ArrowError::CastError(message) if self.format == FileFormat::Csv => {
                TabularError::MixedTypes {
                    path: self.path.clone(),
                    message,
                }
            }
            other => self.unreadable(other.to_string()),
        }
    }
}

/// The schema with text columns read as dictionaries.
fn dictionary_text_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => field.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            )),
            _ => field.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Record batches streamed from a [`TableSource`]; decoding errors name the file.
pub struct Batches {
    inner: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    source: TableSource,
    /// Set once a decoder panicked on damaged data: the reader is not asked again.
    stopped: bool,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, TabularError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        match without_panics(|| self.inner.next()) {
            Ok(batch) => batch.map(|batch| batch.map_err(|e| self.source.decode_error(e))),
            Err(panic) => {
                self.stopped = true;
                Some(Err(self.source.unreadable(panic)))
            }
        }
    }
}
