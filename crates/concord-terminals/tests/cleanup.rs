//! No process survives a deleted terminal or a server shutdown: jobs, stubborn processes
//! that ignore SIGHUP and SIGTERM, double-forked and `setsid` daemons.

mod common;

use common::*;
use concord_terminals::{CloseKind, ErrorKind, ServerFrame, TerminalAccess, TerminalManager};

/// Start five kinds of leftover in the terminal, tagged with `tag` (a unique number), and
/// wait until all are running. Returns their pids.
async fn start_leftovers(manager: &TerminalManager, name: &str, tag: u32) -> Vec<i32> {
    let (input, mut output) = manager
        .attach(name, "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    let script = format!(
        "sleep {tag}1 &\r\
         nohup sleep {tag}2 >/dev/null 2>&1 &\r\
         bash -c 'trap \"\" HUP TERM; sleep {tag}3' &\r\
         (sleep {tag}4 &)\r\
         setsid sleep {tag}5 &\r\
         sleep {tag}6\r"
    );
    input.handle_text(&stdin(&script)).await.unwrap();
    let markers: Vec<String> = (1..=6).map(|i| format!("sleep {tag}{i}")).collect();
    eventually("every leftover is running", || {
        markers.iter().all(|m| !pids_running(m).is_empty())
    })
    .await;
    // Stop the foreground job with Ctrl-Z: a stopped job must still be ended.
    input.handle_text(&stdin("\u{1a}")).await.unwrap();
    let stopped = pids_running(&markers[5]);
    eventually("the foreground job is stopped", || {
        stopped.iter().all(|&pid| process_state(pid) == Some('T'))
    })
    .await;
    drop(input);
    // Drain what is already there so the client does not hold anything up.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(10), output.next()).await;
    markers.iter().flat_map(|m| pids_running(m)).collect()
}

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z, …).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn assert_all_gone(pgid: i32, pids: &[i32]) {
    assert!(
        !exists(-pgid),
        "the shell's process group {pgid} still exists"
    );
    for &pid in pids {
        assert!(!exists(pid), "process {pid} is left over (or a zombie)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_no_process() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    let info = manager.create(owner("alice"), None).await.unwrap();
    let pgid = info.pid as i32;
    let tag = 900_000 + std::process::id() % 1000 * 10;
    let pids = start_leftovers(&manager, "1", tag).await;
    assert!(pids.len() >= 6, "{pids:?}");
    assert!(exists(-pgid));
    let (_input, mut watching) = manager
        .attach("1", "bob", TerminalAccess::Watch)
        .unwrap()
        .into_split();

    manager.delete("1").await.unwrap();
    // An attached client is told the terminal ended, then closed.
    let (frames, close) = read_to_close(&mut watching).await;
    assert_eq!(frames.last(), Some(&serde_json::json!(["disconnect", 1])));
    assert!(
        matches!(close, ServerFrame::Close(ref reason) if reason.kind == CloseKind::TerminalEnded),
        "{close:?}"
    );
    assert_all_gone(pgid, &pids);
    assert!(manager.list().is_empty());
    assert_eq!(
        manager.delete("1").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_all_leaves_no_process_and_refuses_new_terminals() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    let first = manager.create(owner("alice"), None).await.unwrap();
    let second = manager.create(owner("bob"), None).await.unwrap();
    let tag = 800_000 + std::process::id() % 1000 * 10;
    let mut pids = start_leftovers(&manager, "1", tag).await;
    // The second shell ignores SIGHUP and SIGTERM itself: only SIGKILL ends it.
    {
        let (input, mut output) = manager
            .attach("2", "bob", TerminalAccess::Type)
            .unwrap()
            .into_split();
        input
            .handle_text(&stdin("trap '' HUP TERM; echo TRAPPED$((3+4))\r"))
            .await
            .unwrap();
        read_until(&mut output, "TRAPPED7").await;
    }
    pids.extend(start_leftovers(&manager, "2", tag + 7).await);

    manager.shutdown_all().await;
    assert_all_gone(first.pid as i32, &pids);
    assert_all_gone(second.pid as i32, &[]);
    assert!(manager.list().is_empty());
    assert_eq!(
        manager
            .create(owner("alice"), None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unavailable
    );
}
