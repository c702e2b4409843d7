//! Authorization inside a request: the [`Guard`] the pipeline hands every handler, with
//! which it checks a *second* resource named in the request (a copy's source, a rename's
//! destination, a kernel's working directory) and filters lists, deciding, auditing and
//! refusing exactly as the pipeline does for the route's own resource.

use concord_authz::{Action, CanonicalPath, Decision, Identity, PathError, Resource};

use crate::audit::RequestInfo;
use crate::auth::Caller;
use crate::http::error::{contents_not_found, ApiError};
use crate::state::App;

/// The contents path a route acts on: as the client wrote it (normalised) and as the file
/// system resolves it (symlinks followed). Authorization was decided on `resolved`.
#[derive(Clone, Debug)]
pub struct TargetPath {
    /// The normalised path from the URL.
    pub requested: CanonicalPath,
    /// The path the file system will open.
    pub resolved: CanonicalPath,
}

/// How a contents path named by a client is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathForm {
    /// As in a URL: one level of percent-encoding is decoded (the URL's `{*path}`, a
    /// contents body's `copy_from` and `path`, a terminal's `cwd`).
    Url,
    /// Already decoded, as the API's models write paths (a kernel's or session's `path`).
    Api,
}

/// Per-request authorization for handlers: the caller, plus checks of *additional*
/// resources named in a request body (the declared permission is already checked).
#[derive(Clone)]
pub struct Guard {
    app: App,
    /// Who is asking.
    pub caller: Caller,
    request: RequestInfo,
}

impl Guard {
    /// The guard of one request (built by the pipeline once the caller is identified).
    pub(crate) fn new(app: App, caller: Caller, request: RequestInfo) -> Self {
        Guard {
            app,
            caller,
            request,
        }
    }

    /// The caller's identity.
    pub fn identity(&self) -> &Identity {
        &self.caller.identity
    }

    /// Decide and audit. A request made with a scoped token is decided for its owner and
    /// narrowed to the scope, like every decision of the guard.
    pub fn decide(&self, action: Action, resource: &Resource) -> Decision {
        let decision = self.app.authz.authorize_scoped(
            &self.caller.identity,
            self.caller.scope(),
            action,
            resource,
        );
        self.app.metrics.count_decision(decision.allowed);
        self.app.audit.record(
            &self.caller.identity,
            self.caller.token_id(),
            action,
            resource,
            &decision,
            &self.request,
        );
        decision
    }

    /// The policy's limits on what the caller may hold at once.
    pub fn limits(&self) -> concord_authz::Limits {
        self.app.authz.limits(&self.caller.identity)
    }

    /// Decide without auditing: for filtering lists (each hidden item is not an attempt).
    pub fn may(&self, action: Action, resource: &Resource) -> bool {
        self.app
            .authz
            .authorize_scoped(&self.caller.identity, self.caller.scope(), action, resource)
            .allowed
    }

    /// For a directory listing: whether the caller may perform `action` on each child of
    /// `dir` (not audited; uses the engine's fast path for children no rule names).
    pub fn may_children(&self, action: Action, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        self.app.authz.authorize_children_scoped(
            &self.caller.identity,
            self.caller.scope(),
            action,
            dir,
            names,
        )
    }

    /// The guard of the same request for the caller as their credential stands now (see
    /// [`crate::auth::Authenticator::reidentify`]); `None` when it no longer authenticates.
    /// An open websocket re-decides with it when credentials or the policy change.
    pub fn reidentified(&self) -> Option<Guard> {
        let caller = self.app.auth.reidentify(&self.caller)?;
        Some(Guard {
            app: self.app.clone(),
            caller,
            request: self.request.clone(),
        })
    }

    /// Require `action` on `resource`: 403 naming the permission, or 404 (with `not_found`)
    /// when the caller may not even read it, so they cannot learn it exists.
    pub fn require(
        &self,
        action: Action,
        resource: &Resource,
        not_found: impl FnOnce() -> ApiError,
    ) -> Result<(), ApiError> {
        let decision = self.decide(action, resource);
        if decision.allowed {
            return Ok(());
        }
        // An instance or a path the caller may not even read is "not found", so a refusal
        // never tells them it exists; a whole service is simply forbidden.
        let is_instance = resource.path.is_some() || resource.id.is_some();
        if is_instance && (action == Action::Read || !self.may(Action::Read, resource)) {
            return Err(not_found());
        }
        Err(denied(&self.caller.identity, action, resource))
    }

    /// Normalise a contents path named in a request body or query (`copy_from`, a PATCH
    /// `path`, a kernel's or terminal's working directory), resolve it and require `action`
    /// on it. Returns the requested and resolved paths.
    pub fn require_path(
        &self,
        action: Action,
        raw: &str,
        form: PathForm,
    ) -> Result<TargetPath, ApiError> {
        let requested = canonical_path(raw, form)?;
        let not_found = contents_not_found(&requested);
        self.require_resolved(action, requested, || not_found.clone())
    }

    /// Resolve `requested` (symlinks followed) and require `action` on where it leads. A
    /// path the caller may not see gets `not_found()`, the answer for a path with nothing
    /// there, whatever lies on disk: a path they may neither read nor act on as written is
    /// refused before the disk is looked at, and a path that cannot be resolved (a link
    /// out of the root, a dangling link) is answered as missing too.
    pub fn require_resolved(
        &self,
        action: Action,
        requested: CanonicalPath,
        not_found: impl Fn() -> ApiError,
    ) -> Result<TargetPath, ApiError> {
        let as_written = Resource::contents(requested.clone());
        if !self.may(Action::Read, &as_written) && !self.may(action, &as_written) {
            self.decide(action, &as_written);
            return Err(not_found());
        }
        let resolved = self
            .app
            .paths
            .resolve(&requested)
            .map_err(|_| not_found())?;
        self.require(action, &Resource::contents(resolved.clone()), &not_found)?;
        Ok(TargetPath {
            requested,
            resolved,
        })
    }
}

/// The 403 of a refused request: names the user, the action and the resource.
pub fn denied(who: &Identity, action: Action, resource: &Resource) -> ApiError {
    ApiError::forbidden(format!(
        "User {} is not authorized to {action} on resource: {resource}.",
        who.username()
    ))
}

/// Parse a contents path written in `form`.
pub fn canonical_path(raw: &str, form: PathForm) -> Result<CanonicalPath, ApiError> {
    let parsed = match form {
        PathForm::Url => CanonicalPath::from_url(raw),
        PathForm::Api => CanonicalPath::parse(raw),
    };
    parsed.map_err(|e| match e {
        PathError::OutsideRoot(_) => ApiError::not_found(format!(
            "No such file or directory: {raw} (outside the root directory)"
        )),
        PathError::Invalid(_) => ApiError::bad_request(format!("Invalid path: {raw:?}")),
    })
}
