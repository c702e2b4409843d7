//! The user store: named users, groups, API tokens and login sessions in `concord.db`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use concord_authz::{Identity, User};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cookie::{load_or_create_secret, CookieSigner, CookieValue};
use crate::error::{IdentityError, LoginError};
use crate::password::{
    check_password_hash, hash_password, needs_rehash, verify_dummy, verify_password,
};
use crate::profile::ProfileUpdate;
use crate::validate::{normalize_groups, validate_username};

/// File name of the user database inside the state directory.
pub const DATABASE_FILE: &str = "concord.db";

/// Prefix of every API token concord issues (helps secret scanners recognise leaked ones).
pub const API_TOKEN_PREFIX: &str = "concord_";

/// Schema migrations; entry `i` upgrades `user_version` `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    name          TEXT,
    display_name  TEXT,
    initials      TEXT,
    avatar_url    TEXT,
    color         TEXT,
    password_hash TEXT,
    created       TEXT NOT NULL
);
CREATE TABLE group_members (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE,
    note       TEXT NOT NULL,
    created    TEXT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
-- A session belongs to a database user (user_id) or carries its own identity
-- (synthetic_identity, JSON), e.g. the token-mode owner who is not in the database.
CREATE TABLE sessions (
    id_hash            BLOB PRIMARY KEY,
    user_id            INTEGER REFERENCES users(id) ON DELETE CASCADE,
    username           TEXT NOT NULL,
    synthetic_identity TEXT,
    created            TEXT NOT NULL,
    expires            INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (synthetic_identity IS NULL))
);
CREATE INDEX sessions_username ON sessions(username);
"#];

/// Most identities kept in the lookup cache; it is simply emptied when full.
const CACHE_CAPACITY: usize = 10_000;

/// Settings for [`UserStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long a login session lasts from login (tornado's signed cookies: 31 days).
    pub session_lifetime: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            session_lifetime: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// How a user's password is set.
#[derive(Clone, Copy)]
pub enum NewPassword<'a> {
    /// A plain password, hashed with argon2id (at least 8 characters).
    Plain(&'a str),
    /// An existing hash in an accepted format, e.g. jupyter_server's `argon2:$argon2id$…`
    /// from `jupyter server password`.
    Hash(&'a str),
    /// No password: the user cannot log in with a password (API tokens still work).
    None,
}

impl fmt::Debug for NewPassword<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NewPassword::Plain(_) => "Plain([secret])",
            NewPassword::Hash(_) => "Hash([secret])",
            NewPassword::None => "None",
        })
    }
}

impl NewPassword<'_> {
    fn into_hash(self) -> Result<Option<String>, IdentityError> {
        match self {
            NewPassword::Plain(password) => hash_password(password).map(Some),
            NewPassword::Hash(hash) => {
                check_password_hash(hash)?;
                Ok(Some(hash.to_string()))
            }
            NewPassword::None => Ok(None),
        }
    }
}

/// A user as `concord user list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// The public user model.
    pub user: User,
    /// The user's groups, sorted.
    pub groups: Vec<String>,
    /// When the user was added (RFC 3339, UTC).
    pub created: String,
    /// Whether the user can log in with a password.
    pub has_password: bool,
    /// How many API tokens the user has.
    pub api_tokens: usize,
}

/// A freshly created API token. The token itself is shown once and never stored.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct NewApiToken {
    /// The token's id, for listing and revoking.
    pub id: i64,
    /// The secret token (`concord_` + 64 hex digits).
    pub token: String,
    /// The note given at creation.
    pub note: String,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("id", &self.id)
            .field("token", &"[secret]")
            .field("note", &self.note)
            .field("created", &self.created)
            .finish()
    }
}

/// An API token as listed (without the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiTokenInfo {
    /// The token's id.
    pub id: i64,
    /// The note given at creation.
    pub note: String,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
}

/// What an identity in the cache was found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CredentialKind {
    Session,
    ApiToken,
}

struct CachedIdentity {
    identity: Identity,
    /// Unix seconds after which the credential is invalid (sessions).
    expires: Option<i64>,
}

struct Inner {
    conn: Connection,
    /// `PRAGMA data_version` when the cache was last known good. It changes when another
    /// connection (say `concord user passwd` in another process) commits, and then the cache
    /// is emptied.
    data_version: i64,
    cache: HashMap<(CredentialKind, [u8; 32]), CachedIdentity>,
}

impl Inner {
    fn forget_user(&mut self, username: &str) {
        self.cache
            .retain(|_, cached| cached.identity.username() != username);
    }

    fn refresh_cache_validity(&mut self) -> Result<(), IdentityError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))?;
        if version != self.data_version {
            self.cache.clear();
            self.data_version = version;
        }
        Ok(())
    }

    fn remember(&mut self, key: (CredentialKind, [u8; 32]), cached: CachedIdentity) {
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        self.cache.insert(key, cached);
    }
}

/// Named users, their groups, API tokens and login sessions, in one SQLite file.
///
/// Safe to share between tokio tasks (`Arc<UserStore>`): queries are short and serialised
/// by a mutex. Password hashing is deliberately slow (tens of milliseconds), so call
/// [`UserStore::add_user`], [`UserStore::set_password`] and [`UserStore::verify_login`] from
/// `tokio::task::spawn_blocking`; the database lock is not held while hashing.
pub struct UserStore {
    inner: Mutex<Inner>,
    signer: CookieSigner,
    options: StoreOptions,
    database_path: PathBuf,
}

impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStore")
            .field("database_path", &self.database_path)
            .finish_non_exhaustive()
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// JSON form of a synthetic session's identity.
#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    user: User,
    groups: Vec<String>,
}

const USER_COLUMNS: &str = "id, username, name, display_name, initials, avatar_url, color";

/// Builds the public user model from a row selected with [`USER_COLUMNS`].
fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, User)> {
    let id: i64 = row.get(0)?;
    let username: String = row.get(1)?;
    let name: Option<String> = row.get(2)?;
    let display_name: Option<String> = row.get(3)?;
    let name = name.unwrap_or_else(|| username.clone());
    let display_name = display_name.unwrap_or_else(|| name.clone());
    Ok((
        id,
        User {
            username,
            name,
            display_name,
            initials: row.get(4)?,
            avatar_url: row.get(5)?,
            color: row.get(6)?,
        },
    ))
}

fn groups_of(conn: &Connection, user_id: i64) -> Result<Vec<String>, IdentityError> {
    let mut stmt = conn.prepare_cached(
        "SELECT group_name FROM group_members WHERE user_id = ?1 ORDER BY group_name",
    )?;
    let groups = stmt
        .query_map([user_id], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(groups)
}

fn identity_by_id(conn: &Connection, user_id: i64) -> Result<Option<Identity>, IdentityError> {
    let user = conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [user_id],
            user_from_row,
        )
        .optional()?;
    match user {
        Some((id, user)) => Ok(Some(Identity {
            user,
            groups: groups_of(conn, id)?,
        })),
        None => Ok(None),
    }
}

fn user_id(conn: &Connection, username: &str) -> Result<i64, IdentityError> {
    conn.query_row(
        "SELECT id FROM users WHERE username = ?1",
        [username],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| IdentityError::UserNotFound(username.to_string()))
}

fn set_groups_of(conn: &Connection, user_id: i64, groups: &[String]) -> Result<(), IdentityError> {
    conn.execute("DELETE FROM group_members WHERE user_id = ?1", [user_id])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO group_members (user_id, group_name) VALUES (?1, ?2)")?;
    for group in groups {
        insert.execute(params![user_id, group])?;
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), IdentityError> {
    let supported = MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > supported {
        return Err(IdentityError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates `dir` (mode 0700) if missing.
pub(crate) fn ensure_state_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| IdentityError::io(dir, e))
}

/// Creates `path` with mode 0600 if it does not exist, so SQLite (which gives its WAL and
/// shared-memory files the database's mode) never makes password hashes world-readable.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), IdentityError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| IdentityError::io(path, e))
}

/// Opens an SQLite database in WAL mode with foreign keys on and a busy timeout.
pub(crate) fn open_sqlite(path: &Path) -> Result<Connection, IdentityError> {
    ensure_private_file(path)?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

impl UserStore {
    /// Opens (creating if needed) `concord.db` and the cookie secret in `state_dir`, with
    /// default options. The schema is created or migrated.
    pub fn open(state_dir: &Path) -> Result<Self, IdentityError> {
        Self::open_with(state_dir, StoreOptions::default())
    }

    /// [`UserStore::open`] with explicit options.
    pub fn open_with(state_dir: &Path, options: StoreOptions) -> Result<Self, IdentityError> {
        ensure_state_dir(state_dir)?;
        let secret = load_or_create_secret(state_dir)?;
        let database_path = state_dir.join(DATABASE_FILE);
        let mut conn = open_sqlite(&database_path)?;
        migrate(&mut conn)?;
        let data_version = conn.pragma_query_value(None, "data_version", |row| row.get(0))?;
        Ok(UserStore {
            inner: Mutex::new(Inner {
                conn,
                data_version,
                cache: HashMap::new(),
            }),
            signer: CookieSigner::new(secret),
            options,
            database_path,
        })
    }

    /// Where the database lives.
    pub fn database_path(&self) -> &Path {
        &self.database_path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the connection half-way through a
        // transaction (rusqlite rolls back on drop), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- users -----

    /// Adds a user with a password setting and groups. Errors if the username or a group
    /// name is invalid, the password too short, or the user exists.
    pub fn add_user<S: AsRef<str>>(
        &self,
        username: &str,
        password: NewPassword<'_>,
        groups: &[S],
    ) -> Result<(), IdentityError> {
        validate_username(username)?;
        let groups = normalize_groups(groups)?;
        let hash = password.into_hash()?;
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO users (username, password_hash, created) VALUES (?1, ?2, ?3)
             ON CONFLICT(username) DO NOTHING",
            params![username, hash, now_rfc3339()],
        )?;
        if inserted == 0 {
            return Err(IdentityError::UserExists(username.to_string()));
        }
        let id = tx.last_insert_rowid();
        set_groups_of(&tx, id, &groups)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets (or, with [`NewPassword::None`], removes) a user's password, and ends all of the
    /// user's login sessions.
    pub fn set_password(
        &self,
        username: &str,
        password: NewPassword<'_>,
    ) -> Result<(), IdentityError> {
        let hash = password.into_hash()?;
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let id = user_id(&tx, username)?;
        tx.execute(
            "UPDATE users SET password_hash = ?1 WHERE id = ?2",
            params![hash, id],
        )?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        tx.commit()?;
        inner.forget_user(username);
        Ok(())
    }

    /// Replaces a user's groups. Their sessions stay valid and see the new groups at once.
    pub fn set_groups<S: AsRef<str>>(
        &self,
        username: &str,
        groups: &[S],
    ) -> Result<(), IdentityError> {
        let groups = normalize_groups(groups)?;
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let id = user_id(&tx, username)?;
        set_groups_of(&tx, id, &groups)?;
        tx.commit()?;
        inner.forget_user(username);
        Ok(())
    }

    /// Removes a user with their groups, API tokens and sessions.
    pub fn remove_user(&self, username: &str) -> Result<(), IdentityError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let id = user_id(&tx, username)?;
        // ON DELETE CASCADE removes memberships, tokens and sessions.
        tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
        tx.commit()?;
        inner.forget_user(username);
        Ok(())
    }

    /// Every user, sorted by username, with groups and token counts.
    pub fn list_users(&self) -> Result<Vec<UserRecord>, IdentityError> {
        let inner = self.lock();
        let conn = &inner.conn;
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER_COLUMNS}, created, password_hash IS NOT NULL,
                    (SELECT COUNT(*) FROM api_tokens t WHERE t.user_id = users.id)
             FROM users ORDER BY username"
        ))?;
        let rows = stmt
            .query_map([], |row| {
                let (id, user) = user_from_row(row)?;
                let created: String = row.get(7)?;
                let has_password: bool = row.get(8)?;
                let api_tokens: i64 = row.get(9)?;
                Ok((id, user, created, has_password, api_tokens))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, user, created, has_password, api_tokens)| {
                Ok(UserRecord {
                    user,
                    groups: groups_of(conn, id)?,
                    created,
                    has_password,
                    api_tokens: usize::try_from(api_tokens).unwrap_or(0),
                })
            })
            .collect()
    }

    /// The identity (user model and groups) of a database user, if they exist.
    pub fn identity(&self, username: &str) -> Result<Option<Identity>, IdentityError> {
        let inner = self.lock();
        let id = match user_id(&inner.conn, username) {
            Ok(id) => id,
            Err(IdentityError::UserNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        identity_by_id(&inner.conn, id)
    }

    /// Applies a `PATCH /api/me` change to a database user and returns the new identity.
    pub fn update_profile(
        &self,
        username: &str,
        update: &ProfileUpdate,
    ) -> Result<Identity, IdentityError> {
        let valid = update.validate()?;
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let id = user_id(&tx, username)?;
        for (column, change) in &valid.changes {
            if let Some(value) = change {
                // `column` comes from a fixed list, never from input.
                tx.execute(
                    &format!("UPDATE users SET {column} = ?1 WHERE id = ?2"),
                    params![value, id],
                )?;
            }
        }
        let identity = identity_by_id(&tx, id)?
            .ok_or_else(|| IdentityError::UserNotFound(username.to_string()))?;
        tx.commit()?;
        inner.forget_user(username);
        Ok(identity)
    }

    // ----- passwords -----

    /// Checks a username and password. Unknown users, users without a password and wrong
    /// passwords all cost one password verification and give
    /// [`LoginError::InvalidCredentials`]. A correct password stored in an older format is
    /// re-hashed with argon2id.
    ///
    /// Combine with [`crate::LoginThrottle`]; this function does not throttle.
    pub fn verify_login(&self, username: &str, password: &str) -> Result<Identity, LoginError> {
        let stored: Option<(i64, Option<String>)> = if validate_username(username).is_ok() {
            let inner = self.lock();
            inner
                .conn
                .query_row(
                    "SELECT id, password_hash FROM users WHERE username = ?1",
                    [username],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(IdentityError::from)?
        } else {
            None
        };
        let (id, hash) = match stored {
            Some((id, Some(hash))) => (id, hash),
            _ => {
                verify_dummy(password);
                return Err(LoginError::InvalidCredentials);
            }
        };
        if !verify_password(&hash, password) {
            return Err(LoginError::InvalidCredentials);
        }
        if needs_rehash(&hash) {
            self.upgrade_hash(id, &hash, password);
        }
        let inner = self.lock();
        identity_by_id(&inner.conn, id)?.ok_or(LoginError::InvalidCredentials)
    }

    /// Replaces a legacy hash after a successful login; failure only costs the upgrade.
    fn upgrade_hash(&self, id: i64, old_hash: &str, password: &str) {
        let new_hash = match crate::password::hash_unchecked(password) {
            Ok(hash) => hash,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-hash a legacy password");
                return;
            }
        };
        let inner = self.lock();
        // Only if nobody changed the password meanwhile.
        if let Err(e) = inner.conn.execute(
            "UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_hash = ?3",
            params![new_hash, id, old_hash],
        ) {
            tracing::warn!(error = %e, "could not store a re-hashed password");
        }
    }

    // ----- API tokens -----

    /// Creates an API token for a user. The returned token is the only copy; the database
    /// keeps its SHA-256.
    pub fn create_token(&self, username: &str, note: &str) -> Result<NewApiToken, IdentityError> {
        let note = note.trim();
        if note.chars().count() > 256 || note.chars().any(char::is_control) {
            return Err(IdentityError::InvalidProfile {
                field: "note",
                reason: "must be at most 256 characters without control characters",
            });
        }
        let token = format!(
            "{API_TOKEN_PREFIX}{}",
            hex::encode(rand::random::<[u8; 32]>())
        );
        let created = now_rfc3339();
        let inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        inner.conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, note, created) VALUES (?1, ?2, ?3, ?4)",
            params![uid, sha256(token.as_bytes()).as_slice(), note, created],
        )?;
        Ok(NewApiToken {
            id: inner.conn.last_insert_rowid(),
            token,
            note: note.to_string(),
            created,
        })
    }

    /// A user's API tokens, oldest first (without the secrets).
    pub fn list_tokens(&self, username: &str) -> Result<Vec<ApiTokenInfo>, IdentityError> {
        let inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        let mut stmt = inner
            .conn
            .prepare("SELECT id, note, created FROM api_tokens WHERE user_id = ?1 ORDER BY id")?;
        let tokens = stmt
            .query_map([uid], |row| {
                Ok(ApiTokenInfo {
                    id: row.get(0)?,
                    note: row.get(1)?,
                    created: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(tokens)
    }

    /// Revokes one of a user's API tokens; it stops working at once.
    pub fn revoke_token(&self, username: &str, id: i64) -> Result<(), IdentityError> {
        let mut inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        let deleted = inner.conn.execute(
            "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, uid],
        )?;
        if deleted == 0 {
            return Err(IdentityError::TokenNotFound {
                username: username.to_string(),
                id,
            });
        }
        inner.forget_user(username);
        Ok(())
    }

    /// The identity an API token (from `Authorization: token …` or `?token=`) belongs to.
    /// Cached; a revoked token or a removed user is noticed at once, also when the change
    /// was made by another process.
    pub fn token_identity(&self, token: &str) -> Result<Option<Identity>, IdentityError> {
        if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let key = (CredentialKind::ApiToken, sha256(token.as_bytes()));
        let mut inner = self.lock();
        inner.refresh_cache_validity()?;
        if let Some(cached) = inner.cache.get(&key) {
            return Ok(Some(cached.identity.clone()));
        }
        let uid: Option<i64> = inner
            .conn
            .query_row(
                "SELECT user_id FROM api_tokens WHERE token_hash = ?1",
                [key.1.as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        let Some(uid) = uid else { return Ok(None) };
        let identity = identity_by_id(&inner.conn, uid)?;
        if let Some(identity) = &identity {
            inner.remember(
                key,
                CachedIdentity {
                    identity: identity.clone(),
                    expires: None,
                },
            );
        }
        Ok(identity)
    }

    // ----- login sessions -----

    fn insert_session(
        &self,
        user_id: Option<i64>,
        username: &str,
        synthetic: Option<String>,
        inner: &Inner,
    ) -> Result<CookieValue, IdentityError> {
        let id: [u8; 32] = rand::random();
        let lifetime = i64::try_from(self.options.session_lifetime.as_secs()).unwrap_or(i64::MAX);
        let now = now_unix();
        // Expired rows are only garbage; clearing them here keeps the table small.
        inner
            .conn
            .execute("DELETE FROM sessions WHERE expires <= ?1", [now])?;
        inner.conn.execute(
            "INSERT INTO sessions (id_hash, user_id, username, synthetic_identity, created, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                sha256(&id).as_slice(),
                user_id,
                username,
                synthetic,
                now_rfc3339(),
                now.saturating_add(lifetime)
            ],
        )?;
        Ok(self.signer.sign(&id))
    }

    /// Starts a login session for a database user; returns the signed cookie value.
    pub fn create_session(&self, username: &str) -> Result<CookieValue, IdentityError> {
        let inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        self.insert_session(Some(uid), username, None, &inner)
    }

    /// Starts a login session for an identity that is not in the database, such as the
    /// token-mode owner after `?token=` (the identity is stored with the session). It ends
    /// like any session: [`UserStore::end_session`], [`UserStore::end_sessions_of`] or expiry.
    pub fn create_synthetic_session(
        &self,
        identity: &Identity,
    ) -> Result<CookieValue, IdentityError> {
        validate_username(identity.username())?;
        let stored = serde_json::to_string(&StoredIdentity {
            user: identity.user.clone(),
            groups: identity.groups.clone(),
        })
        .map_err(|e| IdentityError::Hashing(format!("cannot encode identity: {e}")))?;
        let inner = self.lock();
        self.insert_session(None, identity.username(), Some(stored), &inner)
    }

    /// The identity a login cookie names, or `None` for a forged, unknown, ended or expired
    /// session. Runs on every request: a cache answers, checked against changes made by
    /// other processes through SQLite's `data_version`.
    pub fn session_identity(&self, cookie_value: &str) -> Result<Option<Identity>, IdentityError> {
        let Some(id) = self.signer.open(cookie_value) else {
            return Ok(None);
        };
        let key = (CredentialKind::Session, sha256(&id));
        let now = now_unix();
        let mut inner = self.lock();
        inner.refresh_cache_validity()?;
        if let Some(cached) = inner.cache.get(&key) {
            if cached.expires.is_some_and(|expires| expires > now) {
                return Ok(Some(cached.identity.clone()));
            }
            inner.cache.remove(&key);
            return Ok(None);
        }
        let row: Option<(Option<i64>, Option<String>, i64)> = inner
            .conn
            .query_row(
                "SELECT user_id, synthetic_identity, expires FROM sessions
                 WHERE id_hash = ?1 AND expires > ?2",
                params![key.1.as_slice(), now],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((uid, synthetic, expires)) = row else {
            return Ok(None);
        };
        let identity = match (uid, synthetic) {
            (Some(uid), _) => identity_by_id(&inner.conn, uid)?,
            (None, Some(json)) => match serde_json::from_str::<StoredIdentity>(&json) {
                Ok(stored) => Some(Identity {
                    user: stored.user,
                    groups: stored.groups,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable session identity; treating the session as ended");
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(identity) = &identity {
            inner.remember(
                key,
                CachedIdentity {
                    identity: identity.clone(),
                    expires: Some(expires),
                },
            );
        }
        Ok(identity)
    }

    /// Ends the session a cookie names (logout). Unknown or forged values are ignored.
    pub fn end_session(&self, cookie_value: &str) -> Result<(), IdentityError> {
        let Some(id) = self.signer.open(cookie_value) else {
            return Ok(());
        };
        let key = (CredentialKind::Session, sha256(&id));
        let mut inner = self.lock();
        inner.cache.remove(&key);
        inner.conn.execute(
            "DELETE FROM sessions WHERE id_hash = ?1",
            [key.1.as_slice()],
        )?;
        Ok(())
    }

    /// Ends every session of `username` (database or synthetic); returns how many ended.
    pub fn end_sessions_of(&self, username: &str) -> Result<usize, IdentityError> {
        let mut inner = self.lock();
        let ended = inner
            .conn
            .execute("DELETE FROM sessions WHERE username = ?1", [username])?;
        inner.cache.retain(|(kind, _), cached| {
            *kind != CredentialKind::Session || cached.identity.username() != username
        });
        Ok(ended)
    }
}
