//! From a user's view to real paths (`build`), and from real paths to a Landlock ruleset
//! (`prepare`).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use concord_authz::{FilesystemView, FsGrant};

use crate::{ConfineConfig, ConfineError, ConfinementPlan, LaunchExtras, PreparedConfinement};

/// The access one rule grants (on a directory: to everything below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAccess {
    /// Read files, list directories.
    ReadOnly,
    /// Read, list and execute.
    ReadExec,
    /// Read, list, execute, and create, write, truncate, rename and remove files and
    /// directories (no device nodes).
    ReadWrite,
    /// Create, write, truncate, rename and remove, without reading.
    WriteOnly,
    /// Read and write device files, with their ioctls; list `/dev/pts`.
    Device,
    /// Create Unix sockets (only).
    MakeSocket,
}

/// One path of a plan and what it is granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRule {
    /// The real path (no symbolic link in it).
    pub path: PathBuf,
    /// What is granted.
    pub access: RuleAccess,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ConfineError + 'a {
    move |source| ConfineError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A path to leave out of a grant: alone, or with everything below it.
#[derive(Clone, Debug)]
struct Hole {
    path: PathBuf,
    subtree: bool,
}

/// Grant `dir` minus `holes`: the whole of it when no hole is inside; otherwise, since
/// Landlock cannot carve holes, each existing entry that avoids them, recursively along the
/// holes' paths (`dir` itself, and so creating entries directly in it, is then not granted).
/// Symbolic links met while splitting are skipped: their target was not judged.
fn split(dir: &Path, holes: &[Hole], out: &mut Vec<PathBuf>, skipped_links: &mut usize) {
    if holes.iter().any(|h| h.subtree && dir.starts_with(&h.path)) {
        return;
    }
    if !holes.iter().any(|h| h.path.starts_with(dir)) {
        out.push(dir.to_path_buf());
        return;
    }
    if !dir.is_dir() {
        // The path itself is an exact hole.
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    children.sort();
    for child in children {
        match fs::symlink_metadata(&child) {
            Ok(meta) if meta.file_type().is_symlink() => *skipped_links += 1,
            Ok(_) => split(&child, holes, out, skipped_links),
            Err(_) => {}
        }
    }
}

/// Existing, canonical forms of `paths` (symbolic links followed), minus protected ones.
fn system_paths(paths: &[PathBuf], protected: &[PathBuf], notes: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let holes: Vec<Hole> = protected
        .iter()
        .map(|p| Hole {
            path: p.clone(),
            subtree: true,
        })
        .collect();
    let mut links = 0;
    for path in paths {
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if holes.iter().any(|h| h.path.starts_with(&real)) {
            notes.push(format!(
                "{} contains concord's own state: only the parts around it are granted",
                real.display()
            ));
        }
        split(&real, &holes, &mut out, &mut links);
    }
    out.sort();
    out.dedup();
    out
}

fn expand(
    grants: &[FsGrant],
    root: &Path,
    protected: &[PathBuf],
    notes: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for grant in grants {
        let expected = root.join(grant.scope.path.api_path());
        let shown = grant.scope.path.as_str();
        let real = match expected.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                notes.push(format!(
                    "{shown} does not exist yet: not available until a process is started after it is created"
                ));
                continue;
            }
            Err(e) => {
                notes.push(format!("{shown}: {e}: left out"));
                continue;
            }
        };
        if real != expected {
            notes.push(format!(
                "{shown} is or lies under a symbolic link: left out (the API judges it by its target)"
            ));
            continue;
        }
        if protected.iter().any(|p| real.starts_with(p)) {
            notes.push(format!("{shown} is concord's own state: left out"));
            continue;
        }
        if !grant.scope.subtree {
            if real.is_dir() {
                notes.push(format!(
                    "{shown} is granted alone, without what is below it: Landlock cannot grant a directory without its contents, so it is left out"
                ));
            } else {
                out.push(real);
            }
            continue;
        }
        let mut holes: Vec<Hole> = grant
            .except
            .iter()
            .map(|e| Hole {
                path: root.join(e.path.api_path()),
                subtree: e.subtree,
            })
            .collect();
        holes.extend(
            protected
                .iter()
                .filter(|p| p.starts_with(&real))
                .map(|p| Hole {
                    path: p.clone(),
                    subtree: true,
                }),
        );
        if holes.iter().any(|h| h.path.starts_with(&real)) {
            notes.push(format!(
                "{shown}/** has denied or protected paths inside: granted as the existing entries around them (new entries beside them cannot be created)"
            ));
        }
        let mut links = 0;
        split(&real, &holes, &mut out, &mut links);
        if links > 0 {
            notes.push(format!(
                "{links} symbolic link(s) beside denied paths under {shown} left out"
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn private_dir(path: &Path) -> Result<PathBuf, ConfineError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io("cannot create", path))?;
    // An existing directory keeps its mode; make sure it is private.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io("cannot make private", path))?;
    path.canonicalize().map_err(io("cannot resolve", path))
}

fn covered(path: &Path, by: &[PathBuf]) -> bool {
    by.iter().any(|b| path.starts_with(b))
}

pub(crate) fn build(
    view: &FilesystemView,
    root: &Path,
    username: &str,
    config: &ConfineConfig,
) -> Result<ConfinementPlan, ConfineError> {
    if username.is_empty()
        || username == "."
        || username == ".."
        || username.contains('/')
        || username.contains('\0')
    {
        return Err(ConfineError::BadUsername(username.to_string()));
    }
    let root = root
        .canonicalize()
        .map_err(io("cannot resolve the root directory", root))?;
    let protected: Vec<PathBuf> = config
        .protected
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let mut notes = Vec::new();
    let read = expand(&view.read, &root, &protected, &mut notes);
    let write = expand(&view.write, &root, &protected, &mut notes);
    let read_write: Vec<PathBuf> = write
        .iter()
        .filter(|w| covered(w, &read))
        .cloned()
        .collect();
    let write_only: Vec<PathBuf> = write
        .iter()
        .filter(|w| !covered(w, &read))
        .cloned()
        .collect();
    let read_only: Vec<PathBuf> = read
        .into_iter()
        .filter(|r| !read_write.contains(r))
        .collect();
    let user_dir = config.private_dir.join(username);
    let home = private_dir(&user_dir.join("home"))?;
    let tmp = private_dir(&user_dir.join("tmp"))?;
    // The private directory sits in concord's state: protect it, but not the user's own.
    Ok(ConfinementPlan {
        read_only,
        read_write,
        write_only,
        exec: system_paths(&config.exec_paths, &protected, &mut notes),
        system_read: system_paths(&config.read_paths, &protected, &mut notes),
        devices: system_paths(&config.device_paths, &protected, &mut notes),
        extra_write: system_paths(&config.extra_write_paths, &protected, &mut notes),
        tmp,
        home,
        net: config.net.clone(),
        notes,
    })
}

pub(crate) fn rules(plan: &ConfinementPlan) -> Vec<PlanRule> {
    let with = |paths: &[PathBuf], access| {
        paths
            .iter()
            .map(move |p| PlanRule {
                path: p.clone(),
                access,
            })
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    out.extend(with(&plan.exec, RuleAccess::ReadExec));
    out.extend(with(&plan.system_read, RuleAccess::ReadOnly));
    out.extend(with(&plan.devices, RuleAccess::Device));
    out.extend(with(&plan.extra_write, RuleAccess::ReadWrite));
    out.extend(with(&plan.read_only, RuleAccess::ReadExec));
    out.extend(with(&plan.read_write, RuleAccess::ReadWrite));
    out.extend(with(&plan.write_only, RuleAccess::WriteOnly));
    out.extend(with(
        &[plan.home.clone(), plan.tmp.clone()],
        RuleAccess::ReadWrite,
    ));
    out
}

/// The Landlock rights of `access` on a kernel with Landlock `abi`.
#[cfg(target_os = "linux")]
fn access_flags(access: RuleAccess, abi: u32) -> landlock::BitFlags<landlock::AccessFs> {
    use landlock::{make_bitflags, AccessFs, BitFlags};
    let ioctl: BitFlags<AccessFs> = if abi >= 5 {
        AccessFs::IoctlDev.into()
    } else {
        BitFlags::EMPTY
    };
    let read = make_bitflags!(AccessFs::{ReadFile | ReadDir});
    let exec = read | AccessFs::Execute;
    let write = make_bitflags!(AccessFs::{WriteFile | Truncate | MakeReg | MakeDir | MakeSym
        | MakeFifo | MakeSock | RemoveFile | RemoveDir | Refer});
    match access {
        RuleAccess::ReadOnly => read,
        RuleAccess::ReadExec => exec,
        RuleAccess::ReadWrite => exec | write,
        RuleAccess::WriteOnly => write,
        RuleAccess::Device => read | AccessFs::WriteFile | AccessFs::Truncate | ioctl,
        RuleAccess::MakeSocket => AccessFs::MakeSock.into(),
    }
}

/// The raw Landlock bits of `access` on this kernel (for rules the supervisor adds).
#[cfg(target_os = "linux")]
pub(crate) fn access_bits(access: RuleAccess) -> u64 {
    access_flags(access, crate::status().abi).bits()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn access_bits(_access: RuleAccess) -> u64 {
    0
}

#[cfg(target_os = "linux")]
pub(crate) fn prepare(
    plan: &ConfinementPlan,
    extras: &LaunchExtras,
) -> Result<PreparedConfinement, ConfineError> {
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, Ruleset,
        RulesetAttr, RulesetCreatedAttr, Scope, ABI,
    };
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let status = crate::status();
    if !status.available {
        return Err(ConfineError::Unavailable(status.detail));
    }
    let restrict_net = plan.net.is_some();
    if restrict_net && !status.network {
        return Err(ConfineError::Unavailable(format!(
            "network rules need Landlock ABI {} (Linux 6.7); this kernel has ABI {}",
            crate::NET_ABI,
            status.abi
        )));
    }
    // Only ask for what the kernel has, and insist on all of it (hard requirement): a
    // silently weaker sandbox is worse than an error.
    let abi = if status.abi >= 5 { ABI::V5 } else { ABI::V3 };
    let err = |e: landlock::RulesetError| ConfineError::Ruleset(e.to_string());

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if status.abi >= crate::SCOPE_ABI {
        // Signals and abstract Unix sockets stay within the process's own domain: no signal
        // to other users' processes or to concord, no connection to another domain's
        // abstract sockets.
        ruleset = ruleset
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(err)?;
    }
    if restrict_net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(ABI::V4))
            .map_err(err)?;
    }
    let mut created = ruleset.create().map_err(err)?;
    let mut all = rules(plan);
    all.extend(extras.read_files.iter().map(|p| PlanRule {
        path: p.canonicalize().unwrap_or_else(|_| p.clone()),
        access: RuleAccess::ReadOnly,
    }));
    all.extend(extras.socket_dirs.iter().map(|p| PlanRule {
        path: p.canonicalize().unwrap_or_else(|_| p.clone()),
        access: RuleAccess::MakeSocket,
    }));
    for rule in all {
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&rule.path)
        {
            Ok(f) => f,
            // Gone since planning: nothing to grant.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                continue
            }
            Err(e) => return Err(io("cannot open", &rule.path)(e)),
        };
        // The path may have been swapped for a link since planning: grant only what was
        // planned.
        let opened = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok();
        if opened.as_deref() != Some(rule.path.as_path()) {
            tracing::warn!(path = %rule.path.display(), "path changed since planning: not granted");
            continue;
        }
        let is_dir = file
            .metadata()
            .map_err(io("cannot inspect", &rule.path))?
            .is_dir();
        let mut access = access_flags(rule.access, status.abi);
        if !is_dir {
            access &= AccessFs::from_file(abi);
        }
        if access.is_empty() {
            continue;
        }
        created = created
            .add_rule(PathBeneath::new(file, access))
            .map_err(err)?;
    }
    if let Some(net) = &plan.net {
        for port in net.bind_tcp.iter().chain(&extras.bind_tcp) {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::BindTcp))
                .map_err(err)?;
        }
        for port in &net.connect_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(err)?;
        }
    }
    Ok(PreparedConfinement {
        ruleset: Some(created),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn prepare(
    _plan: &ConfinementPlan,
    _extras: &LaunchExtras,
) -> Result<PreparedConfinement, ConfineError> {
    Err(ConfineError::Unavailable(crate::status().detail))
}
