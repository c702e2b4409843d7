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

use bytes::{Buf, Bytes, BytesMut};

/// Length of a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;

/// Largest frame accepted from a peer. Far above anything a kernel sends (its outputs are
/// JSON and buffers); a size beyond it is a corrupt stream, not something to allocate for.
pub const MAX_FRAME: u64 = 1 << 32;

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
}

/// Messages up to this size are copied out of the read buffer into their own allocation;
/// a slice of it would keep the whole read buffer alive for as long as the message is
/// queued or kept for replay.
const COPY_BELOW: usize = 64 * 1024;

/// Turns the bytes of one connection into greeting, commands and messages.
#[derive(Debug, Default)]
pub struct Decoder {
    greeted: bool,
}

/// Where the next item in a buffer ends, as far as the buffer tells.
enum Extent {
    /// A whole message or command of this many bytes (a command when `command`).
    Complete { len: usize, command: bool },
    /// Incomplete: at least this many more bytes are needed (0 when unknown).
    Needs(u64),
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
        match extent(buf) {
            Ok(Extent::Needs(n)) => usize::try_from(n).unwrap_or(usize::MAX),
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
        let (len, command) = match extent(buf)? {
            Extent::Complete { len, command } => (len, command),
            Extent::Needs(_) => return Ok(None),
        };
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
        if command {
            return frames
                .pop()
                .ok_or_else(|| ZmtpError::BadCommand("missing".into()))
                .and_then(parse_command)
                .map(Some);
        }
        Ok(Some(Decoded::Message(frames)))
    }
}

/// Scan the frame heads at the start of `buf` to the end of the first message or command.
fn extent(buf: &[u8]) -> Result<Extent, ZmtpError> {
    let mut at = 0usize;
    loop {
        let Some((head, size)) = frame_size(&buf[at..])? else {
            return Ok(Extent::Needs(0));
        };
        let flags = buf[at];
        let command = flags & FLAG_COMMAND != 0;
        if command && at > 0 {
            return Err(ZmtpError::BadFrame(
                "a command in the middle of a multipart message".into(),
            ));
        }
        let end = at as u64 + head as u64 + size;
        if (buf.len() as u64) < end {
            return Ok(Extent::Needs(end - buf.len() as u64));
        }
        at = end as usize;
        if command || flags & FLAG_MORE == 0 {
            return Ok(Extent::Complete { len: at, command });
        }
    }
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
    if flags & FLAG_COMMAND != 0 && flags & FLAG_MORE != 0 {
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
    if size > MAX_FRAME {
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
        let value = body.get(value_at..value_at + len).ok_or_else(bad)?;
        // Property names are case-insensitive.
        if name.eq_ignore_ascii_case(property.as_bytes()) {
            return Ok(Some(Bytes::copy_from_slice(value)));
        }
        body = &body[value_at + len..];
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
            let mut d = Decoder::new();
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            for chunk in stream.chunks(piece) {
                buf.extend_from_slice(chunk);
                while let Some(item) = d.decode(&mut buf).unwrap() {
                    items.push(item);
                }
            }
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
                "command inside a multipart message",
                [&[FLAG_MORE, 1, b'a'][..], &[0x04, 1, 0]].concat(),
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
