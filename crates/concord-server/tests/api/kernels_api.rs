//! Kernels through a real server (token mode) with real ipykernel from the project's venv:
//! REST start/interrupt/restart/delete, execute over both websocket protocols, `kill -9`,
//! malformed frames, kernelspecs, status and metrics, and no kernel left after SIGTERM.

use crate::common;
use crate::kernels_support;

use kernels_support::{
    alive, connect, eventually, metric, path_with_venv, pids_with, rss_kib, upgrade_status, Closed,
    KernelClient, Msg,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const TOKEN: &str = "kernels-test-token";

fn server(extra: &[&str]) -> common::Server {
    let b = common::server()
        .token(TOKEN)
        .args(&["--owner", "tester"])
        .args(extra)
        .env("PATH", &path_with_venv());
    std::fs::create_dir(b.root().join("sub")).unwrap();
    b.start()
}

async fn start_kernel(s: &common::Server, body: Value) -> Value {
    let r = s
        .owner()
        .post(s.url("api/kernels"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let model: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/kernels/{}", model["id"].as_str().unwrap())
    );
    model
}

async fn get_json(s: &common::Server, path: &str) -> (u16, Value) {
    let r = s.owner().get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The process of kernel `id` as the machine numbers it, once it runs code.
async fn kernel_pid(c: &mut KernelClient, id: &str) -> i32 {
    let (reply, _) = c.execute("pass").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    kernels_support::kernel_process(id).expect("the kernel's process")
}

#[tokio::test]
async fn start_interrupt_restart_delete_over_rest() {
    let s = server(&[]);
    let model = start_kernel(&s, json!({"path": "sub"})).await;
    let id = model["id"].as_str().unwrap().to_string();
    let mut keys: Vec<&str> = model
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
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
    assert_eq!(model["name"], "python3");

    let (status, list) = get_json(&s, "api/kernels").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, one) = get_json(&s, &format!("api/kernels/{id}")).await;
    assert_eq!((status, one["id"].as_str()), (200, Some(id.as_str())));

    let mut c = connect(&s.base, TOKEN, &id, "sess-1", false).await.unwrap();
    // The working directory is the requested path.
    let (_, out) = c.execute("import os; print(os.getcwd())").await;
    assert!(
        KernelClient::stdout(&out).trim().ends_with("/sub"),
        "{out:?}"
    );
    let pid = kernel_pid(&mut c, &id).await;

    // Interrupt a running cell.
    let exec = c
        .send(
            "shell",
            "execute_request",
            json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(120)", "silent": false}),
        )
        .await;
    c.recv_until(|m| m.msg_type() == "stream" && m.parent_id() == exec)
        .await;
    let r = s
        .owner()
        .post(s.url(&format!("api/kernels/{id}/interrupt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let seen = c
        .recv_until(|m| m.msg_type() == "execute_reply" && m.parent_id() == exec)
        .await;
    let reply = &seen.last().unwrap().content;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "KeyboardInterrupt");

    // Restart: same id, new process, state gone; the websocket stays attached.
    c.execute("x = 41").await;
    let r = s
        .owner()
        .post(s.url(&format!("api/kernels/{id}/restart")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let restarted: Value = r.json().await.unwrap();
    assert_eq!(restarted["id"], id.as_str());
    let (reply, _) = c.execute("print(x)").await;
    assert_eq!(reply["ename"], "NameError", "{reply}");
    let new_pid = kernel_pid(&mut c, &id).await;
    assert_ne!(pid, new_pid);
    assert!(!alive(pid));

    // Delete: 204, then 404; the process is gone and the client is closed.
    let r = s
        .owner()
        .delete(s.url(&format!("api/kernels/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = get_json(&s, &format!("api/kernels/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("Kernel does not exist: {id}"));
    eventually("the kernel process ends", || !alive(new_pid)).await;
    // Drain what the closed kernel's websocket still had.
    while c.recv().await.is_ok() {}
    // Unknown ids and bad bodies.
    let (status, _) = get_json(&s, "api/kernels/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, 404);
    for bad in [
        json!({"name": "no-such-kernel"}),
        json!({"name": 5}),
        json!([1]),
    ] {
        let r = s
            .owner()
            .post(s.url("api/kernels"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 400 || r.status() == 404,
            "{bad}: {}",
            r.status()
        );
    }
    let r = s
        .owner()
        .post(s.url("api/kernels"))
        .json(&json!({"env": {"LD_PRELOAD": "/x.so"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "env outside the allow-list is refused");
    let r = s
        .owner()
        .post(s.url("api/kernels"))
        .json(&json!({"path": "../outside"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a path above the root is refused");
}

#[tokio::test]
async fn execute_round_trip_over_both_protocols_with_username_stamped() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for v1 in [false, true] {
        let mut c = connect(&s.base, TOKEN, &id, &format!("s-{v1}"), v1)
            .await
            .unwrap();
        assert_eq!(c.v1, v1);
        let info = c.send("shell", "kernel_info_request", json!({})).await;
        let seen = c
            .recv_until(|m| m.msg_type() == "kernel_info_reply" && m.parent_id() == info)
            .await;
        assert_eq!(seen.last().unwrap().content["status"], "ok");
        let (reply, out) = c.execute("print('hello', 6 * 7)").await;
        assert_eq!(reply["status"], "ok");
        assert_eq!(KernelClient::stdout(&out), "hello 42\n");
        // A cell far larger than the websocket read buffer arrives whole.
        let big = format!("s = '{}'\nprint(len(s))", "x".repeat(200_000));
        let (reply, out) = c.execute(&big).await;
        assert_eq!(reply["status"], "ok");
        assert_eq!(KernelClient::stdout(&out), "200000\n");
        // The kernel saw the authenticated user, not what the client wrote.
        let parent_user = out
            .iter()
            .find(|m| m.msg_type() == "stream")
            .map(|m| m.parent["username"].clone())
            .unwrap();
        assert_eq!(parent_user, "tester");
        c.close().await;
    }
}

#[tokio::test]
async fn kill_9_of_a_kernel_is_detected_and_restarted() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "k9", true).await.unwrap();
    let pid = kernel_pid(&mut c, &id).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    c.recv_until(|m| {
        m.channel == "iopub"
            && m.msg_type() == "status"
            && m.content["execution_state"] == "restarting"
    })
    .await;
    // Same id, a new process that runs code.
    let (reply, _) = c.execute("y = 1").await;
    assert_eq!(reply["status"], "ok");
    let new_pid = kernel_pid(&mut c, &id).await;
    assert_ne!(new_pid, pid);
    let (status, model) = get_json(&s, &format!("api/kernels/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(model["id"], id.as_str());
    let metrics = s.metrics(TOKEN).await;
    assert!(
        metrics.contains("concord_kernel_auto_restarts_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_frames_close_the_socket_and_nothing_breaks() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let legacy_bad = [
        WsMessage::Text("not json".into()),
        WsMessage::Text("[1,2,3]".into()),
        WsMessage::Text(r#"{"header": 5, "channel": "shell"}"#.into()),
        WsMessage::Text(
            r#"{"header": {"msg_id": "x", "msg_type": "status"}, "channel": "iopub"}"#.into(),
        ),
        WsMessage::Text(r#"{"header": {}, "channel": "nowhere"}"#.into()),
        WsMessage::Binary(vec![0, 0, 0, 9, 1].into()),
    ];
    let v1_bad = [
        WsMessage::Binary(vec![].into()),
        WsMessage::Binary(vec![255; 64].into()),
        WsMessage::Binary(
            [7u64.to_le_bytes(), 1_000_000u64.to_le_bytes()]
                .concat()
                .into(),
        ),
        WsMessage::Text("{}".into()),
    ];
    for (v1, frames) in [(false, &legacy_bad[..]), (true, &v1_bad[..])] {
        for (i, frame) in frames.iter().enumerate() {
            let mut c = connect(&s.base, TOKEN, &id, &format!("bad-{v1}-{i}"), v1)
                .await
                .unwrap();
            c.send_raw(frame.clone()).await;
            let end = loop {
                match c.recv().await {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            assert_eq!(end, Closed::Code(1007), "frame {i} (v1={v1})");
        }
    }
    // The kernel and the server are fine.
    let mut c = connect(&s.base, TOKEN, &id, "good", true).await.unwrap();
    let (reply, out) = c.execute("print('still here')").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(KernelClient::stdout(&out), "still here\n");
    let metrics = s.metrics(TOKEN).await;
    assert!(
        metrics.contains("concord_kernel_frames_malformed_total"),
        "{metrics}"
    );
    // A plain GET on the websocket URL is a clear 400.
    let r = s
        .owner()
        .get(s.url(&format!("api/kernels/{id}/channels")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The server closes a kernel websocket (1000) when the same session connects again and
/// when the kernel is deleted; the client then reads nothing more and the socket is not
/// counted any more.
#[tokio::test]
async fn the_server_closes_a_replaced_socket_and_the_sockets_of_a_deleted_kernel() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let end_of = |mut c: KernelClient| async move {
        loop {
            match c.recv().await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        }
    };
    let first = connect(&s.base, TOKEN, &id, "same", true).await.unwrap();
    let mut second = connect(&s.base, TOKEN, &id, "same", true).await.unwrap();
    assert_eq!(end_of(first).await, Closed::Code(1000));
    let (reply, _) = second.execute("x = 1").await;
    assert_eq!(reply["status"], "ok");
    let r = s
        .owner()
        .delete(s.url(&format!("api/kernels/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(end_of(second).await, Closed::Code(1000));
    wait_for_no_connections(&s, "closed websockets are no longer counted").await;
}

#[tokio::test]
async fn status_and_metrics_count_kernels_and_connections() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = connect(&s.base, TOKEN, &id, "m", false).await.unwrap();
    let (_, status) = get_json(&s, "api/status").await;
    assert_eq!(status["kernels"], 1);
    assert_eq!(status["connections"], 1);
    let metrics = s.metrics(TOKEN).await;
    assert!(
        metrics.contains("concord_websocket_connections 1"),
        "{metrics}"
    );
    assert!(metrics.contains("concord_kernels{state="), "{metrics}");
    assert!(metrics.contains("route=\"/api/kernels\""), "{metrics}");
    c.close().await;
    wait_for_no_connections(&s, "a closed websocket is no longer counted").await;
}

#[tokio::test]
async fn kernelspecs_are_listed_and_their_files_served_without_traversal() {
    let extra = tempfile::tempdir().unwrap();
    let spec_dir = extra.path().join("echo-kernel");
    std::fs::create_dir(&spec_dir).unwrap();
    std::fs::write(
        spec_dir.join("kernel.json"),
        r#"{"argv": ["false", "{connection_file}"], "display_name": "Echo", "language": "text"}"#,
    )
    .unwrap();
    std::fs::write(spec_dir.join("logo-32x32.png"), b"\x89PNG fake").unwrap();
    let s = server(&["--kernel-dir", extra.path().to_str().unwrap()]);
    let (status, all) = get_json(&s, "api/kernelspecs").await;
    assert_eq!(status, 200);
    assert_eq!(all["default"], "python3");
    let specs = all["kernelspecs"].as_object().unwrap();
    assert!(
        specs.contains_key("python3"),
        "the venv's kernel is found via PATH: {all}"
    );
    assert_eq!(specs["echo-kernel"]["spec"]["display_name"], "Echo");
    assert_eq!(
        specs["echo-kernel"]["resources"]["logo-32x32"],
        "/kernelspecs/echo-kernel/logo-32x32.png"
    );
    let (status, one) = get_json(&s, "api/kernelspecs/python3").await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "python3");
    let (status, body) = get_json(&s, "api/kernelspecs/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "Kernel spec nope not found");
    let r = s
        .owner()
        .get(s.url("kernelspecs/echo-kernel/logo-32x32.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..], b"\x89PNG fake");
    for bad in [
        "kernelspecs/echo-kernel/..%2F..%2Fetc%2Fpasswd",
        "kernelspecs/echo-kernel/%2Fetc%2Fpasswd",
        "kernelspecs/echo-kernel/nothing.png",
        "kernelspecs/nope/logo-32x32.png",
    ] {
        let r = s.owner().get(s.url(bad)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
}

#[tokio::test]
async fn no_kernel_is_left_after_sigterm() {
    let mut s = server(&[]);
    let a = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .owner()
        .post(s.url("api/sessions"))
        .json(&json!({"path": "sub/n.ipynb", "type": "notebook", "name": "n.ipynb", "kernel": {"name": "python3"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let session: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/sessions/{}", session["id"].as_str().unwrap())
    );
    let b = session["kernel"]["id"].as_str().unwrap().to_string();
    // A kernel that leaves a child behind: it must go too.
    let mut c = connect(&s.base, TOKEN, &a, "t", false).await.unwrap();
    let (reply, _) = c
        .execute("import subprocess; p = subprocess.Popen(['sleep', '600.25'])")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let child = *pids_with("sleep 600.25")
        .first()
        .expect("the kernel's child");
    let mut pids = pids_with(&a);
    pids.extend(pids_with(&b));
    assert_eq!(pids.len(), 2, "{pids:?}");
    let status = s.terminate(30).expect("concord exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    for pid in pids.iter().chain([&child]) {
        eventually("kernel processes end", || !alive(*pid)).await;
    }
}

/// Wait (up to 90 s) until `/api/status` counts no open connection; `why` on failure.
async fn wait_for_no_connections(s: &common::Server, why: &str) {
    let mut counted = 1;
    for _ in 0..900 {
        counted = get_json(s, "api/status").await.1["connections"]
            .as_u64()
            .unwrap();
        if counted == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 0, "{why}");
}

/// The `name=value` pairs a server sets when it is visited with `?token=` (its login
/// cookie), as one `Cookie` header.
async fn login_cookies(base: &str, token: &str) -> String {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}api/status?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pairs: Vec<String> = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect();
    assert!(!pairs.is_empty(), "a login cookie: {pairs:?}");
    pairs.join("; ")
}

/// A kernel websocket and an API request from another site (`Origin` not this server), as
/// node and editor clients of `@jupyterlab/services` send them: with a token (header or
/// `?token=`) they are served, with a login cookie they are refused; the same answers as
/// jupyter_server's.
#[tokio::test]
async fn foreign_origin_is_refused_only_without_a_token_differential() {
    let s = server(&[]);
    let jroot = tempfile::tempdir().unwrap();
    let j = common::jupyter::Jupyter::start(jroot.path(), &[]);
    let foreign = "http://evil.example".to_string();
    let mut answers = Vec::new();
    for (base, token) in [(s.base.clone(), TOKEN), (j.base.clone(), j.token.as_str())] {
        let client = common::token_client(token);
        let r = client
            .post(format!("{base}api/kernels"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{base}");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let ws = format!(
            "{}api/kernels/{id}/channels",
            base.replacen("http://", "ws://", 1)
        );
        let host = base.trim_start_matches("http://").trim_end_matches('/');
        let same = format!("http://{host}");
        let cookies = login_cookies(&base, token).await;
        let header_token = ("Authorization", format!("token {token}"));
        let origin = |o: &String| ("Origin", o.clone());
        let cookie = ("Cookie", cookies.clone());
        let case = [
            upgrade_status(&ws, &[header_token.clone(), origin(&foreign)]).await,
            upgrade_status(&format!("{ws}?token={token}"), &[origin(&foreign)]).await,
            upgrade_status(&ws, &[cookie.clone(), origin(&foreign)]).await,
            upgrade_status(&ws, &[cookie.clone(), origin(&same)]).await,
            client
                .get(format!("{base}api/kernels"))
                .header("Origin", &foreign)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            reqwest::Client::new()
                .get(format!("{base}api/kernels"))
                .header("Origin", &foreign)
                .header("Cookie", &cookies)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        ];
        let r = client
            .delete(format!("{base}api/kernels/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        answers.push(case);
    }
    assert_eq!(answers[0], [101, 101, 403, 101, 200, 404], "concord");
    assert_eq!(answers[0], answers[1], "concord, then jupyter_server");
}

/// What jupyter_server's gateway client sends in `env` (every `KERNEL_*` of its environment,
/// `KERNEL_LAUNCH_TIMEOUT` and `KERNEL_WORKING_DIR` always) starts a kernel with concord's
/// default options and reaches it; a reserved, unlisted or malformed name is a 400 that
/// says why, and an allow-list entry that would reach reserved names stops the server.
#[tokio::test]
async fn kernel_env_takes_gateway_variables_and_never_reserved_ones() {
    let s = server(&[]);
    let env = json!({
        "KERNEL_USERNAME": "alice",
        "KERNEL_LAUNCH_TIMEOUT": "40",
        "KERNEL_WORKING_DIR": "/home/alice/work",
        "KERNEL_EXTRA_OPTS": "a b=c",
        "JPY_SESSION_NAME": "x.ipynb",
    });
    let id = start_kernel(&s, json!({"name": "python3", "env": env})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "env", false).await.unwrap();
    let (reply, out) = c
        .execute(
            "import os, json; print(json.dumps({k: v for k, v in os.environ.items() \
             if k.startswith('KERNEL_') or k == 'JPY_SESSION_NAME'}))",
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let seen: Value = serde_json::from_str(KernelClient::stdout(&out).trim()).unwrap();
    assert_eq!(seen, env);
    c.close().await;
    for (name, value, why) in [
        ("HOME", "/tmp/x", "reserved"),
        ("TMPDIR", "/tmp/x", "reserved"),
        ("JUPYTER_RUNTIME_DIR", "/tmp/x", "reserved"),
        ("LD_PRELOAD", "/tmp/x.so", "reserved"),
        ("PATH", "/tmp", "reserved"),
        ("PYTHONPATH", "/tmp", "reserved"),
        ("MY_VAR", "1", "may not be set"),
        ("KERNEL-X", "1", "invalid"),
        ("KERNEL_X", "a\u{0}b", "NUL"),
    ] {
        let r = s
            .owner()
            .post(s.url("api/kernels"))
            .json(&json!({"env": {name: value}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        let body: Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{name}: {message}");
    }
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_str().unwrap();
    let (code, _, err) = common::run_cli(
        &[
            "serve",
            "--port",
            "0",
            "--root-dir",
            root,
            "--state-dir",
            root,
            "--kernel-env-allow",
            "LD_*",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--kernel-env-allow") && err.contains("reserved"),
        "{err}"
    );
}

/// Relative path options (root, state, audit log) are taken relative to the directory
/// concord started in, once: kernels, which run in another directory, still start.
#[tokio::test]
async fn a_kernel_starts_with_relative_state_and_root_dirs() {
    let b = common::server()
        .token(TOKEN)
        .relative_dirs()
        .args(&["--audit-log", "audit-relative.jsonl"])
        .env("PATH", &path_with_venv());
    std::fs::create_dir(b.root().join("sub")).unwrap();
    let audit = b.root().parent().unwrap().join("audit-relative.jsonl");
    let s = b.start();
    let id = start_kernel(&s, json!({"path": "sub"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "rel", false).await.unwrap();
    let (reply, out) = c.execute("import os; print(os.getcwd())").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        KernelClient::stdout(&out).trim(),
        std::fs::canonicalize(s.root().join("sub"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    c.close().await;
    assert!(
        s.state().join("runtime").is_dir(),
        "the runtime dir is under the state dir"
    );
    drop(s);
    assert!(audit.exists(), "the audit log is where it was asked to be");
    std::fs::remove_file(audit).unwrap();
}

/// A real jupyter_server whose kernels are concord's (`--GatewayClient.url`, concord with
/// its default options): through jupyter_server's own REST and websocket API, a kernel
/// starts (with the `KERNEL_*` variables the gateway client sends), executes, is
/// interrupted, restarted and shut down, and each step happens in concord.
#[tokio::test]
async fn jupyter_server_runs_its_kernels_on_concord_as_its_gateway() {
    let s = server(&[]);
    let jroot = tempfile::tempdir().unwrap();
    let j = common::jupyter::Jupyter::start(
        jroot.path(),
        &[
            &format!("--GatewayClient.url={}", s.base.trim_end_matches('/')),
            &format!("--GatewayClient.auth_token={TOKEN}"),
        ],
    );
    let jc = j.client();
    // As JupyterLab does first: the kernelspecs (jupyter_server's gateway client sets
    // KERNEL_LAUNCH_TIMEOUT in its environment on its first request to the gateway).
    let r = jc.get(j.url("api/kernelspecs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let specs: Value = r.json().await.unwrap();
    assert_eq!(
        specs["default"], "python3",
        "concord's kernelspecs: {specs}"
    );
    let r = jc
        .post(j.url("api/kernels"))
        .json(&json!({"name": "python3", "path": "nb.ipynb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, model) = get_json(&s, &format!("api/kernels/{id}")).await;
    assert_eq!((status, model["name"].as_str()), (200, Some("python3")));

    let mut c = connect(&j.base, &j.token, &id, "gw", false).await.unwrap();
    let (reply, out) = c
        .execute(
            "import os; print(6 * 7, os.environ.get('KERNEL_LAUNCH_TIMEOUT'), \
             os.path.basename(os.environ.get('KERNEL_WORKING_DIR', '')))",
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        KernelClient::stdout(&out).trim(),
        format!(
            "42 40 {}",
            jroot.path().file_name().unwrap().to_str().unwrap()
        )
    );
    let pid = kernel_pid(&mut c, &id).await;
    assert_eq!(
        s.owner()
            .get(s.url("api/kernels"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()[0]["connections"],
        1,
        "jupyter_server's websocket is a connection to concord's kernel"
    );

    // Interrupt a running cell through jupyter_server.
    let exec = c
        .send(
            "shell",
            "execute_request",
            json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(120)", "silent": false}),
        )
        .await;
    c.recv_until(|m| m.msg_type() == "stream" && m.parent_id() == exec)
        .await;
    let r = jc
        .post(j.url(&format!("api/kernels/{id}/interrupt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let seen = c
        .recv_until(|m| m.msg_type() == "execute_reply" && m.parent_id() == exec)
        .await;
    assert_eq!(seen.last().unwrap().content["ename"], "KeyboardInterrupt");

    // Restart: a new process under the same id; state is gone.
    c.execute("x = 41").await;
    let r = jc
        .post(j.url(&format!("api/kernels/{id}/restart")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let (reply, _) = c.execute("print(x)").await;
    assert_eq!(reply["ename"], "NameError", "{reply}");
    let new_pid = kernel_pid(&mut c, &id).await;
    assert_ne!(pid, new_pid);

    // Shut down through jupyter_server: the kernel is gone from concord too.
    let r = jc
        .delete(j.url(&format!("api/kernels/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = get_json(&s, &format!("api/kernels/{id}")).await;
    assert_eq!(status, 404);
    eventually("the kernel process ends", || !alive(new_pid)).await;
}

/// The iopub `error`, the reply (on the request's channel) and the iopub `idle` a request
/// got, in `seen`; panics when one is missing.
fn error_answer<'a>(seen: &'a [Msg], request: &str, reply_type: &str) -> (&'a Msg, &'a Msg) {
    let reply = seen
        .iter()
        .find(|m| m.parent_id() == request && m.msg_type() == reply_type)
        .unwrap_or_else(|| panic!("no {reply_type} for {request} in {seen:#?}"));
    assert_eq!(reply.channel, "shell");
    assert_eq!(reply.content["status"], "error", "{:?}", reply.content);
    let error = seen
        .iter()
        .find(|m| m.parent_id() == request && m.channel == "iopub" && m.msg_type() == "error")
        .unwrap_or_else(|| panic!("no iopub error for {request}"));
    assert!(seen.iter().any(|m| m.parent_id() == request
        && m.msg_type() == "status"
        && m.content["execution_state"] == "idle"));
    (reply, error)
}

/// Returns once the server has handled every frame `c` sent before: it answers a message
/// it refuses itself after those (one connection's frames are handled in order).
async fn handled_by_the_server(c: &mut KernelClient) -> Vec<Msg> {
    let barrier = c
        .send_parts("shell", "comm_info_request", b"{}", b"{}", b"not json")
        .await;
    c.recv_until(|m| m.parent_id() == barrier && m.msg_type() == "comm_info_reply")
        .await
}

fn is_status(m: &Msg, state: &str) -> bool {
    m.channel == "iopub" && m.msg_type() == "status" && m.content["execution_state"] == state
}

/// A cell running when its kernel is killed, and the requests queued behind it, get error
/// replies (what JupyterLab shows in the cell) before the clients hear `restarting`; none of
/// them runs in the restarted kernel.
#[tokio::test]
async fn requests_pending_when_the_kernel_dies_get_an_error_reply() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "dies", true).await.unwrap();
    let pid = kernel_pid(&mut c, &id).await;
    let running = c
        .send(
            "shell",
            "execute_request",
            json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(600)", "silent": false}),
        )
        .await;
    c.recv_until(|m| m.msg_type() == "stream" && m.parent_id() == running)
        .await;
    let queued = c
        .send(
            "shell",
            "execute_request",
            json!({"code": "print('queued-ran')", "silent": false}),
        )
        .await;
    let info = c.send("shell", "kernel_info_request", json!({})).await;
    handled_by_the_server(&mut c).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let seen = c.recv_until(|m| is_status(m, "restarting")).await;
    for request in [&running, &queued] {
        let (reply, error) = error_answer(&seen, request, "execute_reply");
        assert_eq!(reply.content["ename"], "DeadKernelError");
        let evalue = reply.content["evalue"].as_str().unwrap();
        assert!(evalue.contains("kernel died"), "{evalue}");
        assert_eq!(error.content["ename"], "DeadKernelError");
        assert!(!error.content["traceback"].as_array().unwrap().is_empty());
    }
    let reply = seen
        .iter()
        .find(|m| m.parent_id() == info && m.msg_type() == "kernel_info_reply")
        .expect("kernel_info_reply");
    assert_eq!(reply.content["status"], "error");
    // The restarted kernel runs new code, and never ran what was queued for the dead one.
    let (reply, out) = c.execute("print('after')").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(KernelClient::stdout(&out), "after\n");
    let (_, out) = c.execute("print(len(In))").await;
    assert_eq!(
        KernelClient::stdout(&out),
        "1\n",
        "nothing else ran: {out:?}"
    );
}

/// A request sent to a kernel that stopped answering (SIGSTOP) gets an error reply once the
/// heartbeat declares the kernel dead, after `--kernel-heartbeat-misses` missed pings of
/// `--kernel-heartbeat-interval` each.
#[tokio::test]
async fn a_request_sent_while_the_kernel_is_stopped_gets_an_error_reply() {
    let s = server(&[
        "--kernel-heartbeat-interval",
        "1",
        "--kernel-heartbeat-misses",
        "3",
    ]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "stopped", true).await.unwrap();
    let pid = kernel_pid(&mut c, &id).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let request = c
        .send(
            "shell",
            "execute_request",
            json!({"code": "print('hello')", "silent": false}),
        )
        .await;
    handled_by_the_server(&mut c).await;
    let seen = c.recv_until(|m| is_status(m, "restarting")).await;
    let (reply, _) = error_answer(&seen, &request, "execute_reply");
    assert_eq!(reply.content["ename"], "DeadKernelError");
    eventually("the stopped kernel was killed", || !alive(pid)).await;
    let (reply, _) = c.execute("x = 1").await;
    assert_eq!(reply["status"], "ok");
}

/// A message whose parent header, metadata or content is not a JSON object never reaches
/// the kernel (ipykernel would drop it without a word): the server answers with an error
/// reply, and the connection goes on.
#[tokio::test]
async fn content_that_is_not_a_json_object_gets_an_error_reply() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "bad-content", true)
        .await
        .unwrap();
    let cases: [(&[u8], &[u8], &[u8]); 4] = [
        (b"{}", b"{}", b"print('not json')"),
        (b"{}", b"{}", b"[1, 2]"),
        (b"{}", b"not json", b"{\"code\": \"1\"}"),
        (b"[]", b"{}", b"{\"code\": \"1\"}"),
    ];
    for (parent, metadata, content) in cases {
        let request = c
            .send_parts("shell", "execute_request", parent, metadata, content)
            .await;
        let seen = c
            .recv_until(|m| m.parent_id() == request && is_status(m, "idle"))
            .await;
        let (reply, _) = error_answer(&seen, &request, "execute_reply");
        assert_eq!(
            reply.content["ename"], "InvalidMessage",
            "{:?}",
            reply.content
        );
    }
    // Legacy JSON frames: a content that is a number.
    let mut legacy = connect(&s.base, TOKEN, &id, "bad-legacy", false)
        .await
        .unwrap();
    legacy
        .send_raw(WsMessage::Text(
            json!({"header": {"msg_id": "legacy-1", "msg_type": "complete_request",
                              "session": "s", "username": "", "version": "5.3"},
                   "parent_header": {}, "metadata": {}, "content": 5, "channel": "shell"})
            .to_string()
            .into(),
        ))
        .await;
    let seen = legacy
        .recv_until(|m| m.parent_id() == "legacy-1" && m.msg_type() == "complete_reply")
        .await;
    assert_eq!(seen.last().unwrap().content["status"], "error");
    // Both connections go on, and so does the kernel.
    let (reply, out) = c.execute("print('fine')").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(KernelClient::stdout(&out), "fine\n");
    let (reply, _) = legacy.execute("y = 2").await;
    assert_eq!(reply["status"], "ok");
}

/// A websocket message above the kernel channel's limit (10 MiB by default, as tornado's in
/// jupyter_server) closes that socket with 1009; nothing reaches the kernel.
#[tokio::test]
async fn a_message_above_the_limit_closes_the_socket_with_1009() {
    let s = server(&[]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut big = connect(&s.base, TOKEN, &id, "big", true).await.unwrap();
    big.send_raw(WsMessage::Binary(vec![b'x'; 11 << 20].into()))
        .await;
    assert_eq!(big.recv().await.err(), Some(Closed::Code(1009)));
    let mut c = connect(&s.base, TOKEN, &id, "after-big", true)
        .await
        .unwrap();
    let (reply, _) = c.execute("z = 3").await;
    assert_eq!(reply["status"], "ok");
}

/// Budgets of the flood tests, small so that an unbounded server would overshoot them many
/// times within the seconds the flood runs.
const FLOOD_QUEUE: u64 = 8 << 20;
const FLOOD_REPLAY: u64 = 8 << 20;
const FLOOD: &str = "s = 'y' * 262144\nwhile True:\n    print(s, flush=True)";

fn flood_server() -> common::Server {
    server(&[
        "--kernel-client-queue-bytes",
        &FLOOD_QUEUE.to_string(),
        "--kernel-replay-bytes",
        &FLOOD_REPLAY.to_string(),
        "--kernel-write-timeout",
        "2",
        "--kernel-replay-window",
        "3",
    ])
}

/// The highest server RSS (KiB) and buffered bytes (the server's own accounting) seen while
/// sampling for `how_long`.
async fn peak_memory(s: &common::Server, how_long: Duration) -> (u64, u64) {
    let (mut rss, mut buffered) = (0, 0);
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        rss = rss.max(rss_kib(s.pid()));
        let text = s.metrics(TOKEN).await;
        buffered = buffered.max(metric(&text, "concord_kernel_buffered_bytes").unwrap_or(u64::MAX));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (rss, buffered)
}

/// Interrupt the flood, then wait until nothing is buffered any more and the server's RSS
/// is back within `slack_kib` of `idle_kib`.
async fn back_to_idle(s: &common::Server, kernel: &str, idle_kib: u64, slack_kib: u64) {
    let r = s
        .owner()
        .post(s.url(&format!("api/kernels/{kernel}/interrupt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The server may still be reading what the kernel printed before it stopped.
    loop {
        let (_, model) = get_json(s, &format!("api/kernels/{kernel}")).await;
        if model["execution_state"] == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "the flood never ended: {model}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let text = s.metrics(TOKEN).await;
        let buffered = metric(&text, "concord_kernel_buffered_bytes");
        let rss = rss_kib(s.pid());
        if buffered == Some(0) && rss <= idle_kib + slack_kib {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "memory not released: {buffered:?} bytes buffered, RSS {rss} KiB (idle {idle_kib})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A cell printing 256 KiB per line without end, to a client that never reads, and then to
/// a client that left: the server holds at most its budgets (the client's queue and the
/// kernel's replay buffer), and once the flood is interrupted and the replay window passed,
/// it is back to its idle memory, with no client attaching to trigger it.
#[tokio::test]
async fn a_flood_to_a_client_that_does_not_read_or_left_stays_within_the_budgets() {
    let s = flood_server();
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut warm = connect(&s.base, TOKEN, &id, "warm", true).await.unwrap();
    warm.execute("print('warm')").await;
    warm.close().await;
    let idle = rss_kib(s.pid());
    let budgets_kib = (FLOOD_QUEUE + FLOOD_REPLAY) / 1024;
    // Transient copies (frames being written, the read buffer of a large message) and the
    // allocator's own slack.
    let slack_kib = 24 * 1024;

    // A client that runs the flood and never reads.
    let mut stuck = connect(&s.base, TOKEN, &id, "stuck", true).await.unwrap();
    stuck
        .send(
            "shell",
            "execute_request",
            json!({"code": FLOOD, "silent": false}),
        )
        .await;
    let (rss, buffered) = peak_memory(&s, Duration::from_secs(5)).await;
    eprintln!("client that does not read: RSS {rss} KiB (idle {idle}), {buffered} B buffered");
    assert!(
        buffered <= FLOOD_QUEUE + FLOOD_REPLAY + (1 << 20),
        "{buffered} bytes buffered"
    );
    assert!(
        rss <= idle + budgets_kib + slack_kib,
        "RSS {rss} KiB, idle {idle} KiB"
    );
    back_to_idle(&s, &id, idle, 8 * 1024).await;
    let text = s.metrics(TOKEN).await;
    assert!(
        metric(&text, "concord_kernel_clients_lagged_total").unwrap_or(0) >= 1,
        "{text}"
    );
    drop(stuck);

    // A client that runs the flood and leaves.
    let mut gone = connect(&s.base, TOKEN, &id, "gone", true).await.unwrap();
    let request = gone
        .send(
            "shell",
            "execute_request",
            json!({"code": FLOOD, "silent": false}),
        )
        .await;
    gone.recv_until(|m| m.parent_id() == request && m.msg_type() == "stream")
        .await;
    gone.close().await;
    let (rss, buffered) = peak_memory(&s, Duration::from_secs(5)).await;
    eprintln!("client that left: RSS {rss} KiB (idle {idle}), {buffered} B buffered");
    assert!(
        buffered <= FLOOD_REPLAY + (1 << 20),
        "{buffered} bytes buffered"
    );
    assert!(
        rss <= idle + budgets_kib + slack_kib,
        "RSS {rss} KiB, idle {idle} KiB"
    );
    back_to_idle(&s, &id, idle, 8 * 1024).await;
}

/// While a client that does not read is dropped for falling behind, another client of the
/// same kernel receives every line of the output.
#[tokio::test]
async fn other_clients_keep_receiving_while_a_slow_one_is_dropped() {
    let s = flood_server();
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reader = connect(&s.base, TOKEN, &id, "reader", true).await.unwrap();
    let mut stuck = connect(&s.base, TOKEN, &id, "stuck", true).await.unwrap();
    stuck.send("shell", "kernel_info_request", json!({})).await;
    // 64 MiB in 64 KiB lines: far more than the stuck client's queue and socket buffers,
    // at a pace a reader keeps up with on a busy machine (this one parses every line).
    let n = 1024;
    let (reply, out) = reader
        .execute(&format!(
            "import time\ns = 'y' * 65536\nfor i in range({n}):\n    print(i, s, flush=True)\n    time.sleep(0.004)"
        ))
        .await;
    assert_eq!(reply["status"], "ok");
    let text = KernelClient::stdout(&out);
    let numbers: Vec<usize> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (0..n).collect::<Vec<_>>(), "every line, in order");
    let metrics = s.metrics(TOKEN).await;
    assert!(
        metric(&metrics, "concord_kernel_clients_lagged_total").unwrap_or(0) >= 1,
        "{metrics}"
    );
    // The stuck client was closed: what it finally reads ends with 1008, or the server
    // gave up writing to it and the stream just ends.
    let end = loop {
        match stuck.recv().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(end, Closed::Code(1008) | Closed::Eof), "{end:?}");
    let (reply, _) = reader.execute("print('after')").await;
    assert_eq!(reply["status"], "ok");
}

/// What clients send to a kernel that does not read it (here: stopped) is held within
/// `--kernel-input-queue-bytes`: a message beyond is answered with an error instead of
/// queued; once the kernel reads again, what was queued reaches it.
#[tokio::test]
async fn input_for_a_kernel_that_does_not_read_is_held_within_its_budget() {
    let s = server(&["--kernel-input-queue-bytes", "1048576"]);
    let id = start_kernel(&s, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&s.base, TOKEN, &id, "input", true).await.unwrap();
    let pid = kernel_pid(&mut c, &id).await;
    let signal = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    signal(nix::sys::signal::Signal::SIGSTOP);
    // 16 MiB of cells for a kernel that reads nothing.
    let padding = "#".repeat(256 * 1024);
    let mut sent = Vec::new();
    for i in 0..64 {
        let code = format!("x = {i}  {padding}");
        sent.push(
            c.send(
                "shell",
                "execute_request",
                json!({"code": code, "silent": false}),
            )
            .await,
        );
    }
    let seen = handled_by_the_server(&mut c).await;
    let refused: Vec<&str> = sent
        .iter()
        .filter(|id| {
            seen.iter().any(|m| {
                m.parent_id() == id.as_str()
                    && m.msg_type() == "execute_reply"
                    && m.content["ename"] == "KernelUnavailable"
            })
        })
        .map(String::as_str)
        .collect();
    signal(nix::sys::signal::Signal::SIGCONT);
    // Within the budget: at most 4 cells of 256 KiB queued, one in the kernel's socket.
    assert!(refused.len() >= 64 - 8, "only {} refused", refused.len());
    let accepted: Vec<&String> = sent
        .iter()
        .filter(|id| !refused.contains(&id.as_str()))
        .collect();
    assert!(!accepted.is_empty());
    let last = accepted.last().unwrap().to_string();
    let seen = c
        .recv_until(|m| m.parent_id() == last && m.msg_type() == "execute_reply")
        .await;
    assert_eq!(seen.last().unwrap().content["status"], "ok");
    let (reply, _) = c.execute("print(x)").await;
    assert_eq!(reply["status"], "ok");
}
