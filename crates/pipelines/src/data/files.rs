//! The files of a dataset in the workspace: walked below a directory, and hashed in parallel (across files,
//! and within a large file across its chunks) with BLAKE3.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::manifest::{MAX_FILES, check_data_path, is_reserved_name};

/// Files from this size are hashed in chunks spread over the cores.
const PARALLEL_FROM_BYTES: u64 = 1 << 20;
/// Bytes read at once from a large file.
const CHUNK_BYTES: usize = 8 << 20;

thread_local! {
    /// Each thread's buffer for small files, kept between files.
    static SMALL_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A file found in the workspace, with what identifies its version on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// Path relative to the dataset's directory (`/`-separated), or the file's own name.
    pub relative: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its stamp when it was listed.
    pub stamp: Stamp,
    /// Whether it is executable.
    pub exec: bool,
}

/// Size, modification time and inode: when all three are unchanged, a file's hash is taken as unchanged (as
/// DVC and git do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub inode: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
            inode: metadata.ino(),
        }
    }
}

/// The file at `path` (following a symbolic link), as a one-file dataset named `name`.
pub fn single_file(path: &Path, name: &str) -> Result<WorkspaceFile, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(WorkspaceFile {
        relative: name.to_string(),
        path: path.to_path_buf(),
        stamp: Stamp::of(&metadata),
        exec: metadata.permissions().mode() & 0o111 != 0,
    })
}

/// Every file below `directory`, sorted by relative path. Symbolic links to files inside `root` (the
/// project) are followed; a link leading outside it or into its reserved folders is refused, as is a link to
/// a directory (it could loop), a name that is not UTF-8 and more files than a version may hold.
pub fn walk(directory: &Path, root: &Path) -> Result<Vec<WorkspaceFile>, String> {
    let mut files = Vec::new();
    let mut pending = vec![(directory.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(format!(
                    "{}: a name that is not UTF-8 cannot be versioned",
                    entry.path().display()
                ));
            };
            if is_reserved_name(name) {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                pending.push((path, format!("{relative}/")));
                continue;
            }
            if kind.is_symlink() {
                let target = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
                let confined = target.strip_prefix(root).is_ok_and(|inside| {
                    inside
                        .components()
                        .all(|c| !c.as_os_str().to_str().is_none_or(is_reserved_name))
                });
                if !confined {
                    return Err(format!(
                        "{} links to {}, outside the project (or into its reserved folders); copy the file in instead",
                        path.display(),
                        target.display()
                    ));
                }
            }
            let metadata = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if metadata.is_dir() {
                return Err(format!(
                    "{} is a link to a directory; copy it in or add it as a dataset of its own",
                    path.display()
                ));
            }
            if !metadata.is_file() {
                continue; // sockets, FIFOs and devices are not data
            }
            check_data_path(&relative)?;
            files.push(WorkspaceFile {
                relative,
                path,
                stamp: Stamp::of(&metadata),
                exec: metadata.permissions().mode() & 0o111 != 0,
            });
            if files.len() > MAX_FILES {
                return Err(format!("{} holds more than {MAX_FILES} files", directory.display()));
            }
        }
    }
    files.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    Ok(files)
}

/// The BLAKE3 hash of a file's bytes and how many there were.
pub fn hash_file(path: &Path) -> Result<(blake3::Hash, u64), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = File::open(path).map_err(failed)?;
    let size = file.metadata().map_err(failed)?.len();
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    if size >= PARALLEL_FROM_BYTES {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            let filled = fill(&mut file, &mut buffer).map_err(failed)?;
            if filled == 0 {
                break;
            }
            hasher.update_rayon(&buffer[..filled]);
            total += filled as u64;
        }
    } else {
        // One read and one update: BLAKE3's vector units hash many 1 KiB chunks at once only when given them
        // together (`io::copy` hands over 8 KiB at a time).
        SMALL_BUFFER.with_borrow_mut(|buffer| -> Result<(), String> {
            buffer.resize(PARALLEL_FROM_BYTES as usize, 0);
            loop {
                let filled = fill(&mut file, buffer).map_err(failed)?;
                hasher.update(&buffer[..filled]);
                total += filled as u64;
                if filled < buffer.len() {
                    return Ok(());
                }
            }
        })?;
    }
    Ok((hasher.finalize(), total))
}

/// Reads until `buffer` is full or the file ends.
fn fill(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The content id, total size and file count of a file or a directory anywhere, as `loopline data add` would
/// give them, so data that was versioned is recognised by its id.
pub fn identify(path: &Path) -> Result<(super::ContentId, u64, u64), String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !metadata.is_dir() {
        let (hash, size) = hash_file(path)?;
        return Ok((super::ContentId::file(hash), size, 1));
    }
    let files = walk(path, path)?;
    let refs: Vec<&WorkspaceFile> = files.iter().collect();
    let hashes = hash_files(&refs, &|_| {})?;
    let entries = files
        .iter()
        .zip(&hashes)
        .map(|(file, (hash, size))| super::ManifestEntry {
            path: file.relative.clone(),
            hash: super::ContentId::file(*hash).key(),
            size: *size,
            exec: file.exec,
        })
        .collect();
    let manifest = super::Manifest::new(entries)?;
    Ok((manifest.id(), manifest.size(), files.len() as u64))
}

/// Hashes files in parallel, calling `progress` with the bytes of each file done; the first failure stops the
/// rest.
pub fn hash_files(
    files: &[&WorkspaceFile],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<(blake3::Hash, u64)>, String> {
    files
        .par_iter()
        .map(|file| {
            let hashed = hash_file(&file.path)?;
            progress(hashed.1);
            Ok(hashed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_files_hash_as_blake3_of_their_bytes() {
        let directory = tempfile::tempdir().unwrap();
        let small = directory.path().join("small");
        let large = directory.path().join("large");
        std::fs::write(&small, b"hello").unwrap();
        let bytes: Vec<u8> = (0..(CHUNK_BYTES + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&large, &bytes).unwrap();
        assert_eq!(hash_file(&small).unwrap(), (blake3::hash(b"hello"), 5));
        assert_eq!(hash_file(&large).unwrap(), (blake3::hash(&bytes), bytes.len() as u64));
    }

    #[test]
    fn walks_skip_version_control_and_refuse_directory_links() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("a/b/c.csv"), b"x").unwrap();
        std::fs::write(root.join("z"), b"y").unwrap();
        std::fs::write(root.join(".git/HEAD"), b"ref").unwrap();
        std::os::unix::fs::symlink(root.join("z"), root.join("link-to-file")).unwrap();
        let root = &root.canonicalize().unwrap();
        let names: Vec<String> = walk(root, root).unwrap().into_iter().map(|f| f.relative).collect();
        assert_eq!(names, ["a/b/c.csv", "link-to-file", "z"]);
        std::os::unix::fs::symlink(root.join("a"), root.join("loop")).unwrap();
        assert!(walk(root, root).unwrap_err().contains("link to a directory"));
        std::fs::remove_file(root.join("loop")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("a/leak")).unwrap();
        assert!(walk(root, root).unwrap_err().contains("outside the project"));
        std::fs::remove_file(root.join("a/leak")).unwrap();
        std::os::unix::fs::symlink(root.join(".git/HEAD"), root.join("a/head")).unwrap();
        assert!(walk(root, root).unwrap_err().contains("outside the project"));
    }
}
