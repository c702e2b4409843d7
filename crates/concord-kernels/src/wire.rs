//! The Jupyter wire protocol: multipart ZMQ messages signed with HMAC-SHA256.
//!
//! A message on the wire is `[identities…, "<IDS|MSG>", signature, header, parent_header,
//! metadata, content, buffers…]`. The four JSON frames are kept as raw bytes so that a proxy
//! never drops or reorders fields it does not model; only the header is read (for `msg_id`,
//! `msg_type`, `session`), and its bytes change only where the server stamps `username`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Range;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::de::{self, Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::Sha256;

/// The frame that separates routing identities from the message proper.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Why a multipart message could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// No `<IDS|MSG>` delimiter frame.
    #[error("message has no <IDS|MSG> delimiter")]
    NoDelimiter,
    /// Fewer than the signature and four JSON frames after the delimiter.
    #[error("message has {0} frames after the delimiter; at least 5 are required")]
    TooFewFrames(usize),
    /// The HMAC signature does not match.
    #[error("message signature is invalid")]
    BadSignature,
    /// The header is not a JSON object.
    #[error("message header is not a JSON object: {0}")]
    BadHeader(String),
}

/// HMAC-SHA256 signing with a connection's key. An empty key disables signing, as in
/// jupyter_client.
#[derive(Clone)]
pub struct Signer {
    /// The MAC already keyed: every message clones it rather than hashing the key's inner and
    /// outer pads again (two of the ~10 SHA-256 blocks a small message costs). `None` when
    /// signing is off.
    keyed: Option<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Signer(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Signer {
    /// A signer for `key` (the connection file's `key`, as bytes).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        let key = key.into();
        // `new_from_slice` accepts keys of any length for HMAC; its error branch cannot be
        // taken, and would only leave signing off rather than panic.
        let keyed = if key.is_empty() {
            None
        } else {
            HmacSha256::new_from_slice(&key).ok()
        };
        Signer { keyed }
    }

    /// A new random 256-bit key, hex-encoded as jupyter_client does (a UUID there).
    pub fn random_key() -> String {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    }

    fn mac(&self, parts: &[&[u8]]) -> Option<HmacSha256> {
        let mut mac = self.keyed.clone()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }

    /// The lowercase hex signature of the four JSON frames (empty when signing is off).
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        match self.mac(parts) {
            Some(mac) => hex::encode(mac.finalize().into_bytes()),
            None => String::new(),
        }
    }

    /// Constant-time check of a hex signature against the four JSON frames.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> bool {
        match self.mac(parts) {
            None => true,
            Some(mac) => {
                // A SHA-256 MAC is 32 bytes: anything else (or not hex) cannot match.
                let mut raw = [0u8; 32];
                hex::decode_to_slice(signature, &mut raw).is_ok() && mac.verify_slice(&raw).is_ok()
            }
        }
    }
}

/// One Jupyter message with its JSON parts kept verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// ZMQ routing identities (the topic on iopub); empty for DEALER replies.
    pub identities: Vec<Bytes>,
    /// The header JSON, verbatim.
    pub header: Bytes,
    /// The parent header JSON, verbatim.
    pub parent_header: Bytes,
    /// The metadata JSON, verbatim.
    pub metadata: Bytes,
    /// The content JSON, verbatim.
    pub content: Bytes,
    /// Binary buffers.
    pub buffers: Vec<Bytes>,
    /// The few header fields the server looks at.
    pub info: HeaderInfo,
}

/// Header fields the server reads (routing, state, authorization).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// `header.msg_id`.
    pub msg_id: String,
    /// `header.msg_type`.
    pub msg_type: String,
    /// `header.session`.
    pub session: String,
}

impl HeaderInfo {
    /// Read the fields from a header object (missing fields are empty strings).
    pub fn from_header(header: &Map<String, Value>) -> Self {
        let field = |k: &str| {
            header
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        HeaderInfo {
            msg_id: field("msg_id"),
            msg_type: field("msg_type"),
            session: field("session"),
        }
    }
}

/// Parse a header frame as a JSON object.
pub fn parse_header(raw: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(WireError::BadHeader(format!("got {}", json_kind(&other)))),
        Err(e) => Err(WireError::BadHeader(e.to_string())),
    }
}

/// The parent header's `msg_id`, if the parent header is an object with one.
pub fn parent_msg_id(parent_header: &[u8]) -> Option<String> {
    str_member(parent_header, "msg_id").map(Cow::into_owned)
}

/// The string value of member `name` of the JSON object in `raw` (the last one, should the
/// key repeat); `None` when `raw` is not an object that parses as a `serde_json::Value`
/// would, or the member is missing or not a string. No map is built.
pub fn str_member<'a>(raw: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let found = de.deserialize_map(Member { name, found: None }).ok()?;
    de.end().ok()?;
    found
}

/// Visits an object for [`str_member`].
struct Member<'n, 'de> {
    name: &'n str,
    found: Option<Cow<'de, str>>,
}

impl<'de> Visitor<'de> for Member<'_, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if key == self.name {
                self.found = map.next_value::<MaybeText<'de>>()?.0;
            } else {
                map.next_value::<Checked>()?;
            }
        }
        Ok(self.found)
    }
}

/// The header's fields the server reads, after checking it is a JSON object that parses
/// as a `serde_json::Value` would (every string, escape and number checked), without
/// building one: no map, no allocation per member.
fn scan_header(raw: &[u8]) -> Result<HeaderInfo, WireError> {
    let fields = scan(raw, false)?;
    let text = |f: Option<Cow<'_, str>>| f.map(Cow::into_owned).unwrap_or_default();
    Ok(HeaderInfo {
        msg_id: text(fields.msg_id),
        msg_type: text(fields.msg_type),
        session: text(fields.session),
    })
}

/// One checked pass over a header; with `usernames`, also where its `username` values lie.
fn scan(raw: &[u8], usernames: bool) -> Result<FieldScan<'_>, WireError> {
    let bad = |e: serde_json::Error| WireError::BadHeader(e.to_string());
    let mut de = serde_json::Deserializer::from_slice(raw);
    let scan = FieldScan {
        input: usernames.then_some(raw),
        ..FieldScan::default()
    };
    let fields = de.deserialize_map(scan).map_err(bad)?;
    de.end().map_err(bad)?;
    Ok(fields)
}

/// One pass over a JSON object: the string values of `msg_id`, `msg_type` and `session`
/// (the last one wins, as in a parsed map; `None` when not a string), and, when `input` is
/// given, the byte ranges of the `username` values in it.
#[derive(Default)]
struct FieldScan<'de> {
    input: Option<&'de [u8]>,
    msg_id: Option<Cow<'de, str>>,
    msg_type: Option<Cow<'de, str>>,
    session: Option<Cow<'de, str>>,
    usernames: Vec<Range<usize>>,
    members: usize,
}

impl<'de> Visitor<'de> for FieldScan<'de> {
    type Value = Self;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self, A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            self.members += 1;
            match key.as_ref() {
                "msg_id" => self.msg_id = map.next_value::<MaybeText<'de>>()?.0,
                "msg_type" => self.msg_type = map.next_value::<MaybeText<'de>>()?.0,
                "session" => self.session = map.next_value::<MaybeText<'de>>()?.0,
                "username" if self.input.is_some() => {
                    let value: &'de RawValue = map.next_value()?;
                    // Checked as strictly as any other member, though it is replaced.
                    serde_json::from_str::<Checked>(value.get()).map_err(A::Error::custom)?;
                    let range = self
                        .input
                        .and_then(|input| span_in(input, value.get().as_bytes()))
                        .ok_or_else(|| A::Error::custom("raw value outside its input"))?;
                    self.usernames.push(range);
                }
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(self)
    }
}

/// Where `part` (a slice borrowed from `input`) lies in `input`.
fn span_in(input: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= input.len()).then_some(start..end)
}

/// A JSON string, borrowed from the input unless it had escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, checked as `serde_json::Value` would parse it; `Some` when it is a string.
struct MaybeText<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for MaybeText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue(PhantomData))
    }
}

/// Any JSON value, checked as `serde_json::Value` would parse it and then dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue(PhantomData))?;
        Ok(Checked)
    }
}

/// Visits any value the way `serde_json::Value`'s visitor does (so the same inputs are
/// refused), keeping only a string.
struct AnyValue<'de>(PhantomData<&'de ()>);

impl<'de> Visitor<'de> for AnyValue<'de> {
    type Value = MaybeText<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeText(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(d)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeText(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeText(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(MaybeText(Some(Cow::Owned(v))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(MaybeText(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Keys are strings (`Value` keeps them as `String`); values anything.
        while map.next_key::<Text<'de>>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(MaybeText(None))
    }
}

/// Check that `raw` is a JSON object that parses as a `serde_json::Value` would (every
/// string, escape and number checked), without building one; the error says what it is
/// instead.
pub fn check_object(raw: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.deserialize_map(ObjectCheck)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

/// Visits an object for [`check_object`].
struct ObjectCheck;

impl<'de> Visitor<'de> for ObjectCheck {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<Text<'de>>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(())
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Message {
    /// Build a message from its parts; the header must be a JSON object.
    pub fn from_parts(
        header: Bytes,
        parent_header: Bytes,
        metadata: Bytes,
        content: Bytes,
        buffers: Vec<Bytes>,
    ) -> Result<Self, WireError> {
        let info = scan_header(&header)?;
        Ok(Message {
            identities: Vec::new(),
            header,
            parent_header,
            metadata,
            content,
            buffers,
            info,
        })
    }

    /// A new message created by the server itself (status pushes, refusals).
    pub fn new_server_message(
        msg_type: &str,
        session: &str,
        username: &str,
        parent_header: Bytes,
        content: Value,
    ) -> Self {
        let header = serde_json::json!({
            "msg_id": uuid::Uuid::new_v4().simple().to_string(),
            "msg_type": msg_type,
            "username": username,
            "session": session,
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "version": "5.3",
        });
        let info = HeaderInfo {
            msg_id: header["msg_id"].as_str().unwrap_or_default().to_string(),
            msg_type: msg_type.to_string(),
            session: session.to_string(),
        };
        Message {
            identities: Vec::new(),
            header: Bytes::from(header.to_string()),
            parent_header,
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from(content.to_string()),
            buffers: Vec::new(),
            info,
        }
    }

    /// Parse and verify a multipart message received from a kernel.
    pub fn from_frames(frames: Vec<Bytes>, signer: &Signer) -> Result<Self, WireError> {
        let split = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let after = frames.len() - split - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames(after));
        }
        let mut rest = frames.into_iter();
        let identities: Vec<Bytes> = rest.by_ref().take(split).collect();
        let _delimiter = rest.next();
        // The length check above guarantees these five frames exist.
        let (Some(signature), Some(header), Some(parent), Some(metadata), Some(content)) = (
            rest.next(),
            rest.next(),
            rest.next(),
            rest.next(),
            rest.next(),
        ) else {
            return Err(WireError::TooFewFrames(after));
        };
        if !signer.verify(&signature, &[&header, &parent, &metadata, &content]) {
            return Err(WireError::BadSignature);
        }
        let mut msg = Message::from_parts(header, parent, metadata, content, rest.collect())?;
        msg.identities = identities;
        Ok(msg)
    }

    /// The multipart frames for sending, signed with `signer`.
    pub fn to_frames(&self, signer: &Signer) -> Vec<Bytes> {
        let signature = signer.sign(&[
            &self.header,
            &self.parent_header,
            &self.metadata,
            &self.content,
        ]);
        let mut frames = Vec::with_capacity(self.identities.len() + 6 + self.buffers.len());
        frames.extend(self.identities.iter().cloned());
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(signature));
        frames.push(self.header.clone());
        frames.push(self.parent_header.clone());
        frames.push(self.metadata.clone());
        frames.push(self.content.clone());
        frames.extend(self.buffers.iter().cloned());
        frames
    }

    /// Set `header.username` (the server's attribution of who sent this). The header's
    /// bytes are kept and only the `username` value is replaced (every occurrence, should
    /// the key be repeated), or, when there is none, the member is added last; the kernel
    /// thus reads the same object a parse, insert and re-serialization would give it.
    pub fn stamp_username(&mut self, username: &str) -> Result<(), WireError> {
        let scanned = scan(&self.header, true)?;
        let (spans, members) = (scanned.usernames, scanned.members);
        let value =
            serde_json::to_string(username).map_err(|e| WireError::BadHeader(e.to_string()))?;
        let header = &self.header[..];
        let mut out = Vec::with_capacity(header.len() + value.len() + 12);
        if spans.is_empty() {
            // A checked JSON object ends with `}` and, at most, whitespace.
            let close = header
                .iter()
                .rposition(|&b| b == b'}')
                .ok_or_else(|| WireError::BadHeader("no closing brace".into()))?;
            out.extend_from_slice(&header[..close]);
            if members > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"username\":");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&header[close..]);
        } else {
            let mut at = 0;
            for span in spans {
                out.extend_from_slice(&header[at..span.start]);
                out.extend_from_slice(value.as_bytes());
                at = span.end;
            }
            out.extend_from_slice(&header[at..]);
        }
        self.header = Bytes::from(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(signer: &Signer) -> Vec<Bytes> {
        let msg = Message::new_server_message(
            "kernel_info_request",
            "s1",
            "alice",
            Bytes::from_static(b"{}"),
            serde_json::json!({}),
        );
        msg.to_frames(signer)
    }

    #[test]
    fn only_json_objects_pass_the_object_check() {
        for ok in [
            &b"{}"[..],
            b" {\"a\": [1, {\"b\": null}]} ",
            b"{\"\\u00e9\": 1.5e3}",
        ] {
            assert_eq!(check_object(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"not json",
            b"[1, 2]",
            b"5",
            b"\"s\"",
            b"null",
            b"{} {}",
            b"{\"a\": 1",
            b"{\"a\": \"\\x\"}",
            b"{1: 2}",
        ] {
            assert!(
                check_object(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn round_trip_and_signature() {
        let signer = Signer::new(b"secret".to_vec());
        let frames = sample(&signer);
        let msg = Message::from_frames(frames.clone(), &signer).unwrap();
        assert_eq!(msg.info.msg_type, "kernel_info_request");
        assert_eq!(msg.info.session, "s1");
        let wrong = Signer::new(b"other".to_vec());
        assert_eq!(
            Message::from_frames(frames, &wrong),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn signature_is_hmac_sha256_and_the_signer_is_reusable() {
        // RFC 4231, test case 2, the data split across frames.
        let signer = Signer::new(b"Jefe".to_vec());
        let parts: [&[u8]; 4] = [b"what do ya ", b"want ", b"for ", b"nothing?"];
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(signer.sign(&parts), expected);
        // Signing does not consume or change the keyed state.
        assert_eq!(signer.sign(&parts), expected);
        assert!(signer.verify(expected.as_bytes(), &parts));
        assert!(signer.verify(expected.to_uppercase().as_bytes(), &parts));
        assert!(!signer.verify(&expected.as_bytes()[..62], &parts));
        assert!(!signer.verify(format!("{expected}00").as_bytes(), &parts));
        assert!(!signer.verify(b"", &parts));
        // An empty key turns signing off, as in jupyter_client.
        let off = Signer::new(Vec::new());
        assert_eq!(off.sign(&parts), "");
        assert!(off.verify(b"anything", &parts));
    }

    #[test]
    fn tampered_content_is_rejected() {
        let signer = Signer::new(b"k".to_vec());
        let mut frames = sample(&signer);
        let n = frames.len();
        frames[n - 1] = Bytes::from_static(b"{\"code\":\"import os\"}");
        assert_eq!(
            Message::from_frames(frames, &signer),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let signer = Signer::new(b"k".to_vec());
        assert_eq!(
            Message::from_frames(vec![], &signer),
            Err(WireError::NoDelimiter)
        );
        assert_eq!(
            Message::from_frames(vec![Bytes::from_static(DELIMITER)], &signer),
            Err(WireError::TooFewFrames(0))
        );
        let mut frames = sample(&signer);
        frames.truncate(frames.len() - 1);
        assert!(Message::from_frames(frames, &signer).is_err());
        // A correctly signed header that is not an object.
        let parts: [&[u8]; 4] = [b"[1]", b"{}", b"{}", b"{}"];
        let sig = signer.sign(&parts);
        let mut frames = vec![Bytes::from_static(DELIMITER), Bytes::from(sig)];
        frames.extend(parts.iter().map(|p| Bytes::copy_from_slice(p)));
        assert!(matches!(
            Message::from_frames(frames, &signer),
            Err(WireError::BadHeader(_))
        ));
        // A signature that is not hex.
        let mut frames = sample(&signer);
        frames[1] = Bytes::from_static(b"zz");
        assert_eq!(
            Message::from_frames(frames, &signer),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn identities_are_kept_and_username_is_stamped() {
        let signer = Signer::new(b"k".to_vec());
        let mut frames = sample(&signer);
        frames.insert(0, Bytes::from_static(b"kernel.1.status"));
        let mut msg = Message::from_frames(frames, &signer).unwrap();
        assert_eq!(msg.identities, vec![Bytes::from_static(b"kernel.1.status")]);
        msg.stamp_username("mallory-not").unwrap();
        msg.stamp_username("bob").unwrap();
        let header = parse_header(&msg.header).unwrap();
        assert_eq!(header["username"], "bob");
        assert_eq!(header["msg_type"], "kernel_info_request");
    }

    /// Headers, good and bad, for checking the scanner against a full `Value` parse.
    const HEADERS: &[&str] = &[
        r#"{"msg_id":"a","msg_type":"execute_request","session":"s","username":"u"}"#,
        r#"{"msg_id": "a", "msg_type": "t", "username": "mallory", "date": "x", "version": "5.3"}"#,
        " \t\r\n{ \"msg_id\" : \"a\" , \"username\" :\n\"x\" } \n",
        "{}",
        " { } ",
        r#"{"msg_type":"status"}"#,
        r#"{"username":null,"msg_id":1,"session":{"nested":[1,2,{"a":"b"}]}}"#,
        r#"{"username":{"a":["b",{"c":"d"}]},"x":1}"#,
        r#"{"a":{"username":"nested"},"b":[{"username":"deeper"}],"msg_id":"x"}"#,
        r#"{"username":"a","username":"b","msg_id":"first","msg_id":"second"}"#,
        r#"{"user\u006eame":"escaped key","msg\u005fid":"\u00e9\n\"q\""}"#,
        r#"{"msg_id":"\ud83d\ude00","x":[1.5e3,-0,true,false,null]}"#,
        r#"{"a":"é","username":"ü","b":"\/"}"#,
        // Refused, as a `Value` parse refuses them.
        "[1]",
        r#"["msg_id","msg_type","session"]"#,
        "\"a string\"",
        "3",
        "null",
        "",
        "{",
        r#"{"a":1,}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}{"b":2}"#,
        r#"{"x":"\ud800"}"#,
        r#"{"username":"\ud800"}"#,
        r#"{"x":1e999}"#,
        r#"{"username":1e999}"#,
        r#"{"x":"\q"}"#,
        "{\"x\":\"a\u{1}b\"}",
        r#"{1:2}"#,
        r#"{"x":01}"#,
    ];

    /// What `from_parts` and `stamp_username` did when they parsed and re-serialized.
    fn reference_info(raw: &[u8]) -> Result<HeaderInfo, ()> {
        parse_header(raw)
            .map(|m| HeaderInfo::from_header(&m))
            .map_err(|_| ())
    }

    #[test]
    fn the_header_scan_accepts_and_reads_what_a_value_parse_does() {
        let mut raw_cases: Vec<Vec<u8>> = HEADERS.iter().map(|h| h.as_bytes().to_vec()).collect();
        // Invalid UTF-8 inside a string, in a read member and in an ignored one.
        raw_cases.push(b"{\"msg_id\":\"\xff\"}".to_vec());
        raw_cases.push(b"{\"other\":\"\xc3\x28\"}".to_vec());
        raw_cases.push(b"{\"username\":\"\xff\"}".to_vec());
        // Nesting deeper than serde_json's recursion limit.
        raw_cases.push(format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200)).into_bytes());
        for raw in &raw_cases {
            let ours = scan_header(raw).map_err(|_| ());
            assert_eq!(
                ours,
                reference_info(raw),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(
                scan(raw, true).is_ok(),
                ours.is_ok(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn stamping_gives_the_kernel_what_parse_insert_serialize_gave() {
        for name in ["bob", "", "we\"ird\\name\u{7}", "zoë"] {
            for raw in HEADERS {
                let mut msg = Message {
                    identities: Vec::new(),
                    header: Bytes::copy_from_slice(raw.as_bytes()),
                    parent_header: Bytes::from_static(b"{}"),
                    metadata: Bytes::from_static(b"{}"),
                    content: Bytes::from_static(b"{}"),
                    buffers: Vec::new(),
                    info: HeaderInfo::default(),
                };
                let expected = parse_header(raw.as_bytes()).map(|mut m| {
                    m.insert("username".into(), Value::String(name.into()));
                    m
                });
                match (msg.stamp_username(name), expected) {
                    (Ok(()), Ok(expected)) => {
                        // The same object, member order included.
                        let got = parse_header(&msg.header).expect("stamped header parses");
                        let got: Vec<_> = got.into_iter().collect();
                        let expected: Vec<_> = expected.into_iter().collect();
                        assert_eq!(got, expected, "{raw}");
                    }
                    (Err(_), Err(_)) => assert_eq!(msg.header.as_ref(), raw.as_bytes()),
                    (ours, theirs) => panic!("{raw}: {ours:?} vs {:?}", theirs.is_ok()),
                }
            }
        }
    }

    #[test]
    fn stamping_keeps_the_other_bytes() {
        let stamped = |raw: &'static [u8]| {
            let mut msg = Message::from_parts(
                Bytes::from_static(raw),
                Bytes::from_static(b"{}"),
                Bytes::from_static(b"{}"),
                Bytes::from_static(b"{}"),
                Vec::new(),
            )
            .unwrap();
            msg.stamp_username("bob").unwrap();
            assert_eq!(msg.info.msg_id, "a");
            msg.header
        };
        assert_eq!(
            stamped(
                b" {\"msg_id\": \"a\",  \"username\" : \"mallory\" , \"x\": [1.50, \"\\u00e9\"]} "
            )
            .as_ref(),
            b" {\"msg_id\": \"a\",  \"username\" : \"bob\" , \"x\": [1.50, \"\\u00e9\"]} "
        );
        assert_eq!(
            stamped(b"{\"msg_id\": \"a\"}\n").as_ref(),
            b"{\"msg_id\": \"a\",\"username\":\"bob\"}\n"
        );
    }

    #[test]
    fn parent_msg_id_reads_only_objects() {
        assert_eq!(parent_msg_id(b"{\"msg_id\":\"a\"}"), Some("a".into()));
        assert_eq!(parent_msg_id(b"{}"), None);
        assert_eq!(parent_msg_id(b"[]"), None);
        assert_eq!(parent_msg_id(b"not json"), None);
        assert_eq!(parent_msg_id(b"[\"a\"]"), None);
        assert_eq!(parent_msg_id(b"{\"msg_id\":3}"), None);
        assert_eq!(
            parent_msg_id(b"{\"msg_id\":\"a\",\"msg_id\":\"b\"}"),
            Some("b".into())
        );
        assert_eq!(parent_msg_id(b"{\"msg_id\":\"a\"} x"), None);
        assert_eq!(parent_msg_id(b"{\"msg_id\":\"a\",\"x\":\"\\ud800\"}"), None);
        assert_eq!(
            parent_msg_id(b"{\"m\\u0073g_id\":\"\\u00e9\"}"),
            Some("é".into())
        );
        let status = |raw: &[u8]| str_member(raw, "execution_state").map(Cow::into_owned);
        assert_eq!(
            status(b"{\"execution_state\": \"idle\"}"),
            Some("idle".into())
        );
        assert_eq!(status(b"{\"execution_state\": [\"idle\"]}"), None);
        assert_eq!(status(b"[\"idle\"]"), None);
        assert_eq!(status(b"{\"other\": \"idle\"}"), None);
    }
}
