//! Real bash on a real PTY, through the websocket side of the crate.

mod common;

use common::*;
use concord_terminals::{
    CloseKind, ErrorKind, ServerFrame, TerminalAccess, TerminalError, TerminalManager,
    WATCH_ONLY_NOTICE,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_and_utf8() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    let info = manager.create(owner("alice"), None).await.unwrap();
    assert_eq!(info.name, "1");
    assert_eq!(info.cwd, root.path());

    let (input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    assert_eq!(next_json(&mut output).await, json!(["setup", {}]));
    input
        .handle_text(&stdin("echo $((6*7))XYZ\r"))
        .await
        .unwrap();
    read_until(&mut output, "42XYZ").await;
    // Multi-byte characters produced by the shell arrive whole.
    input
        .handle_text(&stdin(
            "printf '\\303\\251\\342\\202\\254\\360\\237\\230\\200done\\n'\r",
        ))
        .await
        .unwrap();
    read_until(&mut output, "é€😀done").await;
    // The shell starts in the directory it was given.
    input
        .handle_text(&stdin("echo CWD=$(pwd)=\r"))
        .await
        .unwrap();
    read_until(&mut output, &format!("CWD={}=", root.path().display())).await;

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_follows_the_smallest_typist_and_ignores_watchers() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    let (a_in, mut a_out) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();

    a_in.handle_text(r#"["set_size", 30, 100, 600, 1000]"#)
        .await
        .unwrap();
    a_in.handle_text(&stdin("echo SIZE=$(stty size)=\r"))
        .await
        .unwrap();
    read_until(&mut a_out, "SIZE=30 100=").await;

    let b = manager.attach("1", "alice", TerminalAccess::Type).unwrap();
    let (b_in, b_out) = b.into_split();
    b_in.handle_text(r#"["set_size", 20, 90]"#).await.unwrap();
    let watcher = manager.attach("1", "bob", TerminalAccess::Watch).unwrap();
    let (w_in, _w_out) = watcher.into_split();
    w_in.handle_text(r#"["set_size", 5, 10]"#).await.unwrap();
    a_in.handle_text(&stdin("echo SIZE=$(stty size)=\r"))
        .await
        .unwrap();
    read_until(&mut a_out, "SIZE=20 90=").await;

    // The smaller typist leaves: the terminal grows back.
    drop((b_in, b_out));
    a_in.handle_text(&stdin("echo SIZE=$(stty size)=\r"))
        .await
        .unwrap();
    read_until(&mut a_out, "SIZE=30 100=").await;

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reattaching_client_gets_history_after_setup() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    {
        let (input, mut output) = manager
            .attach("1", "alice", TerminalAccess::Type)
            .unwrap()
            .into_split();
        input
            .handle_text(&stdin("echo MARK$((2+3))\r"))
            .await
            .unwrap();
        read_until(&mut output, "MARK5").await;
    }
    assert!(manager.get("1").unwrap().clients.is_empty());

    let (_input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    assert_eq!(next_json(&mut output).await, json!(["setup", {}]));
    let replay = next_json(&mut output).await;
    assert_eq!(replay[0], "stdout");
    assert!(
        replay[1].as_str().unwrap().contains("MARK5"),
        "replay: {replay}"
    );

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_output_but_cannot_type() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    let (o_in, mut o_out) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    let (w_in, mut w_out) = manager
        .attach("1", "bob", TerminalAccess::Watch)
        .unwrap()
        .into_split();
    assert_eq!(next_json(&mut w_out).await, json!(["setup", {}]));

    o_in.handle_text(&stdin("echo OWNER$((3*3))\r"))
        .await
        .unwrap();
    read_until(&mut w_out, "OWNER9").await;

    let victim = root.path().join("pwned");
    w_in.handle_text(&stdin(&format!("touch {}\r", victim.display())))
        .await
        .unwrap();
    w_in.handle_text(&stdin("\r")).await.unwrap();
    let notice = read_until(&mut w_out, "read-only").await;
    assert!(notice.contains(WATCH_ONLY_NOTICE));

    o_in.handle_text(&stdin("echo AFTER$((1+1))\r"))
        .await
        .unwrap();
    let owner_saw = read_until(&mut o_out, "AFTER2").await;
    assert!(
        !owner_saw.contains("pwned") && !owner_saw.contains("read-only"),
        "the owner's terminal saw the watcher's input or notice: {owner_saw:?}"
    );
    let watcher_saw = read_until(&mut w_out, "AFTER2").await;
    assert!(!watcher_saw.contains("pwned"));
    assert!(!victim.exists(), "the watcher's command ran");

    let clients = manager.get("1").unwrap().clients;
    assert_eq!(clients.len(), 2);
    assert!(clients
        .iter()
        .any(|c| c.username == "bob" && c.permission == TerminalAccess::Watch));

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_and_global_limits() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.max_terminals_per_user = Some(2);
    config.max_terminals = Some(3);
    let manager = TerminalManager::new(config);

    assert_eq!(
        manager.create(owner("alice"), None).await.unwrap().name,
        "1"
    );
    assert_eq!(
        manager.create(owner("alice"), None).await.unwrap().name,
        "2"
    );
    let error = manager.create(owner("alice"), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LimitReached);
    assert!(error.to_string().contains("per user"), "{error}");

    assert_eq!(manager.create(owner("bob"), None).await.unwrap().name, "3");
    let error = manager.create(owner("bob"), None).await.unwrap_err();
    assert!(matches!(error, TerminalError::TooManyTerminals(3)));
    assert_eq!(error.to_string(), "Cannot create more than 3 terminals");

    // Freeing one makes room, and the freed name is reused as terminado does.
    manager.delete("1").await.unwrap();
    assert_eq!(manager.create(owner("bob"), None).await.unwrap().name, "1");
    let names: Vec<String> = manager.list().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["2", "3", "1"]);

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_errors_match_jupyter_server() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    let info = manager.create(owner("alice"), None).await.unwrap();
    let model = serde_json::to_value(info.model()).unwrap();
    let object = model.as_object().unwrap();
    assert_eq!(object.len(), 2);
    assert_eq!(model["name"], "1");
    let stamp = model["last_activity"].as_str().unwrap();
    assert!(stamp.ends_with('Z'), "{stamp}");
    chrono::DateTime::parse_from_rfc3339(stamp).unwrap();

    let missing = manager.get("9").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(missing.to_string(), "Terminal not found: 9");
    assert!(manager.attach("9", "alice", TerminalAccess::Type).is_err());
    assert_eq!(
        manager.delete("9").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let file = root.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for bad in [root.path().join("missing"), file, "relative".into()] {
        let error = manager
            .create(owner("alice"), Some(&bad))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
    }
    let mut config = bash_config(root.path());
    config.shell_command = vec!["/nonexistent/shell".into()];
    let broken = TerminalManager::new(config);
    assert_eq!(
        broken
            .create(owner("alice"), None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Internal
    );

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_refused_and_the_terminal_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    let (input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    for bad in [
        "nonsense",
        "{\"stdin\": \"ls\"}",
        "[]",
        "[42]",
        "[\"stdin\"]",
        "[\"stdin\", {\"a\": 1}]",
        "[\"set_size\", \"big\", 80]",
        "[\"set_size\", -3, 80]",
    ] {
        let error = input.handle_text(bad).await.unwrap_err();
        assert!(!error.0.is_empty(), "{bad}");
    }
    assert!(input.handle_binary(&[0xff, 0xfe]).await.is_err());
    // Unknown message types are ignored, as terminado does.
    input.handle_text(r#"["ping", 1]"#).await.unwrap();
    input
        .handle_binary(stdin("echo OK$((4+4))\r").as_bytes())
        .await
        .unwrap();
    read_until(&mut output, "OK8").await;

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_sends_disconnect_and_forgets_the_terminal() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    let (input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    let (_watch_in, mut watch_out) = manager
        .attach("1", "bob", TerminalAccess::Watch)
        .unwrap()
        .into_split();
    input
        .handle_text(&stdin("echo BYE$((5+5)); exit\r"))
        .await
        .unwrap();
    for out in [&mut output, &mut watch_out] {
        let (frames, close) = read_to_close(out).await;
        let text: String = frames
            .iter()
            .filter(|f| f[0] == "stdout")
            .map(|f| f[1].as_str().unwrap().to_string())
            .collect();
        assert!(text.contains("BYE10"));
        assert_eq!(frames.last().unwrap(), &json!(["disconnect", 1]));
        match close {
            ServerFrame::Close(reason) => assert_eq!(reason.kind, CloseKind::TerminalEnded),
            other => panic!("{other:?}"),
        }
        assert!(out.next().await.is_none());
    }
    assert!(manager.list().is_empty());
    assert_eq!(manager.get("1").unwrap_err().kind(), ErrorKind::NotFound);
    // Typing into an ended terminal is harmless.
    input.handle_text(&stdin("echo late\r")).await.unwrap();
    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_dropped_without_holding_up_others() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.client_queue_limit_bytes = 256 * 1024;
    let manager = TerminalManager::new(config);
    manager.create(owner("alice"), None).await.unwrap();
    let (input, mut fast) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    // Never read from until the end.
    let (_slow_in, mut slow) = manager
        .attach("1", "bob", TerminalAccess::Watch)
        .unwrap()
        .into_split();
    // The shell waits for the fast client after each 100 kB, so only the client that
    // never reads can fall behind, whatever the machine's speed.
    input
        .handle_text(&stdin(
            "for i in 1 2 3 4 5; do head -c 100000 /dev/zero | tr '\\0' x; echo; \
             echo CHUNK$((i*11)); read -r; done; echo DONE$((7*6))\r",
        ))
        .await
        .unwrap();
    for i in 1..=5 {
        read_until(&mut fast, &format!("CHUNK{}", i * 11)).await;
        input.handle_text(&stdin("\r")).await.unwrap();
    }
    read_until(&mut fast, "DONE42").await;
    match tokio::time::timeout(HANG_GUARD, slow.next()).await.unwrap() {
        Some(ServerFrame::Close(reason)) => assert_eq!(reason.kind, CloseKind::TooSlow),
        other => panic!("slow client was not cut off: {other:?}"),
    }
    assert_eq!(manager.get("1").unwrap().clients.len(), 1);

    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_terminals_are_culled() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.cull_inactive_timeout = Some(std::time::Duration::from_millis(500));
    config.cull_interval = std::time::Duration::from_millis(100);
    let manager = TerminalManager::new(config);
    let pid = manager.create(owner("alice"), None).await.unwrap().pid as i32;
    eventually("the idle terminal is culled", || manager.list().is_empty()).await;
    eventually("the culled shell is gone", || !exists(-pid)).await;
    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_respect_the_global_limit() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.max_terminals = Some(3);
    let manager = TerminalManager::new(config);
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..6 {
        let manager = manager.clone();
        creates.spawn(async move { manager.create(owner(&format!("user{i}")), None).await });
    }
    let mut created = 0;
    let mut refused = 0;
    while let Some(result) = creates.join_next().await {
        match result.unwrap() {
            Ok(_) => created += 1,
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::LimitReached);
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (3, 3));
    let mut names: Vec<String> = manager.list().into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, ["1", "2", "3"]);
    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_keeps_only_the_most_recent_output() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.history_limit_bytes = 2048;
    let manager = TerminalManager::new(config);
    manager.create(owner("alice"), None).await.unwrap();
    {
        let (input, mut output) = manager
            .attach("1", "alice", TerminalAccess::Type)
            .unwrap()
            .into_split();
        input
            .handle_text(&stdin(
                "echo FIRST$((1+1)); head -c 20000 /dev/zero | tr '\\0' y; echo; echo LAST$((2+2))\r",
            ))
            .await
            .unwrap();
        read_until(&mut output, "LAST4").await;
    }
    let (_input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Watch)
        .unwrap()
        .into_split();
    assert_eq!(next_json(&mut output).await, json!(["setup", {}]));
    let replay = next_json(&mut output).await;
    let text = replay[1].as_str().unwrap();
    assert!(text.len() <= 2048, "replay is {} bytes", text.len());
    assert!(text.contains("LAST4"));
    assert!(!text.contains("FIRST2"));
    manager.shutdown_all().await;
}
