//! The supervisor: the small process that starts a kernel or terminal in namespaces of its
//! own and ends its whole process tree.
//!
//! Landlock confines files, but a process on the machine can do more than open files: name
//! other processes in `/proc`, signal them, connect to the Unix sockets of other kernels. So
//! concord does not exec a kernel's command directly; it execs itself in the supervisor role
//! (`concord __supervise`) with a [`Spec`] on fd [`SPEC_FD`]. The supervisor (S):
//!
//! - with [`Namespaces`]: unshares a pid, mount and IPC namespace (and a user namespace
//!   mapping concord's own ids onto themselves when concord is not root, so that it may),
//!   and forks the namespace's init (I). I mounts a `/proc` of the new pid namespace (the
//!   process sees its own processes and no other), lays empty read-only tmpfs over concord's
//!   state and runtime directories (binding back only what this process may use: its own
//!   socket directory, its user's private home), gives it a private `/tmp` and `/dev/shm`,
//!   and forks the target (T);
//! - without: becomes a child subreaper (orphans of the target come back to it) and forks T
//!   itself.
//!
//! T takes a process group of its own (and the terminal's foreground, for a shell), drops
//! every capability but those that reach files (concord as root: files stay Landlock's
//! business, the machine is not the kernel's), enforces the Landlock ruleset concord built
//! (fd [`LANDLOCK_FD`]) and execs the command.
//!
//! S relays the signals concord sends (interrupt, terminate, hang-up, ...) to T's process
//! group, exits with T's status, and ends the whole tree: when T exits, and when concord dies
//! (end of file on the lifeline, fd [`LIFELINE_FD`], whose other end only concord holds). With
//! namespaces the tree ends by itself when I exits (the kernel kills every process of a pid
//! namespace whose init is gone), I dies with S (parent-death signal), and nothing a kernel
//! started, not even a daemon that left its session, survives.
//!
//! S and I are single-threaded and run before anything else in `main`, so they may fork and
//! unshare freely.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, setpgid, tcsetpgrp, ForkResult, Pid};
use serde::{Deserialize, Serialize};

/// The fd on which the supervisor reads its [`Spec`] (JSON).
pub const SPEC_FD: RawFd = 200;
/// The lifeline: the read end of a pipe whose write end only concord holds. End of file on
/// it means concord is gone.
pub const LIFELINE_FD: RawFd = 201;
/// A Landlock ruleset to enforce on the target, when [`Spec::landlock`] is set.
pub const LANDLOCK_FD: RawFd = 202;

/// The argument that selects the supervisor role of the `concord` binary.
pub const SUPERVISOR_ARG: &str = "__supervise";

/// What the supervisor is asked to do.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spec {
    /// The command to run (program first, looked up on `PATH`).
    pub argv: Vec<String>,
    /// Variables removed from the target's environment.
    pub env_remove: Vec<String>,
    /// Namespaces of its own, or only supervision.
    pub namespaces: Option<NamespaceSpec>,
    /// Keep only the capabilities that reach files (for a target running as root).
    pub drop_capabilities: bool,
    /// Run the target as this operating-system account (concord is root).
    pub run_as: Option<Account>,
    /// Enforce the Landlock ruleset on [`LANDLOCK_FD`].
    pub landlock: bool,
    /// Only check that the namespaces can be made (used once at start-up): the init exits
    /// with 0 once the view is mounted.
    pub probe: bool,
}

/// The namespaces and the view of the file system.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamespaceSpec {
    /// Create a user namespace mapping this uid and gid onto themselves (concord not root).
    pub map_user: Option<(u32, u32)>,
    /// Directories laid over with an empty read-only tmpfs.
    pub hide: Vec<PathBuf>,
    /// What stays visible, or appears elsewhere: `source` bound onto `target`. Sources are
    /// opened before anything is hidden.
    pub binds: Vec<Bind>,
    /// Landlock rights (raw `LANDLOCK_ACCESS_FS_*` bits) the target gets on the new `/proc`.
    pub proc_access: u64,
    /// A private tmpfs on `/dev/shm`, and the Landlock rights the target gets on it (0: none).
    pub shm_access: Option<u64>,
}

/// An operating-system account a process runs as.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// One bind mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bind {
    /// What is shown.
    pub source: PathBuf,
    /// Where.
    pub target: PathBuf,
}

/// Signals concord sends that the target must get (through the supervisor and the init).
const RELAYED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Capabilities a target running as root keeps: those that reach files, which Landlock
/// confines. Everything that reaches the machine (mounts, raw sockets, modules, signals to
/// anyone, ptrace, the clock, reboot) goes.
const FILE_CAPABILITIES: [caps::Capability; 5] = [
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_FSETID,
];

/// How the target ended, mirrored by the supervisor's own exit.
enum Ending {
    Code(i32),
    Signal(Signal),
}

/// The supervisor role. Never returns: exits with the target's status (or 126 when it could
/// not be started, with the reason on standard error).
pub fn main() -> ! {
    let ending = match supervise() {
        Ok(ending) => ending,
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "concord: cannot start the process: {why}"
            );
            Ending::Code(126)
        }
    };
    finish(ending)
}

fn finish(ending: Ending) -> ! {
    match ending {
        Ending::Code(code) => std::process::exit(code),
        Ending::Signal(signal) => {
            // Die of the same signal, so that concord sees what the target saw.
            let _ =
                unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = only.thread_unblock();
            let _ = kill(getpid(), signal);
            std::process::exit(128 + signal as i32)
        }
    }
}

fn read_spec() -> Result<Spec, String> {
    // SAFETY: concord put the spec on this fd for us alone; we take ownership and close it.
    let mut file = unsafe { fs::File::from_raw_fd(SPEC_FD) };
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| format!("cannot read the supervisor's spec: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("bad supervisor spec: {e}"))
}

fn relayed_and_child() -> SigSet {
    let mut set = SigSet::empty();
    for s in RELAYED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

fn supervise() -> Result<Ending, String> {
    let spec = read_spec()?;
    if spec.argv.is_empty() && !spec.probe {
        return Err("no command".into());
    }
    // Signals are taken from a signalfd, never by handlers: block them first (the mask is
    // inherited by the init and the target, which restores it before exec).
    let mask = relayed_and_child();
    mask.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    match &spec.namespaces {
        Some(ns) => {
            let mut flags =
                CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
            if ns.map_user.is_some() {
                flags |= CloneFlags::CLONE_NEWUSER;
            }
            unshare(flags).map_err(|e| format!("cannot create namespaces: {e}"))?;
            if let Some((uid, gid)) = ns.map_user {
                map_own_ids(uid, gid)?;
            }
        }
        None => prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot become a subreaper: {e}"))?,
    }
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot read signals: {e}"))?;
    // SAFETY: this process is single-threaded (the supervisor runs before any thread is
    // started), so the child may run any code.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            drop(signals);
            let error = match &spec.namespaces {
                Some(ns) => init(&spec, ns, &mask),
                None => exec_target(&spec),
            };
            let _ = writeln!(
                std::io::stderr(),
                "concord: cannot start the process: {error}"
            );
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(126) }
        }
        ForkResult::Parent { child } => {
            if spec.namespaces.is_none() {
                // Also done by the child; whichever runs first closes the race with a
                // signal relayed to a group that does not exist yet.
                let _ = setpgid(child, child);
            }
            detach_stdio();
            Ok(relay(&spec, child, &signals))
        }
    }
}

/// Map `uid` and `gid` onto themselves in the new user namespace (what an unprivileged
/// process may do for itself).
fn map_own_ids(uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))
}

/// The supervisor and the init hold nothing of the target's terminal or pipes: a shell's
/// terminal must see its end when the shell and its jobs are gone.
fn detach_stdio() {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn lifeline() -> Option<OwnedFd> {
    // SAFETY: concord passes the lifeline on this fd; fcntl only checks that it is open.
    if unsafe { libc::fcntl(LIFELINE_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open and ours alone from now on.
    Some(unsafe { OwnedFd::from_raw_fd(LIFELINE_FD) })
}

/// The supervisor's loop: relay signals, mirror the child's end, end the tree when concord
/// dies.
fn relay(spec: &Spec, child: Pid, signals: &SignalFd) -> Ending {
    let lifeline = lifeline();
    let namespaces = spec.namespaces.is_some();
    loop {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(l) = &lifeline {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return end_tree(child, namespaces),
        }
        let concord_gone = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if concord_gone {
            return end_tree(child, namespaces);
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if signal == Signal::SIGCHLD {
                if let Some(ending) = reap(child) {
                    if !namespaces {
                        end_descendants();
                    }
                    return ending;
                }
            } else if namespaces {
                // The init relays it to the target's group.
                let _ = kill(child, signal);
            } else {
                let _ = killpg(child, signal);
            }
        }
    }
}

/// Reap every exited child; the ending of `main` if it is among them.
fn reap(main: Pid) -> Option<Ending> {
    let mut ending = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => ending = Some(Ending::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                ending = Some(Ending::Signal(signal))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ending,
            Ok(_) => {}
        }
    }
}

/// Concord is gone (or the supervisor cannot go on): end the whole tree.
fn end_tree(child: Pid, namespaces: bool) -> Ending {
    if namespaces {
        // The init's death ends every process of the namespace.
        let _ = kill(child, Signal::SIGKILL);
    } else {
        let _ = killpg(child, Signal::SIGKILL);
        let _ = kill(child, Signal::SIGKILL);
        end_descendants();
    }
    let _ = waitpid(child, None);
    Ending::Signal(Signal::SIGKILL)
}

/// Without a pid namespace: kill what is left below the supervisor (orphans come back to it,
/// a subreaper), until nothing is.
fn end_descendants() {
    let me = getpid().as_raw();
    // Each round kills every child; their own children come back to us for the next round.
    for _ in 0..64 {
        let children = children_of(me);
        for pid in &children {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        while matches!(waitpid(None, Some(WaitPidFlag::WNOHANG)), Ok(s) if s != WaitStatus::StillAlive)
        {
        }
        if children.is_empty() {
            return;
        }
        // Wait for one of them to end (none left to wait for: returns at once).
        let _ = waitpid(None, None);
    }
}

/// Live children of `parent`, from `/proc`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let mut fields = after_name.split_whitespace();
            let state = fields.next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent && state != "Z").then_some(pid)
        })
        .collect()
}

/// The namespace's init: mount the view, start the target, relay signals to its group, reap
/// orphans, and exit when the target does (which ends the namespace).
fn init(spec: &Spec, ns: &NamespaceSpec, mask: &SigSet) -> String {
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        return format!("cannot set the parent-death signal: {e}");
    }
    // A group of its own: concord's signals to the supervisor's group reach the target once,
    // through the supervisor.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if let Err(e) = mount_view(spec, ns) {
        return e;
    }
    if spec.probe {
        std::process::exit(0);
    }
    let signals = match SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => return format!("cannot read signals: {e}"),
    };
    // SAFETY: single-threaded, as the supervisor.
    match unsafe { fork() } {
        Err(e) => format!("cannot fork: {e}"),
        Ok(ForkResult::Child) => {
            drop(signals);
            exec_target(spec)
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = setpgid(child, child);
            detach_stdio();
            // Drop what only the target needed.
            // SAFETY: closing fds this process no longer uses.
            unsafe {
                libc::close(LANDLOCK_FD);
                libc::close(LIFELINE_FD);
            }
            loop {
                match signals.read_signal() {
                    Ok(Some(info)) => {
                        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                            continue;
                        };
                        if signal == Signal::SIGCHLD {
                            match reap(child) {
                                // The init cannot die of a signal: pass it on as 128 + n.
                                Some(Ending::Signal(s)) => std::process::exit(128 + s as i32),
                                Some(Ending::Code(code)) => std::process::exit(code),
                                None => {}
                            }
                        } else {
                            let _ = killpg(child, signal);
                        }
                    }
                    Ok(None) | Err(Errno::EINTR) => {}
                    Err(_) => std::process::exit(126),
                }
            }
        }
    }
}

fn mount_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(Errno) -> String + 'a {
    move |e| format!("cannot {what} {}: {e}", path.display())
}

/// What the target sees of the file system: its own `/proc`, concord's directories hidden,
/// what it may use bound back.
fn mount_view(spec: &Spec, ns: &NamespaceSpec) -> Result<(), String> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(mount_err("make private", Path::new("/")))?;
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), hardened, none)
        .map_err(mount_err("mount a private", Path::new("/proc")))?;
    // Open what stays visible before hiding anything.
    let mut sources = Vec::new();
    for bind in &ns.binds {
        let source = open_path(&bind.source)
            .map_err(|e| format!("cannot open {}: {e}", bind.source.display()))?;
        let is_dir = fs::metadata(&bind.source)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        sources.push((bind, source, is_dir));
    }
    let mut hide: Vec<&PathBuf> = ns.hide.iter().collect();
    hide.sort_by_key(|p| p.components().count());
    let mut hidden = Vec::new();
    for dir in hide {
        // Inside a directory hidden already: nothing left to hide.
        if !dir.is_dir() {
            continue;
        }
        mount(
            Some("tmpfs"),
            dir.as_path(),
            Some("tmpfs"),
            hardened,
            Some("mode=0755,size=64k"),
        )
        .map_err(mount_err("hide", dir))?;
        hidden.push(dir);
    }
    for (bind, source, is_dir) in &sources {
        make_mount_point(&bind.target, *is_dir)?;
        let from = format!("/proc/self/fd/{}", source.as_raw_fd());
        mount(
            Some(from.as_str()),
            bind.target.as_path(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(mount_err("bind", &bind.target))?;
    }
    for dir in hidden {
        mount(
            none,
            dir.as_path(),
            none,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hardened,
            none,
        )
        .map_err(mount_err("make read-only", dir))?;
    }
    if spec.landlock && ns.proc_access != 0 {
        grant(Path::new("/proc"), ns.proc_access)?;
    }
    if let Some(access) = ns.shm_access {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            mount(
                Some("tmpfs"),
                shm,
                Some("tmpfs"),
                hardened,
                Some("mode=1777"),
            )
            .map_err(mount_err("mount a private", shm))?;
            if spec.landlock && access != 0 {
                grant(shm, access)?;
            }
        }
    }
    Ok(())
}

fn open_path(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
}

fn make_mount_point(target: &Path, dir: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot make the mount point {}: {e}", target.display());
    if dir {
        fs::create_dir_all(target).map_err(fail)
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(fail)?;
        }
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map(drop)
            .map_err(fail)
    }
}

/// Add a rule to the Landlock ruleset the target will enforce, for a mount made here (its
/// inode did not exist when concord built the ruleset).
fn grant(path: &Path, access: u64) -> Result<(), String> {
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let dir = open_path(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: the attribute is a valid landlock_path_beneath_attr for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            LANDLOCK_FD,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot grant {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The target: its own process group, fewer capabilities, Landlock, exec. Returns only on
/// error.
fn exec_target(spec: &Spec) -> String {
    let me = getpid();
    let _ = setpgid(me, me);
    // A shell owns its terminal. Taking it from a background group sends SIGTTOU, which
    // would stop us: blocked meanwhile (the mask is cleared before exec).
    // SAFETY: isatty only inspects fd 0.
    if unsafe { libc::isatty(0) } == 1 {
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let _ = ttou.thread_block();
        let _ = tcsetpgrp(std::io::stdin(), me);
    }
    // SAFETY: closing the supervisor's own fd, which the target must not inherit.
    unsafe { libc::close(LIFELINE_FD) };
    if let Some(account) = &spec.run_as {
        if let Err(e) = take_account(account) {
            return e;
        }
    }
    // After any change of account, which clears it.
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        return format!("cannot set the parent-death signal: {e}");
    }
    let root = spec.run_as.as_ref().is_none_or(|a| a.uid == 0);
    if spec.drop_capabilities && root {
        if let Err(e) = keep_file_capabilities() {
            return e;
        }
    }
    if spec.landlock {
        if let Err(e) = prctl::set_no_new_privs() {
            return format!("cannot set no_new_privs: {e}");
        }
        // SAFETY: the ruleset fd was passed by concord; the call takes an fd and flags.
        let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, LANDLOCK_FD, 0u32) };
        if rc != 0 {
            return format!(
                "cannot enforce Landlock: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: the ruleset is enforced; the fd is no longer needed.
        unsafe { libc::close(LANDLOCK_FD) };
    }
    for name in &spec.env_remove {
        // Single-threaded: changing the environment is sound.
        std::env::remove_var(name);
    }
    let argv: Result<Vec<CString>, _> = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect();
    let Ok(argv) = argv else {
        return "the command contains a NUL byte".into();
    };
    let Some(program) = argv.first() else {
        return "no command".into();
    };
    if let Err(e) = SigSet::empty().thread_set_mask() {
        return format!("cannot restore the signal mask: {e}");
    }
    match nix::unistd::execvp(program, &argv) {
        Err(e) => format!("cannot run {}: {e}", spec.argv[0]),
        Ok(never) => match never {},
    }
}

/// Take the account's groups and ids, for good (real, effective and saved): a process that is
/// not root keeps no capability.
fn take_account(account: &Account) -> Result<(), String> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let groups: Vec<Gid> = account.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| format!("cannot set the groups of uid {}: {e}", account.uid))?;
    let gid = Gid::from_raw(account.gid);
    setresgid(gid, gid, gid).map_err(|e| format!("cannot take gid {}: {e}", account.gid))?;
    let uid = Uid::from_raw(account.uid);
    setresuid(uid, uid, uid).map_err(|e| format!("cannot take uid {}: {e}", account.uid))
}

fn keep_file_capabilities() -> Result<(), String> {
    use caps::CapSet;
    let keep: HashSet<caps::Capability> = FILE_CAPABILITIES.into_iter().collect();
    let supported = caps::runtime::thread_all_supported();
    for cap in supported.iter().filter(|c| !keep.contains(c)) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| format!("cannot drop {cap} from the bounding set: {e}"))?;
    }
    let _ = caps::clear(None, CapSet::Ambient);
    caps::set(None, CapSet::Inheritable, &HashSet::new())
        .map_err(|e| format!("cannot clear inheritable capabilities: {e}"))?;
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("cannot read capabilities: {e}"))?;
    let kept: HashSet<caps::Capability> = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Effective, &kept)
        .map_err(|e| format!("cannot set effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &kept)
        .map_err(|e| format!("cannot set permitted capabilities: {e}"))
}
