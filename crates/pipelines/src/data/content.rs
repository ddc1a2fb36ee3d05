//! Content ids: the BLAKE3 hash of a file's bytes, or of a directory's manifest (marked `.dir`), and where an
//! object with that id lives in a cache or store (`ab/cdef…`, as DVC lays out its cache).

use std::fmt;

/// Hex digits of a BLAKE3 hash.
const HEX_LENGTH: usize = 64;
/// What marks a directory's manifest.
const DIR_SUFFIX: &str = ".dir";

/// The id of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId {
    hex: String,
    directory: bool,
}

impl ContentId {
    /// The id of a file with this hash.
    pub fn file(hash: blake3::Hash) -> ContentId {
        ContentId {
            hex: hash.to_hex().to_string(),
            directory: false,
        }
    }

    /// The id of a directory whose manifest has this hash.
    pub fn directory(hash: blake3::Hash) -> ContentId {
        ContentId {
            hex: hash.to_hex().to_string(),
            directory: true,
        }
    }

    /// Reads `abcd…` or `abcd….dir` (64 lowercase hex digits), as [`ContentId::key`] writes it.
    pub fn parse(text: &str) -> Result<ContentId, String> {
        let (hex, directory) = match text.strip_suffix(DIR_SUFFIX) {
            Some(hex) => (hex, true),
            None => (text, false),
        };
        let valid = hex.len() == HEX_LENGTH && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            let shown: String = text.chars().take(80).collect();
            return Err(format!(
                "'{shown}' is not a content id (64 lowercase hex digits of a BLAKE3 hash, '.dir' after a directory's)"
            ));
        }
        Ok(ContentId {
            hex: hex.to_string(),
            directory,
        })
    }

    /// The id as text: the hex digits, with `.dir` for a directory.
    pub fn key(&self) -> String {
        if self.directory {
            format!("{}{DIR_SUFFIX}", self.hex)
        } else {
            self.hex.clone()
        }
    }

    /// Whether this is a directory's manifest.
    pub fn is_directory(&self) -> bool {
        self.directory
    }

    /// The hash's hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Where the object lives below a store's root: `ab/cdef…` (`.dir` kept).
    pub fn object_path(&self) -> String {
        let key = self.key();
        format!("{}/{}", &key[..2], &key[2..])
    }

    /// Whether `bytes` are this object's content.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        blake3::hash(bytes).to_hex().as_str() == self.hex
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_lay_out_like_dvc() {
        let file = ContentId::file(blake3::hash(b"foo"));
        assert_eq!(ContentId::parse(&file.key()), Ok(file.clone()));
        assert_eq!(file.object_path(), format!("{}/{}", &file.hex()[..2], &file.hex()[2..]));
        let directory = ContentId::directory(blake3::hash(b"[]"));
        assert!(directory.key().ends_with(".dir") && directory.object_path().ends_with(".dir"));
        assert_eq!(ContentId::parse(&directory.key()), Ok(directory));
        assert!(file.matches(b"foo") && !file.matches(b"bar"));
    }

    #[test]
    fn anything_else_is_refused() {
        let hex = blake3::hash(b"x").to_hex().to_string();
        for bad in [
            "",
            "../etc/passwd",
            &hex[..63],
            &hex.to_uppercase(),
            &format!("{hex}.DIR"),
            &format!("{hex}/"),
        ] {
            assert!(ContentId::parse(bad).is_err(), "{bad}");
        }
    }
}
