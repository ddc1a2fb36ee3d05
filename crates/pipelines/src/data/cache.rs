//! The local cache: objects by content id under `objects/ab/cdef…`, written through a staging directory and
//! renamed into place, so an interrupted add or pull leaves no half-written object, only staging debris that
//! the next open removes. Objects are read-only: a workspace copy can be edited, the cache cannot.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::content::ContentId;
use super::files::{Stamp, hash_file};
use super::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// Staging files older than this are debris of an interrupted run.
const STAGING_DEBRIS_AGE: Duration = Duration::from_secs(3_600);

/// A cache directory.
#[derive(Debug, Clone)]
pub struct LocalCache {
    objects: PathBuf,
    staging: PathBuf,
}

impl LocalCache {
    /// Opens (creating) the cache in `directory`, clearing old staging debris.
    pub fn open(directory: &Path) -> Result<LocalCache, String> {
        let objects = directory.join("objects");
        let staging = directory.join("staging");
        for dir in [&objects, &staging] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating the cache at {}: {e}", dir.display()))?;
        }
        if let Ok(entries) = std::fs::read_dir(&staging) {
            let now = SystemTime::now();
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > STAGING_DEBRIS_AGE);
                if old {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(LocalCache { objects, staging })
    }

    /// Where an object is (or would be).
    pub fn path_of(&self, id: &ContentId) -> PathBuf {
        self.objects.join(id.object_path())
    }

    /// Whether the cache holds an object.
    pub fn contains(&self, id: &ContentId) -> bool {
        self.path_of(id).is_file()
    }

    /// Whether the cache holds an object of this size (one of another size is damaged: it is replaced when
    /// the right bytes come).
    fn holds(&self, id: &ContentId, size: u64) -> bool {
        std::fs::metadata(self.path_of(id)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Copies a workspace file in as `id` (its hash, taken before), unless the cache has it already. The bytes
    /// are hashed as they are copied (one pass), so a file that changed since it was hashed is refused rather
    /// than stored under the wrong id. Returns whether bytes were copied.
    pub fn insert_file(&self, id: &ContentId, source: &Path) -> Result<bool, String> {
        let size = std::fs::metadata(source).map_or(u64::MAX, |m| m.len());
        if self.holds(id, size) {
            return Ok(false);
        }
        let mut staged = self.stage(id)?;
        staged.copy_from(source)?;
        staged.commit().map_err(|error| {
            if error.starts_with("the bytes received") {
                format!("{} changed while it was being added; add it again", source.display())
            } else {
                error
            }
        })?;
        Ok(true)
    }

    /// Copies in a workspace file whose content id is not known yet, hashing the bytes as they are copied (one
    /// pass: the id is that of the bytes stored). The file must still have the stamp it was listed with once
    /// copied, else it changed meanwhile and nothing is stored. Returns the id and whether it was new.
    pub fn insert_new_file(&self, source: &Path, listed: &Stamp) -> Result<(ContentId, bool), String> {
        let mut staged = StagedObject {
            cache: self.clone(),
            id: None,
            path: self.staging_path(),
            file: None,
            hasher: blake3::Hasher::new(),
        };
        staged.file = Some(File::create(&staged.path).map_err(|e| format!("writing {}: {e}", staged.path.display()))?);
        staged.copy_from(source)?;
        let now = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
        if Stamp::of(&now) != *listed {
            return Err(format!(
                "{} changed while it was being added; add it again",
                source.display()
            ));
        }
        staged.file = None;
        let id = ContentId::file(staged.hasher.finalize());
        if self.holds(&id, listed.size) {
            let _ = std::fs::remove_file(&staged.path);
            return Ok((id, false));
        }
        self.commit(&staged.path, &id)?;
        Ok((id, true))
    }

    /// Makes a workspace file, hashed before to `id` with the stamp `listed`, an object by a hard link rather
    /// than a copy (no bytes written), unless the cache has it already. The shared file loses its write
    /// permission (it is protected: the cache's copy cannot be edited through the working tree by accident).
    /// Where links cannot be made (another file system) the file is copied. Returns whether it was new.
    pub fn link_file(&self, id: &ContentId, source: &Path, listed: &Stamp) -> Result<bool, String> {
        if self.holds(id, listed.size) {
            return Ok(false);
        }
        // Copied instead: a symbolic link (it would be linked itself, not its file), and a file with other
        // names already (one outside the project would become a cache object, and be made read-only).
        let single = std::fs::symlink_metadata(source).is_ok_and(|m| m.file_type().is_file() && m.nlink() == 1);
        let staged = self.staging_path();
        if !single || std::fs::hard_link(source, &staged).is_err() {
            return self.insert_file(id, source);
        }
        // Linked after it was hashed: a file changed in between is refused (its stamp tells).
        let metadata = std::fs::metadata(&staged);
        if !metadata.as_ref().is_ok_and(|m| Stamp::of(m) == *listed) {
            let _ = std::fs::remove_file(&staged);
            return Err(format!(
                "{} changed while it was being added; add it again",
                source.display()
            ));
        }
        let exec = metadata.is_ok_and(|m| m.permissions().mode() & 0o100 != 0);
        self.commit_with_mode(&staged, id, if exec { 0o555 } else { 0o444 })?;
        Ok(true)
    }

    /// Stores bytes already known to hash to `id` (a manifest), unless present.
    pub fn insert_bytes(&self, id: &ContentId, bytes: &[u8]) -> Result<(), String> {
        if self.holds(id, bytes.len() as u64) {
            return Ok(());
        }
        if !id.matches(bytes) {
            return Err(format!("the bytes given for object {id} do not hash to it"));
        }
        let staged = self.staging_path();
        std::fs::write(&staged, bytes).map_err(|e| format!("writing {}: {e}", staged.display()))?;
        self.commit(&staged, id)
    }

    /// A writer for an object arriving in parts (a download): its bytes are hashed as they come and it enters
    /// the cache only if they hash to the id expected.
    pub fn stage(&self, id: &ContentId) -> Result<StagedObject, String> {
        let path = self.staging_path();
        let file = File::create(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(StagedObject {
            cache: self.clone(),
            id: Some(id.clone()),
            path,
            file: Some(file),
            hasher: blake3::Hasher::new(),
        })
    }

    /// Reads and checks a directory's manifest.
    pub fn manifest(&self, id: &ContentId) -> Result<Manifest, String> {
        let path = self.path_of(id);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("the manifest {id} is not in the cache ({e}); run `loopline data pull`"))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(format!(
                "the manifest {id} is {size} bytes, more than the {MAX_MANIFEST_BYTES} allowed"
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if !id.matches(&bytes) {
            return Err(format!(
                "the cached manifest {id} is damaged; remove {} and pull it again",
                path.display()
            ));
        }
        Manifest::parse(&bytes).map_err(|e| format!("manifest {id}: {e}"))
    }

    /// Whether a cached object's bytes still hash to its id.
    pub fn verify(&self, id: &ContentId) -> bool {
        let path = self.path_of(id);
        if id.is_directory() {
            return std::fs::read(&path).is_ok_and(|bytes| id.matches(&bytes));
        }
        hash_file(&path).is_ok_and(|(hash, _)| ContentId::file(hash) == *id)
    }

    /// Every object id in the cache (names that are not ids are skipped) with its size.
    pub fn objects(&self) -> Result<Vec<(ContentId, u64)>, String> {
        let mut found = Vec::new();
        let prefixes = std::fs::read_dir(&self.objects).map_err(|e| format!("{}: {e}", self.objects.display()))?;
        for prefix in prefixes.flatten() {
            let Some(head) = prefix.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(prefix.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(tail) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if let (Ok(id), Ok(metadata)) = (ContentId::parse(&format!("{head}{tail}")), entry.metadata()) {
                    found.push((id, metadata.len()));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes an object.
    pub fn remove(&self, id: &ContentId) -> Result<(), String> {
        let path = self.path_of(id);
        std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))
    }

    fn staging_path(&self) -> PathBuf {
        self.staging.join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn commit(&self, staged: &Path, id: &ContentId) -> Result<(), String> {
        self.commit_with_mode(staged, id, 0o444)
    }

    fn commit_with_mode(&self, staged: &Path, id: &ContentId, mode: u32) -> Result<(), String> {
        let target = self.path_of(id);
        let done = (|| {
            std::fs::set_permissions(staged, std::fs::Permissions::from_mode(mode))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(staged, &target)
        })();
        done.map_err(|e| {
            let _ = std::fs::remove_file(staged);
            format!("storing object {id} at {}: {e}", target.display())
        })
    }
}

/// An object being written into the cache; dropped without [`StagedObject::commit`], it leaves nothing.
pub struct StagedObject {
    cache: LocalCache,
    /// The id the bytes must hash to (none: they name themselves).
    id: Option<ContentId>,
    path: PathBuf,
    file: Option<File>,
    hasher: blake3::Hasher,
}

/// Bytes read at a time when copying into the cache.
const COPY_CHUNK: usize = 1 << 20;

/// Hands a file's bytes to `sink` a chunk at a time (through this thread's buffer).
pub(super) fn read_through(source: &Path, mut sink: impl FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
    let mut input = File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
    COPY_BUFFER.with_borrow_mut(|buffer| {
        buffer.resize(COPY_CHUNK, 0);
        loop {
            let read = match std::io::Read::read(&mut input, buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading {}: {e}", source.display())),
            };
            sink(&buffer[..read])?;
        }
    })
}

thread_local! {
    /// Each thread's copy buffer, kept between files (10,000 small files would otherwise fault in 10,000 fresh
    /// buffers).
    static COPY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl StagedObject {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.hasher.update(bytes);
        let file = self.file.as_mut().ok_or("the object was already committed")?;
        file.write_all(bytes)
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }

    /// Appends a file's bytes.
    fn copy_from(&mut self, source: &Path) -> Result<(), String> {
        read_through(source, |bytes| self.write(bytes))
            .map_err(|e| format!("copying {} into the cache: {e}", source.display()))
    }

    /// Moves the object into the cache if its bytes hash to the id expected.
    pub fn commit(mut self) -> Result<(), String> {
        drop(self.file.take());
        let hash = self.hasher.finalize();
        let id = self.id.clone().ok_or("the object has no id to be checked against")?;
        if hash.to_hex().as_str() != id.hex() {
            let _ = std::fs::remove_file(&self.path);
            return Err(format!(
                "the bytes received for object {} hash to {}; nothing was stored",
                id,
                hash.to_hex()
            ));
        }
        self.cache.commit(&self.path, &id)
    }
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_enter_once_read_only_and_only_under_their_hash() {
        let directory = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(&directory.path().join("cache")).unwrap();
        let source = directory.path().join("data.csv");
        std::fs::write(&source, b"a,b\n1,2\n").unwrap();
        let id = ContentId::file(blake3::hash(b"a,b\n1,2\n"));
        assert!(cache.insert_file(&id, &source).unwrap());
        assert!(!cache.insert_file(&id, &source).unwrap());
        let mode = std::fs::metadata(cache.path_of(&id)).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0);
        assert!(cache.verify(&id));
        let wrong = ContentId::file(blake3::hash(b"something else"));
        assert!(
            cache
                .insert_file(&wrong, &source)
                .unwrap_err()
                .contains("changed while")
        );
        assert!(!cache.contains(&wrong));
        assert_eq!(cache.objects().unwrap(), vec![(id, 8)]);
        assert_eq!(
            std::fs::read_dir(directory.path().join("cache/staging"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn staged_downloads_are_checked_and_leave_no_debris() {
        let directory = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(directory.path()).unwrap();
        let id = ContentId::file(blake3::hash(b"hello world"));
        let mut wrong = cache.stage(&id).unwrap();
        wrong.write(b"hello there").unwrap();
        assert!(wrong.commit().unwrap_err().contains("nothing was stored"));
        let mut abandoned = cache.stage(&id).unwrap();
        abandoned.write(b"hello").unwrap();
        drop(abandoned);
        assert!(!cache.contains(&id));
        let mut right = cache.stage(&id).unwrap();
        right.write(b"hello ").unwrap();
        right.write(b"world").unwrap();
        right.commit().unwrap();
        assert!(cache.contains(&id) && cache.verify(&id));
        assert_eq!(std::fs::read_dir(directory.path().join("staging")).unwrap().count(), 0);
    }
}
