//! Validated artifact paths. The only way to build an [`ArtifactPath`] is [`ArtifactPath::parse`], which
//! refuses every path-traversal form that has produced CVEs in MLflow: `..` segments, absolute paths,
//! percent-encoded and double-encoded traversal, backslashes, `#` fragments, NUL bytes and drive letters.

use crate::error::ArtifactError;
use percent_encoding::percent_decode_str;

/// The longest path segment, in bytes (what local file systems and S3 keys take).
const MAX_SEGMENT_BYTES: usize = 255;
/// The longest whole path, in bytes.
const MAX_PATH_BYTES: usize = 4_096;

/// A relative path below the artifact root, made of plain segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactPath {
    segments: Vec<String>,
}

impl ArtifactPath {
    /// The root itself.
    pub fn root() -> Self {
        Self { segments: Vec::new() }
    }

    /// Validates a user-supplied path (already percent-decoded once by the HTTP layer).
    pub fn parse(raw: &str) -> Result<Self, ArtifactError> {
        let refuse = |reason: &str| ArtifactError::InvalidPath {
            path: raw.to_string(),
            reason: reason.to_string(),
        };
        // Decode repeatedly so that %252e%252e and friends are seen for what they are.
        let mut decoded = raw.to_string();
        for _ in 0..4 {
            let next = percent_decode_str(&decoded)
                .decode_utf8()
                .map_err(|_| refuse("it is not valid UTF-8"))?
                .into_owned();
            if next == decoded {
                break;
            }
            if next.contains("..") || next.contains('\\') || next.contains('#') || next.contains('\0') {
                return Err(refuse("it contains an encoded traversal, backslash, '#' or NUL"));
            }
            decoded = next;
        }
        if raw.contains('\\') {
            return Err(refuse("backslashes are not allowed"));
        }
        if raw.contains('#') {
            return Err(refuse("'#' is not allowed"));
        }
        if raw.contains('\0') {
            return Err(refuse("NUL bytes are not allowed"));
        }
        if raw.starts_with('/') || raw.starts_with('~') {
            return Err(refuse("absolute paths are not allowed"));
        }
        let bytes = raw.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(refuse("drive letters are not allowed"));
        }
        let mut segments = Vec::new();
        for segment in raw.split('/') {
            match segment {
                "" | "." => continue,
                ".." => return Err(refuse("'..' segments are not allowed")),
                other if other.chars().any(char::is_control) => {
                    return Err(refuse("control characters are not allowed"));
                }
                other if other.len() > MAX_SEGMENT_BYTES => {
                    return Err(refuse("a path segment is longer than the 255 bytes file systems take"));
                }
                other => segments.push(other.to_string()),
            }
        }
        if segments.iter().map(|segment| segment.len() + 1).sum::<usize>() > MAX_PATH_BYTES {
            return Err(refuse("the path is longer than 4,096 bytes"));
        }
        Ok(Self { segments })
    }

    /// The normalised path, `a/b/c`, or "" for the root.
    pub fn as_string(&self) -> String {
        self.segments.join("/")
    }

    /// The path's segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// True when `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &ArtifactPath) -> bool {
        self.segments.len() >= prefix.segments.len() && self.segments[..prefix.segments.len()] == prefix.segments[..]
    }

    /// Appends a validated relative path.
    pub fn join(&self, child: &ArtifactPath) -> ArtifactPath {
        let mut segments = self.segments.clone();
        segments.extend(child.segments.iter().cloned());
        ArtifactPath { segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_normalise() {
        assert_eq!(
            ArtifactPath::parse("1/abc/artifacts/./a//b.txt").unwrap().as_string(),
            "1/abc/artifacts/a/b.txt"
        );
        assert!(ArtifactPath::parse("").unwrap().is_root());
        assert_eq!(ArtifactPath::parse("x/file..name").unwrap().as_string(), "x/file..name");
    }

    #[test]
    fn every_traversal_form_is_refused() {
        for hostile in [
            "../etc/passwd",
            "1/../../etc",
            "/etc/passwd",
            "%2e%2e/etc/passwd",
            "%252e%252e/secret",
            "a/%2e%2e%2fb",
            "..\\windows",
            "a\\b",
            "a/b#../../c",
            "C:/windows",
            "~/x",
            "a/\0b",
            "%2fetc%2fpasswd/..",
        ] {
            assert!(ArtifactPath::parse(hostile).is_err(), "{hostile} was accepted");
        }
    }
}
