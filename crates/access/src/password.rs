//! Passwords: Argon2id at one of OWASP's equivalent settings, 7 MiB and 5 passes (rather than 19 MiB and 2: the
//! same work for an attacker, less memory held by the server per check), in the PHC string format, so the
//! parameters travel with each hash and can be changed later (a stored hash is checked with its own).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// MLflow's minimum (3.x refuses shorter passwords).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer passwords are refused before hashing (hashing cost grows with length).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password was refused.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "Password must be at least {MIN_PASSWORD_CHARS} characters long."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("Password must be at most {MAX_PASSWORD_BYTES} bytes long."));
    }
    if password.trim().is_empty() {
        return Err("Password must not be blank.".to_string());
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).expect("valid Argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id accepts any password of at most 1 KiB")
        .to_string()
}

/// True when `password` matches `stored` (an unparseable stored hash matches nothing).
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        // The stored string's own parameters are used, so older hashes keep working.
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the time a real check would, so an unknown user answers no faster than a known one.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not a password anyone has"));
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(hash("correct horse battery"), stored, "each hash has its own salt");
    }

    #[test]
    fn short_empty_and_huge_passwords_are_refused() {
        assert!(check_strength("").is_err());
        assert!(check_strength("elevenchars").is_err());
        assert!(check_strength("            ").is_err());
        assert!(check_strength(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(check_strength("twelve chars").is_ok());
    }
}
