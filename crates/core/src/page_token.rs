//! Opaque pagination tokens. The client never looks inside them; we encode an offset as base64 JSON,
//! the same shape MLflow uses, so tokens from one replica work on every other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct TokenBody {
    offset: u64,
}

/// The largest offset a token may carry; no store holds this many rows.
pub const MAX_OFFSET: u64 = 1 << 53;

/// A page token could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid page token '{token}': it must be a value returned as next_page_token by a previous call")]
pub struct InvalidPageToken {
    /// The token as received.
    pub token: String,
}

/// Encodes the offset of the next page.
pub fn encode_offset(offset: u64) -> String {
    let body = serde_json::to_vec(&TokenBody { offset }).expect("serialising an integer cannot fail");
    STANDARD.encode(body)
}

/// Decodes a token into an offset; an absent or empty token means offset 0.
pub fn decode_offset(token: Option<&str>) -> Result<u64, InvalidPageToken> {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return Ok(0);
    };
    let invalid = || InvalidPageToken {
        token: token.to_string(),
    };
    let bytes = STANDARD.decode(token).map_err(|_| invalid())?;
    let body: TokenBody = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    // Offsets travel to the database as signed 64-bit integers, with a page size added: anything near that
    // range was never handed out by a server.
    if body.offset > MAX_OFFSET {
        return Err(invalid());
    }
    Ok(body.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_offset(Some(&encode_offset(5))).unwrap(), 5);
        assert_eq!(encode_offset(5), "eyJvZmZzZXQiOjV9");
        assert_eq!(decode_offset(Some("eyJvZmZzZXQiOiA1fQ==")).unwrap(), 5);
        assert_eq!(decode_offset(None).unwrap(), 0);
        assert!(decode_offset(Some("not base64!")).is_err());
        assert!(decode_offset(Some(&encode_offset(1 << 63))).is_err());
        assert!(decode_offset(Some(&encode_offset(u64::MAX))).is_err());
        assert_eq!(decode_offset(Some(&encode_offset(MAX_OFFSET))).unwrap(), MAX_OFFSET);
    }
}
