//! The room protocol on the wire: y-websocket's framing (lib0 variable-length integers and
//! byte strings) with jupyter-server-ydoc's extra "raw" message type.
//!
//! Every frame is one message: `varuint type`, then
//! - `0` sync: `varuint step` (0 = step 1, 1 = step 2, 2 = update) and one byte string (a
//!   state vector for step 1, an update otherwise);
//! - `1` awareness: one byte string holding an awareness update
//!   (`varuint count`, then per client `varuint id`, `varuint clock`, `varstring json`);
//! - `2` raw (Jupyter): one string; `"save"` is followed by `varuint request id`; the server
//!   answers with a raw JSON string;
//! - `3` query awareness: nothing.
//!
//! Decoding never allocates more than the frame's own size and refuses anything past
//! [`Limits`]; a malformed frame is a [`CodecError`], never a panic.

use std::fmt;

/// Message types of the first byte (y-websocket and jupyter-server-ydoc).
pub const MSG_SYNC: u64 = 0;
/// Awareness (presence) message.
pub const MSG_AWARENESS: u64 = 1;
/// Jupyter's raw message (y-websocket calls this number "auth"; Jupyter reuses it).
pub const MSG_RAW: u64 = 2;
/// Ask the server for every known awareness state.
pub const MSG_QUERY_AWARENESS: u64 = 3;

const SYNC_STEP1: u64 = 0;
const SYNC_STEP2: u64 = 1;
const SYNC_UPDATE: u64 = 2;

/// The largest integer JavaScript's lib0 reads (2^53 - 1): client ids and clocks above it
/// cannot come from a real Yjs client.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Bounds on decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A whole frame.
    pub max_message_bytes: usize,
    /// One awareness state (its JSON text).
    pub max_awareness_state_bytes: usize,
    /// Client states in one awareness message.
    pub max_awareness_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 32 * 1024 * 1024,
            max_awareness_state_bytes: 64 * 1024,
            max_awareness_entries: 16,
        }
    }
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame is larger than [`Limits::max_message_bytes`].
    #[error("message of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The frame is not the protocol.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// One decoded message from a client. Slices borrow the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Sync step 1: the sender's state vector (v1 encoding).
    SyncStep1(&'a [u8]),
    /// Sync step 2: the update answering a step 1.
    SyncStep2(&'a [u8]),
    /// A document update.
    Update(&'a [u8]),
    /// An awareness update (still encoded; see [`decode_awareness`]).
    Awareness(&'a [u8]),
    /// Query awareness.
    QueryAwareness,
    /// Jupyter's save request, with the id the reply must carry.
    Save {
        /// The client's request number.
        request_id: u64,
    },
    /// Another raw (Jupyter) string.
    Raw(&'a str),
    /// A message type this server does not know (ignored, as jupyter-server-ydoc does).
    Unknown(u64),
}

/// A reader over one frame.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn var_uint(&mut self) -> Result<u64, CodecError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(CodecError::Malformed("truncated integer"))?;
            self.pos += 1;
            if shift >= 63 && (byte & 0x7f) > 1 {
                return Err(CodecError::Malformed("integer out of range"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(CodecError::Malformed("integer out of range"));
            }
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.var_uint()?;
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= remaining)
            .ok_or(CodecError::Malformed("byte string longer than the message"))?;
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn string(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError::Malformed("string is not UTF-8"))
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn finish(&self) -> Result<(), CodecError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(CodecError::Malformed("trailing bytes after the message"))
        }
    }
}

/// Decode one frame a client sent.
pub fn decode_message<'a>(frame: &'a [u8], limits: &Limits) -> Result<Message<'a>, CodecError> {
    if frame.len() > limits.max_message_bytes {
        return Err(CodecError::TooLarge {
            size: frame.len(),
            limit: limits.max_message_bytes,
        });
    }
    let mut r = Reader::new(frame);
    let message = match r.var_uint()? {
        MSG_SYNC => {
            let step = r.var_uint()?;
            let payload = r.bytes()?;
            match step {
                SYNC_STEP1 => Message::SyncStep1(payload),
                SYNC_STEP2 => Message::SyncStep2(payload),
                SYNC_UPDATE => Message::Update(payload),
                _ => return Err(CodecError::Malformed("unknown sync step")),
            }
        }
        MSG_AWARENESS => Message::Awareness(r.bytes()?),
        MSG_QUERY_AWARENESS => Message::QueryAwareness,
        MSG_RAW => {
            let text = r.string()?;
            if text == "save" {
                Message::Save {
                    request_id: r.var_uint()?,
                }
            } else {
                Message::Raw(text)
            }
        }
        other => return Ok(Message::Unknown(other)),
    };
    r.finish()?;
    Ok(message)
}

/// One client's entry in an awareness update.
#[derive(Clone, Debug, PartialEq)]
pub struct AwarenessEntry {
    /// The Yjs client id (the sender's document client id).
    pub client_id: u64,
    /// The state's clock.
    pub clock: u64,
    /// The state (`None`: the client is gone, sent as `null`).
    pub state: Option<serde_json::Map<String, serde_json::Value>>,
    /// The JSON text as sent.
    pub json: String,
}

/// Decode an awareness update (the payload of [`Message::Awareness`]).
pub fn decode_awareness(
    payload: &[u8],
    limits: &Limits,
) -> Result<Vec<AwarenessEntry>, CodecError> {
    let mut r = Reader::new(payload);
    let count = r.var_uint()?;
    if count > limits.max_awareness_entries as u64 {
        return Err(CodecError::Malformed(
            "too many awareness states in one message",
        ));
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let client_id = r.var_uint()?;
        let clock = r.var_uint()?;
        if client_id > MAX_SAFE_INTEGER || clock > MAX_SAFE_INTEGER {
            return Err(CodecError::Malformed(
                "awareness client id or clock out of range",
            ));
        }
        let json = r.string()?;
        if json.len() > limits.max_awareness_state_bytes {
            return Err(CodecError::TooLarge {
                size: json.len(),
                limit: limits.max_awareness_state_bytes,
            });
        }
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|_| CodecError::Malformed("awareness state is not JSON"))?;
        let state = match value {
            serde_json::Value::Null => None,
            serde_json::Value::Object(map) => Some(map),
            _ => return Err(CodecError::Malformed("awareness state is not an object")),
        };
        entries.push(AwarenessEntry {
            client_id,
            clock,
            state,
            json: json.to_string(),
        });
    }
    r.finish()?;
    Ok(entries)
}

/// Append a lib0 variable-length unsigned integer.
pub fn write_var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value > 0x7f {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Append a length-prefixed byte string.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn sync(step: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    write_var_uint(&mut out, MSG_SYNC);
    write_var_uint(&mut out, step);
    write_var_bytes(&mut out, payload);
    out
}

/// Sync step 1 carrying a state vector.
pub fn encode_sync_step1(state_vector: &[u8]) -> Vec<u8> {
    sync(SYNC_STEP1, state_vector)
}

/// Sync step 2 carrying an update.
pub fn encode_sync_step2(update: &[u8]) -> Vec<u8> {
    sync(SYNC_STEP2, update)
}

/// A document update.
pub fn encode_update(update: &[u8]) -> Vec<u8> {
    sync(SYNC_UPDATE, update)
}

/// An awareness message from `(client id, clock, json)` entries.
pub fn encode_awareness<'a>(entries: impl IntoIterator<Item = (u64, u64, &'a str)>) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut payload = Vec::new();
    write_var_uint(&mut payload, entries.len() as u64);
    for (client_id, clock, json) in entries {
        write_var_uint(&mut payload, client_id);
        write_var_uint(&mut payload, clock);
        write_var_bytes(&mut payload, json.as_bytes());
    }
    let mut out = Vec::with_capacity(payload.len() + 6);
    write_var_uint(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, &payload);
    out
}

/// A query-awareness message.
pub fn encode_query_awareness() -> Vec<u8> {
    vec![MSG_QUERY_AWARENESS as u8]
}

/// A raw (Jupyter) message: a JSON text.
pub fn encode_raw(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 6);
    write_var_uint(&mut out, MSG_RAW);
    write_var_bytes(&mut out, json.as_bytes());
    out
}

/// A save request as JupyterLab's document provider sends it.
pub fn encode_save_request(request_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_uint(&mut out, MSG_RAW);
    write_var_bytes(&mut out, b"save");
    write_var_uint(&mut out, request_id);
    out
}

/// The outcome of a save request, as jupyter-server-ydoc names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveStatus {
    /// Saved.
    Success,
    /// A save was already under way.
    Skipped,
    /// Not saved (refused or failed).
    Failed,
}

impl fmt::Display for SaveStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaveStatus::Success => "success",
            SaveStatus::Skipped => "skipped",
            SaveStatus::Failed => "failed",
        })
    }
}

/// The reply to a save request: `{"type": "save", "responseTo": id, "status": ...}`.
pub fn encode_save_reply(request_id: u64, status: SaveStatus) -> Vec<u8> {
    let json = serde_json::json!({
        "type": "save",
        "responseTo": request_id,
        "status": status.to_string(),
    });
    encode_raw(&json.to_string())
}

/// The edit-conflict notice JupyterLab's provider turns into a dialog.
pub fn encode_conflict_notice() -> Vec<u8> {
    encode_raw(r#"{"type":"conflict"}"#)
}

/// Decode a raw (Jupyter) message the server sent (for clients and tests).
pub fn decode_raw_reply(frame: &[u8]) -> Option<serde_json::Value> {
    let mut r = Reader::new(frame);
    if r.var_uint().ok()? != MSG_RAW {
        return None;
    }
    serde_json::from_str(r.string().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_uint_round_trips_and_rejects_overflow() {
        for value in [0, 1, 127, 128, 300, 1 << 35, MAX_SAFE_INTEGER, u64::MAX] {
            let mut buf = Vec::new();
            write_var_uint(&mut buf, value);
            assert_eq!(Reader::new(&buf).var_uint(), Ok(value));
        }
        let eleven = [0xffu8; 11];
        assert!(Reader::new(&eleven).var_uint().is_err());
        let mut too_big = vec![0xffu8; 9];
        too_big.push(0x02);
        assert!(Reader::new(&too_big).var_uint().is_err());
    }

    #[test]
    fn save_request_and_reply() {
        let limits = Limits::default();
        assert_eq!(
            decode_message(&encode_save_request(7), &limits),
            Ok(Message::Save { request_id: 7 })
        );
        let reply = decode_raw_reply(&encode_save_reply(7, SaveStatus::Skipped)).unwrap();
        assert_eq!(reply["responseTo"], 7);
        assert_eq!(reply["status"], "skipped");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes decode to a message or an error, never a panic, and never to more
        /// than the frame holds.
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
            let limits = Limits { max_message_bytes: 200, ..Limits::default() };
            match decode_message(&frame, &limits) {
                Ok(Message::Awareness(payload)) => {
                    prop_assert!(payload.len() <= frame.len());
                    let _ = decode_awareness(payload, &limits);
                }
                Ok(Message::SyncStep1(p)) | Ok(Message::SyncStep2(p)) | Ok(Message::Update(p)) => {
                    prop_assert!(p.len() <= frame.len());
                }
                Ok(_) => {}
                Err(CodecError::TooLarge { size, .. }) => prop_assert!(size > 200),
                Err(CodecError::Malformed(_)) => {}
            }
        }

        /// What the encoders write decodes back to the same message.
        #[test]
        fn encoded_messages_round_trip(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            id in 0u64..=MAX_SAFE_INTEGER,
            clock in 0u64..=MAX_SAFE_INTEGER,
            name in "[a-zA-Z0-9 éü✓]{0,40}",
        ) {
            let limits = Limits::default();
            let (update, step1, step2, save) = (
                encode_update(&payload),
                encode_sync_step1(&payload),
                encode_sync_step2(&payload),
                encode_save_request(id),
            );
            prop_assert_eq!(decode_message(&update, &limits), Ok(Message::Update(&payload)));
            prop_assert_eq!(decode_message(&step1, &limits), Ok(Message::SyncStep1(&payload)));
            prop_assert_eq!(decode_message(&step2, &limits), Ok(Message::SyncStep2(&payload)));
            prop_assert_eq!(decode_message(&save, &limits), Ok(Message::Save { request_id: id }));
            let json = serde_json::json!({"user": {"name": name}}).to_string();
            let frame = encode_awareness([(id, clock, json.as_str())]);
            let Ok(Message::Awareness(p)) = decode_message(&frame, &limits) else {
                return Err(TestCaseError::fail("not awareness"));
            };
            let entries = decode_awareness(p, &limits).unwrap();
            prop_assert_eq!((entries[0].client_id, entries[0].clock, entries[0].json.as_str()), (id, clock, json.as_str()));
        }

        /// A length prefix claiming more than the frame holds is refused without allocating it.
        #[test]
        fn oversized_length_prefixes_are_refused(claimed in 17u64..u64::MAX, body in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut frame = vec![0u8, 2];
            write_var_uint(&mut frame, claimed);
            frame.extend_from_slice(&body);
            prop_assert!(decode_message(&frame, &Limits::default()).is_err());
        }
    }
}
