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
    /// A request socket for the heartbeat.
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
struct Req(zeromq::ReqSocket);

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
impl HeartbeatProbe for Req {
    async fn ping(&mut self) -> Result<(), TransportError> {
        self.0.send(ZmqMessage::from("ping")).await?;
        self.0.recv().await?;
        Ok(())
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
        let mut socket = zeromq::ReqSocket::with_options(self.options());
        socket.connect(endpoint).await?;
        Ok(Box::new(Req(socket)))
    }
}
