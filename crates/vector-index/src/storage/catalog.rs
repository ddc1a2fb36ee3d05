//! Every collection under one directory, by name: created, listed, opened at start, deleted whole.
//!
//! Each collection lives in a directory of its own with a generated name (`c-<time>-<counter>`), its name in
//! a `name` file beside its data: a collection created under the name of one being deleted never shares a
//! directory with it, however long the old one's last write takes, and no name reaches the file system.
//! Deleting first writes a `deleted` marker (synced) and takes the collection out of the listing, then waits
//! for the requests using it and removes the directory; a start-up removes marked leftovers.

use super::{StorageError, StoredCollection, io, write_durably};
use crate::ops::Operation;
use crate::segment::{Segment, VectorParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Longest collection name.
pub const MAX_NAME: usize = 255;

/// One collection, shared by the requests that use it.
pub struct Collection {
    name: String,
    dir: PathBuf,
    deleted: AtomicBool,
    inner: RwLock<StoredCollection>,
    /// Held by [`Collection::update`] from its write to the end of its linking, so the next writer waits
    /// here rather than on `inner` (where a waiting writer would hold back new searches).
    writers: Mutex<()>,
}

impl Collection {
    fn new(name: &str, dir: PathBuf, stored: StoredCollection) -> Arc<Collection> {
        Arc::new(Collection {
            name: name.to_string(),
            dir,
            deleted: AtomicBool::new(false),
            inner: RwLock::new(stored),
            writers: Mutex::new(()),
        })
    }

    /// Waits for the requests using it, marks it gone for those still holding it, and removes its files
    /// (it has already left the listing, and its directory is marked `deleted`).
    fn retire(&self) -> Result<(), StorageError> {
        {
            let _held = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            self.deleted.store(true, Ordering::Release);
        }
        std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads it (searches run side by side); `None` once it has been deleted.
    pub fn read(&self) -> Option<RwLockReadGuard<'_, StoredCollection>> {
        let guard = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        (!self.deleted.load(Ordering::Acquire)).then_some(guard)
    }

    /// Applies the operation `make` builds from the points as they are (under the write lock, so a filter is
    /// resolved against the same points the write changes) and answers its number, once it is durable and
    /// applied. An upsert's graph links are made afterwards under the read lock: searches go on while a
    /// large batch is linked (finding its points by exact search meanwhile, by the graph once linked), and
    /// other writers wait for it. `gone` is the error once the collection has been deleted.
    pub fn update<E: From<StorageError>>(
        &self,
        make: impl FnOnce(&Segment) -> Result<Operation, E>,
        gone: impl Fn() -> E,
    ) -> Result<u64, E> {
        let _writer = self.writers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (number, staged) = {
            let mut stored = self.write().ok_or_else(&gone)?;
            let operation = make(stored.segment())?;
            stored.apply_staged(operation)?
        };
        if let Some(staged) = staged {
            self.read().ok_or_else(&gone)?.link(&staged);
        }
        // The write is durable and applied: a checkpoint that fails now (a full disk) is logged and tried
        // again after the next write, and the write is still acknowledged.
        if let Err(error) = self.write().ok_or_else(&gone)?.checkpoint_if_due() {
            tracing::error!(collection = %self.name, %error, "a checkpoint failed; it is tried again after the next write");
        }
        Ok(number)
    }

    /// Writes it (one writer at a time, no readers meanwhile); `None` once it has been deleted.
    pub fn write(&self) -> Option<RwLockWriteGuard<'_, StoredCollection>> {
        let guard = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        (!self.deleted.load(Ordering::Acquire)).then_some(guard)
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
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(root))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if file_name.starts_with(".deleted-")
                || file_name.starts_with(".restoring-")
                || path.join("deleted").exists()
            {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
                continue;
            }
            paths.push((file_name, path));
        }
        // A restore that renamed its new directory into place but stopped before removing the one it replaces.
        for (_, path) in &paths {
            if let Ok(replaced) = std::fs::read_to_string(path.join("replaces")) {
                let old = root.join(replaced.trim());
                if replaced.starts_with("c-") && !replaced.contains(['/', '\\']) && old.is_dir() {
                    std::fs::remove_dir_all(&old).map_err(io(&old))?;
                }
            }
        }
        for (file_name, path) in paths {
            if !path.exists() {
                continue;
            }
            if !path.join("config.json").is_file() {
                continue;
            }
            // Collections made before names moved into a file are named by their directory.
            let name = match std::fs::read_to_string(path.join("name")) {
                Ok(name) => name,
                Err(_) if name_problem(&file_name).is_none() => file_name.clone(),
                Err(_) => continue,
            };
            if name_problem(&name).is_some() {
                return Err(StorageError::Damaged {
                    path: path.join("name").display().to_string(),
                    message: "not a valid collection name".into(),
                });
            }
            if collections.contains_key(&name) {
                return Err(StorageError::Damaged {
                    path: path.display().to_string(),
                    message: format!("a second directory holds collection '{name}'; move one of them aside"),
                });
            }
            let stored = StoredCollection::open(&path, threads)?;
            let collection = Collection {
                name: name.clone(),
                dir: path,
                deleted: AtomicBool::new(false),
                inner: RwLock::new(stored),
                writers: Mutex::new(()),
            };
            collections.insert(name, Arc::new(collection));
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
        let dir = self.root.join(format!("c-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let made = write_durably(&dir.join("name"), name.as_bytes())
            .and_then(|()| StoredCollection::create(&dir, vectors, self.threads));
        let stored = match made {
            Ok(stored) => stored,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        collections.insert(name.to_string(), Collection::new(name, dir, stored));
        Ok(true)
    }

    /// Makes collection `name` from a snapshot ([`StoredCollection::snapshot`]), replacing the collection of
    /// that name if there is one. The snapshot is checked whole and written to a new directory before anything
    /// is replaced, so a damaged snapshot leaves the old collection as it was.
    pub fn restore(&self, name: &str, snapshot: &[u8]) -> Result<(), StorageError> {
        if let Some(problem) = name_problem(name) {
            return Err(StorageError::Damaged {
                path: name.to_string(),
                message: problem,
            });
        }
        let snapshot = super::split_snapshot(snapshot, self.threads)?;
        let suffix = unique_suffix();
        let staging = self.root.join(format!(".restoring-{suffix}"));
        let dir = self.root.join(format!("c-{suffix}"));
        let written = std::fs::create_dir_all(&staging)
            .map_err(io(&staging))
            .and_then(|()| write_durably(&staging.join("config.json"), snapshot.config))
            .and_then(|()| write_durably(&staging.join("segment.bin"), snapshot.segment_bytes))
            .and_then(|()| write_durably(&staging.join("name"), name.as_bytes()));
        if let Err(error) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
        let replaced = {
            let mut collections = self
                .collections
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let old = collections.get(name).cloned();
            // The new directory names the one it replaces: a restart after the rename removes the old one,
            // a restart before it removes the staging directory, so one directory holds the name either way.
            let prepared = match &old {
                Some(old) => {
                    let old_name = old
                        .dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    write_durably(&staging.join("replaces"), old_name.as_bytes())
                }
                None => Ok(()),
            }
            .and_then(|()| std::fs::rename(&staging, &dir).map_err(io(&dir)))
            .and_then(|()| {
                std::fs::File::open(&self.root)
                    .and_then(|root| root.sync_all())
                    .map_err(io(&self.root))
            })
            .and_then(|()| StoredCollection::replay(&dir, snapshot.segment, snapshot.checkpoint));
            let stored = match prepared {
                Ok(stored) => stored,
                Err(error) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(error);
                }
            };
            if let Some(old) = &old {
                write_durably(&old.dir.join("deleted"), b"")?;
            }
            collections.insert(name.to_string(), Collection::new(name, dir, stored));
            old
        };
        match replaced {
            Some(old) => old.retire(),
            None => Ok(()),
        }
    }

    /// Deletes a collection and its files; answers whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let collection = {
            let mut collections = self
                .collections
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(collection) = collections.get(name).cloned() else {
                return Ok(false);
            };
            // Marked before it leaves the listing, so a crash from here on never brings it back.
            write_durably(&collection.dir.join("deleted"), b"")?;
            collections.remove(name);
            collection
        };
        // Waits for the requests using it (the name is already free for a new collection in a new directory).
        collection.retire()?;
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
            .filter_map(|collection| collection.write().and_then(|mut stored| stored.checkpoint().err()))
            .collect()
    }
}
