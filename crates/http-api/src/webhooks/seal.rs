//! Webhook secrets at rest: sealed with AES-256-GCM under the server's secrets key, so a copy of the database
//! (a backup, a replica's dump) does not hold them in the clear. The key comes from `LOOPLINE_SECRETS_KEY`
//! (64 hex characters, the same on every replica) or, for a single server, a key file in the data directory.

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that holds the secrets key (replicas sharing a database share it).
pub const SECRETS_KEY_ENV: &str = "LOOPLINE_SECRETS_KEY";

/// The prefix of a sealed secret (the format's version).
const PREFIX: &str = "v1:";

/// Seals and opens secrets with one key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key");
        Sealer {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        }
    }

    /// A fresh random key.
    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system's random source is available");
        key
    }

    /// `secret` sealed: `v1:` and the base64 of nonce, ciphertext and tag.
    pub fn seal(&self, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source is available");
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed)
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The secret, or None when it was sealed under another key or is damaged.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(PREFIX)?)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut rest = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut rest).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// Reads a key from hex (64 characters).
pub fn key_from_hex(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the secrets key must be 64 hexadecimal characters (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// A key as hex.
pub fn key_to_hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_under_their_key() {
        let sealer = Sealer::new(&[7u8; 32]);
        let sealed = sealer.seal("s3cret");
        assert!(sealed.starts_with("v1:") && !sealed.contains("s3cret"));
        assert_eq!(sealer.open(&sealed).as_deref(), Some("s3cret"));
        assert_ne!(sealer.seal("s3cret"), sealed, "a fresh nonce each time");
        assert_eq!(Sealer::new(&[8u8; 32]).open(&sealed), None);
        assert_eq!(sealer.open("v1:AAAA"), None);
        assert_eq!(sealer.open("plain"), None);
        let key = Sealer::generate_key();
        assert_eq!(key_from_hex(&key_to_hex(&key)).unwrap(), key);
        assert!(key_from_hex("abc").is_err());
    }
}
