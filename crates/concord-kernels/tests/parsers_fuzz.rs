//! Fuzz targets, run as bounded property tests: every parser of what a client or a kernel
//! sends — the websocket frame codecs (legacy JSON and v1 binary), the ZMTP decoder and the
//! wire message parser — gets arbitrary and mutated input and must neither panic nor hang,
//! and what it encodes it must decode back unchanged.
//!
//! (`cargo fuzz` needs a nightly toolchain; these run on stable in `cargo nextest`, a few
//! seconds in all. `PROPTEST_CASES=100000` runs them longer.)

use bytes::{Bytes, BytesMut};
use concord_kernels::wire::{self, Message, Signer};
use concord_kernels::ws::{self, Channel, WsFrame, WsProtocol};
use concord_kernels::zmtp::{self, Decoded, Decoder, SocketType};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// JSON values of every kind (numbers that round-trip exactly).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((".{0,6}", inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    vec(("[a-z_]{1,8}", json_value()), 0..4).prop_map(|kv| kv.into_iter().collect())
}

/// A Jupyter message as a client or a kernel would send it.
fn message() -> impl Strategy<Value = Message> {
    (
        "[0-9a-f]{1,32}",
        "[a-z_]{1,20}",
        ".{0,16}",
        json_object(),
        json_object(),
        json_object(),
        json_object(),
        vec(vec(any::<u8>(), 0..64), 0..3),
    )
        .prop_map(
            |(msg_id, msg_type, session, extra, parent, metadata, content, buffers)| {
                let mut header = extra;
                header.insert("msg_id".into(), msg_id.into());
                header.insert("msg_type".into(), msg_type.into());
                header.insert("session".into(), session.into());
                let bytes = |m: Map<String, Value>| Bytes::from(Value::Object(m).to_string());
                Message::from_parts(
                    bytes(header),
                    bytes(parent),
                    bytes(metadata),
                    bytes(content),
                    buffers.into_iter().map(Bytes::from).collect(),
                )
                .expect("a JSON object header")
            },
        )
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::Shell),
        Just(Channel::Control),
        Just(Channel::Stdin),
        Just(Channel::Iopub),
    ]
}

fn protocol() -> impl Strategy<Value = WsProtocol> {
    prop_oneof![Just(WsProtocol::Legacy), Just(WsProtocol::V1)]
}

fn as_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("a JSON part")
}

/// Two messages carry the same JSON parts (the legacy format re-serialises them) and the
/// same buffers.
fn same_message(a: &Message, b: &Message) -> bool {
    as_json(&a.header) == as_json(&b.header)
        && as_json(&a.parent_header) == as_json(&b.parent_header)
        && as_json(&a.metadata) == as_json(&b.metadata)
        && as_json(&a.content) == as_json(&b.content)
        && a.buffers == b.buffers
        && a.info == b.info
}

/// Some bytes of `data` changed, cut or repeated, as a broken or hostile peer sends them.
fn mutate(data: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = data.to_vec();
    for &(at, kind, byte) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let at = at % out.len();
        match kind % 4 {
            0 => out[at] = byte,
            1 => out.truncate(at),
            2 => out.insert(at, byte),
            _ => {
                let tail = out[at..].to_vec();
                out.extend_from_slice(&tail);
            }
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // ---- websocket frame codecs ----------------------------------------------------------

    #[test]
    fn ws_decode_of_what_encode_wrote_is_the_message(
        ch in channel(),
        msg in message(),
        protocol in protocol(),
    ) {
        let frame = ws::encode(ch, &msg, protocol);
        let (got_channel, got) = ws::decode(&frame, protocol).expect("decodes");
        prop_assert_eq!(got_channel, ch);
        prop_assert!(same_message(&got, &msg), "{:?}\n{:?}", got, msg);
    }

    #[test]
    fn ws_decode_survives_mutated_frames(
        ch in channel(),
        msg in message(),
        protocol in protocol(),
        edits in edits(),
    ) {
        let bytes = match ws::encode(ch, &msg, protocol) {
            WsFrame::Text(t) => t.into_bytes(),
            WsFrame::Binary(b) => b.to_vec(),
        };
        let broken = mutate(&bytes, &edits);
        let _ = ws::decode(&WsFrame::Binary(Bytes::from(broken.clone())), protocol);
        if let Ok(text) = String::from_utf8(broken) {
            let _ = ws::decode(&WsFrame::Text(text), protocol);
        }
    }

    #[test]
    fn ws_decode_survives_arbitrary_frames(
        data in vec(any::<u8>(), 0..256),
        text in ".{0,64}",
        protocol in protocol(),
    ) {
        let _ = ws::decode(&WsFrame::Binary(Bytes::from(data)), protocol);
        let _ = ws::decode(&WsFrame::Text(text), protocol);
    }

    // ---- the wire message parser ------------------------------------------------------------

    #[test]
    fn wire_from_frames_of_to_frames_is_the_message(
        msg in message(),
        identities in vec(vec(any::<u8>(), 1..8), 0..3),
    ) {
        let signer = Signer::new(b"fuzz-key".to_vec());
        let mut msg = msg;
        msg.identities = identities.into_iter().map(Bytes::from).collect();
        let back = Message::from_frames(msg.to_frames(&signer), &signer).expect("parses");
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn wire_from_frames_survives_arbitrary_signed_frames(
        header in vec(any::<u8>(), 0..64),
        header_text in ".{0,48}",
        parts in vec(vec(any::<u8>(), 0..32), 0..9),
        delimiter_at in any::<usize>(),
    ) {
        let signer = Signer::new(b"k".to_vec());
        for header in [Bytes::from(header.clone()), Bytes::from(header_text.clone())] {
            let rest: Vec<Bytes> = parts.iter().cloned().map(Bytes::from).collect();
            // Correctly signed, so the parser goes on to the header.
            let signature = signer.sign(&[&header, b"{}", b"{}", b"{}"]);
            let mut frames = vec![
                Bytes::from_static(b"<IDS|MSG>"),
                Bytes::from(signature),
                header.clone(),
                Bytes::from_static(b"{}"),
                Bytes::from_static(b"{}"),
                Bytes::from_static(b"{}"),
            ];
            frames.extend(rest.iter().cloned());
            let _ = Message::from_frames(frames, &signer);
            // Arbitrary frames with the delimiter anywhere.
            let mut frames = rest;
            let at = delimiter_at % (frames.len() + 1);
            frames.insert(at, Bytes::from_static(b"<IDS|MSG>"));
            let _ = Message::from_frames(frames, &signer);
            let _ = wire::parse_header(&header);
            let _ = wire::parent_msg_id(&header);
            let _ = wire::str_member(&header, "msg_id");
        }
    }

    #[test]
    fn wire_stamped_username_is_the_only_username(
        msg in message(),
        username in ".{0,16}",
        repeated in any::<bool>(),
    ) {
        let mut msg = msg;
        if repeated {
            // A header whose `username` member is written twice (JSON allows it).
            let text = String::from_utf8(msg.header.to_vec()).unwrap();
            let text = format!("{{\"username\": 1, \"username\": \"x\", {}", &text[1..]);
            let text = text.replace(", }", "}");
            msg.header = Bytes::from(text);
        }
        let before: Map<String, Value> = match serde_json::from_slice(&msg.header) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        msg.stamp_username(&username).expect("stamps a JSON object");
        let after: Map<String, Value> = serde_json::from_slice(&msg.header).expect("still JSON");
        prop_assert_eq!(after.get("username"), Some(&Value::String(username)));
        for (k, v) in &before {
            if k != "username" {
                prop_assert_eq!(after.get(k), Some(v));
            }
        }
    }

    #[test]
    fn wire_stamp_survives_arbitrary_headers(
        header in ".{0,64}",
        raw in vec(any::<u8>(), 0..64),
    ) {
        for h in [Bytes::from(header.clone()), Bytes::from(raw.clone())] {
            if let Ok(mut msg) = Message::from_parts(
                h,
                Bytes::new(),
                Bytes::new(),
                Bytes::new(),
                Vec::new(),
            ) {
                let _ = msg.stamp_username("u");
            }
        }
    }

    // ---- the ZMTP decoder ------------------------------------------------------------------

    #[test]
    fn zmtp_decodes_what_was_encoded_however_it_arrives(
        messages in vec(vec(vec(any::<u8>(), 0..300), 1..5), 0..5),
        cuts in vec(1usize..200, 1..20),
    ) {
        let mut stream = peer_greeting();
        stream.extend(zmtp::encode_ready(SocketType::Dealer, None));
        let messages: Vec<Vec<Bytes>> = messages
            .into_iter()
            .map(|m| m.into_iter().map(Bytes::from).collect())
            .collect();
        for m in &messages {
            stream.extend(zmtp::encode_message(m));
        }
        let (items, error) = decode_in_pieces(&stream, &cuts);
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(&items[0], &Decoded::Greeting);
        let ready = matches!(&items[1], Decoded::Command { name, .. } if &name[..] == b"READY");
        prop_assert!(ready, "{:?}", items[1]);
        let got: Vec<Vec<Bytes>> = items[2..]
            .iter()
            .map(|i| match i {
                Decoded::Message(frames) => frames.clone(),
                other => panic!("not a message: {other:?}"),
            })
            .collect();
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn zmtp_decoder_survives_arbitrary_and_mutated_streams(
        frames in vec(vec(any::<u8>(), 0..40), 1..4),
        noise in vec(any::<u8>(), 0..300),
        edits in edits(),
        cuts in vec(1usize..64, 1..12),
    ) {
        let mut valid = peer_greeting();
        valid.extend(zmtp::encode_ready(SocketType::Dealer, Some(b"id")));
        let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
        valid.extend(zmtp::encode_message(&frames));
        let mut after_greeting = peer_greeting();
        after_greeting.extend(&noise);
        for stream in [mutate(&valid, &edits), after_greeting, noise.clone()] {
            // However the bytes are cut, the decoder finds the same items and the same error.
            let whole = decode_in_pieces(&stream, &[usize::MAX]);
            let pieces = decode_in_pieces(&stream, &cuts);
            prop_assert_eq!(whole, pieces);
        }
        let _ = zmtp::check_greeting(&noise);
        let _ = zmtp::ready_property(&noise, "Socket-Type");
        let _ = zmtp::ready_property(&noise, "Identity");
    }
}

/// The greeting of a peer that acts as the server side (ipykernel binds).
fn peer_greeting() -> Vec<u8> {
    let mut g = zmtp::greeting().to_vec();
    g[32] = 1;
    g
}

/// Feed `stream` to a decoder in pieces of the sizes in `cuts` (cycled); the items it found
/// and the error it stopped at, if any.
fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> (Vec<Decoded>, Option<String>) {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = stream;
    let mut sizes = cuts.iter().cycle();
    loop {
        loop {
            let _ = decoder.wanted(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e.to_string())),
            }
        }
        if rest.is_empty() {
            return (items, None);
        }
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}
