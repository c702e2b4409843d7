//! The application state shared by every request.

use chrono::{DateTime, Utc};
use concord_authz::{Authorize, CanonicalPath, Resource, ResourceType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::http::error::ApiError;
use crate::metrics::Metrics;

/// Shared, cheap-to-clone handle on the application.
pub type App = Arc<AppState>;

/// Finds the owner (and path) of an owned instance: a kernel, session or terminal.
/// Each service that has owned instances registers one at start-up.
pub trait InstanceLookup: Send + Sync {
    /// The instance as an authorization resource, or `None` when it does not exist.
    fn lookup(&self, id: &str) -> Option<Resource>;
}

/// Turns a canonical path into the path the file system will really open (symlinks
/// resolved), so authorization is decided on it. The contents service registers one.
pub trait PathResolver: Send + Sync {
    /// The resolved path; a path that escapes the root is an error (404).
    fn resolve(&self, path: &CanonicalPath) -> Result<CanonicalPath, ApiError>;
}

/// Without a contents service, paths are taken as they are (no symlinks to resolve).
pub struct LexicalPaths;

impl PathResolver for LexicalPaths {
    fn resolve(&self, path: &CanonicalPath) -> Result<CanonicalPath, ApiError> {
        Ok(path.clone())
    }
}

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
    pub events: Arc<crate::events::EventBus>,
    /// Symlink-aware path resolution (contents service).
    pub paths: Arc<dyn PathResolver>,
    /// The files service (`None` until `services::start`).
    pub contents: Option<Arc<concord_contents::ContentsManager>>,
    /// The JupyterLab front end (`None` until `services::start`).
    pub lab: Option<Arc<crate::api::lab::Lab>>,
    /// The kernels and sessions services (`None` until `services::start`).
    pub kernels: Option<Arc<crate::api::kernels::KernelService>>,
    /// Landlock confinement of kernels and terminals (`None` until `services::start`).
    pub confinement: Option<Arc<crate::confine::Confinement>>,
    /// The terminals service (`None` until `services::start`).
    pub terminals: Option<Arc<crate::api::terminals::Terminals>>,
    /// Owner lookups of owned resource types.
    pub instances: HashMap<ResourceType, Arc<dyn InstanceLookup>>,
    /// When the server started.
    pub started: DateTime<Utc>,
    last_activity_micros: AtomicI64,
    /// Open websocket connections (kernels, terminals and event subscribers).
    pub connections: AtomicUsize,
    /// The bytes of request bodies held in memory (`--max-body-memory`).
    pub bodies: Arc<crate::bodies::BodyBudget>,
    /// Set to true to ask the server to shut down (`POST /api/shutdown`).
    pub shutdown: watch::Sender<bool>,
    /// Running kernels and their open connections, for `/api/status` (the kernels service
    /// replaces it).
    pub kernel_status: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
}

impl AppState {
    /// Build the state.
    pub fn new(
        settings: Settings,
        authz: Arc<dyn Authorize>,
        auth: Authenticator,
        audit: Auditor,
    ) -> Self {
        let now = Utc::now();
        let metrics = Metrics::default();
        let events = Arc::new(crate::events::EventBus::new());
        let bus = events.clone();
        metrics.add_source(Box::new(move |out| out.push_str(&bus.prometheus_text())));
        let bodies = crate::bodies::BodyBudget::new(settings.max_body_memory);
        AppState {
            settings,
            authz,
            auth,
            audit,
            metrics,
            events,
            paths: Arc::new(LexicalPaths),
            contents: None,
            lab: None,
            kernels: None,
            confinement: None,
            terminals: None,
            instances: HashMap::new(),
            started: now,
            last_activity_micros: AtomicI64::new(now.timestamp_micros()),
            connections: AtomicUsize::new(0),
            bodies,
            shutdown: watch::channel(false).0,
            kernel_status: Box::new(|| (0, 0)),
        }
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
