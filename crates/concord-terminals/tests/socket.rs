//! `serve_client` over an in-memory websocket stand-in, with real bash behind it.

mod common;

use common::*;
use concord_terminals::{serve_client, Incoming, Outgoing, TerminalAccess, TerminalManager};
use futures::channel::mpsc;
use futures::StreamExt;

/// Read outgoing messages until a `stdout` text contains `needle`.
async fn socket_read_until(out: &mut mpsc::UnboundedReceiver<Outgoing>, needle: &str) {
    let mut seen = String::new();
    let found = tokio::time::timeout(HANG_GUARD, async {
        while !seen.contains(needle) {
            match out.next().await {
                Some(Outgoing::Text(text)) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if frame[0] == "stdout" {
                        seen.push_str(frame[1].as_str().unwrap());
                    }
                }
                other => panic!("expected {needle:?}, got {other:?}"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "never saw {needle:?}: {:?}", tail(&seen));
}

/// The close message, skipping text frames.
async fn socket_close(out: &mut mpsc::UnboundedReceiver<Outgoing>) -> (u16, String) {
    loop {
        match tokio::time::timeout(HANG_GUARD, out.next()).await.unwrap() {
            Some(Outgoing::Text(_)) => {}
            Some(Outgoing::Close { code, reason }) => return (code, reason),
            None => panic!("socket ended without a close frame"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_a_malformed_frame_closes_with_1007() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();
    let client = manager.attach("1", "alice", TerminalAccess::Type).unwrap();
    let (to_server, incoming) = mpsc::unbounded();
    let (outgoing, mut from_server) = mpsc::unbounded();
    let served = tokio::spawn(serve_client(client, incoming, outgoing));

    match from_server.next().await {
        Some(Outgoing::Text(text)) => assert_eq!(text, r#"["setup",{}]"#),
        other => panic!("{other:?}"),
    }
    to_server
        .unbounded_send(Incoming::Text(stdin("echo WS$((8*8))\r")))
        .unwrap();
    socket_read_until(&mut from_server, "WS64").await;
    to_server
        .unbounded_send(Incoming::Binary(stdin("echo BIN$((9*9))\r").into_bytes()))
        .unwrap();
    socket_read_until(&mut from_server, "BIN81").await;

    to_server
        .unbounded_send(Incoming::Text("{\"not\": \"an array\"}".into()))
        .unwrap();
    let (code, reason) = socket_close(&mut from_server).await;
    assert_eq!(code, 1007);
    assert!(reason.contains("JSON array"), "{reason}");
    served.await.unwrap();
    // The terminal is unaffected, and the client is detached.
    let info = manager.get("1").unwrap();
    assert!(info.clients.is_empty());
    manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_detaches_and_terminal_end_closes_with_1000() {
    let root = tempfile::tempdir().unwrap();
    let manager = TerminalManager::new(bash_config(root.path()));
    manager.create(owner("alice"), None).await.unwrap();

    let client = manager.attach("1", "alice", TerminalAccess::Type).unwrap();
    let (to_server, incoming) = mpsc::unbounded();
    let (outgoing, _from_server) = mpsc::unbounded();
    let served = tokio::spawn(serve_client(client, incoming, outgoing));
    to_server.unbounded_send(Incoming::Close).unwrap();
    served.await.unwrap();
    assert!(manager.get("1").unwrap().clients.is_empty());

    let client = manager.attach("1", "bob", TerminalAccess::Watch).unwrap();
    let (_to_server, incoming) = mpsc::unbounded::<Incoming>();
    let (outgoing, mut from_server) = mpsc::unbounded();
    let served = tokio::spawn(serve_client(client, incoming, outgoing));
    manager.delete("1").await.unwrap();
    let mut last_text = None;
    let close = loop {
        match tokio::time::timeout(HANG_GUARD, from_server.next())
            .await
            .unwrap()
        {
            Some(Outgoing::Text(text)) => last_text = Some(text),
            Some(close) => break close,
            None => panic!("no close"),
        }
    };
    assert_eq!(last_text.as_deref(), Some(r#"["disconnect",1]"#));
    assert!(
        matches!(close, Outgoing::Close { code: 1000, .. }),
        "{close:?}"
    );
    served.await.unwrap();
}

/// A client whose socket takes nothing (a peer that stopped reading, its buffers full) is
/// let go once the write timeout has passed, instead of holding its connection and queue
/// for ever; a message above the socket's limit closes with 1009. The terminal goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_takes_nothing_is_let_go_and_a_message_too_big_closes_with_1009() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.write_timeout = std::time::Duration::from_millis(500);
    let manager = TerminalManager::new(config);
    manager.create(owner("alice"), None).await.unwrap();

    let client = manager.attach("1", "alice", TerminalAccess::Type).unwrap();
    let (to_server, incoming) = mpsc::unbounded::<Incoming>();
    // Room for one frame, and nobody reads it.
    let (outgoing, _never_read) = mpsc::channel::<Outgoing>(0);
    let served = tokio::spawn(serve_client(client, incoming, outgoing));
    to_server
        .unbounded_send(Incoming::Text(stdin("echo one; echo two\r")))
        .unwrap();
    tokio::time::timeout(HANG_GUARD, served)
        .await
        .expect("let go within the write timeout")
        .unwrap();
    assert!(manager.get("1").unwrap().clients.is_empty());

    let client = manager.attach("1", "alice", TerminalAccess::Type).unwrap();
    let (to_server, incoming) = mpsc::unbounded();
    let (outgoing, mut from_server) = mpsc::unbounded();
    let served = tokio::spawn(serve_client(client, incoming, outgoing));
    to_server
        .unbounded_send(Incoming::Text(stdin("echo STILL$((6*7))\r")))
        .unwrap();
    socket_read_until(&mut from_server, "STILL42").await;
    to_server
        .unbounded_send(Incoming::TooBig { limit: 1024 })
        .unwrap();
    let (code, reason) = socket_close(&mut from_server).await;
    assert_eq!(code, 1009);
    assert!(reason.contains("1024"), "{reason}");
    served.await.unwrap();
    manager.shutdown_all().await;
}

/// Keystrokes a shell does not read wait within the input budget (in bytes): beyond it,
/// the typist waits, instead of the server queueing whatever it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_the_shell_does_not_read_is_held_within_the_budget() {
    let root = tempfile::tempdir().unwrap();
    let mut config = bash_config(root.path());
    config.input_queue_bytes = 64 * 1024;
    let manager = TerminalManager::new(config);
    manager.create(owner("alice"), None).await.unwrap();
    let (input, mut output) = manager
        .attach("1", "alice", TerminalAccess::Type)
        .unwrap()
        .into_split();
    input
        .handle_text(&stdin("stty -icanon; sleep 600\r"))
        .await
        .unwrap();
    read_until(&mut output, "sleep 600").await;
    // The terminal's own buffer takes a few KiB; then 64 KiB wait in the server, and the
    // next frame has to wait for the shell.
    let chunk = "x".repeat(8 * 1024);
    let mut sent = 0;
    let blocked = loop {
        let typed = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            input.handle_text(&stdin(&chunk)),
        )
        .await;
        match typed {
            Ok(result) => result.unwrap(),
            Err(_) => break true,
        }
        sent += chunk.len();
        if sent > 1024 * 1024 {
            break false;
        }
    };
    assert!(
        blocked,
        "{sent} bytes were taken for a shell that reads nothing"
    );
    assert!(sent >= 64 * 1024, "only {sent} bytes were taken");
    manager.shutdown_all().await;
}
