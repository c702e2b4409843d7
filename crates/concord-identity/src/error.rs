//! The errors this crate returns. Each has a [`ErrorKind`] that the server maps to an HTTP
//! status, and a message a person understands.

use std::path::PathBuf;

pub use concord_authz::ErrorKind;

/// An error from the user store, the session machinery or the proxy helpers.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A username failed validation.
    #[error("invalid username {username:?}: {reason}")]
    InvalidUsername {
        /// The username as given (truncated when long).
        username: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A group name failed validation.
    #[error("invalid group name {group:?}: {reason}")]
    InvalidGroup {
        /// The group name as given (truncated when long).
        group: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A new password was refused (too short, too long).
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// A password hash given to store was in no format concord can verify.
    #[error("unsupported password hash: {0}")]
    InvalidPasswordHash(String),
    /// A profile field (`PATCH /api/me`) was refused.
    #[error("invalid value for {field}: {reason}")]
    InvalidProfile {
        /// The field name.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A trusted-proxy address or CIDR could not be parsed.
    #[error("invalid trusted proxy address {value:?}: expected an IP address or a CIDR such as 10.0.0.0/8")]
    InvalidProxyAddress {
        /// The value as given.
        value: String,
    },
    /// `add_user` for a username that exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The user does not exist.
    #[error("no such user: {0:?}")]
    UserNotFound(String),
    /// The API token (by id, for this user) does not exist.
    #[error("user {username:?} has no API token with id {id}")]
    TokenNotFound {
        /// The token owner.
        username: String,
        /// The token id asked for.
        id: i64,
    },
    /// No API token has this id (any owner).
    #[error("no API token with id {0}")]
    TokenIdNotFound(i64),
    /// A token scope was refused (unknown action or resource type, bad path pattern, …).
    #[error("invalid token scope: {0}")]
    InvalidTokenScope(String),
    /// A token expiry was refused (in the past).
    #[error("invalid token expiry: {0}")]
    InvalidTokenExpiry(String),
    /// A database operation failed.
    #[error("user database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A state file could not be read or written.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file exists but its content is unusable.
    #[error("{path} is unusable: {reason}")]
    BadStateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer concord.
    #[error("the user database has schema version {found}, newer than this concord supports ({supported}); upgrade concord")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Hashing a password failed (should not happen with valid parameters).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// An audit sink specification could not be understood.
    #[error(
        "invalid audit sink {0:?}: expected sqlite, sqlite:<path>, file:<path>, stdout or none"
    )]
    BadAuditSink(String),
    /// `AuditLog::recent` needs an SQLite or JSON-lines file sink.
    #[error("the audit log has no SQLite or file sink to read back from")]
    AuditNotQueryable,
}

impl IdentityError {
    /// The kind of failure, for mapping to an HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IdentityError::InvalidUsername { .. }
            | IdentityError::InvalidGroup { .. }
            | IdentityError::InvalidPassword(_)
            | IdentityError::InvalidPasswordHash(_)
            | IdentityError::InvalidProfile { .. }
            | IdentityError::InvalidProxyAddress { .. }
            | IdentityError::InvalidTokenScope(_)
            | IdentityError::InvalidTokenExpiry(_)
            | IdentityError::BadAuditSink(_) => ErrorKind::BadRequest,
            IdentityError::UserExists(_) => ErrorKind::Conflict,
            IdentityError::UserNotFound(_)
            | IdentityError::TokenNotFound { .. }
            | IdentityError::TokenIdNotFound(_) => ErrorKind::NotFound,
            IdentityError::Database(_)
            | IdentityError::Io { .. }
            | IdentityError::BadStateFile { .. }
            | IdentityError::SchemaTooNew { .. }
            | IdentityError::Hashing(_)
            | IdentityError::AuditNotQueryable => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IdentityError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a login attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or a user without a password: deliberately one error,
    /// so that a caller cannot tell which usernames exist.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The store failed; not the caller's fault.
    #[error(transparent)]
    Internal(#[from] IdentityError),
}

impl LoginError {
    /// The kind of failure: invalid credentials are [`ErrorKind::BadRequest`] (the server
    /// answers 401, as jupyter_server does for a failed `POST /login`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoginError::InvalidCredentials => ErrorKind::BadRequest,
            LoginError::Internal(_) => ErrorKind::Internal,
        }
    }
}
