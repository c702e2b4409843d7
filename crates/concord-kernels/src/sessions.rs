//! Notebook sessions at parity with jupyter_server's `/api/sessions`, with owners.
//!
//! Multi-user rule: a session for a path on which another user already has one gives the
//! caller their own session (and kernel), unless the server's policy hook says that user's
//! kernels on that path are shared with the caller.

use std::sync::Mutex;

use concord_authz::{CanonicalPath, LimitedKind, Limits, Owner};
use serde_json::{json, Value};

use crate::hub::lock;
use crate::kernel::{ErrorKind, KernelError, KernelInfo, KernelManager, StartKernel};

/// "Does the policy share a kernel owned by `owner` on `path` (API form) with the caller?"
/// Called only for resources the caller does not own.
pub type ShareHook<'a> = &'a (dyn Fn(&Owner, &str) -> bool + Send + Sync);

/// A session problem, with a `kind` for the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session.
    #[error("session not found: {0}")]
    NotFound(String),
    /// Invalid request body.
    #[error("{0}")]
    BadRequest(String),
    /// The caller already holds as many sessions as the policy allows them.
    #[error("{0}")]
    LimitReached(String),
    /// The kernel part failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl SessionError {
    /// The error's class (a missing kernelspec is NotFound; jupyter_server answers 501 for
    /// it, which the server may choose).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::NotFound(_) => ErrorKind::NotFound,
            SessionError::BadRequest(_) => ErrorKind::BadRequest,
            SessionError::LimitReached(_) => ErrorKind::LimitReached,
            SessionError::Kernel(e) => e.kind(),
        }
    }
}

/// Which kernel a session should use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelRef {
    /// Start a new kernel of this kernelspec.
    pub name: Option<String>,
    /// Use this existing kernel (or start one with this id).
    pub id: Option<String>,
}

fn kernel_ref(v: Option<&Value>) -> Result<Option<KernelRef>, SessionError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => {
            let s = |k: &str| -> Result<Option<String>, SessionError> {
                match o.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(SessionError::BadRequest(format!(
                        "kernel.{k} must be a string"
                    ))),
                }
            };
            Ok(Some(KernelRef {
                name: s("name")?,
                id: s("id")?,
            }))
        }
        Some(_) => Err(SessionError::BadRequest("kernel must be an object".into())),
    }
}

fn opt_str(v: &Value, key: &str) -> Result<Option<String>, SessionError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SessionError::BadRequest(format!("{key} must be a string"))),
    }
}

/// `POST /api/sessions` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The notebook (or file, console) path, API form.
    pub path: String,
    /// Display name.
    pub name: String,
    /// `notebook`, `console`, `file`, …
    pub session_type: String,
    /// Kernel choice.
    pub kernel: KernelRef,
}

impl NewSession {
    /// Parse a request body as jupyter_server does (including the deprecated `notebook` key).
    pub fn from_json(v: &Value) -> Result<Self, SessionError> {
        if !v.is_object() {
            return Err(SessionError::BadRequest("No JSON data provided".into()));
        }
        let mut path = opt_str(v, "path")?;
        let mut session_type = opt_str(v, "type")?;
        if let Some(nb) = v.get("notebook").filter(|n| n.is_object()) {
            session_type = Some("notebook".into());
            path = opt_str(nb, "name")?.or(opt_str(nb, "path")?).or(path);
        }
        let path = path
            .ok_or_else(|| SessionError::BadRequest("Missing field in JSON data: path".into()))?;
        let session_type = session_type
            .ok_or_else(|| SessionError::BadRequest("Missing field in JSON data: type".into()))?;
        Ok(NewSession {
            path,
            name: opt_str(v, "name")?.unwrap_or_default(),
            session_type,
            kernel: kernel_ref(v.get("kernel"))?.unwrap_or_default(),
        })
    }
}

/// `PATCH /api/sessions/{id}` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionPatch {
    /// New path (the server authorizes it before calling [`SessionManager::update`]).
    pub path: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New type.
    pub session_type: Option<String>,
    /// Switch kernel: `id` rebinds, `name` starts a new one.
    pub kernel: Option<KernelRef>,
}

impl SessionPatch {
    /// Parse a PATCH body as jupyter_server does.
    pub fn from_json(v: &Value) -> Result<Self, SessionError> {
        if !v.is_object() {
            return Err(SessionError::BadRequest("No JSON data provided".into()));
        }
        let mut patch = SessionPatch {
            path: opt_str(v, "path")?,
            name: opt_str(v, "name")?,
            session_type: opt_str(v, "type")?,
            kernel: kernel_ref(v.get("kernel"))?,
        };
        if let Some(nb) = v.get("notebook").filter(|n| n.is_object()) {
            if let Some(p) = opt_str(nb, "path")? {
                patch.path = Some(p);
                patch.session_type = Some("notebook".into());
            }
        }
        Ok(patch)
    }
}

#[derive(Clone, Debug)]
struct Record {
    id: String,
    path: String,
    name: String,
    session_type: String,
    kernel_id: String,
    owner: Owner,
}

/// A session's model plus what authorization needs.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// The REST model (`id, path, name, type, kernel` and `notebook` for notebooks).
    pub model: Value,
    /// Who created the session.
    pub owner: Owner,
    /// The session's path, API form.
    pub path: String,
    /// Its kernel's id.
    pub kernel_id: String,
}

/// Sessions, backed by a [`KernelManager`].
#[derive(Debug)]
pub struct SessionManager {
    kernels: KernelManager,
    sessions: Mutex<Vec<Record>>,
    /// Owners of sessions being created (their kernel is starting), one entry each: they
    /// count against the owner's limit. Locked after `sessions` when both are held.
    creating: Mutex<Vec<String>>,
}

/// A place held for a session whose kernel is starting; given back when dropped.
struct Reservation<'a> {
    sessions: &'a SessionManager,
    username: Option<String>,
}

impl Reservation<'_> {
    /// Record the session and give the place back in one step, so that it is never
    /// counted twice nor not at all.
    fn commit(mut self, record: Record) {
        let mut sessions = lock(&self.sessions.sessions);
        sessions.push(record);
        if let Some(username) = self.username.take() {
            release(&mut lock(&self.sessions.creating), &username);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(username) = self.username.take() {
            release(&mut lock(&self.sessions.creating), &username);
        }
    }
}

fn release(creating: &mut Vec<String>, username: &str) {
    if let Some(i) = creating.iter().position(|u| u == username) {
        creating.swap_remove(i);
    }
}

fn kernel_path(path: &str) -> Option<CanonicalPath> {
    // jupyter_server's get_kernel_path: the directory holding the file.
    let p = CanonicalPath::parse(path).ok()?;
    let s = p.as_str();
    let parent = match s.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &s[..i],
    };
    CanonicalPath::parse(parent).ok()
}

impl SessionManager {
    /// Sessions over `kernels`.
    pub fn new(kernels: KernelManager) -> Self {
        SessionManager {
            kernels,
            sessions: Mutex::new(Vec::new()),
            creating: Mutex::new(Vec::new()),
        }
    }

    /// The kernel manager.
    pub fn kernels(&self) -> &KernelManager {
        &self.kernels
    }

    fn purge(&self) {
        // Like jupyter_server: a session whose kernel was culled or died is removed.
        lock(&self.sessions).retain(|r| self.kernels.contains(&r.kernel_id));
    }

    fn info(&self, r: &Record) -> Option<SessionInfo> {
        let kernel = self.kernels.get(&r.kernel_id).ok()?;
        let mut model = json!({
            "id": r.id,
            "path": r.path,
            "name": r.name,
            "type": r.session_type,
            "kernel": kernel.model,
        });
        if r.session_type == "notebook" {
            model["notebook"] = json!({"path": r.path, "name": r.name});
        }
        Some(SessionInfo {
            id: r.id.clone(),
            model,
            owner: r.owner.clone(),
            path: r.path.clone(),
            kernel_id: r.kernel_id.clone(),
        })
    }

    /// Every session (the server filters by policy).
    pub fn list(&self) -> Vec<SessionInfo> {
        self.purge();
        let records = lock(&self.sessions).clone();
        records.iter().filter_map(|r| self.info(r)).collect()
    }

    /// One session.
    pub fn get(&self, id: &str) -> Result<SessionInfo, SessionError> {
        self.purge();
        let r = lock(&self.sessions)
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        self.info(&r)
            .ok_or_else(|| SessionError::NotFound(id.to_string()))
    }

    fn may_use(owner: &Owner, caller: &Owner, path: &str, shares: ShareHook<'_>) -> bool {
        owner.username == caller.username || shares(owner, path)
    }

    /// Hold a place for a new session of `caller`'s, or refuse if their limit is reached
    /// (sessions being created count).
    fn reserve(&self, caller: &Owner, limits: &Limits) -> Result<Reservation<'_>, SessionError> {
        let Some(limit) = limits.get(LimitedKind::Sessions) else {
            return Ok(Reservation {
                sessions: self,
                username: None,
            });
        };
        let sessions = lock(&self.sessions);
        let mut creating = lock(&self.creating);
        let held = sessions
            .iter()
            .filter(|r| r.owner.username == caller.username)
            .count()
            + creating.iter().filter(|u| **u == caller.username).count();
        if held >= limit.max as usize {
            return Err(SessionError::LimitReached(limit.refusal(&caller.username)));
        }
        creating.push(caller.username.clone());
        Ok(Reservation {
            sessions: self,
            username: Some(caller.username.clone()),
        })
    }

    /// A kernel for a session: an existing one the caller may use, or a new one.
    async fn kernel_for(
        &self,
        kref: &KernelRef,
        path: &str,
        caller: &Owner,
        shares: ShareHook<'_>,
        start_for_unknown_id: bool,
        limits: &Limits,
    ) -> Result<KernelInfo, SessionError> {
        // A client's kernel id names a kernel to use, never one to create: an id that is
        // free, or whose kernel the caller may not use, is answered alike (a fresh kernel
        // under a fresh id on creation, "No such kernel" on a change), so ids can be neither
        // squatted nor probed.
        if let Some(id) = &kref.id {
            if let Ok(k) = self.kernels.get(id) {
                if Self::may_use(&k.owner, caller, path, shares) {
                    return Ok(k);
                }
            }
            if !start_for_unknown_id {
                return Err(SessionError::BadRequest(format!("No such kernel: {id}")));
            }
        }
        let info = self
            .kernels
            .start(StartKernel {
                name: kref.name.clone(),
                path: kernel_path(path),
                env: vec![("JPY_SESSION_NAME".into(), path.to_string())],
                kernel_id: None,
                owner: caller.clone(),
                limit: limits.get(LimitedKind::Kernels).cloned(),
            })
            .await?;
        Ok(info)
    }

    /// Create a session (or return the caller's existing one for that path, or one the
    /// policy shares with them). A new session and its new kernel count against the
    /// caller's `limits`.
    pub async fn create(
        &self,
        req: NewSession,
        caller: Owner,
        shares: ShareHook<'_>,
        limits: &Limits,
    ) -> Result<SessionInfo, SessionError> {
        self.purge();
        let existing: Vec<Record> = lock(&self.sessions)
            .iter()
            .filter(|r| r.path == req.path)
            .cloned()
            .collect();
        if let Some(r) = existing
            .iter()
            .find(|r| r.owner.username == caller.username)
            .or_else(|| existing.iter().find(|r| shares(&r.owner, &req.path)))
        {
            if let Some(info) = self.info(r) {
                return Ok(info);
            }
        }
        let reservation = self.reserve(&caller, limits)?;
        let kernel = self
            .kernel_for(&req.kernel, &req.path, &caller, shares, true, limits)
            .await?;
        let record = Record {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            path: req.path,
            name: req.name,
            session_type: req.session_type,
            kernel_id: kernel.model.id,
            owner: caller,
        };
        reservation.commit(record.clone());
        self.info(&record)
            .ok_or_else(|| SessionError::NotFound(record.id.clone()))
    }

    /// Apply a PATCH. The server has authorized the caller on the session and on the new
    /// path. A kernel change shuts the previous kernel down, as jupyter_server does.
    pub async fn update(
        &self,
        id: &str,
        patch: SessionPatch,
        caller: Owner,
        shares: ShareHook<'_>,
        limits: &Limits,
    ) -> Result<SessionInfo, SessionError> {
        let before = self.get(id)?;
        let mut new_kernel: Option<String> = None;
        if let Some(kref) = &patch.kernel {
            if kref.id.is_some() || kref.name.is_some() {
                let kref = if kref.id.is_some() {
                    KernelRef {
                        id: kref.id.clone(),
                        name: None,
                    }
                } else {
                    kref.clone()
                };
                let path = patch.path.as_deref().unwrap_or(&before.path);
                let k = self
                    .kernel_for(&kref, path, &caller, shares, false, limits)
                    .await?;
                new_kernel = Some(k.model.id);
            }
        }
        {
            let mut sessions = lock(&self.sessions);
            let r = sessions
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
            if let Some(p) = patch.path {
                r.path = p;
            }
            if let Some(n) = patch.name {
                r.name = n;
            }
            if let Some(t) = patch.session_type {
                r.session_type = t;
            }
            if let Some(k) = &new_kernel {
                r.kernel_id = k.clone();
            }
        }
        if let Some(k) = &new_kernel {
            if *k != before.kernel_id {
                let still_used = lock(&self.sessions)
                    .iter()
                    .any(|r| r.kernel_id == before.kernel_id);
                if !still_used {
                    let _ = self.kernels.shutdown(&before.kernel_id).await;
                }
            }
        }
        self.get(id)
    }

    /// Delete a session and shut its kernel down (jupyter_server does the same).
    pub async fn delete(&self, id: &str) -> Result<(), SessionError> {
        let r = {
            let mut sessions = lock(&self.sessions);
            let pos = sessions
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
            sessions.remove(pos)
        };
        let still_used = lock(&self.sessions)
            .iter()
            .any(|o| o.kernel_id == r.kernel_id);
        if !still_used {
            let _ = self.kernels.shutdown(&r.kernel_id).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bodies_like_jupyter_server() {
        let s = NewSession::from_json(&json!({"path": "a/b.ipynb", "type": "notebook", "name": "b", "kernel": {"name": "python3"}})).unwrap();
        assert_eq!(s.path, "a/b.ipynb");
        assert_eq!(s.kernel.name.as_deref(), Some("python3"));
        let s = NewSession::from_json(&json!({"notebook": {"path": "x.ipynb"}})).unwrap();
        assert_eq!(
            (s.path.as_str(), s.session_type.as_str()),
            ("x.ipynb", "notebook")
        );
        assert!(NewSession::from_json(&json!({"type": "notebook"})).is_err());
        assert!(NewSession::from_json(&json!({"path": "x"})).is_err());
        assert!(NewSession::from_json(&json!({"path": 3, "type": "file"})).is_err());
        assert!(NewSession::from_json(&json!([])).is_err());
        let p =
            SessionPatch::from_json(&json!({"path": "new.ipynb", "kernel": {"id": "k"}})).unwrap();
        assert_eq!(p.path.as_deref(), Some("new.ipynb"));
        assert_eq!(p.kernel.unwrap().id.as_deref(), Some("k"));
        assert!(SessionPatch::from_json(&json!({"kernel": 5})).is_err());
    }

    #[test]
    fn kernel_path_is_the_parent_directory() {
        assert_eq!(kernel_path("a/b/c.ipynb").unwrap().as_str(), "/a/b");
        assert_eq!(kernel_path("c.ipynb").unwrap().as_str(), "/");
        assert!(kernel_path("../x").is_none());
    }
}
