//! Confinement through the real server: a user who may write /projects/a only runs code in their
//! real ipykernel (kernel websocket) and their real bash (terminal websocket); the operating
//! system stops them — PermissionError / "Permission denied" from the process itself — from
//! reading /projects/b or concord's state and from creating files outside what they may
//! write. The admin's kernel runs the same code and succeeds.

use crate::common;
use crate::kernels_support;

use common::token_client as api;
use futures::{SinkExt, StreamExt};
use kernels_support::{connect, path_with_venv, pids_with, KernelClient};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const POLICY: &str = r#"
[roles.all]
permissions = ["*:*:any"]
[roles.worker]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own", "terminals:*:own", "kernelspecs:read"]
[[bindings]]
role = "all"
groups = ["admin"]
[[bindings]]
role = "worker"
users = ["alice"]
paths = ["/projects/a/**"]
"#;

struct World {
    s: common::Server,
    alice: String,
    admin: String,
}

fn start() -> World {
    let b = common::server()
        .users_with_policy(POLICY)
        .env("PATH", &path_with_venv());
    b.add_user("alice", "alice-password-1", &[]);
    b.add_user("boss", "boss-password-1", &["admin"]);
    let token = |user: &str| b.issue_token(user);
    let (alice, admin) = (token("alice"), token("boss"));
    for d in ["projects/a", "projects/b"] {
        std::fs::create_dir_all(b.root().join(d)).unwrap();
    }
    std::fs::write(b.root().join("projects/a/mine.txt"), "MINE").unwrap();
    std::fs::write(b.root().join("projects/b/theirs.txt"), "THEIRS").unwrap();
    World {
        s: b.start(),
        alice,
        admin,
    }
}

async fn kernel(w: &World, token: &str) -> (String, KernelClient) {
    let resp = api(token)
        .post(w.s.url("api/kernels"))
        .json(&json!({"name": "python3", "path": "projects/a"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let client = connect(&w.s.url(""), token, &id, "confine-test", false)
        .await
        .unwrap();
    (id, client)
}

fn probe(root: &str, state: &str) -> String {
    format!(
        r#"
import os
R, S = {root:?}, {state:?}
def attempt(label, fn):
    try:
        fn(); print(label, "ok")
    except PermissionError:
        print(label, "PermissionError")
    except Exception as e:
        print(label, type(e).__name__)
def write(p):
    with open(p, "w") as f: f.write("x")
attempt("read_a", lambda: open(R + "/projects/a/mine.txt").read())
attempt("write_a", lambda: write(R + "/projects/a/k.txt"))
attempt("read_b", lambda: open(R + "/projects/b/theirs.txt").read())
attempt("write_root", lambda: write(R + "/k-escape.txt"))
attempt("read_users", lambda: open(S + "/concord.db", "rb").read())
attempt("read_policy", lambda: open(S + "/policy.toml").read())
attempt("list_state", lambda: os.listdir(S))
"#
    )
}

fn outcomes(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.trim().to_string()))
        .collect()
}

fn get(results: &[(String, String)], label: &str) -> String {
    results
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, o)| o.clone())
        .unwrap_or_else(|| panic!("no {label} in {results:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_are_confined_to_what_their_user_may_touch() {
    let w = start();
    let root = w.s.root().canonicalize().unwrap();
    let state = w.s.state().canonicalize().unwrap();
    let code = probe(root.to_str().unwrap(), state.to_str().unwrap());

    let (id, mut alice) = kernel(&w, &w.alice).await;
    let (_, outputs) = alice.execute(&code).await;
    let r = outcomes(&KernelClient::stdout(&outputs));
    assert_eq!(get(&r, "read_a"), "ok", "{r:?}");
    assert_eq!(get(&r, "write_a"), "ok", "{r:?}");
    for denied in ["read_b", "write_root", "list_state"] {
        assert_eq!(get(&r, denied), "PermissionError", "{denied}: {r:?}");
    }
    // Concord's state is hidden from the process altogether.
    for hidden in ["read_users", "read_policy"] {
        assert_eq!(get(&r, hidden), "FileNotFoundError", "{hidden}: {r:?}");
    }
    assert!(!root.join("k-escape.txt").exists());
    alice.close().await;
    let resp = api(&w.alice)
        .delete(w.s.url(&format!("api/kernels/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let (_, mut admin) = kernel(&w, &w.admin).await;
    let (_, outputs) = admin.execute(&code).await;
    let r = outcomes(&KernelClient::stdout(&outputs));
    for ok in ["read_a", "write_a", "read_b", "write_root"] {
        assert_eq!(get(&r, ok), "ok", "{ok}: {r:?}");
    }
    // Concord's own state stays out of reach, even for an admin's code.
    assert_eq!(get(&r, "read_users"), "FileNotFoundError", "{r:?}");
    admin.close().await;

    let status: Value = api(&w.admin)
        .get(w.s.url("api/concord/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["confinement"]["applies"], "confined", "{status}");
    let isolation = &status["confinement"]["isolation"];
    assert_eq!(isolation["namespaces"], true, "{status}");
    assert_eq!(isolation["missing"], json!([]), "{status}");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_until(ws: &mut Socket, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let Ok(frame) = tokio::time::timeout(std::time::Duration::from_secs(60), ws.next()).await
        else {
            panic!("no {needle:?} in the terminal's output: {seen}");
        };
        if let Some(Ok(Message::Text(text))) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v[0] == "stdout" {
                seen.push_str(v[1].as_str().unwrap());
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_are_confined_to_what_their_user_may_touch() {
    let w = start();
    let root = w.s.root().canonicalize().unwrap();
    let state = w.s.state().canonicalize().unwrap();
    let resp = api(&w.alice)
        .post(w.s.url("api/terminals"))
        .json(&json!({"cwd": "projects/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let url =
        w.s.url(&format!("terminals/websocket/{name}"))
            .replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("token {}", w.alice).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let line = format!(
        "cat {r}/projects/a/mine.txt; echo \" A=$?\"; cat {r}/projects/b/theirs.txt; echo \"B=$?\"; echo x > {r}/t-escape.txt; echo \"W=$?\"; cat {s}/concord.db; echo \"U=$?\"; echo DONE-$((6*7))\r",
        r = root.display(),
        s = state.display()
    );
    ws.send(Message::Text(json!(["stdin", line]).to_string().into()))
        .await
        .unwrap();
    let out = read_until(&mut ws, "DONE-42").await;
    assert!(out.contains("MINE A=0"), "{out}");
    assert!(out.contains("B=1") && !out.contains("THEIRS"), "{out}");
    // A failed redirection exits 1 in bash and 2 in dash (`sh`, the shell when $SHELL is unset).
    assert!(out.contains("W=1") || out.contains("W=2"), "{out}");
    assert!(out.contains("U=1"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!root.join("t-escape.txt").exists());
    let _ = ws.close(None).await;
    let resp = api(&w.alice)
        .delete(w.s.url(&format!("api/terminals/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

// ---- isolation between users: beyond files ----------------------------------------------

const TWO_USERS: &str = r#"
[roles.worker]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own", "terminals:*:own", "kernelspecs:read"]
[[bindings]]
role = "worker"
users = ["alice"]
paths = ["/projects/a/**"]
[[bindings]]
role = "worker"
users = ["bob"]
paths = ["/projects/b/**"]
"#;

/// The uid and gid of `nobody`, for a server that does not run as root.
const NOBODY: (u32, u32) = (65534, 65534);

struct Pair {
    s: common::Server,
    alice: String,
    bob: String,
}

fn two_users(transport: &str, run_as: Option<(u32, u32)>, args: &[&str]) -> Pair {
    let mut b = common::server()
        .users_with_policy(TWO_USERS)
        .args(&["--kernel-transport", transport])
        .args(args)
        .env("PATH", &path_with_venv())
        // A setting of the server's (as a token would be): never a kernel's business.
        .env("CONCORD_ISOLATION_PROBE", "server-only");
    if let Some((uid, gid)) = run_as {
        b = b.run_as(uid, gid);
    }
    b.add_user("alice", "alice-password-1", &[]);
    b.add_user("bob", "bob-password-1", &[]);
    let (alice, bob) = (b.issue_token("alice"), b.issue_token("bob"));
    for d in ["projects/a", "projects/b"] {
        std::fs::create_dir_all(b.root().join(d)).unwrap();
    }
    Pair {
        s: b.start(),
        alice,
        bob,
    }
}

async fn kernel_of(p: &Pair, token: &str, path: &str) -> (String, KernelClient) {
    let resp = api(token)
        .post(p.s.url("api/kernels"))
        .json(&json!({"name": "python3", "path": path}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let client = connect(&p.s.url(""), token, &id, "isolation-test", false)
        .await
        .unwrap();
    (id, client)
}

/// A kernel's connection file, wherever the runtime directory keeps it.
fn connection_file(state: &std::path::Path, id: &str) -> Value {
    fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                return Some(path);
            }
            if path.is_dir() {
                if let Some(found) = find(&path, name) {
                    return Some(found);
                }
            }
        }
        None
    }
    let path = find(state, &format!("kernel-{id}.json")).expect("connection file");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// What user A's code tries against user B's kernel and the server: connect to B's channels
/// (Unix socket paths or TCP ports), listen to B's iopub with ZMQ, signal B's kernel and
/// concord, read their `/proc` entries, find them among the visible processes, list concord's
/// runtime and state directories, find concord's settings in its environment. Each line says
/// `label ok` (it worked) or the exception's name.
fn isolation_probe(
    conn: &Value,
    other_pid: i32,
    concord_pid: u32,
    other_id: &str,
    state: &str,
    listen: f64,
) -> String {
    let names = [
        "shell_port",
        "iopub_port",
        "stdin_port",
        "control_port",
        "hb_port",
    ];
    let ipc = conn["transport"] == "ipc";
    let ip = conn["ip"].as_str().unwrap();
    let paths: Vec<String> = if ipc {
        names.iter().map(|n| format!("{ip}-{}", conn[*n])).collect()
    } else {
        Vec::new()
    };
    let ports: Vec<u64> = if ipc {
        Vec::new()
    } else {
        names.iter().map(|n| conn[*n].as_u64().unwrap()).collect()
    };
    let iopub = if ipc {
        format!("ipc://{ip}-{}", conn["iopub_port"])
    } else {
        format!("tcp://{ip}:{}", conn["iopub_port"])
    };
    format!(
        r#"
import os, socket, time
PATHS, PORTS, IOPUB = {paths:?}, {ports:?}, {iopub:?}
OTHER_PID, CONCORD_PID, OTHER_ID, STATE = {other_pid}, {concord_pid}, {other_id:?}, {state:?}
def attempt(label, fn):
    try:
        fn(); print(label, "ok", flush=True)
    except Exception as e:
        print(label, type(e).__name__, flush=True)
def connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    s.close()
def connect_tcp(port):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
for i, path in enumerate(PATHS):
    attempt(f"connect_path_{{i}}", lambda path=path: connect_unix(path))
for i, port in enumerate(PORTS):
    attempt(f"connect_port_{{i}}", lambda port=port: connect_tcp(port))
attempt("signal_other_kernel", lambda: os.kill(OTHER_PID, 0))
attempt("signal_concord", lambda: os.kill(CONCORD_PID, 0))
attempt("environ_other_kernel", lambda: open(f"/proc/{{OTHER_PID}}/environ", "rb").read())
attempt("cmdline_other_kernel", lambda: open(f"/proc/{{OTHER_PID}}/cmdline", "rb").read())
attempt("environ_concord", lambda: open(f"/proc/{{CONCORD_PID}}/environ", "rb").read())
def see_others():
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            text = open(f"/proc/{{p}}/cmdline", "rb").read()
        except OSError:
            continue
        if OTHER_ID.encode() in text or b"--state-dir" in text:
            return
    raise LookupError("nobody else in sight")
attempt("see_other_processes", see_others)
attempt("list_runtime", lambda: os.listdir(os.path.dirname(os.path.dirname(IOPUB.split("//", 1)[1])) if PATHS else STATE + "/runtime"))
attempt("list_state", lambda: os.listdir(STATE))
def concord_env():
    if not any(k.startswith("CONCORD_") for k in os.environ):
        raise LookupError("no concord setting")
attempt("concord_env", concord_env)
import zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(IOPUB)
heard = sub.poll(int({listen} * 1000))
print("eavesdrop", "heard" if heard else "nothing", flush=True)
sub.close(linger=0)
print("probe-done", flush=True)
"#
    )
}

/// Every attempt of the probe failed, and nothing was heard.
fn assert_isolated(output: &str, who: &str) {
    let results = outcomes(output);
    assert!(output.contains("probe-done"), "{who}: {output}");
    assert!(results.len() >= 11, "{who}: {results:?}");
    for (label, outcome) in &results {
        if label == "probe-done" {
            continue;
        }
        if label == "eavesdrop" {
            assert_eq!(outcome, "nothing", "{who} heard the other kernel: {output}");
        } else {
            assert_ne!(outcome, "ok", "{who} could {label}: {output}");
        }
    }
}

/// User A's kernel and terminal cannot reach user B's kernel, other processes or concord,
/// and B's kernel keeps working, its outputs private.
async fn isolated_from_each_other(transport: &str, run_as: Option<(u32, u32)>) {
    let p = two_users(transport, run_as, &[]);
    let (bob_id, mut bob) = kernel_of(&p, &p.bob, "projects/b").await;
    let (_, mut alice) = kernel_of(&p, &p.alice, "projects/a").await;
    let conn = connection_file(p.s.state(), &bob_id);
    assert_eq!(conn["transport"], transport, "{conn}");
    let bob_pid = *pids_with(&bob_id)
        .iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("ipykernel"))
        })
        .expect("bob's kernel process");
    let state = p.s.state().canonicalize().unwrap();
    let state = state.to_str().unwrap();
    let probe = isolation_probe(&conn, bob_pid, p.s.pid(), &bob_id, state, 4.0);

    // Bob prints a secret for as long as Alice's code listens on his iopub.
    let bob_prints = "import time\nfor _ in range(60):\n    print('bob-secret-42', flush=True)\n    time.sleep(0.1)";
    let ((_, heard_by_alice), (_, bob_saw)) =
        tokio::join!(alice.execute(&probe), bob.execute(bob_prints));
    assert_isolated(&KernelClient::stdout(&heard_by_alice), "alice's kernel");
    assert!(KernelClient::stdout(&bob_saw).contains("bob-secret-42"));
    // Bob's kernel keeps working.
    let (reply, outputs) = bob.execute("print(6 * 7)").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(KernelClient::stdout(&outputs).trim(), "42");

    // Alice's terminal, the same probe from bash.
    let script = p.s.root().join("projects/a/probe.py");
    std::fs::write(
        &script,
        isolation_probe(&conn, bob_pid, p.s.pid(), &bob_id, state, 0.5),
    )
    .unwrap();
    if let Some((uid, gid)) = run_as {
        nix::unistd::chown(&script, Some(uid.into()), Some(gid.into())).unwrap();
    }
    let resp = api(&p.alice)
        .post(p.s.url("api/terminals"))
        .json(&json!({"cwd": "projects/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let url =
        p.s.url(&format!("terminals/websocket/{name}"))
            .replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("token {}", p.alice).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // A login shell sets its own PATH: the venv's python (with pyzmq) by its path.
    let python = kernels_support::venv_bin().join("python3");
    let line = format!("{} probe.py\r", python.display());
    ws.send(Message::Text(json!(["stdin", line]).to_string().into()))
        .await
        .unwrap();
    let out = read_until(&mut ws, "probe-done\r\n").await;
    // The echo of the command line is not an outcome.
    let out: String = out
        .lines()
        .filter(|l| !l.contains("probe.py"))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    assert_isolated(&out, "alice's terminal");
    let _ = ws.close(None).await;
    bob.close().await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_isolated_on_the_ipc_transport() {
    isolated_from_each_other("ipc", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_isolated_on_the_tcp_transport() {
    isolated_from_each_other("tcp", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_isolated_on_the_ipc_transport_with_concord_not_root() {
    if nix::unistd::geteuid().is_root() {
        isolated_from_each_other("ipc", Some(NOBODY)).await;
    } else {
        // Already not root: the same test as the one above.
        isolated_from_each_other("ipc", None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_isolated_on_the_tcp_transport_with_concord_not_root() {
    if nix::unistd::geteuid().is_root() {
        isolated_from_each_other("tcp", Some(NOBODY)).await;
    } else {
        isolated_from_each_other("tcp", None).await;
    }
}

/// After a SIGKILL of concord, nothing its kernels and terminals started lives on (not even
/// a job that left the session with setsid or nohup), and the next start leaves no stale
/// file in the runtime directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_process_and_its_successor_no_stale_file() {
    let s = common::server().env("PATH", &path_with_venv()).start();
    let owner = s.token.clone().unwrap();
    let resp = api(&owner)
        .post(s.url("api/kernels"))
        .json(&json!({"name": "python3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut kernel = connect(&s.url(""), &owner, &id, "crash-test", false)
        .await
        .unwrap();
    // Marks unique to this test: the processes are found by their command lines.
    let mark = uuid_like(&id);
    let code = format!(
        "import subprocess, os\nsubprocess.Popen(['sleep', '3{mark}1'])\nos.system('setsid nohup sleep 3{mark}2 >/dev/null 2>&1 &')\nprint('started')"
    );
    let (_, outputs) = kernel.execute(&code).await;
    assert!(KernelClient::stdout(&outputs).contains("started"));

    let resp = api(&owner)
        .post(s.url("api/terminals"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let url = s
        .url(&format!("terminals/websocket/{name}"))
        .replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("token {owner}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let line = format!(
        "nohup sleep 3{mark}3 >/dev/null 2>&1 & disown; setsid sleep 3{mark}4 & echo JOBS-$((6*7))\r"
    );
    ws.send(Message::Text(json!(["stdin", line]).to_string().into()))
        .await
        .unwrap();
    read_until(&mut ws, "JOBS-42").await;
    let sleepers: Vec<String> = (1..=4).map(|n| format!("sleep 3{mark}{n}")).collect();
    kernels_support::eventually("every job running", || {
        sleepers.iter().all(|s| !pids_with(s).is_empty())
    })
    .await;
    let kernel_pids = pids_with(&id);
    assert!(!kernel_pids.is_empty());
    let runtime = s.state().join("runtime");
    assert!(std::fs::read_dir(&runtime).unwrap().count() > 1);

    let builder = s.kill_keeping_dirs();
    kernels_support::eventually("no process of the killed server left", || {
        sleepers.iter().all(|s| pids_with(s).is_empty())
            && kernel_pids.iter().all(|p| !kernels_support::alive(*p))
    })
    .await;

    // Its successor cleans what the killed server could not.
    let _next = builder.env("PATH", &path_with_venv()).start();
    let left: Vec<String> = std::fs::read_dir(&runtime)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".concord-runtime"))
        .collect();
    assert!(left.is_empty(), "stale files: {left:?}");
}

/// Eight digits from a kernel id, to make command lines unique to one test run.
fn uuid_like(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_digit())
        .take(8)
        .collect::<String>()
        + "0"
}

/// The accounts of `--confine-os-users` in the test below: nobody on the machine has them.
const ALICE_ACCOUNT: u32 = 40_001;
const BOB_ACCOUNT: u32 = 40_002;

/// With concord as root and `--confine-os-users`, each user's kernels and terminals run as
/// their own account: isolated as before, and what they create is theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_run_as_their_own_accounts_when_concord_is_root() {
    if !nix::unistd::geteuid().is_root() {
        // Only root can start processes as other accounts; concord refuses the option then.
        return;
    }
    let map = format!("alice={ALICE_ACCOUNT}:{ALICE_ACCOUNT},bob={BOB_ACCOUNT}:{BOB_ACCOUNT}");
    let p = two_users("ipc", None, &["--confine-os-users", &map]);
    for (dir, id) in [("projects/a", ALICE_ACCOUNT), ("projects/b", BOB_ACCOUNT)] {
        nix::unistd::chown(&p.s.root().join(dir), Some(id.into()), Some(id.into())).unwrap();
    }
    let (bob_id, mut bob) = kernel_of(&p, &p.bob, "projects/b").await;
    let (_, mut alice) = kernel_of(&p, &p.alice, "projects/a").await;
    let conn = connection_file(p.s.state(), &bob_id);
    let bob_pid = kernels_support::kernel_process(&bob_id).expect("bob's kernel process");
    let state = p.s.state().canonicalize().unwrap();
    let probe = isolation_probe(
        &conn,
        bob_pid,
        p.s.pid(),
        &bob_id,
        state.to_str().unwrap(),
        0.5,
    );
    let (_, outputs) = alice.execute(&probe).await;
    assert_isolated(&KernelClient::stdout(&outputs), "alice's kernel");

    let code = "import os\nopen('made.txt', 'w').write('x')\nprint(os.getuid(), os.getgid(), os.stat('made.txt').st_uid)";
    for (client, who, id, dir) in [
        (&mut alice, "alice", ALICE_ACCOUNT, "projects/a"),
        (&mut bob, "bob", BOB_ACCOUNT, "projects/b"),
    ] {
        let (reply, outputs) = client.execute(code).await;
        assert_eq!(reply["status"], "ok", "{who}: {reply}");
        assert_eq!(
            KernelClient::stdout(&outputs).trim(),
            format!("{id} {id} {id}"),
            "{who}"
        );
        let made = std::fs::metadata(p.s.root().join(dir).join("made.txt")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), id, "{who}");
    }
    // Alice's terminal too.
    let resp = api(&p.alice)
        .post(p.s.url("api/terminals"))
        .json(&json!({"cwd": "projects/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let url =
        p.s.url(&format!("terminals/websocket/{name}"))
            .replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("token {}", p.alice).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::Text(
        json!([
            "stdin",
            "echo UID-$(id -u)-$(stat -c %u $(tty))-E$((1+1))ND\r"
        ])
        .to_string()
        .into(),
    ))
    .await
    .unwrap();
    let out = read_until(&mut ws, "-E2ND").await;
    assert!(
        out.contains(&format!("UID-{ALICE_ACCOUNT}-{ALICE_ACCOUNT}-E2ND")),
        "{out}"
    );
    let _ = ws.close(None).await;
    // The machine sees each kernel under its account.
    let status = std::fs::read_to_string(format!("/proc/{bob_pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&BOB_ACCOUNT.to_string())),
        "{status}"
    );
    alice.close().await;
    bob.close().await;
}
