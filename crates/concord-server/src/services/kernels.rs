//! The kernels and sessions services: built from their configuration, stopped at
//! shutdown, the owner lookups the pipeline authorizes kernel and session ids with, and the
//! adapter that turns the kernels' own action stream into `kernel_actions` events.

use concord_authz::ResourceType;
use concord_authz::{CanonicalPath, Resource};
use concord_kernels::{
    KernelAction, KernelActionKind, KernelInfo, KernelManager, KernelSpecManager, SessionInfo,
    SessionManager,
};
use std::sync::Arc;

use super::{InstanceLookup, PathResolver};
use crate::config::KernelsConfig;
use crate::events::{Event, EventBus};
use crate::http::error::kernel_error_message;

/// The kernels and sessions services.
pub struct KernelService {
    /// Kernel processes.
    pub kernels: KernelManager,
    /// Notebook sessions over `kernels`.
    pub sessions: SessionManager,
    /// The largest websocket message a client may send.
    pub max_message_size: usize,
}

/// Build the kernels and sessions services (inside the tokio runtime: the culler is a
/// task). Reads the kernelspec directories, to warn when there is no kernel to start.
pub fn build(config: &KernelsConfig) -> KernelService {
    let prefix = concord_kernels::python_prefix_on_path();
    let specs = KernelSpecManager::jupyter_dirs(&config.kernel_dirs, prefix.as_deref());
    tracing::debug!("kernelspec directories: {:?}", specs.kernel_dirs);
    if specs.find_all().is_empty() {
        tracing::warn!(
            "no kernelspecs found (searched {}); install ipykernel or pass --kernel-dir",
            specs
                .kernel_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let kernels = KernelManager::new(config.manager.clone(), specs);
    let sessions = SessionManager::new(kernels.clone());
    KernelService {
        kernels,
        sessions,
        max_message_size: config.max_message_size,
    }
}

/// The pipeline's owner lookups of kernel and session ids.
pub fn lookups(
    service: &Arc<KernelService>,
    paths: &Arc<dyn PathResolver>,
) -> [(ResourceType, Arc<dyn InstanceLookup>); 2] {
    [
        (
            ResourceType::Kernels,
            Arc::new(KernelLookup {
                service: service.clone(),
                paths: paths.clone(),
            }),
        ),
        (
            ResourceType::Sessions,
            Arc::new(SessionLookup {
                service: service.clone(),
                paths: paths.clone(),
            }),
        ),
    ]
}

/// Turn the kernels service's lifecycle actions (requests, restarter, culler alike) into
/// `kernel_actions` events for the readers of each kernel.
pub fn forward_actions(kernels: &KernelManager, bus: Arc<EventBus>, paths: Arc<dyn PathResolver>) {
    let mut actions = kernels.subscribe_actions();
    tokio::spawn(async move {
        loop {
            match actions.recv().await {
                Ok(action) => bus.emit(|| Some(kernel_action_event(&paths, &action))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} kernel actions were not turned into events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// jupyter_server's `kernel_actions` event for an action: `kernel_name`, `action`, `status`,
/// `msg` and `kernel_id` in its order and words, for readers of the kernel.
pub fn kernel_action_event(paths: &Arc<dyn PathResolver>, action: &KernelAction) -> Event {
    let id = action.kernel_id.as_deref();
    let (status, msg) = match &action.error {
        None => {
            let done = match action.action {
                KernelActionKind::Start => "started",
                KernelActionKind::Interrupt => "interrupted",
                KernelActionKind::Restart => "restarted",
                KernelActionKind::Shutdown => "shutdown",
            };
            (
                "success",
                format!("Kernel {} was {done}.", id.unwrap_or("None")),
            )
        }
        Some(e) => ("error", kernel_error_message(e)),
    };
    let mut fields = vec![
        ("kernel_name", action.kernel_name.as_str()),
        ("action", action.action.as_str()),
        ("status", status),
        ("msg", msg.as_str()),
    ];
    if let Some(id) = id {
        fields.push(("kernel_id", id));
    }
    let kernel = Resource::owned(
        ResourceType::Kernels,
        action.kernel_id.clone(),
        action.owner.clone(),
        action.path.as_ref().map(|p| resolved(paths, p)),
    );
    Event {
        frame: crate::events::frame(crate::events::KERNEL_ACTIONS_SCHEMA, &fields),
        audience: crate::events::Audience::Readers(vec![kernel]),
    }
}

/// Shut every kernel down (SIGINT/SIGTERM, `POST /api/shutdown`).
pub async fn stop(service: &KernelService) {
    service.kernels.shutdown_all().await;
}

/// A path as authorization sees it: symlinks resolved when the contents service can.
fn resolved(paths: &Arc<dyn PathResolver>, path: &CanonicalPath) -> CanonicalPath {
    paths.resolve(path).unwrap_or_else(|_| path.clone())
}

/// The authorization resource of a running kernel.
pub fn kernel_resource(paths: &Arc<dyn PathResolver>, info: &KernelInfo) -> Resource {
    Resource::owned(
        ResourceType::Kernels,
        Some(info.model.id.clone()),
        info.owner.clone(),
        info.path.as_ref().map(|p| resolved(paths, p)),
    )
}

struct KernelLookup {
    service: Arc<KernelService>,
    paths: Arc<dyn PathResolver>,
}

impl InstanceLookup for KernelLookup {
    fn lookup(&self, id: &str) -> Option<Resource> {
        let info = self.service.kernels.get(id).ok()?;
        Some(kernel_resource(&self.paths, &info))
    }
}

struct SessionLookup {
    service: Arc<KernelService>,
    paths: Arc<dyn PathResolver>,
}

impl InstanceLookup for SessionLookup {
    fn lookup(&self, id: &str) -> Option<Resource> {
        let info = self.service.sessions.get(id).ok()?;
        Some(session_resource(&self.paths, &info))
    }
}

/// The authorization resource of a session: its owner and its (resolved) path.
pub fn session_resource(paths: &Arc<dyn PathResolver>, info: &SessionInfo) -> Resource {
    let path = CanonicalPath::parse(&info.path)
        .ok()
        .map(|p| paths.resolve(&p).unwrap_or(p));
    Resource::owned(
        ResourceType::Sessions,
        Some(info.id.clone()),
        info.owner.clone(),
        path,
    )
}
