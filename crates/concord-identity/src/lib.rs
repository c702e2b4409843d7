//! Concord's identity state, free of HTTP types: named users and groups (SQLite), argon2
//! passwords (including jupyter_server's `argon2:` and `sha1:` strings), per-user API tokens,
//! signed login cookies backed by server-side sessions, login throttling, the audit log, and
//! helpers for trusted proxy headers.
//!
//! The server crate wires these into requests; see `docs/users.md` for the admin's view.

mod audit;
mod cookie;
mod error;
mod password;
mod profile;
mod proxy;
mod redact;
mod store;
mod throttle;
mod validate;

pub use audit::{
    AuditConfig, AuditDecision, AuditLog, AuditRecord, AuditSink, AUDIT_DATABASE_FILE,
};
pub use cookie::{CookieValue, COOKIE_SECRET_FILE};
pub use error::{ErrorKind, IdentityError, LoginError};
pub use password::{
    check_password_hash, hash_password, needs_rehash, verify_password, MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS,
};
pub use profile::{ProfileUpdate, UPDATABLE_FIELDS};
pub use proxy::{
    identity_from_proxy_headers, is_trusted_proxy, parse_trusted_proxies, IpNet, MAX_PROXY_GROUPS,
};
pub use redact::{redact_url, REDACTED};
pub use store::{
    ApiTokenInfo, NewApiToken, NewPassword, StoreOptions, TokenAuthentication, TokenSpec,
    UserRecord, UserStore, API_TOKEN_PREFIX, DATABASE_FILE,
};
pub use throttle::{LoginThrottle, RetryAfter, ThrottleConfig};
pub use validate::{validate_group, validate_username, MAX_NAME_LEN};

/// The shared types must stay usable from many tokio tasks (`Arc<T>` in the server state).
#[cfg(test)]
mod thread_safety {
    fn send_and_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        send_and_sync::<crate::UserStore>();
        send_and_sync::<crate::AuditLog>();
        send_and_sync::<crate::LoginThrottle>();
        send_and_sync::<crate::CookieValue>();
    }
}
