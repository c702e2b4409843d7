//! CPU cost of the kernel websocket <-> ZMQ message path, per message, without I/O: what the
//! server does to each message of an `execute_request("pass")` round trip.
//!
//! Run: `cargo bench -p concord-kernels --bench wire`. Prints lines like
//! `wire.inbound.execute_request_ns 2500` (the fastest batch).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use concord_kernels::wire::{Message, Signer};
use concord_kernels::ws::{decode, encode, Channel, WsFrame, WsProtocol};

/// A header as jupyter_client writes it (Python's `json.dumps` separators).
fn header(msg_id: &str, msg_type: &str, username: &str) -> String {
    format!(
        "{{\"msg_id\": \"{msg_id}\", \"msg_type\": \"{msg_type}\", \"username\": \"{username}\", \
         \"session\": \"5f0a4bd2c0e34e5f9e1f8a3b2c1d0e9f\", \"date\": \"2026-01-01T00:00:00.123456Z\", \
         \"version\": \"5.3\"}}"
    )
}

/// A v1 frame from a client (as bench/kernels.py and JupyterLab send it).
fn client_frame(channel: &str, parts: [&[u8]; 4]) -> Bytes {
    let mut offsets = vec![8 * 7, 8 * 7 + channel.len()];
    for p in parts {
        offsets.push(offsets[offsets.len() - 1] + p.len());
    }
    let mut out = (offsets.len() as u64).to_le_bytes().to_vec();
    for o in offsets {
        out.extend_from_slice(&(o as u64).to_le_bytes());
    }
    out.extend_from_slice(channel.as_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

/// Multipart frames from the kernel, signed.
fn kernel_frames(signer: &Signer, topic: Option<&str>, parts: [&[u8]; 4]) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = topic
        .map(|t| Bytes::copy_from_slice(t.as_bytes()))
        .into_iter()
        .collect();
    frames.push(Bytes::from_static(b"<IDS|MSG>"));
    frames.push(Bytes::from(signer.sign(&parts)));
    frames.extend(parts.iter().map(|p| Bytes::copy_from_slice(p)));
    frames
}

/// Nanoseconds per call of `f`: the fastest of many batches, since the machine may be shared
/// and a batch that was preempted says nothing about the code.
fn measure(mut f: impl FnMut()) -> f64 {
    const BATCH: u32 = 2_000;
    for _ in 0..BATCH {
        f();
    }
    let mut per_call: Vec<f64> = (0..101)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[0]
}

fn main() {
    let signer = Signer::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let req_id = "3c8e2f0a9b1d4e7f8a6b5c4d3e2f1a0b";
    let request_header = header(req_id, "execute_request", "mallory");
    let request = client_frame(
        "shell",
        [
            request_header.as_bytes(),
            b"{}",
            b"{}",
            b"{\"code\": \"pass\", \"silent\": false, \"store_history\": false}",
        ],
    );
    let inbound = measure(|| {
        let frame = WsFrame::Binary(black_box(request.clone()));
        let (_, mut msg) = decode(&frame, WsProtocol::V1).expect("valid frame");
        msg.stamp_username("alice").expect("object header");
        black_box(msg.to_frames(&signer));
    });
    println!("wire.inbound.execute_request_ns {inbound:.0}");

    let topic = "kernel.6a1f9c3e-2b4d-4e8f-9a0b-1c2d3e4f5a6b.status";
    let replies: [(&str, Option<&str>, String); 4] = [
        (
            "status_busy",
            Some(topic),
            "{\"execution_state\": \"busy\"}".to_string(),
        ),
        (
            "execute_input",
            Some("kernel.6a1f9c3e-2b4d-4e8f-9a0b-1c2d3e4f5a6b.execute_input"),
            "{\"code\": \"pass\", \"execution_count\": 7}".to_string(),
        ),
        (
            "execute_reply",
            None,
            "{\"status\": \"ok\", \"execution_count\": 7, \"user_expressions\": {}, \
             \"payload\": []}"
                .to_string(),
        ),
        (
            "status_idle",
            Some(topic),
            "{\"execution_state\": \"idle\"}".to_string(),
        ),
    ];
    let mut total = 0.0;
    for (name, topic, content) in &replies {
        let msg_type = name.split('_').next().unwrap_or(name);
        let msg_type = if msg_type == "execute" {
            *name
        } else {
            msg_type
        };
        let h = header(&format!("d1e2f3a4-b5c6d7e8_{name}_1"), msg_type, "kernel");
        let metadata: &[u8] = if *name == "execute_reply" {
            b"{\"started\": \"2026-01-01T00:00:00.123456Z\", \"dependencies_met\": true, \
              \"engine\": \"0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e\", \"status\": \"ok\"}"
        } else {
            b"{}"
        };
        let frames = kernel_frames(
            &signer,
            *topic,
            [
                h.as_bytes(),
                request_header.as_bytes(),
                metadata,
                content.as_bytes(),
            ],
        );
        let channel = if topic.is_some() {
            Channel::Iopub
        } else {
            Channel::Shell
        };
        let ns = measure(|| {
            let msg = Message::from_frames(black_box(frames.clone()), &signer).expect("valid");
            black_box(encode(channel, &msg, WsProtocol::V1));
        });
        total += ns;
        println!("wire.outbound.{name}_ns {ns:.0}");
    }
    println!("wire.execute_round_trip_ns {:.0}", inbound + total);
}
