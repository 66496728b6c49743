//! Secrets: argon2id password hashes, random tokens, SHA-256 and constant-time comparison.
//!
//! Guarantees: a password is stored only as an argon2id PHC string (OWASP's parameters:
//! 19 MiB, two passes, one lane, a 16-byte random salt); comparisons of secrets take a time
//! that does not depend on where they differ; tokens come from the operating system's CSPRNG
//! (aws-lc-rs). Nothing here logs or formats a secret.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;

/// Shortest password accepted (Elasticsearch's minimum for native users).
pub const MIN_PASSWORD_CHARS: usize = 6;
/// Longest password accepted: argon2 hashes any length, but a request must not make the node
/// hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// `bytes` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system CSPRNG failing is not something a node can go on without.
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    bytes
}

/// A random token of `N` bytes, base64url without padding.
pub fn random_token<const N: usize>() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// The argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> String {
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `hash` is an argon2 PHC string (what a users file must hold).
pub fn is_password_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| parsed.algorithm.as_str().starts_with("argon2"))
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `a == b` in a time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Checks a new password against the length rules; the error names the rule, never the
/// password.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "passwords must be at least [{MIN_PASSWORD_CHARS}] characters long"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "passwords must be at most [{MAX_PASSWORD_BYTES}] bytes long"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_hashes_that_verify() {
        let hash = hash_password("s3cret-pass");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(is_password_hash(&hash));
        assert!(verify_password("s3cret-pass", &hash));
        assert!(!verify_password("s3cret-pasS", &hash));
        assert!(!verify_password("s3cret-pass", "not a hash"));
        assert_ne!(hash, hash_password("s3cret-pass"), "salted");
        assert!(!is_password_hash("plain"));
    }

    #[test]
    fn tokens_are_random_and_comparisons_exact() {
        assert_ne!(random_token::<16>(), random_token::<16>());
        assert_eq!(random_token::<16>().len(), 22);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(check_new_password("12345").is_err());
        assert!(check_new_password("123456").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
