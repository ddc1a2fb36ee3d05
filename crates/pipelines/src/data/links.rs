//! Hard links between the cache and the working tree, DVC's `cache.type: hardlink`: adding or checking out a
//! large dataset writes no bytes, at the price of files that are protected (read-only) while they share their
//! bytes with the cache. `unprotect` turns them back into writable copies of their own.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::cache::{LocalCache, read_through};
use super::content::ContentId;
use super::files::walk;
use super::workspace::Project;

/// How the cache and the working tree hold a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// Each has its own copy: the working file can be edited freely (the default).
    #[default]
    Copy,
    /// Both names are one file, made read-only: nothing is copied. An edit must replace the file (or
    /// `loopline data unprotect` it first); one made in place anyway, by someone allowed to write a read-only
    /// file, would change the cached version too.
    Hardlink,
}

/// Puts the cached object `id` (a version's file of `size` bytes) at `target`: as a hard link where `link`
/// asks for one and the object can be shared as it is (its size right, read-only, not executable: executables
/// are copied), else as a writable copy whose bytes are hashed on the way. An object that no longer matches
/// its id is removed from the cache and refused, so that a pull fetches it again.
pub(super) fn place(
    cache: &LocalCache,
    id: &ContentId,
    size: u64,
    target: &Path,
    exec: bool,
    link: LinkMode,
) -> Result<(), String> {
    let object = cache.path_of(id);
    let damaged = || {
        let _ = std::fs::remove_file(&object);
        format!(
            "the cached object {id} for {} was damaged (its bytes no longer match it) and has been removed; run \
             `loopline data pull`, or add a good copy again",
            target.display()
        )
    };
    let metadata = std::fs::metadata(&object).map_err(|e| format!("{}: {e}", object.display()))?;
    if metadata.len() != size {
        // A pointer or manifest can be wrong (edited by hand, or by whoever committed it): the object is
        // removed only when its own bytes prove it damaged, never on a size someone else wrote down.
        if cache.verify(id) {
            return Err(format!(
                "{} is listed with {size} bytes, but the cached object {id} has {} and matches its id: the \
                 pointer file (or the directory's manifest) is wrong; nothing was removed",
                target.display(),
                metadata.len()
            ));
        }
        return Err(damaged());
    }
    let shareable = metadata.permissions().mode() & 0o333 == 0;
    if link == LinkMode::Hardlink && !exec && shareable && link_out(&object, target)? {
        return Ok(());
    }
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent", target.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let staged = parent.join(format!(".loopline-tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut output = std::fs::File::create(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
        let mut hasher = blake3::Hasher::new();
        read_through(&object, |bytes| {
            hasher.update(bytes);
            output
                .write_all(bytes)
                .map_err(|e| format!("writing {}: {e}", staged.display()))
        })?;
        if ContentId::file(hasher.finalize()) != *id {
            return Err(damaged());
        }
        std::fs::set_permissions(
            &staged,
            std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
        )
        .map_err(|e| format!("{}: {e}", staged.display()))
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(error);
    }
    put_in_place(&staged, target)
}

/// Puts the cached `object` at `target` as a hard link, through a name beside it renamed over what was there.
/// Returns false (and changes nothing) where links cannot be made, so the caller copies instead.
fn link_out(object: &Path, target: &Path) -> Result<bool, String> {
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent", target.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let staged = parent.join(format!(".loopline-tmp-{}", uuid::Uuid::new_v4().simple()));
    if std::fs::hard_link(object, &staged).is_err() {
        return Ok(false);
    }
    put_in_place(&staged, target)?;
    Ok(true)
}

/// Renames `staged` over `target` (a directory standing there is removed first); on failure `staged` goes.
fn put_in_place(staged: &Path, target: &Path) -> Result<(), String> {
    let done = (|| {
        if target.is_dir() {
            std::fs::remove_dir_all(target)?;
        }
        std::fs::rename(staged, target)
    })();
    done.map_err(|e| {
        let _ = std::fs::remove_file(staged);
        format!("writing {}: {e}", target.display())
    })
}

impl Project {
    /// Replaces each file of `data` (a file or directory in the project) that shares its bytes with another
    /// name (a hard link into the cache) or is read-only with a writable copy of its own. Returns how many.
    pub fn unprotect(&self, data: &Path) -> Result<usize, String> {
        let data = &self.inside(data)?;
        let metadata = std::fs::metadata(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let files = if metadata.is_dir() {
            walk(data, self.root())?
        } else {
            vec![super::files::single_file(data, "")?]
        };
        let mut done = 0;
        for file in files {
            // Symbolic links inside the dataset stay links (their files are unprotected where they lie).
            let metadata =
                std::fs::symlink_metadata(&file.path).map_err(|e| format!("{}: {e}", file.path.display()))?;
            let protected =
                metadata.file_type().is_file() && (metadata.nlink() > 1 || metadata.permissions().mode() & 0o200 == 0);
            if !protected {
                continue;
            }
            let staged = file
                .path
                .with_file_name(format!(".loopline-tmp-{}", uuid::Uuid::new_v4().simple()));
            let mode = if metadata.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            let copied = std::fs::copy(&file.path, &staged)
                .and_then(|_| std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode)))
                .and_then(|()| std::fs::rename(&staged, &file.path));
            copied.map_err(|e| {
                let _ = std::fs::remove_file(&staged);
                format!("unprotecting {}: {e}", file.path.display())
            })?;
            done += 1;
        }
        Ok(done)
    }
}
