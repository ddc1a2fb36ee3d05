//! A collection on disk: `config.json` (its vectors), `segment.bin` (the last checkpoint, loaded without
//! rebuilding graphs) and `wal.log` (every operation since, synced before it is acknowledged). Opening
//! loads the checkpoint and replays the log after it, so an acknowledged write survives `kill -9`; a
//! checkpoint is written to a temporary file, synced and renamed into place before the log is emptied, so
//! a crash at any point leaves either the old checkpoint and the whole log or the new one. A vector kept on
//! disk has its float rows in a file of their own beside the checkpoint (`vector_file`).

pub mod catalog;
pub(crate) mod codec;
mod segment_file;
mod vector_file;
mod wal;

pub use codec::DecodeError;

use crate::distance::Distance;
use crate::hnsw::HnswParams;
use crate::ops::{Operation, OperationError};
use crate::segment::{Segment, Staged, VectorParams};
use codec::{Reader, Writer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wal::Wal;

/// The log is folded into a new checkpoint once it holds this many bytes.
const CHECKPOINT_AFTER_BYTES: u64 = 64 << 20;
/// A checkpoint compacts the segment when this share of its point numbers are tombstones.
const COMPACT_ABOVE: f64 = 0.2;

/// Why a collection could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        error: std::io::Error,
    },
    /// A file is damaged.
    #[error("{path}: {message}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The operation was refused (nothing was written).
    #[error(transparent)]
    Refused(#[from] OperationError),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |error| StorageError::Io {
        path: path.display().to_string(),
        error,
    }
}

#[derive(Serialize, Deserialize)]
struct StoredParams {
    size: usize,
    distance: Distance,
    m: usize,
    ef_construct: usize,
    full_scan_threshold_kb: usize,
    int8: bool,
    #[serde(default)]
    on_disk: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredConfig {
    vectors: BTreeMap<String, StoredParams>,
}

/// A collection kept on disk.
pub struct StoredCollection {
    dir: PathBuf,
    segment: Segment,
    wal: Wal,
    last_operation: u64,
}

impl StoredCollection {
    /// Creates a collection in `dir` (which must not hold one).
    pub fn create(dir: &Path, vectors: BTreeMap<String, VectorParams>, threads: usize) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config = StoredConfig {
            vectors: vectors
                .iter()
                .map(|(name, params)| {
                    let stored = StoredParams {
                        size: params.size,
                        distance: params.distance,
                        m: params.hnsw.m,
                        ef_construct: params.hnsw.ef_construction,
                        full_scan_threshold_kb: params.full_scan_threshold_kb,
                        int8: params.int8,
                        on_disk: params.on_disk,
                    };
                    (name.clone(), stored)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&config).unwrap_or_default();
        write_durably(&dir.join("config.json"), &bytes)?;
        Self::open(dir, threads)
    }

    /// Opens the collection in `dir`: its checkpoint, then its log replayed.
    pub fn open(dir: &Path, threads: usize) -> Result<Self, StorageError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read(&config_path).map_err(io(&config_path))?;
        let config: StoredConfig = serde_json::from_slice(&text).map_err(|error| StorageError::Damaged {
            path: config_path.display().to_string(),
            message: error.to_string(),
        })?;
        let segment_path = dir.join("segment.bin");
        let (segment, checkpoint) = match std::fs::read(&segment_path) {
            Ok(bytes) => segment_file::decode(&bytes, threads, Some(dir)).map_err(|error| StorageError::Damaged {
                path: segment_path.display().to_string(),
                message: error.0,
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let vectors = config
                    .vectors
                    .into_iter()
                    .map(|(name, stored)| {
                        let params = VectorParams {
                            size: stored.size,
                            distance: stored.distance,
                            hnsw: HnswParams {
                                m: stored.m,
                                ef_construction: stored.ef_construct,
                            },
                            full_scan_threshold_kb: stored.full_scan_threshold_kb,
                            int8: stored.int8,
                            on_disk: stored.on_disk,
                        };
                        (name, params)
                    })
                    .collect();
                (Segment::new(vectors, threads), 0)
            }
            Err(error) => return Err(io(&segment_path)(error)),
        };
        Self::replay(dir, segment, checkpoint)
    }

    /// The collection in `dir` whose checkpoint `segment` (of operation `checkpoint`) is already loaded: its
    /// log replayed on top.
    pub(crate) fn replay(dir: &Path, mut segment: Segment, checkpoint: u64) -> Result<Self, StorageError> {
        let mut last_operation = checkpoint;
        let wal_path = dir.join("wal.log");
        let (wal, _) = Wal::open(&wal_path, |operation, bytes| {
            if operation <= checkpoint {
                return Ok(());
            }
            let decoded = Operation::decode(&mut Reader::new(bytes))?;
            segment
                .apply(decoded, operation)
                .map_err(|error| DecodeError(error.to_string()))?;
            last_operation = operation;
            Ok(())
        })
        .map_err(io(&wal_path))?;
        let mut collection = StoredCollection {
            dir: dir.to_path_buf(),
            segment,
            wal,
            last_operation,
        };
        // Vector files no checkpoint names (a crash mid-checkpoint) go first: they may hold the space the
        // checkpoint below needs.
        vector_file::remove_others(dir, &collection.vector_files())?;
        // Rows of vectors kept on disk that arrived in the checkpoint itself (a snapshot, or the first
        // format) go to their file now when there are many. Failing that (a full disk), they stay in memory
        // and the collection opens: the next checkpoint tries again.
        if let Err(error) = collection.checkpoint_if_due() {
            tracing::warn!(collection = %dir.display(), %error, "a checkpoint at open failed; it is tried again later");
        }
        Ok(collection)
    }

    /// The vector files the points are read from.
    fn vector_files(&self) -> Vec<&str> {
        self.segment
            .spaces
            .values()
            .filter_map(|space| space.vectors.disk().map(|disk| disk.name.as_str()))
            .collect()
    }

    /// The points.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The number of the last operation applied.
    pub fn last_operation(&self) -> u64 {
        self.last_operation
    }

    /// Checks, logs (synced) and applies an operation; answers its number. A refused operation writes
    /// nothing; a logged one is applied before this returns.
    pub fn apply(&mut self, operation: Operation) -> Result<u64, StorageError> {
        let (number, staged) = self.apply_staged(operation)?;
        if let Some(staged) = staged {
            self.segment.link_staged(&staged);
        }
        self.checkpoint_if_due()?;
        Ok(number)
    }

    /// [`StoredCollection::apply`] without an upsert's graph links, which [`StoredCollection::link`] then
    /// makes under a shared reference (searches go on meanwhile), and without the checkpoint, which
    /// [`StoredCollection::checkpoint_if_due`] takes after. The write is durable when this returns.
    pub fn apply_staged(&mut self, operation: Operation) -> Result<(u64, Option<Staged>), StorageError> {
        self.segment.check(&operation)?;
        let mut out = Writer::default();
        operation.encode(&mut out);
        let number = self.last_operation + 1;
        self.wal.append(number, &out.bytes).map_err(io(self.wal.path()))?;
        let staged = self.segment.apply_staged(operation, number)?;
        self.last_operation = number;
        Ok((number, staged))
    }

    /// Links a staged upsert's points into the graphs.
    pub fn link(&self, staged: &Staged) {
        self.segment.link_staged(staged);
    }

    /// Writes a checkpoint when the log has grown past its limit (or vectors kept on disk hold as many
    /// bytes in memory).
    pub fn checkpoint_if_due(&mut self) -> Result<(), StorageError> {
        if self.wal.len() >= CHECKPOINT_AFTER_BYTES
            || self.segment.rows_in_memory_for_disk() as u64 >= CHECKPOINT_AFTER_BYTES
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Writes the segment as the new checkpoint (compacting it first when many points are tombstones)
    /// and empties the log.
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        if self.segment.deleted_fraction() > COMPACT_ABOVE {
            self.segment = self.segment.compacted().map_err(|error| StorageError::Damaged {
                path: self.dir.display().to_string(),
                message: format!("the collection could not be compacted: {error}"),
            })?;
        }
        // Vectors kept on disk: their new rows go to their file (synced) and are then read from there, so
        // the checkpoint names the file instead of holding them.
        for space in self.segment.spaces.values_mut() {
            if space.params.on_disk {
                let rows = vector_file::write_rows(&self.dir, &space.vectors)?;
                space.vectors.move_to_disk(rows);
            }
        }
        let path = self.dir.join("segment.bin");
        let bytes = segment_file::encode(&self.segment, self.last_operation, segment_file::Vectors::Files)
            .map_err(io(&path))?;
        write_durably(&path, &bytes)?;
        self.wal.clear().map_err(io(self.wal.path()))?;
        vector_file::remove_others(&self.dir, &self.vector_files())
    }

    /// A snapshot of the collection as it stands: its configuration and a checkpoint of its points, in one
    /// file that [`catalog::VectorStore::restore`] reads back (under the same name or another).
    pub fn snapshot(&self) -> Result<Vec<u8>, StorageError> {
        let config_path = self.dir.join("config.json");
        let config = std::fs::read(&config_path).map_err(io(&config_path))?;
        let segment = segment_file::encode(&self.segment, self.last_operation, segment_file::Vectors::Inline).map_err(
            |error| StorageError::Io {
                path: self.dir.display().to_string(),
                error,
            },
        )?;
        let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 8 + config.len() + segment.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&(config.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&config);
        bytes.extend_from_slice(&segment);
        Ok(bytes)
    }

    /// Where the collection lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The first bytes of a snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"LLVSNAP1";
/// The largest configuration a snapshot may carry.
const MAX_SNAPSHOT_CONFIG: u64 = 1 << 20;

/// A snapshot read and checked: its files' bytes, and the points they hold (decoded once, kept for the
/// restored collection).
pub(crate) struct Snapshot<'a> {
    pub(crate) config: &'a [u8],
    pub(crate) segment_bytes: &'a [u8],
    pub(crate) segment: Segment,
    pub(crate) checkpoint: u64,
}

/// A snapshot's configuration and checkpoint, checked: the configuration is read as a collection's, and the
/// checkpoint decodes (every length and link checked) with the vectors the configuration names.
pub(crate) fn split_snapshot(bytes: &[u8], threads: usize) -> Result<Snapshot<'_>, StorageError> {
    let damaged = |message: String| StorageError::Damaged {
        path: "snapshot".into(),
        message,
    };
    let rest = bytes
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or_else(|| damaged("not a Loopline vector snapshot (it does not start with LLVSNAP1)".into()))?;
    let length: [u8; 8] = rest
        .get(..8)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| damaged("it ends inside its header".into()))?;
    let length = u64::from_le_bytes(length);
    if length > MAX_SNAPSHOT_CONFIG || length > (rest.len() - 8) as u64 {
        return Err(damaged(format!("its configuration claims {length} bytes")));
    }
    let (config, segment) = rest[8..].split_at(length as usize);
    let parsed: StoredConfig =
        serde_json::from_slice(config).map_err(|error| damaged(format!("its configuration: {error}")))?;
    let (decoded, checkpoint) = segment_file::decode(segment, threads, None).map_err(|error| damaged(error.0))?;
    let named: Vec<&str> = decoded.vector_params().map(|(name, _)| name).collect();
    if !named.iter().copied().eq(parsed.vectors.keys().map(String::as_str)) {
        return Err(damaged(format!(
            "its configuration names vectors {:?}, its points {named:?}",
            parsed.vectors.keys().collect::<Vec<_>>()
        )));
    }
    for (name, params) in decoded.vector_params() {
        let stored = &parsed.vectors[name];
        if stored.size != params.size
            || stored.distance != params.distance
            || stored.int8 != params.int8
            || stored.on_disk != params.on_disk
        {
            return Err(damaged(format!(
                "its configuration and its points disagree about vector '{name}' (size, distance, int8 or on_disk)"
            )));
        }
    }
    Ok(Snapshot {
        config,
        segment_bytes: segment,
        segment: decoded,
        checkpoint,
    })
}

/// Writes a file so that a crash leaves either the old content or the new: a temporary file beside it,
/// synced, renamed over it, and the directory synced.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|directory| directory.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}
