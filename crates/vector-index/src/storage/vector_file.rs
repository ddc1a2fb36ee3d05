//! The float vectors of a vector kept on disk: one file of little-endian rows per vector, beside the
//! checkpoint that names it with its row count and the rows' CRC-32. A checkpoint appends the rows written
//! since the last one at the offset where the named rows end (so a crash mid-append leaves bytes past the
//! end that nothing names, overwritten by the next append), or writes a new file when the rows were
//! renumbered (compaction) or there was none; files no checkpoint names are removed.

use super::{StorageError, io};
use crate::storage::codec::DecodeError;
use crate::vectors::{DiskRows, FloatVectors};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "vectors-";
const SUFFIX: &str = ".f32";

/// Whether `name` is one of ours: a plain file name, so a damaged checkpoint cannot point outside its
/// directory.
fn is_ours(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|middle| {
            !middle.is_empty()
                && middle.len() <= 64
                && middle.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Opens the file a checkpoint names and checks it: long enough for `rows` rows of `dim`, and their CRC-32.
pub(crate) fn open(dir: &Path, name: &str, rows: usize, dim: usize, checksum: u32) -> Result<DiskRows, DecodeError> {
    if !is_ours(name) {
        return Err(DecodeError(format!("'{name}' is not a vector file's name")));
    }
    let path = dir.join(name);
    let file = File::open(&path).map_err(|error| DecodeError(format!("{}: {error}", path.display())))?;
    let wanted = rows
        .checked_mul(dim)
        .and_then(|values| values.checked_mul(4))
        .ok_or_else(|| DecodeError(format!("{name}: {rows} rows of {dim} do not fit in memory's addresses")))?;
    let length = file
        .metadata()
        .map_err(|error| DecodeError(format!("{}: {error}", path.display())))?
        .len();
    if length < wanted as u64 {
        return Err(DecodeError(format!(
            "{}: holds {length} bytes, but the checkpoint names {rows} vectors of {dim} ({wanted} bytes)",
            path.display()
        )));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; (4 << 20).min(wanted.max(1))];
    let mut offset = 0usize;
    while offset < wanted {
        let take = buffer.len().min(wanted - offset);
        file.read_exact_at(&mut buffer[..take], offset as u64)
            .map_err(|error| DecodeError(format!("{}: {error}", path.display())))?;
        hasher.update(&buffer[..take]);
        offset += take;
    }
    if hasher.finalize() != checksum {
        return Err(DecodeError(format!(
            "{}: the vectors' checksum does not match: the file is damaged",
            path.display()
        )));
    }
    Ok(DiskRows {
        file: Arc::new(file),
        name: name.to_string(),
        rows,
        checksum,
    })
}

/// Puts every row of `vectors` in a file in `dir`, synced: the rows past those already in its file are
/// appended there, or (no file yet) a new file is written. Answers the rows as the file now holds them.
pub(crate) fn write_rows(dir: &Path, vectors: &FloatVectors) -> Result<DiskRows, StorageError> {
    let total = vectors.len();
    let row_bytes = vectors.dim() * 4;
    let (path, file, from, mut hasher, name) = match vectors.disk() {
        Some(disk) if disk.rows == total => return Ok(disk.clone()),
        Some(disk) => {
            let path = dir.join(&disk.name);
            let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
            let hasher = crc32fast::Hasher::new_with_initial(disk.checksum);
            (path, file, disk.rows, hasher, disk.name.clone())
        }
        None => {
            let name = fresh_name();
            let path = dir.join(&name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io(&path))?;
            (path, file, 0, crc32fast::Hasher::new(), name)
        }
    };
    let mut offset = (from * row_bytes) as u64;
    let mut bytes = Vec::new();
    let written = vectors
        .for_each_run(from, |run| {
            bytes.clear();
            run.iter()
                .for_each(|value| bytes.extend_from_slice(&value.to_le_bytes()));
            file.write_all_at(&bytes, offset)?;
            hasher.update(&bytes);
            offset += bytes.len() as u64;
            Ok(())
        })
        .and_then(|()| file.sync_data());
    if let Err(error) = written {
        // A new file no checkpoint will name is removed at once (a full disk must not fill up further on
        // every retry); an append's bytes past the named rows are ignored and overwritten by the next one.
        if vectors.disk().is_none() {
            let _ = std::fs::remove_file(&path);
        }
        return Err(io(&path)(error));
    }
    let reader = match vectors.disk() {
        Some(disk) => Arc::clone(&disk.file),
        None => {
            File::open(dir)
                .and_then(|directory| directory.sync_all())
                .map_err(io(dir))?;
            Arc::new(file)
        }
    };
    Ok(DiskRows {
        file: reader,
        name,
        rows: total,
        checksum: hasher.finalize(),
    })
}

/// A name no file in the directory has yet.
fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{PREFIX}{nanos:x}-{:x}-{:x}{SUFFIX}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the vector files in `dir` that are not in `keep` (left by a compaction, or by a checkpoint a
/// crash cut short).
pub(crate) fn remove_others(dir: &Path, keep: &[&str]) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        if let Some(name) = name.to_str()
            && is_ours(name)
            && !keep.contains(&name)
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_of_our_shape_are_ours() {
        assert!(is_ours("vectors-18f3a-12-0.f32"));
        for name in [
            "vectors-.f32",
            "vectors-../segment.f32",
            "vectors-a/b.f32",
            "segment.bin",
            "vectors-a.f32.tmp",
            "/etc/passwd",
        ] {
            assert!(!is_ours(name), "{name}");
        }
    }
}
