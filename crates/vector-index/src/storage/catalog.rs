//! Every collection under one directory, by name: created, listed, opened at start, deleted whole.
//!
//! Names are confined to letters, digits, `_`, `-` and `.` (not leading), so a name is always one plain
//! directory under the root. A deletion first renames the directory to a hidden one and then removes it,
//! so a crash in between leaves nothing that looks like a collection; hidden leftovers are removed at the
//! next start.

use super::{StorageError, StoredCollection, io};
use crate::segment::VectorParams;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Longest collection name.
pub const MAX_NAME: usize = 255;

/// One collection, shared by the requests that use it.
pub struct Collection {
    name: String,
    inner: RwLock<StoredCollection>,
}

impl Collection {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads it (searches run side by side).
    pub fn read(&self) -> RwLockReadGuard<'_, StoredCollection> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes it (one writer at a time, no readers meanwhile).
    pub fn write(&self) -> RwLockWriteGuard<'_, StoredCollection> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The collections under a directory.
pub struct VectorStore {
    root: PathBuf,
    threads: usize,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
}

/// A name no other hidden directory of this process or an earlier one has: the time and a counter.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos}-{count}")
}

/// Why a collection name is refused, or `None` when it is fine.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!("collection names are 1 to {MAX_NAME} characters long"));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some("collection names use letters, digits, '_', '-' and '.' (not first)".into());
    }
    None
}

impl VectorStore {
    /// Opens every collection under `root` (none when it does not exist yet); graphs link on up to `threads`
    /// threads.
    pub fn open(root: &Path, threads: usize) -> Result<Self, StorageError> {
        let mut collections = BTreeMap::new();
        // The directory is made with the first collection, not before.
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries.collect::<Vec<_>>(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io(root)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(io(root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".deleted-") {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
                continue;
            }
            if name_problem(&name).is_some() || !path.join("config.json").is_file() {
                continue;
            }
            let stored = StoredCollection::open(&path, threads)?;
            collections.insert(
                name.clone(),
                Arc::new(Collection {
                    name,
                    inner: RwLock::new(stored),
                }),
            );
        }
        Ok(VectorStore {
            root: root.to_path_buf(),
            threads,
            collections: RwLock::new(collections),
        })
    }

    /// The collection named so.
    pub fn get(&self, name: &str) -> Option<Arc<Collection>> {
        self.collections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.collections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Creates a collection; answers false when one of that name exists (nothing changed).
    pub fn create(&self, name: &str, vectors: BTreeMap<String, VectorParams>) -> Result<bool, StorageError> {
        if let Some(problem) = name_problem(name) {
            return Err(StorageError::Damaged {
                path: name.to_string(),
                message: problem,
            });
        }
        let mut collections = self
            .collections
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if collections.contains_key(name) {
            return Ok(false);
        }
        let path = self.root.join(name);
        if path.exists() {
            // A directory without a loaded collection: an interrupted create. Start it afresh.
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        let stored = StoredCollection::create(&path, vectors, self.threads)?;
        collections.insert(
            name.to_string(),
            Arc::new(Collection {
                name: name.to_string(),
                inner: RwLock::new(stored),
            }),
        );
        Ok(true)
    }

    /// Deletes a collection and its files; answers whether it existed. The directory is renamed out of the
    /// way at once (so the name is free again and other collections are not held up), and removed once the
    /// requests using the collection are done.
    pub fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let (collection, hidden) = {
            let mut collections = self
                .collections
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(collection) = collections.remove(name) else {
                return Ok(false);
            };
            let path = self.root.join(name);
            let hidden = self.root.join(format!(".deleted-{}", unique_suffix()));
            if let Err(error) = std::fs::rename(&path, &hidden) {
                collections.insert(name.to_string(), collection);
                return Err(io(&path)(error));
            }
            (collection, hidden)
        };
        let _held = collection.write();
        std::fs::remove_dir_all(&hidden).map_err(io(&hidden))?;
        Ok(true)
    }

    /// Writes a checkpoint of every collection (at shutdown).
    pub fn checkpoint_all(&self) -> Vec<StorageError> {
        let collections: Vec<Arc<Collection>> = self
            .collections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        collections
            .iter()
            .filter_map(|collection| collection.write().checkpoint().err())
            .collect()
    }
}
