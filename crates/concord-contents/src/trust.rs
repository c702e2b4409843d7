//! Notebook trust, recorded per user: an HMAC of the notebook (as nbformat computes it) keyed
//! with a per-user key derived from a server secret, stored in SQLite.

use crate::notebook::signature_stream;
use hmac::{Hmac, Mac};
use rusqlite::{params, Connection};
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// Signatures of trusted notebooks, per user.
pub struct TrustStore {
    secret: Vec<u8>,
    db: Mutex<Connection>,
}

impl TrustStore {
    /// Open (or create) `trust.db` and `trust_secret` in `state_dir`; in memory without one.
    pub fn open(state_dir: Option<&Path>) -> Result<Self, String> {
        let (secret, db) = match state_dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let secret_path = dir.join("trust_secret");
                let secret = match fs::read(&secret_path) {
                    Ok(s) if !s.is_empty() => s,
                    _ => {
                        let s: [u8; 32] = rand::random();
                        let s = hex::encode(s).into_bytes();
                        let mut f = fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .mode(0o600)
                            .open(&secret_path)
                            .map_err(|e| format!("{}: {e}", secret_path.display()))?;
                        f.write_all(&s).map_err(|e| e.to_string())?;
                        s
                    }
                };
                let db = Connection::open(dir.join("trust.db")).map_err(|e| e.to_string())?;
                (secret, db)
            }
            None => {
                let s: [u8; 32] = rand::random();
                (
                    s.to_vec(),
                    Connection::open_in_memory().map_err(|e| e.to_string())?,
                )
            }
        };
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS signatures (
                username TEXT NOT NULL,
                algorithm TEXT NOT NULL,
                signature TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                PRIMARY KEY (username, algorithm, signature)
            );",
        )
        .map_err(|e| e.to_string())?;
        Ok(TrustStore {
            secret,
            db: Mutex::new(db),
        })
    }

    /// The signature of `nb` for `username` (nbformat's `compute_signature`, per-user key).
    pub fn signature(&self, username: &str, nb: &serde_json::Value) -> String {
        let mut key_mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        key_mac.update(b"concord-notebook-trust\0");
        key_mac.update(username.as_bytes());
        let user_key = key_mac.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&user_key).expect("HMAC accepts any key length");
        let without_signature = match nb.get("metadata").and_then(|m| m.get("signature")) {
            Some(_) => {
                let mut copy = nb.clone();
                if let Some(m) = copy.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    m.shift_remove("signature");
                }
                Some(copy)
            }
            None => None,
        };
        signature_stream(without_signature.as_ref().unwrap_or(nb), &mut |b| {
            mac.update(b)
        });
        hex::encode(mac.finalize().into_bytes())
    }

    /// Record that `username` trusts `nb`.
    pub fn sign(&self, username: &str, nb: &serde_json::Value) -> Result<(), String> {
        let sig = self.signature(username, nb);
        let now = chrono::Utc::now().to_rfc3339();
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.execute(
            "INSERT INTO signatures (username, algorithm, signature, last_seen) VALUES (?1, 'sha256', ?2, ?3)
             ON CONFLICT (username, algorithm, signature) DO UPDATE SET last_seen = excluded.last_seen",
            params![username, sig, now],
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Whether `username` has trusted exactly this notebook.
    pub fn is_trusted(&self, username: &str, nb: &serde_json::Value) -> bool {
        let sig = self.signature(username, nb);
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.query_row(
            "SELECT 1 FROM signatures WHERE username = ?1 AND algorithm = 'sha256' AND signature = ?2",
            params![username, sig],
            |_| Ok(()),
        )
        .is_ok()
    }
}
