//! The kernel manager's settings.

use std::path::PathBuf;
use std::time::Duration;

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
    /// not reading (the websocket pump applies it; see
    /// [`KernelManager::config`](super::KernelManager::config)).
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
