//! A small Jupyter kernel websocket client for the kernels tests, written independently of
//! the server's codec: legacy JSON text frames and the `v1.kernel.websocket.jupyter.org`
//! binary frames.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Guards against a hang only; nothing asserts on durations.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The v1 subprotocol.
pub const V1: &str = "v1.kernel.websocket.jupyter.org";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The project's venv `bin` directory (its python3 carries ipykernel's kernelspec).
pub fn venv_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin");
    assert!(
        bin.join("python").exists(),
        "the project's venv with ipykernel is missing at {}: run the README's set-up",
        bin.display()
    );
    bin.canonicalize().unwrap()
}

/// `PATH` with the venv first, as `scripts/run` starts concord: the python3 kernelspec is
/// found through the prefix of the first `python3` on `PATH`.
pub fn path_with_venv() -> String {
    format!(
        "{}:{}",
        venv_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A message received from the kernel websocket.
#[derive(Clone, Debug)]
pub struct Msg {
    /// shell, iopub, control, stdin.
    pub channel: String,
    /// The header.
    pub header: Value,
    /// The parent header.
    pub parent: Value,
    /// The content.
    pub content: Value,
}

impl Msg {
    /// `header.msg_type`.
    pub fn msg_type(&self) -> &str {
        self.header["msg_type"].as_str().unwrap_or("")
    }
    /// `parent_header.msg_id`.
    pub fn parent_id(&self) -> &str {
        self.parent["msg_id"].as_str().unwrap_or("")
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended without a close frame.
    Eof,
}

/// One kernel websocket client.
pub struct KernelClient {
    ws: Socket,
    /// Whether the v1 binary protocol was negotiated.
    pub v1: bool,
    session: String,
}

/// Connect to `ws://…/api/kernels/{id}/channels?session_id=…` with a token; `offer_v1`
/// offers the binary subprotocol. Err(status) when the upgrade is refused.
pub async fn connect(
    base: &str,
    token: &str,
    kernel_id: &str,
    session_id: &str,
    offer_v1: bool,
) -> Result<KernelClient, u16> {
    let url = format!(
        "{}api/kernels/{kernel_id}/channels?session_id={session_id}",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("token {token}").parse().unwrap());
    if offer_v1 {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", V1.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            let v1 = chosen.as_deref() == Some(V1);
            assert_eq!(v1, offer_v1, "the server must pick v1 exactly when offered");
            Ok(KernelClient {
                ws,
                v1,
                session: session_id.to_string(),
            })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket: {other}"),
    }
}

fn encode_v1(channel: &str, parts: [&[u8]; 4]) -> Vec<u8> {
    let mut offsets = vec![8 * 7u64];
    offsets.push(offsets[0] + channel.len() as u64);
    for p in parts {
        offsets.push(offsets.last().unwrap() + p.len() as u64);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(offsets.len() as u64).to_le_bytes());
    for o in &offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(channel.as_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn decode_v1(b: &[u8]) -> Msg {
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap()) as usize;
    let n = u(0);
    let offs: Vec<usize> = (0..n).map(|i| u(8 * (i + 1))).collect();
    let part = |i: usize| {
        let end = if i + 1 < n { offs[i + 1] } else { b.len() };
        &b[offs[i]..end]
    };
    let js = |i: usize| serde_json::from_slice::<Value>(part(i)).unwrap();
    Msg {
        channel: String::from_utf8(part(0).to_vec()).unwrap(),
        header: js(1),
        parent: js(2),
        content: js(4),
    }
}

impl KernelClient {
    /// Send a request; returns its msg_id.
    pub async fn send(&mut self, channel: &str, msg_type: &str, content: Value) -> String {
        let msg_id = format!("{:032x}", rand::random::<u128>());
        let header = json!({
            "msg_id": msg_id, "msg_type": msg_type, "username": "spoofed-name",
            "session": self.session, "date": "2026-01-01T00:00:00.000000Z", "version": "5.3",
        });
        let frame = if self.v1 {
            WsMessage::Binary(
                encode_v1(
                    channel,
                    [
                        header.to_string().as_bytes(),
                        b"{}",
                        b"{}",
                        content.to_string().as_bytes(),
                    ],
                )
                .into(),
            )
        } else {
            WsMessage::Text(
                json!({"header": header, "parent_header": {}, "metadata": {},
                       "content": content, "channel": channel, "buffers": []})
                .to_string()
                .into(),
            )
        };
        self.ws.send(frame).await.unwrap();
        msg_id
    }

    /// Send a request whose parent header, metadata and content are these raw bytes (for
    /// malformed-input tests; v1 only); returns its msg_id.
    pub async fn send_parts(
        &mut self,
        channel: &str,
        msg_type: &str,
        parent: &[u8],
        metadata: &[u8],
        content: &[u8],
    ) -> String {
        assert!(self.v1, "raw parts need the v1 protocol");
        let msg_id = format!("{:032x}", rand::random::<u128>());
        let header = json!({
            "msg_id": msg_id, "msg_type": msg_type, "username": "",
            "session": self.session, "date": "2026-01-01T00:00:00.000000Z", "version": "5.3",
        });
        let frame = encode_v1(
            channel,
            [header.to_string().as_bytes(), parent, metadata, content],
        );
        self.ws.send(WsMessage::Binary(frame.into())).await.unwrap();
        msg_id
    }

    /// Send a raw frame (for malformed-input tests).
    pub async fn send_raw(&mut self, frame: WsMessage) {
        let _ = self.ws.send(frame).await;
    }

    /// The next message; Err when the connection closed.
    pub async fn recv(&mut self) -> Result<Msg, Closed> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no message from the kernel websocket in time");
            match next {
                Some(Ok(WsMessage::Text(t))) => {
                    assert!(!self.v1, "text frame on a v1 connection");
                    let v: Value = serde_json::from_str(&t).unwrap();
                    return Ok(Msg {
                        channel: v["channel"].as_str().unwrap().to_string(),
                        header: v["header"].clone(),
                        parent: v["parent_header"].clone(),
                        content: v["content"].clone(),
                    });
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    assert!(
                        self.v1,
                        "binary frame without buffers on a legacy connection"
                    );
                    return Ok(decode_v1(&b));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(frame
                        .map(|f| Closed::Code(f.code.into()))
                        .unwrap_or(Closed::Eof))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Closed::Eof),
            }
        }
    }

    /// Receive until `pred` holds; returns every message seen (the matching one last).
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Msg) -> bool) -> Vec<Msg> {
        let mut seen = Vec::new();
        loop {
            let m = self.recv().await.expect("connection closed while waiting");
            let done = pred(&m);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }

    /// Run `code`: returns the execute_reply content and the iopub messages of the cell
    /// (up to its `idle` status). Waits for both.
    pub async fn execute(&mut self, code: &str) -> (Value, Vec<Msg>) {
        let id = self
            .send(
                "shell",
                "execute_request",
                json!({"code": code, "silent": false, "store_history": false,
                       "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
            )
            .await;
        let mut reply = None;
        let mut outputs = Vec::new();
        let mut idle = false;
        while reply.is_none() || !idle {
            let m = self.recv().await.expect("connection closed during execute");
            if m.parent_id() != id {
                continue;
            }
            if m.channel == "shell" && m.msg_type() == "execute_reply" {
                reply = Some(m.content.clone());
            } else if m.channel == "iopub" {
                if m.msg_type() == "status" && m.content["execution_state"] == "idle" {
                    idle = true;
                }
                outputs.push(m);
            }
        }
        (reply.unwrap(), outputs)
    }

    /// Everything printed on stdout by a cell's outputs.
    pub fn stdout(outputs: &[Msg]) -> String {
        outputs
            .iter()
            .filter(|m| m.msg_type() == "stream" && m.content["name"] == "stdout")
            .map(|m| m.content["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Close the websocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    // A zombie is not alive for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Processes whose command line contains `needle` (e.g. a kernel's connection-file id).
pub fn pids_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// The kernel process of kernel `id` (its pid on the machine: inside its pid namespace the
/// kernel sees other numbers), found by its connection file on its command line.
pub fn kernel_process(id: &str) -> Option<i32> {
    pids_with(id).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("ipykernel"))
    })
}

/// Poll until `cond` holds (bounded by [`PATIENCE`]; a hang guard, not a timing check).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Try a websocket upgrade of `url` (`ws://…`) with these extra headers: 101 when it was
/// accepted (the socket is closed at once), else the refusal's HTTP status.
pub async fn upgrade_status(url: &str, headers: &[(&str, String)]) -> u16 {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None).await;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("websocket: {other}"),
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
