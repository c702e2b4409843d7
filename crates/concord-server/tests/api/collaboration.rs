//! Real-time collaboration, black-box: a real Yjs client (pycrdt + jupyter_ydoc, in
//! `collaboration_client.py`) against a real server. Writers' concurrent edits converge and
//! reach the disk; a viewer's change reaches nobody and nothing; a REST save while the room
//! is open is kept; a caller without read is refused; ids survive renames; a policy reload
//! that takes read away closes the socket.

use crate::common;
use crate::kernels_support::venv_bin;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[roles.editor]
permissions = ["contents:read", "contents:write", "server:read"]
[roles.viewer]
permissions = ["contents:read"]
[[bindings]]
role = "editor"
users = ["alice", "bob"]
[[bindings]]
role = "viewer"
users = ["carol"]
"#;

/// The same, with carol's read taken away.
const POLICY_WITHOUT_CAROL: &str = r#"
[roles.editor]
permissions = ["contents:read", "contents:write", "server:read"]
[[bindings]]
role = "editor"
users = ["alice", "bob"]
"#;

struct Team {
    s: common::Server,
    tokens: Value,
    alice: String,
}

/// A server whose quiet period before a save is short, with editors alice and bob, viewer
/// carol and dave who may read nothing.
fn team() -> Team {
    let b = common::server().users_with_policy(POLICY);
    let audit = b.state().join("audit.jsonl");
    let b = b.args(&[
        "--collaboration-save-delay",
        "0.2",
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    for user in ["alice", "bob", "carol", "dave"] {
        b.add_user(user, &format!("{user}-password"), &[]);
    }
    let tokens: serde_json::Map<String, Value> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| (u.to_string(), Value::from(b.issue_token(u))))
        .collect();
    let s = b.start();
    let alice = tokens["alice"].as_str().unwrap().to_string();
    Team {
        s,
        tokens: Value::Object(tokens),
        alice,
    }
}

fn client_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/collaboration_client.py")
}

fn spawn_client(scenario: &str) -> Child {
    Command::new(venv_bin().join("python"))
        .arg(client_script())
        .arg(scenario)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn request(t: &Team, path: &str, extra: Value) -> Value {
    let mut request = json!({"base": t.s.url(""), "tokens": t.tokens, "path": path});
    if let (Value::Object(r), Value::Object(e)) = (&mut request, extra) {
        r.extend(e);
    }
    request
}

/// Run a scenario of the Python client to its end; its JSON answer.
fn run_client(scenario: &str, request: &Value) -> Value {
    let mut child = spawn_client(scenario);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{request}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{scenario}: {e}: {stdout}"))
}

/// Wait (bounded) until the file holds `want`; what it holds then.
async fn file_becomes(path: &Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == want || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A save answer saying the document was saved (`skipped`: a save was already under way).
fn saved(answer: &Value) -> bool {
    answer["type"] == "save" && (answer["status"] == "success" || answer["status"] == "skipped")
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn two_writers_edits_converge_and_reach_the_file() {
    let t = team();
    std::fs::write(t.s.root().join("shared.txt"), "hello\n").unwrap();
    let seen = run_client(
        "writers_converge",
        &request(&t, "shared.txt", json!({"initial": "hello\n"})),
    );
    let (alice, bob) = (
        seen["alice"].as_str().unwrap(),
        seen["bob"].as_str().unwrap(),
    );
    assert_eq!(alice, bob, "the two writers did not converge");
    assert_eq!(alice, "alice was here\nhello\nbob too\n");
    assert_eq!(
        file_becomes(&t.s.root().join("shared.txt"), alice).await,
        alice
    );
    // Attributed per save, to each writer.
    let saved_by = |records: &[Value], user: &str| {
        records.iter().any(|r| {
            r["user"] == user
                && r["action"] == "write"
                && r["resource"] == "contents:/shared.txt"
                && r["rule"]
                    .as_str()
                    .unwrap_or("")
                    .contains("collaboration save")
        })
    };
    let audit = audit_lines(&t.s, |r| saved_by(r, "alice") && saved_by(r, "bob"));
    for user in ["alice", "bob"] {
        assert!(
            saved_by(&audit, user),
            "no save of {user} in the audit log: {audit:?}"
        );
    }
}

/// The audit log's records (JSON lines), once `done` holds of them (the log is written by
/// its own thread).
fn audit_lines(s: &common::Server, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(s.state().join("audit.jsonl")).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if done(&records) || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_viewers_update_changes_nothing_for_anyone_nor_on_disk() {
    let t = team();
    let file = t.s.root().join("view.txt");
    std::fs::write(&file, "shared text\n").unwrap();
    let seen = run_client(
        "viewer_changes_nothing",
        &request(&t, "view.txt", json!({"initial": "shared text\n"})),
    );
    let alice = seen["alice"].as_str().unwrap();
    assert_eq!(alice, "shared text\nalice's line\n", "{seen}");
    assert_eq!(seen["carol_save"]["status"], "failed", "{seen}");
    // Saved now, or by the autosave already under way.
    assert!(saved(&seen["alice_save"]), "{seen}");
    // The viewer sees the editor's change live (her own stays local to her document).
    assert!(seen["carol"].as_str().unwrap().contains("alice's line"));
    assert_eq!(file_becomes(&file, alice).await, alice);
    let metrics = t.s.metrics(&t.alice).await;
    assert!(metric(&metrics, "concord_collaboration_refused_updates_total") >= 1);
    assert!(metric(&metrics, "concord_collaboration_refused_saves_total") >= 1);
    // Audited once per connection, as a denied write of the viewer.
    let refused = |records: &[Value]| {
        records
            .iter()
            .filter(|r| {
                r["user"] == "carol"
                    && r["resource"] == "contents:/view.txt"
                    && r["rule"]
                        .as_str()
                        .unwrap_or("")
                        .contains("read-only participant")
            })
            .count()
    };
    let audit = audit_lines(&t.s, |r| refused(r) >= 1);
    assert_eq!(refused(&audit), 1, "once per connection: {audit:?}");
}

#[tokio::test]
async fn a_rest_save_while_the_room_is_open_is_not_lost() {
    let t = team();
    let file = t.s.root().join("oob.txt");
    std::fs::write(&file, "one\n").unwrap();
    let seen = run_client(
        "rest_save_kept",
        &request(
            &t,
            "oob.txt",
            json!({"initial": "one\n", "rest_content": "one\ntwo\n"}),
        ),
    );
    assert_eq!(seen["alice"], "zero\none\ntwo\n", "{seen}");
    assert!(saved(&seen["save"]), "{seen}");
    assert_eq!(
        file_becomes(&file, "zero\none\ntwo\n").await,
        "zero\none\ntwo\n"
    );
}

#[tokio::test]
async fn a_caller_without_read_is_refused_session_and_room() {
    let t = team();
    std::fs::write(t.s.root().join("private.txt"), "secret\n").unwrap();
    let seen = run_client("refused", &request(&t, "private.txt", json!({})));
    // As every contents route answers a path the caller may not read: not found, so the
    // refusal does not tell that the file exists.
    assert_eq!(seen["session"], 404, "{seen}");
    assert_eq!(seen["room"], 404, "{seen}");
}

#[tokio::test]
async fn a_renamed_file_keeps_its_id() {
    let t = team();
    std::fs::write(t.s.root().join("before.txt"), "x\n").unwrap();
    let alice = common::token_client(&t.alice);
    let session = |path: &str| {
        alice
            .put(t.s.url(&format!("api/collaboration/session/{path}")))
            .json(&json!({"format": "text", "type": "file"}))
            .send()
    };
    let first = session("before.txt").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = session("before.txt").await.unwrap();
    assert_eq!(again.status(), 200);
    let r = alice
        .patch(t.s.url("api/contents/before.txt"))
        .json(&json!({"path": "after.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let moved = session("after.txt").await.unwrap();
    assert_eq!(moved.status(), 200, "the moved file has its id already");
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["fileId"], first["fileId"]);
    assert_eq!(moved["sessionId"], first["sessionId"]);
    // An unknown format is refused; a missing file is not found.
    let bad = alice
        .put(t.s.url("api/collaboration/session/after.txt"))
        .json(&json!({"format": "xml", "type": "file"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(session("before.txt").await.unwrap().status(), 404);
}

fn read_line(out: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[tokio::test]
async fn a_policy_reload_that_takes_read_away_closes_the_viewers_socket() {
    let t = team();
    std::fs::write(t.s.root().join("watched.txt"), "x\n").unwrap();
    let mut child = spawn_client("revoked");
    let mut stdin: ChildStdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{}", request(&t, "watched.txt", json!({}))).unwrap();
    assert_eq!(read_line(&mut out)["joined"], true);
    std::fs::write(t.s.state().join("policy.toml"), POLICY_WITHOUT_CAROL).unwrap();
    writeln!(stdin).unwrap();
    let seen = read_line(&mut out);
    assert_eq!(seen["closed"]["code"], 1003, "{seen}");
    let reason: Value = serde_json::from_str(seen["closed"]["reason"].as_str().unwrap()).unwrap();
    assert_eq!(reason["reason"], "access_revoked");
    assert!(child.wait().unwrap().success());
}
