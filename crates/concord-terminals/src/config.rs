//! What an administrator configures about terminals. Nothing here comes from a client.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Terminal settings: the shell and its environment, limits, culling and buffers.
#[derive(Clone, Debug)]
pub struct TerminalConfig {
    /// The program and its arguments (`["/bin/bash", "-l"]`). Never taken from a request.
    pub shell_command: Vec<String>,
    /// Whether the shell inherits the server's environment (terminado does). Remove
    /// secrets you do not want shells to see with `env_remove`.
    pub inherit_env: bool,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// Variables set for every shell, after `TERM` (so `TERM` can be overridden here), e.g.
    /// `JUPYTER_SERVER_ROOT` and `JUPYTER_SERVER_URL` as jupyter_server_terminals sets them.
    pub env: BTreeMap<String, String>,
    /// The value of `TERM` (terminado: `xterm-256color`, what xterm.js understands).
    pub term_type: String,
    /// Starting directory when `create` is given none (the server's root directory).
    pub default_cwd: PathBuf,
    /// At most this many terminals at once, all users together (`None`: no limit).
    pub max_terminals: Option<usize>,
    /// At most this many terminals per owner (`None`: no limit).
    pub max_terminals_per_user: Option<usize>,
    /// Terminals with no input or output for this long are ended (`None`: never), as
    /// jupyter_server_terminals' `cull_inactive_timeout`.
    pub cull_inactive_timeout: Option<Duration>,
    /// How often idle terminals are looked for (`cull_interval`, default 300 s).
    pub cull_interval: Duration,
    /// Output kept for clients that attach later (bytes of text; oldest dropped first;
    /// at most half of `client_queue_limit_bytes`).
    pub history_limit_bytes: usize,
    /// Output waiting to be sent to one client; a client further behind is disconnected
    /// so that it never holds up the shell or the other clients.
    pub client_queue_limit_bytes: usize,
    /// How long [`crate::serve_client`] waits for a client's socket to take a frame
    /// before closing it as not reading.
    pub write_timeout: Duration,
    /// Keystrokes (bytes) waiting for the shell to read them, all clients together; a
    /// typist beyond waits (back-pressure on that socket only).
    pub input_queue_bytes: usize,
    /// How long each step of ending a terminal (SIGHUP, SIGTERM, SIGKILL) waits for the
    /// processes to go before the next, harsher step.
    pub kill_grace: Duration,
}

impl TerminalConfig {
    /// jupyter_server_terminals' default shell: `$SHELL` (or `sh`), with `-l` when the
    /// server does not run in a terminal, so that `/etc/profile` and the like are read.
    pub fn default_shell_command() -> Vec<String> {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "sh".to_string());
        let mut command = vec![shell];
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            command.push("-l".to_string());
        }
        command
    }

    /// Defaults for a shell started in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TerminalConfig {
            shell_command: Self::default_shell_command(),
            inherit_env: true,
            env_remove: Vec::new(),
            env: BTreeMap::new(),
            term_type: "xterm-256color".to_string(),
            default_cwd: root.into(),
            max_terminals: None,
            max_terminals_per_user: None,
            cull_inactive_timeout: None,
            cull_interval: Duration::from_secs(300),
            history_limit_bytes: 512 * 1024,
            client_queue_limit_bytes: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            input_queue_bytes: 1024 * 1024,
            kill_grace: Duration::from_secs(2),
        }
    }
}
