//! Terminals through a real server: REST, terminado's websocket with real bash, and the
//! policy: an owner, a watcher who may only read the owner's terminal (same group), and an
//! outsider who may not see it.

use crate::common;

use std::time::Duration;

use common::token_client as api;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Guards against a hang only; nothing asserts on durations.
const HANG_GUARD: Duration = Duration::from_secs(30);

const POLICY: &str = r#"
[roles.shell]
permissions = ["terminals:*:own", "contents:read"]

[roles.team-watch]
permissions = ["terminals:read:group"]

[[bindings]]
role = "shell"
everyone = true

[[bindings]]
role = "team-watch"
users = ["watcher"]
"#;

struct Users {
    server: common::Server,
    owner: String,
    watcher: String,
    outsider: String,
}

fn start(args: &[&str]) -> Users {
    let b = common::server()
        .users_with_policy(POLICY)
        .args(args)
        .env("SHELL", "/bin/bash");
    b.add_user("owner", "owner-password-1", &["team"]);
    b.add_user("watcher", "watcher-password-1", &["team"]);
    b.add_user("outsider", "outsider-password-1", &["others"]);
    let token = |user: &str| b.issue_token(user);
    let (owner, watcher, outsider) = (token("owner"), token("watcher"), token("outsider"));
    std::fs::create_dir(b.root().join("sub")).unwrap();
    Users {
        server: b.start(),
        owner,
        watcher,
        outsider,
    }
}

async fn create(s: &common::Server, token: &str, body: Value) -> reqwest::Response {
    api(token)
        .post(s.url("api/terminals"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn list(s: &common::Server, token: &str) -> Vec<String> {
    let resp = api(token).get(s.url("api/terminals")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let models: Vec<Value> = resp.json().await.unwrap();
    models
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

async fn connect(s: &common::Server, token: &str, name: &str) -> Result<Socket, u16> {
    let url = s
        .url(&format!("terminals/websocket/{name}"))
        .replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("token {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket: {other}"),
    }
}

async fn next_frame(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Read until the stdout text seen contains `needle`; returns the text.
async fn read_until(ws: &mut Socket, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = next_frame(ws).await;
        if frame[0] == "stdout" {
            seen.push_str(frame[1].as_str().unwrap());
        }
    }
    seen
}

/// Like `read_until`, but false when the server closes the socket first.
async fn read_until_or_closed(ws: &mut Socket, needle: &str) -> bool {
    let mut seen = String::new();
    while !seen.contains(needle) {
        match tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame[0] == "stdout" {
                    seen.push_str(frame[1].as_str().unwrap());
                }
            }
            Some(Ok(Message::Close(_))) | None => return false,
            Some(Ok(_)) => {}
            // A reader let go for being slower than the flood is dropped without a closing
            // handshake (it is not reading, so a close frame could not reach it).
            Some(Err(_)) => return false,
        }
    }
    true
}

async fn send(ws: &mut Socket, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

async fn type_line(ws: &mut Socket, line: &str) {
    send(ws, json!(["stdin", format!("{line}\r")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_watcher_and_outsider_on_one_terminal() {
    let u = start(&[]);
    let s = &u.server;
    let resp = create(s, &u.owner, json!({})).await;
    assert_eq!(resp.status(), 200);
    let model: Value = resp.json().await.unwrap();
    assert_eq!(model["name"], "1");
    assert_eq!(model.as_object().unwrap().len(), 2);
    assert!(model["last_activity"].as_str().unwrap().ends_with('Z'));

    assert_eq!(list(s, &u.owner).await, ["1"]);
    assert_eq!(list(s, &u.watcher).await, ["1"]);
    assert!(list(s, &u.outsider).await.is_empty());
    let outsider = api(&u.outsider);
    let resp = outsider.get(s.url("api/terminals/1")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Terminal not found: 1");
    let resp = outsider
        .delete(s.url("api/terminals/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(connect(s, &u.outsider, "1").await.is_err());
    // The watcher may look but not delete.
    let resp = api(&u.watcher)
        .delete(s.url("api/terminals/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let mut owner = connect(s, &u.owner, "1").await.unwrap();
    assert_eq!(next_frame(&mut owner).await, json!(["setup", {}]));
    type_line(&mut owner, "echo HELLO$((6*7))").await;
    read_until(&mut owner, "HELLO42").await;
    send(&mut owner, json!(["set_size", 30, 100, 600, 1000])).await;
    type_line(&mut owner, "echo SIZE=$(stty size)=").await;
    read_until(&mut owner, "SIZE=30 100=").await;

    let mut watcher = connect(s, &u.watcher, "1").await.unwrap();
    assert_eq!(next_frame(&mut watcher).await, json!(["setup", {}]));
    read_until(&mut watcher, "HELLO42").await; // the replay
    send(&mut watcher, json!(["set_size", 5, 10])).await;
    let victim = s.root().join("pwned");
    type_line(&mut watcher, &format!("touch {}", victim.display())).await;
    read_until(&mut watcher, "read-only").await;

    type_line(&mut owner, "echo AFTER$((1+1)); echo SIZE=$(stty size)=").await;
    let seen = read_until(&mut owner, "SIZE=30 100=").await;
    assert!(seen.contains("AFTER2"));
    assert!(!seen.contains("pwned"), "{seen}");
    read_until(&mut watcher, "AFTER2").await;
    assert!(!victim.exists(), "the watcher's command ran");

    // A reconnecting owner gets the history replayed.
    drop(owner);
    let mut owner = connect(s, &u.owner, "1").await.unwrap();
    assert_eq!(next_frame(&mut owner).await, json!(["setup", {}]));
    let replay = next_frame(&mut owner).await;
    assert!(replay[1].as_str().unwrap().contains("AFTER2"));

    let resp = api(&u.owner)
        .delete(s.url("api/terminals/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // Both sockets are told, then closed.
    for ws in [&mut owner, &mut watcher] {
        loop {
            match tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) if text.contains("disconnect") => {
                    assert_eq!(
                        serde_json::from_str::<Value>(&text).unwrap(),
                        json!(["disconnect", 1])
                    );
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(list(s, &u.owner).await.is_empty());
    assert_eq!(connect(s, &u.owner, "1").await.unwrap_err(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_fields_never_choose_the_command_env_or_name() {
    let u = start(&[]);
    let s = &u.server;
    assert_eq!(create(s, &u.owner, json!({})).await.status(), 200);
    let mut first = connect(s, &u.owner, "1").await.unwrap();
    type_line(&mut first, "export MARK=first; echo SET$((2+2))").await;
    read_until(&mut first, "SET4").await;

    let planted = s.root().join("planted");
    let resp = create(
        s,
        &u.owner,
        json!({
            "name": "1",
            "shell_command": ["touch", planted.to_str().unwrap()],
            "env": {"PLANTED": "yes"},
            "extra_env": {"PLANTED": "yes"},
            "cwd": "sub",
            "unknown": [1, 2, 3]
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let model: Value = resp.json().await.unwrap();
    assert_eq!(
        model["name"], "2",
        "a client-supplied name must not be used"
    );

    let mut second = connect(s, &u.owner, "2").await.unwrap();
    type_line(
        &mut second,
        "echo V=${PLANTED:-unset}= D=$(pwd)= T=${TERM}=",
    )
    .await;
    let seen = read_until(&mut second, "T=xterm-256color=").await;
    assert!(seen.contains("V=unset="), "{seen}");
    let sub = std::fs::canonicalize(s.root().join("sub")).unwrap();
    assert!(seen.contains(&format!("D={}=", sub.display())), "{seen}");
    assert!(!planted.exists(), "a command from the body ran");

    // Terminal 1 is the same shell as before.
    type_line(&mut first, "echo M=$MARK=").await;
    read_until(&mut first, "M=first=").await;

    // An empty cwd (JupyterLab at the root of its file browser) is the root.
    let resp = create(s, &u.owner, json!({"cwd": ""})).await;
    assert_eq!(resp.status(), 200);
    // cwd outside what the caller may use: refused, or the root; never outside the root.
    let resp = create(s, &u.owner, json!({"cwd": "../.."})).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let resp = create(s, &u.owner, json!({"cwd": "/etc"})).await;
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut third = connect(s, &u.owner, &name).await.unwrap();
    type_line(&mut third, "echo D=$(pwd)=").await;
    let root = std::fs::canonicalize(s.root()).unwrap();
    read_until(&mut third, &format!("D={}=", root.display())).await;

    for bad in ["[1, 2]", "\"cwd\"", "{\"cwd\": 5}", "not json"] {
        let resp = api(&u.owner)
            .post(s.url("api/terminals"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_and_global_limits() {
    let u = start(&["--max-terminals-per-user", "1", "--max-terminals", "2"]);
    let s = &u.server;
    assert_eq!(create(s, &u.owner, json!({})).await.status(), 200);
    let resp = create(s, &u.owner, json!({})).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("per user"),
        "{body}"
    );
    assert_eq!(create(s, &u.watcher, json!({})).await.status(), 200);
    let resp = create(s, &u.outsider, json!({})).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Cannot create more than 2 terminals");

    let resp = api(&u.owner)
        .delete(s.url("api/terminals/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(create(s, &u.owner, json!({})).await.status(), 200);
}

/// Pids of processes whose command line contains `marker`.
fn pids_running(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The session id of a process (the terminal's shell pid, which is also its group).
fn session_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[3].parse().unwrap()
}

/// `/proc/<pid>/stat` and the command line, for failure messages.
fn describe(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!(
        "{stat} [{}]",
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    )
}

fn exists(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(other) => panic!("kill({pid}, 0): {other}"),
    }
}

/// Start jobs in terminal `name` and return (shell pid, their pids).
async fn start_jobs(s: &common::Server, token: &str, name: &str, tag: u32) -> (i32, Vec<i32>) {
    let mut ws = connect(s, token, name).await.unwrap();
    type_line(
        &mut ws,
        &format!("sleep {tag}1 & nohup sleep {tag}2 >/dev/null 2>&1 & setsid sleep {tag}3 & echo STARTED$((1+2))"),
    )
    .await;
    read_until(&mut ws, "STARTED3").await;
    let mut pids = Vec::new();
    let result = tokio::time::timeout(HANG_GUARD, async {
        loop {
            pids = (1..=3)
                .flat_map(|i| pids_running(&format!("sleep {tag}{i}")))
                .collect();
            if pids.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "jobs did not start");
    (session_of(pids_running(&format!("sleep {tag}1"))[0]), pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_left_after_delete_or_sigterm() {
    let mut u = start(&[]);
    let tag = 700_000 + std::process::id() % 1000 * 10;
    assert_eq!(create(&u.server, &u.owner, json!({})).await.status(), 200);
    let (shell, pids) = start_jobs(&u.server, &u.owner, "1", tag).await;
    assert!(exists(-shell));
    let resp = api(&u.owner)
        .delete(u.server.url("api/terminals/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!exists(-shell), "the shell's process group survived DELETE");
    for pid in pids {
        assert!(!exists(pid), "process survived DELETE: {}", describe(pid));
    }

    assert_eq!(create(&u.server, &u.owner, json!({})).await.status(), 200);
    assert_eq!(create(&u.server, &u.watcher, json!({})).await.status(), 200);
    let (shell_a, mut pids) = start_jobs(&u.server, &u.owner, "1", tag + 5).await;
    let (shell_b, more) = start_jobs(&u.server, &u.watcher, "2", tag + 7).await;
    pids.extend(more);
    let status = u.server.terminate(30).expect("concord exits on SIGTERM");
    assert!(status.success() || status.code().is_some(), "{status:?}");
    for shell in [shell_a, shell_b] {
        assert!(!exists(-shell), "a shell's process group survived SIGTERM");
    }
    for pid in pids {
        assert!(!exists(pid), "process survived SIGTERM: {}", describe(pid));
    }
}

/// A user whose terminal permission covers only some folders cannot start a terminal
/// elsewhere (JupyterLab's Launcher at the root sends no `cwd`): a clear 403, and no
/// terminal they could neither see nor close left running against their limit.
#[tokio::test]
async fn a_terminal_outside_the_folders_of_the_grant_is_refused() {
    let b = common::server()
        .users_with_policy(
            r#"
[roles.browse]
permissions = ["contents:read"]

[roles.shell]
permissions = ["terminals:*:own"]

[[bindings]]
role = "browse"
users = ["limited"]

[[bindings]]
role = "shell"
users = ["limited"]
paths = ["/sub/**"]
"#,
        )
        .args(&["--max-terminals-per-user", "1"])
        .env("SHELL", "/bin/bash");
    b.add_user("limited", "limited-password-1", &[]);
    let token = b.issue_token("limited");
    std::fs::create_dir(b.root().join("sub")).unwrap();
    std::fs::create_dir(b.root().join("other")).unwrap();
    let s = b.start();
    for (body, folder) in [
        (json!({}), "/"),
        (json!({"cwd": ""}), "/"),
        (json!({"cwd": "other"}), "/other"),
        (json!({"cwd": "missing"}), "/"),
    ] {
        let r = create(&s, &token, body.clone()).await;
        assert_eq!(r.status(), 403, "{body}");
        let message = r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with(&format!("You may not open a terminal in {folder}:")),
            "{body}: {message}"
        );
    }
    assert!(list(&s, &token).await.is_empty(), "no ghost terminal");
    let r = create(&s, &token, json!({"cwd": "sub"})).await;
    assert_eq!(r.status(), 200, "the limit was not used up by the refusals");
    let name = r.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(list(&s, &token).await, vec![name.clone()]);
    let r = api(&token)
        .delete(s.url(&format!("api/terminals/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// The websockets the server counts as open (`/metrics`).
async fn open_connections(s: &common::Server, token: &str) -> u64 {
    let text = s.metrics(token).await;
    text.lines()
        .find_map(|l| l.strip_prefix("concord_websocket_connections "))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A client that stops reading while the shell floods it is let go once it has taken no
/// frame for `--terminal-write-timeout` (with what was queued for it), instead of being
/// held for ever; a message above `--terminal-max-message-size` closes with 1009. The
/// terminal goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_let_go_and_a_message_too_big_closes_with_1009() {
    let b = common::server()
        .users_with_policy(
            "[roles.shell]\npermissions = [\"terminals:*:own\", \"server:read\"]\n\
             [[bindings]]\nrole = \"shell\"\neveryone = true\n",
        )
        .args(&[
            "--terminal-write-timeout",
            "2",
            "--terminal-max-message-size",
            "65536",
        ])
        .env("SHELL", "/bin/bash");
    b.add_user("owner", "owner-password-1", &[]);
    let owner = b.issue_token("owner");
    let s = &b.start();
    assert_eq!(create(s, &owner, json!({})).await.status(), 200);
    let mut stuck = connect(s, &owner, "1").await.unwrap();
    type_line(
        &mut stuck,
        "yes 0123456789012345678901234567890123456789 | head -c 100000000; echo FLOOD-DONE",
    )
    .await;
    assert_eq!(open_connections(s, &owner).await, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open_connections(s, &owner).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the client that stopped reading is still held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);

    // On a loaded machine a reader slower than the flood is itself let go, rightly: attach
    // again until one attachment sees the flood's end (the replay holds the tail).
    let mut attempts = 0;
    let mut ws = loop {
        let mut ws = connect(s, &owner, "1").await.unwrap();
        if read_until_or_closed(&mut ws, "FLOOD-DONE").await {
            break ws;
        }
        attempts += 1;
        assert!(attempts < 30, "no attachment kept up with the flood's end");
    };
    send(&mut ws, json!(["stdin", "x".repeat(100_000)])).await;
    let close = loop {
        match tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
    let mut ws = connect(s, &owner, "1").await.unwrap();
    type_line(&mut ws, "echo AGAIN$((5*5))").await;
    read_until(&mut ws, "AGAIN25").await;
}
