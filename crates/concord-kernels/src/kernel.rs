//! Kernel processes and their manager: launch from a kernelspec, readiness by kernel_info,
//! heartbeat and exit watching, automatic restarts, interrupt, restart, shutdown, culling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use concord_authz::{CanonicalPath, Owner};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::hub::{
    footprint, human_bytes, lock, ClientKey, ClientOutbound, Hub, HubCounters, HubLimits, Pending,
    Route,
};
use crate::kernelspec::{
    resolve_python, InterruptMode, KernelSpec, KernelSpecError, KernelSpecManager,
};
use crate::transport::{FrameReceiver, FrameSender, Transport, TransportError, ZmtpTransport};
use crate::wire::{Message, Signer};
use crate::ws::{decode, Channel, CodecError, WsFrame, WsProtocol};

/// Lifecycle actions kept for a subscriber that has not read them yet; one that falls
/// further behind misses the oldest (the server's forwarder only re-publishes them).
const ACTION_QUEUE: usize = 256;

/// What went wrong, with a `kind` the server maps to an HTTP status.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KernelError {
    /// No such kernel (or not one the caller may see).
    #[error("kernel does not exist: {0}")]
    NoSuchKernel(String),
    /// No such kernelspec.
    #[error("no such kernel: {0}")]
    NoSuchKernelSpec(String),
    /// A kernel with that id already exists.
    #[error("kernel {0} already exists")]
    Duplicate(String),
    /// Invalid input (env name not allowed, bad id, bad path).
    #[error("{0}")]
    BadRequest(String),
    /// The kernel process could not be started or did not become ready.
    #[error("kernel failed to start: {0}")]
    StartFailed(String),
    /// The kernel cannot take messages now (dead, or its queue is full).
    #[error("kernel is not accepting messages: {0}")]
    Unavailable(String),
}

/// The class of a [`KernelError`], for mapping to HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404.
    NotFound,
    /// 400.
    BadRequest,
    /// 409.
    Conflict,
    /// 500.
    Internal,
    /// 503.
    Unavailable,
}

impl KernelError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KernelError::NoSuchKernel(_) | KernelError::NoSuchKernelSpec(_) => ErrorKind::NotFound,
            KernelError::Duplicate(_) => ErrorKind::Conflict,
            KernelError::BadRequest(_) => ErrorKind::BadRequest,
            KernelError::StartFailed(_) => ErrorKind::Internal,
            KernelError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

impl From<KernelSpecError> for KernelError {
    fn from(e: KernelSpecError) -> Self {
        match e {
            KernelSpecError::NoSuchKernel(n) => KernelError::NoSuchKernelSpec(n),
            other => KernelError::StartFailed(other.to_string()),
        }
    }
}

/// How the kernel's sockets are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Unix domain sockets in the runtime directory (default for local kernels).
    Ipc,
    /// TCP on the configured IP with free ports.
    Tcp,
}

/// Kernel manager settings (jupyter_server's names where they exist).
#[derive(Clone, Debug)]
pub struct KernelManagerConfig {
    /// The server's root directory; kernel working directories live under it.
    pub root_dir: PathBuf,
    /// Where connection files (mode 0600) and IPC sockets go; created with mode 0700.
    pub runtime_dir: PathBuf,
    /// IPC (default) or TCP.
    pub transport: TransportKind,
    /// IP for TCP transport.
    pub ip: String,
    /// The kernelspec used when a request names none.
    pub default_kernel_name: String,
    /// How long a kernel may take to answer kernel_info after launch (`kernel_info_timeout`).
    pub kernel_info_timeout: Duration,
    /// Grace period for a shutdown before SIGKILL (`shutdown_wait_time`).
    pub shutdown_wait: Duration,
    /// Automatic restarts of a crashed kernel before giving up (`restart_limit`).
    pub restart_limit: u32,
    /// A kernel up this long before dying resets the restart count (`stable_start_time`).
    pub stable_start_time: Duration,
    /// Heartbeat period: a ping every interval, each answered within it or missed
    /// (jupyter_client's restarter polls every `time_to_dead`, 3 s).
    pub heartbeat_interval: Duration,
    /// Consecutive missed heartbeats before the kernel is considered hung and killed (then
    /// restarted): a kernel that stops answering is declared dead after about
    /// `heartbeat_misses × heartbeat_interval` (15 s by default).
    pub heartbeat_misses: u32,
    /// Cull kernels idle this long; `None` disables culling (`cull_idle_timeout` = 0).
    pub cull_idle_timeout: Option<Duration>,
    /// Also cull kernels with websocket connections (`cull_connected`).
    pub cull_connected: bool,
    /// Also cull busy kernels (`cull_busy`).
    pub cull_busy: bool,
    /// How often to look for idle kernels (`cull_interval`).
    pub cull_interval: Duration,
    /// Bytes queued for one websocket client before it is told it is too slow and closed
    /// (each message counts its parts plus a fixed overhead).
    pub client_queue_bytes: usize,
    /// Bytes kept for the replay of a kernel's disconnected sessions, all together.
    pub replay_bytes: usize,
    /// How long a disconnected session's replay is kept.
    pub replay_window: Duration,
    /// How long the server waits for a client's socket to take a frame before closing it as
    /// not reading (the websocket pump applies it; see [`KernelManager::config`]).
    pub write_timeout: Duration,
    /// Bytes of client messages waiting for the kernel to read them (all channels); a
    /// message beyond is refused with an error reply.
    pub input_queue_bytes: usize,
    /// Environment variable names a request may set (`*` at the end matches a prefix);
    /// reserved names ([`crate::env`]) are refused whatever this says.
    pub env_allowlist: Vec<String>,
    /// Variables of the server's environment kernels must not inherit (its secrets).
    pub env_remove: Vec<String>,
    /// TCP ports a kernel must never listen on (those confined processes may connect to).
    pub reserved_ports: Vec<u16>,
}

impl KernelManagerConfig {
    /// Defaults matching jupyter_server, for a root and runtime directory.
    pub fn new(root_dir: impl Into<PathBuf>, runtime_dir: impl Into<PathBuf>) -> Self {
        KernelManagerConfig {
            root_dir: root_dir.into(),
            runtime_dir: runtime_dir.into(),
            transport: TransportKind::Ipc,
            ip: "127.0.0.1".into(),
            default_kernel_name: "python3".into(),
            kernel_info_timeout: Duration::from_secs(60),
            shutdown_wait: Duration::from_secs(5),
            restart_limit: 5,
            stable_start_time: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            heartbeat_misses: 5,
            cull_idle_timeout: None,
            cull_connected: false,
            cull_busy: false,
            cull_interval: Duration::from_secs(300),
            client_queue_bytes: 32 << 20,
            replay_bytes: 16 << 20,
            replay_window: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
            input_queue_bytes: 64 << 20,
            env_allowlist: crate::env::DEFAULT_ALLOWED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env_remove: Vec::new(),
            reserved_ports: Vec::new(),
        }
    }
}

/// What a websocket client may do on a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Send anything.
    Execute,
    /// Receive iopub and ask harmless questions; everything that runs code is refused.
    Watch,
}

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

/// What happened to a kernel, reported on [`KernelManager::subscribe_actions`] whoever caused
/// it (a request, the restarter, the culler). Carries what authorization needs to decide who
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
}

/// Counters for `/metrics`.
#[derive(Default, Debug)]
struct Counters {
    started: AtomicU64,
    auto_restarts: AtomicU64,
    deaths: AtomicU64,
    culled: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
    hub: Arc<HubCounters>,
}

/// A snapshot of the kernel service's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelMetrics {
    /// Kernels by execution state.
    pub kernels_by_state: Vec<(String, u64)>,
    /// Attached kernel websockets.
    pub websocket_connections: u64,
    /// Kernels started (including restarts).
    pub kernels_started_total: u64,
    /// Automatic restarts after a crash.
    pub kernel_auto_restarts_total: u64,
    /// Unexpected kernel deaths.
    pub kernel_deaths_total: u64,
    /// Kernels culled for idleness.
    pub kernels_culled_total: u64,
    /// Client messages refused by watch-only permission.
    pub messages_refused_total: u64,
    /// Malformed client frames.
    pub frames_malformed_total: u64,
    /// Clients disconnected for falling behind.
    pub clients_lagged_total: u64,
    /// Clients disconnected for not reading their socket within the write timeout.
    pub clients_stalled_total: u64,
    /// Messages replayed to reconnecting clients.
    pub messages_replayed_total: u64,
    /// Bytes held for clients now (queues and replay buffers of every kernel).
    pub client_buffered_bytes: u64,
}

impl KernelMetrics {
    /// Prometheus text exposition of these metrics.
    pub fn prometheus_text(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP concord_kernels Running kernels by execution state.\n# TYPE concord_kernels gauge\n");
        for (state, n) in &self.kernels_by_state {
            s.push_str(&format!("concord_kernels{{state=\"{state}\"}} {n}\n"));
        }
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        one(
            "concord_kernel_websocket_connections",
            "gauge",
            "Attached kernel websockets.",
            self.websocket_connections,
        );
        one(
            "concord_kernels_started_total",
            "counter",
            "Kernel processes started.",
            self.kernels_started_total,
        );
        one(
            "concord_kernel_auto_restarts_total",
            "counter",
            "Automatic restarts of crashed kernels.",
            self.kernel_auto_restarts_total,
        );
        one(
            "concord_kernel_deaths_total",
            "counter",
            "Unexpected kernel deaths.",
            self.kernel_deaths_total,
        );
        one(
            "concord_kernels_culled_total",
            "counter",
            "Kernels culled for idleness.",
            self.kernels_culled_total,
        );
        one(
            "concord_kernel_messages_refused_total",
            "counter",
            "Client messages refused (watch-only).",
            self.messages_refused_total,
        );
        one(
            "concord_kernel_frames_malformed_total",
            "counter",
            "Malformed client websocket frames.",
            self.frames_malformed_total,
        );
        one(
            "concord_kernel_clients_lagged_total",
            "counter",
            "Clients disconnected for falling behind.",
            self.clients_lagged_total,
        );
        one(
            "concord_kernel_clients_stalled_total",
            "counter",
            "Clients disconnected for not reading within the write timeout.",
            self.clients_stalled_total,
        );
        one(
            "concord_kernel_messages_replayed_total",
            "counter",
            "Messages replayed on reconnect.",
            self.messages_replayed_total,
        );
        one(
            "concord_kernel_buffered_bytes",
            "gauge",
            "Bytes held for kernel websocket clients (queues and replay buffers).",
            self.client_buffered_bytes,
        );
        s
    }
}

struct KernelState {
    execution_state: String,
    last_activity: DateTime<Utc>,
    reason: Option<String>,
    restart_count: u32,
    generation: u64,
    removed: bool,
}

/// One launched process and the tasks serving it.
struct Incarnation {
    generation: u64,
    pid: i32,
    files: Vec<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
    exited: watch::Receiver<bool>,
    intentional: Arc<AtomicBool>,
    ready_at: Instant,
}

/// Queues to the kernel's request channels; they outlive incarnations so a message sent
/// during a restart reaches the new process.
/// Requests on their way to the kernel. Boxed: a tokio channel allocates its slots 32 at a
/// time when it is made, and three channels of unboxed messages cost every idle kernel 24 KiB.
struct Outboxes {
    shell: mpsc::Sender<Box<Message>>,
    control: mpsc::Sender<Box<Message>>,
    stdin: mpsc::Sender<Box<Message>>,
    /// Bytes of the messages waiting in the three queues ([`footprint`]s).
    bytes: Arc<AtomicUsize>,
    /// At most this many bytes wait (a message alone always may).
    limit: usize,
}

impl Outboxes {
    /// Queue `msg` for the kernel on `channel` (shell for anything but control and stdin).
    fn send(&self, channel: Channel, msg: Message) -> Result<(), KernelError> {
        self.try_send(channel, msg).map_err(|(e, _)| e)
    }

    /// As [`Outboxes::send`], handing the message back when it cannot be queued.
    fn try_send(&self, channel: Channel, msg: Message) -> Result<(), (KernelError, Box<Message>)> {
        let msg = Box::new(msg);
        let size = footprint(&msg);
        let waiting = self.bytes.load(Ordering::Acquire);
        if waiting > 0 && waiting.saturating_add(size) > self.limit {
            let why = format!(
                "the kernel is not reading its input: {} of messages are waiting for it",
                human_bytes(waiting)
            );
            return Err((KernelError::Unavailable(why), msg));
        }
        let queue = match channel {
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            Channel::Shell | Channel::Iopub => &self.shell,
        };
        self.bytes.fetch_add(size, Ordering::AcqRel);
        queue.try_send(msg).map_err(|e| {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            let msg = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            let why = KernelError::Unavailable("the kernel's queue is full".into());
            (why, msg)
        })
    }
}

type Inbox = Arc<tokio::sync::Mutex<mpsc::Receiver<Box<Message>>>>;

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

fn substitute(arg: &str, conn_file: &Path, resource_dir: &Path) -> String {
    arg.replace("{connection_file}", &conn_file.to_string_lossy())
        .replace("{resource_dir}", &resource_dir.to_string_lossy())
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

    /// A kernel's own directory in the runtime directory: its connection file and, with the
    /// IPC transport, its sockets. Short: Unix socket paths are limited to 107 bytes.
    fn kernel_dir(&self, id: &str) -> PathBuf {
        let short: String = id.chars().filter(|c| *c != '-').take(12).collect();
        self.inner.config.runtime_dir.join(format!("k-{short}"))
    }

    /// Where a kernel's connection file is (for `jupyter console --existing` and friends).
    pub fn connection_file(&self, id: &str) -> PathBuf {
        self.kernel_dir(id).join(format!("kernel-{id}.json"))
    }

    fn remove_kernel_dir(&self, id: &str) {
        let dir = self.kernel_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(kernel = %id, "cannot remove {}: {e}", dir.display());
            }
        }
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
        let (shell_tx, shell_rx) = mpsc::channel(1024);
        let (control_tx, control_rx) = mpsc::channel(1024);
        let (stdin_tx, stdin_rx) = mpsc::channel(1024);
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
            outboxes: Outboxes {
                shell: shell_tx,
                control: control_tx,
                stdin: stdin_tx,
                bytes: Arc::new(AtomicUsize::new(0)),
                limit: self.inner.config.input_queue_bytes,
            },
            inboxes: [
                Arc::new(tokio::sync::Mutex::new(shell_rx)),
                Arc::new(tokio::sync::Mutex::new(control_rx)),
                Arc::new(tokio::sync::Mutex::new(stdin_rx)),
            ],
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

    /// Metrics snapshot.
    pub fn metrics(&self) -> KernelMetrics {
        let mut by_state: HashMap<String, u64> = HashMap::new();
        let mut connections = 0u64;
        for k in lock(&self.inner.kernels).values() {
            let m = k.model();
            *by_state.entry(m.execution_state).or_default() += 1;
            connections += m.connections as u64;
        }
        let mut kernels_by_state: Vec<(String, u64)> = by_state.into_iter().collect();
        kernels_by_state.sort();
        let c = &self.inner.counters;
        KernelMetrics {
            kernels_by_state,
            websocket_connections: connections,
            kernels_started_total: c.started.load(Ordering::Relaxed),
            kernel_auto_restarts_total: c.auto_restarts.load(Ordering::Relaxed),
            kernel_deaths_total: c.deaths.load(Ordering::Relaxed),
            kernels_culled_total: c.culled.load(Ordering::Relaxed),
            messages_refused_total: c.refused.load(Ordering::Relaxed),
            frames_malformed_total: c.malformed.load(Ordering::Relaxed),
            clients_lagged_total: c.hub.lagged.load(Ordering::Relaxed),
            clients_stalled_total: c.hub.stalled.load(Ordering::Relaxed),
            messages_replayed_total: c.hub.replayed.load(Ordering::Relaxed),
            client_buffered_bytes: c.hub.buffered.load(Ordering::Relaxed),
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

    /// Attach a websocket client. `permission` comes from the server's authorization of the
    /// caller on this kernel. The same `(session_id, username)` reconnecting gets what was
    /// buffered while it was away; a different user never shares a session slot.
    pub fn connect(
        &self,
        kernel_id: &str,
        session_id: &str,
        username: &str,
        permission: Permission,
        protocol: WsProtocol,
    ) -> Result<ClientConnection, KernelError> {
        let k = self.kernel(kernel_id)?;
        // jupyter_server accepts a missing session_id; give such a client its own slot.
        let session_id = if session_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            session_id.to_string()
        };
        let key = ClientKey {
            session_id,
            username: username.to_string(),
        };
        let outbound = ClientOutbound::new(k.hub.clone(), key.clone(), protocol);
        k.touch();
        Ok(ClientConnection {
            inbound: ClientInbound {
                kernel: k,
                manager: self.clone(),
                key,
                permission,
                protocol,
            },
            outbound,
        })
    }

    // ---- process lifecycle -------------------------------------------------------------

    fn endpoints(&self, id: &str, generation: u64) -> Result<(Value, Vec<PathBuf>), KernelError> {
        let cfg = &self.inner.config;
        let key = Signer::random_key();
        let names = [
            "shell_port",
            "iopub_port",
            "stdin_port",
            "control_port",
            "hb_port",
        ];
        let mut info = json!({
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "",
        });
        let mut files = Vec::new();
        match cfg.transport {
            TransportKind::Ipc => {
                // In the kernel's own directory, which no other kernel can see. Short names:
                // Unix socket paths are limited to 107 bytes.
                let base = self.kernel_dir(id).join(format!("ipc-{generation}"));
                info["transport"] = json!("ipc");
                info["ip"] = json!(base.to_string_lossy());
                for (i, n) in names.iter().enumerate() {
                    let port = i + 1;
                    info[*n] = json!(port);
                    let f = PathBuf::from(format!("{}-{port}", base.to_string_lossy()));
                    let _ = std::fs::remove_file(&f);
                    files.push(f);
                }
            }
            TransportKind::Tcp => {
                info["transport"] = json!("tcp");
                info["ip"] = json!(cfg.ip);
                let mut listeners = Vec::new();
                for n in names {
                    let (l, port) = free_port(&cfg.ip, &cfg.reserved_ports)?;
                    info[n] = json!(port);
                    listeners.push(l);
                }
            }
        }
        Ok((info, files))
    }

    fn endpoint(info: &Value, port_name: &str) -> String {
        let transport = info["transport"].as_str().unwrap_or("tcp");
        let ip = info["ip"].as_str().unwrap_or("127.0.0.1");
        let port = info[port_name].as_u64().unwrap_or(0);
        match transport {
            "ipc" => format!("ipc://{ip}-{port}"),
            _ => format!("tcp://{ip}:{port}"),
        }
    }

    /// Launch a new incarnation of `k` and wait for readiness. Caller holds the lifecycle lock.
    async fn launch(&self, k: &Arc<Kernel>) -> Result<(), KernelError> {
        let cfg = &self.inner.config;
        create_private_dir(&cfg.runtime_dir)?;
        let kernel_dir = self.kernel_dir(&k.id);
        create_private_dir(&kernel_dir)?;
        let generation = {
            let mut st = lock(&k.state);
            st.generation += 1;
            st.execution_state = "starting".into();
            st.reason = None;
            st.generation
        };
        let (mut info, mut files) = self.endpoints(&k.id, generation)?;
        info["kernel_name"] = json!(k.name);
        let key = info["key"].as_str().unwrap_or_default().to_string();
        let conn_file = self.connection_file(&k.id);
        write_private_file(&conn_file, info.to_string().as_bytes())?;
        if let Some(account) = &k.sandbox.account {
            // The kernel runs as its user's account: its directory is theirs.
            concord_confine::give(&[kernel_dir.as_path(), conn_file.as_path()], account)
                .map_err(|e| KernelError::StartFailed(e.to_string()))?;
        }
        files.push(conn_file.clone());

        let argv = resolve_python(&k.spec.argv(), &k.spec.resource_dir);
        let argv: Vec<String> = argv
            .iter()
            .map(|a| substitute(a, &conn_file, &k.spec.resource_dir))
            .collect();
        if argv.is_empty() {
            return Err(KernelError::StartFailed("kernelspec argv is empty".into()));
        }
        // The kernel may read its own connection file and bind its own ports or sockets,
        // nothing else of the runtime directory.
        let ipc = info["transport"] == "ipc";
        let extras = concord_confine::LaunchExtras {
            read_files: vec![conn_file.clone()],
            bind_tcp: [
                "shell_port",
                "iopub_port",
                "stdin_port",
                "control_port",
                "hb_port",
            ]
            .iter()
            .filter(|_| !ipc)
            .filter_map(|n| info[*n].as_u64().and_then(|p| u16::try_from(p).ok()))
            .collect(),
            socket_dirs: if ipc {
                vec![kernel_dir.clone()]
            } else {
                Vec::new()
            },
            visible: vec![kernel_dir.clone()],
        };
        let launch = k.sandbox.prepare(&argv, &extras).map_err(|e| {
            remove_files(&files);
            KernelError::StartFailed(format!("cannot confine the kernel: {e}"))
        })?;
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .current_dir(&k.cwd)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .env("JPY_PARENT_PID", std::process::id().to_string());
        for name in &cfg.env_remove {
            cmd.env_remove(name);
        }
        // The request's variables first: the kernelspec's, then the confinement's, win
        // (as jupyter_client lets the spec's `env` override the caller's).
        for (name, value) in &k.env {
            cmd.env(name, value);
        }
        for (name, value) in k.spec.env() {
            cmd.env(name, expand_env(&value));
        }
        cmd.envs(launch.env);
        let mut pre_exec = launch.pre_exec;
        // SAFETY: `run` only makes system calls (dup2, fcntl, prctl, landlock_restrict_self):
        // no allocation between fork and exec.
        unsafe {
            cmd.pre_exec(move || pre_exec.run());
        }
        let program = &argv[0];
        let mut child = cmd.spawn().map_err(|e| {
            remove_files(&files);
            KernelError::StartFailed(format!("cannot run {program}: {e}"))
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        self.inner.counters.started.fetch_add(1, Ordering::Relaxed);
        tracing::info!(kernel = %k.id, pid, name = %k.name, "kernel started");

        let intentional = Arc::new(AtomicBool::new(false));
        let (exit_tx, exit_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let mgr = self.clone();
            let kk = k.clone();
            let intentional = intentional.clone();
            tasks.push(tokio::spawn(async move {
                let status = child.wait().await;
                let _ = exit_tx.send(true);
                if !intentional.load(Ordering::SeqCst) {
                    tracing::warn!(kernel = %kk.id, ?status, "kernel process died");
                    mgr.inner.counters.deaths.fetch_add(1, Ordering::Relaxed);
                    let mgr2 = mgr.clone();
                    // A separate task: handling the death aborts this one.
                    tokio::spawn(async move { mgr2.handle_death(kk, generation).await });
                }
            }));
        }
        *lock(&k.incarnation) = Some(Incarnation {
            generation,
            pid,
            files,
            tasks,
            exited: exit_rx.clone(),
            intentional,
            ready_at: Instant::now(),
        });

        let ready = self.connect_and_wait(k, &info, &key, exit_rx).await;
        if let Err(e) = ready {
            tracing::warn!(kernel = %k.id, "kernel failed to start: {e}");
            self.stop_incarnation(k, false).await;
            lock(&k.state).reason = Some(e.to_string());
            return Err(e);
        }
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.ready_at = Instant::now();
        }
        Ok(())
    }

    async fn connect_and_wait(
        &self,
        k: &Arc<Kernel>,
        info: &Value,
        key: &str,
        mut exited: watch::Receiver<bool>,
    ) -> Result<(), KernelError> {
        let cfg = &self.inner.config;
        let signer = Signer::new(key.as_bytes().to_vec());
        let transport = self.inner.transport.clone();
        let identity = uuid::Uuid::new_v4().simple().to_string();
        let connect = async {
            let iopub = transport
                .subscriber(&Self::endpoint(info, "iopub_port"))
                .await?;
            let shell = transport
                .dealer(&Self::endpoint(info, "shell_port"), identity.as_bytes())
                .await?;
            let control = transport
                .dealer(&Self::endpoint(info, "control_port"), identity.as_bytes())
                .await?;
            // stdin must share shell's identity: the kernel routes input_request by it.
            let stdin = transport
                .dealer(&Self::endpoint(info, "stdin_port"), identity.as_bytes())
                .await?;
            Ok::<_, crate::transport::TransportError>((iopub, shell, control, stdin))
        };
        let (iopub, shell, control, stdin) = tokio::select! {
            r = connect => r.map_err(|e| KernelError::StartFailed(e.to_string()))?,
            _ = exited.wait_for(|e| *e) => {
                return Err(KernelError::StartFailed("the kernel process exited during startup".into()))
            }
            _ = tokio::time::sleep(cfg.kernel_info_timeout) => {
                return Err(KernelError::StartFailed("timed out connecting to the kernel".into()))
            }
        };
        lock(&k.last_idle_parent).clear();
        let liveness = match lock(&k.incarnation).as_ref() {
            Some(inc) => Liveness {
                pid: inc.pid,
                exited: exited.clone(),
                intentional: inc.intentional.clone(),
            },
            None => return Err(KernelError::StartFailed("the kernel was stopped".into())),
        };
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(iopub_task(
            k.clone(),
            iopub,
            signer.clone(),
            liveness.clone(),
        )));
        for (i, (channel, (tx, rx))) in [
            (Channel::Shell, shell),
            (Channel::Control, control),
            (Channel::Stdin, stdin),
        ]
        .into_iter()
        .enumerate()
        {
            tasks.push(tokio::spawn(reader_task(
                k.clone(),
                channel,
                rx,
                signer.clone(),
                liveness.clone(),
            )));
            tasks.push(tokio::spawn(writer_task(
                k.inboxes[i].clone(),
                k.outboxes.bytes.clone(),
                tx,
                signer.clone(),
            )));
        }
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.tasks.extend(tasks);
        }

        // Readiness: kernel_info_request on shell until a reply and an iopub idle status
        // for our latest request arrived (the latter proves the subscription is live and
        // leaves the kernel settled), as jupyter_server's nudge does. A new request is sent
        // only when nothing came back for 0.5 s.
        let deadline = Instant::now() + cfg.kernel_info_timeout;
        let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<Message>();
        let mut sent = 0usize;
        let mut replies = 0usize;
        let mut last_id = String::new();
        loop {
            if replies == sent || sent == 0 {
                let req = Message::new_server_message(
                    "kernel_info_request",
                    &k.id,
                    "",
                    Bytes::from_static(b"{}"),
                    json!({}),
                );
                last_id = req.info.msg_id.clone();
                k.hub.register(
                    &last_id,
                    Pending {
                        route: Route::Internal(reply_tx.clone()),
                        channel: Channel::Shell,
                        msg_type: req.info.msg_type.clone(),
                        parent: Bytes::new(),
                    },
                );
                if k.outboxes.send(Channel::Shell, req).is_ok() {
                    sent += 1;
                }
            }
            let settle = Instant::now() + Duration::from_millis(500);
            loop {
                tokio::select! {
                    r = reply_rx.recv() => { if r.is_some() { replies += 1; } }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = exited.wait_for(|e| *e) => {
                        return Err(KernelError::StartFailed("the kernel process exited during startup".into()));
                    }
                }
                let idle_for_last = *lock(&k.last_idle_parent) == last_id;
                if replies == sent && idle_for_last {
                    lock(&k.state).execution_state = "idle".into();
                    break;
                }
                if Instant::now() >= settle {
                    break;
                }
            }
            if replies == sent && *lock(&k.last_idle_parent) == last_id {
                break;
            }
            if Instant::now() >= deadline {
                return Err(KernelError::StartFailed(format!(
                    "no kernel_info reply within {:?}",
                    cfg.kernel_info_timeout
                )));
            }
        }
        // Heartbeat only once the kernel is up.
        let hb = tokio::spawn(heartbeat_task(
            k.clone(),
            transport.clone(),
            Self::endpoint(info, "hb_port"),
            cfg.heartbeat_interval,
            cfg.heartbeat_misses,
        ));
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.tasks.push(hb);
        }
        Ok(())
    }

    /// Stop the current incarnation (if any). `restart` tells the kernel it will come back.
    async fn stop_incarnation(&self, k: &Arc<Kernel>, restart: bool) {
        let Some(inc) = lock(&k.incarnation).take() else {
            return;
        };
        inc.intentional.store(true, Ordering::SeqCst);
        let mut exited = inc.exited.clone();
        let wait = self.inner.config.shutdown_wait;
        if !*exited.borrow() {
            let req = Message::new_server_message(
                "shutdown_request",
                &k.id,
                "",
                Bytes::from_static(b"{}"),
                json!({"restart": restart}),
            );
            let _ = k.outboxes.send(Channel::Control, req);
            let gone = tokio::time::timeout(wait / 2, exited.wait_for(|e| *e))
                .await
                .is_ok();
            if !gone {
                let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGTERM);
                let gone = tokio::time::timeout(wait / 2, exited.wait_for(|e| *e))
                    .await
                    .is_ok();
                if !gone {
                    let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGKILL);
                    let _ = tokio::time::timeout(wait, exited.wait_for(|e| *e)).await;
                }
            }
        }
        // The kernel is gone; children it left in its group go too.
        let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGKILL);
        for t in &inc.tasks {
            t.abort();
        }
        remove_files(&inc.files);
        tracing::info!(kernel = %k.id, pid = inc.pid, "kernel stopped");
    }

    /// The restarter: an unexpected exit of generation `generation`.
    fn handle_death(
        &self,
        k: Arc<Kernel>,
        generation: u64,
    ) -> futures::future::BoxFuture<'static, ()> {
        // Boxed with an explicit `Send`: launch → exit watcher → handle_death → launch is a
        // cycle the compiler cannot prove `Send` through opaque types.
        let mgr = self.clone();
        Box::pin(async move { mgr.handle_death_inner(k, generation).await })
    }

    async fn handle_death_inner(&self, k: Arc<Kernel>, generation: u64) {
        let guard = k.lifecycle.lock().await;
        let current = lock(&k.incarnation).as_ref().map(|i| i.generation);
        if current != Some(generation) || lock(&k.state).removed {
            return;
        }
        let stable = lock(&k.incarnation)
            .as_ref()
            .is_some_and(|i| i.ready_at.elapsed() >= self.inner.config.stable_start_time);
        self.stop_incarnation(&k, false).await;
        drop_unread_input(&k).await;
        let gives_up = {
            let mut st = lock(&k.state);
            if stable {
                st.restart_count = 0;
            }
            st.restart_count >= self.inner.config.restart_limit
        };
        // Before `restarting`: front ends drop what they wait for when they see it.
        fail_pending(
            &k,
            Unanswered::Died {
                restarting: !gives_up,
            },
        );
        loop {
            let attempt = {
                let mut st = lock(&k.state);
                st.restart_count += 1;
                st.restart_count
            };
            if attempt > self.inner.config.restart_limit {
                tracing::error!(kernel = %k.id, "kernel died and could not be restarted; giving up");
                // What was sent while it was being restarted.
                drop_unread_input(&k).await;
                fail_pending(&k, Unanswered::Died { restarting: false });
                {
                    let mut st = lock(&k.state);
                    st.execution_state = "dead".into();
                    st.reason = Some("kernel died and the restart limit was reached".into());
                    st.removed = true;
                }
                k.push_status("dead");
                lock(&self.inner.kernels).remove(&k.id);
                self.remove_kernel_dir(&k.id);
                k.hub.close_all("kernel died");
                return;
            }
            tracing::warn!(kernel = %k.id, attempt, "restarting dead kernel");
            self.inner
                .counters
                .auto_restarts
                .fetch_add(1, Ordering::Relaxed);
            k.set_state("restarting");
            k.push_status("restarting");
            // Each attempt is a restart event, as jupyter_client's restarter calls
            // `restart_kernel` (a kernel that finally stays dead is removed without one).
            let result = self.launch(&k).await;
            self.report(KernelActionKind::Restart, &k, &result);
            match result {
                Ok(()) => break,
                Err(e) => tracing::warn!(kernel = %k.id, "restart failed: {e}"),
            }
        }
        drop(guard);
    }
}

fn expand_env(value: &str) -> String {
    // jupyter_client substitutes ${VAR} from the server's environment in kernelspec env.
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The name of the lock file that marks a runtime directory as in use by a server.
const RUNTIME_LOCK: &str = ".concord-runtime.lock";

/// Take the runtime directory for this server and remove what an earlier server left there
/// (connection files and sockets of kernels that died with it, after a crash). Another live
/// server holding the directory keeps its files: nothing is removed then.
fn claim_runtime_dir(dir: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    if let Err(e) = create_private_dir(dir) {
        tracing::warn!("{e}");
        return None;
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(RUNTIME_LOCK))
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot lock the runtime directory {}: {e}", dir.display());
            return None;
        }
    };
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err(_) => {
            tracing::warn!(
                "another server uses the runtime directory {}: its files are left alone",
                dir.display()
            );
            return None;
        }
    };
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name() == RUNTIME_LOCK {
                continue;
            }
            let path = entry.path();
            let gone = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the stale {}: {e}", path.display()),
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} stale entries from the runtime directory {}",
            dir.display()
        );
    }
    Some(lock)
}

fn create_private_dir(dir: &Path) -> Result<(), KernelError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            // The server's own directories are for its log, not for the client's answer.
            tracing::error!("cannot create the runtime directory {}: {e}", dir.display());
            KernelError::StartFailed(format!("cannot create the kernels' runtime directory: {e}"))
        })
}

fn write_private_file(path: &Path, data: &[u8]) -> Result<(), KernelError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KernelError::StartFailed(format!("connection file: {e}")))?;
    f.write_all(data)
        .map_err(|e| KernelError::StartFailed(format!("connection file: {e}")))
}

/// A free TCP port on `ip` that is not one of `reserved` (ports confined processes may
/// connect to: a kernel must never listen on one of them). The listener holds the port until
/// the connection file is written.
fn free_port(ip: &str, reserved: &[u16]) -> Result<(std::net::TcpListener, u16), KernelError> {
    for _ in 0..64 {
        let l = std::net::TcpListener::bind((ip, 0))
            .map_err(|e| KernelError::StartFailed(format!("no free port: {e}")))?;
        let port = l
            .local_addr()
            .map_err(|e| KernelError::StartFailed(e.to_string()))?
            .port();
        if !reserved.contains(&port) {
            return Ok((l, port));
        }
    }
    Err(KernelError::StartFailed(
        "no free port outside the reserved ones".into(),
    ))
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

/// What a channel's reader needs to tell a broken channel from a kernel that is exiting.
#[derive(Clone)]
struct Liveness {
    /// The incarnation's process (group leader).
    pid: i32,
    /// Becomes true when that process has exited.
    exited: watch::Receiver<bool>,
    /// Set when the server is stopping or restarting it.
    intentional: Arc<AtomicBool>,
}

/// How long a channel that ended waits for its kernel's exit to be seen before deciding the
/// kernel lives on without it (a kernel that exits closes its sockets first).
const CHANNEL_EXIT_GRACE: Duration = Duration::from_secs(2);

/// A kernel channel ended. When the process is exiting (or being stopped), nothing to do:
/// the exit watcher takes over. When it lives on (it closed the socket, or sent what is not
/// ZMTP), it cannot be used any more, and no one would know: it is killed, and the restarter
/// brings it back as after a crash, telling the clients.
async fn channel_ended(k: &Kernel, channel: Channel, error: &TransportError, mut live: Liveness) {
    tracing::debug!(kernel = %k.id, channel = channel.as_str(), "channel ended: {error}");
    if live.intentional.load(Ordering::SeqCst) {
        return;
    }
    let exit = tokio::time::timeout(CHANNEL_EXIT_GRACE, live.exited.wait_for(|e| *e)).await;
    // Err(_) inside: the exit watcher is gone, so is the process.
    if exit.is_ok() || live.intentional.load(Ordering::SeqCst) {
        return;
    }
    tracing::error!(
        kernel = %k.id,
        channel = channel.as_str(),
        "the kernel's {} channel failed ({error}) while it runs; killing it so that it restarts",
        channel.as_str()
    );
    let _ = killpg(Pid::from_raw(live.pid), Signal::SIGKILL);
}

async fn iopub_task(
    k: Arc<Kernel>,
    mut rx: Box<dyn FrameReceiver>,
    signer: Signer,
    live: Liveness,
) {
    loop {
        let frames = match rx.recv().await {
            Ok(f) => f,
            Err(e) => return channel_ended(&k, Channel::Iopub, &e, live).await,
        };
        let msg = match Message::from_frames(frames, &signer) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(kernel = %k.id, "dropping malformed iopub message: {e}");
                continue;
            }
        };
        {
            let mut st = lock(&k.state);
            st.last_activity = Utc::now();
            if msg.info.msg_type == "status" {
                if let Some(s) = crate::wire::str_member(&msg.content, "execution_state") {
                    if st.execution_state != s {
                        st.execution_state = s.into_owned();
                    }
                    // Readiness wants an idle status: it proves the subscription is
                    // live and leaves the model in a settled state.
                    if st.execution_state == "idle" {
                        if let Some(p) = crate::wire::str_member(&msg.parent_header, "msg_id") {
                            let mut last = lock(&k.last_idle_parent);
                            if *last != p {
                                *last = p.into_owned();
                            }
                        }
                    }
                }
            }
        }
        k.hub.broadcast(Channel::Iopub, msg);
    }
}

async fn reader_task(
    k: Arc<Kernel>,
    channel: Channel,
    mut rx: Box<dyn FrameReceiver>,
    signer: Signer,
    live: Liveness,
) {
    loop {
        let frames = match rx.recv().await {
            Ok(f) => f,
            Err(e) => return channel_ended(&k, channel, &e, live).await,
        };
        match Message::from_frames(frames, &signer) {
            Ok(msg) => k.hub.route(channel, msg),
            Err(e) => tracing::warn!(
                kernel = %k.id,
                channel = channel.as_str(),
                "dropping malformed kernel message: {e}"
            ),
        }
    }
}

async fn writer_task(
    inbox: Inbox,
    waiting: Arc<AtomicUsize>,
    mut tx: Box<dyn FrameSender>,
    signer: Signer,
) {
    let mut inbox = inbox.lock().await;
    while let Some(msg) = inbox.recv().await {
        let frames = msg.to_frames(&signer);
        waiting.fetch_sub(footprint(&msg), Ordering::AcqRel);
        drop(msg);
        if let Err(e) = tx.send(frames).await {
            tracing::warn!("sending to kernel failed: {e}");
        }
    }
}

/// Pings the kernel's heartbeat: one ping per `interval`, each to be answered within its
/// interval (a new connection included: the socket may be gone). After `max_misses` missed
/// in a row the kernel is hung: it is killed, and the restarter takes over. A kernel that
/// stops answering is thus declared dead `max_misses` intervals after the first ping it
/// missed, between `max_misses - 1` and `max_misses + 1` intervals after it stopped.
async fn heartbeat_task(
    k: Arc<Kernel>,
    transport: Arc<dyn Transport>,
    endpoint: String,
    interval: Duration,
    max_misses: u32,
) {
    let mut misses = 0u32;
    let mut probe = None;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::time::sleep_until(next).await;
        // A round late to start (a busy machine) still gives the kernel time to answer.
        let deadline = (next + interval).max(tokio::time::Instant::now() + interval / 2);
        next = deadline;
        let answered = tokio::time::timeout_at(deadline, async {
            if probe.is_none() {
                probe = transport.heartbeat(&endpoint).await.ok();
            }
            match probe.as_mut() {
                Some(p) => p.ping().await.is_ok(),
                None => false,
            }
        })
        .await
        .unwrap_or(false);
        if answered {
            misses = 0;
            continue;
        }
        // Connect afresh: the connection may be to a heartbeat socket that is gone.
        probe = None;
        misses += 1;
        tracing::warn!(kernel = %k.id, misses, "kernel heartbeat missed");
        if misses >= max_misses {
            tracing::error!(kernel = %k.id, "kernel stopped answering heartbeats; killing it");
            if let Some(pid) = k.pid() {
                // The exit watcher sees the death and the restarter takes over.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
    }
}

// ---- websocket clients ------------------------------------------------------------------

/// Messages a watcher may send on shell: questions that run no user code.
const WATCH_ALLOWED_SHELL: [&str; 4] = [
    "kernel_info_request",
    "comm_info_request",
    "is_complete_request",
    "history_request",
];

/// Why an inbound frame was not passed to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The frame could not be decoded; the server should close with 1007 (or ignore it).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The kernel cannot take it now.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// What happened to an inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Passed to the kernel.
    Forwarded,
    /// Refused (content that is not a JSON object, watch-only permission, a clashing
    /// msg_id, a kernel that does not read its input); an error reply went back.
    Refused,
}

/// A websocket client attached to a kernel: the server feeds `inbound` with frames it
/// receives and writes what `outbound` yields.
pub struct ClientConnection {
    /// Frames from the client.
    pub inbound: ClientInbound,
    /// Frames for the client.
    pub outbound: ClientOutbound,
}

/// The inbound half of a client connection.
pub struct ClientInbound {
    kernel: Arc<Kernel>,
    manager: KernelManager,
    key: ClientKey,
    permission: Permission,
    protocol: WsProtocol,
}

impl ClientInbound {
    /// The negotiated protocol.
    pub fn protocol(&self) -> WsProtocol {
        self.protocol
    }

    /// Handle one frame from the client: decode, check permission, stamp `header.username`,
    /// and queue it for the kernel.
    pub async fn handle(&self, frame: WsFrame) -> Result<Inbound, InboundError> {
        let (channel, mut msg) = match decode(&frame, self.protocol) {
            Ok(x) => x,
            Err(e) => {
                self.manager
                    .inner
                    .counters
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let k = &self.kernel;
        if channel == Channel::Iopub {
            self.manager
                .inner
                .counters
                .malformed
                .fetch_add(1, Ordering::Relaxed);
            return Err(CodecError::Malformed("clients cannot send on iopub".into()).into());
        }
        if let Err(why) = check_parts(&msg) {
            self.manager
                .inner
                .counters
                .malformed
                .fetch_add(1, Ordering::Relaxed);
            self.refuse(channel, &msg, "InvalidMessage", &why);
            return Ok(Inbound::Refused);
        }
        let allowed = match self.permission {
            Permission::Execute => true,
            Permission::Watch => {
                channel == Channel::Shell
                    && WATCH_ALLOWED_SHELL.contains(&msg.info.msg_type.as_str())
            }
        };
        if !allowed {
            self.manager
                .inner
                .counters
                .refused
                .fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "user {:?} may watch this kernel but not run code in it; {} refused",
                self.key.username, msg.info.msg_type
            );
            self.refuse(channel, &msg, "PermissionError", &why);
            return Ok(Inbound::Refused);
        }
        msg.stamp_username(&self.key.username)
            .map_err(|e| CodecError::Malformed(e.to_string()))?;
        let request = msg.info.msg_type.ends_with("_request");
        if request {
            let pending = Pending {
                route: Route::Client(self.key.clone()),
                channel,
                msg_type: msg.info.msg_type.clone(),
                parent: Hub::parent_of(&msg),
            };
            if !k.hub.register(&msg.info.msg_id, pending) {
                self.refuse(
                    channel,
                    &msg,
                    "DuplicateMessageId",
                    "another client has a pending request with this msg_id",
                );
                return Ok(Inbound::Refused);
            }
        }
        k.touch();
        if let Err((e, msg)) = k.outboxes.try_send(channel, msg) {
            // Answered here: the kernel will never see it.
            if request {
                k.hub.unregister(&msg.info.msg_id);
            }
            self.refuse(channel, &msg, "KernelUnavailable", &e.to_string());
            return Ok(Inbound::Refused);
        }
        Ok(Inbound::Forwarded)
    }

    /// Send this client a kernel-shaped error reply to `req` on `channel` (see
    /// [`answer_with_error`]).
    fn refuse(&self, channel: Channel, req: &Message, ename: &str, evalue: &str) {
        answer_with_error(
            &self.kernel,
            &self.key,
            channel,
            &req.info.msg_type,
            Hub::parent_of(req),
            ename,
            evalue,
            false,
        );
    }
}

/// Why a message from a client cannot go to the kernel although its header is fine: its
/// parent header, metadata or content is not a JSON object (ipykernel drops such a message
/// without a reply, so the client would wait for ever).
fn check_parts(msg: &Message) -> Result<(), String> {
    for (name, raw) in [
        ("parent_header", &msg.parent_header),
        ("metadata", &msg.metadata),
        ("content", &msg.content),
    ] {
        crate::wire::check_object(raw)
            .map_err(|e| format!("the message's {name} is not a JSON object: {e}"))?;
    }
    Ok(())
}

/// Answer a request of `key`'s client with a kernel-shaped error on `channel`: `X_reply`
/// for `X_request` (`error` for other types), `parent_header` = the request's header,
/// content `{status: "error", ename, evalue, traceback}`. For `execute_request` also an
/// iopub `error` output before it and an iopub `idle` status after it, which is what front
/// ends show in the cell and how they know it finished; to every client when
/// `iopub_to_all` (the cell's watchers saw it start), else to this client only.
#[allow(clippy::too_many_arguments)]
fn answer_with_error(
    k: &Kernel,
    key: &ClientKey,
    channel: Channel,
    req_type: &str,
    parent: Bytes,
    ename: &str,
    evalue: &str,
    iopub_to_all: bool,
) {
    let reply_type = match req_type.strip_suffix("_request") {
        Some(base) => format!("{base}_reply"),
        None => "error".to_string(),
    };
    let iopub = |msg: Message| {
        if iopub_to_all {
            k.hub.broadcast(Channel::Iopub, msg);
        } else {
            k.hub.deliver(key, Channel::Iopub, msg);
        }
    };
    let traceback = vec![format!("{ename}: {evalue}")];
    let mut content = json!({
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": traceback,
    });
    let execute = req_type == "execute_request";
    if execute {
        content["execution_count"] = Value::Null;
        iopub(Message::new_server_message(
            "error",
            &k.id,
            "",
            parent.clone(),
            json!({"ename": ename, "evalue": evalue, "traceback": traceback}),
        ));
    }
    let reply = Message::new_server_message(&reply_type, &k.id, "", parent.clone(), content);
    k.hub.deliver(key, channel, reply);
    if execute {
        iopub(Message::new_server_message(
            "status",
            &k.id,
            "",
            parent,
            json!({"execution_state": "idle"}),
        ));
    }
}

/// Why the requests a kernel had not answered never will be.
#[derive(Clone, Copy)]
enum Unanswered {
    /// The process died; `restarting` when the restarter brings it back.
    Died { restarting: bool },
    /// A restart was asked for.
    Restarted,
    /// The kernel was shut down.
    ShutDown,
}

impl Unanswered {
    fn ename(self) -> &'static str {
        match self {
            Unanswered::Died { .. } => "DeadKernelError",
            Unanswered::Restarted => "KernelRestarted",
            Unanswered::ShutDown => "KernelShutDown",
        }
    }

    fn evalue(self, execute: bool) -> String {
        let what = if execute {
            "while running this cell"
        } else {
            "before answering this request"
        };
        match self {
            Unanswered::Died { restarting: true } => {
                format!("The kernel died {what}; it is restarting, and its variables are lost.")
            }
            Unanswered::Died { restarting: false } => {
                format!("The kernel died {what}, and it could not be restarted.")
            }
            Unanswered::Restarted => format!("The kernel was restarted {what}."),
            Unanswered::ShutDown => format!("The kernel was shut down {what}."),
        }
    }
}

/// Answer every request the kernel had not answered with an error, on the channel it came
/// in on: the process that had them is gone.
fn fail_pending(k: &Kernel, why: Unanswered) {
    for (key, pending) in k.hub.take_pending() {
        let evalue = why.evalue(pending.msg_type == "execute_request");
        answer_with_error(
            k,
            &key,
            pending.channel,
            &pending.msg_type,
            pending.parent,
            why.ename(),
            &evalue,
            true,
        );
    }
}

/// Drop what clients sent and the gone process never read: those requests are answered
/// with errors, and must not run in the next process. Call once the writers are stopped
/// (each holds its queue's lock while it runs).
async fn drop_unread_input(k: &Kernel) {
    for inbox in &k.inboxes {
        let Ok(mut rx) = tokio::time::timeout(Duration::from_secs(5), inbox.lock()).await else {
            tracing::warn!(kernel = %k.id, "a writer to the kernel did not stop");
            continue;
        };
        while let Ok(msg) = rx.try_recv() {
            k.outboxes
                .bytes
                .fetch_sub(footprint(&msg), Ordering::AcqRel);
        }
    }
}
