//! Whether the process may write an entry (`os.access(path, W_OK)`, what jupyter_server
//! reports as `writable`): asked of the kernel, or, for the entries of a listing, decided
//! from the status already read when that is as certain as asking.

use rustix::fs::{Access, AtFlags, StatxAttributes};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::dirents::EntryStat;

/// Whether the process may write `path` (`os.access(path, W_OK)`).
pub fn access_writable(path: &Path) -> bool {
    rustix::fs::access(path, Access::WRITE_OK).is_ok()
}

/// Whether the process may write the entry `name` of the open directory `dir`
/// (`os.access(dir/name, W_OK)` without walking the directory's path again).
pub fn access_writable_in(dir: &fs::File, name: &str) -> bool {
    rustix::fs::accessat(dir, name, Access::WRITE_OK, AtFlags::empty()).is_ok()
}

/// Decides `os.access(entry, W_OK)` — what jupyter_server reports as `writable` — for the
/// entries of one directory from their `statx` data, as the kernel's generic permission
/// check would; an entry whose answer is not certain that way is asked with `faccessat`.
///
/// Certain means: the directory's mount is writable and its file system (ext2/3/4, XFS,
/// tmpfs) uses the generic check, no security module that vets each inode access
/// (SELinux, Smack) is active, and the entry is on that same mount, not immutable and not
/// owned by an unmapped id. Then `access(2)`, which uses the *real* uid, gid and the
/// supplementary groups, allows a write when:
/// - the caller is real root holding `CAP_DAC_OVERRIDE`: always;
/// - the caller owns the entry: the owner's `w` bit (ACLs never apply to the owner);
/// - otherwise, with no group bits (so no ACL is consulted): the group's `w` bit for a
///   member of the entry's group, else the others' `w` bit.
///
/// A refusal is certain only when no capability could override it.
pub struct WriteCheck {
    /// Whether this directory's entries can be decided from their status at all.
    enabled: bool,
    dir_dev: u64,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// Real root with `CAP_DAC_OVERRIDE`: every mode allows a write.
    overrides: bool,
    /// Some `CAP_DAC_OVERRIDE` is held: a refusal by mode may not be final.
    may_override: bool,
    overflow: (u32, u32),
}

impl WriteCheck {
    /// The check for the entries of the open directory `dir`.
    pub fn for_dir(dir: &fs::File) -> WriteCheck {
        let generic =
            rustix::fs::fstatfs(dir).is_ok_and(|info| GENERIC_PERMISSION_FS.contains(&info.f_type));
        let writable_mount = rustix::fs::fstatvfs(dir)
            .is_ok_and(|info| !info.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        let fs_ok = generic && writable_mount;
        let dir_dev = dir.metadata().map(|m| m.dev()).ok();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let groups = supplementary_groups();
        let (effective, permitted) = dac_override_capability();
        WriteCheck {
            enabled: fs_ok && dir_dev.is_some() && groups.is_some() && !inode_lsm_active(),
            dir_dev: dir_dev.unwrap_or(0),
            uid,
            gid,
            groups: groups.unwrap_or_default(),
            overrides: uid == 0 && effective && permitted,
            may_override: effective || (uid == 0 && permitted),
            overflow: overflow_ids(),
        }
    }

    /// Whether any entry of this directory can be decided from its status (else every
    /// entry is asked with `faccessat`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `Some(writable)` when the entry's status decides it as surely as `access(2)`;
    /// `None` when only `access(2)` can tell.
    pub fn decide(&self, st: &EntryStat) -> Option<bool> {
        let reported = StatxAttributes::IMMUTABLE | StatxAttributes::MOUNT_ROOT;
        if !self.enabled
            || !st.attributes_mask.contains(reported)
            || st.attributes.intersects(reported)
            || st.dev != self.dir_dev
            || st.uid == self.overflow.0
            || st.gid == self.overflow.1
        {
            return None;
        }
        if self.overrides {
            return Some(true);
        }
        let allowed = if st.uid == self.uid {
            st.mode & 0o200 != 0
        } else if st.mode & 0o070 != 0 {
            // Group bits may be an ACL's mask: the ACL decides.
            return None;
        } else if st.gid == self.gid || self.groups.contains(&st.gid) {
            false
        } else {
            st.mode & 0o002 != 0
        };
        match allowed {
            false if self.may_override => None,
            _ => Some(allowed),
        }
    }

    /// Whether the process may write the entry `name` of `dir` whose status is `st`:
    /// decided from `st` when certain, else asked with `faccessat`.
    pub fn writable(&self, dir: &fs::File, name: &str, st: &EntryStat) -> bool {
        self.decide(st)
            .unwrap_or_else(|| access_writable_in(dir, name))
    }
}

/// File systems whose permission check is the kernel's generic one (mode bits, POSIX ACLs,
/// capabilities) and whose `statx` reports the immutable and mount-root attributes.
const GENERIC_PERMISSION_FS: [i64; 3] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // XFS
    0x0102_1994, // tmpfs
];

fn supplementary_groups() -> Option<Vec<u32>> {
    let groups = rustix::process::getgroups().ok()?;
    Some(groups.into_iter().map(|g| g.as_raw()).collect())
}

/// Whether `CAP_DAC_OVERRIDE` is in the process's effective and permitted sets (`access(2)`
/// gives real root its permitted set). Unknown counts as held: refusals are then checked.
fn dac_override_capability() -> (bool, bool) {
    use rustix::thread::CapabilitySet;
    match rustix::thread::capabilities(None) {
        Ok(sets) => (
            sets.effective.contains(CapabilitySet::DAC_OVERRIDE),
            sets.permitted.contains(CapabilitySet::DAC_OVERRIDE),
        ),
        Err(_) => (true, false),
    }
}

/// Whether a security module that vets every inode permission check (SELinux, Smack) is
/// active: its refusals are not visible in the mode bits. Decided once per process.
fn inode_lsm_active() -> bool {
    static ACTIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let listed = fs::read_to_string("/sys/kernel/security/lsm")
            .map(|l| {
                l.split(',')
                    .any(|m| matches!(m.trim(), "selinux" | "smack"))
            })
            .unwrap_or(false);
        // Inside a container the list may be hidden: look for the modules' own traces.
        let context = fs::read_to_string("/proc/self/attr/current")
            .map(|c| c.contains(':'))
            .unwrap_or(false);
        listed
            || context
            || Path::new("/sys/fs/selinux/enforce").exists()
            || Path::new("/sys/fs/smackfs").exists()
            || fs::read_to_string("/proc/self/attr/selinux/current").is_ok_and(|c| !c.is_empty())
            || fs::read_to_string("/proc/self/attr/smack/current").is_ok_and(|c| !c.is_empty())
    })
}

/// The uid and gid `statx` shows for an id unmapped in this user namespace (writes to
/// such an inode are refused whatever its mode).
fn overflow_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        let read = |p: &str| {
            fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(65534)
        };
        (
            read("/proc/sys/kernel/overflowuid"),
            read("/proc/sys/kernel/overflowgid"),
        )
    })
}
