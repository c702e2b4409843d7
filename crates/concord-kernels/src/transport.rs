//! The kernel transport behind a small trait, so that the bridge does not depend on one ZMQ
//! implementation. [`ZmqTransport`] uses the pure-Rust `zeromq` crate.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use zeromq::{Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

/// A transport failure (connect, send or receive).
#[derive(Debug, Clone, thiserror::Error)]
#[error("kernel transport: {0}")]
pub struct TransportError(pub String);

impl From<zeromq::ZmqError> for TransportError {
    fn from(e: zeromq::ZmqError) -> Self {
        TransportError(e.to_string())
    }
}

/// Sends multipart messages on one channel.
#[async_trait]
pub trait FrameSender: Send {
    /// Send one multipart message.
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportError>;
}

/// Receives multipart messages from one channel.
#[async_trait]
pub trait FrameReceiver: Send {
    /// Receive the next multipart message.
    async fn recv(&mut self) -> Result<Vec<Bytes>, TransportError>;
}

/// Sends a heartbeat ping and waits for its echo.
#[async_trait]
pub trait HeartbeatProbe: Send {
    /// One ping; `Ok` once the kernel echoed it.
    async fn ping(&mut self) -> Result<(), TransportError>;
}

/// Opens the client side of a kernel's channels.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A DEALER-like duplex channel (shell, control, stdin) with a routing identity.
    async fn dealer(
        &self,
        endpoint: &str,
        identity: &[u8],
    ) -> Result<(Box<dyn FrameSender>, Box<dyn FrameReceiver>), TransportError>;
    /// A subscriber receiving every topic (iopub).
    async fn subscriber(&self, endpoint: &str) -> Result<Box<dyn FrameReceiver>, TransportError>;
    /// A client of the heartbeat channel (which echoes what it receives).
    async fn heartbeat(&self, endpoint: &str) -> Result<Box<dyn HeartbeatProbe>, TransportError>;
}

/// The `zeromq` (zmq.rs) implementation.
#[derive(Debug, Clone)]
pub struct ZmqTransport {
    /// How long a connect may keep retrying while the kernel has not bound its sockets yet.
    pub connect_timeout: Duration,
}

impl Default for ZmqTransport {
    fn default() -> Self {
        ZmqTransport {
            connect_timeout: Duration::from_secs(60),
        }
    }
}

fn to_zmq(frames: Vec<Bytes>) -> Result<ZmqMessage, TransportError> {
    ZmqMessage::try_from(frames).map_err(|_| TransportError("empty message".into()))
}

struct DealerTx(zeromq::DealerSendHalf);
struct DealerRx(zeromq::DealerRecvHalf);
struct SubRx(zeromq::SubSocket);

/// The heartbeat client: a DEALER that frames its pings as a REQ would (empty delimiter,
/// then the payload), which both ROUTER echo devices (ipykernel) and REP sockets answer. A
/// REQ socket keeps its peer's read and write buffers in its peer table, about 16 KiB per
/// kernel against 9 KiB for a DEALER, and cannot send again after a lost reply; numbered
/// pings let a late echo be told apart instead.
struct Heartbeat {
    socket: zeromq::DealerSocket,
    pings: u64,
}

#[async_trait]
impl FrameSender for DealerTx {
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportError> {
        Ok(self.0.send(to_zmq(frames)?).await?)
    }
}

#[async_trait]
impl FrameReceiver for DealerRx {
    async fn recv(&mut self) -> Result<Vec<Bytes>, TransportError> {
        Ok(self.0.recv().await?.into_vec())
    }
}

#[async_trait]
impl FrameReceiver for SubRx {
    async fn recv(&mut self) -> Result<Vec<Bytes>, TransportError> {
        Ok(self.0.recv().await?.into_vec())
    }
}

#[async_trait]
impl HeartbeatProbe for Heartbeat {
    async fn ping(&mut self) -> Result<(), TransportError> {
        self.pings += 1;
        let payload = Bytes::from(format!("ping {}", self.pings));
        let mut message = ZmqMessage::from(payload.clone());
        message.push_front(Bytes::new());
        self.socket.send(message).await?;
        loop {
            let echo = self.socket.recv().await?;
            // Anything else is the echo of a ping that was given up on.
            if echo.iter().last() == Some(&payload) {
                return Ok(());
            }
        }
    }
}

impl ZmqTransport {
    fn options(&self) -> SocketOptions {
        let mut options = SocketOptions::default();
        options.connect_timeout(self.connect_timeout);
        options
    }
}

#[async_trait]
impl Transport for ZmqTransport {
    async fn dealer(
        &self,
        endpoint: &str,
        identity: &[u8],
    ) -> Result<(Box<dyn FrameSender>, Box<dyn FrameReceiver>), TransportError> {
        let mut options = self.options();
        let identity = zeromq::util::PeerIdentity::try_from(identity.to_vec())?;
        options.peer_identity(identity);
        let mut socket = zeromq::DealerSocket::with_options(options);
        socket.connect(endpoint).await?;
        let (tx, rx) = socket.split();
        Ok((Box::new(DealerTx(tx)), Box::new(DealerRx(rx))))
    }

    async fn subscriber(&self, endpoint: &str) -> Result<Box<dyn FrameReceiver>, TransportError> {
        let mut socket = zeromq::SubSocket::with_options(self.options());
        socket.connect(endpoint).await?;
        socket.subscribe("").await?;
        Ok(Box::new(SubRx(socket)))
    }

    async fn heartbeat(&self, endpoint: &str) -> Result<Box<dyn HeartbeatProbe>, TransportError> {
        let mut socket = zeromq::DealerSocket::with_options(self.options());
        socket.connect(endpoint).await?;
        Ok(Box::new(Heartbeat { socket, pings: 0 }))
    }
}
