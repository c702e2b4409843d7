//! Password hashing and verification.
//!
//! New passwords are hashed with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes,
//! 1 lane) into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). Verification also accepts
//! the formats `jupyter server password` writes, so an existing jupyter_server password can be
//! reused: `argon2:$argon2id$…` and the legacy `<algorithm>:<salt>:<hexdigest>` (sha1, sha224,
//! sha256, sha384, sha512), where the digest is of `password + salt`.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha1::Digest;
use subtle::ConstantTimeEq;

use crate::error::IdentityError;

/// Shortest password concord accepts when one is set (in characters).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password concord accepts, in bytes; longer input is refused before hashing so it
/// cannot be used to make the server work hard.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a new password into an argon2id PHC string, after checking its length.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(IdentityError::InvalidPassword(
            "must be at least 8 characters long",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(IdentityError::InvalidPassword(
            "must be at most 1024 bytes long",
        ));
    }
    hash_unchecked(password)
}

/// Argon2id without the length rules, for re-hashing a password a user already has.
pub(crate) fn hash_unchecked(password: &str) -> Result<String, IdentityError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| IdentityError::Hashing(e.to_string()))
}

/// The stored formats concord can verify.
#[derive(Debug, PartialEq, Eq)]
enum StoredHash<'a> {
    /// A PHC string (`$argon2id$…`, also `$argon2i$`/`$argon2d$`).
    Argon2Phc(&'a str),
    /// jupyter_server's salted digest.
    Salted {
        algorithm: &'a str,
        salt: &'a str,
        hex_digest: &'a str,
    },
}

const SALTED_ALGORITHMS: [&str; 5] = ["sha1", "sha224", "sha256", "sha384", "sha512"];

fn parse_stored(stored: &str) -> Option<StoredHash<'_>> {
    if stored.starts_with("$argon2") {
        return Some(StoredHash::Argon2Phc(stored));
    }
    if let Some(phc) = stored.strip_prefix("argon2:") {
        return phc
            .starts_with("$argon2")
            .then_some(StoredHash::Argon2Phc(phc));
    }
    let mut parts = stored.splitn(3, ':');
    let (algorithm, salt, hex_digest) = (parts.next()?, parts.next()?, parts.next()?);
    if !SALTED_ALGORITHMS.contains(&algorithm)
        || hex_digest.is_empty()
        || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit())
        || !salt.is_ascii()
    {
        return None;
    }
    Some(StoredHash::Salted {
        algorithm,
        salt,
        hex_digest,
    })
}

/// Checks that `stored` is a hash [`verify_password`] understands, e.g. before importing a
/// jupyter_server `hashed_password` for a user.
pub fn check_password_hash(stored: &str) -> Result<(), IdentityError> {
    match parse_stored(stored) {
        Some(StoredHash::Argon2Phc(phc)) => argon2::password_hash::phc::PasswordHash::new(phc)
            .map(|_| ())
            .map_err(|e| IdentityError::InvalidPasswordHash(format!("bad argon2 hash: {e}"))),
        Some(StoredHash::Salted { .. }) => Ok(()),
        None => Err(IdentityError::InvalidPasswordHash(
            "expected an argon2 PHC string ($argon2id$…), jupyter_server's argon2:$argon2id$… \
             or <sha1|sha256|sha512>:<salt>:<hexdigest>"
                .to_string(),
        )),
    }
}

/// Whether `password` matches the stored hash, in any accepted format. An unparsable hash
/// never matches.
pub fn verify_password(stored: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match parse_stored(stored) {
        Some(StoredHash::Argon2Phc(phc)) => Argon2::default()
            .verify_password(password.as_bytes(), phc)
            .is_ok(),
        Some(StoredHash::Salted {
            algorithm,
            salt,
            hex_digest,
        }) => {
            let input = [password.as_bytes(), salt.as_bytes()].concat();
            let computed = match algorithm {
                "sha1" => hex::encode(sha1::Sha1::digest(&input)),
                "sha224" => hex::encode(sha2::Sha224::digest(&input)),
                "sha256" => hex::encode(sha2::Sha256::digest(&input)),
                "sha384" => hex::encode(sha2::Sha384::digest(&input)),
                "sha512" => hex::encode(sha2::Sha512::digest(&input)),
                _ => return false,
            };
            // Python compares lowercase hexdigest strings; so do we, in constant time.
            computed
                .as_bytes()
                .ct_eq(hex_digest.to_ascii_lowercase().as_bytes())
                .into()
        }
        None => false,
    }
}

/// Whether a stored hash should be replaced by a fresh argon2id hash after a successful
/// login (legacy digests, other argon2 variants, other parameters).
pub fn needs_rehash(stored: &str) -> bool {
    static CURRENT_PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = CURRENT_PREFIX.get_or_init(|| {
        let params = argon2::Params::default();
        format!(
            "$argon2id$v=19$m={},t={},p={}$",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        )
    });
    !stored.starts_with(prefix.as_str())
}

/// Spends the same work as verifying a real password, for unknown users and users without a
/// password, so response times do not reveal which usernames exist.
pub(crate) fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_unchecked("concord dummy password").ok());
    if let Some(hash) = dummy {
        let _ = verify_password(hash, password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!needs_rehash(&hash));
        assert!(check_password_hash(&hash).is_ok());
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(matches!(
            hash_password("short"),
            Err(IdentityError::InvalidPassword(_))
        ));
        assert!(hash_password(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn jupyter_sha1_docstring_example() {
        // From jupyter_server.auth.security.passwd_check's doctest.
        let stored = "sha1:0e112c3ddfce:a68df677475c2b47b6e86d0467eec97ac5f4b85a";
        assert!(verify_password(stored, "mypassword"));
        assert!(!verify_password(stored, "otherpassword"));
        assert!(needs_rehash(stored));
        assert!(check_password_hash(stored).is_ok());
    }

    #[test]
    fn unparsable_hashes_never_match() {
        for stored in [
            "",
            "plain",
            "md5:salt:abcd",
            "sha1:salt:",
            "sha1:salt:nothex",
            "argon2:notphc",
            "$argon2id$garbage",
        ] {
            assert!(!verify_password(stored, ""), "{stored}");
            assert!(!verify_password(stored, "plain"), "{stored}");
        }
        assert!(check_password_hash("md5:salt:abcd").is_err());
        assert!(check_password_hash("$argon2id$garbage").is_err());
    }
}
