//! Kernels and sessions with several users (`--auth users`) and real ipykernel: a kernel
//! shared read-only with a teammate (watcher), isolation from an outsider in lists, by id
//! and by client-chosen ids, path authorization of POST and of JupyterLab's
//! placeholder-then-PATCH flow; and sessions' JSON at parity with a real jupyter_server.

use crate::common;
use crate::kernels_support;

use common::token_client as api;
use kernels_support::{connect, path_with_venv, KernelClient};
use serde_json::{json, Value};

const POLICY: &str = r#"
[roles.runner]
permissions = ["contents:read", "kernels:*:own", "sessions:*:own", "kernelspecs:read"]

[roles.team-watch]
permissions = ["kernels:read:group", "sessions:read:group"]

[[bindings]]
role = "runner"
everyone = true

[[bindings]]
role = "team-watch"
users = ["bob"]

[[deny]]
users = ["carol"]
permissions = ["contents:read"]
paths = ["/secret/**"]
"#;

struct Users {
    s: common::Server,
    alice: String,
    bob: String,
    carol: String,
}

fn start() -> Users {
    let b = common::server()
        .users_with_policy(POLICY)
        .env("PATH", &path_with_venv());
    b.add_user("alice", "alice-password-1", &["team"]);
    b.add_user("bob", "bob-password-1", &["team"]);
    b.add_user("carol", "carol-password-1", &["others"]);
    let token = |user: &str| b.issue_token(user);
    let (alice, bob, carol) = (token("alice"), token("bob"), token("carol"));
    for d in ["nb", "secret"] {
        std::fs::create_dir(b.root().join(d)).unwrap();
    }
    Users {
        s: b.start(),
        alice,
        bob,
        carol,
    }
}

async fn call(
    s: &common::Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = api(token).request(m, s.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_watcher_sees_outputs_but_cannot_run_code() {
    let u = start();
    let s = &u.s;
    let (status, k) = call(
        s,
        &u.alice,
        "POST",
        "api/kernels",
        Some(json!({"path": "nb"})),
    )
    .await;
    assert_eq!(status, 201, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    // bob (same group, kernels:read:group) sees it and may watch; carol does not.
    let (_, bob_list) = call(s, &u.bob, "GET", "api/kernels", None).await;
    assert_eq!(ids(&bob_list), vec![id.clone()]);

    let mut alice = connect(&s.base, &u.alice, &id, "alice-tab", true)
        .await
        .unwrap();
    let mut bob = connect(&s.base, &u.bob, &id, "bob-tab", false)
        .await
        .unwrap();
    let (reply, _) = alice.execute("print('from alice', flush=True)").await;
    assert_eq!(reply["status"], "ok");
    let seen = bob
        .recv_until(|m| m.msg_type() == "stream" && m.content["text"] == "from alice\n")
        .await;
    assert_eq!(seen.last().unwrap().parent["username"], "alice");

    // bob's execute: an error reply, an error output and idle, to him only; nothing runs.
    let marker = s.root().join("nb/bob-was-here");
    let code = format!("open({:?}, 'w').write('x')", marker.to_str().unwrap());
    let (reply, out) = bob.execute(&code).await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "PermissionError");
    assert!(out.iter().any(|m| m.msg_type() == "error"));
    for channel in ["control", "stdin"] {
        let req = bob
            .send(channel, "shutdown_request", json!({"restart": false}))
            .await;
        let seen = bob.recv_until(|m| m.parent_id() == req).await;
        assert_eq!(seen.last().unwrap().content["status"], "error");
    }
    // REST writes are refused with 403 (he may read it, so it is no secret).
    for (method, path) in [
        ("POST", format!("api/kernels/{id}/interrupt")),
        ("POST", format!("api/kernels/{id}/restart")),
        ("DELETE", format!("api/kernels/{id}")),
    ] {
        let (status, _) = call(s, &u.bob, method, &path, None).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    // The kernel is alive, bob's code never ran, and alice did not get bob's replies.
    let (reply, out) = alice
        .execute(&format!(
            "import os; print(os.path.exists({:?}))",
            marker.to_str().unwrap()
        ))
        .await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(KernelClient::stdout(&out), "False\n");
    assert!(!marker.exists());
}

#[tokio::test]
async fn ownership_isolation_in_lists_by_id_and_by_chosen_ids() {
    let u = start();
    let s = &u.s;
    let (_, k) = call(s, &u.alice, "POST", "api/kernels", Some(json!({}))).await;
    let id = k["id"].as_str().unwrap().to_string();
    let (status, sess) = call(
        s,
        &u.alice,
        "POST",
        "api/sessions",
        Some(json!({"path": "nb/shared.ipynb", "type": "notebook", "name": "shared.ipynb"})),
    )
    .await;
    assert_eq!(status, 201, "{sess}");
    let alice_session = sess["id"].as_str().unwrap().to_string();
    let alice_session_kernel = sess["kernel"]["id"].as_str().unwrap().to_string();

    // carol: nothing listed, 404 by id (REST and websocket), no attaching by id.
    let (_, list) = call(s, &u.carol, "GET", "api/kernels", None).await;
    assert!(ids(&list).is_empty(), "{list}");
    let (_, list) = call(s, &u.carol, "GET", "api/sessions", None).await;
    assert!(ids(&list).is_empty(), "{list}");
    for (method, path) in [
        ("GET", format!("api/kernels/{id}")),
        ("DELETE", format!("api/kernels/{id}")),
        ("POST", format!("api/kernels/{id}/interrupt")),
        ("GET", format!("api/sessions/{alice_session}")),
        ("PATCH", format!("api/sessions/{alice_session}")),
        ("DELETE", format!("api/sessions/{alice_session}")),
    ] {
        let body = (method == "PATCH").then(|| json!({"name": "x"}));
        let (status, body) = call(s, &u.carol, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    assert_eq!(
        connect(&s.base, &u.carol, &id, "c", true).await.err(),
        Some(404)
    );
    // A client-chosen id: another user's kernel id is answered exactly as a free id is, with
    // a fresh kernel under a fresh id: it never attaches, and no id can be squatted.
    let free = "00000000-0000-4000-8000-00000000beef";
    let mut answers = Vec::new();
    for chosen in [id.as_str(), free] {
        let r = api(&u.carol)
            .post(s.url("api/kernels"))
            .json(&json!({"kernel_id": chosen}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let model: Value = r.json().await.unwrap();
        let fresh = model["id"].as_str().unwrap();
        assert_ne!(fresh, chosen);
        assert_eq!(location, format!("/api/kernels/{fresh}"));
        let mut keys: Vec<String> = model.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        answers.push((status, keys));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 201);
    // The caller's own kernel is reused, as jupyter_server does.
    let (status, again) = call(
        s,
        &u.alice,
        "POST",
        "api/kernels",
        Some(json!({"kernel_id": id})),
    )
    .await;
    assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
    // Sessions: a kernel id that is not the caller's to use starts a fresh kernel on
    // creation, and is "No such kernel" on a change, whether it exists or not.
    let mut carol_sessions = Vec::new();
    for (i, chosen) in [id.as_str(), free].into_iter().enumerate() {
        let (status, sess) = call(
            s,
            &u.carol,
            "POST",
            "api/sessions",
            Some(json!({"path": format!("mine{i}.ipynb"), "type": "notebook", "kernel": {"id": chosen}})),
        )
        .await;
        assert_eq!(status, 201, "{sess}");
        assert_ne!(sess["kernel"]["id"], chosen);
        carol_sessions.push(sess["id"].as_str().unwrap().to_string());
    }
    let mut answers = Vec::new();
    for chosen in [id.as_str(), free] {
        let (status, body) = call(
            s,
            &u.carol,
            "PATCH",
            &format!("api/sessions/{}", carol_sessions[0]),
            Some(json!({"kernel": {"id": chosen}})),
        )
        .await;
        let message = body["message"].as_str().unwrap().replace(chosen, "<id>");
        answers.push((status, message));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], (400, "No such kernel: <id>".to_string()));
    let (_, list) = call(s, &u.carol, "GET", "api/kernels", None).await;
    assert!(!ids(&list).contains(&free.to_string()));
    for sid in &carol_sessions {
        let (status, _) = call(s, &u.carol, "DELETE", &format!("api/sessions/{sid}"), None).await;
        assert_eq!(status, 204);
    }
    // The same notebook path: carol gets her own session and kernel.
    let (status, carol_sess) = call(
        s,
        &u.carol,
        "POST",
        "api/sessions",
        Some(json!({"path": "nb/shared.ipynb", "type": "notebook", "name": "shared.ipynb"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(carol_sess["id"], alice_session.as_str());
    assert_ne!(carol_sess["kernel"]["id"], alice_session_kernel.as_str());
    // bob may read alice's kernels but not run them: his own session too.
    let (_, bob_sess) = call(
        s,
        &u.bob,
        "POST",
        "api/sessions",
        Some(json!({"path": "nb/shared.ipynb", "type": "notebook", "name": "shared.ipynb"})),
    )
    .await;
    assert_ne!(bob_sess["id"], alice_session.as_str());
    // alice posting again for her path gets her session back.
    let (_, again) = call(
        s,
        &u.alice,
        "POST",
        "api/sessions",
        Some(json!({"path": "nb/shared.ipynb", "type": "notebook"})),
    )
    .await;
    assert_eq!(again["id"], alice_session.as_str());
    // alice's own lists hold only hers; bob's hold his and alice's (read:group), not carol's.
    let (_, list) = call(s, &u.alice, "GET", "api/sessions", None).await;
    assert_eq!(ids(&list), vec![alice_session.clone()]);
    let (_, list) = call(s, &u.bob, "GET", "api/sessions", None).await;
    let bob_ids = ids(&list);
    assert!(bob_ids.contains(&alice_session));
    assert!(!bob_ids.contains(&carol_sess["id"].as_str().unwrap().to_string()));
    // Another user's websocket session_id never takes over alice's connection.
    let mut a = connect(&s.base, &u.alice, &id, "same-session", true)
        .await
        .unwrap();
    let mut b = connect(&s.base, &u.bob, &id, "same-session", true)
        .await
        .unwrap();
    let (reply, _) = a.execute("print(1)").await;
    assert_eq!(reply["status"], "ok", "alice's connection survived bob's");
    let (reply, _) = b.execute("print(2)").await;
    assert_eq!(reply["ename"], "PermissionError");
}

#[tokio::test]
async fn paths_are_authorized_on_post_and_on_patch() {
    let u = start();
    let s = &u.s;
    // carol may not read /secret: no kernel there, no session there.
    let (status, _) = call(
        s,
        &u.carol,
        "POST",
        "api/kernels",
        Some(json!({"path": "secret"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        s,
        &u.carol,
        "POST",
        "api/sessions",
        Some(json!({"path": "secret/x.ipynb", "type": "notebook"})),
    )
    .await;
    assert_eq!(status, 404);
    // JupyterLab's flow: a placeholder path beside the notebook, then PATCH the real one.
    let placeholder = "nb/5e4c3b1a-0000-4000-8000-000000000001";
    let (status, sess) = call(
        s,
        &u.carol,
        "POST",
        "api/sessions",
        Some(json!({"path": placeholder, "type": "notebook", "name": "x.ipynb", "kernel": {"name": "python3"}})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(sess["path"], placeholder, "the path is echoed as sent");
    let sid = sess["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        s,
        &u.carol,
        "PATCH",
        &format!("api/sessions/{sid}"),
        Some(json!({"path": "secret/x.ipynb"})),
    )
    .await;
    assert_eq!(status, 404, "PATCH to a path she may not read is refused");
    let (status, patched) = call(
        s,
        &u.carol,
        "PATCH",
        &format!("api/sessions/{sid}"),
        Some(json!({"path": "nb/x.ipynb"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["path"], "nb/x.ipynb");
    // alice may use /secret.
    let (status, _) = call(
        s,
        &u.alice,
        "POST",
        "api/kernels",
        Some(json!({"path": "secret"})),
    )
    .await;
    assert_eq!(status, 201);
}

/// Replace ids and timestamps so two servers' answers compare.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "id" | "last_activity" => Value::String("<>".into()),
                        // Kernel state right after start may be starting or idle on either.
                        "execution_state" => Value::String("<state>".into()),
                        _ => shape(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn sessions_at_parity_with_jupyter_server() {
    let concord = common::server()
        .token("parity")
        .env("PATH", &path_with_venv());
    std::fs::create_dir(concord.root().join("nb")).unwrap();
    let concord = concord.start();
    let jroot = tempfile::tempdir().unwrap();
    std::fs::create_dir(jroot.path().join("nb")).unwrap();
    let jupyter = common::jupyter::Jupyter::start(jroot.path(), &[]);
    let targets: [(String, reqwest::Client); 2] = [
        (concord.base.clone(), concord.owner()),
        (jupyter.base.clone(), jupyter.client()),
    ];
    let mut transcripts: Vec<Vec<(String, u16, Value)>> = Vec::new();
    for (base, client) in &targets {
        let mut t = Vec::new();
        let mut go = |label: &str, status: u16, body: Value| {
            t.push((label.to_string(), status, body));
        };
        let send = |method: &str, path: String, body: Option<Value>| {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = client.request(m, format!("{base}{path}"));
            if let Some(b) = body {
                req = req
                    .body(b.to_string())
                    .header("Content-Type", "text/plain;charset=UTF-8");
            }
            async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                (
                    status,
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                )
            }
        };
        let placeholder = "nb/0f0e0d0c-0000-4000-8000-000000000001";
        let (st, created) = send(
            "POST",
            "api/sessions".into(),
            Some(json!({"path": placeholder, "type": "notebook", "name": "n.ipynb", "kernel": {"name": "python3"}})),
        )
        .await;
        let sid = created["id"].as_str().unwrap_or_default().to_string();
        go("create", st, shape(&created));
        let (st, b) = send(
            "PATCH",
            format!("api/sessions/{sid}"),
            Some(json!({"path": "nb/n.ipynb"})),
        )
        .await;
        go("patch path", st, shape(&b));
        let (st, b) = send(
            "PATCH",
            format!("api/sessions/{sid}"),
            Some(json!({"name": "renamed.ipynb"})),
        )
        .await;
        go("patch name", st, shape(&b));
        let (st, b) = send("GET", "api/sessions".into(), None).await;
        go("list", st, shape(&b));
        let (st, b) = send("GET", format!("api/sessions/{sid}"), None).await;
        go("get", st, shape(&b));
        let (st, b) = send(
            "POST",
            "api/sessions".into(),
            Some(json!({"path": "nb/n.ipynb", "type": "notebook"})),
        )
        .await;
        go("same path again", st, json!(b["id"] == created["id"]));
        let (st, b) = send(
            "POST",
            "api/sessions".into(),
            Some(json!({"type": "notebook"})),
        )
        .await;
        go("missing path", st, b["message"].clone());
        let (st, b) = send(
            "POST",
            "api/sessions".into(),
            Some(json!({"path": "z.ipynb"})),
        )
        .await;
        go("missing type", st, b["message"].clone());
        let (st, b) = send(
            "POST",
            "api/sessions".into(),
            Some(json!({"path": "q.ipynb", "type": "notebook", "kernel": {"name": "nope"}})),
        )
        .await;
        go("unknown kernelspec", st, b);
        let (st, b) = send(
            "PATCH",
            format!("api/sessions/{sid}"),
            Some(json!({"kernel": {"id": "00000000-0000-4000-8000-000000000000"}})),
        )
        .await;
        go("patch unknown kernel id", st, b["message"].clone());
        let (st, _) = send("DELETE", format!("api/sessions/{sid}"), None).await;
        go("delete", st, Value::Null);
        let (st, b) = send("GET", format!("api/sessions/{sid}"), None).await;
        go(
            "get deleted",
            st,
            json!(b["message"].as_str().map(|m| m.replace(&sid, "<id>"))),
        );
        let (st, b) = send("GET", "api/kernels".into(), None).await;
        go("kernels after delete", st, b);
        transcripts.push(t);
    }
    let (c, j) = (&transcripts[0], &transcripts[1]);
    // The flow really ran (two identical failures would compare equal too).
    let statuses: Vec<u16> = c.iter().map(|e| e.1).collect();
    assert_eq!(
        statuses,
        [201, 200, 200, 200, 200, 201, 400, 400, 501, 400, 204, 404, 200]
    );
    assert_eq!(c[2].2["name"], "renamed.ipynb");
    assert_eq!(c[2].2["kernel"]["name"], "python3");
    let mut diffs = Vec::new();
    for (a, b) in c.iter().zip(j) {
        if a != b {
            diffs.push(format!(
                "{}:\n  concord: {} {}\n  jupyter: {} {}",
                a.0, a.1, a.2, b.1, b.2
            ));
        }
    }
    assert!(diffs.is_empty(), "\n{}", diffs.join("\n"));
}
