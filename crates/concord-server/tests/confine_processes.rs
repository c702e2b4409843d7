//! Issue 7 through the real server: a user who may write /projects/a only runs code in their
//! real ipykernel (kernel websocket) and their real bash (terminal websocket); the operating
//! system stops them — PermissionError / "Permission denied" from the process itself — from
//! reading /projects/b or concord's state and from creating files outside what they may
//! write. The admin's kernel runs the same code and succeeds.

mod common;
mod kernels_support;

use common::token_client as api;
use futures::{SinkExt, StreamExt};
use kernels_support::{connect, path_with_venv, KernelClient};
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
    for denied in [
        "read_b",
        "write_root",
        "read_users",
        "read_policy",
        "list_state",
    ] {
        assert_eq!(get(&r, denied), "PermissionError", "{denied}: {r:?}");
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
    assert_eq!(get(&r, "read_users"), "PermissionError", "{r:?}");
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
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_until(ws: &mut Socket, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(60), ws.next())
            .await
            .expect("terminal output");
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
