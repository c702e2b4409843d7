//! What the kernels service tells the server about kernels: the REST model, what
//! authorization needs, lifecycle actions, and a start request.

use concord_authz::{CanonicalPath, Owner};
use serde::Serialize;

use super::KernelError;

/// The REST model of a kernel, exactly jupyter_server's.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KernelModel {
    /// Kernel id (a UUID).
    pub id: String,
    /// Kernelspec name.
    pub name: String,
    /// ISO 8601, microseconds, `Z`.
    pub last_activity: String,
    /// `starting`, `idle`, `busy`, `restarting`, `dead`, …
    pub execution_state: String,
    /// Attached websockets.
    pub connections: usize,
    /// Why the kernel is in its state (only when there is a reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A kernel's model plus what authorization needs to know about it.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// The REST model.
    pub model: KernelModel,
    /// Who started it.
    pub owner: Owner,
    /// Its working directory (relative to the root), when started with a path.
    pub path: Option<CanonicalPath>,
}

/// A lifecycle action on a kernel, as jupyter_server's `kernel_actions` events name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelActionKind {
    /// A kernel was started (or failed to start).
    Start,
    /// A kernel was interrupted.
    Interrupt,
    /// A kernel was restarted: on request, or by the automatic restarter after a crash.
    Restart,
    /// A kernel was shut down: on request, by the idle culler, or at server exit.
    Shutdown,
}

impl KernelActionKind {
    /// The event's `action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelActionKind::Start => "start",
            KernelActionKind::Interrupt => "interrupt",
            KernelActionKind::Restart => "restart",
            KernelActionKind::Shutdown => "shutdown",
        }
    }
}

/// What happened to a kernel, reported on
/// [`KernelManager::subscribe_actions`](super::KernelManager::subscribe_actions) whoever
/// caused it (a request, the restarter, the culler). Carries what authorization needs to decide who
/// may hear of it: the kernel's owner and path.
#[derive(Clone, Debug)]
pub struct KernelAction {
    /// What was done.
    pub action: KernelActionKind,
    /// The kernel's id; `None` only when a start failed before an id was chosen.
    pub kernel_id: Option<String>,
    /// The kernelspec name (as requested, for a start that failed to find it).
    pub kernel_name: String,
    /// Who started the kernel (or tried to).
    pub owner: Owner,
    /// The kernel's working directory, when it was started with one.
    pub path: Option<CanonicalPath>,
    /// `None` on success; the failure otherwise.
    pub error: Option<KernelError>,
}

/// A request to start a kernel.
#[derive(Clone, Debug)]
pub struct StartKernel {
    /// Kernelspec name; the default when `None`.
    pub name: Option<String>,
    /// Working directory, relative to the root (the server has authorized it).
    pub path: Option<CanonicalPath>,
    /// Extra environment; every name must be on the allow-list.
    pub env: Vec<(String, String)>,
    /// A client-chosen id (must be a UUID not in use).
    pub kernel_id: Option<String>,
    /// The creator.
    pub owner: Owner,
    /// How many kernels the creator may hold at once (the policy's `[[limits]]`); kernels
    /// still starting count.
    pub limit: Option<concord_authz::Limit>,
}
