//! What the caller may do, as the server's policy engine decided it: a small capability the
//! service consults to filter listings, compute `writable` and check body-field paths.

use concord_authz::CanonicalPath;

/// Per-path decisions for one caller. Paths are resolved canonical paths (symlinks followed).
pub trait PathAccess: Send + Sync {
    /// May the caller read `path` (GET, listings, /files, checkpoints list)?
    fn may_read(&self, path: &CanonicalPath) -> bool;

    /// May the caller change `path` (save, create, rename, delete, ...)?
    fn may_write(&self, path: &CanonicalPath) -> bool;

    /// For a listing of `dir`: whether each child `names[i]` may be read. Override to batch.
    fn readable_children(&self, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        names
            .iter()
            .map(|name| dir.child(name).map(|p| self.may_read(&p)).unwrap_or(false))
            .collect()
    }

    /// For a listing of `dir`: whether each child `names[i]` may be written. Override to batch.
    fn writable_children(&self, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        names
            .iter()
            .map(|name| dir.child(name).map(|p| self.may_write(&p)).unwrap_or(false))
            .collect()
    }
}

/// Everything is allowed: for single-user setups and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl PathAccess for AllowAll {
    fn may_read(&self, _: &CanonicalPath) -> bool {
        true
    }
    fn may_write(&self, _: &CanonicalPath) -> bool {
        true
    }
}

/// Who is asking: the username (trust is recorded per user) and what they may do.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// The caller's username; notebook trust is signed and checked per user.
    pub username: &'a str,
    /// The caller's per-path permissions.
    pub access: &'a dyn PathAccess,
}

impl<'a> Caller<'a> {
    /// A caller named `username` with permissions `access`.
    pub fn new(username: &'a str, access: &'a dyn PathAccess) -> Self {
        Caller { username, access }
    }
}
