//! Kernels and their manager: start (from a kernelspec), list, get, interrupt, restart,
//! shut down, cull.
//!
//! A message from a websocket client enters each file once, in one direction:
//! [`client`] (access filter, queued) → [`channels`] (writer task → kernel → reader or iopub
//! task) → the hub, which hands it to the client(s). The rest is the kernel's life:
//! [`process`] (launch, readiness, heartbeat, stop, the restarter) and [`connection`]
//! (runtime directory, connection file, endpoints); [`error`], [`config`], [`model`] and
//! [`metrics`] are what the server sees of it.

mod channels;
mod client;
mod config;
mod connection;
mod error;
mod metrics;
mod model;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use concord_authz::{CanonicalPath, Owner};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;

pub use client::{ClientConnection, ClientInbound, Inbound, InboundError, KernelAccess};
pub use config::{KernelManagerConfig, TransportKind};
pub use error::{ErrorKind, KernelError};
pub use metrics::KernelMetrics;
pub use model::{KernelAction, KernelActionKind, KernelInfo, KernelModel, StartKernel};

use channels::{drop_unread_input, Inbox, Outboxes};
use client::{fail_pending, Unanswered};
use connection::claim_runtime_dir;
use metrics::Counters;
use process::Incarnation;

use crate::hub::{lock, Hub, HubLimits};
use crate::kernelspec::{InterruptMode, KernelSpec, KernelSpecManager};
use crate::transport::{Transport, ZmtpTransport};
use crate::wire::Message;
use crate::ws::Channel;

/// Lifecycle actions kept for a subscriber that has not read them yet; one that falls
/// further behind misses the oldest (the server's forwarder only re-publishes them).
const ACTION_QUEUE: usize = 256;

/// What changes in a kernel's life, under one lock.
struct KernelState {
    execution_state: String,
    last_activity: DateTime<Utc>,
    reason: Option<String>,
    restart_count: u32,
    generation: u64,
    removed: bool,
}

/// One kernel: what it was started with, and its clients, queues and current process.
struct Kernel {
    id: String,
    name: String,
    spec: KernelSpec,
    owner: Owner,
    path: Option<CanonicalPath>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    state: Mutex<KernelState>,
    hub: Arc<Hub>,
    outboxes: Outboxes,
    /// The receiving ends of `outboxes`: shell, control, stdin.
    inboxes: [Inbox; 3],
    incarnation: Mutex<Option<Incarnation>>,
    lifecycle: tokio::sync::Mutex<()>,
    last_idle_parent: Mutex<String>,
    /// How every incarnation is started (restarts too): confinement, supervisor, namespaces.
    sandbox: concord_confine::Sandbox,
}

impl Kernel {
    fn touch(&self) {
        lock(&self.state).last_activity = Utc::now();
    }

    fn set_state(&self, s: &str) {
        let mut st = lock(&self.state);
        st.execution_state = s.to_string();
        st.last_activity = Utc::now();
    }

    fn model(&self) -> KernelModel {
        let st = lock(&self.state);
        KernelModel {
            id: self.id.clone(),
            name: self.name.clone(),
            last_activity: st
                .last_activity
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            execution_state: st.execution_state.clone(),
            connections: self.hub.connections(),
            reason: st.reason.clone(),
        }
    }

    fn pid(&self) -> Option<i32> {
        lock(&self.incarnation).as_ref().map(|i| i.pid)
    }

    /// Push a server-made status message to every client (as jupyter_server does on
    /// restart and death).
    fn push_status(&self, state: &str) {
        let msg = Message::new_server_message(
            "status",
            &self.id,
            "",
            Bytes::from_static(b"{}"),
            json!({"execution_state": state}),
        );
        self.hub.broadcast(Channel::Iopub, msg);
    }
}

/// What every clone of a [`KernelManager`] shares.
struct ManagerInner {
    /// Held for the manager's life: this server owns the runtime directory.
    _runtime_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    config: KernelManagerConfig,
    specs: KernelSpecManager,
    transport: Arc<dyn Transport>,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    counters: Counters,
    confiner: std::sync::RwLock<Option<ConfinementProvider>>,
    /// Lifecycle actions, for whoever subscribed (nothing is built when nobody did).
    actions: tokio::sync::broadcast::Sender<KernelAction>,
}

/// Gives the sandbox of a kernel its owner starts, or why none can be given (the start is
/// then refused). Set by the server, which knows the policy.
pub type ConfinementProvider =
    Arc<dyn Fn(&Owner) -> Result<concord_confine::Sandbox, String> + Send + Sync>;

/// Starts, tracks and stops kernels. Cheap to clone.
#[derive(Clone)]
pub struct KernelManager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for KernelManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelManager").finish_non_exhaustive()
    }
}

impl KernelManager {
    /// A manager using our ZMTP transport. When culling is configured, call this inside a
    /// tokio runtime (the culler is a task).
    pub fn new(config: KernelManagerConfig, specs: KernelSpecManager) -> Self {
        let transport = ZmtpTransport {
            connect_timeout: config.kernel_info_timeout,
        };
        Self::with_transport(config, specs, Arc::new(transport))
    }

    /// A manager with another transport implementation.
    pub fn with_transport(
        config: KernelManagerConfig,
        specs: KernelSpecManager,
        transport: Arc<dyn Transport>,
    ) -> Self {
        let runtime_lock = claim_runtime_dir(&config.runtime_dir);
        let mgr = KernelManager {
            inner: Arc::new(ManagerInner {
                _runtime_lock: runtime_lock,
                config,
                specs,
                transport,
                kernels: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                confiner: std::sync::RwLock::new(None),
                actions: tokio::sync::broadcast::channel(ACTION_QUEUE).0,
            }),
        };
        if mgr.inner.config.cull_idle_timeout.is_some() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let weak = Arc::downgrade(&mgr.inner);
                let interval = mgr.inner.config.cull_interval;
                handle.spawn(async move {
                    loop {
                        tokio::time::sleep(interval).await;
                        let Some(inner) = weak.upgrade() else { break };
                        KernelManager { inner }.cull_once().await;
                    }
                });
            } else {
                tracing::warn!("culling configured outside a tokio runtime; culler not started");
            }
        }
        mgr
    }

    /// The kernelspec finder.
    pub fn kernelspecs(&self) -> &KernelSpecManager {
        &self.inner.specs
    }

    /// The configuration.
    pub fn config(&self) -> &KernelManagerConfig {
        &self.inner.config
    }

    /// Every lifecycle action from now on (start, interrupt, restart, shutdown; success and
    /// failure), whoever caused it: a request, the automatic restarter, the idle culler.
    pub fn subscribe_actions(&self) -> tokio::sync::broadcast::Receiver<KernelAction> {
        self.inner.actions.subscribe()
    }

    /// Report an action to the subscribers; builds nothing when there are none.
    fn report(
        &self,
        action: KernelActionKind,
        k: &Kernel,
        result: &Result<impl Sized, KernelError>,
    ) {
        if self.inner.actions.receiver_count() == 0 {
            return;
        }
        let _ = self.inner.actions.send(KernelAction {
            action,
            kernel_id: Some(k.id.clone()),
            kernel_name: k.name.clone(),
            owner: k.owner.clone(),
            path: k.path.clone(),
            error: result.as_ref().err().cloned(),
        });
    }

    /// Report a start that failed before a kernel existed.
    fn report_failed_start(&self, req: &StartKernel, id: Option<&str>, error: &KernelError) {
        if self.inner.actions.receiver_count() == 0 {
            return;
        }
        let _ = self.inner.actions.send(KernelAction {
            action: KernelActionKind::Start,
            kernel_id: id.map(str::to_string),
            kernel_name: req
                .name
                .clone()
                .unwrap_or_else(|| self.inner.config.default_kernel_name.clone()),
            owner: req.owner.clone(),
            path: req.path.clone(),
            error: Some(error.clone()),
        });
    }

    fn kernel(&self, id: &str) -> Result<Arc<Kernel>, KernelError> {
        lock(&self.inner.kernels)
            .get(id)
            .cloned()
            .ok_or_else(|| KernelError::NoSuchKernel(id.to_string()))
    }

    /// The working directory for `path`: the nearest existing directory at or above
    /// `root/path` (as jupyter_server's `cwd_for_path`), never outside the root.
    fn cwd_for(&self, path: Option<&CanonicalPath>) -> Result<PathBuf, KernelError> {
        let root = self
            .inner
            .config
            .root_dir
            .canonicalize()
            .map_err(|e| KernelError::StartFailed(format!("root directory: {e}")))?;
        let Some(path) = path else { return Ok(root) };
        let mut candidate = root.join(path.api_path());
        loop {
            if let Ok(real) = candidate.canonicalize() {
                if !real.starts_with(&root) {
                    return Err(KernelError::BadRequest(format!(
                        "path {} resolves outside the root directory",
                        path.as_str()
                    )));
                }
                if real.is_dir() {
                    return Ok(real);
                }
            }
            if !candidate.pop() || !candidate.starts_with(&root) {
                return Ok(root);
            }
        }
    }

    /// Start a kernel; returns once it answered kernel_info.
    /// Confined by the [`ConfinementProvider`] when one is set.
    pub async fn start(&self, req: StartKernel) -> Result<KernelInfo, KernelError> {
        let provider = self
            .inner
            .confiner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sandbox = match provider {
            Some(provide) => match provide(&req.owner) {
                Ok(sandbox) => sandbox,
                Err(e) => {
                    let e = KernelError::StartFailed(e);
                    self.report_failed_start(&req, req.kernel_id.as_deref(), &e);
                    return Err(e);
                }
            },
            None => concord_confine::Sandbox::direct(),
        };
        self.start_confined(req, sandbox).await
    }

    /// Confine every kernel started from now on with `provider`'s plan for its owner
    /// (running kernels keep theirs, restarts included).
    pub fn set_confinement(&self, provider: Option<ConfinementProvider>) {
        *self
            .inner
            .confiner
            .write()
            .unwrap_or_else(|e| e.into_inner()) = provider;
    }

    /// Start a kernel in `sandbox` (this and every restarted incarnation).
    pub async fn start_confined(
        &self,
        req: StartKernel,
        sandbox: concord_confine::Sandbox,
    ) -> Result<KernelInfo, KernelError> {
        // The id comes first so that a failed start is reported with it, as jupyter_server.
        let id = match &req.kernel_id {
            Some(id) => match uuid::Uuid::parse_str(id) {
                Ok(parsed) => parsed.hyphenated().to_string(),
                Err(_) => {
                    let e = KernelError::BadRequest(format!("kernel id {id:?} is not a UUID"));
                    self.report_failed_start(&req, None, &e);
                    return Err(e);
                }
            },
            None => uuid::Uuid::new_v4().hyphenated().to_string(),
        };
        match self.prepare_start(&req, &id, sandbox) {
            Ok(kernel) => {
                let result = self.launch_new(kernel.clone()).await;
                self.report(KernelActionKind::Start, &kernel, &result);
                result
            }
            Err(e) => {
                self.report_failed_start(&req, Some(&id), &e);
                Err(e)
            }
        }
    }

    /// Check a start request and register its kernel (not yet running) under `id`.
    fn prepare_start(
        &self,
        req: &StartKernel,
        id: &str,
        sandbox: concord_confine::Sandbox,
    ) -> Result<Arc<Kernel>, KernelError> {
        let name = req
            .name
            .clone()
            .unwrap_or_else(|| self.inner.config.default_kernel_name.clone());
        let spec = self.inner.specs.get(&name)?;
        crate::env::check_request(&self.inner.config.env_allowlist, &req.env)
            .map_err(KernelError::BadRequest)?;
        let id = id.to_string();
        let cwd = self.cwd_for(req.path.as_ref())?;
        let limits = HubLimits {
            client_queue_bytes: self.inner.config.client_queue_bytes,
            replay_bytes: self.inner.config.replay_bytes,
            replay_window: self.inner.config.replay_window,
            max_detached: 64,
        };
        let (outboxes, inboxes) = Outboxes::new(self.inner.config.input_queue_bytes);
        let kernel = Arc::new(Kernel {
            id: id.clone(),
            name: spec.name.clone(),
            spec,
            owner: req.owner.clone(),
            path: req.path.clone(),
            cwd,
            env: req.env.clone(),
            state: Mutex::new(KernelState {
                execution_state: "starting".into(),
                last_activity: Utc::now(),
                reason: None,
                restart_count: 0,
                generation: 0,
                removed: false,
            }),
            hub: Hub::new(limits, self.inner.counters.hub.clone()),
            outboxes,
            inboxes,
            incarnation: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            last_idle_parent: Mutex::new(String::new()),
            sandbox,
        });
        {
            let mut kernels = lock(&self.inner.kernels);
            if kernels.contains_key(&id) {
                return Err(KernelError::Duplicate(id));
            }
            // Counted under the lock that registers the kernel, starting ones included, so a
            // burst of starts stops exactly at the limit.
            if let Some(limit) = &req.limit {
                let owned = kernels
                    .values()
                    .filter(|k| k.owner.username == req.owner.username)
                    .count();
                if owned >= limit.max as usize {
                    return Err(KernelError::LimitReached(
                        limit.refusal(&req.owner.username),
                    ));
                }
            }
            kernels.insert(id, kernel.clone());
        }
        Ok(kernel)
    }

    /// Launch a registered kernel's first process; forget the kernel when it fails.
    async fn launch_new(&self, kernel: Arc<Kernel>) -> Result<KernelInfo, KernelError> {
        let guard = kernel.lifecycle.lock().await;
        let started = self.launch(&kernel).await;
        drop(guard);
        match started {
            Ok(()) => Ok(self.info(&kernel)),
            Err(e) => {
                lock(&self.inner.kernels).remove(&kernel.id);
                lock(&kernel.state).removed = true;
                self.remove_kernel_dir(&kernel.id);
                Err(e)
            }
        }
    }

    fn info(&self, k: &Kernel) -> KernelInfo {
        KernelInfo {
            model: k.model(),
            owner: k.owner.clone(),
            path: k.path.clone(),
        }
    }

    /// Every kernel, with owner and path for the server to filter by policy.
    pub fn list(&self) -> Vec<KernelInfo> {
        let kernels: Vec<Arc<Kernel>> = lock(&self.inner.kernels).values().cloned().collect();
        let mut out: Vec<KernelInfo> = kernels.iter().map(|k| self.info(k)).collect();
        out.sort_by(|a, b| a.model.id.cmp(&b.model.id));
        out
    }

    /// One kernel.
    pub fn get(&self, id: &str) -> Result<KernelInfo, KernelError> {
        let k = self.kernel(id)?;
        Ok(self.info(&k))
    }

    /// The kernel process's id (its process group id too), for tests and diagnostics.
    pub fn pid(&self, id: &str) -> Result<Option<i32>, KernelError> {
        Ok(self.kernel(id)?.pid())
    }

    /// Whether `id` is a running kernel.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.inner.kernels).contains_key(id)
    }

    /// Interrupt: SIGINT to the process group, or `interrupt_request` on control, as the
    /// kernelspec says.
    pub async fn interrupt(&self, id: &str) -> Result<(), KernelError> {
        let k = self.kernel(id)?;
        let result = Self::send_interrupt(&k);
        self.report(KernelActionKind::Interrupt, &k, &result);
        result
    }

    fn send_interrupt(k: &Kernel) -> Result<(), KernelError> {
        match k.spec.interrupt_mode() {
            InterruptMode::Signal => {
                let pid = k
                    .pid()
                    .ok_or_else(|| KernelError::Unavailable("kernel is not running".into()))?;
                killpg(Pid::from_raw(pid), Signal::SIGINT)
                    .map_err(|e| KernelError::Unavailable(format!("interrupt failed: {e}")))?;
            }
            InterruptMode::Message => {
                let msg = Message::new_server_message(
                    "interrupt_request",
                    &k.id,
                    "",
                    Bytes::from_static(b"{}"),
                    json!({}),
                );
                k.outboxes.send(Channel::Control, msg)?;
            }
        }
        k.touch();
        Ok(())
    }

    /// Restart under the same id: shut the process down, launch it again, wait until ready.
    /// Clients stay connected and are told `restarting`.
    pub async fn restart(&self, id: &str) -> Result<KernelInfo, KernelError> {
        let k = self.kernel(id)?;
        let guard = k.lifecycle.lock().await;
        k.set_state("restarting");
        // Before `restarting`: front ends drop what they wait for when they see it.
        fail_pending(&k, Unanswered::Restarted);
        k.push_status("restarting");
        self.stop_incarnation(&k, true).await;
        drop_unread_input(&k).await;
        fail_pending(&k, Unanswered::Restarted);
        let res = self.launch(&k).await;
        drop(guard);
        self.report(KernelActionKind::Restart, &k, &res);
        res.map(|()| self.info(&k))
    }

    /// Shut a kernel down: shutdown_request on control, SIGTERM, SIGKILL; then forget it.
    pub async fn shutdown(&self, id: &str) -> Result<(), KernelError> {
        let k = self.kernel(id)?;
        let guard = k.lifecycle.lock().await;
        lock(&self.inner.kernels).remove(id);
        lock(&k.state).removed = true;
        fail_pending(&k, Unanswered::ShutDown);
        self.stop_incarnation(&k, false).await;
        drop_unread_input(&k).await;
        fail_pending(&k, Unanswered::ShutDown);
        self.remove_kernel_dir(&k.id);
        k.set_state("dead");
        k.hub.close_all("kernel shut down");
        drop(guard);
        self.report(KernelActionKind::Shutdown, &k, &Ok::<(), KernelError>(()));
        Ok(())
    }

    /// Shut every kernel down concurrently (server exit).
    pub async fn shutdown_all(&self) {
        let ids: Vec<String> = lock(&self.inner.kernels).keys().cloned().collect();
        let futures = ids.iter().map(|id| self.shutdown(id));
        for r in futures::future::join_all(futures).await {
            if let Err(e) = r {
                tracing::debug!("shutdown_all: {e}");
            }
        }
    }

    /// Cull idle kernels once (the periodic culler calls this every `cull_interval`).
    pub async fn cull_once(&self) {
        let Some(timeout) = self.inner.config.cull_idle_timeout else {
            return;
        };
        let kernels: Vec<Arc<Kernel>> = lock(&self.inner.kernels).values().cloned().collect();
        for k in kernels {
            let m = k.model();
            let idle_for = {
                let st = lock(&k.state);
                (Utc::now() - st.last_activity).to_std().unwrap_or_default()
            };
            let busy = m.execution_state != "idle";
            if idle_for < timeout
                || (busy && !self.inner.config.cull_busy)
                || (m.connections > 0 && !self.inner.config.cull_connected)
            {
                continue;
            }
            tracing::info!(kernel = %k.id, idle_secs = idle_for.as_secs(), "culling idle kernel");
            if self.shutdown(&k.id).await.is_ok() {
                self.inner.counters.culled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
