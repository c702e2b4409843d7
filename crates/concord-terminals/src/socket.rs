//! Driving one websocket connection, without knowing the websocket library: the server
//! maps its messages to [`Incoming`] and from [`Outgoing`], and [`serve_client`] does the
//! rest. Reading and writing run concurrently, so a typist whose keystrokes the shell is
//! not reading still receives output, and a socket that stops reading never blocks input.
//! A socket that accepts no frame for the terminals' `write_timeout` is closed: a peer that
//! does not read holds nothing for longer than that.

use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::client::{CloseKind, ServerFrame, TerminalClient};

/// A message received from the client's websocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame (read as UTF-8 JSON, as terminado does).
    Binary(Vec<u8>),
    /// The client closed the connection.
    Close,
    /// The client sent a message above the socket's limit of `limit` bytes (the websocket
    /// library refused it): the connection is closed with 1009.
    TooBig {
        /// The limit, for the close reason.
        limit: usize,
    },
    /// Not from the client: the server ends the connection (its caller lost the right to
    /// use the terminal), closing it with this code and reason.
    End {
        /// The close code.
        code: u16,
        /// Why.
        reason: String,
    },
}

/// A message to send on the client's websocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A text frame (a JSON array of terminado's protocol).
    Text(String),
    /// A close frame with an RFC 6455 status code and a reason (at most 123 bytes).
    Close {
        /// 1000 when the terminal ended, 1008 for a client too far behind or not reading,
        /// 1007 for a frame that is not terminado's protocol, 1009 for one too big.
        code: u16,
        /// Why, for the person looking at the browser's console.
        reason: String,
    },
}

/// Close code: normal closure (the terminal ended).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: invalid frame payload (not terminado's protocol).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code: policy violation (the client fell too far behind, or does not read).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// How long a close frame may take: a peer that does not read is not waited for.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serve `client` over a websocket until either side ends. Returns once the connection is
/// over; the client is detached from the terminal then.
pub async fn serve_client<In, Out>(client: TerminalClient, mut incoming: In, mut outgoing: Out)
where
    In: Stream<Item = Incoming> + Unpin,
    Out: Sink<Outgoing> + Unpin,
{
    let (input, mut output) = client.into_split();
    let stall = output.write_timeout();
    let mut close: Option<Outgoing> = None;
    {
        let send = async {
            while let Some(frame) = output.next().await {
                match frame {
                    ServerFrame::Text(text) => {
                        match tokio::time::timeout(stall, outgoing.send(Outgoing::Text(text))).await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return None,
                            Err(_) => {
                                tracing::info!("terminal client stopped reading; disconnected");
                                return Some((
                                    CLOSE_POLICY,
                                    format!(
                                        "Disconnected: this client did not read for {} s",
                                        stall.as_secs()
                                    ),
                                ));
                            }
                        }
                    }
                    ServerFrame::Close(reason) => {
                        let code = match reason.kind {
                            CloseKind::TerminalEnded => CLOSE_NORMAL,
                            CloseKind::TooSlow => CLOSE_POLICY,
                        };
                        return Some((code, reason.message));
                    }
                }
            }
            None
        };
        let receive = async {
            while let Some(message) = incoming.next().await {
                let handled = match message {
                    Incoming::Text(text) => input.handle_text(&text).await,
                    Incoming::Binary(bytes) => input.handle_binary(&bytes).await,
                    Incoming::Close => return None,
                    Incoming::End { code, reason } => return Some((code, reason)),
                    Incoming::TooBig { limit } => {
                        return Some((
                            CLOSE_TOO_BIG,
                            format!("message too big: the limit is {limit} bytes"),
                        ))
                    }
                };
                if let Err(error) = handled {
                    return Some((CLOSE_INVALID_PAYLOAD, error.0));
                }
            }
            None
        };
        futures::pin_mut!(send, receive);
        let ended = match futures::future::select(send, receive).await {
            futures::future::Either::Left((ended, _)) => ended,
            futures::future::Either::Right((ended, _)) => ended,
        };
        if let Some((code, reason)) = ended {
            close = Some(Outgoing::Close {
                code,
                reason: close_reason(&reason),
            });
        }
    }
    if let Some(close) = close {
        let _ = tokio::time::timeout(CLOSE_GRACE, outgoing.send(close)).await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, outgoing.close()).await;
}

/// A websocket close reason may be at most 123 bytes.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let reason = super::close_reason(&long);
        assert!(reason.len() <= 123);
        assert!(long.starts_with(&reason));
        assert_eq!(super::close_reason("short"), "short");
    }
}
