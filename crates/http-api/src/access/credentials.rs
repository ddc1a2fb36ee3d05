//! Credentials in an `Authorization` header, parsed with bounds: a header this layer cannot read is
//! "no credentials", never an error that says more.

use axum::http::{HeaderMap, header};
use base64::Engine;

/// Longest Authorization header read.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// No Authorization header.
    Nothing,
    /// One this server cannot read (unknown scheme, bad base64, no `:`, too long, not UTF-8).
    Malformed,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

/// Reads the Authorization header.
pub fn presented(headers: &HeaderMap) -> Presented {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Presented::Nothing;
    };
    if values.next().is_some() || value.len() > MAX_HEADER_BYTES {
        return Presented::Malformed;
    }
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Presented::Malformed;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Presented::Malformed;
        };
        match decoded.split_once(':') {
            Some((username, password)) if !username.is_empty() => Presented::Basic {
                username: username.to_string(),
                password: password.to_string(),
            },
            _ => Presented::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() && !rest.contains(' ') {
        Presented::Bearer(rest.to_string())
    } else {
        Presented::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn with(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn basic_and_bearer_are_read() {
        assert_eq!(
            presented(&with(b"Basic YWxpY2U6czNjcjN0OndpdGg6Y29sb25z")),
            Presented::Basic {
                username: "alice".into(),
                password: "s3cr3t:with:colons".into()
            }
        );
        assert_eq!(presented(&with(b"bearer llt_abc")), Presented::Bearer("llt_abc".into()));
        assert_eq!(presented(&HeaderMap::new()), Presented::Nothing);
    }

    #[test]
    fn malformed_headers_are_malformed() {
        for value in [
            &b"Basic"[..],
            b"Basic !!!",
            b"Basic YWxpY2U=",
            b"Basic OnBhc3N3b3Jk",
            b"Bearer",
            b"Bearer a b",
            b"Digest abc",
            b"Basic /w==",
        ] {
            assert_eq!(
                presented(&with(value)),
                Presented::Malformed,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(presented(&with(&[b'a'; 9000])), Presented::Malformed);
    }

    proptest! {
        #[test]
        fn any_header_is_read_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = presented(&with(&value));
        }
    }
}
