//! `[terminals]`: the options of the terminals service and their merge into its
//! [`TerminalConfig`].

use concord_terminals::TerminalConfig;
use std::path::Path;
use std::time::Duration;

/// Terminal options: `--terminal-shell …` on the command line, `[terminals]` in the
/// config file.
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
pub struct TerminalsOptions {
    /// The shell, split like a command line ("/bin/bash -l"). Default: $SHELL (or sh),
    /// with -l when concord does not run in a terminal, as jupyter_server_terminals.
    #[arg(long = "terminal-shell", env = "CONCORD_TERMINAL_SHELL")]
    #[serde(default)]
    pub shell: Option<String>,
    /// At most this many terminals at once, all users together (0: no limit).
    #[arg(long = "max-terminals", env = "CONCORD_MAX_TERMINALS")]
    #[serde(default)]
    pub max_terminals: Option<usize>,
    /// At most this many terminals per user (0: no limit).
    #[arg(
        long = "max-terminals-per-user",
        env = "CONCORD_MAX_TERMINALS_PER_USER"
    )]
    #[serde(default)]
    pub max_terminals_per_user: Option<usize>,
    /// End terminals idle for this many seconds (0: never), as `cull_inactive_timeout`.
    #[arg(
        long = "terminals-cull-inactive-timeout",
        env = "CONCORD_TERMINALS_CULL_INACTIVE_TIMEOUT"
    )]
    #[serde(default)]
    pub cull_inactive_timeout: Option<u64>,
    /// How often to look for idle terminals, in seconds (default 300).
    #[arg(
        long = "terminals-cull-interval",
        env = "CONCORD_TERMINALS_CULL_INTERVAL"
    )]
    #[serde(default)]
    pub cull_interval: Option<u64>,
    /// Output queued for one terminal websocket before it is closed (1008) as too slow, in
    /// bytes (default 4 MiB).
    #[arg(
        long = "terminal-client-queue-bytes",
        env = "CONCORD_TERMINAL_CLIENT_QUEUE_BYTES"
    )]
    #[serde(default)]
    pub client_queue_bytes: Option<usize>,
    /// Recent output kept per terminal for clients that attach later, in bytes (default
    /// 512 KiB; at most half the client queue).
    #[arg(
        long = "terminal-history-bytes",
        env = "CONCORD_TERMINAL_HISTORY_BYTES"
    )]
    #[serde(default)]
    pub history_bytes: Option<usize>,
    /// Keystrokes waiting for a shell to read them, in bytes; a typist beyond waits
    /// (default 1 MiB).
    #[arg(
        long = "terminal-input-queue-bytes",
        env = "CONCORD_TERMINAL_INPUT_QUEUE_BYTES"
    )]
    #[serde(default)]
    pub input_queue_bytes: Option<usize>,
    /// Seconds a terminal websocket may take to accept a frame before it is closed (1008)
    /// as not reading (default 30).
    #[arg(
        long = "terminal-write-timeout",
        env = "CONCORD_TERMINAL_WRITE_TIMEOUT"
    )]
    #[serde(default)]
    pub write_timeout: Option<u64>,
    /// The largest websocket message a terminal client may send, in bytes; larger closes
    /// the socket with 1009 (default 1 MiB).
    #[arg(
        long = "terminal-max-message-size",
        env = "CONCORD_TERMINAL_MAX_MESSAGE_SIZE"
    )]
    #[serde(default)]
    pub max_message_size: Option<usize>,
}

super::layered!(TerminalsOptions {
    shell,
    max_terminals,
    max_terminals_per_user,
    cull_inactive_timeout,
    cull_interval,
    client_queue_bytes,
    history_bytes,
    input_queue_bytes,
    write_timeout,
    max_message_size,
});

/// The largest websocket message a terminal client may send unless configured: a paste of
/// a megabyte is already far more than anyone types.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The terminals service's configuration.
#[derive(Clone, Debug)]
pub struct TerminalsConfig {
    /// The terminal manager's.
    pub manager: TerminalConfig,
    /// The largest websocket message a client may send.
    pub max_message_size: usize,
}

impl TerminalsOptions {
    /// The terminals service's configuration (defaults applied, values checked) for shells
    /// started in `root`, which do not inherit the variables named in `env_remove`.
    pub fn resolve(self, root: &Path, env_remove: Vec<String>) -> anyhow::Result<TerminalsConfig> {
        let mut config = TerminalConfig::new(root);
        if let Some(shell) = self.shell {
            let words = shlex::split(&shell)
                .filter(|words| !words.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("terminal shell {shell:?} is not a valid command")
                })?;
            config.shell_command = words;
        }
        let limit = |n: Option<usize>| n.filter(|&n| n > 0);
        config.max_terminals = limit(self.max_terminals);
        config.max_terminals_per_user = limit(self.max_terminals_per_user);
        config.cull_inactive_timeout = self
            .cull_inactive_timeout
            .filter(|&s| s > 0)
            .map(Duration::from_secs);
        if let Some(seconds) = self.cull_interval.filter(|&s| s > 0) {
            config.cull_interval = Duration::from_secs(seconds);
        }
        config.client_queue_limit_bytes = super::at_least_1024(
            "terminal-client-queue-bytes",
            self.client_queue_bytes,
            config.client_queue_limit_bytes,
        )?;
        if let Some(n) = self.history_bytes {
            config.history_limit_bytes = n;
        }
        config.input_queue_bytes = super::at_least_1024(
            "terminal-input-queue-bytes",
            self.input_queue_bytes,
            config.input_queue_bytes,
        )?;
        config.write_timeout = super::at_least_a_second(
            "terminal-write-timeout",
            self.write_timeout,
            config.write_timeout,
        )?;
        // What jupyter_server_terminals gives every shell.
        config
            .env
            .insert("JUPYTER_SERVER_ROOT".into(), root.display().to_string());
        // Concord's own settings (the token among them) are not the shell's business.
        config.env_remove = env_remove;
        let max_message_size = super::at_least_1024(
            "terminal-max-message-size",
            self.max_message_size,
            DEFAULT_MAX_MESSAGE_SIZE,
        )?;
        Ok(TerminalsConfig {
            manager: config,
            max_message_size,
        })
    }
}
