//! A project shipped to Ray as a job's `working_dir`: a ZIP of the project (stored, no compression, as Ray's
//! own client writes them), names relative to the root without a top folder, Unix modes kept, entries sorted
//! and timestamps fixed so the same files make the same bytes (and Ray's package store is asked once per
//! content). `.git`, the virtualenvs and `.loopline` (but for the dataset versions placed for steps) stay out.

use std::path::Path;

/// Ray takes at most this much in one request (its HTTP body limit).
pub const MAX_PACKAGE_BYTES: u64 = 100 << 20;
/// Entries a plain (not ZIP64) archive holds.
const MAX_ENTRIES: usize = 65_535;
/// 1980-01-01 00:00 in DOS format (date; time is 0).
const DOS_DATE: u16 = (1 << 5) | 1;
/// UTF-8 names.
const FLAGS: u16 = 0x0800;

struct Entry {
    name: String,
    mode: u32,
    data: Option<Vec<u8>>,
}

/// Whether a path (relative to the root, `/`-separated) is left out of the package.
fn left_out(relative: &str, is_directory: bool) -> bool {
    let first = relative.split('/').next().unwrap_or_default();
    if first == ".git" || first.starts_with(".venv") || first == "venv" {
        return true;
    }
    if relative.split('/').any(|part| part == "__pycache__") {
        return true;
    }
    if first == ".loopline" {
        // Only the dataset versions steps read come along.
        let kept = relative == ".loopline" && is_directory
            || relative == ".loopline/datasets"
            || relative.starts_with(".loopline/datasets/") && !relative.contains("/.staging-");
        return !kept;
    }
    false
}

fn collect(root: &Path, directory: &Path, entries: &mut Vec<Entry>, total: &mut u64) -> Result<(), String> {
    let mut children: Vec<_> = std::fs::read_dir(directory)
        .map_err(|e| format!("{}: {e}", directory.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", directory.display()))?;
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        let relative = path
            .strip_prefix(root)
            .map_err(|_| format!("{} is outside {}", path.display(), root.display()))?
            .to_str()
            .ok_or_else(|| {
                format!(
                    "{}: a name that is not UTF-8 cannot go into a Ray package",
                    path.display()
                )
            })?
            .to_string();
        // Links are followed only to what lies inside the project; others are left out.
        let metadata = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if child.file_type().map_err(|e| e.to_string())?.is_symlink() {
            let target = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
            if !target.starts_with(root) || metadata.is_dir() {
                continue;
            }
        }
        if left_out(&relative, metadata.is_dir()) {
            continue;
        }
        if metadata.is_dir() {
            entries.push(Entry {
                name: format!("{relative}/"),
                mode: 0o040_755,
                data: None,
            });
            collect(root, &path, entries, total)?;
        } else if metadata.is_file() {
            *total += metadata.len();
            if *total > MAX_PACKAGE_BYTES {
                return Err(format!(
                    "the project is larger than the {} MiB Ray accepts as a job's working directory; keep large \
                     data in dataset versions or on storage the cluster reads, or put the project on a shared \
                     filesystem (--ray-shared-directory)",
                    MAX_PACKAGE_BYTES >> 20
                ));
            }
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let executable = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111 != 0;
            entries.push(Entry {
                name: relative,
                mode: if executable { 0o100_755 } else { 0o100_644 },
                data: Some(data),
            });
        }
        if entries.len() > MAX_ENTRIES {
            return Err(format!(
                "the project has more than {MAX_ENTRIES} files and folders, more than a Ray package holds"
            ));
        }
    }
    Ok(())
}

fn push16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// The project at `root` as ZIP bytes.
pub fn package(root: &Path) -> Result<Vec<u8>, String> {
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    let mut entries = Vec::new();
    let mut total = 0;
    collect(&root, &root, &mut entries, &mut total)?;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in &entries {
        let offset = u32::try_from(out.len()).map_err(|_| "the package passed 4 GiB")?;
        let data = entry.data.as_deref().unwrap_or_default();
        let crc = crc32fast::hash(data);
        let size = u32::try_from(data.len()).map_err(|_| "a file passed 4 GiB")?;
        let name = entry.name.as_bytes();
        let name_length = u16::try_from(name.len()).map_err(|_| format!("the name {} is too long", entry.name))?;
        // Local header, then the data.
        push32(&mut out, 0x0403_4b50);
        push16(&mut out, 20);
        push16(&mut out, FLAGS);
        push16(&mut out, 0);
        push16(&mut out, 0);
        push16(&mut out, DOS_DATE);
        push32(&mut out, crc);
        push32(&mut out, size);
        push32(&mut out, size);
        push16(&mut out, name_length);
        push16(&mut out, 0);
        out.extend_from_slice(name);
        out.extend_from_slice(data);
        // Its central directory record (made on Unix, so the mode bits are read back).
        push32(&mut central, 0x0201_4b50);
        push16(&mut central, (3 << 8) | 20);
        push16(&mut central, 20);
        push16(&mut central, FLAGS);
        push16(&mut central, 0);
        push16(&mut central, 0);
        push16(&mut central, DOS_DATE);
        push32(&mut central, crc);
        push32(&mut central, size);
        push32(&mut central, size);
        push16(&mut central, name_length);
        push16(&mut central, 0);
        push16(&mut central, 0);
        push16(&mut central, 0);
        push16(&mut central, 0);
        push32(&mut central, entry.mode << 16);
        push32(&mut central, offset);
        central.extend_from_slice(name);
    }
    let central_offset = u32::try_from(out.len()).map_err(|_| "the package passed 4 GiB")?;
    let central_size = u32::try_from(central.len()).map_err(|_| "the package passed 4 GiB")?;
    let count = u16::try_from(entries.len()).map_err(|_| "too many entries")?;
    out.extend_from_slice(&central);
    push32(&mut out, 0x0605_4b50);
    push16(&mut out, 0);
    push16(&mut out, 0);
    push16(&mut out, count);
    push16(&mut out, count);
    push32(&mut out, central_size);
    push32(&mut out, central_offset);
    push16(&mut out, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes_into_a_package() {
        assert!(left_out(".git", true));
        assert!(left_out(".git/config", false));
        assert!(left_out(".venv/bin/python", false));
        assert!(left_out("src/__pycache__/x.pyc", false));
        assert!(left_out(".loopline/cache", true));
        assert!(left_out(".loopline/run-cache/ab", false));
        assert!(!left_out(".loopline", true));
        assert!(!left_out(".loopline/datasets/abc/train.csv", false));
        assert!(left_out(".loopline/datasets/.staging-1/train.csv", false));
        assert!(!left_out("train.py", false));
        assert!(!left_out("data/raw.csv", false));
    }

    #[test]
    fn the_same_files_make_the_same_bytes() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(directory.path().join("src")).unwrap();
        std::fs::create_dir_all(directory.path().join(".git")).unwrap();
        std::fs::write(directory.path().join("src/a.txt"), "alpha").unwrap();
        std::fs::write(directory.path().join(".git/HEAD"), "ref").unwrap();
        let first = package(directory.path()).unwrap();
        let second = package(directory.path()).unwrap();
        assert_eq!(first, second);
        assert!(first.windows(9).any(|w| w == b"src/a.txt"));
        assert!(!first.windows(8).any(|w| w == b".git/HEA"));
        // End of central directory: two entries (the folder and the file).
        let end = &first[first.len() - 22..];
        assert_eq!(&end[..4], &0x0605_4b50u32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([end[10], end[11]]), 2);
    }
}
