//! Tests against real ipykernel processes from the project's venv (`/work/main/.venv`, set
//! up by the README). They fail with a clear message when it is missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord_authz::{Limit, LimitedKind, Limits, Owner};
use concord_kernels::wire::Message;
use concord_kernels::ws::{decode, encode};
use concord_kernels::{
    Channel, ClientConnection, Inbound, KernelAccess, KernelAction, KernelActionKind,
    KernelManager, KernelManagerConfig, KernelSpecManager, NewSession, SessionManager,
    SessionPatch, StartKernel, TransportKind, WsFrame, WsOut, WsProtocol, CLOSE_TOO_SLOW,
};
use serde_json::{json, Value};

/// Generous bound so a broken test fails instead of hanging; never a performance check.
const PATIENCE: Duration = Duration::from_secs(90);

fn venv() -> PathBuf {
    let v = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    assert!(
        v.join("bin/python").is_file()
            && v.join("share/jupyter/kernels/python3/kernel.json")
                .is_file(),
        "the project's Python venv with ipykernel is missing at {}: run the README's set-up",
        v.display()
    );
    v
}

struct Env {
    mgr: KernelManager,
    root: tempfile::TempDir,
    _runtime: tempfile::TempDir,
}

fn env_with(f: impl FnOnce(&mut KernelManagerConfig)) -> Env {
    let v = venv();
    let root = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let mut cfg = KernelManagerConfig::new(root.path(), runtime.path().join("rt"));
    f(&mut cfg);
    let specs = KernelSpecManager {
        kernel_dirs: vec![v.join("share/jupyter/kernels")],
    };
    Env {
        mgr: KernelManager::new(cfg, specs),
        root,
        _runtime: runtime,
    }
}

fn owner(name: &str) -> Owner {
    Owner {
        username: name.into(),
        groups: vec![],
    }
}

/// The next lifecycle action reported, within [`PATIENCE`].
async fn next_action(rx: &mut tokio::sync::broadcast::Receiver<KernelAction>) -> KernelAction {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("an action is reported")
        .expect("the action stream is open")
}

/// (action, succeeded, kernel id) of an action, for compact assertions.
fn summary(a: &KernelAction) -> (KernelActionKind, bool, Option<String>) {
    (a.action, a.error.is_none(), a.kernel_id.clone())
}

async fn start(mgr: &KernelManager, who: &str) -> String {
    mgr.start(StartKernel {
        name: None,
        path: None,
        env: vec![],
        kernel_id: None,
        owner: owner(who),
        limit: None,
    })
    .await
    .expect("kernel starts")
    .model
    .id
}

fn request(msg_type: &str, session: &str, username: &str, content: Value) -> Message {
    Message::new_server_message(
        msg_type,
        session,
        username,
        Bytes::from_static(b"{}"),
        content,
    )
}

fn execute(code: &str, session: &str, username: &str) -> Message {
    request(
        "execute_request",
        session,
        username,
        json!({"code": code, "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
    )
}

async fn send(conn: &ClientConnection, channel: Channel, msg: &Message) -> Inbound {
    let frame = encode(channel, msg, conn.inbound.protocol());
    conn.inbound.handle(frame).await.expect("frame accepted")
}

/// Read decoded messages until `pred` says stop; returns everything read.
async fn read_until(
    conn: &mut ClientConnection,
    mut pred: impl FnMut(Channel, &Message, &Value) -> bool,
) -> Vec<(Channel, Message, Value)> {
    let protocol = conn.inbound.protocol();
    let mut seen = Vec::new();
    let fut = async {
        loop {
            match conn.outbound.next().await {
                Some(WsOut::Frame(f)) => {
                    let (ch, msg) = decode(&f, protocol).expect("server frames decode");
                    let content: Value = serde_json::from_slice(&msg.content).unwrap();
                    let stop = pred(ch, &msg, &content);
                    seen.push((ch, msg, content));
                    if stop {
                        return;
                    }
                }
                other => panic!("connection ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("expected message did not arrive");
    seen
}

fn parent_id(m: &Message) -> String {
    concord_kernels::wire::parent_msg_id(&m.parent_header).unwrap_or_default()
}

/// Execute and collect until the reply and idle for it arrived.
async fn run(
    conn: &mut ClientConnection,
    code: &str,
    user: &str,
) -> Vec<(Channel, Message, Value)> {
    let req = execute(code, "s", user);
    assert_eq!(send(conn, Channel::Shell, &req).await, Inbound::Forwarded);
    let id = req.info.msg_id.clone();
    let (mut reply, mut idle) = (false, false);
    read_until(conn, |ch, m, c| {
        if parent_id(m) == id {
            reply |= ch == Channel::Shell && m.info.msg_type == "execute_reply";
            idle |= m.info.msg_type == "status" && c["execution_state"] == "idle";
        }
        reply && idle
    })
    .await
}

fn stdout_of(msgs: &[(Channel, Message, Value)]) -> String {
    msgs.iter()
        .filter(|(_, m, _)| m.info.msg_type == "stream")
        .map(|(_, _, c)| c["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn wait_gone(pid: i32) {
    tokio::time::timeout(PATIENCE, async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("process exits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_execute_interrupt_restart_shutdown() {
    let env = env_with(|_| {});
    let mut actions = env.mgr.subscribe_actions();
    let id = start(&env.mgr, "alice").await;
    let started = next_action(&mut actions).await;
    assert_eq!(
        summary(&started),
        (KernelActionKind::Start, true, Some(id.clone()))
    );
    assert_eq!(started.owner.username, "alice");
    assert_eq!(started.kernel_name, "python3");
    let model = env.mgr.get(&id).unwrap().model;
    assert_eq!(model.name, "python3");
    assert_eq!(model.execution_state, "idle");
    let as_json = serde_json::to_value(&model).unwrap();
    let mut keys: Vec<_> = as_json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "connections",
            "execution_state",
            "id",
            "last_activity",
            "name"
        ]
    );
    assert!(model.last_activity.ends_with('Z'));

    // The connection file is private.
    let cf = env.mgr.connection_file(&id);
    assert!(cf.starts_with(&env.mgr.config().runtime_dir));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let info: Value = serde_json::from_slice(&std::fs::read(&cf).unwrap()).unwrap();
    assert_eq!(info["transport"], "ipc");

    let mut c = env
        .mgr
        .connect(
            &id,
            "sess-a",
            "alice",
            KernelAccess::Execute,
            WsProtocol::V1,
        )
        .unwrap();
    assert_eq!(env.mgr.get(&id).unwrap().model.connections, 1);
    let out = run(&mut c, "print('hello from ipykernel')", "alice").await;
    assert!(stdout_of(&out).contains("hello from ipykernel"));
    let reply = out
        .iter()
        .find(|(_, m, _)| m.info.msg_type == "execute_reply")
        .unwrap();
    assert_eq!(reply.2["status"], "ok");

    // Interrupt a long sleep (signal mode for ipykernel).
    // Wait for output from inside the cell: ipykernel ignores SIGINT outside execution.
    let req = execute(
        "import time; print('sleeping', flush=True); time.sleep(120)",
        "s",
        "alice",
    );
    send(&c, Channel::Shell, &req).await;
    let rid = req.info.msg_id.clone();
    read_until(&mut c, |_, m, c| {
        m.info.msg_type == "stream"
            && parent_id(m) == rid
            && c["text"].as_str().unwrap_or("").contains("sleeping")
    })
    .await;
    env.mgr.interrupt(&id).await.unwrap();
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Interrupt, true, Some(id.clone()))
    );
    let out = read_until(&mut c, |ch, m, _| {
        ch == Channel::Shell && m.info.msg_type == "execute_reply" && parent_id(m) == rid
    })
    .await;
    let (_, _, content) = out.last().unwrap();
    assert_eq!(content["status"], "error");
    assert_eq!(content["ename"], "KeyboardInterrupt");

    // Restart keeps the id, replaces the process, and tells the client.
    let pid1 = env.mgr.pid(&id).unwrap().unwrap();
    let restarted = env.mgr.restart(&id).await.unwrap();
    assert_eq!(restarted.model.id, id);
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Restart, true, Some(id.clone()))
    );
    let pid2 = env.mgr.pid(&id).unwrap().unwrap();
    assert_ne!(pid1, pid2);
    wait_gone(pid1).await;
    read_until(&mut c, |_, m, c| {
        m.info.msg_type == "status" && c["execution_state"] == "restarting"
    })
    .await;
    let out = run(&mut c, "print(1 + 1)", "alice").await;
    assert!(stdout_of(&out).contains('2'));

    env.mgr.shutdown(&id).await.unwrap();
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Shutdown, true, Some(id.clone()))
    );
    // A kernel that does not exist is not acted on, so nothing is reported.
    assert!(env.mgr.shutdown(&id).await.is_err());
    assert!(env.mgr.interrupt(&id).await.is_err());
    assert!(actions.try_recv().is_err());
    wait_gone(pid2).await;
    assert!(env.mgr.get(&id).is_err());
    assert!(!cf.exists(), "connection file removed");
    // The client is told the kernel went away.
    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match c.outbound.next().await {
                Some(WsOut::Frame(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(end, Some(WsOut::Close { .. }) | None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_is_detected_and_the_kernel_restarts() {
    let env = env_with(|c| c.transport = TransportKind::Tcp);
    let id = start(&env.mgr, "alice").await;
    let mut c = env
        .mgr
        .connect(
            &id,
            "s1",
            "alice",
            KernelAccess::Execute,
            WsProtocol::Legacy,
        )
        .unwrap();
    run(&mut c, "x = 1", "alice").await;
    let mut actions = env.mgr.subscribe_actions();
    let pid1 = env.mgr.pid(&id).unwrap().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    read_until(&mut c, |_, m, c| {
        m.info.msg_type == "status" && c["execution_state"] == "restarting"
    })
    .await;
    // Once restarted, the same client (same websocket) runs code in the new process.
    let out = run(&mut c, "import os; print('pid', os.getpid())", "alice").await;
    let text = stdout_of(&out);
    let pid2 = env.mgr.pid(&id).unwrap().unwrap();
    assert_ne!(pid1, pid2);
    assert!(text.contains(&format!("pid {pid2}")), "{text}");
    // The state was lost with the process: a new interpreter.
    let out = run(&mut c, "print('x' in globals())", "alice").await;
    assert!(stdout_of(&out).contains("False"));
    let m = env.mgr.metrics();
    assert!(m.kernel_deaths_total >= 1 && m.kernel_auto_restarts_total >= 1);
    // The restarter's restart is reported like a requested one.
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Restart, true, Some(id.clone()))
    );
    env.mgr.shutdown_all().await;
    wait_gone(pid2).await;
}

/// The heartbeat's timing is what the docs say: a kernel that stops answering is declared
/// dead (killed, then restarted) `heartbeat_misses` intervals after the first ping it missed,
/// so between `misses - 1` and `misses + 1` intervals after it stopped; a kernel that answers
/// is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_live_kernel_and_a_hung_one_is_killed_and_restarted() {
    let interval = Duration::from_millis(500);
    let misses = 5;
    let env = env_with(|c| {
        c.heartbeat_interval = interval;
        c.heartbeat_misses = misses;
    });
    let id = start(&env.mgr, "alice").await;
    let pid1 = env.mgr.pid(&id).unwrap().unwrap();
    // Several heartbeats are answered: nothing is killed.
    tokio::time::sleep(interval * (misses + 2)).await;
    assert_eq!(env.mgr.pid(&id).unwrap(), Some(pid1));
    assert_eq!(env.mgr.metrics().kernel_deaths_total, 0);
    // A stopped process answers nothing (its heartbeat thread included): it is killed and
    // the restarter brings the kernel back under the same id.
    let stopped = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    while alive(pid1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            stopped.elapsed() < PATIENCE,
            "the hung kernel was never killed"
        );
    }
    let dead_after = stopped.elapsed();
    assert!(
        dead_after > interval * (misses - 1),
        "declared dead too early: {dead_after:?}"
    );
    // One interval of scheduling slack on a shared machine; an interval per miss more
    // (a ping's wait added to the interval, as it was) would exceed it.
    assert!(
        dead_after <= interval * (misses + 2),
        "declared dead after {dead_after:?}, not about {:?}",
        interval * misses
    );
    let pid2 = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Some(p)) = env.mgr.pid(&id) {
                if p != pid1 {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the kernel is restarted");
    assert!(env.mgr.metrics().kernel_deaths_total >= 1);
    env.mgr.shutdown_all().await;
    wait_gone(pid2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_outputs_but_cannot_run_code() {
    let env = env_with(|_| {});
    let id = start(&env.mgr, "alice").await;
    let mut alice = env
        .mgr
        .connect(
            &id,
            "sa",
            "alice",
            KernelAccess::Execute,
            WsProtocol::Legacy,
        )
        .unwrap();
    let mut bob = env
        .mgr
        .connect(&id, "sb", "bob", KernelAccess::Watch, WsProtocol::V1)
        .unwrap();

    // Alice claims to be mallory: the kernel sees alice.
    let out = run(&mut alice, "import getpass; print('from-alice')", "mallory").await;
    assert!(stdout_of(&out).contains("from-alice"));
    let input = out
        .iter()
        .find(|(_, m, _)| m.info.msg_type == "execute_input")
        .unwrap();
    let parent: Value = serde_json::from_slice(&input.1.parent_header).unwrap();
    assert_eq!(parent["username"], "alice");

    // Bob, watching, receives alice's outputs.
    let seen = read_until(&mut bob, |_, m, c| {
        m.info.msg_type == "stream" && c["text"].as_str().unwrap_or("").contains("from-alice")
    })
    .await;
    assert!(!seen.is_empty());

    // Bob's execute is refused with an error reply on shell, an error output and idle.
    let marker = env.root.path().join("pwned");
    let code = format!("open({:?}, 'w').write('x')", marker.to_string_lossy());
    let req = execute(&code, "sb", "bob");
    assert_eq!(send(&bob, Channel::Shell, &req).await, Inbound::Refused);
    let rid = req.info.msg_id.clone();
    let (mut got_reply, mut got_idle) = (None, false);
    read_until(&mut bob, |ch, m, c| {
        if parent_id(m) == rid {
            if ch == Channel::Shell && m.info.msg_type == "execute_reply" {
                got_reply = Some(c.clone());
            }
            got_idle |= m.info.msg_type == "status" && c["execution_state"] == "idle";
        }
        got_reply.is_some() && got_idle
    })
    .await;
    let reply = got_reply.unwrap();
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "PermissionError");
    assert!(reply["evalue"].as_str().unwrap().contains("bob"));

    // Other refused kinds, each answered on its own channel.
    for (channel, msg_type, expect) in [
        (Channel::Control, "interrupt_request", "interrupt_reply"),
        (Channel::Shell, "complete_request", "complete_reply"),
        (Channel::Shell, "comm_open", "error"),
        (Channel::Shell, "comm_msg", "error"),
        (Channel::Stdin, "input_reply", "error"),
    ] {
        let m = request(
            msg_type,
            "sb",
            "bob",
            json!({"comm_id": "c", "target_name": "t", "data": {}, "value": "v"}),
        );
        assert_eq!(
            send(&bob, channel, &m).await,
            Inbound::Refused,
            "{msg_type}"
        );
        let mid = m.info.msg_id.clone();
        let got = read_until(&mut bob, |ch, r, _| ch == channel && parent_id(r) == mid).await;
        let (_, r, c) = got.last().unwrap();
        assert_eq!(r.info.msg_type, expect);
        assert_eq!(c["status"], "error");
    }

    // A harmless question is allowed for a watcher.
    let ki = request("kernel_info_request", "sb", "bob", json!({}));
    assert_eq!(send(&bob, Channel::Shell, &ki).await, Inbound::Forwarded);
    let kid = ki.info.msg_id.clone();
    read_until(&mut bob, |ch, m, _| {
        ch == Channel::Shell && m.info.msg_type == "kernel_info_reply" && parent_id(m) == kid
    })
    .await;

    // Nothing of bob's ran: the file does not exist and alice never saw his code.
    let out = run(&mut alice, "print('after')", "alice").await;
    assert!(!marker.exists());
    assert!(!out
        .iter()
        .any(|(_, m, c)| m.info.msg_type == "execute_input"
            && c["code"].as_str().unwrap_or("").contains("pwned")));
    // A watcher cannot capture alice's replies by reusing a pending msg_id.
    let slow = execute(
        "import time; time.sleep(1); print('alice-reply')",
        "sa",
        "alice",
    );
    send(&alice, Channel::Shell, &slow).await;
    let mut steal = request("kernel_info_request", "sb", "bob", json!({}));
    let mut header: Value = serde_json::from_slice(&steal.header).unwrap();
    header["msg_id"] = json!(slow.info.msg_id);
    steal = Message::from_parts(
        Bytes::from(header.to_string()),
        steal.parent_header,
        steal.metadata,
        steal.content,
        vec![],
    )
    .unwrap();
    assert_eq!(send(&bob, Channel::Shell, &steal).await, Inbound::Refused);
    let sid = slow.info.msg_id.clone();
    read_until(&mut alice, |ch, m, _| {
        ch == Channel::Shell && m.info.msg_type == "execute_reply" && parent_id(m) == sid
    })
    .await;
    assert!(env.mgr.metrics().messages_refused_total >= 6);
    env.mgr.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_cause_loss_for_another() {
    // Small enough that a client that never reads overflows during the flood, large enough
    // that a reading client on a busy 2-core CI machine does not.
    let env = env_with(|c| c.client_queue_bytes = 512 << 10);
    let id = start(&env.mgr, "alice").await;
    let mut fast = env
        .mgr
        .connect(&id, "fast", "alice", KernelAccess::Execute, WsProtocol::V1)
        .unwrap();
    // The slow client never reads during the flood.
    let slow = env
        .mgr
        .connect(
            &id,
            "slow",
            "alice",
            KernelAccess::Watch,
            WsProtocol::Legacy,
        )
        .unwrap();
    let n = 3000;
    let out = run(
        &mut fast,
        &format!("for i in range({n}): print(i, flush=True)"),
        "alice",
    )
    .await;
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n, "the fast client got every line");
    assert_eq!(lines.last(), Some(&format!("{}", n - 1).as_str()));

    // The slow one was told and disconnected.
    let mut slow = slow;
    let mut closed = None;
    tokio::time::timeout(PATIENCE, async {
        while let Some(o) = slow.outbound.next().await {
            if let WsOut::Close { code, reason } = o {
                closed = Some((code, reason));
            }
        }
    })
    .await
    .unwrap();
    let (code, reason) = closed.expect("slow client closed");
    assert_eq!(code, CLOSE_TOO_SLOW);
    assert!(reason.contains("behind"));
    drop(slow);
    assert!(env.mgr.metrics().clients_lagged_total >= 1);

    // Reconnecting with the same session replays everything it missed.
    let mut again = env
        .mgr
        .connect(
            &id,
            "slow",
            "alice",
            KernelAccess::Watch,
            WsProtocol::Legacy,
        )
        .unwrap();
    let mut count = 0;
    read_until(&mut again, |_, m, c| {
        if m.info.msg_type == "stream" {
            count += c["text"].as_str().unwrap_or("").lines().count();
        }
        count >= n
    })
    .await;
    assert_eq!(count, n);
    env.mgr.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replays_only_for_the_same_user_and_malformed_frames_are_errors() {
    let env = env_with(|_| {});
    let id = start(&env.mgr, "alice").await;
    let mut runner = env
        .mgr
        .connect(&id, "r", "alice", KernelAccess::Execute, WsProtocol::V1)
        .unwrap();
    let away = env
        .mgr
        .connect(
            &id,
            "shared-id",
            "alice",
            KernelAccess::Execute,
            WsProtocol::V1,
        )
        .unwrap();
    drop(away);
    run(&mut runner, "print('while-away')", "alice").await;

    // Another user presenting alice's session id gets a fresh slot, not her buffer.
    let mut mallory = env
        .mgr
        .connect(
            &id,
            "shared-id",
            "mallory",
            KernelAccess::Watch,
            WsProtocol::V1,
        )
        .unwrap();
    run(&mut runner, "print('marker-2')", "alice").await;
    let seen = read_until(&mut mallory, |_, m, c| {
        m.info.msg_type == "stream" && c["text"].as_str().unwrap_or("").contains("marker-2")
    })
    .await;
    assert!(!seen.iter().any(|(_, m, c)| m.info.msg_type == "stream"
        && c["text"].as_str().unwrap_or("").contains("while-away")));

    // Alice herself gets the buffered output on reconnect.
    let mut back = env
        .mgr
        .connect(
            &id,
            "shared-id",
            "alice",
            KernelAccess::Execute,
            WsProtocol::Legacy,
        )
        .unwrap();
    read_until(&mut back, |_, m, c| {
        m.info.msg_type == "stream" && c["text"].as_str().unwrap_or("").contains("while-away")
    })
    .await;

    // Malformed frames: errors, never panics; the connection keeps working.
    let bad = [
        WsFrame::Text("not json".into()),
        WsFrame::Text("{\"channel\":\"shell\"}".into()),
        WsFrame::Text("{\"channel\":\"iopub\",\"header\":{\"msg_type\":\"x\"}}".into()),
        WsFrame::Binary(Bytes::from_static(&[0, 0, 0, 9, 1, 2])),
        WsFrame::Text("{\"channel\":\"hb\",\"header\":{}}".into()),
    ];
    for f in bad {
        assert!(back.inbound.handle(f).await.is_err());
    }
    assert!(runner
        .inbound
        .handle(WsFrame::Text("{}".into()))
        .await
        .is_err());
    assert!(runner
        .inbound
        .handle(WsFrame::Binary(Bytes::from(vec![7u8; 40])))
        .await
        .is_err());
    let out = run(&mut back, "print('still fine')", "alice").await;
    assert!(stdout_of(&out).contains("still fine"));
    assert!(env.mgr.metrics().frames_malformed_total >= 7);
    env.mgr.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_all_leaves_no_process_behind() {
    let env = env_with(|c| c.shutdown_wait = Duration::from_secs(2));
    let a = start(&env.mgr, "alice").await;
    let b = start(&env.mgr, "bob").await;
    // A kernel with a child process of its own (in its process group).
    let mut c = env
        .mgr
        .connect(&b, "s", "bob", KernelAccess::Execute, WsProtocol::V1)
        .unwrap();
    let out = run(
        &mut c,
        "import subprocess; p = subprocess.Popen(['sleep', '600']); print('child', p.pid)",
        "bob",
    )
    .await;
    let child: i32 = stdout_of(&out)
        .trim()
        .trim_start_matches("child ")
        .parse()
        .unwrap();
    let pids = [
        env.mgr.pid(&a).unwrap().unwrap(),
        env.mgr.pid(&b).unwrap().unwrap(),
    ];
    assert!(pids.iter().all(|p| alive(*p)) && alive(child));
    env.mgr.shutdown_all().await;
    assert!(env.mgr.list().is_empty());
    for p in pids {
        wait_gone(p).await;
    }
    wait_gone(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_owned_and_shared_only_by_policy() {
    let env = env_with(|_| {});
    std::fs::create_dir_all(env.root.path().join("proj")).unwrap();
    let sm = Arc::new(SessionManager::new(env.mgr.clone()));
    let never = |_: &Owner, _: &str| false;
    let always = |_: &Owner, _: &str| true;
    let unlimited = Limits::default();
    let body = json!({"path": "proj/nb.ipynb", "type": "notebook", "name": "nb.ipynb", "kernel": {"name": "python3"}});

    let a = sm
        .create(
            NewSession::from_json(&body).unwrap(),
            owner("alice"),
            &never,
            &unlimited,
        )
        .await
        .unwrap();
    assert_eq!(a.model["path"], "proj/nb.ipynb");
    assert_eq!(a.model["notebook"]["path"], "proj/nb.ipynb");
    assert_eq!(a.model["kernel"]["name"], "python3");
    // The kernel runs in the notebook's directory.
    let mut c = env
        .mgr
        .connect(
            &a.kernel_id,
            "x",
            "alice",
            KernelAccess::Execute,
            WsProtocol::V1,
        )
        .unwrap();
    let out = run(
        &mut c,
        "import os; print(os.getcwd()); print(os.environ.get('JPY_SESSION_NAME'))",
        "alice",
    )
    .await;
    let text = stdout_of(&out);
    assert!(
        text.contains(
            &env.root
                .path()
                .join("proj")
                .canonicalize()
                .unwrap()
                .to_string_lossy()
                .to_string()
        ),
        "{text}"
    );
    assert!(text.contains("proj/nb.ipynb"));

    // Same user, same path: the same session.
    let again = sm
        .create(
            NewSession::from_json(&body).unwrap(),
            owner("alice"),
            &never,
            &unlimited,
        )
        .await
        .unwrap();
    assert_eq!(again.id, a.id);
    // Another user: their own session and kernel, unless the policy shares.
    let b = sm
        .create(
            NewSession::from_json(&body).unwrap(),
            owner("bob"),
            &never,
            &unlimited,
        )
        .await
        .unwrap();
    assert_ne!(b.id, a.id);
    assert_ne!(b.kernel_id, a.kernel_id);
    assert_eq!(b.owner.username, "bob");
    let shared = sm
        .create(
            NewSession::from_json(&body).unwrap(),
            owner("carol"),
            &always,
            &unlimited,
        )
        .await
        .unwrap();
    assert!(shared.id == a.id || shared.id == b.id);

    // Bob cannot rebind to alice's kernel: a create naming it gets him a fresh kernel under a
    // fresh id, as a free id does; a PATCH naming it is "No such kernel", as a missing id.
    let steal = json!({"path": "other.ipynb", "type": "notebook", "kernel": {"id": a.kernel_id}});
    let stolen = sm
        .create(
            NewSession::from_json(&steal).unwrap(),
            owner("bob"),
            &never,
            &unlimited,
        )
        .await
        .unwrap();
    assert_ne!(stolen.kernel_id, a.kernel_id);
    assert_eq!(stolen.owner.username, "bob");
    let free = "00000000-0000-4000-8000-000000000000";
    let squat = json!({"path": "squat.ipynb", "type": "notebook", "kernel": {"id": free}});
    let squatted = sm
        .create(
            NewSession::from_json(&squat).unwrap(),
            owner("bob"),
            &never,
            &unlimited,
        )
        .await
        .unwrap();
    assert_ne!(
        squatted.kernel_id, free,
        "a client-chosen id is never created"
    );
    for id in [a.kernel_id.as_str(), free] {
        let patch = SessionPatch::from_json(&json!({"kernel": {"id": id}})).unwrap();
        let err = sm
            .update(&b.id, patch, owner("bob"), &never, &unlimited)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), concord_kernels::ErrorKind::BadRequest);
        assert_eq!(err.to_string(), format!("No such kernel: {id}"));
    }
    for extra in [stolen, squatted] {
        sm.delete(&extra.id).await.unwrap();
    }

    // JupyterLab's placeholder-then-PATCH: the path changes, the kernel stays.
    let patch =
        SessionPatch::from_json(&json!({"path": "proj/renamed.ipynb", "name": "renamed.ipynb"}))
            .unwrap();
    let renamed = sm
        .update(&a.id, patch, owner("alice"), &never, &unlimited)
        .await
        .unwrap();
    assert_eq!(renamed.model["path"], "proj/renamed.ipynb");
    assert_eq!(renamed.kernel_id, a.kernel_id);

    // PATCH kernel.name starts a new kernel and shuts the old one down.
    let old_pid = env.mgr.pid(&a.kernel_id).unwrap().unwrap();
    let patch = SessionPatch::from_json(&json!({"kernel": {"name": "python3"}})).unwrap();
    let switched = sm
        .update(&a.id, patch, owner("alice"), &never, &unlimited)
        .await
        .unwrap();
    assert_ne!(switched.kernel_id, a.kernel_id);
    wait_gone(old_pid).await;
    assert!(!env.mgr.contains(&a.kernel_id));

    assert_eq!(sm.list().len(), 2);
    sm.delete(&b.id).await.unwrap();
    assert!(!env.mgr.contains(&b.kernel_id));
    assert!(sm.get(&b.id).is_err());
    // A session whose kernel disappeared is dropped, as jupyter_server does.
    env.mgr.shutdown(&switched.kernel_id).await.unwrap();
    assert!(sm.list().is_empty());
    env.mgr.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_clear_errors() {
    let env = env_with(|_| {});
    let mut actions = env.mgr.subscribe_actions();
    let e = env
        .mgr
        .start(StartKernel {
            name: Some("nope".into()),
            path: None,
            env: vec![],
            kernel_id: None,
            owner: owner("a"),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), concord_kernels::ErrorKind::NotFound);
    // A failed start is reported, with the id it would have had and the name asked for.
    let failed = next_action(&mut actions).await;
    assert_eq!(failed.action, KernelActionKind::Start);
    assert!(matches!(
        failed.error,
        Some(concord_kernels::KernelError::NoSuchKernelSpec(_))
    ));
    assert_eq!(failed.kernel_name, "nope");
    assert!(failed.kernel_id.is_some());
    let e = env
        .mgr
        .start(StartKernel {
            name: None,
            path: None,
            env: vec![("LD_PRELOAD".into(), "x".into())],
            kernel_id: None,
            owner: owner("a"),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), concord_kernels::ErrorKind::BadRequest);
    let e = env
        .mgr
        .start(StartKernel {
            name: None,
            path: None,
            env: vec![],
            kernel_id: Some("../x".into()),
            owner: owner("a"),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), concord_kernels::ErrorKind::BadRequest);
    // The refused environment, then the invalid id (which is not reported as an id).
    assert_eq!(
        next_action(&mut actions).await.error.map(|e| e.kind()),
        Some(concord_kernels::ErrorKind::BadRequest)
    );
    let bad_id = next_action(&mut actions).await;
    assert!(bad_id.error.is_some() && bad_id.kernel_id.is_none());
    // A symlink out of the root is refused as a working directory.
    std::os::unix::fs::symlink("/", env.root.path().join("out")).unwrap();
    let e = env
        .mgr
        .start(StartKernel {
            name: None,
            path: Some(concord_authz::CanonicalPath::parse("out/etc").unwrap()),
            env: vec![],
            kernel_id: None,
            owner: owner("a"),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), concord_kernels::ErrorKind::BadRequest);
    assert!(env
        .mgr
        .connect("no-such", "s", "a", KernelAccess::Execute, WsProtocol::V1)
        .is_err());
    assert!(env.mgr.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kernel_is_culled_and_the_shutdown_reported() {
    let env = env_with(|c| {
        c.cull_idle_timeout = Some(Duration::from_millis(500));
        c.cull_interval = Duration::from_millis(300);
    });
    let mut actions = env.mgr.subscribe_actions();
    let id = start(&env.mgr, "alice").await;
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Start, true, Some(id.clone()))
    );
    let culled = next_action(&mut actions).await;
    assert_eq!(
        summary(&culled),
        (KernelActionKind::Shutdown, true, Some(id.clone()))
    );
    assert_eq!(culled.owner.username, "alice");
    assert!(env.mgr.get(&id).is_err());
}

/// A kernel whose iopub socket closes while the process runs on (here a minimal kernel that
/// does it on purpose) is useless and would look healthy: it is killed and restarted, as
/// after a crash, and the restarted one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_that_loses_a_channel_is_killed_and_restarted() {
    let v = venv();
    let specs = tempfile::tempdir().unwrap();
    let marker = specs.path().join("iopub-closed-once");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/channel_closing_kernel.py");
    std::fs::create_dir_all(specs.path().join("closing")).unwrap();
    std::fs::write(
        specs.path().join("closing/kernel.json"),
        json!({
            "argv": [v.join("bin/python"), script, "{connection_file}", marker],
            "display_name": "closes its iopub",
            "language": "test",
        })
        .to_string(),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let cfg = KernelManagerConfig::new(root.path(), runtime.path().join("rt"));
    let mgr = KernelManager::new(
        cfg,
        KernelSpecManager {
            kernel_dirs: vec![specs.path().to_path_buf()],
        },
    );
    let mut actions = mgr.subscribe_actions();
    let id = mgr
        .start(StartKernel {
            name: Some("closing".into()),
            path: None,
            env: vec![],
            kernel_id: None,
            owner: owner("alice"),
            limit: None,
        })
        .await
        .expect("kernel starts")
        .model
        .id;
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Start, true, Some(id.clone()))
    );
    let pid1 = mgr.pid(&id).unwrap().unwrap();
    // Its iopub closes; the process is killed and the restarter starts a new one.
    wait_gone(pid1).await;
    assert_eq!(
        summary(&next_action(&mut actions).await),
        (KernelActionKind::Restart, true, Some(id.clone()))
    );
    assert!(marker.exists(), "the first incarnation closed its iopub");
    let pid2 = mgr.pid(&id).unwrap().unwrap();
    assert_ne!(pid1, pid2);
    assert!(alive(pid2));
    assert!(mgr.metrics().kernel_deaths_total >= 1);
    mgr.shutdown_all().await;
    wait_gone(pid2).await;
}

fn limit(kind: LimitedKind, max: u32) -> Limit {
    Limit {
        kind,
        max,
        set_by: "group students (policy.toml:3)".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_starts_stop_exactly_at_the_owners_limits() {
    let env = env_with(|_| {});
    // Four kernels at once against a limit of two: kernels still starting count, so exactly
    // two start, whatever the interleaving.
    let starts = (0..4).map(|_| {
        env.mgr.start(StartKernel {
            name: None,
            path: None,
            env: vec![],
            kernel_id: None,
            owner: owner("stu"),
            limit: Some(limit(LimitedKind::Kernels, 2)),
        })
    });
    let results = futures::future::join_all(starts).await;
    let started: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!((started.len(), refused.len()), (2, 2), "{results:?}");
    for e in &refused {
        assert_eq!(e.kind(), concord_kernels::ErrorKind::LimitReached);
        assert_eq!(
            e.to_string(),
            "stu may have at most 2 kernels at once (limit for group students (policy.toml:3)); \
             shut one of your kernels down to start another"
        );
    }
    // Another user is not counted against stu.
    let other = env
        .mgr
        .start(StartKernel {
            name: None,
            path: None,
            env: vec![],
            kernel_id: None,
            owner: owner("ann"),
            limit: Some(limit(LimitedKind::Kernels, 1)),
        })
        .await
        .unwrap();
    // A kernel shut down gives its place back.
    env.mgr.shutdown(&started[0].model.id).await.unwrap();
    env.mgr.shutdown(&other.model.id).await.unwrap();

    // Sessions: three notebooks at once against a limit of one session.
    let sm = SessionManager::new(env.mgr.clone());
    let never = |_: &Owner, _: &str| false;
    let limits = Limits {
        limits: vec![limit(LimitedKind::Sessions, 1)],
    };
    let creates = (0..3).map(|i| {
        let body = json!({"path": format!("nb{i}.ipynb"), "type": "notebook", "kernel": {"name": "python3"}});
        let sm = &sm;
        let limits = &limits;
        async move {
            sm.create(NewSession::from_json(&body).unwrap(), owner("stu"), &never, limits)
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), concord_kernels::ErrorKind::LimitReached, "{e}");
            assert!(
                e.to_string().contains("at most 1 notebook session at once"),
                "{e}"
            );
        }
    }
    // Opening the same notebook again is not a new session.
    let body = json!({"path": created[0].path, "type": "notebook"});
    let again = sm
        .create(
            NewSession::from_json(&body).unwrap(),
            owner("stu"),
            &never,
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(again.id, created[0].id);
    sm.delete(&created[0].id).await.unwrap();
    env.mgr.shutdown_all().await;
}
