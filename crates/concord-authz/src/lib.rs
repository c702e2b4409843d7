//! Concord's authorization: who is asking ([`Identity`]), what they want to do ([`Action`]),
//! to what ([`Resource`]), and the answer ([`Decision`]) given by an [`Authorize`] engine.
//!
//! This crate is pure: it never touches the network, and touches the file system only to
//! read policy files. The HTTP server identifies the caller, builds a [`Resource`] from the
//! route and asks an [`Authorize`] implementation before any service runs.

mod cedar;
mod engine;
mod error_kind;
mod fsview;
mod model;
mod path;
mod policy;
mod presets;
mod spec;

pub use cedar::{cedar_type, compile_to_cedar, CEDAR_SCHEMA};
pub use engine::PolicyEngine;
pub use error_kind::ErrorKind;
pub use fsview::{FilesystemView, FsGrant, FsScope};
pub use model::{Action, Decision, Identity, Owner, Resource, ResourceType, User};
pub use path::{CanonicalPath, PathError};
pub use policy::{
    Binding, Deny, PathPattern, Permission, Policy, PolicyError, Role, Scope, Subjects,
    USERNAME_PLACEHOLDER,
};
pub use presets::{preset, DEFAULT_PRESET, PRESET_NAMES};

/// The built-in group of the server's owner (token mode); every preset lets it do everything.
pub const ADMIN_GROUP: &str = "admin";

/// Anything that can decide whether an identity may perform an action on a resource.
///
/// Implementations must be cheap to call concurrently; the server calls `authorize` on every
/// request and `authorize_many` for directory listings and `/api/me?permissions=`.
pub trait Authorize: Send + Sync {
    /// Decide one request. Never panics; an error inside the engine is a denial whose
    /// `rule` says what went wrong.
    fn authorize(&self, who: &Identity, action: Action, resource: &Resource) -> Decision;

    /// For a directory listing: whether `who` may perform `action` on each child
    /// `dir/names[i]`. Engines override this with a fast path (one decision for all children
    /// no rule names); a name that is not a single path segment is denied.
    fn authorize_children(
        &self,
        who: &Identity,
        action: Action,
        dir: &CanonicalPath,
        names: &[&str],
    ) -> Vec<bool> {
        names
            .iter()
            .map(|name| match dir.child(name) {
                Ok(path) => {
                    self.authorize(who, action, &Resource::contents(path))
                        .allowed
                }
                Err(_) => false,
            })
            .collect()
    }

    /// Decide many requests for the same identity at once, in order.
    fn authorize_many(&self, who: &Identity, requests: &[(Action, Resource)]) -> Vec<Decision> {
        requests
            .iter()
            .map(|(action, resource)| self.authorize(who, *action, resource))
            .collect()
    }
}
