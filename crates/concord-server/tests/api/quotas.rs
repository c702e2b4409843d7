//! The policy's `[[limits]]` over HTTP with real kernels and shells: bursts of concurrent
//! starts stop exactly at a user's limit, refusals name the limit, one user's count is not
//! another's, and a place given back can be taken again; collaboration rooms likewise.

use crate::common;
use crate::kernels_support::path_with_venv;

use common::token_client as api;
use serde_json::{json, Value};

const POLICY: &str = r#"
[roles.runner]
permissions = ["api:read", "contents:read", "contents:write", "kernels:*:own", "sessions:*:own",
               "terminals:*:own", "kernelspecs:read"]

[[bindings]]
role = "runner"
everyone = true

[[limits]]
everyone = true
kernels = 2
sessions = 1
terminals = 1
rooms = 1

[[limits]]
groups = ["staff"]
terminals = "unlimited"
"#;

async fn post(s: &common::Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = api(token)
        .post(s.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn statuses(results: &[(u16, Value)]) -> Vec<u16> {
    let mut s: Vec<u16> = results.iter().map(|(status, _)| *status).collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_stop_exactly_at_each_users_limits() {
    let b = common::server()
        .users_with_policy(POLICY)
        .env("PATH", &path_with_venv())
        .env("SHELL", "/bin/sh");
    b.add_user("alice", "alice-password-1", &[]);
    b.add_user("carol", "carol-password-1", &[]);
    b.add_user("sam", "sam-password-1", &["staff"]);
    let (alice, carol, sam) = (
        b.issue_token("alice"),
        b.issue_token("carol"),
        b.issue_token("sam"),
    );
    let s = &b.start();

    // Each user can read their own limits.
    let status: Value = api(&sam)
        .get(s.url("api/concord/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["limits"]["kernels"]["max"], 2, "{status}");
    assert_eq!(status["limits"]["sessions"]["max"], 1, "{status}");
    assert_eq!(status["limits"]["terminals"], Value::Null, "{status}");

    // Four kernels at once against a limit of two.
    let burst = (0..4).map(|_| post(s, &alice, "api/kernels", json!({})));
    let results = futures::future::join_all(burst).await;
    assert_eq!(statuses(&results), [201, 201, 403, 403], "{results:?}");
    for (status, body) in &results {
        if *status == 403 {
            let message = body["message"].as_str().unwrap();
            assert!(
                message.starts_with(
                    "alice may have at most 2 kernels at once (limit for everyone (policy.toml:"
                ) && message.ends_with("shut one of your kernels down to start another"),
                "{body}"
            );
            assert_eq!(body["reason"], Value::Null, "{body}");
        }
    }
    // A kernel shut down gives its place back.
    let id = results.iter().find(|(st, _)| *st == 201).unwrap().1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(&alice)
        .delete(s.url(&format!("api/kernels/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(post(s, &alice, "api/kernels", json!({})).await.0, 201);

    // Sessions: three notebooks at once against a limit of one; alice's kernels do not
    // count against carol.
    let burst = (0..3).map(|i| {
        post(
            s,
            &carol,
            "api/sessions",
            json!({"path": format!("nb{i}.ipynb"), "type": "notebook", "kernel": {"name": "python3"}}),
        )
    });
    let results = futures::future::join_all(burst).await;
    assert_eq!(statuses(&results), [201, 403, 403], "{results:?}");
    assert!(results.iter().any(|(_, body)| body["message"]
        .as_str()
        .is_some_and(|m| m.contains("carol may have at most 1 notebook session at once"))));

    // Terminals: one for everyone; staff are not limited.
    let first = post(s, &carol, "api/terminals", json!({})).await;
    assert_eq!(first.0, 200, "{first:?}");
    let (status, body) = post(s, &carol, "api/terminals", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("carol may have at most 1 terminal at once"));
    for _ in 0..2 {
        assert_eq!(post(s, &sam, "api/terminals", json!({})).await.0, 200);
    }
}

/// Open a collaboration room on `path` (made a shared document first); the upgrade's status
/// when refused.
async fn open_room(
    s: &common::Server,
    token: &str,
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let r = api(token)
        .put(s.url(&format!("api/collaboration/session/{path}")))
        .json(&json!({"format": "text", "type": "file"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let session: Value = r.json().await.unwrap();
    let url = format!(
        "{}api/collaboration/room/text:file:{}?sessionId={}",
        s.url("").replacen("http://", "ws://", 1),
        session["fileId"].as_str().unwrap(),
        session["sessionId"].as_str().unwrap()
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("token {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket: {other}"),
    }
}

#[tokio::test]
async fn collaboration_rooms_stop_at_the_users_limit() {
    let b = common::server().users_with_policy(POLICY);
    b.add_user("alice", "alice-password-1", &[]);
    b.add_user("sam", "sam-password-1", &["staff"]);
    let (alice, sam) = (b.issue_token("alice"), b.issue_token("sam"));
    for name in ["a.txt", "b.txt"] {
        std::fs::write(b.root().join(name), "text\n").unwrap();
    }
    let s = &b.start();
    let first = open_room(s, &alice, "a.txt")
        .await
        .expect("the first room opens");
    // Another participant in the same room is not a second room for anyone.
    let _sams = open_room(s, &sam, "a.txt").await.expect("sam joins");
    let second = open_room(s, &alice, "b.txt").await;
    assert_eq!(
        second.err(),
        Some(403),
        "a second room is past alice's limit of one"
    );
    // Leaving the room gives the place back (the room notices the close).
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open_room(s, &alice, "b.txt").await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status, 403);
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place was not given back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
