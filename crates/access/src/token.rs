//! API tokens: `llt_<id>_<secret>`. The id (12 characters) is public and names the stored row; the secret
//! (32 random bytes, base64url) is shown once and only its SHA-256 is kept. A secret this long needs no slow
//! hash: guessing it is hopeless, and a fast hash keeps verification off the request path's budget.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Every Loopline token begins with this (secret scanners can look for it).
pub const TOKEN_PREFIX: &str = "llt_";
const ID_CHARS: usize = 12;
const SECRET_BYTES: usize = 32;
/// Longest text taken as a token (longer: refused before any work).
pub const MAX_TOKEN_CHARS: usize = 128;

/// A new token's parts.
pub struct NewToken {
    /// Public id.
    pub token_id: String,
    /// The whole token text, shown once.
    pub text: String,
    /// What is stored.
    pub secret_hash: String,
}

/// Makes a new random token.
pub fn generate() -> NewToken {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id_bytes = [0u8; ID_CHARS];
    rand::fill(&mut id_bytes);
    let token_id: String = id_bytes
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect();
    let mut secret = [0u8; SECRET_BYTES];
    rand::fill(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    NewToken {
        text: format!("{TOKEN_PREFIX}{token_id}_{secret}"),
        secret_hash: secret_hash(&secret),
        token_id,
    }
}

/// Hex SHA-256 of a secret (as stored).
pub fn secret_hash(secret: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in secret_digest(secret) {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 15)] as char);
    }
    text
}

/// SHA-256 of a secret, as bytes (what a presented token is checked with: no text built per request).
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The digest a stored hex hash spells (`None` unless it is 64 hex digits).
pub fn digest_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let digit = |byte: u8| char::from(byte).to_digit(16).and_then(|value| u8::try_from(value).ok());
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = digit(text[index * 2])? << 4 | digit(text[index * 2 + 1])?;
    }
    Some(digest)
}

/// Splits token text into id and secret; `None` when it is not shaped like one of ours.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    if text.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_CHARS)?;
    let secret = secret.strip_prefix('_')?;
    let valid_id = id
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    let valid_secret = !secret.is_empty()
        && secret
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    (valid_id && valid_secret).then_some((id, secret))
}

/// Compares two hashes in time independent of where they differ.
pub fn same_hash(left: &str, right: &str) -> bool {
    same_bytes(left.as_bytes(), right.as_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_token_parses_back_to_its_parts() {
        let token = generate();
        assert!(token.text.starts_with(TOKEN_PREFIX));
        let (id, secret) = parse(&token.text).unwrap();
        assert_eq!(id, token.token_id);
        assert!(same_hash(&secret_hash(secret), &token.secret_hash));
        assert_eq!(digest_from_hex(&token.secret_hash), Some(secret_digest(secret)));
        assert_ne!(generate().text, token.text);
    }

    #[test]
    fn a_stored_hash_that_is_not_64_hex_digits_spells_no_digest() {
        let good = secret_hash("s");
        assert!(digest_from_hex(&good).is_some());
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("g{}", &good[1..]),
        ] {
            assert_eq!(digest_from_hex(&bad), None, "{bad}");
        }
    }

    #[test]
    fn text_not_shaped_like_a_token_is_refused() {
        for text in [
            "",
            "llt_",
            "llt_short_x",
            "llt_ABCDEFGHIJKL_secret",
            "xyz_abcdefghijkl_secret",
            "llt_abcdefghijkl_",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
        assert!(parse(&format!("llt_abcdefghijkl_{}", "a".repeat(200))).is_none());
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn any_stored_text_reads_as_a_digest_only_when_it_spells_one(text in ".{0,80}", secret in "[a-zA-Z0-9_-]{1,50}") {
            if let Some(digest) = digest_from_hex(&text) {
                prop_assert_eq!(text.len(), 64);
                prop_assert!(text.bytes().all(|byte| byte.is_ascii_hexdigit()));
                prop_assert_eq!(digest_from_hex(&text.to_ascii_lowercase()), Some(digest));
            }
            prop_assert_eq!(digest_from_hex(&secret_hash(&secret)), Some(secret_digest(&secret)));
        }
    }
}
