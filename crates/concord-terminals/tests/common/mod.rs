//! Helpers for the real-bash tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use concord_authz::Owner;
use concord_terminals::{ClientOutput, ServerFrame, TerminalConfig};
use serde_json::Value;

/// Guards against a hang only; no test asserts on how long anything takes.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

pub fn owner(name: &str) -> Owner {
    Owner {
        username: name.to_string(),
        groups: vec!["users".to_string()],
    }
}

/// An interactive bash without the user's rc files or history.
pub fn bash_config(root: &Path) -> TerminalConfig {
    let mut config = TerminalConfig::new(root);
    config.shell_command = ["bash", "--norc", "--noprofile", "-i"]
        .map(String::from)
        .to_vec();
    config.env.insert("HISTFILE".into(), "/dev/null".into());
    config.env.insert("PS1".into(), "$ ".into());
    config.kill_grace = Duration::from_secs(1);
    config
}

/// A frame as JSON; panics on a close.
pub async fn next_json(output: &mut ClientOutput) -> Value {
    match tokio::time::timeout(HANG_GUARD, output.next()).await {
        Ok(Some(ServerFrame::Text(text))) => serde_json::from_str(&text).expect("JSON frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Read frames until the `stdout` text seen so far contains `needle`; returns that text.
pub async fn read_until(output: &mut ClientOutput, needle: &str) -> String {
    let mut seen = String::new();
    let result = tokio::time::timeout(HANG_GUARD, async {
        while !seen.contains(needle) {
            match output.next().await {
                Some(ServerFrame::Text(text)) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    if frame[0] == "stdout" {
                        seen.push_str(frame[1].as_str().expect("stdout text"));
                    }
                }
                other => panic!(
                    "expected output containing {needle:?}, got {other:?} after {:?}",
                    tail(&seen)
                ),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "never saw {needle:?}; saw {:?}",
        tail(&seen)
    );
    seen
}

/// The end of a long text, for failure messages.
pub fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(400);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Read until the terminal's close; returns every frame before it and the close.
pub async fn read_to_close(output: &mut ClientOutput) -> (Vec<Value>, ServerFrame) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(HANG_GUARD, output.next()).await {
            Ok(Some(ServerFrame::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
            Ok(Some(close)) => return (frames, close),
            other => panic!("no close frame: {other:?}"),
        }
    }
}

pub fn stdin(text: &str) -> String {
    serde_json::json!(["stdin", text]).to_string()
}

/// Poll until `done` holds (hang guard only).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let result = tokio::time::timeout(HANG_GUARD, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "never happened: {what}");
}

/// Pids of processes whose command line contains `marker`.
pub fn pids_running(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Whether a process or process group (negative pid) exists at all, zombies included.
pub fn exists(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(other) => panic!("kill({pid}, 0): {other}"),
    }
}
