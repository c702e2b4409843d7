//! The client side of ZMTP 3.0 (ZeroMQ's wire protocol, RFC 23/ZMTP) with the NULL security
//! mechanism: what a Jupyter client needs to talk to a kernel's ROUTER, PUB/XPUB and
//! heartbeat sockets. Pure byte handling, no I/O: [`Decoder`] turns bytes read from a stream
//! into multipart messages and commands; the `encode_*` functions build what is written.
//!
//! A connection starts with a 64-byte greeting from each side, then each side sends a READY
//! command with its properties (`Socket-Type`, and for a DEALER its `Identity`), then
//! messages flow as frames: a flags byte (MORE, LONG, COMMAND), a size (one byte, or eight
//! big-endian when LONG), the body. We announce version 3.0, so a subscription is the 3.0
//! form (a message whose first byte is 1), which libzmq's XPUB and PUB accept from any 3.x
//! peer, and the peer sends no heartbeat commands.
//!
//! Not supported, on purpose (a kernel on the same machine needs none of it): the CURVE and
//! PLAIN mechanisms, reconnecting (a broken connection ends the channel; see
//! `transport.rs`), more than one peer per socket, and ZMTP 3.1 beyond answering a PING.

use bytes::{Buf, Bytes, BytesMut};

/// Length of a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;

/// Largest frame size taken as a size at all: beyond it the stream is corrupt.
pub const MAX_FRAME: u64 = 1 << 40;

/// Largest message (the sum of its frames) kept. A larger one is read and dropped as it
/// arrives, never held: one kernel's output must not exhaust the memory of a server that
/// others share. Far above what a front end can display.
pub const MAX_MESSAGE: u64 = 256 << 20;

/// Largest command accepted (READY with its properties, ERROR, PING): a larger one is a
/// corrupt stream.
pub const MAX_COMMAND: u64 = 64 * 1024;

/// Most frames in one message (a Jupyter message is its identities, six frames and its
/// buffers); a message with more is dropped like an oversized one.
pub const MAX_FRAMES: usize = 65_536;

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;

/// A protocol violation by the peer (or a peer that is not a ZMTP 3 NULL socket).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZmtpError {
    /// The first bytes are not a ZMTP 3 greeting.
    #[error("the peer does not speak ZMTP 3 (bad greeting)")]
    BadGreeting,
    /// The peer speaks an older major version.
    #[error("the peer speaks ZMTP {0}.x; 3.0 or later is needed")]
    OldVersion(u8),
    /// The peer wants a security mechanism other than NULL.
    #[error("the peer uses the {0} security mechanism; only NULL is supported")]
    Mechanism(String),
    /// A frame's flags or size are impossible.
    #[error("malformed frame: {0}")]
    BadFrame(String),
    /// A command's body could not be parsed.
    #[error("malformed {0} command")]
    BadCommand(String),
    /// The peer refused the handshake (an ERROR command).
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    /// The peer's socket type cannot talk to ours.
    #[error("the peer is a {peer} socket, which a {ours} cannot talk to")]
    IncompatibleSocket {
        /// Our socket type.
        ours: &'static str,
        /// What the peer announced.
        peer: String,
    },
}

/// The socket types this client can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    /// Shell, control, stdin and the heartbeat.
    Dealer,
    /// IOPub.
    Sub,
}

impl SocketType {
    /// The name used in the READY command.
    pub fn name(self) -> &'static str {
        match self {
            SocketType::Dealer => "DEALER",
            SocketType::Sub => "SUB",
        }
    }

    /// Whether a peer announcing `peer` is a valid match (ZMTP's socket compatibility table).
    pub fn accepts(self, peer: &[u8]) -> bool {
        match self {
            SocketType::Dealer => matches!(peer, b"ROUTER" | b"DEALER" | b"REP"),
            SocketType::Sub => matches!(peer, b"PUB" | b"XPUB"),
        }
    }
}

/// Our greeting: signature, version 3.0, the NULL mechanism, as a client.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Check the peer's greeting.
pub fn check_greeting(g: &[u8]) -> Result<(), ZmtpError> {
    if g.len() < GREETING_LEN || g[0] != 0xff || g[9] & 0x01 != 0x01 {
        return Err(ZmtpError::BadGreeting);
    }
    if g[10] < 3 {
        return Err(ZmtpError::OldVersion(g[10]));
    }
    let mechanism = &g[12..32];
    let name_len = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    if &mechanism[..name_len] != b"NULL" {
        return Err(ZmtpError::Mechanism(
            String::from_utf8_lossy(&mechanism[..name_len]).into_owned(),
        ));
    }
    Ok(())
}

/// Append the flags and size of one frame of `len` bytes.
fn frame_head(flags: u8, len: usize, out: &mut Vec<u8>) {
    if len <= 255 {
        out.push(flags);
        out.push(len as u8);
    } else {
        out.push(flags | FLAG_LONG);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// The READY command (a whole frame) for our socket type and, for a DEALER, its identity.
pub fn encode_ready(socket_type: SocketType, identity: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.push(5);
    body.extend_from_slice(b"READY");
    let mut property = |name: &str, value: &[u8]| {
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    };
    property("Socket-Type", socket_type.name().as_bytes());
    if let Some(id) = identity {
        property("Identity", id);
    }
    let mut out = Vec::with_capacity(body.len() + 9);
    frame_head(FLAG_COMMAND, body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The PONG command answering a PING whose body (after its name) is `ping`: a two-byte
/// TTL, then up to 16 bytes of context that the PONG echoes.
pub fn encode_pong(ping: &[u8]) -> Vec<u8> {
    let context = ping.get(2..).unwrap_or_default();
    let context = &context[..context.len().min(16)];
    let mut out = vec![FLAG_COMMAND, (5 + context.len()) as u8, 4];
    out.extend_from_slice(b"PONG");
    out.extend_from_slice(context);
    out
}

/// The flags and size of one frame, written before its body.
#[derive(Debug, Clone, Copy)]
pub struct FrameHead {
    bytes: [u8; 9],
    len: u8,
}

impl FrameHead {
    /// The head's bytes (2 or 9).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The heads of the frames of one multipart message, one per frame.
pub fn encode_heads(frames: &[Bytes]) -> Vec<FrameHead> {
    let last = frames.len().saturating_sub(1);
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let flags = if i < last { FLAG_MORE } else { 0 };
            let mut head = FrameHead {
                bytes: [0; 9],
                len: 2,
            };
            if f.len() <= 255 {
                head.bytes[0] = flags;
                head.bytes[1] = f.len() as u8;
            } else {
                head.bytes[0] = flags | FLAG_LONG;
                head.bytes[1..].copy_from_slice(&(f.len() as u64).to_be_bytes());
                head.len = 9;
            }
            head
        })
        .collect()
}

/// One multipart message as contiguous bytes (for small messages: the subscription, pings).
pub fn encode_message(frames: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for (head, frame) in encode_heads(frames).iter().zip(frames) {
        out.extend_from_slice(head.as_slice());
        out.extend_from_slice(frame);
    }
    out
}

/// What the decoder found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The peer's greeting was read and is acceptable.
    Greeting,
    /// A command: its name and the rest of its body.
    Command {
        /// The command's name (`READY`, `ERROR`, `PING`…).
        name: Bytes,
        /// What follows the name.
        body: Bytes,
    },
    /// A complete multipart message.
    Message(Vec<Bytes>),
    /// A message above [`MAX_MESSAGE`] or [`MAX_FRAMES`] was read and dropped.
    Dropped {
        /// Its size as far as it was counted (at least the limit it went over).
        bytes: u64,
        /// Its frames.
        frames: usize,
    },
}

/// Messages up to this size are copied out of the read buffer into their own allocation;
/// a slice of it would keep the whole read buffer alive for as long as the message is
/// queued or kept for replay.
const COPY_BELOW: usize = 64 * 1024;

/// Turns the bytes of one connection into greeting, commands and messages.
///
/// The frames of the message being assembled stay in the buffer until its last frame has
/// arrived; the decoder remembers how far it has checked them, so each byte is scanned once
/// however many reads a message takes. A command may arrive between two frames of a message
/// (libzmq sends its heartbeat PING whenever its timer fires): it is taken out and returned
/// on its own.
#[derive(Debug, Default)]
pub struct Decoder {
    greeted: bool,
    /// Bytes at the front of the buffer that are complete frames of the current message.
    scanned: usize,
    /// Those frames, and the sum of their sizes.
    frames: usize,
    body: u64,
    /// Set while the current message is being dropped (over a limit).
    dropping: Option<Dropping>,
}

#[derive(Debug)]
struct Dropping {
    bytes: u64,
    frames: usize,
    /// Bytes of the current frame still to be skipped.
    rest_of_frame: u64,
    /// Whether the current frame is the message's last.
    last: bool,
}

impl Decoder {
    /// A decoder at the start of a connection (expecting the peer's greeting).
    pub fn new() -> Self {
        Decoder::default()
    }

    /// How many more bytes the next item needs at least, beyond what `buf` holds; a hint
    /// for sizing the next read.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        if !self.greeted {
            return GREETING_LEN.saturating_sub(buf.len());
        }
        if let Some(d) = &self.dropping {
            return usize::try_from(d.rest_of_frame).unwrap_or(usize::MAX);
        }
        let at = self.scanned.min(buf.len());
        match frame_size(&buf[at..]) {
            Ok(Some((head, size))) => {
                let end = at as u64 + head as u64 + size;
                usize::try_from(end.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX)
            }
            _ => 0,
        }
    }

    /// The next item in `buf`, consuming its bytes; `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ZmtpError> {
        if !self.greeted {
            if buf.len() < GREETING_LEN {
                // Fail early on a peer that is clearly not ZMTP (its first byte).
                if buf.first().is_some_and(|&b| b != 0xff) {
                    return Err(ZmtpError::BadGreeting);
                }
                return Ok(None);
            }
            check_greeting(&buf[..GREETING_LEN])?;
            buf.advance(GREETING_LEN);
            self.greeted = true;
            return Ok(Some(Decoded::Greeting));
        }
        loop {
            if self.dropping.is_some() {
                match self.drop_some(buf)? {
                    Some(item) => return Ok(Some(item)),
                    None if self.dropping.is_some() => return Ok(None),
                    None => continue,
                }
            }
            let at = self.scanned;
            let Some((head, size)) = frame_size(&buf[at..])? else {
                return Ok(None);
            };
            let flags = buf[at];
            let end = at as u64 + head as u64 + size;
            if flags & FLAG_COMMAND != 0 {
                if (buf.len() as u64) < end {
                    return Ok(None);
                }
                return take_command(buf, at, head, end as usize).map(Some);
            }
            if self.frames >= MAX_FRAMES || self.body + size > MAX_MESSAGE {
                // Forget what was kept of it; the rest is skipped as it arrives.
                buf.advance(at);
                self.dropping = Some(Dropping {
                    bytes: self.body,
                    frames: self.frames,
                    rest_of_frame: 0,
                    last: false,
                });
                self.reset();
                continue;
            }
            if (buf.len() as u64) < end {
                return Ok(None);
            }
            self.scanned = end as usize;
            self.frames += 1;
            self.body += size;
            if flags & FLAG_MORE == 0 {
                let len = self.scanned;
                self.reset();
                return split_message(buf, len).map(Some);
            }
        }
    }

    fn reset(&mut self) {
        self.scanned = 0;
        self.frames = 0;
        self.body = 0;
    }

    /// Skip what has arrived of a message being dropped; `Dropped` once its last frame is
    /// gone, or a command that came between its frames.
    fn drop_some(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ZmtpError> {
        let Some(d) = self.dropping.as_mut() else {
            return Ok(None);
        };
        loop {
            if d.rest_of_frame > 0 {
                let n = d.rest_of_frame.min(buf.len() as u64);
                buf.advance(n as usize);
                d.rest_of_frame -= n;
                d.bytes += n;
                if d.rest_of_frame > 0 {
                    return Ok(None);
                }
            }
            if d.last {
                let (bytes, frames) = (d.bytes, d.frames);
                self.dropping = None;
                return Ok(Some(Decoded::Dropped { bytes, frames }));
            }
            let Some((head, size)) = frame_size(buf)? else {
                return Ok(None);
            };
            let flags = buf[0];
            if flags & FLAG_COMMAND != 0 {
                let end = head + size as usize;
                if buf.len() < end {
                    return Ok(None);
                }
                return take_command(buf, 0, head, end).map(Some);
            }
            buf.advance(head);
            d.frames += 1;
            d.rest_of_frame = size;
            d.last = flags & FLAG_MORE == 0;
        }
    }
}

/// Take the command frame at `at..end` (its head `head` bytes) out of `buf`.
fn take_command(
    buf: &mut BytesMut,
    at: usize,
    head: usize,
    end: usize,
) -> Result<Decoded, ZmtpError> {
    let body = if at == 0 {
        let mut frame = buf.split_to(end);
        frame.advance(head);
        frame.freeze()
    } else {
        // Between two frames of a message: keep the frames before and after it.
        let body = Bytes::copy_from_slice(&buf[at + head..end]);
        let mut rest = buf.split_off(at);
        rest.advance(end - at);
        buf.unsplit(rest);
        body
    };
    parse_command(body)
}

/// Split the complete message of `len` bytes (frames only) off the front of `buf`.
fn split_message(buf: &mut BytesMut, len: usize) -> Result<Decoded, ZmtpError> {
    let region = buf.split_to(len);
    let region = if len < COPY_BELOW {
        Bytes::copy_from_slice(&region)
    } else {
        region.freeze()
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while at < region.len() {
        let Some((head, size)) = frame_size(&region[at..])? else {
            return Err(ZmtpError::BadFrame("truncated".into()));
        };
        let start = at + head;
        at = start + size as usize;
        frames.push(region.slice(start..at));
    }
    Ok(Decoded::Message(frames))
}

/// The head length and body size of the frame starting `buf`, once its head is complete.
fn frame_size(buf: &[u8]) -> Result<Option<(usize, u64)>, ZmtpError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
        return Err(ZmtpError::BadFrame(format!(
            "reserved flag bits set ({flags:#04x})"
        )));
    }
    let command = flags & FLAG_COMMAND != 0;
    if command && flags & FLAG_MORE != 0 {
        return Err(ZmtpError::BadFrame("a command with the MORE flag".into()));
    }
    if flags & FLAG_LONG == 0 {
        return Ok(buf.get(1).map(|&n| (2, u64::from(n))));
    }
    let Some(size) = buf.get(1..9) else {
        return Ok(None);
    };
    let mut be = [0u8; 8];
    be.copy_from_slice(size);
    let size = u64::from_be_bytes(be);
    if size > MAX_FRAME || command && size > MAX_COMMAND {
        return Err(ZmtpError::BadFrame(format!("a frame of {size} bytes")));
    }
    Ok(Some((9, size)))
}

fn parse_command(mut body: Bytes) -> Result<Decoded, ZmtpError> {
    let Some(&len) = body.first() else {
        return Err(ZmtpError::BadCommand("empty".into()));
    };
    let len = usize::from(len);
    if body.len() < 1 + len {
        return Err(ZmtpError::BadCommand("truncated".into()));
    }
    body.advance(1);
    let name = body.split_to(len);
    Ok(Decoded::Command { name, body })
}

/// The value of `property` in a READY command's body (after its name).
pub fn ready_property(mut body: &[u8], property: &str) -> Result<Option<Bytes>, ZmtpError> {
    let bad = || ZmtpError::BadCommand("READY".into());
    while !body.is_empty() {
        let name_len = usize::from(body[0]);
        let name = body.get(1..1 + name_len).ok_or_else(bad)?;
        let len_at = 1 + name_len;
        let len = body.get(len_at..len_at + 4).ok_or_else(bad)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let value_at = len_at + 4;
        let end = value_at.checked_add(len).ok_or_else(bad)?;
        let value = body.get(value_at..end).ok_or_else(bad)?;
        // Property names are case-insensitive.
        if name.eq_ignore_ascii_case(property.as_bytes()) {
            return Ok(Some(Bytes::copy_from_slice(value)));
        }
        body = &body[end..];
    }
    Ok(None)
}

/// The reason in an ERROR command's body.
pub fn error_reason(body: &[u8]) -> String {
    match body.split_first() {
        Some((&len, rest)) => {
            String::from_utf8_lossy(&rest[..usize::from(len).min(rest.len())]).into_owned()
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_greeting(mechanism: &[u8], major: u8) -> Vec<u8> {
        let mut g = greeting().to_vec();
        g[10] = major;
        g[12..32].fill(0);
        g[12..12 + mechanism.len()].copy_from_slice(mechanism);
        g[32] = 1; // as-server
        g
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Decoded>, ZmtpError> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = d.decode(&mut buf)? {
            out.push(item);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    #[test]
    fn our_greeting_is_version_3_0_with_null() {
        let g = greeting();
        assert_eq!(g.len(), 64);
        assert_eq!((g[0], g[9], g[10], g[11]), (0xff, 0x7f, 3, 0));
        assert_eq!(&g[12..16], b"NULL");
        assert!(
            g[16..].iter().all(|&b| b == 0),
            "mechanism padding, as-server 0, filler"
        );
        check_greeting(&g).unwrap();
    }

    #[test]
    fn greetings_that_are_refused() {
        assert_eq!(
            check_greeting(&peer_greeting(b"CURVE", 3)),
            Err(ZmtpError::Mechanism("CURVE".into()))
        );
        assert_eq!(
            check_greeting(&peer_greeting(b"NULL", 2)),
            Err(ZmtpError::OldVersion(2))
        );
        let mut http = b"HTTP/1.1 400 Bad Request\r\n".to_vec();
        http.resize(64, b' ');
        assert_eq!(check_greeting(&http), Err(ZmtpError::BadGreeting));
        // A stream that is not ZMTP fails on its first byte, without waiting for 64.
        let mut d = Decoder::new();
        assert_eq!(
            d.decode(&mut BytesMut::from(&b"GET"[..])),
            Err(ZmtpError::BadGreeting)
        );
        // ZMTP 3.1 (libzmq 4.3) is fine.
        let mut v31 = peer_greeting(b"NULL", 3);
        v31[11] = 1;
        check_greeting(&v31).unwrap();
    }

    #[test]
    fn ready_carries_socket_type_and_identity() {
        let ready = encode_ready(SocketType::Dealer, Some(b"abc"));
        let items = decode_all(&[peer_greeting(b"NULL", 3), ready].concat()).unwrap();
        let Decoded::Command { name, body } = &items[1] else {
            panic!("{items:?}");
        };
        assert_eq!(&name[..], b"READY");
        assert_eq!(
            ready_property(body, "socket-type").unwrap().as_deref(),
            Some(&b"DEALER"[..])
        );
        assert_eq!(
            ready_property(body, "Identity").unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(ready_property(body, "Resource").unwrap(), None);
        let sub = encode_ready(SocketType::Sub, None);
        let items = decode_all(&[peer_greeting(b"NULL", 3), sub].concat()).unwrap();
        let Decoded::Command { body, .. } = &items[1] else {
            panic!("{items:?}");
        };
        assert_eq!(ready_property(body, "Identity").unwrap(), None);
        // A property whose length runs past the body is an error, not a panic.
        assert!(ready_property(b"\x0bSocket-Type\x00\x00\x00\x09ROUTER", "Socket-Type").is_err());
        assert!(ready_property(b"\x0bSock", "Socket-Type").is_err());
    }

    #[test]
    fn messages_round_trip_with_short_and_long_frames_split_anywhere() {
        let big = Bytes::from(vec![7u8; 70_000]);
        let frames = vec![
            Bytes::from_static(b"<IDS|MSG>"),
            Bytes::new(),
            Bytes::from(vec![1u8; 255]),
            Bytes::from(vec![2u8; 256]),
            big,
        ];
        let mut stream = peer_greeting(b"NULL", 3);
        stream.extend(encode_message(&frames));
        stream.extend(encode_message(&[Bytes::from_static(b"second")]));
        // Fed in pieces of every few sizes, the decoder yields the same items.
        for piece in [1, 2, 7, 64, 1000, stream.len()] {
            let (items, _) = decode_in_pieces(stream.chunks(piece).map(<[u8]>::to_vec));
            assert_eq!(
                items,
                vec![
                    Decoded::Greeting,
                    Decoded::Message(frames.clone()),
                    Decoded::Message(vec![Bytes::from_static(b"second")]),
                ],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_small_message_does_not_keep_the_read_buffer_alive() {
        let mut d = Decoder::new();
        let mut stream = peer_greeting(b"NULL", 3);
        stream.extend(encode_message(&[Bytes::from_static(b"small")]));
        stream.extend(encode_message(&[Bytes::from(vec![9u8; COPY_BELOW])]));
        let mut buf = BytesMut::with_capacity(1 << 20);
        buf.extend_from_slice(&stream);
        let block = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        assert_eq!(d.decode(&mut buf).unwrap(), Some(Decoded::Greeting));
        let Some(Decoded::Message(small)) = d.decode(&mut buf).unwrap() else {
            panic!("a message");
        };
        assert!(!block.contains(&(small[0].as_ptr() as usize)), "copied out");
        // A large one is a slice of the buffer: copying it would cost more than it saves.
        let Some(Decoded::Message(large)) = d.decode(&mut buf).unwrap() else {
            panic!("a message");
        };
        assert!(block.contains(&(large[0].as_ptr() as usize)), "sliced");
    }

    #[test]
    fn a_ping_between_two_frames_is_taken_out_and_the_message_completes() {
        let ping = [&[FLAG_COMMAND, 7, 4][..], b"PING", &[0, 10]].concat();
        let stream = [
            peer_greeting(b"NULL", 3),
            vec![FLAG_MORE, 3],
            b"one".to_vec(),
            ping,
            vec![0, 3],
            b"two".to_vec(),
        ]
        .concat();
        for piece in [1, 3, stream.len()] {
            let (items, _) = decode_in_pieces(stream.chunks(piece).map(<[u8]>::to_vec));
            assert_eq!(
                items,
                vec![
                    Decoded::Greeting,
                    Decoded::Command {
                        name: Bytes::from_static(b"PING"),
                        body: Bytes::from_static(&[0, 10]),
                    },
                    Decoded::Message(vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]),
                ],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_pong_echoes_the_pings_context() {
        assert_eq!(
            encode_pong(&[0, 10]),
            [&[FLAG_COMMAND, 5, 4][..], b"PONG"].concat()
        );
        assert_eq!(
            encode_pong(b"\x00\x0aabc"),
            [&[FLAG_COMMAND, 8, 4][..], b"PONGabc"].concat()
        );
        // At most 16 bytes of context; a body too short for its TTL is no context.
        assert_eq!(encode_pong(&[7u8; 40]).len(), 2 + 5 + 16);
        assert_eq!(encode_pong(&[1]).len(), 2 + 5);
    }

    /// Decode `stream` fed piece by piece, never holding more than the decoder keeps;
    /// returns the items and the largest buffer seen.
    fn decode_in_pieces(stream: impl Iterator<Item = Vec<u8>>) -> (Vec<Decoded>, usize) {
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        let mut largest = 0;
        for chunk in stream {
            buf.extend_from_slice(&chunk);
            largest = largest.max(buf.len());
            while let Some(item) = d.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        (items, largest)
    }

    #[test]
    fn an_oversized_message_is_dropped_as_it_arrives_and_the_stream_stays_in_step() {
        let size = MAX_MESSAGE + 1;
        let head = [
            peer_greeting(b"NULL", 3),
            encode_heads(&[Bytes::from_static(b"id")])[0]
                .as_slice()
                .to_vec(),
        ]
        .concat();
        let mut first = head;
        first[64] |= FLAG_MORE;
        first.extend_from_slice(b"id");
        first.push(FLAG_LONG);
        first.extend_from_slice(&size.to_be_bytes());
        let chunk = vec![5u8; 1 << 20];
        let body = (0..size / (1 << 20)).map(|_| chunk.clone());
        let tail = vec![
            vec![5u8; (size % (1 << 20)) as usize],
            encode_message(&[Bytes::from_static(b"next")]),
        ];
        let (items, largest) = decode_in_pieces(std::iter::once(first).chain(body).chain(tail));
        assert_eq!(
            items,
            vec![
                Decoded::Greeting,
                Decoded::Dropped {
                    bytes: size + 2,
                    frames: 2
                },
                Decoded::Message(vec![Bytes::from_static(b"next")]),
            ]
        );
        assert!(largest <= 2 << 20, "held {largest} bytes");
    }

    #[test]
    fn a_message_of_too_many_frames_is_dropped() {
        let frames = vec![Bytes::new(); MAX_FRAMES + 1];
        let stream = [
            peer_greeting(b"NULL", 3),
            encode_message(&frames),
            encode_message(&[Bytes::from_static(b"next")]),
        ]
        .concat();
        let (items, _) = decode_in_pieces(stream.chunks(8192).map(<[u8]>::to_vec));
        assert_eq!(
            items,
            vec![
                Decoded::Greeting,
                Decoded::Dropped {
                    bytes: 0,
                    frames: MAX_FRAMES + 1
                },
                Decoded::Message(vec![Bytes::from_static(b"next")]),
            ]
        );
    }

    #[test]
    fn frame_heads_use_the_long_form_above_255_bytes() {
        let heads = encode_heads(&[Bytes::from(vec![0; 255]), Bytes::from(vec![0; 256])]);
        assert_eq!(heads[0].as_slice(), [FLAG_MORE, 255]);
        assert_eq!(
            heads[1].as_slice(),
            [&[FLAG_LONG][..], &256u64.to_be_bytes()].concat()
        );
    }

    #[test]
    fn the_decoder_says_how_much_it_still_needs() {
        let mut d = Decoder::new();
        assert_eq!(d.wanted(&[0xff]), 63);
        let mut buf = BytesMut::from(&peer_greeting(b"NULL", 3)[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), Some(Decoded::Greeting));
        let msg = encode_message(&[Bytes::from(vec![0; 100_000])]);
        assert_eq!(d.wanted(&msg[..9]), 100_000);
        assert_eq!(d.wanted(&msg[..1000]), 100_009 - 1000);
        assert_eq!(d.wanted(&msg[..1]), 0);
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let g = peer_greeting(b"NULL", 3);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("reserved flag bits", vec![0x08, 0]),
            ("command with MORE", vec![0x05, 0]),
            ("empty command", vec![0x04, 0]),
            ("command name past its body", vec![0x04, 2, 9, b'R']),
            (
                "absurd long size",
                [&[FLAG_LONG][..], &u64::MAX.to_be_bytes()].concat(),
            ),
            (
                "a command above the command limit",
                [&[0x06][..], &(MAX_COMMAND + 1).to_be_bytes()].concat(),
            ),
        ];
        for (what, tail) in cases {
            let r = decode_all(&[g.clone(), tail].concat());
            assert!(r.is_err(), "{what}: {r:?}");
        }
        // Errors from a READY or ERROR body never panic either.
        assert_eq!(error_reason(b""), "");
        assert_eq!(error_reason(b"\x09too short"), "too short");
        assert_eq!(error_reason(b"\x50abc"), "abc");
    }

    #[test]
    fn socket_compatibility() {
        assert!(SocketType::Dealer.accepts(b"ROUTER"));
        assert!(SocketType::Dealer.accepts(b"REP"));
        assert!(!SocketType::Dealer.accepts(b"PUB"));
        assert!(SocketType::Sub.accepts(b"XPUB"));
        assert!(!SocketType::Sub.accepts(b"ROUTER"));
    }
}
