//! `writable` decided from `statx` data (`write_check::WriteCheck`) must agree with `access(2)`
//! (jupyter_server's `os.access(path, W_OK)`) wherever it decides at all: every mode, for
//! owners, group members (primary and supplementary) and others, with POSIX ACLs and the
//! immutable flag. As root, other users are probed in forked children with their ids.

use concord_contents::dirents::EntryStat;
use concord_contents::write_check::{access_writable_in, WriteCheck};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Which entries `WriteCheck` decided, and where it disagreed with `faccessat`.
#[derive(Debug, Default)]
struct Tally {
    decided: usize,
    left_to_access: usize,
    disagreements: Vec<String>,
}

/// Compare the check with `faccessat` for every entry of `dir`, as the current process.
fn compare(dir: &Path) -> (Tally, bool) {
    let handle = fs::File::open(dir).expect("open the fixture directory");
    let check = WriteCheck::for_dir(&handle);
    let mut tally = Tally::default();
    for entry in fs::read_dir(dir).expect("list the fixture directory") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_str().expect("fixture names are UTF-8").to_string();
        let c = CString::new(name.clone()).expect("no NUL in names");
        let stat = EntryStat::at(&handle, &c, false).expect("statx of a fixture entry");
        let truth = access_writable_in(&handle, &name);
        match check.decide(&stat) {
            Some(decided) => {
                tally.decided += 1;
                if decided != truth {
                    tally.disagreements.push(format!(
                        "{name} (mode {:o}, owner {}:{}): decided {decided}, access says {truth}",
                        stat.mode, stat.uid, stat.gid
                    ));
                }
            }
            None => tally.left_to_access += 1,
        }
        assert_eq!(check.writable(&handle, &name, &stat), truth, "{name}");
    }
    (tally, check.enabled())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Files and directories in every mode (and, as root, with several owners).
fn fixture(dir: &Path, owners: &[(u32, u32)]) {
    for &(uid, gid) in owners {
        for mode in 0..0o1000u32 {
            let p = dir.join(format!("f-{uid}-{gid}-{mode:03o}"));
            fs::write(&p, "x").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            if euid() == 0 {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        for mode in [
            0o755, 0o555, 0o775, 0o757, 0o700, 0o070, 0o007, 0o000, 0o1777,
        ] {
            let p = dir.join(format!("d-{uid}-{gid}-{mode:04o}"));
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            if euid() == 0 {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
    }
}

/// One ACL entry: tag, permission bits, id.
type AclEntry = (u16, u16, u32);

/// A POSIX access ACL in the kernel's xattr format.
fn set_acl(path: &Path, entries: &[AclEntry]) {
    let mut value = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        value.extend_from_slice(&tag.to_le_bytes());
        value.extend_from_slice(&perm.to_le_bytes());
        value.extend_from_slice(&id.to_le_bytes());
    }
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let name = CString::new("system.posix_acl_access").unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        );
    }
}

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Files whose ACL names user 1000 (allowed, refused, masked).
fn acl_fixture(dir: &Path) {
    let cases: [(&str, &[AclEntry]); 3] = [
        (
            "acl-user-refused",
            &[
                (USER_OBJ, 6, UNDEFINED_ID),
                (USER, 0, 1000),
                (GROUP_OBJ, 4, UNDEFINED_ID),
                (MASK, 6, UNDEFINED_ID),
                (OTHER, 6, UNDEFINED_ID),
            ],
        ),
        (
            "acl-user-allowed",
            &[
                (USER_OBJ, 6, UNDEFINED_ID),
                (USER, 6, 1000),
                (GROUP_OBJ, 0, UNDEFINED_ID),
                (MASK, 6, UNDEFINED_ID),
                (OTHER, 0, UNDEFINED_ID),
            ],
        ),
        (
            "acl-masked",
            &[
                (USER_OBJ, 6, UNDEFINED_ID),
                (USER, 6, 1000),
                (GROUP_OBJ, 4, UNDEFINED_ID),
                (MASK, 0, UNDEFINED_ID),
                (OTHER, 4, UNDEFINED_ID),
            ],
        ),
    ];
    for (name, acl) in cases {
        let p = dir.join(name);
        fs::write(&p, "x").unwrap();
        if euid() == 0 {
            std::os::unix::fs::chown(&p, Some(3000), Some(3000)).unwrap();
        }
        set_acl(&p, acl);
    }
}

const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Set or clear the immutable flag (root only); whether it worked.
fn set_immutable(path: &Path, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: `f` is open and `flags` a writable long for the ioctl.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return false;
    }
    flags = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    // SAFETY: as above.
    unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) == 0 }
}

/// Run `compare(dir)` in a child with the given real and effective ids and groups; the
/// child reports its tally through a pipe.
fn compare_as(dir: &Path, uid: u32, gid: u32, groups: &[u32]) -> (usize, usize, Vec<String>) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only changes its credentials, runs the comparison (system calls and
    // allocation, which glibc keeps usable after fork) and exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain system calls with valid arguments; `_exit` never returns.
        unsafe {
            libc::close(fds[0]);
            let ok = libc::setgroups(groups.len(), groups.as_ptr()) == 0
                && libc::setresgid(gid, gid, gid) == 0
                && libc::setresuid(uid, uid, uid) == 0;
            let report = if ok {
                let outcome = std::panic::catch_unwind(|| compare(dir));
                match outcome {
                    Ok((t, _)) => format!(
                        "{} {}\n{}",
                        t.decided,
                        t.left_to_access,
                        t.disagreements.join("\n")
                    ),
                    Err(_) => "0 0\nthe comparison panicked".to_string(),
                }
            } else {
                "0 0\ncould not switch credentials".to_string()
            };
            let mut out = fs::File::from_raw_fd(fds[1]);
            let _ = std::io::Write::write_all(&mut out, report.as_bytes());
            drop(out);
            libc::_exit(0);
        }
    }
    // SAFETY: fds[1] is ours to close; fds[0] becomes owned by the File.
    unsafe { libc::close(fds[1]) };
    let mut report = String::new();
    // SAFETY: fds[0] is an open descriptor no one else owns.
    let mut pipe = unsafe { fs::File::from_raw_fd(fds[0]) };
    pipe.read_to_string(&mut report).unwrap();
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let (head, rest) = report.split_once('\n').unwrap_or((&report, ""));
    let mut counts = head.split(' ').map(|n| n.parse::<usize>().unwrap_or(0));
    let decided = counts.next().unwrap_or(0);
    let left = counts.next().unwrap_or(0);
    let problems = rest
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (decided, left, problems)
}

#[test]
fn writable_from_status_agrees_with_access() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("entries");
    fs::create_dir(&dir).unwrap();
    // Other users must be able to reach the entries.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let root = euid() == 0;
    let owners: Vec<(u32, u32)> = if root {
        vec![
            (0, 0),
            (1000, 1000),
            (1000, 2000),
            (2000, 1000),
            (3000, 3000),
            (65534, 65534),
        ]
    } else {
        let me = fs::metadata(tmp.path()).unwrap();
        vec![(me.uid(), me.gid())]
    };
    fixture(&dir, &owners);
    // Where the file system keeps no ACLs these are plain files.
    acl_fixture(&dir);
    let immutable = dir.join("immutable");
    fs::write(&immutable, "x").unwrap();
    let is_immutable = root && set_immutable(&immutable, true);

    let (tally, enabled) = compare(&dir);
    assert!(tally.disagreements.is_empty(), "{:#?}", tally.disagreements);
    if enabled {
        // Our own entries at least are decided without asking again.
        assert!(tally.decided >= 512, "{tally:?}");
    }
    if is_immutable {
        let handle = fs::File::open(&dir).unwrap();
        let c = CString::new("immutable").unwrap();
        let stat = EntryStat::at(&handle, &c, false).unwrap();
        assert_eq!(WriteCheck::for_dir(&handle).decide(&stat), None);
        assert!(!access_writable_in(&handle, "immutable"));
    }

    if root {
        let users: [(u32, u32, &[u32]); 4] = [
            (1000, 1000, &[1000]),
            (1000, 3000, &[2000]),
            (2000, 2000, &[]),
            (4000, 4000, &[1000, 3000]),
        ];
        for (uid, gid, groups) in users {
            let (decided, _left, problems) = compare_as(&dir, uid, gid, groups);
            assert!(
                problems.is_empty(),
                "as {uid}:{gid} {groups:?}: {problems:#?}"
            );
            if enabled {
                assert!(decided > 0, "as {uid}:{gid}: nothing was decided");
            }
        }
    }
    if is_immutable {
        set_immutable(&immutable, false);
    }
}
