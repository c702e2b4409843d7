//! Kernels through a real server (token mode) with real ipykernel from the project's venv:
//! REST start/interrupt/restart/delete, execute over both websocket protocols, `kill -9`,
//! malformed frames, kernelspecs, status and metrics, and no kernel left after SIGTERM.

mod common;
mod kernels_support;

use kernels_support::{
    alive, connect, eventually, path_with_venv, pids_with, Closed, KernelClient,
};
use serde_json::{json, Value};
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
    r.json().await.unwrap()
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
    let session: Value = r.json().await.unwrap();
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
