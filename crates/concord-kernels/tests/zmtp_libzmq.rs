//! Our ZMTP client (`ZmtpTransport`) against libzmq itself: pyzmq sockets from the project's
//! venv (the library every ipykernel uses), over IPC and TCP. The real_ipykernel tests cover
//! the kernel's own sockets; these cover what a kernel rarely shows: frames of every size
//! class, a routing identity, thousands of published messages, REP heartbeats, and a peer of
//! the wrong kind.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use concord_kernels::transport::{Transport, ZmtpTransport};

/// Generous bound so a broken test fails instead of hanging; never a performance check.
const PATIENCE: Duration = Duration::from_secs(60);

/// A pyzmq peer process; killed when dropped.
struct Peer {
    child: Child,
    endpoint: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.is_file(),
        "the project's Python venv is missing at {}: run the README's set-up",
        p.display()
    );
    p
}

/// Start `zmq_peer.py MODE ENDPOINT` and wait for the endpoint it bound.
fn peer(mode: &str, endpoint: &str, env: &[(&str, &str)]) -> Peer {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/zmq_peer.py");
    let mut child = Command::new(python())
        .arg(script)
        .args([mode, endpoint])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the pyzmq peer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "the peer exited before binding");
    Peer {
        child,
        endpoint: line.trim().to_string(),
    }
}

fn transport() -> ZmtpTransport {
    ZmtpTransport {
        connect_timeout: Duration::from_secs(10),
    }
}

/// Messages with frames in every size class: empty, one byte, the short/long boundary
/// (255/256 bytes), and several MiB.
fn samples() -> Vec<Vec<Bytes>> {
    let sized = |n: usize, b: u8| Bytes::from(vec![b; n]);
    vec![
        vec![Bytes::from_static(b"one")],
        vec![Bytes::new(), Bytes::from_static(b"after an empty frame")],
        vec![sized(255, 1), sized(256, 2), sized(257, 3)],
        vec![sized(3 << 20, 4), Bytes::from_static(b"tail")],
        (0..40).map(|i| sized(i * 13, i as u8)).collect(),
    ]
}

async fn dealer_round_trips(endpoint: &str) {
    let (mut tx, mut rx) = transport()
        .dealer(endpoint, b"concord-test-identity")
        .await
        .unwrap();
    // The ROUTER sees the identity we announced.
    tx.send(vec![Bytes::from_static(b"whoami")]).await.unwrap();
    let who = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, vec![Bytes::from_static(b"concord-test-identity")]);
    // Many messages in flight at once come back whole and in order.
    let sent: Vec<Vec<Bytes>> = (0..20).flat_map(|_| samples()).collect();
    let sending = async {
        for m in &sent {
            tx.send(m.clone()).await.unwrap();
        }
    };
    let receiving = async {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            got.push(rx.recv().await.unwrap());
        }
        got
    };
    let ((), got) = tokio::time::timeout(PATIENCE, async { tokio::join!(sending, receiving) })
        .await
        .unwrap();
    assert!(got == sent, "the echoed messages differ from those sent");
}

#[tokio::test]
async fn a_dealer_talks_to_a_libzmq_router_over_ipc() {
    let dir = tempfile::tempdir().unwrap();
    let p = peer(
        "router-echo",
        &format!("ipc://{}", dir.path().join("router").display()),
        &[],
    );
    dealer_round_trips(&p.endpoint).await;
}

#[tokio::test]
async fn a_dealer_talks_to_a_libzmq_router_over_tcp() {
    let p = peer("router-echo", "tcp://127.0.0.1:0", &[]);
    dealer_round_trips(&p.endpoint).await;
}

#[tokio::test]
async fn a_subscriber_gets_every_message_a_libzmq_xpub_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let p = peer(
        "pub",
        &format!("ipc://{}", dir.path().join("pub").display()),
        &[("COUNT", "20000")],
    );
    let mut rx = transport().subscriber(&p.endpoint).await.unwrap();
    let all = async {
        let big = rx.recv().await.unwrap();
        assert_eq!(big[0], Bytes::from_static(b"big"));
        assert_eq!(big[1].len(), 2 << 20);
        for i in 0..20000 {
            let m = rx.recv().await.unwrap();
            assert_eq!(m[1], Bytes::from(i.to_string()), "message {i}");
        }
        let last = rx.recv().await.unwrap();
        assert_eq!(last[1], Bytes::from_static(b"done"));
    };
    tokio::time::timeout(PATIENCE, all).await.unwrap();
}

/// libzmq sends ZMTP PINGs when a socket has heartbeats on, and drops a peer that does not
/// answer; a subscriber never sends anything else, so only its PONGs keep it connected.
#[tokio::test]
async fn zmtp_heartbeats_are_answered_while_a_channel_is_idle() {
    let p = peer(
        "pub",
        "tcp://127.0.0.1:0",
        &[("HEARTBEAT_MS", "50"), ("DELAY_S", "1"), ("COUNT", "10")],
    );
    let mut rx = transport().subscriber(&p.endpoint).await.unwrap();
    let all = async {
        assert_eq!(rx.recv().await.unwrap()[0], Bytes::from_static(b"big"));
        for i in 0..10 {
            assert_eq!(rx.recv().await.unwrap()[1], Bytes::from(i.to_string()));
        }
    };
    tokio::time::timeout(PATIENCE, all).await.unwrap();

    let p = peer(
        "router-echo",
        "tcp://127.0.0.1:0",
        &[("HEARTBEAT_MS", "50")],
    );
    let (mut tx, mut rx) = transport().dealer(&p.endpoint, b"idle").await.unwrap();
    // Waiting to receive, as the kernel's reader tasks always are, while nothing is sent.
    let echo = tokio::spawn(async move { tokio::time::timeout(PATIENCE, rx.recv()).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(vec![Bytes::from_static(b"still here")])
        .await
        .unwrap();
    let echo = echo.await.unwrap().unwrap();
    assert_eq!(echo.unwrap(), vec![Bytes::from_static(b"still here")]);
}

#[tokio::test]
async fn the_heartbeat_is_answered_by_a_rep_and_by_a_router() {
    for mode in ["rep-echo", "router-echo"] {
        let p = peer(mode, "tcp://127.0.0.1:0", &[]);
        let mut hb = transport().heartbeat(&p.endpoint).await.unwrap();
        for _ in 0..3 {
            tokio::time::timeout(PATIENCE, hb.ping())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
        }
    }
}

#[tokio::test]
async fn a_peer_of_the_wrong_kind_is_a_clear_error() {
    let p = peer("push", "tcp://127.0.0.1:0", &[]);
    let err = match transport().subscriber(&p.endpoint).await {
        Ok(_) => panic!("a SUB connected to a PUSH"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("handshake") && err.contains("SUB"),
        "unexpected error: {err}"
    );
}
