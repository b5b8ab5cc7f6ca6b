//! Random secrets and their stored form. Passwords are hashed with Argon2id (slow on purpose,
//! on the blocking pool); session tokens and API keys are 256-bit random values, stored as
//! SHA-256 so a leaked database holds nothing usable, yet found with one lookup per request.
//! Link-signing secrets are random too, but stored as they are (an HMAC needs its key).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Prefix of every API key, so leaked keys are recognisable by secret scanners.
pub const API_KEY_PREFIX: &str = "sk_";

/// 32 random bytes, URL-safe base64 without padding (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn new_session_token() -> String {
    random_token()
}

/// A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Prefix of every link-signing secret (signed image links).
pub const SIGNING_SECRET_PREFIX: &str = "lsk_";

/// A link-signing secret: `lsk_` + 256 random bits. The HMAC key is this text as it is.
pub fn new_signing_secret() -> String {
    format!("{SIGNING_SECRET_PREFIX}{}", random_token())
}

pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_token())
}

/// SHA-256 in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An Argon2id PHC string for a password. CPU-heavy: call on the blocking pool.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches a stored PHC string. CPU-heavy: call on the blocking pool.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let stored = hash_password("correct horse").expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("correct horsf", &stored));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_long_distinct_and_url_safe() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 43);
        assert!(a[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}
