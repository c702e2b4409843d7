//! `[kernels]`: the options of the kernels service and their merge into its
//! [`KernelManagerConfig`].

use concord_kernels::{KernelManagerConfig, TransportKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How kernels' ZMQ sockets are reached.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelTransport {
    /// Unix sockets in the runtime directory (only this OS user can reach them).
    Ipc,
    /// TCP on 127.0.0.1 (as jupyter_server by default).
    Tcp,
}

/// Settings of the kernels service (`[kernels]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelsOptions {
    /// Extra kernelspec directories (each holding `<name>/kernel.json`), searched before
    /// jupyter's (`JUPYTER_PATH`, the user data dir, the Python prefix, system dirs).
    #[arg(long = "kernel-dir", env = "CONCORD_KERNEL_DIR", value_delimiter = ',')]
    pub kernel_dir: Option<Vec<PathBuf>>,
    /// The kernelspec used when a request names none (default `python3`).
    #[arg(long, env = "CONCORD_DEFAULT_KERNEL")]
    pub default_kernel: Option<String>,
    /// Shut down kernels idle for this many seconds (0, the default, never culls).
    #[arg(
        id = "kernel_cull_idle_timeout",
        long = "cull-idle-timeout",
        env = "CONCORD_CULL_IDLE_TIMEOUT"
    )]
    pub cull_idle_timeout: Option<u64>,
    /// How often (seconds) to look for idle kernels (default 300).
    #[arg(
        id = "kernel_cull_interval",
        long = "cull-interval",
        env = "CONCORD_CULL_INTERVAL"
    )]
    pub cull_interval: Option<u64>,
    /// Also cull idle kernels that have websocket connections (default false).
    #[arg(
        id = "kernel_cull_connected",
        long = "cull-connected",
        env = "CONCORD_CULL_CONNECTED"
    )]
    pub cull_connected: Option<bool>,
    /// Also cull busy kernels (default false).
    #[arg(id = "kernel_cull_busy", long = "cull-busy", env = "CONCORD_CULL_BUSY")]
    pub cull_busy: Option<bool>,
    /// How kernels' sockets are reached: `ipc` (default) or `tcp`.
    #[arg(long, env = "CONCORD_KERNEL_TRANSPORT", value_enum)]
    pub kernel_transport: Option<KernelTransport>,
    /// Automatic restarts of a crashed kernel before it is declared dead (default 5).
    #[arg(long, env = "CONCORD_RESTART_LIMIT")]
    pub restart_limit: Option<u32>,
    /// More environment variables a `POST /api/kernels` body may set (`NAME` or `PREFIX*`),
    /// besides `JPY_SESSION_NAME` and `KERNEL_*`; reserved names (HOME, TMPDIR, JUPYTER_*,
    /// LD_*, PYTHON*, *PATH, …) are refused.
    #[arg(
        long = "kernel-env-allow",
        env = "CONCORD_KERNEL_ENV_ALLOW",
        value_delimiter = ','
    )]
    pub kernel_env_allow: Option<Vec<String>>,
    /// Bytes queued for one kernel websocket client before it is closed (1008) as too slow
    /// (default 32 MiB).
    #[arg(long, env = "CONCORD_KERNEL_CLIENT_QUEUE_BYTES")]
    pub kernel_client_queue_bytes: Option<usize>,
    /// Bytes kept per kernel for the replay of its disconnected sessions, all together
    /// (default 16 MiB).
    #[arg(long, env = "CONCORD_KERNEL_REPLAY_BYTES")]
    pub kernel_replay_bytes: Option<usize>,
    /// Seconds a disconnected session's replay is kept (default 300).
    #[arg(long, env = "CONCORD_KERNEL_REPLAY_WINDOW")]
    pub kernel_replay_window: Option<u64>,
    /// Seconds a kernel websocket may take to accept a frame before it is closed (1008) as
    /// not reading (default 30).
    #[arg(long, env = "CONCORD_KERNEL_WRITE_TIMEOUT")]
    pub kernel_write_timeout: Option<u64>,
    /// The largest websocket message a kernel client may send, in bytes; larger closes the
    /// socket with 1009 (default 10 MiB, as jupyter_server's).
    #[arg(long, env = "CONCORD_KERNEL_MAX_MESSAGE_SIZE")]
    pub kernel_max_message_size: Option<usize>,
    /// Bytes of client messages waiting for a kernel that does not read them; more are
    /// answered with an error (default 64 MiB).
    #[arg(long, env = "CONCORD_KERNEL_INPUT_QUEUE_BYTES")]
    pub kernel_input_queue_bytes: Option<usize>,
    /// Seconds between heartbeats, each to be answered within its interval (default 3).
    #[arg(long, env = "CONCORD_KERNEL_HEARTBEAT_INTERVAL")]
    pub kernel_heartbeat_interval: Option<f64>,
    /// Heartbeats missed in a row before a kernel is killed and restarted (default 5: a
    /// kernel that stops answering is declared dead after about 15 s).
    #[arg(long, env = "CONCORD_KERNEL_HEARTBEAT_MISSES")]
    pub kernel_heartbeat_misses: Option<u32>,
}

super::layered!(KernelsOptions {
    kernel_dir,
    default_kernel,
    cull_idle_timeout,
    cull_interval,
    cull_connected,
    cull_busy,
    kernel_transport,
    restart_limit,
    kernel_env_allow,
    kernel_client_queue_bytes,
    kernel_replay_bytes,
    kernel_replay_window,
    kernel_write_timeout,
    kernel_max_message_size,
    kernel_input_queue_bytes,
    kernel_heartbeat_interval,
    kernel_heartbeat_misses,
});

/// The kernels service's configuration.
#[derive(Clone, Debug)]
pub struct KernelsConfig {
    /// The kernel manager's.
    pub manager: KernelManagerConfig,
    /// Kernelspec directories searched before jupyter's.
    pub kernel_dirs: Vec<PathBuf>,
    /// The largest websocket message a client may send.
    pub max_message_size: usize,
}

impl KernelsOptions {
    /// Whether kernels use the TCP transport (`--kernel-transport tcp`).
    pub fn uses_tcp(&self) -> bool {
        self.kernel_transport == Some(KernelTransport::Tcp)
    }

    /// The kernels service's configuration (defaults applied, values checked). Kernels
    /// never listen on `reserved_ports` (those confined processes may connect to) and do
    /// not inherit the variables named in `env_remove`.
    pub fn resolve(
        self,
        root: &Path,
        runtime_dir: &Path,
        reserved_ports: Vec<u16>,
        env_remove: Vec<String>,
    ) -> anyhow::Result<KernelsConfig> {
        let mut config = KernelManagerConfig::new(root, runtime_dir);
        if let Some(name) = self.default_kernel.clone() {
            config.default_kernel_name = name;
        }
        let cull = self.cull_idle_timeout.unwrap_or(0);
        config.cull_idle_timeout = (cull > 0).then(|| Duration::from_secs(cull));
        let interval = self.cull_interval.unwrap_or(300);
        if interval == 0 {
            anyhow::bail!("--cull-interval must be at least 1 second");
        }
        config.cull_interval = Duration::from_secs(interval);
        config.cull_connected = self.cull_connected.unwrap_or(false);
        config.cull_busy = self.cull_busy.unwrap_or(false);
        config.transport = if self.uses_tcp() {
            TransportKind::Tcp
        } else {
            TransportKind::Ipc
        };
        config.env_remove = env_remove;
        config.reserved_ports = reserved_ports;
        config.restart_limit = self.restart_limit.unwrap_or(5);
        config.client_queue_bytes = super::at_least_1024(
            "kernel-client-queue-bytes",
            self.kernel_client_queue_bytes,
            config.client_queue_bytes,
        )?;
        config.replay_bytes = super::at_least_1024(
            "kernel-replay-bytes",
            self.kernel_replay_bytes,
            config.replay_bytes,
        )?;
        config.input_queue_bytes = super::at_least_1024(
            "kernel-input-queue-bytes",
            self.kernel_input_queue_bytes,
            config.input_queue_bytes,
        )?;
        let max_message_size = super::at_least_1024(
            "kernel-max-message-size",
            self.kernel_max_message_size,
            10 << 20,
        )?;
        config.replay_window = super::at_least_a_second(
            "kernel-replay-window",
            self.kernel_replay_window,
            config.replay_window,
        )?;
        config.write_timeout = super::at_least_a_second(
            "kernel-write-timeout",
            self.kernel_write_timeout,
            config.write_timeout,
        )?;
        if let Some(interval) = self.kernel_heartbeat_interval {
            config.heartbeat_interval = Duration::try_from_secs_f64(interval)
                .ok()
                .filter(|d| *d >= Duration::from_millis(10))
                .ok_or_else(|| {
                    anyhow::anyhow!("--kernel-heartbeat-interval must be at least 0.01 seconds")
                })?;
        }
        match self.kernel_heartbeat_misses {
            Some(0) => anyhow::bail!("--kernel-heartbeat-misses must be at least 1"),
            Some(n) => config.heartbeat_misses = n,
            None => {}
        }
        for entry in self
            .kernel_env_allow
            .into_iter()
            .flatten()
            .filter(|e| !e.is_empty())
        {
            concord_kernels::env::check_allow_entry(&entry)
                .map_err(|e| anyhow::anyhow!("--kernel-env-allow: {e}"))?;
            config.env_allowlist.push(entry);
        }
        Ok(KernelsConfig {
            manager: config,
            kernel_dirs: self.kernel_dir.unwrap_or_default(),
            max_message_size,
        })
    }
}
