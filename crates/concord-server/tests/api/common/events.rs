//! A client of `WS /api/events/subscribe` (Concord's or jupyter_server's) and the marker
//! events the tests post to know that everything published before has been delivered.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Guards against a hang only; nothing asserts on durations.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// jupyter_server's contents events schema.
pub const CONTENTS: &str = "https://events.jupyter.org/jupyter_server/contents_service/v1";
/// jupyter_server's kernel lifecycle events schema.
pub const KERNEL_ACTIONS: &str = "https://events.jupyter.org/jupyter_server/kernel_actions/v1";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One subscription.
pub struct Subscriber {
    ws: Socket,
}

/// Subscribe at `base` (`http://host:port/`) with `Authorization: token …`; Err(status) when
/// the upgrade is refused.
pub async fn subscribe(base: &str, token: &str) -> Result<Subscriber, u16> {
    let url = format!(
        "{}api/events/subscribe",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("token {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Subscriber { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket: {other}"),
    }
}

impl Subscriber {
    /// The next text frame; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("an event frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => return Some(t.as_str().to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Send a text frame (subscribers have nothing to send: for limit tests).
    pub async fn send_text(&mut self, text: String) {
        let _ = self.ws.send(Message::Text(text.into())).await;
    }

    /// Read until the server closes the socket; the close code, if it sent one.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a close in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Frames up to (not including) the marker `name` (see [`marker`]).
    pub async fn until_marker(&mut self, name: &str) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await.expect("socket open until the marker");
            if is_marker(&frame, name) {
                return frames;
            }
            frames.push(frame);
        }
    }
}

/// The body of a marker: a client-posted contents event at `path`.
pub fn marker(path: &str) -> Value {
    json!({"schema_id": CONTENTS, "version": 1, "data": {"action": "get", "path": path}})
}

/// Whether `frame` is the marker at `path`.
pub fn is_marker(frame: &str, path: &str) -> bool {
    let v: Value = serde_json::from_str(frame).unwrap();
    v["schema_id"] == CONTENTS && v["action"] == "get" && v["path"] == path
}

/// `(action, path, source_path)` of a contents frame, `(action, kernel_id, status)` of a
/// kernel frame: compact for assertions.
pub fn summary(frame: &str) -> (String, String, String) {
    let v: Value = serde_json::from_str(frame).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    if v["schema_id"] == KERNEL_ACTIONS {
        (s("action"), s("kernel_id"), s("status"))
    } else {
        (s("action"), s("path"), s("source_path"))
    }
}
