//! Scoped API tokens and immediate revocation (`--auth users`): a scoped token stays within
//! its scope and its owner's rights; `concord token …` and `/api/concord/tokens` create,
//! list and revoke; an open websocket closes (or a kernel client becomes a watcher) as
//! soon as the credential or the right it relied on is gone: a token revoked, a user
//! removed, a password changed, a policy reloaded.

use crate::common;
use crate::kernels_support;

use common::token_client as api;
use futures::StreamExt;
use kernels_support::{connect, path_with_venv, Closed};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const POLICY: &str = r#"
[roles.editor]
permissions = ["api:read", "contents:*", "kernels:*:own", "sessions:*:own", "kernelspecs:read", "events:*"]

[roles.team-runner]
permissions = ["kernels:*:group"]

[[bindings]]
role = "editor"
everyone = true

[[bindings]]
role = "team-runner"
users = ["bob"]
"#;

/// The same policy without bob's binding on the team's kernels: he keeps nothing of them.
const POLICY_WITHOUT_BOB: &str = r#"
[roles.editor]
permissions = ["api:read", "contents:*", "kernels:*:own", "sessions:*:own", "kernelspecs:read", "events:*"]

[[bindings]]
role = "editor"
everyone = true
"#;

/// bob may only watch the team's kernels.
const POLICY_BOB_WATCHES: &str = r#"
[roles.editor]
permissions = ["api:read", "contents:*", "kernels:*:own", "sessions:*:own", "kernelspecs:read", "events:*"]

[roles.team-watch]
permissions = ["kernels:read:group"]

[[bindings]]
role = "editor"
everyone = true

[[bindings]]
role = "team-watch"
users = ["bob"]
"#;

/// How long a right may outlive its revocation on an open socket.
const WITHIN: Duration = Duration::from_secs(1);

fn builder() -> common::ServerBuilder {
    let b = common::server()
        .users_with_policy(POLICY)
        .env("PATH", &path_with_venv());
    b.add_user("alice", "alice-password-1", &["team"]);
    b.add_user("bob", "bob-password-1", &["team"]);
    b.add_user("root", "root-password-1", &["admin"]);
    for dir in ["projects/a", "projects/b"] {
        std::fs::create_dir_all(b.root().join(dir)).unwrap();
    }
    std::fs::write(b.root().join("projects/a/x.txt"), "in a").unwrap();
    std::fs::write(b.root().join("projects/b/y.txt"), "in b").unwrap();
    b
}

/// `concord token ARGS… --state-dir STATE`: (exit code, stdout, stderr).
fn token_cmd(state: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["token"];
    full.extend_from_slice(args);
    let state = state.to_str().unwrap();
    full.extend_from_slice(&["--state-dir", state]);
    common::run_cli(&full, None)
}

/// A token created with `concord token create … --json`: (id, secret).
fn create_token(state: &std::path::Path, user: &str, extra: &[&str]) -> (i64, String) {
    let mut args = vec!["create", user, "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = token_cmd(state, &args);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    (
        created["id"].as_i64().unwrap(),
        created["token"].as_str().unwrap().to_string(),
    )
}

async fn status(client: &reqwest::Client, method: &str, url: &str, body: Option<&str>) -> u16 {
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_scoped_token_stays_within_its_scope_and_its_owner_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let b = builder().args(&["--audit-log", audit.to_str().unwrap()]);
    let (scoped_id, scoped) = create_token(
        b.state(),
        "alice",
        &["--scope", "contents:read:/projects/a/**"],
    );
    let (_, full) = create_token(b.state(), "alice", &[]);
    let s = b.start();
    let (scoped, full) = (api(&scoped), api(&full));
    let file = |p: &str| s.url(&format!("api/contents/{p}"));
    let save = r#"{"type": "file", "format": "text", "content": "changed"}"#;

    // Reads in its scope.
    assert_eq!(
        status(&scoped, "GET", &file("projects/a/x.txt"), None).await,
        200
    );
    assert_eq!(status(&scoped, "GET", &file("projects/a"), None).await, 200);
    // Cannot write there (it may read it: 403), nor read elsewhere (404, as if absent).
    assert_eq!(
        status(&scoped, "PUT", &file("projects/a/x.txt"), Some(save)).await,
        403
    );
    assert_eq!(
        status(&scoped, "GET", &file("projects/b/y.txt"), None).await,
        404
    );
    assert_eq!(status(&scoped, "GET", &file("projects"), None).await, 404);
    // Nor any other type, nor a change of the caller's own settings.
    assert_eq!(
        status(&scoped, "GET", &s.url("api/kernels"), None).await,
        403
    );
    assert_eq!(
        status(
            &scoped,
            "PATCH",
            &s.url("api/me"),
            Some(r#"{"color": "red"}"#)
        )
        .await,
        403
    );
    // Its owner can do all of it.
    assert_eq!(
        status(&full, "GET", &file("projects/b/y.txt"), None).await,
        200
    );
    assert_eq!(
        status(&full, "PUT", &file("projects/a/x.txt"), Some(save)).await,
        200
    );
    assert_eq!(status(&full, "GET", &s.url("api/kernels"), None).await, 200);

    // /api/me tells what the token holds, not what its owner holds.
    let me: Value = scoped
        .get(s.url(r#"api/me?permissions={"contents":["read","write"],"kernels":["read"]}"#))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["identity"]["username"], "alice");
    assert_eq!(me["permissions"]["contents"], json!(["read"]));
    assert_eq!(me["permissions"]["kernels"], json!([]));

    // The refused write is audited with the token's id and the scope as the deciding rule.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("token scope") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| {
            r["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("token scope"))
        })
        .unwrap_or_else(|| panic!("no scope denial in the audit log:\n{text}"));
    assert_eq!(record["token_id"], scoped_id, "{record}");
    assert_eq!(record["user"], "alice");
    assert_eq!(record["decision"], "deny");
}

#[tokio::test]
async fn cli_create_list_revoke_round_trip() {
    let b = builder();
    let state = b.state().to_path_buf();
    let (code, out, err) = token_cmd(
        &state,
        &[
            "create",
            "alice",
            "--scope",
            "contents:read:/projects/a/**",
            "--scope",
            "kernelspecs:read",
            "--expires-in",
            "30d",
            "--note",
            "agent",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let secret = out.trim().to_string();
    assert!(secret.starts_with("concord_"), "{out}");
    assert!(err.contains("shown once"), "{err}");
    let s = b.start();

    let (code, listed, err) = token_cmd(&state, &["list", "alice", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!listed.contains(&secret), "a listing shows a secret");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let token = &listed.as_array().unwrap()[0];
    assert_eq!(token["username"], "alice");
    assert_eq!(token["note"], "agent");
    assert_eq!(
        token["scope"],
        json!(["contents:read:/projects/a/**", "kernelspecs:read"])
    );
    assert!(
        token["expires"].is_string() && token["expired"] == false,
        "{token}"
    );
    let id = token["id"].as_i64().unwrap().to_string();
    let (code, table, _) = token_cmd(&state, &["list"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("agent") && !table.contains(&secret),
        "{table}"
    );

    let url = s.url("api/contents/projects/a/x.txt");
    assert_eq!(status(&api(&secret), "GET", &url, None).await, 200);
    // Revoking someone else's id under --user is refused; the right owner works.
    let (code, _, err) = token_cmd(&state, &["revoke", &id, "--user", "bob"]);
    assert_ne!(code, 0);
    assert!(err.contains("no API token"), "{err}");
    let (code, out, err) = token_cmd(&state, &["revoke", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("alice"), "{out}");
    // Stops working at once in the running server.
    assert_eq!(status(&api(&secret), "GET", &url, None).await, 403);
    let (_, listed, _) = token_cmd(&state, &["list", "alice", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), json!([]));
    // Bad scopes are refused with the reason.
    let (code, _, err) = token_cmd(&state, &["create", "alice", "--scope", "contents:fly"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown action"), "{err}");
}

#[tokio::test]
async fn the_api_manages_ones_own_tokens_and_admins_everyones() {
    let b = builder();
    let (_, alice) = create_token(b.state(), "alice", &[]);
    let (_, root) = create_token(b.state(), "root", &[]);
    let (_, narrow) = create_token(b.state(), "alice", &["--scope", "contents:read"]);
    let s = b.start();
    let tokens = s.url("api/concord/tokens");
    let (alice, root, narrow) = (api(&alice), api(&root), api(&narrow));

    let r = alice
        .post(&tokens)
        .body(r#"{"note": "ci", "scope": ["contents:read:/projects/a/**"], "expires_in": 3600}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["scope"], json!(["contents:read:/projects/a/**"]));
    let mine: Value = alice
        .get(&tokens)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = mine.as_array().unwrap();
    assert!(mine.iter().all(|t| t["username"] == "alice"), "{mine:?}");
    assert!(mine.iter().any(|t| t["id"] == id && t["note"] == "ci"));
    assert!(!serde_json::to_string(mine).unwrap().contains(&secret));
    let new = api(&secret);
    let url = s.url("api/contents/projects/a/x.txt");
    assert_eq!(status(&new, "GET", &url, None).await, 200);

    // Not an admin: no listing of everyone's (a JSON error), no revoking of root's token.
    let r = alice.get(format!("{tokens}?all=1")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    assert!(body.get("reason").is_some(), "{body}");
    let all: Value = root
        .get(format!("{tokens}?all=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = all.as_array().unwrap();
    assert!(all.iter().any(|t| t["username"] == "alice"));
    let root_id = all.iter().find(|t| t["username"] == "root").unwrap()["id"]
        .as_i64()
        .unwrap();
    let by_id = |n: i64| format!("{tokens}/{n}");
    assert_eq!(status(&alice, "DELETE", &by_id(root_id), None).await, 403);
    assert_eq!(status(&alice, "DELETE", &by_id(999_999), None).await, 404);
    assert_eq!(
        status(&alice, "DELETE", &format!("{tokens}/nope"), None).await,
        404
    );

    // A scoped token manages no tokens (it could mint a wider one).
    assert_eq!(status(&narrow, "GET", &tokens, None).await, 403);
    assert_eq!(status(&narrow, "POST", &tokens, Some("{}")).await, 403);
    // Bad bodies are 400s.
    let bad = r#"{"scope": ["contents:fly"]}"#;
    assert_eq!(status(&alice, "POST", &tokens, Some(bad)).await, 400);
    assert_eq!(
        status(&alice, "POST", &tokens, Some(r#"{"expires_in": 0}"#)).await,
        400
    );

    // Revoking one's own, and an admin revoking anyone's.
    assert_eq!(status(&alice, "DELETE", &by_id(id), None).await, 204);
    assert_eq!(status(&new, "GET", &url, None).await, 403);
    let r = alice.post(&tokens).body("{}").send().await.unwrap();
    let other: Value = r.json().await.unwrap();
    let other_id = other["id"].as_i64().unwrap();
    assert_eq!(status(&root, "DELETE", &by_id(other_id), None).await, 204);
    let other = api(other["token"].as_str().unwrap());
    assert_eq!(status(&other, "GET", &url, None).await, 403);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `path` (e.g. `api/events/subscribe`) as a websocket with one header.
async fn open_ws(s: &common::Server, path: &str, header: (&'static str, String)) -> Socket {
    let url = s.url(path).replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket accepted")
        .0
}

/// Wait for the server to close `ws` (bounded; a hang guard); its close code.
async fn close_code(ws: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(kernels_support::PATIENCE, ws.next())
            .await
            .expect("the socket was never closed")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Log in through the form; the `Cookie` header a browser would then send.
async fn login_cookie(s: &common::Server, user: &str, password: &str) -> String {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let xsrf = s.xsrf(&client).await;
    let r = client
        .post(s.url("login"))
        .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "login of {user}");
    use reqwest::cookie::CookieStore;
    let url: reqwest::Url = s.base.parse().unwrap();
    jar.cookies(&url)
        .expect("cookies")
        .to_str()
        .unwrap()
        .to_string()
}

async fn me_with_cookie(s: &common::Server, cookie: &str) -> u16 {
    reqwest::Client::new()
        .get(s.url("api/me"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_kernel_websocket_closes_when_its_token_is_revoked() {
    let b = builder();
    let (_, alice) = create_token(b.state(), "alice", &[]);
    let (agent_id, agent) = create_token(b.state(), "alice", &["--scope", "kernels:*"]);
    let (api_id, by_api) = create_token(b.state(), "alice", &["--scope", "kernels:*"]);
    let state = b.state().to_path_buf();
    let s = b.start();
    let r = api(&alice)
        .post(s.url("api/kernels"))
        .body(r#"{"path": "projects/a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let kernel: Value = r.json().await.unwrap();
    let id = kernel["id"].as_str().unwrap().to_string();

    // The scoped token runs code (kernels:* is in its scope)...
    let mut client = connect(&s.base, &agent, &id, "agent", true).await.unwrap();
    let (reply, _) = client.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
    let mut second = connect(&s.base, &by_api, &id, "agent-2", false)
        .await
        .unwrap();
    let (reply, _) = second.execute("2 + 2").await;
    assert_eq!(reply["status"], "ok");

    // ...until the CLI, another process, revokes it: the socket closes within a second.
    let (code, _, err) = token_cmd(&state, &["revoke", &agent_id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let revoked = Instant::now();
    let end = loop {
        match client.recv().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    let took = revoked.elapsed();
    assert_eq!(end, Closed::Code(1008));
    assert!(took < WITHIN, "closed {took:?} after the revocation");

    // Revoked through the API: the same.
    let r = api(&alice)
        .delete(s.url(&format!("api/concord/tokens/{api_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let revoked = Instant::now();
    let end = loop {
        match second.recv().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    assert_eq!(end, Closed::Code(1008));
    assert!(
        revoked.elapsed() < WITHIN,
        "closed {:?} after",
        revoked.elapsed()
    );
    // The kernel itself lives on for its owner.
    let mut owner = connect(&s.base, &alice, &id, "owner", true).await.unwrap();
    let (reply, _) = owner.execute("3 + 3").await;
    assert_eq!(reply["status"], "ok");
}

#[tokio::test]
async fn a_removed_users_sockets_close() {
    let b = builder();
    let (_, bob_token) = create_token(b.state(), "bob", &[]);
    let s = b.start();
    let cookie = login_cookie(&s, "bob", "bob-password-1").await;
    let mut by_cookie = open_ws(&s, "api/events/subscribe", ("Cookie", cookie)).await;
    let mut by_token = open_ws(
        &s,
        "api/events/subscribe",
        ("Authorization", format!("token {bob_token}")),
    )
    .await;
    let (code, _, err) = b_user_cmd(&s, &["remove", "bob"], None);
    assert_eq!(code, 0, "{err}");
    let removed = Instant::now();
    assert_eq!(close_code(&mut by_cookie).await, Some(1008));
    assert_eq!(close_code(&mut by_token).await, Some(1008));
    assert!(
        removed.elapsed() < WITHIN,
        "closed {:?} after",
        removed.elapsed()
    );
}

/// `concord user ARGS… --state-dir` of a running server.
fn b_user_cmd(s: &common::Server, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut full = vec!["user"];
    full.extend_from_slice(args);
    let state = s.state().to_str().unwrap();
    full.extend_from_slice(&["--state-dir", state]);
    common::run_cli(&full, stdin)
}

#[tokio::test]
async fn a_password_change_ends_cookies_and_their_sockets() {
    let s = builder().start();
    let cookie = login_cookie(&s, "alice", "alice-password-1").await;
    assert_eq!(me_with_cookie(&s, &cookie).await, 200);
    let mut events = open_ws(&s, "api/events/subscribe", ("Cookie", cookie.clone())).await;
    let (code, _, err) = b_user_cmd(&s, &["passwd", "alice"], Some("a-new-password-2\n"));
    assert_eq!(code, 0, "{err}");
    let changed = Instant::now();
    assert_eq!(close_code(&mut events).await, Some(1008));
    assert!(
        changed.elapsed() < WITHIN,
        "closed {:?} after",
        changed.elapsed()
    );
    // The cookie issued before the change is refused; the new password logs in.
    assert_eq!(me_with_cookie(&s, &cookie).await, 403);
    let fresh = login_cookie(&s, "alice", "a-new-password-2").await;
    assert_eq!(me_with_cookie(&s, &fresh).await, 200);
}

#[tokio::test]
async fn a_policy_reload_makes_a_kernel_client_a_watcher_then_closes_it() {
    let b = builder();
    let (_, alice) = create_token(b.state(), "alice", &[]);
    let (_, bob) = create_token(b.state(), "bob", &[]);
    let policy = b.state().join("policy.toml");
    let s = b.start();
    let r = api(&alice)
        .post(s.url("api/kernels"))
        .body(r#"{"path": "projects/a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let kernel: Value = r.json().await.unwrap();
    let id = kernel["id"].as_str().unwrap().to_string();
    let mut client = connect(&s.base, &bob, &id, "bob-tab", true).await.unwrap();
    let (reply, _) = client.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok", "bob runs code in his team's kernel");

    // Execute taken away, read kept: the same socket goes on as a watcher.
    std::fs::write(&policy, POLICY_BOB_WATCHES).unwrap();
    let deadline = Instant::now() + kernels_support::PATIENCE;
    loop {
        let (reply, _) = client.execute("2 + 2").await;
        if reply["status"] == "error" {
            assert_eq!(reply["ename"], "PermissionError", "{reply}");
            break;
        }
        assert!(Instant::now() < deadline, "never became a watcher");
        // The reload is asynchronous (the file watcher, then the new policy).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Read taken away too: closed.
    std::fs::write(&policy, POLICY_WITHOUT_BOB).unwrap();
    let end = loop {
        match client.recv().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    assert_eq!(end, Closed::Code(1008));
}
