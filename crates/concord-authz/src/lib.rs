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
mod limits;
mod model;
mod path;
mod policy;
mod presets;
mod scope;
mod spec;

pub use cedar::{cedar_type, compile_to_cedar, CEDAR_SCHEMA};
pub use engine::PolicyEngine;
pub use error_kind::ErrorKind;
pub use fsview::{FilesystemView, FsGrant, FsScope};
pub use limits::{Limit, LimitRule, LimitedKind, Limits};
pub use model::{Action, Decision, Identity, Owner, Resource, ResourceType, User};
pub use path::{CanonicalPath, PathError};
pub use policy::{
    Binding, Deny, PathPattern, Permission, Policy, PolicyError, Role, Scope, Subjects,
    USERNAME_PLACEHOLDER,
};
pub use presets::{preset, DEFAULT_PRESET, PRESET_NAMES};
pub use scope::{ScopeError, ScopeGrant, TokenScope, MAX_SCOPE_GRANTS};

/// The built-in group of the server's owner (token mode); every preset lets it do everything.
pub const ADMIN_GROUP: &str = "admin";

/// An [`Authorize`] engine seen through a token's scope: every decision is the engine's
/// for the token's owner, narrowed to the scope. Hand it to code that takes an
/// `&dyn Authorize` (listings, event subscribers) for a caller who used a scoped token.
pub struct Scoped<'a, A: Authorize + ?Sized> {
    /// The engine deciding for the owner.
    pub inner: &'a A,
    /// The token's scope.
    pub scope: &'a TokenScope,
}

impl<A: Authorize + ?Sized> Authorize for Scoped<'_, A> {
    fn authorize(&self, who: &Identity, action: Action, resource: &Resource) -> Decision {
        self.inner
            .authorize_scoped(who, Some(self.scope), action, resource)
    }

    fn authorize_children(
        &self,
        who: &Identity,
        action: Action,
        dir: &CanonicalPath,
        names: &[&str],
    ) -> Vec<bool> {
        self.inner
            .authorize_children_scoped(who, Some(self.scope), action, dir, names)
    }

    fn limits(&self, who: &Identity) -> Limits {
        self.inner.limits(who)
    }
}

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

    /// Decide a request made with a token limited to `scope` (`None`: an unscoped token, a
    /// login or the owner's token, decided exactly as [`Authorize::authorize`]). Allowed
    /// only when the owner's rights and the scope both allow it.
    fn authorize_scoped(
        &self,
        who: &Identity,
        scope: Option<&TokenScope>,
        action: Action,
        resource: &Resource,
    ) -> Decision {
        let decision = self.authorize(who, action, resource);
        match scope {
            None => decision,
            Some(scope) => scope.restrict(who, action, resource, decision),
        }
    }

    /// [`Authorize::authorize_children`] for a request made with a token limited to `scope`.
    fn authorize_children_scoped(
        &self,
        who: &Identity,
        scope: Option<&TokenScope>,
        action: Action,
        dir: &CanonicalPath,
        names: &[&str],
    ) -> Vec<bool> {
        let mut allowed = self.authorize_children(who, action, dir, names);
        if let Some(scope) = scope {
            for (allowed, name) in allowed.iter_mut().zip(names) {
                *allowed = *allowed
                    && dir.child(name).is_ok_and(|path| {
                        scope.allows(who.username(), action, &Resource::contents(path))
                    });
            }
        }
        allowed
    }

    /// The limits on what `who` may hold at once (kernels, sessions, terminals, rooms).
    /// Engines without a policy file's `[[limits]]` set none.
    fn limits(&self, who: &Identity) -> Limits {
        let _ = who;
        Limits::default()
    }

    /// Decide many requests for the same identity at once, in order.
    fn authorize_many(&self, who: &Identity, requests: &[(Action, Resource)]) -> Vec<Decision> {
        requests
            .iter()
            .map(|(action, resource)| self.authorize(who, *action, resource))
            .collect()
    }
}
