//! The user store: named users, groups, API tokens and login sessions in `concord.db`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use concord_authz::{Identity, TokenScope, User};
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
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // Scoped tokens. Tokens from before keep NULL scope and expiry: unscoped, never expiring.
    r#"
ALTER TABLE api_tokens ADD COLUMN scope TEXT;        -- JSON list of grants; NULL = unscoped
ALTER TABLE api_tokens ADD COLUMN expires INTEGER;   -- Unix seconds; NULL = never
ALTER TABLE api_tokens ADD COLUMN last_used INTEGER; -- Unix seconds, to the minute
"#,
];

/// How often (seconds) a token's `last_used` is written while it is in use: often enough to
/// tell a live token from a forgotten one, rarely enough not to write on every request.
const LAST_USED_RESOLUTION: i64 = 60;

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
    /// The grants the token is limited to; `None` for an unscoped token.
    pub scope: Option<Vec<String>>,
    /// When it stops working (RFC 3339, UTC); `None` for never.
    pub expires: Option<String>,
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("id", &self.id)
            .field("token", &"[secret]")
            .field("note", &self.note)
            .field("created", &self.created)
            .field("scope", &self.scope)
            .field("expires", &self.expires)
            .finish()
    }
}

/// An API token as listed (without the secret or its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiTokenInfo {
    /// The token's id: stable, not secret; names it for revoking and in the audit log.
    pub id: i64,
    /// The owner's username.
    pub username: String,
    /// The note given at creation.
    pub note: String,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
    /// The grants the token is limited to; `None` for an unscoped token (all of the
    /// owner's rights).
    pub scope: Option<Vec<String>>,
    /// When it stops working (RFC 3339, UTC); `None` for never.
    pub expires: Option<String>,
    /// Whether it has expired (it no longer authenticates; revoke it to tidy up).
    pub expired: bool,
    /// When it was last used to authenticate (RFC 3339, UTC, to the minute); `None` if never.
    pub last_used: Option<String>,
}

/// What a new API token may do and for how long; see [`UserStore::create_token_with`].
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    /// A note for the owner (at most 256 characters, no control characters).
    pub note: String,
    /// The grants the token is limited to; `None` for all of the owner's rights.
    pub scope: Option<TokenScope>,
    /// When it stops working; `None` for never. Must be in the future.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// The result of authenticating with an API token: whose it is, and what it is limited to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAuthentication {
    /// The owner, with their current groups.
    pub identity: Identity,
    /// The token's id, for the audit log.
    pub token_id: i64,
    /// The token's scope (`None`: unscoped). Decide requests made with it through
    /// `Authorize::authorize_scoped`, so it never exceeds the owner's current rights.
    pub scope: Option<Arc<TokenScope>>,
}

/// What an identity in the cache was found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CredentialKind {
    Session,
    ApiToken,
}

struct CachedIdentity {
    identity: Identity,
    /// Unix seconds after which the credential is invalid (sessions, expiring tokens).
    expires: Option<i64>,
    /// For an API token: its id, scope and when its `last_used` was last written.
    token: Option<CachedToken>,
}

#[derive(Clone)]
struct CachedToken {
    id: i64,
    scope: Option<Arc<TokenScope>>,
    last_used_written: i64,
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

    fn forget_token(&mut self, token_id: i64) {
        self.cache
            .retain(|_, cached| cached.token.as_ref().is_none_or(|t| t.id != token_id));
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

fn unix_to_rfc3339(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A stored scope (JSON list of grants) parsed again; an error means the token must not
/// authenticate.
fn parse_stored_scope(json: &str) -> Result<TokenScope, String> {
    let grants: Vec<String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    TokenScope::parse(&grants).map_err(|e| e.to_string())
}

/// Records that a token was used; a failure (say the CLI holds the write lock) only costs
/// the record.
fn touch_token(conn: &Connection, token_id: i64, now: i64) {
    if let Err(e) = conn.execute(
        "UPDATE api_tokens SET last_used = ?1 WHERE id = ?2",
        params![now, token_id],
    ) {
        tracing::warn!(token_id, error = %e, "could not record a token's last use");
    }
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

    /// A number that changes whenever another connection to the database (another
    /// process, such as the `concord` CLI) commits: a server polls it to notice revocations,
    /// removals and password changes made elsewhere. Its own changes do not move it.
    pub fn external_changes(&self) -> Result<i64, IdentityError> {
        let inner = self.lock();
        Ok(inner
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
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

    /// Creates an unscoped, never-expiring API token for a user. The returned token is the
    /// only copy; the database keeps its SHA-256.
    pub fn create_token(&self, username: &str, note: &str) -> Result<NewApiToken, IdentityError> {
        self.create_token_with(
            username,
            &TokenSpec {
                note: note.to_string(),
                ..TokenSpec::default()
            },
        )
    }

    /// Creates an API token for a user, optionally limited to a scope and with an expiry.
    /// The returned token is the only copy; the database keeps its SHA-256.
    pub fn create_token_with(
        &self,
        username: &str,
        spec: &TokenSpec,
    ) -> Result<NewApiToken, IdentityError> {
        let note = spec.note.trim();
        if note.chars().count() > 256 || note.chars().any(char::is_control) {
            return Err(IdentityError::InvalidProfile {
                field: "note",
                reason: "must be at most 256 characters without control characters",
            });
        }
        let expires = spec.expires.map(|at| at.timestamp());
        if let Some(at) = expires {
            if at <= now_unix() {
                return Err(IdentityError::InvalidTokenExpiry(
                    "the expiry must be in the future".to_string(),
                ));
            }
        }
        let scope = spec.scope.as_ref().map(TokenScope::to_strings);
        let scope_json = scope
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| IdentityError::InvalidTokenScope(e.to_string()))?;
        let token = format!(
            "{API_TOKEN_PREFIX}{}",
            hex::encode(rand::random::<[u8; 32]>())
        );
        let created = now_rfc3339();
        let inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        inner.conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, note, created, scope, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                uid,
                sha256(token.as_bytes()).as_slice(),
                note,
                created,
                scope_json,
                expires
            ],
        )?;
        Ok(NewApiToken {
            id: inner.conn.last_insert_rowid(),
            token,
            note: note.to_string(),
            created,
            scope,
            expires: expires.and_then(unix_to_rfc3339),
        })
    }

    fn query_tokens(
        conn: &Connection,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ApiTokenInfo>, IdentityError> {
        let now = now_unix();
        let mut stmt = conn.prepare(&format!(
            "SELECT t.id, u.username, t.note, t.created, t.scope, t.expires, t.last_used
             FROM api_tokens t JOIN users u ON u.id = t.user_id {filter} ORDER BY t.id"
        ))?;
        let rows = stmt
            .query_map(args, |row| {
                let scope: Option<String> = row.get(4)?;
                let expires: Option<i64> = row.get(5)?;
                let last_used: Option<i64> = row.get(6)?;
                Ok(ApiTokenInfo {
                    id: row.get(0)?,
                    username: row.get(1)?,
                    note: row.get(2)?,
                    created: row.get(3)?,
                    // An unreadable stored scope is shown as an empty list: the token does
                    // not authenticate (see `authenticate_token`), and it must not look
                    // unscoped.
                    scope: scope.map(|json| serde_json::from_str(&json).unwrap_or_default()),
                    expires: expires.and_then(unix_to_rfc3339),
                    expired: expires.is_some_and(|at| at <= now),
                    last_used: last_used.and_then(unix_to_rfc3339),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A user's API tokens, oldest first (never the secrets or their hashes).
    pub fn list_tokens(&self, username: &str) -> Result<Vec<ApiTokenInfo>, IdentityError> {
        let inner = self.lock();
        let uid = user_id(&inner.conn, username)?;
        Self::query_tokens(&inner.conn, "WHERE t.user_id = ?1", &[&uid])
    }

    /// Every user's API tokens, oldest first (for admins; never the secrets or hashes).
    pub fn list_all_tokens(&self) -> Result<Vec<ApiTokenInfo>, IdentityError> {
        let inner = self.lock();
        Self::query_tokens(&inner.conn, "", &[])
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
        inner.forget_token(id);
        Ok(())
    }

    /// Revokes any user's API token by id (for admins); returns its owner's username. It
    /// stops working at once.
    pub fn revoke_token_by_id(&self, id: i64) -> Result<String, IdentityError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT u.username FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(owner) = owner else {
            return Err(IdentityError::TokenIdNotFound(id));
        };
        tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id])?;
        tx.commit()?;
        inner.forget_token(id);
        Ok(owner)
    }

    /// The identity an **unscoped** API token (from `Authorization: token …` or `?token=`)
    /// belongs to. A scoped token gives `None` here, so that a caller who does not apply
    /// scopes can never hand one its owner's full rights; use
    /// [`UserStore::authenticate_token`] to accept scoped tokens.
    pub fn token_identity(&self, token: &str) -> Result<Option<Identity>, IdentityError> {
        Ok(self
            .authenticate_token(token)?
            .filter(|auth| auth.scope.is_none())
            .map(|auth| auth.identity))
    }

    /// Whose an API token is, its id and its scope; `None` for an unknown, revoked or
    /// expired token, or one whose owner was removed. Cached; a revocation is noticed at
    /// once, also when made by another process. Records when the token was last used (to
    /// the minute).
    pub fn authenticate_token(
        &self,
        token: &str,
    ) -> Result<Option<TokenAuthentication>, IdentityError> {
        if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let key = (CredentialKind::ApiToken, sha256(token.as_bytes()));
        let now = now_unix();
        let mut inner = self.lock();
        inner.refresh_cache_validity()?;
        if let Some(cached) = inner.cache.get_mut(&key) {
            if cached.expires.is_some_and(|expires| expires <= now) {
                inner.cache.remove(&key);
                return Ok(None);
            }
            let identity = cached.identity.clone();
            let Some(token) = cached.token.as_mut() else {
                return Ok(None);
            };
            let stale = now - token.last_used_written >= LAST_USED_RESOLUTION;
            if stale {
                token.last_used_written = now;
            }
            let (token_id, scope) = (token.id, token.scope.clone());
            if stale {
                touch_token(&inner.conn, token_id, now);
            }
            return Ok(Some(TokenAuthentication {
                identity,
                token_id,
                scope,
            }));
        }
        let row: Option<(i64, i64, Option<String>, Option<i64>)> = inner
            .conn
            .query_row(
                "SELECT id, user_id, scope, expires FROM api_tokens WHERE token_hash = ?1",
                [key.1.as_slice()],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let Some((token_id, uid, scope, expires)) = row else {
            return Ok(None);
        };
        if expires.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let scope = match scope.map(|json| parse_stored_scope(&json)).transpose() {
            Ok(scope) => scope.map(Arc::new),
            Err(message) => {
                // Fail closed: a token whose limits cannot be read must not get more rights.
                tracing::warn!(token_id, error = %message, "unreadable token scope; refusing the token");
                return Ok(None);
            }
        };
        let Some(identity) = identity_by_id(&inner.conn, uid)? else {
            return Ok(None);
        };
        touch_token(&inner.conn, token_id, now);
        inner.remember(
            key,
            CachedIdentity {
                identity: identity.clone(),
                expires,
                token: Some(CachedToken {
                    id: token_id,
                    scope: scope.clone(),
                    last_used_written: now,
                }),
            },
        );
        Ok(Some(TokenAuthentication {
            identity,
            token_id,
            scope,
        }))
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
                    token: None,
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
