//! Partitions of rows kept in memory (when everything fits) or spilled to Arrow IPC stream files in a private
//! temporary directory, which is removed with everything in it when the join ends, however it ends.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::error::FeatureError;

/// Buffer of each spill file being written or read: hundreds may be open at once.
const BUFFER_BYTES: usize = 64 << 10;

/// Where one partition's rows go while they are being written.
pub enum Sink {
    /// Kept in memory.
    Memory(Vec<RecordBatch>),
    /// Written to a file.
    File(PathBuf, Box<StreamWriter<BufWriter<File>>>),
}

/// One partition's rows once written.
pub enum Stored {
    /// Kept in memory.
    Memory(Vec<RecordBatch>),
    /// In a file.
    File(PathBuf),
}

impl Sink {
    /// A sink in memory, or a file `name` in `dir` when `dir` is given.
    pub fn new(schema: &SchemaRef, dir: Option<&Path>, name: &str) -> Result<Sink, FeatureError> {
        match dir {
            None => Ok(Sink::Memory(Vec::new())),
            Some(dir) => {
                let path = dir.join(name);
                let file = File::create(&path).map_err(|e| FeatureError::io("creating a spill file", &path, e))?;
                let writer = StreamWriter::try_new(BufWriter::with_capacity(BUFFER_BYTES, file), schema)
                    .map_err(|e| FeatureError::io("writing a spill file", &path, e))?;
                Ok(Sink::File(path, Box::new(writer)))
            }
        }
    }

    /// Adds rows (empty batches are dropped).
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), FeatureError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match self {
            Sink::Memory(batches) => {
                batches.push(batch);
                Ok(())
            }
            Sink::File(path, writer) => writer
                .write(&batch)
                .map_err(|e| FeatureError::io("writing a spill file (is the disk full?)", path.as_path(), e)),
        }
    }

    /// Finishes writing.
    pub fn finish(self) -> Result<Stored, FeatureError> {
        match self {
            Sink::Memory(batches) => Ok(Stored::Memory(batches)),
            Sink::File(path, mut writer) => {
                writer
                    .finish()
                    .map_err(|e| FeatureError::io("writing a spill file (is the disk full?)", &path, e))?;
                Ok(Stored::File(path))
            }
        }
    }
}

impl Stored {
    /// The rows again, in the order they were written.
    pub fn batches(&self) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, FeatureError>> + Send>, FeatureError> {
        match self {
            Stored::Memory(batches) => Ok(Box::new(batches.clone().into_iter().map(Ok))),
            Stored::File(path) => {
                let file = File::open(path).map_err(|e| FeatureError::io("reading a spill file", path, e))?;
                let reader = StreamReader::try_new(BufReader::with_capacity(BUFFER_BYTES, file), None)
                    .map_err(|e| FeatureError::io("reading a spill file", path, e))?;
                let path = path.clone();
                Ok(Box::new(reader.map(move |batch| {
                    batch.map_err(|e| FeatureError::io("reading a spill file", path.as_path(), e))
                })))
            }
        }
    }

    /// Every row at once (one partition is sized to fit in memory).
    pub fn load(&self) -> Result<Vec<RecordBatch>, FeatureError> {
        self.batches()?.collect()
    }

    /// Frees the partition: its file is removed.
    pub fn discard(self) {
        if let Stored::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
