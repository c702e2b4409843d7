//! The application state shared by every request.

use chrono::{DateTime, Utc};
use concord_authz::{Authorize, ResourceType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::services::collaboration::Collab;
use crate::services::confine::Confinement;
use crate::services::kernels::KernelService;
use crate::services::terminals::Terminals;
use crate::services::{InstanceLookup, PathResolver, Services};

/// Shared, cheap-to-clone handle on the application.
pub type App = Arc<AppState>;

/// Everything a request may need.
pub struct AppState {
    /// Resolved settings.
    pub settings: Settings,
    /// The policy engine.
    pub authz: Arc<dyn Authorize>,
    /// Who is asking.
    pub auth: Authenticator,
    /// Where decisions are recorded.
    pub audit: Auditor,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The event bus of `/api/events` (services publish, subscribers filter).
    pub events: Arc<EventBus>,
    /// Symlink-aware path resolution (contents service).
    pub paths: Arc<dyn PathResolver>,
    /// The files service.
    pub contents: Arc<concord_contents::ContentsManager>,
    /// The JupyterLab front end.
    pub lab: Arc<concord_lab::Lab>,
    /// The kernels and sessions services.
    pub kernels: Arc<KernelService>,
    /// Landlock confinement of kernels and terminals.
    pub confinement: Arc<Confinement>,
    /// The terminals service.
    pub terminals: Arc<Terminals>,
    /// Exports (nbconvert); `None` when switched off.
    pub nbconvert: Option<Arc<concord_nbconvert::Nbconvert>>,
    /// Owner lookups of owned resource types.
    pub instances: HashMap<ResourceType, Arc<dyn InstanceLookup>>,
    /// Real-time collaboration (`None`: off).
    pub collab: Option<Arc<Collab>>,
    /// When the server started.
    pub started: DateTime<Utc>,
    last_activity_micros: AtomicI64,
    /// Open websocket connections (kernels, terminals and event subscribers).
    pub connections: AtomicUsize,
    /// The bytes of request bodies held in memory (`--max-body-memory`).
    pub bodies: Arc<crate::bodies::BodyBudget>,
    /// Set to true to ask the server to shut down (`POST /api/shutdown`).
    pub shutdown: watch::Sender<bool>,
    /// Bumped whenever a right may have been taken away: a policy reload, a token revoked,
    /// a user removed or their password changed (here or by the CLI), and now and then
    /// for expiries. Every open websocket re-decides what it may do when it moves.
    pub access_changes: watch::Sender<u64>,
}

impl AppState {
    /// Build the state around the running services (`events` is the bus they publish on).
    pub fn new(
        settings: Settings,
        authz: Arc<dyn Authorize>,
        auth: Authenticator,
        audit: Auditor,
        events: Arc<EventBus>,
        services: Services,
    ) -> Self {
        let now = Utc::now();
        let metrics = Metrics::default();
        let bus = events.clone();
        metrics.add_source(Box::new(move |out| out.push_str(&bus.prometheus_text())));
        let km = services.kernels.kernels.clone();
        metrics.add_source(Box::new(move |out| {
            out.push_str(&km.metrics().prometheus_text())
        }));
        if let Some(collab) = services.collaboration.clone() {
            metrics.add_source(Box::new(move |out| {
                crate::metrics::collaboration_text(&collab.service.metrics(), out)
            }));
        }
        let bodies = crate::bodies::BodyBudget::new(settings.max_body_memory);
        AppState {
            settings,
            authz,
            auth,
            audit,
            metrics,
            events,
            paths: services.paths,
            contents: services.contents,
            lab: services.lab,
            kernels: services.kernels,
            confinement: services.confinement,
            terminals: services.terminals,
            nbconvert: services.nbconvert,
            instances: services.instances,
            collab: services.collaboration,
            started: now,
            last_activity_micros: AtomicI64::new(now.timestamp_micros()),
            connections: AtomicUsize::new(0),
            bodies,
            shutdown: watch::channel(false).0,
            access_changes: watch::channel(0).0,
        }
    }

    /// Tell every open websocket to check again what its caller may do.
    pub fn access_changed(&self) {
        self.access_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Note user activity (any authenticated request but `/api/status`, as in jupyter_server).
    pub fn touch(&self) {
        self.last_activity_micros
            .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
    }

    /// The last time a user did something.
    pub fn last_activity(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.last_activity_micros.load(Ordering::Relaxed))
            .unwrap_or(self.started)
    }
}

/// jupyter_server's timestamp format: ISO 8601, microseconds, `Z`.
pub fn isoformat(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
