//! Operating-system confinement of kernels and terminals with Landlock.
//!
//! The server turns a user's [`FilesystemView`] (what the policy lets them read and write)
//! into a [`ConfinementPlan`]: concrete directories and files on disk, plus what the
//! interpreter and the shell need to run, a private home and temporary directory for the
//! user, and never any of concord's own state. Right before a process is spawned the plan is
//! [prepared](ConfinementPlan::prepare) in the parent — every path is opened and the
//! Landlock ruleset is built there — so the child only has to call
//! [`PreparedConfinement::apply`] between fork and exec (one `prctl` and one system call).
//!
//! This crate knows nothing of policies: it takes paths.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use concord_authz::{FilesystemView, FsGrant};

mod launch;
mod plan;
mod status;
pub mod supervisor;

pub use launch::{
    give, probe_namespaces, Namespaces, PreExec, PreparedLaunch, Sandbox, Supervision,
};
pub use plan::{PlanRule, RuleAccess};
pub use status::{status, LandlockStatus, MIN_ABI, NET_ABI, SCOPE_ABI};
pub use supervisor::Account;

/// Why confinement could not be planned, prepared or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Landlock is missing or older than [`MIN_ABI`] (or [`NET_ABI`] for network rules).
    #[error("Landlock is unavailable: {0}")]
    Unavailable(String),
    /// The username cannot name a private directory.
    #[error("username {0:?} cannot name a directory")]
    BadUsername(String),
    /// A file-system operation failed while planning.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Landlock crate refused the ruleset.
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(String),
}

/// What to do when Landlock cannot confine a kernel or terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnconfinedPolicy {
    /// Refuse to start the process (the safe default).
    #[default]
    Refuse,
    /// Start it unconfined and log a warning.
    Warn,
}

impl UnconfinedPolicy {
    /// The setting's word.
    pub fn as_str(self) -> &'static str {
        match self {
            UnconfinedPolicy::Refuse => "refuse",
            UnconfinedPolicy::Warn => "warn",
        }
    }
}

impl fmt::Display for UnconfinedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnconfinedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(UnconfinedPolicy::Refuse),
            "warn" => Ok(UnconfinedPolicy::Warn),
            other => Err(format!(
                "unknown unconfined policy {other:?} (expected refuse or warn)"
            )),
        }
    }
}

/// TCP restrictions (Landlock ABI 4, Linux 6.7): when set, a confined process may bind and
/// connect only to these ports (plus, for a kernel, the ports of its own connection file).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct NetRule {
    /// Ports the process may bind.
    pub bind_tcp: Vec<u16>,
    /// Ports the process may connect to (on any host).
    pub connect_tcp: Vec<u16>,
}

/// What every confined process may use besides its user's files. Build it once from the
/// server's settings; [`ConfineConfig::new`] fills in the system defaults.
#[derive(Clone, Debug)]
pub struct ConfineConfig {
    /// Read and execute: install prefixes of interpreters and shells, system libraries.
    pub exec_paths: Vec<PathBuf>,
    /// Read only: configuration files and kernel interfaces programs need (`/etc/…`, `/proc`).
    pub read_paths: Vec<PathBuf>,
    /// Read and write, with device ioctls: `/dev/null`, `/dev/tty`, `/dev/pts`, …
    pub device_paths: Vec<PathBuf>,
    /// Extra read-write paths an admin adds (e.g. `/dev/shm` for multiprocessing).
    pub extra_write_paths: Vec<PathBuf>,
    /// Where per-user private directories live (`<dir>/<username>/home`, `…/tmp`); it is
    /// inside concord's state directory, and only the user's own directory is granted.
    pub private_dir: PathBuf,
    /// Concord's own state: never granted, even when a user's view or a system path contains
    /// it (state and runtime directories, users and audit databases, cookie secret, policy
    /// and config files).
    pub protected: Vec<PathBuf>,
    /// TCP restrictions, if any.
    pub net: Option<NetRule>,
}

/// Directories Python and bash need to run, beyond the interpreter's own prefix.
pub const DEFAULT_EXEC_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Files and directories read by the dynamic loader, libc (users, hosts, time zone, locale),
/// TLS clients, bash and readline; `/proc` and the CPU list for `os.cpu_count()` and friends.
pub const DEFAULT_READ_PATHS: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/default/locale",
    "/etc/os-release",
    "/etc/bash.bashrc",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/inputrc",
    "/etc/terminfo",
    "/etc/environment",
    "/etc/fonts",
    "/proc",
    "/sys/devices/system/cpu",
];

/// Device files a shell and an interpreter use.
pub const DEFAULT_DEVICE_PATHS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

impl ConfineConfig {
    /// The system defaults, per-user directories under `private_dir`, and `protected` never
    /// granted.
    pub fn new(private_dir: PathBuf, protected: Vec<PathBuf>) -> Self {
        ConfineConfig {
            exec_paths: DEFAULT_EXEC_PATHS.iter().map(PathBuf::from).collect(),
            read_paths: DEFAULT_READ_PATHS.iter().map(PathBuf::from).collect(),
            device_paths: DEFAULT_DEVICE_PATHS.iter().map(PathBuf::from).collect(),
            extra_write_paths: Vec::new(),
            private_dir,
            protected,
            net: None,
        }
    }

    /// Add an interpreter's install prefixes (read and execute), as it reports them:
    /// `sys.prefix` and `sys.base_prefix` for Python (a venv and the Python it was made
    /// from). Runs `python` once.
    pub fn add_python_prefixes(&mut self, python: &Path) -> Result<Vec<PathBuf>, ConfineError> {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import sys; print(sys.prefix); print(sys.base_prefix); print(sys.exec_prefix); print(sys.base_exec_prefix)",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| ConfineError::Io {
                what: "cannot run",
                path: python.to_path_buf(),
                source,
            })?;
        if !out.status.success() {
            return Err(ConfineError::Io {
                what: "cannot ask for its prefixes",
                path: python.to_path_buf(),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        let mut added = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let prefix = PathBuf::from(line.trim());
            if prefix.is_absolute() && !self.exec_paths.contains(&prefix) {
                self.exec_paths.push(prefix.clone());
                added.push(prefix);
            }
        }
        Ok(added)
    }
}

/// Everything a confined process may touch, as real paths; built per process start from the
/// user's view at that moment (policy changes apply to processes started afterwards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfinementPlan {
    /// Paths of the user's view that they may read only.
    pub read_only: Vec<PathBuf>,
    /// Paths of the user's view that they may read and write.
    pub read_write: Vec<PathBuf>,
    /// Paths of the user's view that they may write without reading (rare policies).
    pub write_only: Vec<PathBuf>,
    /// Interpreter and system paths (read and execute).
    pub exec: Vec<PathBuf>,
    /// System files (read only).
    pub system_read: Vec<PathBuf>,
    /// Devices (read, write, ioctl).
    pub devices: Vec<PathBuf>,
    /// Extra read-write paths from the configuration.
    pub extra_write: Vec<PathBuf>,
    /// The user's private temporary directory (`TMPDIR`).
    pub tmp: PathBuf,
    /// The user's private home directory (`HOME`).
    pub home: PathBuf,
    /// TCP restrictions, if any.
    pub net: Option<NetRule>,
    /// What the plan left out and why (symbolic links, missing paths, protected state).
    pub notes: Vec<String>,
}

/// What one launch adds to a plan: a kernel's connection file and ports.
#[derive(Clone, Debug, Default)]
pub struct LaunchExtras {
    /// Files the process may read (e.g. the kernel's connection file).
    pub read_files: Vec<PathBuf>,
    /// TCP ports it may bind when the network is restricted (its ZMQ channels).
    pub bind_tcp: Vec<u16>,
    /// Directories where it may create Unix sockets, and nothing else (IPC transport).
    pub socket_dirs: Vec<PathBuf>,
    /// Paths inside concord's hidden directories that this process must still see (a
    /// kernel's own directory in the runtime directory), when it runs in namespaces.
    pub visible: Vec<PathBuf>,
}

impl ConfinementPlan {
    /// Plan for `username` whose view is `view`, with contents under `root`. Creates the
    /// user's private home and tmp under `config.private_dir` (mode 0700).
    pub fn build(
        view: &FilesystemView,
        root: &Path,
        username: &str,
        config: &ConfineConfig,
    ) -> Result<ConfinementPlan, ConfineError> {
        plan::build(view, root, username, config)
    }

    /// Environment the process should get: `HOME`, `TMPDIR` (and `TMP`, `TEMP`), and
    /// `JUPYTER_RUNTIME_DIR` / `IPYTHONDIR` inside the private home, so nothing tries to
    /// write where it may not.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let home = self.home.as_os_str().to_os_string();
        let tmp = self.tmp.as_os_str().to_os_string();
        vec![
            ("HOME".into(), home),
            ("TMPDIR".into(), tmp.clone()),
            ("TMP".into(), tmp.clone()),
            ("TEMP".into(), tmp),
            (
                "JUPYTER_RUNTIME_DIR".into(),
                self.home.join(".local/share/jupyter/runtime").into(),
            ),
            ("IPYTHONDIR".into(), self.home.join(".ipython").into()),
        ]
    }

    /// Every rule of the plan with the access it gets, in the order they are added.
    pub fn rules(&self) -> Vec<PlanRule> {
        plan::rules(self)
    }

    /// Open every path and build the Landlock ruleset, in the parent. The result's
    /// [`apply`](PreparedConfinement::apply) is what the child runs before exec.
    pub fn prepare(&self, extras: &LaunchExtras) -> Result<PreparedConfinement, ConfineError> {
        plan::prepare(self, extras)
    }
}

/// A ruleset ready to be enforced; one per process start.
pub struct PreparedConfinement {
    #[cfg(target_os = "linux")]
    ruleset: Option<landlock::RulesetCreated>,
}

impl fmt::Debug for PreparedConfinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedConfinement")
    }
}

impl PreparedConfinement {
    /// The ruleset's descriptor, for a supervisor to enforce on its target.
    pub fn into_fd(mut self) -> Option<std::os::fd::OwnedFd> {
        #[cfg(target_os = "linux")]
        {
            self.ruleset
                .take()
                .and_then(Option::<std::os::fd::OwnedFd>::from)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Enforce the ruleset on the calling process (and everything it will execute). Meant for
    /// `pre_exec`: it only sets `no_new_privs` and calls `landlock_restrict_self`, with no
    /// allocation. Calling it twice is an error (the ruleset is consumed).
    pub fn apply(&mut self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let Some(ruleset) = self.ruleset.take() else {
                return Err(std::io::Error::from_raw_os_error(libc::EALREADY));
            };
            match ruleset.restrict_self() {
                Ok(status) if status.ruleset == landlock::RulesetStatus::FullyEnforced => Ok(()),
                // Hard requirements make partial enforcement an error while building; this
                // is a last line of defence.
                Ok(_) => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                Err(_) => Err(std::io::Error::last_os_error()),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
        }
    }
}

/// One line per grant of a view (`read /projects/a/** except /projects/a/secret/**`), for
/// `concord policy check` and logs.
pub fn describe_view(view: &FilesystemView) -> Vec<String> {
    fn one(kind: &str, g: &FsGrant) -> String {
        let mut s = format!("{kind} {}", g.scope);
        if !g.except.is_empty() {
            let except: Vec<String> = g.except.iter().map(ToString::to_string).collect();
            s.push_str(&format!(" except {}", except.join(", ")));
        }
        s
    }
    view.read
        .iter()
        .map(|g| one("read", g))
        .chain(view.write.iter().map(|g| one("write", g)))
        .collect()
}
