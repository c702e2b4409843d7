//! Finding and ending every process a terminal started.
//!
//! A shell with job control puts each job in its own process group, and a user can
//! double-fork or `setsid` a daemon, so "the shell's process group" alone is not enough. A
//! terminal's family is every live process that is in the shell's session, in its process
//! group, or descends from the shell (the shell is made a child subreaper, so orphans of
//! its jobs are re-parented to it rather than to init while it lives).

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;

/// One line of `/proc/<pid>/stat`, the fields we need.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub zombie: bool,
}

/// Parse `/proc/<pid>/stat`. The command name is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(pid: i32, stat: &str) -> Option<ProcEntry> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(ProcEntry {
        pid,
        ppid,
        pgrp,
        session,
        zombie: state == "Z" || state == "X",
    })
}

/// Every process visible in `/proc` (processes that vanish while we read are skipped).
pub(crate) fn scan() -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        parse_stat(pid, &stat)
    })
    .collect()
}

/// Which members of the family to report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Members {
    /// Processes that can still run (zombies excluded).
    Live,
    /// Live processes and zombies still waiting for their parent to reap them.
    LiveAndZombies,
    /// Live processes outside the shell's own process group: its jobs and daemons.
    LiveJobs,
    /// Live processes in the shell's own process group: its subshells (prompt helpers,
    /// command substitutions), which share its job table.
    LiveInShellGroup,
}

/// The processes that belong to the terminal whose shell is `leader`, without the leader
/// itself.
pub(crate) fn family(leader: i32, members: Members) -> Vec<i32> {
    let all = scan();
    let parent_of: HashMap<i32, i32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    let descends_from_leader = |mut pid: i32| {
        // Bounded walk up the parent chain (a chain longer than the pid space is a cycle
        // caused by reading /proc while processes come and go).
        for _ in 0..4096 {
            match parent_of.get(&pid) {
                Some(&parent) if parent == leader => return true,
                Some(&parent) if parent > 1 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    all.iter()
        .filter(|p| p.pid != leader)
        .filter(|p| members == Members::LiveAndZombies || !p.zombie)
        .filter(|p| match members {
            Members::LiveJobs => p.pgrp != leader,
            Members::LiveInShellGroup => p.pgrp == leader,
            Members::Live | Members::LiveAndZombies => true,
        })
        .filter(|p| p.session == leader || p.pgrp == leader || descends_from_leader(p.pid))
        .map(|p| p.pid)
        .collect()
}

/// Send `signal` to each pid; processes that are already gone or not ours are skipped.
pub(crate) fn signal_each(pids: &[i32], signal: Signal) {
    for &pid in pids {
        if pid > 1 {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(error) => {
                    tracing::debug!(pid, %signal, %error, "could not signal terminal process")
                }
            }
        }
    }
}

/// Send `signal` to one process.
pub(crate) fn signal_one(pid: i32, signal: Signal) {
    signal_each(&[pid], signal);
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let entry = parse_stat(42, "42 (a b) (c)) S 7 42 40 34816 42 4194560 0 0").unwrap();
        assert_eq!(
            (entry.ppid, entry.pgrp, entry.session, entry.zombie),
            (7, 42, 40, false)
        );
        let zombie = parse_stat(9, "9 (sleep) Z 1 9 9 0 -1").unwrap();
        assert!(zombie.zombie);
        assert!(parse_stat(1, "garbage").is_none());
    }

    #[test]
    fn scan_sees_this_process() {
        let me = std::process::id() as i32;
        assert!(super::scan().iter().any(|p| p.pid == me));
    }
}
