//! The policy's `[[limits]]` over HTTP with real kernels and shells: bursts of concurrent
//! starts stop exactly at a user's limit, refusals name the limit, one user's count is not
//! another's, and a place given back can be taken again.

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
