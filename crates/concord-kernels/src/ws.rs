//! The kernel websocket's two wire formats, as jupyter_server speaks them:
//!
//! * **legacy**: a JSON text frame holding the whole message plus a `channel` field; a message
//!   with binary buffers travels as a binary frame: big-endian `u32` part count, `u32` offsets,
//!   the JSON, then the buffers;
//! * **`v1.kernel.websocket.jupyter.org`**: a binary frame: little-endian `u64` offset count,
//!   `u64` offsets, the channel name, then header, parent_header, metadata, content and
//!   buffers as raw bytes.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::wire::{Message, WireError};

/// The subprotocol name of the binary protocol.
pub const V1_SUBPROTOCOL: &str = "v1.kernel.websocket.jupyter.org";

/// A websocket data frame, independent of any HTTP library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsFrame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// Which of the two formats a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WsProtocol {
    /// JSON text frames (binary frames for messages with buffers).
    Legacy,
    /// `v1.kernel.websocket.jupyter.org`.
    V1,
}

impl WsProtocol {
    /// Negotiate as jupyter_server does: `v1` when the client offers it, legacy otherwise.
    /// The returned name (if any) is what the server echoes in `Sec-WebSocket-Protocol`.
    pub fn negotiate<'a>(
        offered: impl IntoIterator<Item = &'a str>,
    ) -> (Self, Option<&'static str>) {
        if offered.into_iter().any(|p| p.trim() == V1_SUBPROTOCOL) {
            (WsProtocol::V1, Some(V1_SUBPROTOCOL))
        } else {
            (WsProtocol::Legacy, None)
        }
    }
}

/// A kernel channel reachable over the websocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Requests and replies.
    Shell,
    /// Priority requests (interrupt, shutdown, debug).
    Control,
    /// Input requests from the kernel, input replies from the client.
    Stdin,
    /// Broadcast outputs and status.
    Iopub,
}

impl Channel {
    /// The channel's name on the websocket.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::Control => "control",
            Channel::Stdin => "stdin",
            Channel::Iopub => "iopub",
        }
    }

    /// Parse a channel name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shell" => Some(Channel::Shell),
            "control" => Some(Channel::Control),
            "stdin" => Some(Channel::Stdin),
            "iopub" => Some(Channel::Iopub),
            _ => None,
        }
    }
}

/// Why a client frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame is not valid for the connection's protocol.
    #[error("malformed kernel websocket frame: {0}")]
    Malformed(String),
    /// The frame names a channel that does not exist.
    #[error("no such channel: {0:?}")]
    NoSuchChannel(String),
}

impl From<WireError> for CodecError {
    fn from(e: WireError) -> Self {
        CodecError::Malformed(e.to_string())
    }
}

fn malformed(s: impl Into<String>) -> CodecError {
    CodecError::Malformed(s.into())
}

/// Decode a frame from a client into its channel and message.
pub fn decode(frame: &WsFrame, protocol: WsProtocol) -> Result<(Channel, Message), CodecError> {
    match (protocol, frame) {
        (WsProtocol::V1, WsFrame::Binary(b)) => decode_v1(b),
        (WsProtocol::V1, WsFrame::Text(_)) => Err(malformed(
            "text frame on a v1.kernel.websocket.jupyter.org connection",
        )),
        (WsProtocol::Legacy, WsFrame::Text(t)) => {
            let value: Value =
                serde_json::from_str(t).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
            decode_legacy_value(value, Vec::new())
        }
        (WsProtocol::Legacy, WsFrame::Binary(b)) => {
            let parts = split_legacy_binary(b)?;
            let mut parts = parts.into_iter();
            let json = parts.next().ok_or_else(|| malformed("no JSON part"))?;
            let value: Value = serde_json::from_slice(&json)
                .map_err(|e| malformed(format!("invalid JSON: {e}")))?;
            decode_legacy_value(value, parts.collect())
        }
    }
}

fn decode_legacy_value(
    value: Value,
    buffers: Vec<Bytes>,
) -> Result<(Channel, Message), CodecError> {
    let Value::Object(mut obj) = value else {
        return Err(malformed("message is not a JSON object"));
    };
    // jupyter_server assumes shell when no channel is given.
    let channel = match obj.remove("channel") {
        None | Some(Value::Null) => Channel::Shell,
        Some(Value::String(s)) => Channel::parse(&s).ok_or(CodecError::NoSuchChannel(s))?,
        Some(_) => return Err(malformed("channel is not a string")),
    };
    let header = match obj.remove("header") {
        Some(h @ Value::Object(_)) => h,
        _ => return Err(malformed("header is missing or not an object")),
    };
    let part = |obj: &mut Map<String, Value>, key: &str| -> Bytes {
        match obj.remove(key) {
            Some(v) if !v.is_null() => Bytes::from(v.to_string()),
            _ => Bytes::from_static(b"{}"),
        }
    };
    let parent = part(&mut obj, "parent_header");
    let metadata = part(&mut obj, "metadata");
    let content = part(&mut obj, "content");
    let msg = Message::from_parts(
        Bytes::from(header.to_string()),
        parent,
        metadata,
        content,
        buffers,
    )?;
    Ok((channel, msg))
}

fn split_legacy_binary(b: &[u8]) -> Result<Vec<Bytes>, CodecError> {
    let read_u32 = |i: usize| -> Result<usize, CodecError> {
        b.get(i..i + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(|a| u32::from_be_bytes(a) as usize)
            .ok_or_else(|| malformed("truncated binary header"))
    };
    let n = read_u32(0)?;
    if n == 0 || n > b.len() / 4 {
        return Err(malformed("invalid part count"));
    }
    let mut offsets = Vec::with_capacity(n + 1);
    for i in 0..n {
        offsets.push(read_u32(4 * (i + 1))?);
    }
    offsets.push(b.len());
    let mut parts = Vec::with_capacity(n);
    for w in offsets.windows(2) {
        let (start, end) = (w[0], w[1]);
        if start < 4 * (n + 1) || start > end || end > b.len() {
            return Err(malformed("invalid offsets"));
        }
        parts.push(Bytes::copy_from_slice(&b[start..end]));
    }
    Ok(parts)
}

fn decode_v1(b: &Bytes) -> Result<(Channel, Message), CodecError> {
    let read_u64 = |i: usize| -> Result<usize, CodecError> {
        b.get(i..i + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_le_bytes)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| malformed("truncated offset table"))
    };
    let n = read_u64(0)?;
    // channel + header, parent_header, metadata, content = 5 parts = 6 offsets at least.
    if !(6..=b.len() / 8).contains(&n) {
        return Err(malformed(format!("invalid offset count {n}")));
    }
    let mut offsets = Vec::with_capacity(n);
    for i in 0..n {
        offsets.push(read_u64(8 * (i + 1))?);
    }
    let table_end = 8 * (n + 1);
    if offsets[0] < table_end || offsets.windows(2).any(|w| w[0] > w[1]) || offsets[n - 1] > b.len()
    {
        return Err(malformed("invalid offsets"));
    }
    let slice = |i: usize| b.slice(offsets[i]..offsets[i + 1]);
    let channel_name = std::str::from_utf8(&b[offsets[0]..offsets[1]])
        .map_err(|_| malformed("channel is not UTF-8"))?;
    let channel = Channel::parse(channel_name)
        .ok_or_else(|| CodecError::NoSuchChannel(channel_name.to_string()))?;
    let buffers = (5..n - 1).map(slice).collect();
    let msg = Message::from_parts(slice(1), slice(2), slice(3), slice(4), buffers)?;
    Ok((channel, msg))
}

/// Encode a message for a client.
pub fn encode(channel: Channel, msg: &Message, protocol: WsProtocol) -> WsFrame {
    match protocol {
        WsProtocol::V1 => WsFrame::Binary(encode_v1(channel, msg)),
        WsProtocol::Legacy => encode_legacy(channel, msg),
    }
}

fn encode_v1(channel: Channel, msg: &Message) -> Bytes {
    let channel = channel.as_str().as_bytes();
    // Written straight into one buffer of the exact size: no table of parts or offsets.
    let parts = || {
        [
            &msg.header[..],
            &msg.parent_header[..],
            &msg.metadata[..],
            &msg.content[..],
        ]
        .into_iter()
        .chain(msg.buffers.iter().map(|b| &b[..]))
    };
    // Offsets: where the channel and each part start, and where the last part ends.
    let count = 4 + msg.buffers.len() + 2;
    let table = 8 * (count + 1);
    let total = table + channel.len() + parts().map(<[u8]>::len).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(count as u64).to_le_bytes());
    let mut at = table;
    out.extend_from_slice(&(at as u64).to_le_bytes());
    at += channel.len();
    out.extend_from_slice(&(at as u64).to_le_bytes());
    for p in parts() {
        at += p.len();
        out.extend_from_slice(&(at as u64).to_le_bytes());
    }
    out.extend_from_slice(channel);
    for p in parts() {
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

fn parse_or_raw(raw: &[u8]) -> Value {
    // Kernel frames are JSON; should one not be, pass it on as a string rather than drop it.
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into()))
}

fn encode_legacy(channel: Channel, msg: &Message) -> WsFrame {
    let mut obj = Map::new();
    obj.insert("header".into(), parse_or_raw(&msg.header));
    obj.insert("msg_id".into(), Value::String(msg.info.msg_id.clone()));
    obj.insert("msg_type".into(), Value::String(msg.info.msg_type.clone()));
    obj.insert("parent_header".into(), parse_or_raw(&msg.parent_header));
    obj.insert("metadata".into(), parse_or_raw(&msg.metadata));
    obj.insert("content".into(), parse_or_raw(&msg.content));
    obj.insert("buffers".into(), Value::Array(Vec::new()));
    obj.insert("channel".into(), Value::String(channel.as_str().into()));
    if msg.buffers.is_empty() {
        return WsFrame::Text(Value::Object(obj).to_string());
    }
    // jupyter_server's serialize_binary_message: the JSON without "buffers", then the buffers.
    obj.remove("buffers");
    let json = Value::Object(obj).to_string().into_bytes();
    let nbufs = msg.buffers.len() + 1;
    let mut offsets = vec![4 * (nbufs + 1)];
    offsets.push(offsets[0] + json.len());
    for b in &msg.buffers[..msg.buffers.len() - 1] {
        let last = offsets[offsets.len() - 1];
        offsets.push(last + b.len());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(nbufs as u32).to_be_bytes());
    for o in &offsets {
        out.extend_from_slice(&(*o as u32).to_be_bytes());
    }
    out.extend_from_slice(&json);
    for b in &msg.buffers {
        out.extend_from_slice(b);
    }
    WsFrame::Binary(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(buffers: Vec<Bytes>) -> Message {
        let mut m = Message::new_server_message(
            "comm_msg",
            "sess",
            "alice",
            Bytes::from_static(b"{\"msg_id\":\"p\"}"),
            serde_json::json!({"data": {"x": 1}, "unmodelled": [1, 2]}),
        );
        m.buffers = buffers;
        m
    }

    #[test]
    fn v1_round_trip_keeps_bytes() {
        let m = msg(vec![
            Bytes::from_static(b"\x00\x01"),
            Bytes::from_static(b"zz"),
        ]);
        let frame = encode(Channel::Shell, &m, WsProtocol::V1);
        let (ch, back) = decode(&frame, WsProtocol::V1).unwrap();
        assert_eq!(ch, Channel::Shell);
        assert_eq!(back.header, m.header);
        assert_eq!(back.content, m.content);
        assert_eq!(back.buffers, m.buffers);
    }

    #[test]
    fn v1_layout_is_count_offsets_channel_parts() {
        let mut m = msg(vec![Bytes::from_static(b"BUF")]);
        m.header = Bytes::from_static(b"{\"h\":1}");
        m.parent_header = Bytes::from_static(b"{}");
        m.metadata = Bytes::from_static(b"{\"m\":2}");
        m.content = Bytes::from_static(b"{\"c\":3}");
        let WsFrame::Binary(b) = encode(Channel::Iopub, &m, WsProtocol::V1) else {
            panic!("expected binary")
        };
        // 7 offsets (channel, 4 JSON parts, 1 buffer, end) after the count: data from 64.
        let mut expected = Vec::new();
        for n in [7u64, 64, 69, 76, 78, 85, 92, 95] {
            expected.extend_from_slice(&n.to_le_bytes());
        }
        expected.extend_from_slice(b"iopub{\"h\":1}{}{\"m\":2}{\"c\":3}BUF");
        assert_eq!(b.as_ref(), &expected[..]);
    }

    #[test]
    fn legacy_round_trip_text_and_binary() {
        let m = msg(vec![]);
        let WsFrame::Text(t) = encode(Channel::Iopub, &m, WsProtocol::Legacy) else {
            panic!("expected text")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["channel"], "iopub");
        assert_eq!(v["msg_type"], "comm_msg");
        assert_eq!(v["content"]["unmodelled"][1], 2);
        let (ch, back) = decode(&WsFrame::Text(t), WsProtocol::Legacy).unwrap();
        assert_eq!(ch, Channel::Iopub);
        assert_eq!(back.info.msg_type, "comm_msg");

        let m = msg(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        let frame = encode(Channel::Shell, &m, WsProtocol::Legacy);
        assert!(matches!(frame, WsFrame::Binary(_)));
        let (_, back) = decode(&frame, WsProtocol::Legacy).unwrap();
        assert_eq!(back.buffers, m.buffers);
    }

    #[test]
    fn malformed_frames_are_errors() {
        let bad: Vec<(WsFrame, WsProtocol)> = vec![
            (WsFrame::Text("{".into()), WsProtocol::Legacy),
            (WsFrame::Text("[]".into()), WsProtocol::Legacy),
            (WsFrame::Text("{\"header\": 3}".into()), WsProtocol::Legacy),
            (
                WsFrame::Text("{\"header\": {}, \"channel\": \"hb\"}".into()),
                WsProtocol::Legacy,
            ),
            (WsFrame::Text("{}".into()), WsProtocol::V1),
            (WsFrame::Binary(Bytes::new()), WsProtocol::V1),
            (WsFrame::Binary(Bytes::from(vec![0xff; 8])), WsProtocol::V1),
            (
                WsFrame::Binary(Bytes::from(vec![0xff; 100])),
                WsProtocol::V1,
            ),
            (WsFrame::Binary(Bytes::from(vec![0; 3])), WsProtocol::Legacy),
            (
                WsFrame::Binary(Bytes::from(vec![0xff; 64])),
                WsProtocol::Legacy,
            ),
        ];
        for (frame, proto) in bad {
            assert!(decode(&frame, proto).is_err(), "{frame:?}");
        }
        // A v1 frame whose offsets run backwards.
        let m = msg(vec![]);
        let WsFrame::Binary(b) = encode(Channel::Shell, &m, WsProtocol::V1) else {
            panic!()
        };
        let mut v = b.to_vec();
        v[16..24].copy_from_slice(&1u64.to_le_bytes());
        assert!(decode(&WsFrame::Binary(Bytes::from(v)), WsProtocol::V1).is_err());
    }

    #[test]
    fn negotiation_prefers_v1() {
        assert_eq!(
            WsProtocol::negotiate(["foo", V1_SUBPROTOCOL]),
            (WsProtocol::V1, Some(V1_SUBPROTOCOL))
        );
        assert_eq!(WsProtocol::negotiate(["foo"]), (WsProtocol::Legacy, None));
    }
}
