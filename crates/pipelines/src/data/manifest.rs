//! A directory's manifest: every file below it with its content id and size, sorted by path. Its canonical
//! bytes (compact JSON, fixed key order, paths in byte order) are stored as an object, and their hash is the
//! directory's id, so equal trees have equal ids wherever they were added.

use serde::{Deserialize, Serialize};

use super::content::ContentId;

/// The largest manifest read, in bytes (about five million files).
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;
/// The most files a directory version may hold.
pub const MAX_FILES: usize = 5_000_000;
/// The longest relative path, in bytes.
pub const MAX_PATH_BYTES: usize = 4_096;

/// One file of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// The content's BLAKE3 hash (hex).
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file is executable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
}

impl ManifestEntry {
    /// The file's content id.
    pub fn id(&self) -> Result<ContentId, String> {
        let id = ContentId::parse(&self.hash)?;
        if id.is_directory() {
            return Err(format!(
                "'{}' names a directory manifest as a file's content",
                self.path
            ));
        }
        Ok(id)
    }
}

/// The files of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest of these files, sorted; each path checked.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Result<Manifest, String> {
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        check_entries(&entries)?;
        Ok(Manifest { entries })
    }

    /// Reads a stored manifest, checking everything a hostile one could get wrong: its size, the number of
    /// files, each path (relative, inside the directory, no `.` or `..`), each hash, the order, duplicates and
    /// a file standing where another has a directory.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(format!(
                "a manifest of {} bytes is larger than the {MAX_MANIFEST_BYTES} allowed",
                bytes.len()
            ));
        }
        let entries: Vec<ManifestEntry> =
            serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not a list of files: {e}"))?;
        let sorted = entries
            .windows(2)
            .all(|pair| pair[0].path.as_bytes() < pair[1].path.as_bytes());
        if !sorted {
            return Err("the manifest's paths are not sorted, or one is listed twice".into());
        }
        check_entries(&entries)?;
        Ok(Manifest { entries })
    }

    /// The canonical bytes, whose hash is the directory's id.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.entries).unwrap_or_default()
    }

    /// The directory's id.
    pub fn id(&self) -> ContentId {
        ContentId::directory(blake3::hash(&self.to_bytes()))
    }

    /// The files, sorted by path.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Total bytes of the files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).fold(0, u64::saturating_add)
    }
}

fn check_entries(entries: &[ManifestEntry]) -> Result<(), String> {
    if entries.len() > MAX_FILES {
        return Err(format!(
            "{} files are more than the {MAX_FILES} a directory version may hold",
            entries.len()
        ));
    }
    for entry in entries {
        check_data_path(&entry.path)?;
        entry.id()?;
    }
    let mut paths = std::collections::HashSet::with_capacity(entries.len());
    for entry in entries {
        if !paths.insert(entry.path.as_str()) {
            return Err(format!("'{}' is listed twice", entry.path));
        }
    }
    for entry in entries {
        let parents = entry.path.match_indices('/').map(|(at, _)| &entry.path[..at]);
        if let Some(parent) = parents.into_iter().find(|parent| paths.contains(parent)) {
            return Err(format!("'{parent}' is both a file and a directory"));
        }
    }
    Ok(())
}

/// Whether a file or directory name is kept out of datasets: version control's and Loopline's own folders,
/// pointer files and Loopline's temporary files. Data may not be written there from a version, and a
/// directory's walk leaves them out.
pub fn is_reserved_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == ".git"
        || lower == ".loopline"
        || lower == ".dvc"
        || lower.ends_with(".loopline")
        || lower.starts_with(".loopline-tmp-")
}

/// Checks a path a version may write: a plain relative path (see [`check_relative_path`]) with no reserved
/// part (see [`is_reserved_name`]) and no control characters.
pub fn check_data_path(path: &str) -> Result<(), String> {
    check_relative_path(path)?;
    let shown: String = path.chars().take(120).collect();
    if path.chars().any(char::is_control) {
        return Err(format!(
            "'{}' holds a control character (a newline, a tab...)",
            shown.escape_debug()
        ));
    }
    if let Some(part) = path.split('/').find(|part| is_reserved_name(part)) {
        return Err(format!(
            "'{shown}' goes through '{part}', which data may not be written to"
        ));
    }
    Ok(())
}

/// Checks a path inside a dataset directory: relative, `/`-separated, without empty, `.` or `..` parts, NUL
/// bytes or a length past [`MAX_PATH_BYTES`].
pub fn check_relative_path(path: &str) -> Result<(), String> {
    let shown: String = path.chars().take(120).collect();
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(format!("'{shown}' is empty or longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(format!("'{shown}' holds a NUL byte or a backslash"));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "'{shown}' is not a plain relative path (it starts with '/', or has an empty, '.' or '..' part)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8]) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            hash: blake3::hash(content).to_hex().to_string(),
            size: content.len() as u64,
            exec: false,
        }
    }

    #[test]
    fn equal_trees_have_equal_ids_whatever_the_order() {
        let one = Manifest::new(vec![entry("b", b"2"), entry("a/x", b"1")]).unwrap();
        let two = Manifest::new(vec![entry("a/x", b"1"), entry("b", b"2")]).unwrap();
        assert_eq!(one.id(), two.id());
        assert_eq!(Manifest::parse(&one.to_bytes()), Ok(one.clone()));
        assert_eq!(one.size(), 2);
        let other = Manifest::new(vec![entry("a/x", b"1"), entry("b", b"3")]).unwrap();
        assert_ne!(one.id(), other.id());
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let hash = blake3::hash(b"1").to_hex().to_string();
        let cases = [
            format!(r#"[{{"path":"../escape","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"/etc/passwd","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"a//b","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"a/./b","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"b","hash":"{hash}","size":1}},{{"path":"a","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"a","hash":"{hash}","size":1}},{{"path":"a","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"a","hash":"{hash}","size":1}},{{"path":"a/b","hash":"{hash}","size":1}}]"#),
            format!(
                r#"[{{"path":"a","hash":"{hash}","size":1}},{{"path":"a-b","hash":"{hash}","size":1}},{{"path":"a/b","hash":"{hash}","size":1}}]"#
            ),
            format!(r#"[{{"path":"a","hash":"{hash}.dir","size":1}}]"#),
            r#"[{"path":"a","hash":"nothex","size":1}]"#.to_string(),
            r#"{"path":"a"}"#.to_string(),
            format!(r#"[{{"path":"a","hash":"{hash}","size":-1}}]"#),
            format!(r#"[{{"path":".git/hooks/post-commit","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"sub/.GIT/config","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"x/.loopline/state.json","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"other.loopline","hash":"{hash}","size":1}}]"#),
            format!(r#"[{{"path":"new\nline","hash":"{hash}","size":1}}]"#),
        ];
        for case in cases {
            assert!(Manifest::parse(case.as_bytes()).is_err(), "{case}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Manifest::parse(&bytes);
        }

        #[test]
        fn built_manifests_parse_back(paths in proptest::collection::btree_set("[a-c]{1,3}(/[a-c]{1,3}){0,2}", 0..20)) {
            let entries: Vec<ManifestEntry> = paths.iter().map(|p| entry(p, p.as_bytes())).collect();
            if let Ok(manifest) = Manifest::new(entries) {
                proptest::prop_assert_eq!(Manifest::parse(&manifest.to_bytes()), Ok(manifest));
            }
        }
    }
}
