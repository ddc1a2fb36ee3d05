//! Credentials in an `Authorization` header, parsed with bounds: a header this layer cannot read is
//! "no credentials", never an error that says more.

use axum::http::{HeaderMap, header};
use base64::Engine;

/// Longest Authorization header read.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// What a request presented (a bearer token borrowed from its header: reading one allocates nothing).
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
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
    Bearer(&'a str),
}

/// A token in `x-api-key` (as the `anthropic` SDK sends its key) or `api-key` (as `qdrant-client` does),
/// when no `Authorization` header came.
fn api_key(headers: &HeaderMap) -> Presented<'_> {
    let name = if headers.contains_key("x-api-key") {
        "x-api-key"
    } else {
        "api-key"
    };
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Presented::Nothing;
    };
    if values.next().is_some() || value.len() > MAX_HEADER_BYTES {
        return Presented::Malformed;
    }
    match value.to_str().map(str::trim) {
        Ok(token) if !token.is_empty() && !token.contains(' ') => Presented::Bearer(token),
        _ => Presented::Malformed,
    }
}

/// Reads the Authorization header (or, without one, a token in `x-api-key`).
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return api_key(headers);
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
        Presented::Bearer(rest)
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
        assert_eq!(presented(&with(b"bearer llt_abc")), Presented::Bearer("llt_abc"));
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

    #[test]
    fn a_token_in_x_api_key_counts_only_without_an_authorization_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "llt_abc".parse().unwrap());
        assert!(matches!(presented(&headers), Presented::Bearer(token) if token == "llt_abc"));
        headers.insert(header::AUTHORIZATION, "Bearer other".parse().unwrap());
        assert!(matches!(presented(&headers), Presented::Bearer(token) if token == "other"));
        let mut twice = HeaderMap::new();
        twice.append("x-api-key", "a".parse().unwrap());
        twice.append("x-api-key", "b".parse().unwrap());
        assert!(matches!(presented(&twice), Presented::Malformed));
        let mut spaced = HeaderMap::new();
        spaced.insert("x-api-key", "a b".parse().unwrap());
        assert!(matches!(presented(&spaced), Presented::Malformed));
        let mut qdrant = HeaderMap::new();
        qdrant.insert("api-key", "llt_vec".parse().unwrap());
        assert!(matches!(presented(&qdrant), Presented::Bearer(token) if token == "llt_vec"));
    }

    proptest! {
        #[test]
        fn any_header_is_read_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = presented(&with(&value));
        }
    }
}
