//! The websocket side, without HTTP: the server hands each text frame a client sent to a
//! [`ClientInput`], and sends what a [`ClientOutput`] yields.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::error::ProtocolError;
use crate::protocol::{self, ClientMessage};
use crate::terminal::{lock, ClientLink, Terminal};

/// What an attached client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TerminalAccess {
    /// Type into the shell and resize it (execute on the terminal).
    Type,
    /// Only watch the output (read on a shared terminal). Input is refused with a notice
    /// to this client, and its window size does not change the terminal's.
    Watch,
}

/// Why the server should close a client's websocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// The class of reason.
    pub kind: CloseKind,
    /// For the websocket close frame and the log.
    pub message: String,
}

/// The classes of [`CloseReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// The shell ended or the terminal was deleted (`["disconnect", 1]` was sent first).
    TerminalEnded,
    /// The client fell too far behind the output and was cut off.
    TooSlow,
}

/// What to send to a client next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    /// A text frame (a JSON array).
    Text(String),
    /// Close the websocket; nothing follows.
    Close(CloseReason),
}

/// The notice a watcher gets instead of their input reaching the shell.
pub const WATCH_ONLY_NOTICE: &str = "\r\n\u{1b}[1;33m[concord] You are watching this terminal \
read-only: your input was not sent to the shell.\u{1b}[0m\r\n";

/// At most one notice per this interval, so a watcher typing a word gets one notice.
const NOTICE_INTERVAL: Duration = Duration::from_secs(3);

/// Detaches the client when both halves are dropped.
struct Registration {
    terminal: Arc<Terminal>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.terminal.detach(self.id);
    }
}

/// A client attached to a terminal; split it to read and write concurrently.
pub struct TerminalClient {
    input: ClientInput,
    output: ClientOutput,
}

impl TerminalClient {
    pub(crate) fn new(
        terminal: Arc<Terminal>,
        id: u64,
        permission: TerminalAccess,
        rx: mpsc::UnboundedReceiver<String>,
        link: Arc<ClientLink>,
    ) -> Self {
        let registration = Arc::new(Registration { terminal, id });
        TerminalClient {
            input: ClientInput {
                registration: Arc::clone(&registration),
                permission,
                last_notice: Mutex::new(None),
            },
            output: ClientOutput {
                _registration: registration,
                rx,
                link,
                closed: false,
            },
        }
    }

    /// What this client may do.
    pub fn permission(&self) -> TerminalAccess {
        self.input.permission
    }

    /// The inbound (client → terminal) and outbound (terminal → client) halves.
    pub fn into_split(self) -> (ClientInput, ClientOutput) {
        (self.input, self.output)
    }
}

/// Handles the frames a client sends.
pub struct ClientInput {
    registration: Arc<Registration>,
    permission: TerminalAccess,
    last_notice: Mutex<Option<Instant>>,
}

impl ClientInput {
    /// What this client may do.
    pub fn permission(&self) -> TerminalAccess {
        self.permission
    }

    /// Act on one text frame. `stdin` from a typist goes to the shell (waiting while the
    /// shell does not read); from a watcher it is dropped and the watcher alone gets
    /// [`WATCH_ONLY_NOTICE`]. `set_size` from a typist resizes; from a watcher it is
    /// ignored. Other message types are ignored, as terminado does. A frame that is not
    /// terminado's protocol is an error: close the websocket with its message.
    pub async fn handle_text(&self, text: &str) -> Result<(), ProtocolError> {
        let terminal = &self.registration.terminal;
        match protocol::parse_client_message(text)? {
            ClientMessage::Stdin(data) => match self.permission {
                TerminalAccess::Type => {
                    // Once the shell is gone the output side closes the client.
                    terminal.write_input(data.into_bytes()).await;
                }
                TerminalAccess::Watch => self.refuse_input(),
            },
            ClientMessage::SetSize {
                rows,
                cols,
                height_px,
                width_px,
            } => {
                if self.permission == TerminalAccess::Type {
                    terminal.set_client_size(
                        self.registration.id,
                        (rows, cols),
                        (height_px, width_px),
                    );
                }
            }
            ClientMessage::Other(_) => {}
        }
        Ok(())
    }

    /// Act on a binary frame: terminado decodes it as the same JSON text.
    pub async fn handle_binary(&self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ProtocolError("binary frame is not UTF-8 JSON".to_string()))?;
        self.handle_text(text).await
    }

    fn refuse_input(&self) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last_notice);
            if last.is_some_and(|at| now.duration_since(at) < NOTICE_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let terminal = &self.registration.terminal;
        tracing::info!(terminal = %terminal.name, "input from a read-only watcher refused");
        terminal.send_to(
            self.registration.id,
            protocol::stdout_frame(WATCH_ONLY_NOTICE),
        );
    }
}

/// The frames to send to a client: `["setup", {}]`, the replayed history, live output,
/// and finally a close.
pub struct ClientOutput {
    _registration: Arc<Registration>,
    rx: mpsc::UnboundedReceiver<String>,
    link: Arc<ClientLink>,
    closed: bool,
}

impl ClientOutput {
    /// How long the client's socket may take to accept a frame before the client is
    /// closed as not reading (the terminals' `write_timeout`).
    pub fn write_timeout(&self) -> Duration {
        self._registration.terminal.write_timeout
    }

    /// The next frame; `None` after the close has been given.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        if self.closed {
            return None;
        }
        // A client cut off for being slow gets its close at once, not the backlog.
        if let Some(reason) = self.reason_if(CloseKind::TooSlow) {
            return self.close(reason);
        }
        match self.rx.recv().await {
            Some(frame) => {
                self.link.queued.fetch_sub(frame.len(), Ordering::SeqCst);
                Some(ServerFrame::Text(frame))
            }
            None => {
                let reason = lock(&self.link.end).clone().unwrap_or(CloseReason {
                    kind: CloseKind::TerminalEnded,
                    message: "The terminal has ended".to_string(),
                });
                self.close(reason)
            }
        }
    }

    fn reason_if(&self, kind: CloseKind) -> Option<CloseReason> {
        lock(&self.link.end).clone().filter(|r| r.kind == kind)
    }

    fn close(&mut self, reason: CloseReason) -> Option<ServerFrame> {
        self.closed = true;
        self.rx.close();
        Some(ServerFrame::Close(reason))
    }
}
