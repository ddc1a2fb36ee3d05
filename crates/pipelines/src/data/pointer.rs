//! Pointer files (`<path>.loopline`, YAML): what is committed to git instead of the data, as DVC's `.dvc`
//! files are. They name the dataset, the data's path beside them, its content id, size and file count, and
//! the version the server gave it once registered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::ContentId;
use super::manifest::check_data_path;

/// What follows the data's path in its pointer's name.
pub const POINTER_SUFFIX: &str = ".loopline";
/// The largest pointer file read.
const MAX_POINTER_BYTES: u64 = 64 << 10;
/// The longest dataset name.
pub const MAX_NAME_LENGTH: usize = 200;

/// A pointer file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// The dataset's name.
    pub dataset: String,
    /// The data's path, relative to the pointer's directory (`/`-separated).
    pub path: String,
    /// The content id (`….dir` for a directory).
    pub hash: String,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// The version the server registered, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl Pointer {
    /// The content id.
    pub fn id(&self) -> Result<ContentId, String> {
        ContentId::parse(&self.hash)
    }

    /// Reads and checks a pointer file.
    pub fn read(path: &Path) -> Result<Pointer, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if size > MAX_POINTER_BYTES {
            return Err(format!(
                "{} is {size} bytes; a pointer file is a few lines",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Pointer::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a pointer's text.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let value = loopline_model_runtime_api::yaml_bounds::load_json(text)?;
        let pointer: Pointer =
            serde_json::from_value(value).map_err(|e| format!("not a Loopline pointer file: {e}"))?;
        check_name(&pointer.dataset)?;
        check_data_path(&pointer.path)?;
        if pointer.path.contains('/') {
            return Err(format!(
                "path '{}': a pointer names data beside it (a plain name)",
                pointer.path
            ));
        }
        if pointer.version.is_some_and(|v| v < 1) {
            return Err("version: versions are numbered from 1".into());
        }
        pointer.id()?;
        Ok(pointer)
    }

    /// The pointer's text: the fields as YAML (strings as JSON strings, which YAML reads alike) after a
    /// comment saying what the file is.
    pub fn to_text(&self) -> String {
        let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let mut text = String::from(
            "# Loopline dataset pointer: commit this file to git, not the data. `loopline data checkout` restores\n\
             # the data from the cache; `loopline data pull` fetches what the cache lacks from the server.\n",
        );
        text.push_str(&format!("dataset: {}\n", quoted(&self.dataset)));
        text.push_str(&format!("path: {}\n", quoted(&self.path)));
        text.push_str(&format!("hash: {}\n", quoted(&self.hash)));
        text.push_str(&format!("size: {}\nfiles: {}\n", self.size, self.files));
        if let Some(version) = self.version {
            text.push_str(&format!("version: {version}\n"));
        }
        text
    }

    /// Writes the pointer (through a temporary file renamed over the old one).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        super::write_atomically(path, self.to_text().as_bytes())
    }
}

/// The pointer file of the data at `data`.
pub fn pointer_path(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(POINTER_SUFFIX);
    data.with_file_name(name)
}

/// The data a pointer file names: `data.csv.loopline` -> `data.csv` (the pointer's `path` decides; this is
/// for finding the pointer of a path given on the command line).
pub fn is_pointer(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() > POINTER_SUFFIX.len() && n.ends_with(POINTER_SUFFIX))
}

/// Checks a dataset name: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LENGTH
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(format!(
            "'{shown}' is not a dataset name (letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_NAME_LENGTH})"
        ))
    }
}

/// A dataset name made from a file or directory name: other characters become `-`.
pub fn name_from(path: &Path) -> String {
    name_from_text(path.file_name().and_then(|n| n.to_str()).unwrap_or("dataset"))
}

/// A name made from any text: other characters become `-`.
pub fn name_from_text(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LENGTH)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'd');
        name.truncate(MAX_NAME_LENGTH);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pointer {
        Pointer {
            dataset: "train".into(),
            path: "train \"set\".csv".into(),
            hash: blake3::hash(b"x").to_hex().to_string(),
            size: 1,
            files: 1,
            version: Some(3),
        }
    }

    #[test]
    fn pointers_round_trip_through_their_text() {
        let pointer = sample();
        assert_eq!(Pointer::parse(&pointer.to_text()), Ok(pointer.clone()));
        let unversioned = Pointer {
            version: None,
            ..pointer
        };
        assert!(!unversioned.to_text().contains("version"));
        assert_eq!(Pointer::parse(&unversioned.to_text()), Ok(unversioned));
    }

    #[test]
    fn bad_pointers_say_what_is_wrong() {
        let text = sample().to_text();
        assert!(
            Pointer::parse(&text.replace("\"train\"", "\"../x\""))
                .unwrap_err()
                .contains("dataset name")
        );
        assert!(Pointer::parse(&text.replace("path: ", "path: \"../../etc\"\nx: ")).is_err());
        assert!(
            Pointer::parse(&text.replace("hash: \"", "hash: \"zz"))
                .unwrap_err()
                .contains("content id")
        );
        assert!(Pointer::parse("a: &a [*a]").is_err());
        assert!(Pointer::parse("").is_err());
    }

    #[test]
    fn names_come_from_paths() {
        assert_eq!(name_from(Path::new("data/train set.csv")), "train-set.csv");
        assert_eq!(name_from(Path::new(".hidden")), "d.hidden");
        assert_eq!(
            pointer_path(Path::new("data/train.csv")),
            Path::new("data/train.csv.loopline")
        );
        assert!(is_pointer(Path::new("a/train.csv.loopline")) && !is_pointer(Path::new(".loopline")));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,300}") {
            let _ = Pointer::parse(&text);
        }
    }
}
