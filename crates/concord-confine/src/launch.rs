//! How a kernel or terminal is started: the [`Sandbox`] of its owner (a Landlock plan, the
//! supervisor and its namespaces) turned into a command line, an environment and what the
//! child does between fork and exec.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::supervisor::{
    Account, Bind, NamespaceSpec, Spec, LANDLOCK_FD, LIFELINE_FD, SPEC_FD, SUPERVISOR_ARG,
};
use crate::{ConfineError, ConfinementPlan, LaunchExtras, PreparedConfinement, RuleAccess};

/// How processes of one owner start. The default starts them directly, unconfined.
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    /// What the process may touch on disk (Landlock); `None`: not confined.
    pub plan: Option<Arc<ConfinementPlan>>,
    /// The supervisor and its namespaces; `None`: the command is executed directly.
    pub supervision: Option<Arc<Supervision>>,
    /// The operating-system account the process runs as (concord is root and maps its
    /// users to accounts); `None`: concord's own.
    pub account: Option<Account>,
}

/// The supervisor, as the server configures it once.
#[derive(Clone, Debug)]
pub struct Supervision {
    /// The program in the supervisor role and its arguments (concord itself:
    /// `/proc/self/exe __supervise`).
    pub program: PathBuf,
    /// Arguments that select the role.
    pub args: Vec<OsString>,
    /// Namespaces of its own for each process; `None`: supervision only (the process tree
    /// still ends with the process and with concord).
    pub namespaces: Option<Namespaces>,
    /// Keep only the capabilities that reach files (concord runs as root).
    pub drop_capabilities: bool,
}

/// The namespaces' settings.
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    /// Concord is not root: a user namespace maps its uid and gid onto themselves.
    pub map_user: Option<(u32, u32)>,
    /// Concord's directories no process may see (state, runtime).
    pub hide: Vec<PathBuf>,
}

impl Supervision {
    /// Concord's own binary in the supervisor role.
    pub fn concord(namespaces: Option<Namespaces>) -> Supervision {
        Supervision {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![SUPERVISOR_ARG.into()],
            namespaces,
            // SAFETY: geteuid has no preconditions.
            drop_capabilities: unsafe { libc::geteuid() } == 0,
        }
    }
}

impl Namespaces {
    /// The settings for a concord running as the current user: a user namespace unless it
    /// is root.
    pub fn for_current_user(hide: Vec<PathBuf>) -> Namespaces {
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Namespaces {
            map_user: (uid != 0).then_some((uid, gid)),
            hide,
        }
    }
}

/// A command ready to be spawned.
#[derive(Debug)]
pub struct PreparedLaunch {
    /// What to execute.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables to add to its environment.
    pub env: Vec<(OsString, OsString)>,
    /// What the child runs between fork and exec.
    pub pre_exec: PreExec,
}

/// What the child runs between fork and exec ([`PreExec::run`]).
#[derive(Debug)]
pub enum PreExec {
    /// Nothing, or enforce Landlock on the process itself.
    Direct(Option<PreparedConfinement>),
    /// Put the supervisor's descriptors at their numbers.
    Supervised(Vec<(OwnedFd, RawFd)>),
}

impl PreExec {
    /// Run in the child, between fork and exec: only system calls, no allocation.
    pub fn run(&mut self) -> std::io::Result<()> {
        match self {
            PreExec::Direct(None) => Ok(()),
            PreExec::Direct(Some(prepared)) => prepared.apply(),
            PreExec::Supervised(fds) => {
                // Every source is first copied above the destinations (a source may sit on
                // a destination's number), then put in place without close-on-exec.
                let mut moved = [-1; 4];
                for (slot, (source, _)) in moved.iter_mut().zip(fds.iter()) {
                    // SAFETY: duplicating an open descriptor.
                    let fd = unsafe { libc::fcntl(source.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 300) };
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    *slot = fd;
                }
                for (fd, (_, target)) in moved.iter().zip(fds.iter()) {
                    // SAFETY: dup2 onto a number this child reserves for the supervisor.
                    if unsafe { libc::dup2(*fd, *target) } < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // SAFETY: closing the copy made above.
                    unsafe { libc::close(*fd) };
                }
                Ok(())
            }
        }
    }
}

/// The read end of a pipe whose write end concord keeps, open and close-on-exec, for as long
/// as it lives: supervisors see its end when concord dies, however it dies.
fn lifeline() -> Result<RawFd, ConfineError> {
    static LIFELINE: OnceLock<Result<(OwnedFd, OwnedFd), String>> = OnceLock::new();
    let pipe = LIFELINE.get_or_init(|| {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 fills the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: both descriptors were just created and are owned here.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    });
    match pipe {
        Ok((read, _write)) => Ok(read.as_raw_fd()),
        Err(e) => Err(ConfineError::Ruleset(format!(
            "cannot make the lifeline pipe: {e}"
        ))),
    }
}

/// The spec in an anonymous memory file (a pipe could fill up and block).
fn spec_file(spec: &Spec) -> Result<OwnedFd, ConfineError> {
    let text = serde_json::to_vec(spec).map_err(|e| ConfineError::Ruleset(e.to_string()))?;
    let fail = |e: std::io::Error| ConfineError::Io {
        what: "cannot pass the supervisor's spec",
        path: PathBuf::from("memfd"),
        source: e,
    };
    // SAFETY: the name is a valid C string; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"concord-supervisor-spec".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptor was just created and is owned here.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&text).map_err(fail)?;
    use std::io::Seek;
    file.rewind().map_err(fail)?;
    Ok(OwnedFd::from(file))
}

impl Sandbox {
    /// Unconfined, started directly.
    pub fn direct() -> Sandbox {
        Sandbox::default()
    }

    /// Confined by `plan`, started directly (no supervisor).
    pub fn confined(plan: Arc<ConfinementPlan>) -> Sandbox {
        Sandbox {
            plan: Some(plan),
            supervision: None,
            account: None,
        }
    }

    /// The command that starts `argv` in this sandbox, with what `extras` adds for this one
    /// launch (a kernel's connection file, ports and socket directory).
    pub fn prepare(
        &self,
        argv: &[String],
        extras: &LaunchExtras,
    ) -> Result<PreparedLaunch, ConfineError> {
        let prepared = match &self.plan {
            Some(plan) => Some(plan.prepare(extras)?),
            None => None,
        };
        let env = self.plan.as_ref().map(|p| p.env()).unwrap_or_default();
        if let (Some(account), Some(plan)) = (&self.account, &self.plan) {
            // The user's private home and tmp become the account's.
            give(&[plan.home.as_path(), plan.tmp.as_path()], account)?;
            if let Some(user_dir) = plan.home.parent() {
                give(&[user_dir], account)?;
            }
        }
        let Some(supervision) = &self.supervision else {
            if self.account.is_some() {
                return Err(ConfineError::Ruleset(
                    "running a process as another account needs the supervisor".into(),
                ));
            }
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| ConfineError::Ruleset("no command".into()))?;
            return Ok(PreparedLaunch {
                program: program.into(),
                args: args.iter().map(OsString::from).collect(),
                env,
                pre_exec: PreExec::Direct(prepared),
            });
        };
        let spec = Spec {
            argv: argv.to_vec(),
            env_remove: if supervision.namespaces.is_some() {
                // ipykernel polls JPY_PARENT_PID and exits when its parent looks like
                // init, which the namespace's init is: no parent to poll in a namespace
                // (the supervisor ends the kernel when concord goes).
                vec!["JPY_PARENT_PID".into()]
            } else {
                Vec::new()
            },
            namespaces: supervision
                .namespaces
                .as_ref()
                .map(|ns| self.namespace_spec(ns, extras)),
            drop_capabilities: supervision.drop_capabilities,
            run_as: self.account.clone(),
            landlock: prepared.is_some(),
            probe: false,
        };
        let mut fds = vec![(spec_file(&spec)?, SPEC_FD)];
        let lifeline = lifeline()?;
        // SAFETY: the lifeline is open for the whole life of the process; the duplicate is
        // owned by this launch and closed with it.
        let lifeline = unsafe { libc::fcntl(lifeline, libc::F_DUPFD_CLOEXEC, 0) };
        if lifeline < 0 {
            return Err(ConfineError::Ruleset(format!(
                "cannot pass the lifeline: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: just created by fcntl.
        fds.push((unsafe { OwnedFd::from_raw_fd(lifeline) }, LIFELINE_FD));
        if let Some(ruleset) = prepared.and_then(PreparedConfinement::into_fd) {
            fds.push((ruleset, LANDLOCK_FD));
        }
        Ok(PreparedLaunch {
            program: supervision.program.clone().into(),
            args: supervision.args.clone(),
            env,
            pre_exec: PreExec::Supervised(fds),
        })
    }

    fn namespace_spec(&self, ns: &Namespaces, extras: &LaunchExtras) -> NamespaceSpec {
        let mut binds: Vec<Bind> = extras
            .visible
            .iter()
            .map(|p| {
                // The supervisor runs in the process's working directory: absolute paths.
                let p = p.canonicalize().unwrap_or_else(|_| p.clone());
                Bind {
                    source: p.clone(),
                    target: p,
                }
            })
            .collect();
        let (mut proc_access, mut shm_access) = (0, Some(0));
        if let Some(plan) = &self.plan {
            // The user's private directory (home, tmp) lives in concord's state.
            if let Some(user_dir) = plan.home.parent() {
                binds.push(Bind {
                    source: user_dir.to_path_buf(),
                    target: user_dir.to_path_buf(),
                });
            }
            proc_access = crate::plan::access_bits(RuleAccess::ReadOnly);
            // Shared memory of its own (users must not meet in /dev/shm), unless something
            // the process uses lies below it.
            let shm = Path::new("/dev/shm");
            let below = |p: &Path| p != shm && p.starts_with(shm);
            if plan.rules().iter().any(|r| below(&r.path))
                || extras.visible.iter().any(|p| below(p))
            {
                shm_access = None;
            } else if plan.extra_write.iter().any(|p| p == shm) {
                shm_access = Some(crate::plan::access_bits(RuleAccess::ReadWrite));
            }
        }
        NamespaceSpec {
            map_user: ns.map_user,
            hide: ns.hide.clone(),
            binds,
            proc_access,
            shm_access,
        }
    }
}

/// Make `paths` belong to `account` (what the process it runs must use as its own).
pub fn give(paths: &[&Path], account: &Account) -> Result<(), ConfineError> {
    for path in paths {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(|source| {
            ConfineError::Io {
                what: "cannot give to the user's account",
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Whether namespaces can be made here: runs the supervisor once in probe mode (it makes
/// the namespaces and mounts the view, then exits). `Err` says why not.
pub fn probe_namespaces(supervision: &Supervision) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let Some(ns) = &supervision.namespaces else {
        return Ok(());
    };
    let spec = Spec {
        namespaces: Some(NamespaceSpec {
            map_user: ns.map_user,
            hide: ns.hide.clone(),
            ..NamespaceSpec::default()
        }),
        probe: true,
        ..Spec::default()
    };
    let spec = spec_file(&spec).map_err(|e| e.to_string())?;
    let mut pre_exec = PreExec::Supervised(vec![(spec, SPEC_FD)]);
    let mut cmd = std::process::Command::new(&supervision.program);
    cmd.args(&supervision.args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: `run` only makes system calls (fcntl, dup2, close).
    unsafe {
        cmd.pre_exec(move || pre_exec.run());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", supervision.program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let why = why
        .trim()
        .trim_start_matches("concord: cannot start the process: ")
        .to_string();
    Err(if why.is_empty() {
        format!("the supervisor failed ({})", out.status)
    } else {
        why
    })
}
