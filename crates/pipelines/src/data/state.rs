//! Hashes remembered by file stamp (size, modification time, inode), so adding, checking or checking out an
//! unchanged dataset reads no file contents. Kept in `.loopline/state.json`; a missing, damaged or oversized
//! file is an empty memory (everything is hashed again), never an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::ContentId;
use super::files::Stamp;

/// The largest state file read.
const MAX_STATE_BYTES: u64 = 512 << 20;
/// Files modified this recently are hashed every time.
const RACY_NANOSECONDS: i128 = 2_000_000_000;
/// The most files remembered; beyond it the memory starts again.
const MAX_ENTRIES: usize = 5_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    stamp: Stamp,
    hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    files: HashMap<String, Remembered>,
}

/// The remembered hashes of a project.
#[derive(Debug)]
pub struct HashState {
    path: PathBuf,
    state: StateFile,
    changed: bool,
}

impl HashState {
    /// Loads the memory kept at `path`.
    pub fn load(path: &Path) -> HashState {
        let state = std::fs::metadata(path)
            .ok()
            .filter(|m| m.len() <= MAX_STATE_BYTES)
            .and_then(|_| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
            .unwrap_or_default();
        HashState {
            path: path.to_path_buf(),
            state,
            changed: false,
        }
    }

    /// The remembered id of the file at `path` if its stamp is unchanged.
    pub fn get(&self, path: &Path, stamp: &Stamp) -> Option<ContentId> {
        let remembered = self.state.files.get(path.to_str()?)?;
        if remembered.stamp != *stamp {
            return None;
        }
        ContentId::parse(&remembered.hash).ok().filter(|id| !id.is_directory())
    }

    /// Forgets a file (its remembered hash proved wrong).
    pub fn forget(&mut self, path: &Path) {
        if let Some(key) = path.to_str() {
            self.changed |= self.state.files.remove(key).is_some();
        }
    }

    /// Remembers a file's id at a stamp; not for a file modified within the last two seconds, which could
    /// change again without its stamp changing (git's "racy" files).
    pub fn set(&mut self, path: &Path, stamp: Stamp, id: &ContentId) {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        if now_ns - stamp.mtime_ns < RACY_NANOSECONDS {
            self.forget(path);
            return;
        }
        let Some(key) = path.to_str() else { return };
        if self.state.files.len() >= MAX_ENTRIES && !self.state.files.contains_key(key) {
            self.state.files.clear();
        }
        self.state
            .files
            .insert(key.to_string(), Remembered { stamp, hash: id.key() });
        self.changed = true;
    }

    /// Writes the memory back if it changed (through a temporary file, so a reader never sees half of it).
    pub fn save(&self) -> Result<(), String> {
        if !self.changed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.state).map_err(|e| e.to_string())?;
        super::write_atomically(&self.path, &bytes).map_err(|e| format!("saving remembered hashes: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_remembered_only_for_the_same_stamp() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        let file = Path::new("/data/a.csv");
        let stamp = Stamp {
            size: 3,
            mtime_ns: 10,
            inode: 7,
        };
        let racy = Stamp {
            mtime_ns: i128::from(i64::MAX),
            ..stamp
        };
        let id = ContentId::file(blake3::hash(b"abc"));
        let mut state = HashState::load(&path);
        assert_eq!(state.get(file, &stamp), None);
        state.set(file, stamp, &id);
        state.save().unwrap();
        let state = HashState::load(&path);
        assert_eq!(state.get(file, &stamp), Some(id.clone()));
        assert_eq!(state.get(file, &Stamp { mtime_ns: 11, ..stamp }), None);
        let mut state = state;
        state.set(file, racy, &id);
        assert_eq!(
            state.get(file, &racy),
            None,
            "a file modified just now is not remembered"
        );
        std::fs::write(&path, b"{ damaged").unwrap();
        assert_eq!(HashState::load(&path).get(file, &stamp), None);
    }
}
