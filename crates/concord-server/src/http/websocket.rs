//! The one websocket bridge of the server: kernels' channels, terminals and the events
//! stream (and any later room, such as collaboration's) upgrade through [`configure`], are
//! counted by [`OpenConnection`], and talk to their socket as a stream of [`FromClient`]
//! and a sink of [`ToClient`] ([`split`]), so each service's pump knows nothing of axum's
//! message types, and limits, close frames and deadlines are handled in one place.
//!
//! An open socket keeps its caller's [`Standing`]: whenever a right may have been taken
//! away (a policy reload, a token revoked, a user removed, a password changed; see
//! `AppState::access_changes`) it re-identifies the caller from the credential the socket
//! was opened with and re-decides, and the socket is closed (or a kernel client made a
//! watcher) at once.

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures::stream::{SplitSink, SplitStream};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::http::error::ApiError;
use crate::http::guard::Guard;
use crate::state::App;

/// Read buffer of a websocket (kernel channels, terminals). tungstenite's default, 128 KiB,
/// is zero-filled up front, so it is resident for every open notebook and terminal although
/// what clients send is small; a message larger than this still arrives whole (the buffer
/// grows to the frame), in more reads.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// How long a close frame may take to go out: a peer that does not read is not waited for.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Close code for a message larger than a websocket's limit (RFC 6455: "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Close code for a socket whose caller lost the right to it (RFC 6455: policy violation).
pub const CLOSE_REVOKED: u16 = 1008;

/// The close of a socket whose credential stopped authenticating.
pub fn credential_revoked() -> (u16, String) {
    (
        CLOSE_REVOKED,
        "access revoked: the credential this connection was opened with no longer holds"
            .to_string(),
    )
}

/// The close of a socket whose caller may no longer `what` (e.g. "read this kernel").
pub fn right_revoked(what: &str) -> (u16, String) {
    (
        CLOSE_REVOKED,
        format!("access revoked: no longer allowed to {what}"),
    )
}

/// The caller of an open websocket as it stands: re-identified and handed back whenever
/// credentials or the policy change, so the socket's pump can re-decide.
pub struct Standing {
    guard: Guard,
    changes: tokio::sync::watch::Receiver<u64>,
}

impl Standing {
    /// Follow the caller of the request that opened the socket. The first
    /// [`Standing::changed`] answers at once: a change made between the request's decision
    /// and the upgrade is not missed.
    pub fn new(app: &App, guard: Guard) -> Self {
        let mut changes = app.access_changes.subscribe();
        changes.mark_changed();
        Standing { guard, changes }
    }

    /// The guard as the caller stood at the last check.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Wait for the next change of credentials or policy; then the caller's guard as it
    /// stands now, or `None` when their credential no longer authenticates (revoked or
    /// expired token, ended session, removed user). Cancel-safe.
    pub async fn changed(&mut self) -> Option<&Guard> {
        if self.changes.changed().await.is_err() {
            // The application is going away; its shutdown closes the socket.
            std::future::pending::<()>().await;
        }
        self.guard = self.guard.reidentified()?;
        Some(&self.guard)
    }
}

/// The upgrade of a route that needs a websocket: a plain GET is a 400 saying so.
pub fn require_upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    upgrade
        .map_err(|e| ApiError::bad_request(format!("This URL needs a websocket connection: {e}")))
}

/// The server's settings of every websocket: the small read buffer, and messages (and
/// frames) from the client of at most `max_message_size` bytes.
pub fn configure(upgrade: WebSocketUpgrade, max_message_size: usize) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(max_message_size)
        .max_frame_size(max_message_size)
}

/// Counts an open websocket (kernel, terminal, events) in `AppState::connections` while it
/// lives. Created in the handler, before the upgrade: a client that got its 101 finds
/// itself in `/metrics` (the upgrade completes in a task started later), and a failed
/// upgrade drops it with the closure.
pub struct OpenConnection(App);

impl OpenConnection {
    /// Count one more connection.
    pub fn new(app: &App) -> Self {
        app.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(app.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A message from the client. Pings and pongs are answered by the library and not shown;
/// the stream ends when the client closes the socket or it fails.
#[derive(Debug)]
pub enum FromClient {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A message above the socket's limit: the last item; close with [`too_big`].
    TooBig,
}

/// A message to the client.
#[derive(Debug)]
pub enum ToClient {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A close frame: an RFC 6455 code and why (cut to the 123 bytes a close frame holds).
    Close {
        /// The status code.
        code: u16,
        /// Why, for the person looking at the browser's console.
        reason: String,
    },
}

/// How a write to the client failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailed {
    /// The socket is gone (the client left).
    Gone,
    /// The socket took nothing for the deadline: the client is not reading.
    Stalled,
}

/// Split an upgraded socket whose client may send messages of up to `limit` bytes.
pub fn split(socket: WebSocket, limit: usize) -> (ClientMessages, ClientSink) {
    let (sink, stream) = socket.split();
    (
        ClientMessages {
            stream,
            limit,
            done: false,
        },
        ClientSink { sink },
    )
}

/// The close (1009 and why) for a message above `limit` bytes.
pub fn too_big(limit: usize) -> (u16, String) {
    (
        CLOSE_TOO_BIG,
        format!("message too big: the limit is {limit} bytes"),
    )
}

/// At most 123 bytes (a close frame's limit), cut at a character boundary.
pub fn close_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What the client sends, as [`FromClient`].
pub struct ClientMessages {
    stream: SplitStream<WebSocket>,
    limit: usize,
    done: bool,
}

impl ClientMessages {
    /// The largest message the client may send.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Stream for ClientMessages {
    type Item = FromClient;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FromClient>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let message = match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(message) => message,
            };
            return Poll::Ready(match message {
                Some(Ok(Message::Text(text))) => Some(FromClient::Text(text.as_str().to_string())),
                Some(Ok(Message::Binary(bytes))) => Some(FromClient::Binary(bytes)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => {
                    self.done = true;
                    None
                }
                Some(Err(error)) => {
                    self.done = true;
                    is_too_big(error).then_some(FromClient::TooBig)
                }
            });
        }
    }
}

/// Whether a read error is a message above the limit (any other: the client is gone or
/// broke the protocol).
fn is_too_big(error: axum::Error) -> bool {
    matches!(
        error.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Where [`ToClient`] messages go.
pub struct ClientSink {
    sink: SplitSink<WebSocket, Message>,
}

impl ClientSink {
    /// Queue a message, waiting at most `deadline` for the socket to take it (written at
    /// the next flush, so a burst costs one write).
    pub async fn feed_within(
        &mut self,
        message: ToClient,
        deadline: Duration,
    ) -> Result<(), WriteFailed> {
        within(deadline, self.feed(message)).await
    }

    /// Write what was queued, waiting at most `deadline`.
    pub async fn flush_within(&mut self, deadline: Duration) -> Result<(), WriteFailed> {
        within(deadline, self.flush()).await
    }

    /// Send a close frame, if there is one, when the client still reads (a peer that does
    /// not is not waited for).
    pub async fn send_close(&mut self, close: Option<(u16, String)>) {
        if let Some((code, reason)) = close {
            let frame = ToClient::Close { code, reason };
            let _ = tokio::time::timeout(CLOSE_GRACE, self.send(frame)).await;
        }
    }

    /// End the connection (gently, for a peer that still reads).
    pub async fn shut_down(&mut self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, SinkExt::<ToClient>::close(self)).await;
    }
}

async fn within<E>(
    deadline: Duration,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), WriteFailed> {
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailed::Gone),
        Err(_) => Err(WriteFailed::Stalled),
    }
}

impl Sink<ToClient> for ClientSink {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sink.poll_ready_unpin(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: ToClient) -> Result<(), Self::Error> {
        let message = match item {
            ToClient::Text(text) => Message::Text(text.into()),
            ToClient::Binary(bytes) => Message::Binary(bytes),
            ToClient::Close { code, reason } => Message::Close(Some(CloseFrame {
                code,
                reason: close_reason(&reason).into(),
            })),
        };
        self.sink.start_send_unpin(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sink.poll_flush_unpin(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sink.poll_close_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::close_reason;

    #[test]
    fn close_reasons_are_cut_at_a_character() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'), "{cut}");
    }
}
