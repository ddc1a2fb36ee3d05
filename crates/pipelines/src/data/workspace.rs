//! A project's datasets in the working tree: adding a file or directory (hash, cache, pointer), its status
//! against its pointer and the cache, and checking a version out of the cache.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use super::cache::LocalCache;
use super::content::ContentId;
use super::files::{WorkspaceFile, hash_file, hash_files, single_file, walk};
use super::links::{LinkMode, place};
use super::manifest::{Manifest, ManifestEntry};
use super::pointer::{Pointer, check_name, is_pointer, name_from, pointer_path};
use super::state::HashState;

/// The project directory's own folder.
pub const PROJECT_DIR: &str = ".loopline";
/// How an error about objects missing from the cache begins.
const LACKING: &str = "the cache lacks ";

/// Told how long work goes.
pub trait Progress: Sync {
    /// A phase begins with this many bytes to go.
    fn phase(&self, what: &str, bytes: u64);
    /// Bytes done.
    fn advance(&self, bytes: u64);
}

/// Progress told to nobody.
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&self, _what: &str, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// A project: the directory holding `.loopline/` (found upward from where a command runs; else the git
/// repository's top, else the directory itself), its cache and its remembered hashes.
pub struct Project {
    root: PathBuf,
    cache: LocalCache,
    state: Mutex<HashState>,
    link: LinkMode,
    /// A shared lock on the cache, held while the project is open: `gc` needs it alone.
    lock: std::fs::File,
}

/// What `add` did.
#[derive(Debug, Clone)]
pub struct Added {
    /// The pointer written.
    pub pointer: Pointer,
    /// Where.
    pub pointer_path: PathBuf,
    /// Whether the content is what the pointer already named.
    pub unchanged: bool,
    /// Bytes read to hash (files whose stamps were not remembered).
    pub hashed_bytes: u64,
    /// Objects copied into the cache (the others were there already).
    pub new_objects: usize,
}

/// How the working tree stands against a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeState {
    /// As the pointer says.
    Unchanged,
    /// The data is not there.
    Missing,
    /// A file whose content differs.
    ModifiedFile,
    /// A directory whose files differ (paths, by what happened to them).
    ModifiedDirectory {
        /// Files not in the version.
        added: Vec<String>,
        /// Files of the version not in the tree.
        removed: Vec<String>,
        /// Files whose content differs.
        modified: Vec<String>,
    },
}

/// A pointer's status.
#[derive(Debug, Clone)]
pub struct DataStatus {
    /// The pointer file.
    pub pointer_path: PathBuf,
    /// Its content.
    pub pointer: Pointer,
    /// The working tree against it.
    pub tree: TreeState,
    /// Objects of the version the cache lacks (all of them, if its manifest is missing: then 1 is shown).
    pub missing_from_cache: usize,
}

/// What `checkout` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedOut {
    /// Files written.
    pub written: usize,
    /// Files already right.
    pub kept: usize,
    /// Files removed (not in the version; with `force`).
    pub removed: usize,
}

/// What a snapshot stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The content id.
    pub id: ContentId,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// Bytes read to hash.
    pub hashed_bytes: u64,
    /// Objects new to the cache.
    pub new_objects: usize,
}

impl Project {
    /// The project `start` is in, creating `.loopline/` at its root if there is none yet.
    pub fn find(start: &Path) -> Result<Project, String> {
        let start = start.canonicalize().map_err(|e| format!("{}: {e}", start.display()))?;
        let marked = |dir: &Path, name: &str| dir.join(name).exists();
        let root = start
            .ancestors()
            .find(|dir| marked(dir, PROJECT_DIR))
            .or_else(|| start.ancestors().find(|dir| marked(dir, ".git")))
            .unwrap_or(&start)
            .to_path_buf();
        Project::open(&root)
    }

    /// The project rooted at `root`.
    pub fn open(root: &Path) -> Result<Project, String> {
        let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
        let own = root.join(PROJECT_DIR);
        let cache = LocalCache::open(&own.join("cache"))?;
        let lock_path = own.join("cache").join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
        // Waits while a `gc` runs; any number of other commands share the cache.
        lock.lock_shared()
            .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        // The cache, remembered hashes, run records and locks stay out of git; the folder itself may be
        // committed. Written only as a file of its own (a link could lead anywhere).
        let ignore = own.join(".gitignore");
        match std::fs::symlink_metadata(&ignore) {
            Err(_) => {
                let _ = std::fs::write(&ignore, OWN_IGNORED);
            }
            Ok(metadata) if metadata.is_file() => {
                let text = std::fs::read_to_string(&ignore).unwrap_or_default();
                if !text.lines().any(|line| line == "/pipeline.lock") {
                    let separator = if text.is_empty() || text.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    };
                    let _ = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&ignore)
                        .and_then(|mut file| {
                            std::io::Write::write_all(&mut file, format!("{separator}/pipeline.lock\n").as_bytes())
                        });
                }
            }
            Ok(_) => {}
        }
        let state = Mutex::new(HashState::load(&own.join("state.json")));
        Ok(Project {
            root,
            cache,
            state,
            link: LinkMode::Copy,
            lock,
        })
    }

    /// Takes the cache for this process alone (garbage collection), or says who else is using it.
    pub fn lock_exclusively(&self) -> Result<(), String> {
        self.lock.try_lock().map_err(|_| {
            "another loopline command (an add, a checkout, a pull or a pipeline run) is using this project's cache; \
             run gc again when it has finished"
                .to_string()
        })
    }

    /// The project, adding and checking out data as `link` says.
    pub fn with_link(mut self, link: LinkMode) -> Project {
        self.link = link;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache.
    pub fn cache(&self) -> &LocalCache {
        &self.cache
    }

    /// Adds a file or directory: hashes what changed, copies new content into the cache and writes the
    /// pointer beside it (keeping the dataset name, and the version when the content is unchanged).
    pub fn add(&self, target: &Path, name: Option<&str>, progress: &dyn Progress) -> Result<Added, String> {
        let target = self.inside(target)?;
        if is_pointer(&target) {
            return Err(format!("{} is a pointer file; add the data it names", target.display()));
        }
        // Pointers are looked for outside hidden folders (status, checkout and gc would miss this one, and gc
        // would remove its content).
        let folders = target.parent().and_then(|parent| parent.strip_prefix(&self.root).ok());
        if folders.is_some_and(|folders| {
            folders
                .components()
                .any(|c| c.as_os_str().to_str().is_none_or(|name| name.starts_with('.')))
        }) {
            return Err(format!(
                "{} is inside a hidden folder, where Loopline does not look for pointer files; move it out to version it",
                target.display()
            ));
        }
        self.refuse_overlap(&target)?;
        let pointer_path = pointer_path(&target);
        let previous = pointer_path
            .exists()
            .then(|| Pointer::read(&pointer_path))
            .transpose()?;
        let dataset = match (name, &previous) {
            (Some(name), _) => name.to_string(),
            (None, Some(previous)) => previous.dataset.clone(),
            (None, None) => name_from(&target),
        };
        check_name(&dataset)?;
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: the name is not UTF-8", target.display()))?;
        crate::data::manifest::check_data_path(file_name).map_err(|e| format!("{}: {e}", target.display()))?;
        let snapshot = self.snapshot_inside(&target, progress)?;
        let (id, size) = (snapshot.id.clone(), snapshot.size);
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.hash == id.key() && p.dataset == dataset);
        let pointer = Pointer {
            dataset,
            path: file_name.to_string(),
            hash: id.key(),
            size,
            files: snapshot.files,
            version: previous.filter(|_| unchanged).and_then(|p| p.version),
        };
        pointer.write(&pointer_path)?;
        self.ignore_in_git(&target)?;
        self.save_state()?;
        Ok(Added {
            pointer,
            pointer_path,
            unchanged,
            hashed_bytes: snapshot.hashed_bytes,
            new_objects: snapshot.new_objects,
        })
    }

    /// Whether the cache holds all of an object: a file, or a directory's manifest and every file in it.
    pub fn complete_in_cache(&self, id: &ContentId) -> bool {
        if !self.cache.contains(id) {
            return false;
        }
        if !id.is_directory() {
            return true;
        }
        self.cache.manifest(id).is_ok_and(|manifest| {
            manifest
                .entries()
                .iter()
                .all(|e| e.id().is_ok_and(|id| self.cache.contains(&id)))
        })
    }

    /// Hashes a file or directory in the project and copies new content into the cache (a directory's
    /// manifest too), without a pointer: how a pipeline step's outputs are kept.
    pub fn snapshot(&self, target: &Path, progress: &dyn Progress) -> Result<Snapshot, String> {
        let target = self.inside(target)?;
        self.snapshot_inside(&target, progress)
    }

    /// The content id of a file or directory in the project, hashing only what changed and storing nothing.
    pub fn identify_path(&self, target: &Path) -> Result<ContentId, String> {
        let target = self.inside(target)?;
        let (files, directory) = self.files_of(&target)?;
        let (ids, _) = self.identify(&files, &Quiet)?;
        self.save_state()?;
        if directory {
            directory_id(&files, &ids)
        } else {
            Ok(ids[0].clone())
        }
    }

    fn files_of(&self, target: &Path) -> Result<(Vec<WorkspaceFile>, bool), String> {
        let metadata = std::fs::metadata(target).map_err(|e| format!("{}: {e}", target.display()))?;
        if metadata.is_dir() {
            return Ok((walk(target, &self.root)?, true));
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("the path has no UTF-8 file name")?;
        Ok((vec![single_file(target, name)?], false))
    }

    fn snapshot_inside(&self, target: &Path, progress: &dyn Progress) -> Result<Snapshot, String> {
        let (files, directory) = self.files_of(target)?;
        let (ids, hashed_bytes, copied) = self.identify_storing(&files, progress)?;
        // A remembered hash that proved wrong while copying is forgotten for good (the next add hashes the
        // file again), even though this add fails.
        let new_objects = copied
            + self.store(&files, &ids, progress).inspect_err(|_| {
                let _ = self.save_state();
            })?;
        let (id, size) = if directory {
            let manifest = manifest_of(&files, &ids)?;
            let id = manifest.id();
            self.cache.insert_bytes(&id, &manifest.to_bytes())?;
            (id, manifest.size())
        } else {
            (ids[0].clone(), files[0].stamp.size)
        };
        self.save_state()?;
        Ok(Snapshot {
            id,
            size,
            files: files.len() as u64,
            hashed_bytes,
            new_objects,
        })
    }

    /// How the working tree and the cache stand against a pointer file.
    pub fn status(&self, pointer_path: &Path) -> Result<DataStatus, String> {
        let pointer = Pointer::read(pointer_path)?;
        let id = pointer.id()?;
        let data = data_path(pointer_path, &pointer);
        let manifest = id.is_directory().then(|| self.cache.manifest(&id)).and_then(Result::ok);
        let missing_from_cache = match (&manifest, id.is_directory()) {
            (_, false) => usize::from(!self.cache.contains(&id)),
            (None, true) => 1,
            (Some(manifest), true) => manifest
                .entries()
                .iter()
                .filter(|e| e.id().map_or(true, |id| !self.cache.contains(&id)))
                .map(|e| e.hash.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
        };
        let tree = match std::fs::metadata(&data) {
            Err(_) => TreeState::Missing,
            Ok(metadata) if metadata.is_dir() != id.is_directory() => TreeState::ModifiedFile,
            Ok(metadata) if metadata.is_dir() => {
                let files = walk(&data, &self.root)?;
                let (ids, _) = self.identify(&files, &Quiet)?;
                let now: HashMap<&str, &ContentId> = files.iter().map(|f| f.relative.as_str()).zip(&ids).collect();
                let expected: HashMap<&str, String> = manifest
                    .as_ref()
                    .map(|m| m.entries().iter().map(|e| (e.path.as_str(), e.hash.clone())).collect())
                    .unwrap_or_default();
                let added: Vec<String> = now
                    .keys()
                    .filter(|p| !expected.contains_key(*p))
                    .map(|p| p.to_string())
                    .collect();
                let removed: Vec<String> = expected
                    .keys()
                    .filter(|p| !now.contains_key(*p))
                    .map(|p| p.to_string())
                    .collect();
                let modified: Vec<String> = now
                    .iter()
                    .filter(|(path, id)| expected.get(*path).is_some_and(|hash| *hash != id.key()))
                    .map(|(path, _)| path.to_string())
                    .collect();
                let same = if manifest.is_some() {
                    added.is_empty() && removed.is_empty() && modified.is_empty()
                } else {
                    directory_id(&files, &ids)? == id
                };
                if same {
                    TreeState::Unchanged
                } else {
                    let sorted = |mut paths: Vec<String>| {
                        paths.sort();
                        paths
                    };
                    TreeState::ModifiedDirectory {
                        added: sorted(added),
                        removed: sorted(removed),
                        modified: sorted(modified),
                    }
                }
            }
            Ok(_) => {
                let file = single_file(&data, &pointer.path)?;
                let (ids, _) = self.identify(std::slice::from_ref(&file), &Quiet)?;
                if ids[0] == id {
                    TreeState::Unchanged
                } else {
                    TreeState::ModifiedFile
                }
            }
        };
        self.save_state()?;
        Ok(DataStatus {
            pointer_path: pointer_path.to_path_buf(),
            pointer,
            tree,
            missing_from_cache,
        })
    }

    /// Makes the working tree hold the version a pointer names, from the cache. Files with changes that were
    /// not added (and, in a directory, files the version does not hold) are only replaced or removed with
    /// `force`; without it nothing is touched and the error lists them.
    pub fn checkout(&self, pointer_path: &Path, force: bool, progress: &dyn Progress) -> Result<CheckedOut, String> {
        let pointer = Pointer::read(pointer_path)?;
        let id = pointer.id()?;
        let data = data_path(pointer_path, &pointer);
        self.restore(&data, &id, pointer.size, force, progress)
            .map_err(|e| match e.strip_prefix(LACKING) {
                Some(rest) => format!(
                    "the cache lacks {rest} of {}; run `loopline data pull {}`",
                    pointer.dataset,
                    pointer_path.display()
                ),
                None => e,
            })
    }

    /// Makes `data` (in the project) hold the content `id` from the cache, as [`Project::checkout`] does.
    pub fn restore(
        &self,
        data: &Path,
        id: &ContentId,
        size: u64,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<CheckedOut, String> {
        // Everything below is written through this canonical path, never through a link on the way.
        let data = &self.inside_parent(data)?;
        if std::fs::symlink_metadata(data).is_ok_and(|m| m.file_type().is_symlink()) {
            if !force {
                return Err(format!(
                    "{} is a symbolic link; Loopline does not write data through links (use --force to replace the link)",
                    data.display()
                ));
            }
            std::fs::remove_file(data).map_err(|e| format!("removing the link {}: {e}", data.display()))?;
        }
        let name = data
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let wanted: Vec<ManifestEntry> = if id.is_directory() {
            self.cache.manifest(id)?.entries().to_vec()
        } else {
            vec![ManifestEntry {
                path: name.clone(),
                hash: id.key(),
                size,
                exec: false,
            }]
        };
        let lacking: Vec<&str> = wanted
            .iter()
            .filter(|e| e.id().map_or(true, |id| !self.cache.contains(&id)))
            .map(|e| e.path.as_str())
            .collect();
        if !lacking.is_empty() {
            return Err(format!("{LACKING}{} file(s) (first: {})", lacking.len(), lacking[0]));
        }
        let existing = match std::fs::metadata(data) {
            Err(_) => Vec::new(),
            Ok(metadata) if metadata.is_dir() && id.is_directory() => walk(data, &self.root)?,
            Ok(metadata) if !metadata.is_dir() && !id.is_directory() => vec![single_file(data, &name)?],
            Ok(_) if force => {
                remove_any(data)?;
                Vec::new()
            }
            Ok(_) => {
                return Err(format!(
                    "{} is a {} where the version has a {}; use --force to replace it",
                    data.display(),
                    if id.is_directory() { "file" } else { "directory" },
                    if id.is_directory() { "directory" } else { "file" }
                ));
            }
        };
        let (existing_ids, _) = self.identify(&existing, &Quiet)?;
        let present: HashMap<&str, (&WorkspaceFile, &ContentId)> = existing
            .iter()
            .map(|f| f.relative.as_str())
            .zip(existing.iter().zip(&existing_ids))
            .collect();
        let wanted_paths: BTreeSet<&str> = wanted.iter().map(|e| e.path.as_str()).collect();
        let changed: Vec<&str> = wanted
            .iter()
            .filter(|e| present.get(e.path.as_str()).is_some_and(|(_, id)| id.key() != e.hash))
            .map(|e| e.path.as_str())
            .collect();
        let extra: Vec<&WorkspaceFile> = existing
            .iter()
            .filter(|f| !wanted_paths.contains(f.relative.as_str()))
            .collect();
        if !force && (!changed.is_empty() || !extra.is_empty()) {
            let mut named: Vec<&str> = changed.clone();
            named.extend(extra.iter().map(|f| f.relative.as_str()));
            return Err(format!(
                "{} has {} changed and {} unversioned file(s) (first: {}); `loopline data add` them, or use --force to \
                 discard them",
                data.display(),
                changed.len(),
                extra.len(),
                named[0]
            ));
        }
        let to_write: Vec<&ManifestEntry> = wanted
            .iter()
            .filter(|e| present.get(e.path.as_str()).is_none_or(|(_, id)| id.key() != e.hash))
            .collect();
        // Files the version does not hold go first, so a file standing where the version has a directory
        // (or the reverse) is out of the way.
        for file in &extra {
            std::fs::remove_file(&file.path).map_err(|e| format!("removing {}: {e}", file.path.display()))?;
        }
        if id.is_directory() {
            remove_empty_directories(data);
        }
        progress.phase("checking out", to_write.iter().map(|e| e.size).sum());
        let directory = id.is_directory();
        let written: Vec<(PathBuf, ContentId)> = to_write
            .par_iter()
            .map(|entry| {
                let id = entry.id()?;
                let target = if directory {
                    data.join(&entry.path)
                } else {
                    data.to_path_buf()
                };
                place(&self.cache, &id, entry.size, &target, entry.exec, self.link)?;
                progress.advance(entry.size);
                Ok((target, id))
            })
            .collect::<Result<_, String>>()?;
        {
            let mut state = self.state.lock().map_err(|_| "the hash memory was poisoned")?;
            for (path, id) in &written {
                if let Ok(metadata) = std::fs::metadata(path) {
                    state.set(path, super::files::Stamp::of(&metadata), id);
                }
            }
        }
        self.ignore_in_git(data)?;
        self.save_state()?;
        Ok(CheckedOut {
            written: written.len(),
            kept: wanted.len() - to_write.len(),
            removed: extra.len(),
        })
    }

    /// Every pointer file in the project (hidden directories skipped), sorted.
    pub fn pointers(&self) -> Result<Vec<PathBuf>, String> {
        Ok(pointers_under(&self.root))
    }

    /// Refuses data that overlaps another dataset: inside one (a folder above it has a pointer beside it), or
    /// holding one (a pointer file inside it). Both versions would claim the same files, and git could not
    /// hold both pointers (the outer dataset's `.gitignore` line hides the inner one's); DVC refuses
    /// overlapping outputs too.
    fn refuse_overlap(&self, target: &Path) -> Result<(), String> {
        let mut folder = target.parent();
        while let Some(dir) = folder.filter(|dir| dir.starts_with(&self.root) && *dir != self.root) {
            let outer = pointer_path(dir);
            if outer.is_file() {
                return Err(format!(
                    "{} lies inside {}, which is a dataset of its own ({}); add that dataset again instead",
                    target.display(),
                    dir.display(),
                    outer.display()
                ));
            }
            folder = dir.parent();
        }
        if let Some(inner) = pointers_under(target).first() {
            return Err(format!(
                "{} holds {}, the pointer of a dataset of its own; remove that pointer (and its line in the \
                 .gitignore beside it) to version the whole folder as one dataset, or add the other parts separately",
                target.display(),
                inner.display()
            ));
        }
        Ok(())
    }

    /// The objects a pointer's version consists of: its own id and, for a directory, each file's (read from
    /// the cached manifest, which must be there).
    pub fn objects_of(&self, pointer: &Pointer) -> Result<Vec<(ContentId, u64)>, String> {
        let id = pointer.id()?;
        if !id.is_directory() {
            return Ok(vec![(id, pointer.size)]);
        }
        let manifest = self.cache.manifest(&id)?;
        let mut objects = vec![(id, manifest.to_bytes().len() as u64)];
        for entry in manifest.entries() {
            objects.push((entry.id()?, entry.size));
        }
        Ok(objects)
    }

    /// The content ids of files: remembered where their stamps match, hashed (in parallel) otherwise.
    fn identify(&self, files: &[WorkspaceFile], progress: &dyn Progress) -> Result<(Vec<ContentId>, u64), String> {
        let mut ids: Vec<Option<ContentId>> = {
            let state = self.state.lock().map_err(|_| "the hash memory was poisoned")?;
            files.iter().map(|f| state.get(&f.path, &f.stamp)).collect()
        };
        let unknown: Vec<usize> = (0..files.len()).filter(|i| ids[*i].is_none()).collect();
        let to_hash: Vec<&WorkspaceFile> = unknown.iter().map(|i| &files[*i]).collect();
        let bytes: u64 = to_hash.iter().map(|f| f.stamp.size).sum();
        if !to_hash.is_empty() {
            progress.phase("hashing", bytes);
        }
        let hashed = hash_files(&to_hash, &|done| progress.advance(done))?;
        let mut state = self.state.lock().map_err(|_| "the hash memory was poisoned")?;
        for (index, (hash, _)) in unknown.into_iter().zip(hashed) {
            let id = ContentId::file(hash);
            state.set(&files[index].path, files[index].stamp, &id);
            ids[index] = Some(id);
        }
        Ok((ids.into_iter().flatten().collect(), bytes))
    }

    /// As [`Project::identify`], but a file whose id is not remembered is copied into the cache as it is
    /// hashed (one pass over its bytes, not two). Returns the ids, the bytes read and the objects copied.
    fn identify_storing(
        &self,
        files: &[WorkspaceFile],
        progress: &dyn Progress,
    ) -> Result<(Vec<ContentId>, u64, usize), String> {
        let mut ids: Vec<Option<ContentId>> = {
            let state = self.state.lock().map_err(|_| "the hash memory was poisoned")?;
            files.iter().map(|f| state.get(&f.path, &f.stamp)).collect()
        };
        let unknown: Vec<usize> = (0..files.len()).filter(|i| ids[*i].is_none()).collect();
        let bytes: u64 = unknown.iter().map(|i| files[*i].stamp.size).sum();
        if !unknown.is_empty() {
            progress.phase("hashing and caching", bytes);
        }
        let stored: Vec<(ContentId, bool)> = unknown
            .par_iter()
            .map(|index| {
                let file = &files[*index];
                let stored = match self.link {
                    LinkMode::Copy => self.cache.insert_new_file(&file.path, &file.stamp)?,
                    LinkMode::Hardlink => {
                        let id = ContentId::file(hash_file(&file.path)?.0);
                        let new = self.cache.link_file(&id, &file.path, &file.stamp)?;
                        (id, new)
                    }
                };
                progress.advance(file.stamp.size);
                Ok(stored)
            })
            .collect::<Result<_, String>>()?;
        let mut state = self.state.lock().map_err(|_| "the hash memory was poisoned")?;
        // Two files with the same content copied at the same moment both find the object missing: the
        // object is new once.
        let mut copied = BTreeSet::new();
        for (index, (id, new)) in unknown.into_iter().zip(stored) {
            state.set(&files[index].path, files[index].stamp, &id);
            if new {
                copied.insert(id.clone());
            }
            ids[index] = Some(id);
        }
        Ok((ids.into_iter().flatten().collect(), bytes, copied.len()))
    }

    /// Copies files into the cache (in parallel) unless it has them; returns how many were new.
    fn store(&self, files: &[WorkspaceFile], ids: &[ContentId], progress: &dyn Progress) -> Result<usize, String> {
        let mut seen = BTreeSet::new();
        let missing: Vec<(&WorkspaceFile, &ContentId)> = files
            .iter()
            .zip(ids)
            .filter(|(_, id)| !self.cache.contains(id) && seen.insert((*id).clone()))
            .collect();
        if !missing.is_empty() {
            progress.phase("caching", missing.iter().map(|(f, _)| f.stamp.size).sum());
        }
        missing
            .par_iter()
            .map(|(file, id)| {
                let copied = match self.link {
                    LinkMode::Copy => self.cache.insert_file(id, &file.path),
                    // Linking reads nothing, and this id was remembered rather than read in this run: a file
                    // edited in place keeping its size and time would enter the cache under the old bytes' id.
                    LinkMode::Hardlink => match hash_file(&file.path) {
                        Ok((hash, _)) if ContentId::file(hash) == **id => {
                            self.cache.link_file(id, &file.path, &file.stamp)
                        }
                        Ok(_) => Err(format!(
                            "{} changed while it was being added (its bytes differ from the hash remembered \
                             for it); add it again",
                            file.path.display()
                        )),
                        Err(error) => Err(error),
                    },
                };
                let copied = copied.inspect_err(|_| {
                    if let Ok(mut state) = self.state.lock() {
                        state.forget(&file.path);
                    }
                })?;
                progress.advance(file.stamp.size);
                Ok(usize::from(copied))
            })
            .sum()
    }

    /// `path` made absolute and checked to lie inside the project (and not in its own folder or git's).
    pub(super) fn inside(&self, path: &Path) -> Result<PathBuf, String> {
        let absolute = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
        self.check_inside(&absolute, path)?;
        Ok(absolute)
    }

    /// As [`Project::inside`] for a path that may not exist yet (its parent must): the canonical path.
    fn inside_parent(&self, path: &Path) -> Result<PathBuf, String> {
        let parent = path
            .parent()
            .ok_or_else(|| format!("{} has no parent directory", path.display()))?;
        let absolute = parent
            .canonicalize()
            .map_err(|e| format!("{}: {e}", parent.display()))?;
        let absolute = absolute.join(
            path.file_name()
                .ok_or_else(|| format!("{} has no file name", path.display()))?,
        );
        self.check_inside(&absolute, path)?;
        Ok(absolute)
    }

    fn check_inside(&self, absolute: &Path, shown: &Path) -> Result<(), String> {
        let relative = absolute
            .strip_prefix(&self.root)
            .map_err(|_| format!("{} is outside the project at {}", shown.display(), self.root.display()))?;
        let reserved = relative.components().any(|c| {
            c.as_os_str()
                .to_str()
                .is_none_or(crate::data::manifest::is_reserved_name)
        });
        if relative.as_os_str().is_empty() || reserved {
            return Err(format!(
                "{} cannot be versioned: it is the project itself, a pointer file, or inside .git or .loopline",
                shown.display()
            ));
        }
        Ok(())
    }

    /// Lists the data in the `.gitignore` beside it, in a git repository, so only the pointer is committed.
    /// The name is escaped so it matches only itself; the line is appended in one write, so adds running
    /// together do not lose each other's lines.
    fn ignore_in_git(&self, data: &Path) -> Result<(), String> {
        if !self.root.join(".git").exists() {
            return Ok(());
        }
        let (Some(dir), Some(name)) = (data.parent(), data.file_name().and_then(|n| n.to_str())) else {
            return Ok(());
        };
        let ignore = dir.join(".gitignore");
        // Appending through a link would write wherever it leads (a repository can carry one).
        if std::fs::symlink_metadata(&ignore).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symbolic link; Loopline will not write through it (replace it with a file, or add \
                 the line /{} yourself)",
                ignore.display(),
                gitignore_escape(name)
            ));
        }
        let line = format!("/{}", gitignore_escape(name));
        let existing = std::fs::read_to_string(&ignore).unwrap_or_default();
        if existing.lines().any(|l| l == line) {
            return Ok(());
        }
        let separator = if existing.is_empty() || existing.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ignore)
            .map_err(|e| format!("updating {}: {e}", ignore.display()))?;
        std::io::Write::write_all(&mut file, format!("{separator}{line}\n").as_bytes())
            .map_err(|e| format!("updating {}: {e}", ignore.display()))
    }

    fn save_state(&self) -> Result<(), String> {
        self.state.lock().map_err(|_| "the hash memory was poisoned")?.save()
    }
}

/// Where a pointer's data is.
pub fn data_path(pointer_path: &Path, pointer: &Pointer) -> PathBuf {
    pointer_path.parent().unwrap_or(Path::new(".")).join(&pointer.path)
}

/// The manifest of a directory of these files.
fn manifest_of(files: &[WorkspaceFile], ids: &[ContentId]) -> Result<Manifest, String> {
    let entries = files
        .iter()
        .zip(ids)
        .map(|(f, id)| ManifestEntry {
            path: f.relative.clone(),
            hash: id.key(),
            size: f.stamp.size,
            exec: f.exec,
        })
        .collect();
    Manifest::new(entries)
}

/// The id of a directory of these files.
fn directory_id(files: &[WorkspaceFile], ids: &[ContentId]) -> Result<ContentId, String> {
    Ok(manifest_of(files, ids)?.id())
}

/// A file name as a `.gitignore` pattern matching only itself: wildcards, brackets, backslashes, a leading
/// `#` or `!` and trailing spaces escaped.
fn gitignore_escape(name: &str) -> String {
    let kept = name.trim_end_matches(' ').len();
    let mut escaped = String::new();
    for (at, c) in name.char_indices() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') || (at == 0 && matches!(c, '#' | '!')) || at >= kept {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Removes the empty directories below `root` (left when the files of another version went), deepest first.
fn remove_empty_directories(root: &Path) {
    let mut directories = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
                directories.push(entry.path());
            }
        }
    }
    for dir in directories.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

fn remove_any(path: &Path) -> Result<(), String> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| format!("removing {}: {e}", path.display()))
}

/// What `.loopline/.gitignore` keeps out of git.
const OWN_IGNORED: &str = "/cache\n/state.json\n/run-cache\n/pipeline-runs\n/datasets\n/pipeline.lock\n";

/// Every pointer file under `dir` (hidden directories skipped, links not followed), sorted.
fn pointers_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let hidden = name.to_str().is_none_or(|n| n.starts_with('.'));
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !hidden {
                pending.push(entry.path());
            } else if kind.is_file() && is_pointer(&entry.path()) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}
