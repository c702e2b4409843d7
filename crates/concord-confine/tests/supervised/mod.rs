//! The supervisor (`concord-supervisor`, the same code as `concord __supervise`) with real
//! processes: signals relayed and exit status mirrored, the tree ended when the target ends
//! and when the lifeline breaks, namespaces that hide directories and other processes.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concord_confine::supervisor::{Bind, NamespaceSpec, Spec, LIFELINE_FD, SPEC_FD};
use concord_confine::PreExec;

fn supervisor() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_concord-supervisor"))
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills both descriptors, owned below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: just created.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Start the supervisor with `spec`; returns it and the write end of its lifeline.
fn supervise(spec: &Spec) -> (Child, OwnedFd) {
    let (spec_read, spec_write) = pipe();
    let mut f = std::fs::File::from(spec_write);
    f.write_all(&serde_json::to_vec(spec).unwrap()).unwrap();
    drop(f);
    let (life_read, life_write) = pipe();
    let mut pre_exec = PreExec::Supervised(vec![(spec_read, SPEC_FD), (life_read, LIFELINE_FD)]);
    let mut cmd = Command::new(supervisor());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: `run` only makes system calls.
    unsafe {
        cmd.pre_exec(move || pre_exec.run());
    }
    (cmd.spawn().unwrap(), life_write)
}

fn namespaces() -> NamespaceSpec {
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    NamespaceSpec {
        map_user: (uid != 0).then_some((uid, gid)),
        ..NamespaceSpec::default()
    }
}

fn shell(script: &str, ns: Option<NamespaceSpec>) -> Spec {
    Spec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        namespaces: ns,
        ..Spec::default()
    }
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Processes (host pids) whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && alive(*pid)
        })
        .collect()
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mark() -> String {
    format!(
        "4{}{}",
        std::process::id(),
        Instant::now().elapsed().subsec_nanos() % 1000
    )
}

#[test]
fn signals_reach_the_target_once_and_its_exit_status_comes_back() {
    for ns in [None, Some(namespaces())] {
        let with_ns = ns.is_some();
        // Counts interrupts (saying so); exits with their number on TERM.
        let script = "n=0; trap 'n=$((n+1)); echo int' INT; trap 'exit $((40+n))' TERM; echo ready; while :; do sleep 0.05; done";
        let (mut child, _life) = supervise(&shell(script, ns));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // To the supervisor alone; the shell gets it once, through it.
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "int");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(41), "namespaces: {with_ns}: {status:?}");
    }
}

#[test]
fn the_tree_ends_with_the_target_and_when_the_lifeline_breaks() {
    for ns in [None, Some(namespaces())] {
        let with_ns = ns.is_some();
        let m = mark();
        // A job that leaves the session, and the target's own child.
        let script = format!("setsid sleep {m}1 & sleep {m}2 & echo ready; wait");
        let (mut child, life) = supervise(&shell(&script, ns.clone()));
        assert_eq!(first_line(&mut child), "ready");
        eventually("both jobs run", || {
            !pids_with(&format!("sleep {m}1")).is_empty()
                && !pids_with(&format!("sleep {m}2")).is_empty()
        });
        // Concord dies: its end of the lifeline closes.
        drop(life);
        let status = child.wait().unwrap();
        assert!(!status.success(), "namespaces: {with_ns}: {status:?}");
        eventually("no job left", || {
            pids_with(&format!("sleep {m}1")).is_empty()
                && pids_with(&format!("sleep {m}2")).is_empty()
        });

        // The target ends by itself: what it left behind goes too.
        let m = mark();
        let script = format!("setsid sleep {m}3 & echo ready");
        let (mut child, _life) = supervise(&shell(&script, ns));
        assert_eq!(first_line(&mut child), "ready");
        assert_eq!(
            child.wait().unwrap().code(),
            Some(0),
            "namespaces: {with_ns}"
        );
        eventually("no orphan left", || {
            pids_with(&format!("sleep {m}3")).is_empty()
        });
    }
}

#[test]
fn namespaces_hide_other_processes_and_concords_directories() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let hidden = base.join("state");
    let kept = hidden.join("runtime/k-1");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(hidden.join("users.db"), "secret").unwrap();
    std::fs::write(kept.join("mine"), "mine").unwrap();
    let ns = NamespaceSpec {
        hide: vec![hidden.clone()],
        binds: vec![Bind {
            source: kept.clone(),
            target: kept.clone(),
        }],
        ..namespaces()
    };
    let script = format!(
        "echo procs $(ls /proc | grep -c '^[0-9]'); echo state $(ls {h}); echo kept $(cat {k}/mine); echo parent $(kill -0 1 && echo init-ok); cat {h}/users.db 2>&1 | head -c 0; echo done",
        h = hidden.display(),
        k = kept.display()
    );
    let (child, _life) = supervise(&shell(&script, Some(ns)));
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The namespace's init, the shell, and what it runs for the line: a handful, not the host's.
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(procs <= 6, "{text}");
    assert!(
        text.contains("state runtime\n"),
        "only what is kept shows: {text}"
    );
    assert!(text.contains("kept mine\n"), "{text}");
    assert!(Path::new(&hidden).join("users.db").exists());
}
