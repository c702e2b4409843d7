//! `[confine]`: the options of the confinement of kernels and terminals, merged.

use concord_confine::UnconfinedPolicy;
use std::path::PathBuf;

/// `[confine]` options (command line, environment, config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfineOptions {
    /// Confine kernels and terminals with Landlock to what their user may touch (default true).
    #[arg(long = "confine", env = "CONCORD_CONFINE")]
    pub enabled: Option<bool>,
    /// When Landlock is unavailable: `refuse` to start kernels and terminals (default) or
    /// start them unconfined with a `warn`ing.
    #[arg(long = "unconfined-policy", env = "CONCORD_UNCONFINED_POLICY")]
    pub unconfined_policy: Option<UnconfinedPolicy>,
    /// Extra read-and-execute paths for confined processes (other interpreters' prefixes).
    #[arg(
        long = "confine-exec-path",
        env = "CONCORD_CONFINE_EXEC_PATHS",
        value_delimiter = ','
    )]
    pub exec_paths: Option<Vec<PathBuf>>,
    /// Extra read-write paths for confined processes (e.g. /dev/shm).
    #[arg(
        long = "confine-write-path",
        env = "CONCORD_CONFINE_WRITE_PATHS",
        value_delimiter = ','
    )]
    pub write_paths: Option<Vec<PathBuf>>,
    /// Restrict TCP: only these ports may be connected to (plus a kernel's own ports bound);
    /// empty list = no TCP at all. Unset = no restriction with the IPC kernel transport, and
    /// 80,443 with the TCP one (other kernels' ports are never reachable). Needs Landlock
    /// ABI 4.
    #[arg(
        long = "confine-tcp-connect",
        env = "CONCORD_CONFINE_TCP_CONNECT",
        value_delimiter = ','
    )]
    pub tcp_connect: Option<Vec<u16>>,
    /// Run each user's kernels and terminals as an operating-system account (concord must
    /// be root): `same-name` (the account named as the user), or `USER=ACCOUNT` /
    /// `USER=UID:GID` entries. A user without one may not start kernels or terminals.
    /// Unset: every process runs as concord's own account.
    #[arg(
        long = "confine-os-users",
        env = "CONCORD_CONFINE_OS_USERS",
        value_delimiter = ','
    )]
    pub os_users: Option<Vec<String>>,
}

super::layered!(ConfineOptions {
    enabled,
    unconfined_policy,
    exec_paths,
    write_paths,
    tcp_connect,
    os_users,
});

/// The confinement's configuration.
#[derive(Clone, Debug)]
pub struct ConfineSettings {
    /// Whether kernels and terminals are confined.
    pub enabled: bool,
    /// What to do when a protection is not available on this machine.
    pub unconfined_policy: UnconfinedPolicy,
    /// Extra read-and-execute paths.
    pub exec_paths: Vec<PathBuf>,
    /// Extra read-write paths.
    pub write_paths: Vec<PathBuf>,
    /// The TCP ports confined processes may connect to; `None`: TCP is not restricted.
    pub tcp_connect: Option<Vec<u16>>,
    /// `--confine-os-users` entries (empty: every process runs as concord's account).
    pub os_users: Vec<String>,
}

impl ConfineOptions {
    /// The confinement's configuration; with the TCP kernel transport (where other
    /// kernels listen on loopback ports) TCP is restricted to the web's ports by default.
    pub fn resolve(self, tcp_kernels: bool) -> ConfineSettings {
        ConfineSettings {
            enabled: self.enabled.unwrap_or(true),
            unconfined_policy: self.unconfined_policy.unwrap_or_default(),
            exec_paths: self.exec_paths.unwrap_or_default(),
            write_paths: self.write_paths.unwrap_or_default(),
            tcp_connect: self
                .tcp_connect
                .or_else(|| tcp_kernels.then(|| vec![80, 443])),
            os_users: self.os_users.unwrap_or_default(),
        }
    }
}
