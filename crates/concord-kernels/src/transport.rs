//! The kernel transport behind a small trait, so that the bridge does not depend on one ZMQ
//! implementation. [`ZmtpTransport`] is our own client of ZMTP 3 (see [`crate::zmtp`]) over
//! Unix sockets (`ipc://`) and TCP (`tcp://`): the few socket kinds a Jupyter client needs
//! (DEALER, SUB), each a single connection to the kernel.
//!
//! Why not a general ZMQ library: a kernel round trip is a handful of small messages, and
//! what costs is waking threads, not bytes. Each connection here is registered with the
//! runtime for reading only (a Unix socket registered for writing too signals "writable"
//! every time the kernel consumes a message, waking an idle server for nothing); a send is
//! written by the task that sends, not handed to a writer task; and a receive reads the
//! socket directly, without a fair queue over peers that a single connection does not have.
//! Write interest is taken only while a write is blocked (the kernel is not reading).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::zmtp::{self, Decoded, Decoder, SocketType};

/// A transport failure (connect, send or receive).
#[derive(Debug, Clone, thiserror::Error)]
#[error("kernel transport: {0}")]
pub struct TransportError(pub String);

impl From<io::Error> for TransportError {
    fn from(e: io::Error) -> Self {
        TransportError(e.to_string())
    }
}

impl From<zmtp::ZmtpError> for TransportError {
    fn from(e: zmtp::ZmtpError) -> Self {
        TransportError(e.to_string())
    }
}

/// Sends multipart messages on one channel.
#[async_trait]
pub trait FrameSender: Send {
    /// Send one multipart message. Not cancel-safe: a send dropped half-way leaves part of
    /// a message on the stream, and the channel must then be dropped.
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportError>;
}

/// Receives multipart messages from one channel.
#[async_trait]
pub trait FrameReceiver: Send {
    /// Receive the next multipart message. Cancel-safe: a receive dropped while waiting
    /// loses nothing.
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

/// Our ZMTP 3 client (NULL mechanism) over Unix sockets and TCP.
#[derive(Debug, Clone)]
pub struct ZmtpTransport {
    /// How long a connect may keep retrying while the kernel has not bound its sockets yet.
    pub connect_timeout: Duration,
}

impl Default for ZmtpTransport {
    fn default() -> Self {
        ZmtpTransport {
            connect_timeout: Duration::from_secs(60),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
enum Stream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write_vectored(bufs),
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

/// Connect to `endpoint` (`ipc://path` or `tcp://host:port`), retrying while nothing listens
/// there yet (a kernel binds its sockets a moment after it starts) until `timeout`.
async fn connect(endpoint: &str, timeout: Duration) -> Result<Stream, TransportError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt = if let Some(path) = endpoint.strip_prefix("ipc://") {
            tokio::net::UnixStream::connect(path)
                .await
                .and_then(|s| s.into_std())
                .map(Stream::Unix)
        } else if let Some(address) = endpoint.strip_prefix("tcp://") {
            let address = address.replace(['[', ']'], "");
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(TransportError(format!("bad endpoint {endpoint}")));
            };
            let port: u16 = port
                .parse()
                .map_err(|_| TransportError(format!("bad port in {endpoint}")))?;
            tokio::net::TcpStream::connect((host, port))
                .await
                .and_then(|s| {
                    s.set_nodelay(true)?;
                    s.into_std()
                })
                .map(Stream::Tcp)
        } else {
            return Err(TransportError(format!(
                "unsupported endpoint {endpoint} (ipc:// or tcp://)"
            )));
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            // Nothing bound yet, not listening yet, or (a Unix socket) its backlog is full.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::WouldBlock
                ) && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(TransportError(format!("connecting to {endpoint}: {e}"))),
        }
    }
}

/// Register `stream` with the runtime's reactor for `interest` only.
fn register(stream: Stream, interest: Interest) -> io::Result<AsyncFd<Stream>> {
    // SAFETY: a `Stream` owns its descriptor (a std socket, never replaced), so the
    // descriptor stays open and the same for as long as the `AsyncFd` owns the stream.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(|e| e.into_parts().1)
}

/// One ZMTP connection: the stream registered for reading only.
struct Connection {
    stream: AsyncFd<Stream>,
    /// Held while a message or command is written, so that a PONG sent by the reading side
    /// never lands inside a message.
    writing: tokio::sync::Mutex<()>,
}

/// Smallest read: most kernel messages fit, and a connection's buffer stays small.
const READ_CHUNK: usize = 8 * 1024;
/// Largest read: big frames arrive in reads of this size.
const READ_MAX: usize = 1024 * 1024;

impl Connection {
    fn new(stream: Stream) -> io::Result<Self> {
        Ok(Connection {
            stream: register(stream, Interest::READABLE)?,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Write every byte of `bufs` (one message or command), waiting for room when the peer
    /// is not reading.
    async fn write_all(&self, mut bufs: &mut [IoSlice<'_>]) -> Result<(), TransportError> {
        let _writing = self.writing.lock().await;
        // Registered only for as long as a write is blocked: see the module's doc.
        let mut waiting: Option<AsyncFd<Stream>> = None;
        while !bufs.is_empty() {
            let written = match &waiting {
                None => match self.stream.get_ref().write_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let dup = self.stream.get_ref().try_clone()?;
                        waiting = Some(register(dup, Interest::WRITABLE)?);
                        continue;
                    }
                    other => other,
                },
                Some(dup) => {
                    let mut ready = dup.writable().await?;
                    match ready.try_io(|s| s.get_ref().write_vectored(bufs)) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
            };
            match written {
                Ok(0) => return Err(TransportError("the kernel closed the connection".into())),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Read what is available into `buf` (at least `want` bytes of room); `Ok(0)` at the end.
    /// Cancel-safe: `buf` only grows by what was read, and no await lies between the read
    /// and the bookkeeping.
    async fn read_some(&self, buf: &mut BytesMut, want: usize) -> Result<usize, TransportError> {
        let room = want.clamp(READ_CHUNK, READ_MAX);
        loop {
            let mut ready = self.stream.readable().await?;
            let start = buf.len();
            buf.resize(start + room, 0);
            let result = ready.try_io(|s| s.get_ref().read(&mut buf[start..]));
            let n = match &result {
                Ok(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(start + n);
            match result {
                Ok(Ok(n)) => {
                    // A short read emptied the socket: the next read waits for the next
                    // event instead of first failing with WouldBlock. (Cleared only if no
                    // event came since this readiness was reported.)
                    if n > 0 && n < room {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_would_block) => {}
            }
        }
    }
}

/// The reading side of a connection: bytes read and the decoder's state.
struct Reader {
    connection: Arc<Connection>,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    /// The next greeting, command or message.
    async fn next(&mut self) -> Result<Decoded, TransportError> {
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf)? {
                if self.buf.is_empty() {
                    // Nothing pending (the usual case between messages): an idle channel
                    // keeps no buffer.
                    self.buf = BytesMut::new();
                } else if self.buf.capacity() > 2 * READ_MAX && self.buf.len() <= READ_MAX {
                    // After a large frame the allocation is large: do not keep it (nor let
                    // what is left in it pin the messages sliced from it).
                    self.buf = BytesMut::from(&self.buf[..]);
                }
                return Ok(item);
            }
            let want = self.decoder.wanted(&self.buf);
            if self.connection.read_some(&mut self.buf, want).await? == 0 {
                return Err(TransportError("the kernel closed the connection".into()));
            }
        }
    }

    /// The next message. Commands after the handshake are answered (PING) or skipped;
    /// messages above the size limits are dropped with a warning.
    async fn message(&mut self) -> Result<Vec<Bytes>, TransportError> {
        loop {
            match self.next().await? {
                Decoded::Message(frames) => return Ok(frames),
                Decoded::Command { name, body } if &name[..] == b"ERROR" => {
                    return Err(zmtp::ZmtpError::Refused(zmtp::error_reason(&body)).into());
                }
                Decoded::Command { name, body } if &name[..] == b"PING" => {
                    // Written by a task of its own: a receive stays cancel-safe, and the
                    // PONG waits for a message being written to be finished.
                    let connection = self.connection.clone();
                    let pong = zmtp::encode_pong(&body);
                    tokio::spawn(async move {
                        let _ = connection.write_all(&mut [IoSlice::new(&pong)]).await;
                    });
                }
                Decoded::Dropped { bytes, frames } => {
                    tracing::warn!(
                        bytes,
                        frames,
                        "dropped a kernel message above the limits ({} MiB, {} frames)",
                        zmtp::MAX_MESSAGE >> 20,
                        zmtp::MAX_FRAMES
                    );
                }
                _ => {}
            }
        }
    }
}

/// Connect and handshake: greetings, then READY both ways. Returns the connection and its
/// reader, positioned after the peer's READY.
async fn open(
    endpoint: &str,
    timeout: Duration,
    socket_type: SocketType,
    identity: Option<&[u8]>,
) -> Result<(Arc<Connection>, Reader), TransportError> {
    let connection = Arc::new(Connection::new(connect(endpoint, timeout).await?)?);
    let hello = [
        &zmtp::greeting()[..],
        &zmtp::encode_ready(socket_type, identity),
    ]
    .concat();
    connection.write_all(&mut [IoSlice::new(&hello)]).await?;
    let mut reader = Reader {
        connection: connection.clone(),
        buf: BytesMut::new(),
        decoder: Decoder::new(),
    };
    let handshake = async {
        loop {
            let item = reader.next().await.map_err(|e| {
                // libzmq closes without a word on a socket kind it does not talk to.
                TransportError(format!(
                    "{endpoint} ended the ZMTP handshake ({}): is it a socket a {} can talk to?",
                    e.0,
                    socket_type.name()
                ))
            })?;
            match item {
                Decoded::Greeting => {}
                Decoded::Command { name, body } if &name[..] == b"READY" => {
                    let peer = zmtp::ready_property(&body, "Socket-Type")?.unwrap_or_default();
                    if !socket_type.accepts(&peer) {
                        return Err(zmtp::ZmtpError::IncompatibleSocket {
                            ours: socket_type.name(),
                            peer: String::from_utf8_lossy(&peer).into_owned(),
                        }
                        .into());
                    }
                    return Ok(());
                }
                Decoded::Command { name, body } if &name[..] == b"ERROR" => {
                    return Err(zmtp::ZmtpError::Refused(zmtp::error_reason(&body)).into());
                }
                Decoded::Command { name, .. } => {
                    return Err(TransportError(format!(
                        "{endpoint}: unexpected {} command before READY",
                        String::from_utf8_lossy(&name)
                    )));
                }
                Decoded::Message(_) | Decoded::Dropped { .. } => {
                    return Err(TransportError(format!(
                        "{endpoint}: a message before the handshake"
                    )));
                }
            }
        }
    };
    // A peer that accepts the connection but never answers must not hold a start forever.
    match tokio::time::timeout(timeout, handshake).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(TransportError(format!(
                "{endpoint}: no ZMTP handshake within {timeout:?}"
            )))
        }
    }
    Ok((connection, reader))
}

/// Write one multipart message: each frame's head, then its bytes, in as few writes as the
/// stream takes.
async fn send_frames(connection: &Connection, frames: &[Bytes]) -> Result<(), TransportError> {
    if frames.is_empty() {
        return Err(TransportError("empty message".into()));
    }
    let heads = zmtp::encode_heads(frames);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 2);
    for (head, frame) in heads.iter().zip(frames) {
        slices.push(IoSlice::new(head.as_slice()));
        if !frame.is_empty() {
            slices.push(IoSlice::new(frame));
        }
    }
    connection.write_all(&mut slices).await
}

struct DealerTx(Arc<Connection>);
struct DealerRx(Reader);
struct SubRx(Reader);

/// The heartbeat client: a DEALER that frames its pings as a REQ would (empty delimiter,
/// then the payload), which both ROUTER echo devices (ipykernel) and REP sockets answer. A
/// REQ cannot send again after a lost reply; numbered pings let a late echo be told apart.
struct Heartbeat {
    connection: Arc<Connection>,
    reader: Reader,
    pings: u64,
}

#[async_trait]
impl FrameSender for DealerTx {
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportError> {
        send_frames(&self.0, &frames).await
    }
}

#[async_trait]
impl FrameReceiver for DealerRx {
    async fn recv(&mut self) -> Result<Vec<Bytes>, TransportError> {
        self.0.message().await
    }
}

#[async_trait]
impl FrameReceiver for SubRx {
    async fn recv(&mut self) -> Result<Vec<Bytes>, TransportError> {
        self.0.message().await
    }
}

#[async_trait]
impl HeartbeatProbe for Heartbeat {
    async fn ping(&mut self) -> Result<(), TransportError> {
        self.pings += 1;
        let payload = Bytes::from(format!("ping {}", self.pings));
        send_frames(&self.connection, &[Bytes::new(), payload.clone()]).await?;
        loop {
            let echo = self.reader.message().await?;
            // Anything else is the echo of a ping that was given up on.
            if echo.last() == Some(&payload) {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl Transport for ZmtpTransport {
    async fn dealer(
        &self,
        endpoint: &str,
        identity: &[u8],
    ) -> Result<(Box<dyn FrameSender>, Box<dyn FrameReceiver>), TransportError> {
        // ZMTP identities are 1 to 255 bytes and may not start with a zero byte (libzmq keeps
        // those for the ids it makes up).
        if identity.is_empty() || identity.len() > 255 || identity[0] == 0 {
            return Err(TransportError("invalid socket identity".into()));
        }
        let (connection, reader) = open(
            endpoint,
            self.connect_timeout,
            SocketType::Dealer,
            Some(identity),
        )
        .await?;
        Ok((Box::new(DealerTx(connection)), Box::new(DealerRx(reader))))
    }

    async fn subscriber(&self, endpoint: &str) -> Result<Box<dyn FrameReceiver>, TransportError> {
        let (connection, reader) =
            open(endpoint, self.connect_timeout, SocketType::Sub, None).await?;
        // Subscribe to every topic, in ZMTP 3.0's form: a message of 1 then the prefix.
        send_frames(&connection, &[Bytes::from_static(&[1])]).await?;
        Ok(Box::new(SubRx(reader)))
    }

    async fn heartbeat(&self, endpoint: &str) -> Result<Box<dyn HeartbeatProbe>, TransportError> {
        let (connection, reader) =
            open(endpoint, self.connect_timeout, SocketType::Dealer, None).await?;
        Ok(Box::new(Heartbeat {
            connection,
            reader,
            pings: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};

    fn quick() -> ZmtpTransport {
        ZmtpTransport {
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// A command frame `name` with `properties`, as a peer would send it.
    fn command(name: &str, properties: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        for (k, v) in properties {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        let mut out = vec![0x04, body.len() as u8];
        out.extend(body);
        out
    }

    fn listener() -> (tempfile::TempDir, UnixListener, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer");
        let l = UnixListener::bind(&path).unwrap();
        (dir, l, format!("ipc://{}", path.display()))
    }

    /// Accept one connection and complete the handshake as a ROUTER; returns the stream
    /// positioned after our greeting and READY.
    async fn accept_as_router(l: &UnixListener) -> UnixStream {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&zmtp::greeting()).await.unwrap();
        s.write_all(&command("READY", &[("Socket-Type", b"ROUTER")]))
            .await
            .unwrap();
        let mut theirs = [0u8; zmtp::GREETING_LEN];
        s.read_exact(&mut theirs).await.unwrap();
        zmtp::check_greeting(&theirs).unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        let mut ready = vec![0u8; usize::from(head[1])];
        s.read_exact(&mut ready).await.unwrap();
        assert_eq!(&ready[..6], b"\x05READY");
        s
    }

    /// A DEALER connected to a hand-driven ROUTER peer: (its directory, our halves, the
    /// peer's end of the stream).
    async fn dealer_to_a_router() -> (
        tempfile::TempDir,
        Box<dyn FrameSender>,
        Box<dyn FrameReceiver>,
        UnixStream,
    ) {
        let (dir, l, endpoint) = listener();
        let peer = tokio::spawn(async move { accept_as_router(&l).await });
        let (tx, rx) = quick().dealer(&endpoint, b"me").await.unwrap();
        (dir, tx, rx, peer.await.unwrap())
    }

    #[tokio::test]
    async fn a_send_waits_while_the_kernel_does_not_read_then_completes() {
        let (_dir, mut tx, _rx, mut s) = dealer_to_a_router().await;
        // Far more than a socket buffer holds: the write must wait for the reader.
        let big = Bytes::from((0..16u32 << 20).map(|i| i as u8).collect::<Vec<u8>>());
        let sending = tokio::spawn({
            let big = big.clone();
            async move { tx.send(vec![Bytes::from_static(b"head"), big]).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !sending.is_finished(),
            "16 MiB cannot have been written yet"
        );
        let mut got = vec![0u8; 2 + 4 + 9 + big.len()];
        s.read_exact(&mut got).await.unwrap();
        sending.await.unwrap().unwrap();
        assert_eq!(&got[..6], b"\x01\x04head");
        assert_eq!(got[6], 0x02, "the last frame, long form");
        assert_eq!(&got[7..15], &(big.len() as u64).to_be_bytes());
        assert!(got[15..] == big[..], "the bytes arrive intact");
    }

    #[tokio::test]
    async fn a_send_waiting_for_a_kernel_that_dies_fails_instead_of_hanging() {
        let (_dir, mut tx, _rx, s) = dealer_to_a_router().await;
        let big = Bytes::from(vec![1u8; 16 << 20]);
        let sending = tokio::spawn(async move { tx.send(vec![big]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
        let result = tokio::time::timeout(Duration::from_secs(10), sending)
            .await
            .expect("the send ends")
            .unwrap();
        assert!(result.is_err(), "a send to a closed peer cannot succeed");
    }

    #[tokio::test]
    async fn handshake_failures_are_clear_errors() {
        async fn failure(answer: Vec<u8>) -> String {
            let (_dir, l, endpoint) = listener();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                s.write_all(&answer).await.unwrap();
                // Hold the connection open: the client must not wait forever either.
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
            match quick().dealer(&endpoint, b"me").await {
                Ok(_) => panic!("connected"),
                Err(e) => e.to_string(),
            }
        }
        // An ERROR command: its name, then a one-byte length and the reason.
        let refused = [
            &zmtp::greeting()[..],
            &[0x04, 19],
            b"\x05ERROR\x0cno thank you",
        ]
        .concat();
        let e = failure(refused).await;
        assert!(e.contains("refused") && e.contains("no thank you"), "{e}");
        let e = failure(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()).await;
        assert!(e.contains("does not speak ZMTP 3"), "{e}");
        let wrong = [
            &zmtp::greeting()[..],
            &command("READY", &[("Socket-Type", b"PUB")]),
        ]
        .concat();
        let e = failure(wrong).await;
        assert!(e.contains("PUB socket"), "{e}");
        let e = failure(Vec::new()).await;
        assert!(e.contains("no ZMTP handshake within"), "{e}");
    }

    #[tokio::test]
    async fn connecting_retries_until_the_kernel_binds_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late");
        let endpoint = format!("ipc://{}", path.display());
        let binder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let l = UnixListener::bind(&path).unwrap();
            accept_as_router(&l).await
        });
        quick().dealer(&endpoint, b"me").await.unwrap();
        binder.await.unwrap();
        let nowhere = format!("ipc://{}", dir.path().join("never").display());
        let e = match quick().dealer(&nowhere, b"me").await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("never"), "{e}");
        assert!(quick().dealer("inproc://x", b"me").await.is_err());
        assert!(quick().dealer("tcp://127.0.0.1", b"me").await.is_err());
        assert!(
            quick().dealer(&nowhere, b"").await.is_err(),
            "empty identity"
        );
    }

    #[tokio::test]
    async fn a_receive_given_up_on_loses_nothing() {
        let (_dir, _tx, mut rx, mut s) = dealer_to_a_router().await;
        for round in 0..3u8 {
            // Waiting with nothing to read, then dropped (as a timeout drops it).
            let waited = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await;
            assert!(waited.is_err(), "nothing was sent yet");
            s.write_all(&[0x00, 0x01, round]).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, vec![Bytes::copy_from_slice(&[round])]);
        }
    }

    #[tokio::test]
    async fn connecting_retries_while_the_kernels_backlog_is_full() {
        let (_dir, l, endpoint) = listener();
        let path = endpoint.trim_start_matches("ipc://").to_string();
        // Connections nobody accepts, until the listener's backlog refuses more.
        let mut fillers = Vec::new();
        loop {
            match UnixStream::connect(&path).await {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(fillers.len() < 100_000, "the backlog never filled");
        }
        // The kernel catches up a moment later: every pending connection is accepted, and
        // ours (the one that speaks) completes its handshake.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    s.write_all(&zmtp::greeting()).await?;
                    s.write_all(&command("READY", &[("Socket-Type", b"ROUTER")]))
                        .await?;
                    let mut rest = [0u8; 256];
                    while s.read(&mut rest).await? > 0 {}
                    Ok::<_, io::Error>(())
                });
            }
        });
        quick().dealer(&endpoint, b"me").await.unwrap();
        drop(fillers);
    }

    #[tokio::test]
    async fn a_kernel_that_dies_mid_message_ends_the_receive() {
        let (_dir, _tx, mut rx, mut s) = dealer_to_a_router().await;
        // One frame with MORE, then half of a second frame, then the process is gone.
        s.write_all(b"\x01\x03abc\x00\x10half").await.unwrap();
        drop(s);
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the receive ends")
            .unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
    }
}
