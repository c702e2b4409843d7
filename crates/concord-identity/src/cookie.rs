//! The cookie secret and signed session cookie values.
//!
//! A cookie value is `v1.<session id>.<HMAC-SHA256 of the id>` (both base64url, no padding),
//! so forged values are refused without touching the database and the value is safe in a
//! `Set-Cookie` header. The session id itself is 32 random bytes; the database stores only its
//! SHA-256, so a copy of the database does not yield live cookies.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::IdentityError;

/// File name of the cookie-signing secret inside the state directory.
pub const COOKIE_SECRET_FILE: &str = "cookie_secret";

const VALUE_PREFIX: &str = "v1.";
/// Context string mixed into the MAC, so the secret cannot be confused with another use.
const MAC_CONTEXT: &[u8] = b"concord session cookie v1\0";

/// A signed login-cookie value, as it goes into `Set-Cookie`. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieValue(String);

impl CookieValue {
    /// The value to put in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the string out.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for CookieValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieValue([secret])")
    }
}

/// Signs and checks cookie values with the 32-byte secret.
pub(crate) struct CookieSigner {
    secret: [u8; 32],
}

type HmacSha256 = Hmac<Sha256>;

impl CookieSigner {
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        CookieSigner { secret }
    }

    fn mac(&self) -> HmacSha256 {
        // A 32-byte key is always a valid HMAC key; new_from_slice only fails for
        // algorithms with key-size limits.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(MAC_CONTEXT);
        mac
    }

    /// The cookie value naming session `id`.
    pub(crate) fn sign(&self, id: &[u8; 32]) -> CookieValue {
        let mut mac = self.mac();
        mac.update(id);
        let tag = mac.finalize().into_bytes();
        CookieValue(format!(
            "{VALUE_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// The session id in a cookie value, if the value is well-formed and correctly signed.
    pub(crate) fn open(&self, value: &str) -> Option<[u8; 32]> {
        // Bound the work done on attacker-supplied input.
        if value.len() > 128 {
            return None;
        }
        let rest = value.strip_prefix(VALUE_PREFIX)?;
        let (id_b64, tag_b64) = rest.split_once('.')?;
        let id: [u8; 32] = URL_SAFE_NO_PAD.decode(id_b64).ok()?.try_into().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
        let mut mac = self.mac();
        mac.update(&id);
        mac.verify_slice(&tag).ok()?;
        Some(id)
    }
}

/// Reads the cookie secret from `state_dir`, creating it (32 random bytes, hex, mode 0600)
/// on first start. A secret readable by others is narrowed to 0600 with a warning.
pub(crate) fn load_or_create_secret(state_dir: &Path) -> Result<[u8; 32], IdentityError> {
    let path = state_dir.join(COOKIE_SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path)
                .map_err(|e| IdentityError::io(&path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "cookie secret was readable by others; setting mode 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(|e| IdentityError::io(&path, e))?;
            }
            parse_secret(text.trim()).ok_or_else(|| IdentityError::BadStateFile {
                path: path.clone(),
                reason:
                    "expected 64 hexadecimal characters (a 32-byte secret); delete the file to \
                         create a new one, which logs everybody out"
                        .to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(state_dir, &path),
        Err(e) => Err(IdentityError::io(&path, e)),
    }
}

fn parse_secret(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

fn create_secret(state_dir: &Path, path: &Path) -> Result<[u8; 32], IdentityError> {
    let secret: [u8; 32] = rand::random();
    // Write a temporary file, then hard-link it into place: the link fails if another
    // process (say `concord user add` next to a starting server) won the race, and then we
    // use its secret. Nobody ever reads a half-written secret.
    let tmp = state_dir.join(format!(
        ".{COOKIE_SECRET_FILE}.{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{}\n", hex::encode(secret)).as_bytes())?;
        file.sync_all()
    };
    let written = write();
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(state_dir),
        Err(e) => Err(IdentityError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_round_trip_and_forgeries_fail() {
        let signer = CookieSigner::new([7; 32]);
        let id = [42u8; 32];
        let value = signer.sign(&id);
        assert_eq!(signer.open(value.as_str()), Some(id));
        assert!(value
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));

        let other = CookieSigner::new([8; 32]);
        assert_eq!(other.open(value.as_str()), None);
        let mut tampered = value.as_str().to_string();
        tampered.replace_range(5..6, if &tampered[5..6] == "A" { "B" } else { "A" });
        assert_eq!(signer.open(&tampered), None);
        for junk in [
            "",
            "v1.",
            "v1..",
            "v1.abc.def",
            "garbage",
            &"v1.".repeat(100),
        ] {
            assert_eq!(signer.open(junk), None, "{junk}");
        }
        assert_eq!(format!("{value:?}"), "CookieValue([secret])");
    }

    #[test]
    fn secret_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let second = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(first, second);
        let path = dir.path().join(COOKIE_SECRET_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), first);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        fs::write(&path, "not hex").unwrap();
        let err = load_or_create_secret(dir.path()).unwrap_err();
        assert!(err.to_string().contains("64 hexadecimal"), "{err}");
    }
}
