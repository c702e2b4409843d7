//! What outside input may cost and how it is refused: names too long for the file system,
//! request bodies (a limit read from the header, uploads streamed to disk within a memory
//! bound), connections that never finish their headers, bare-LF requests, `/files/` served
//! as a stream, and the temp files of saves interrupted by a crash.

use crate::common;

use reqwest::Method;
use serde_json::{json, Value};

async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A name longer than the file system allows (255 bytes on Linux) and a path longer than
/// `PATH_MAX` are the client's mistake: 400 with a message naming the problem, never a 500,
/// whichever operation meets them.
#[tokio::test]
async fn names_too_long_for_the_file_system_are_a_400() {
    let b = common::server();
    std::fs::write(b.root().join("src.txt"), "src").unwrap();
    std::fs::create_dir(b.root().join("dir")).unwrap();
    // Its copy's name (`…-Copy1.txt`) is one byte too long.
    let near_limit = format!("{}.txt", "n".repeat(250));
    std::fs::write(b.root().join(&near_limit), "near").unwrap();
    let near_limit_dir = "m".repeat(252);
    std::fs::create_dir(b.root().join(&near_limit_dir)).unwrap();
    let s = b.start();
    let owner = s.owner();
    let api = |p: &str| s.url(&format!("api/contents/{p}"));
    let long = "a".repeat(300);
    let deep = vec!["d".repeat(200); 50].join("/");
    let notebook = json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "create a file",
            Method::PUT,
            api(&format!("{long}.txt")),
            Some(json!({"type": "file", "format": "text", "content": "x"})),
        ),
        (
            "create a file under a very long path",
            Method::PUT,
            api(&format!("{deep}.txt")),
            Some(json!({"type": "file", "format": "text", "content": "x"})),
        ),
        (
            "save a notebook",
            Method::PUT,
            api(&format!("{long}.ipynb")),
            Some(json!({"type": "notebook", "content": notebook})),
        ),
        (
            "mkdir",
            Method::PUT,
            api(&long),
            Some(json!({"type": "directory"})),
        ),
        (
            "mkdir under a very long path",
            Method::PUT,
            api(&deep),
            Some(json!({"type": "directory"})),
        ),
        (
            "upload",
            Method::PUT,
            api(&format!("{long}.bin")),
            Some(json!({"type": "file", "format": "base64", "content": "aGk="})),
        ),
        (
            "chunked upload, first chunk",
            Method::PUT,
            api(&format!("{long}.bin")),
            Some(json!({"type": "file", "format": "base64", "content": "aGk=", "chunk": 1})),
        ),
        (
            "chunked upload, last chunk",
            Method::PUT,
            api(&format!("{long}.bin")),
            Some(json!({"type": "file", "format": "base64", "content": "aGk=", "chunk": -1})),
        ),
        (
            "rename",
            Method::PATCH,
            api("src.txt"),
            Some(json!({"path": format!("{long}.txt")})),
        ),
        (
            "move under a very long path",
            Method::PATCH,
            api("src.txt"),
            Some(json!({"path": format!("{deep}.txt")})),
        ),
        (
            "copy",
            Method::POST,
            api("dir"),
            Some(json!({"copy_from": near_limit})),
        ),
        (
            "copy a directory",
            Method::POST,
            api(""),
            Some(json!({"copy_from": near_limit_dir})),
        ),
    ];
    for (what, method, url, body) in cases {
        let (status, answer) = send(&owner, method, &url, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("File name too long"),
            "{what}: {answer}"
        );
        assert!(answer.get("reason").is_some(), "{what}: {answer}");
        assert!(
            !message.contains(s.root().to_str().unwrap()),
            "{what}: the message names the server's directory: {message}"
        );
    }
    // A sibling: a path through a file is a missing parent (404, as where nothing is).
    for (method, url, body, named) in [
        (
            Method::PUT,
            api("src.txt/x.txt"),
            json!({"type": "file", "format": "text", "content": "x"}),
            "src.txt/x.txt",
        ),
        (
            Method::PUT,
            api("src.txt/x"),
            json!({"type": "directory"}),
            "src.txt/x",
        ),
        (
            Method::PATCH,
            api("src.txt"),
            json!({"path": "src.txt/y.txt"}),
            "src.txt/y.txt",
        ),
    ] {
        let (status, answer) = send(&owner, method.clone(), &url, Some(body)).await;
        assert_eq!(status, 404, "{method} {url}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("No such parent directory: src.txt"),
            "{method} {url} ({named}): {answer}"
        );
    }
    // Nothing was half-done: the source is still there, nothing new appeared.
    assert_eq!(
        std::fs::read_to_string(s.root().join("src.txt")).unwrap(),
        "src"
    );
    let mut names: Vec<String> = std::fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = ["dir", &near_limit_dir, &near_limit, "src.txt"];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(std::fs::read_dir(s.root().join("dir")).unwrap().count(), 0);
}

/// Guards against a hang only; nothing asserts on durations.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Send `request` as raw bytes on a new connection; returns everything the server sent
/// until it closed the connection, or `None` if it was still open after [`PATIENCE`].
async fn raw_exchange(s: &common::Server, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.host()).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// A `Content-Length` above `--max-body-size` is refused from the header, as the body
/// starts (413 with the API's JSON error); nothing waits for the announced bytes.
#[tokio::test]
async fn a_body_announced_too_large_is_refused_before_it_is_read() {
    let s = common::server()
        .args(&["--max-body-size", "1000000"])
        .start();
    let token = s.token.clone().unwrap();
    let host = s.host();
    for (what, auth) in [
        ("authenticated", format!("Authorization: token {token}\r\n")),
        ("anonymous", String::new()),
    ] {
        // Only the first byte of the 9 GB body is ever sent.
        let request = format!(
            "PUT /api/contents/big.txt HTTP/1.1\r\nHost: {host}\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 9000000000\r\n\r\n{{"
        );
        let response = raw_exchange(&s, request.as_bytes())
            .await
            .unwrap_or_else(|| panic!("{what}: no answer while the body was not sent"));
        assert!(response.starts_with("HTTP/1.1 413 "), "{what}: {response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let error: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            error["message"],
            "Request body of 9000000000 bytes is larger than the server accepts \
             (--max-body-size 1000000)",
            "{what}"
        );
        assert_eq!(error["reason"], Value::Null, "{what}");
    }
    // A body within the limit is read as before.
    let (status, _) = send(
        &s.owner(),
        Method::PUT,
        &s.url("api/contents/small.txt"),
        Some(json!({"type": "file", "format": "text", "content": "small"})),
    )
    .await;
    assert_eq!(status, 201);
    assert!(!s.root().join("big.txt").exists());
}

/// A connection that does not finish its request head within `--header-timeout` is closed
/// (hyper's header read timeout, which axum's own server never armed), as is one that
/// sends nothing; a complete request still gets its answer.
#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let s = common::server().args(&["--header-timeout", "1"]).start();
    let host = s.host();
    let partial = format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n");
    for (what, request) in [("half a head", partial.as_bytes()), ("nothing", &b""[..])] {
        let response = raw_exchange(&s, request).await;
        assert_eq!(
            response.as_deref(),
            Some(""),
            "{what}: the connection must be closed without an answer"
        );
    }
    let token = s.token.clone().unwrap();
    let whole = format!(
        "GET /api/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n\
         Connection: close\r\n\r\n"
    );
    let response = raw_exchange(&s, whole.as_bytes()).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
}

/// The stance on line endings (docs/deployment.md): a request head whose lines end in a
/// bare LF is read as RFC 9112 §2.2 allows (as jupyter_server reads it); a bare CR, a folded
/// header line and a bare LF in chunked framing are refused with a 400, so nothing past the
/// head depends on how leniently a proxy in front reads line ends.
#[tokio::test]
async fn line_endings_are_read_as_documented() {
    let s = common::server().start();
    let token = s.token.clone().unwrap();
    let host = s.host();
    let bare_lf = format!(
        "GET /api/status HTTP/1.1\nHost: {host}\nAuthorization: token {token}\nConnection: close\n\n"
    );
    let response = raw_exchange(&s, bare_lf.as_bytes()).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 "),
        "every bare-LF line is a header line of its own: {response}"
    );
    let refused = [
        (
            "bare CR",
            format!(
                "GET /api/status HTTP/1.1\r\nHost: {host}\rAuthorization: token {token}\r\n\
                 Connection: close\r\n\r\n"
            ),
        ),
        (
            "folded header",
            format!(
                "GET /api/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: token\r\n {token}\r\n\
                 Connection: close\r\n\r\n"
            ),
        ),
        (
            "bare LF after a chunk size",
            format!(
                "PUT /api/contents/chunked.txt HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: token {token}\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n2\n{{}}\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (what, request) in refused {
        let response = raw_exchange(&s, request.as_bytes()).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400 "), "{what}: {response}");
    }
    assert!(!s.root().join("chunked.txt").exists());
}

/// The server's resident memory, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `/files/` answers as jupyter_server's file handler (tornado's `StaticFileHandler`) does:
/// the same status, body and headers for plain requests, downloads, notebooks, byte ranges
/// (one range; 206, 416, or the whole file), `If-Modified-Since` (304) and `HEAD`.
#[tokio::test]
async fn files_answer_with_jupyter_servers_headers() {
    let s = common::server().start();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(s.root().join("data.bin"), &data).unwrap();
    std::fs::write(s.root().join("a.txt"), "hello world\n").unwrap();
    std::fs::write(s.root().join("empty.txt"), "").unwrap();
    std::fs::write(
        s.root().join("nb.ipynb"),
        r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
    )
    .unwrap();
    // Both serve the same directory, so modification times agree.
    let j = common::jupyter::Jupyter::start(s.root(), &[]);
    let (concord, jupyter) = (s.owner(), j.client());
    let compared = [
        "content-type",
        "content-length",
        "content-range",
        "content-disposition",
        "accept-ranges",
        "cache-control",
        "last-modified",
        "etag",
    ];
    let future = "Tue, 01 Jan 2036 00:00:00 GMT";
    let past = "Mon, 01 Jan 1990 00:00:00 GMT";
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Method, Headers)> = vec![
        ("data.bin", Method::GET, vec![]),
        ("a.txt", Method::GET, vec![]),
        ("a.txt?download=1", Method::GET, vec![]),
        ("a.txt?v=1", Method::GET, vec![]),
        ("empty.txt", Method::GET, vec![]),
        ("nb.ipynb", Method::GET, vec![]),
        ("data.bin", Method::HEAD, vec![]),
        ("data.bin", Method::GET, vec![("range", "bytes=2-5")]),
        ("data.bin", Method::GET, vec![("range", "bytes=99990-")]),
        (
            "data.bin",
            Method::GET,
            vec![("range", "bytes=99990-200000")],
        ),
        ("data.bin", Method::GET, vec![("range", "bytes=-10")]),
        ("data.bin", Method::GET, vec![("range", "bytes=-200000")]),
        ("data.bin", Method::GET, vec![("range", "bytes=0-")]),
        ("data.bin", Method::GET, vec![("range", "bytes=0-99999")]),
        ("data.bin", Method::GET, vec![("range", "bytes=200000-")]),
        ("data.bin", Method::GET, vec![("range", "bytes=5-2")]),
        ("data.bin", Method::GET, vec![("range", "bytes=-0")]),
        ("data.bin", Method::GET, vec![("range", "bytes=")]),
        ("data.bin", Method::GET, vec![("range", "bytes=0-1,3-4")]),
        ("data.bin", Method::GET, vec![("range", "items=0-1")]),
        ("data.bin", Method::GET, vec![("range", "bytes=x-1")]),
        ("empty.txt", Method::GET, vec![("range", "bytes=0-")]),
        ("data.bin", Method::GET, vec![("if-modified-since", future)]),
        ("data.bin", Method::GET, vec![("if-modified-since", past)]),
        (
            "data.bin",
            Method::GET,
            vec![("if-modified-since", "yesterday")],
        ),
        (
            "data.bin",
            Method::GET,
            vec![("if-modified-since", future), ("if-none-match", "\"x\"")],
        ),
        (
            "data.bin",
            Method::GET,
            vec![("if-modified-since", past), ("range", "bytes=1-2")],
        ),
    ];
    for (path, method, headers) in cases {
        let mut answers = Vec::new();
        for (client, url) in [
            (&concord, s.url(&format!("files/{path}"))),
            (&jupyter, j.url(&format!("files/{path}"))),
        ] {
            let mut req = client.request(method.clone(), url);
            for (name, value) in &headers {
                req = req.header(*name, *value);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let shown: Vec<(&str, Option<String>)> = compared
                .iter()
                .map(|h| {
                    let value = resp
                        .headers()
                        .get(*h)
                        .map(|v| v.to_str().unwrap().to_string());
                    (*h, value)
                })
                .collect();
            let body = resp.bytes().await.unwrap();
            answers.push((status, shown, body));
        }
        let what = format!("{method} {path} {headers:?}");
        assert_eq!(answers[0].0, answers[1].0, "status of {what}");
        assert_eq!(answers[0].1, answers[1].1, "headers of {what}");
        assert!(answers[0].2 == answers[1].2, "body of {what}");
    }
}

/// A download is streamed: the server holds a few chunks of it, not the file, however
/// large the file and however slowly the client reads.
#[tokio::test]
async fn files_are_streamed_not_read_into_memory() {
    let s = common::server().start();
    const SIZE: u64 = 512 * 1024 * 1024;
    // Sparse: no disk is used, every byte reads as zero.
    std::fs::File::create(s.root().join("big.bin"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let idle = rss_kib(s.pid());
    let mut resp = s.owner().get(s.url("files/big.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(SIZE));
    let mut received = 0u64;
    let mut peak = rss_kib(s.pid());
    while let Some(chunk) = resp.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == 0));
        received += chunk.len() as u64;
        if received % (64 << 20) < chunk.len() as u64 {
            peak = peak.max(rss_kib(s.pid()));
        }
    }
    assert_eq!(received, SIZE);
    let grown = peak.saturating_sub(idle);
    assert!(
        grown < 32 * 1024,
        "the server grew by {grown} KiB while sending a {} MiB file",
        SIZE >> 20
    );
}

/// The peak of the server's resident memory so far (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// One upload's content: `blocks` copies of a 48 KiB block (base64: 64 KiB, no padding).
struct Upload {
    block: Vec<u8>,
    blocks: usize,
}

impl Upload {
    const BLOCK: usize = 48 * 1024;

    fn new(seed: u32, blocks: usize) -> Upload {
        let block = (0..Self::BLOCK as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect();
        Upload { block, blocks }
    }

    fn size(&self) -> usize {
        Self::BLOCK * self.blocks
    }

    /// Whether `path` holds `parts` times this content, one after the other.
    fn check_file(&self, path: &std::path::Path, parts: usize) {
        use std::io::Read;
        let mut file = std::fs::File::open(path).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            (self.size() * parts) as u64,
            "{}",
            path.display()
        );
        let mut buf = vec![0u8; Self::BLOCK];
        for i in 0..self.blocks * parts {
            file.read_exact(&mut buf).unwrap();
            assert!(buf == self.block, "block {i} of {}", path.display());
        }
    }
}

/// PUT a JSON body `{before…, "content": base64 of upload, after…}` over a raw connection,
/// generated as it is sent; returns the status and the answer's JSON.
async fn put_streamed(
    s: &common::Server,
    path: &str,
    before: &str,
    upload: &Upload,
    after: &str,
) -> (u16, Value) {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let encoded = base64::engine::general_purpose::STANDARD.encode(&upload.block);
    let head = format!("{{{before}\"content\": \"");
    let tail = format!("\"{after}}}");
    let length = head.len() + encoded.len() * upload.blocks + tail.len();
    let host = s.host();
    let token = s.token.clone().unwrap();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "PUT /api/contents/{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{head}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    for _ in 0..upload.blocks {
        stream.write_all(encoded.as_bytes()).await.unwrap();
    }
    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Four uploads of 200 MB at once (two as JupyterLab sends them, one naming its format
/// after its content, one in four chunks) leave the server's resident memory below its
/// idle size plus 64 MiB (the bound docs/contents.md states): the content goes to disk as
/// it arrives, whatever its size and however many arrive together.
#[tokio::test]
async fn parallel_uploads_stay_within_the_stated_memory_bound() {
    let s = common::server().start();
    // Warm up the paths an upload takes, so that what follows measures the uploads.
    let small = Upload::new(0, 1);
    let (status, _) = put_streamed(
        &s,
        "warm.bin",
        r#""type": "file", "format": "base64", "#,
        &small,
        "",
    )
    .await;
    assert_eq!(status, 201);
    let idle = rss_kib(s.pid());
    // 200 MB each (within the default --max-body-size of 256 MiB once in base64).
    let blocks = 4069;
    let uploads: Vec<Upload> = (1..=4).map(|seed| Upload::new(seed, blocks)).collect();
    let chunk_blocks = blocks / 4;
    let chunked = Upload::new(4, chunk_blocks);
    let lab = r#""type": "file", "format": "base64", "name": "x", "#;
    let (a, b, c, d) = tokio::join!(
        put_streamed(&s, "one.bin", lab, &uploads[0], ""),
        put_streamed(&s, "two.bin", lab, &uploads[1], ""),
        put_streamed(
            &s,
            "three.bin",
            r#""type": "file", "#,
            &uploads[2],
            r#", "format": "base64""#
        ),
        async {
            let mut last = (0, Value::Null);
            for chunk in [1, 2, 3, -1] {
                let before = format!(r#""type": "file", "format": "base64", "chunk": {chunk}, "#);
                last = put_streamed(&s, "four.bin", &before, &chunked, "").await;
                if chunk != -1 {
                    assert!([200, 201].contains(&last.0), "chunk {chunk}: {}", last.1);
                }
            }
            last
        }
    );
    let peak = peak_rss_kib(s.pid());
    for (name, (status, model), size) in [
        ("one", a, uploads[0].size()),
        ("two", b, uploads[1].size()),
        ("three", c, uploads[2].size()),
        ("four", d, chunked.size() * 4),
    ] {
        assert!(status == 201 || status == 200, "{name}: {status} {model}");
        assert_eq!(model["size"], json!(size), "{name}: {model}");
    }
    uploads[0].check_file(&s.root().join("one.bin"), 1);
    uploads[1].check_file(&s.root().join("two.bin"), 1);
    uploads[2].check_file(&s.root().join("three.bin"), 1);
    chunked.check_file(&s.root().join("four.bin"), 4);
    let grown = peak.saturating_sub(idle);
    eprintln!("idle {idle} KiB, peak {peak} KiB: grown by {grown} KiB");
    assert!(
        grown < 64 * 1024,
        "four 200 MB uploads grew the server by {grown} KiB (idle {idle} KiB, peak {peak} KiB)"
    );
    // Nothing is left beside the files: no spool, no temp file, no staging file.
    let mut names: Vec<String> = std::fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["four.bin", "one.bin", "three.bin", "two.bin", "warm.bin"]
    );
}

/// What the server holds of request bodies counts against `--max-body-memory`: a body read
/// whole that cannot fit is refused (413) before it is read, and so is a notebook whose
/// content would take its upload past the budget while it is parsed; a file's content
/// streams to disk and is not held, whatever its size; what a request held is given back.
#[tokio::test]
async fn bodies_held_in_memory_count_against_the_budget() {
    let budget = 1_000_000;
    let s = common::server()
        .args(&["--max-body-memory", &budget.to_string()])
        .start();
    let owner = s.owner();
    let api = |p: &str| s.url(&format!("api/contents/{p}"));
    let held_past_budget = |what: &str, status: u16, answer: &Value| {
        assert_eq!(status, 413, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Request body of ")
                && message.ends_with(
                    "bytes is larger than the server can hold in memory (--max-body-memory 1000000)"
                ),
            "{what}: {message}"
        );
    };
    let big = "x".repeat(2 * budget);
    let (status, answer) = send(
        &owner,
        Method::POST,
        &api(""),
        Some(json!({"type": "file", "ext": big})),
    )
    .await;
    held_past_budget("a POST read whole", status, &answer);
    let notebook = |source: &str| {
        json!({"type": "notebook", "content": {
            "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": source}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
        }})
    };
    let (status, answer) = send(&owner, Method::PUT, &api("big.ipynb"), Some(notebook(&big))).await;
    held_past_budget("a notebook", status, &answer);
    assert!(!s.root().join("big.ipynb").exists());
    let five_mb = "y".repeat(5 * budget);
    let (status, answer) = send(
        &owner,
        Method::PUT,
        &api("big.txt"),
        Some(json!({"type": "file", "format": "text", "content": five_mb})),
    )
    .await;
    assert_eq!(status, 201, "a file's content is not held: {answer}");
    assert_eq!(
        std::fs::read_to_string(s.root().join("big.txt")).unwrap(),
        five_mb
    );
    // Everything held was given back: a notebook of most of the budget still fits, twice.
    let most = "z".repeat(budget * 8 / 10);
    for _ in 0..2 {
        let (status, answer) = send(
            &owner,
            Method::PUT,
            &api("most.ipynb"),
            Some(notebook(&most)),
        )
        .await;
        assert!(status == 200 || status == 201, "{answer}");
    }
}

/// The names of the temp files of saves (`.~name.XXXXXXXX.tmp`) under `dir`, recursively.
fn temp_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temp_files(&path));
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if name.starts_with(".~") && name.ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A save interrupted by a SIGKILL of concord leaves its temp file in the user's folder;
/// the next start removes it (it was recorded in the state directory before it was
/// created), leaves the real file as it was, and touches nothing else, not even a user's
/// file with a temp file's name.
#[tokio::test]
async fn temp_files_of_saves_interrupted_by_a_crash_are_removed_at_the_next_start() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;
    let b = common::server();
    let old = b"the saved version\n".to_vec();
    std::fs::create_dir(b.root().join("sub")).unwrap();
    for file in ["data.bin", "sub/nested.bin"] {
        std::fs::write(b.root().join(file), &old).unwrap();
    }
    let lookalike = b.root().join(".~notes.txt.0badc0de.tmp");
    std::fs::write(&lookalike, "a user's file").unwrap();
    let s = b.start();
    let host = s.host();
    let token = s.token.clone().unwrap();
    // Two saves, each sending 4 MiB of a 64 MiB content, then waiting forever.
    let encoded = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 3 << 20]);
    let mut connections = Vec::new();
    for file in ["data.bin", "sub/nested.bin"] {
        let head = r#"{"type": "file", "format": "base64", "content": ""#;
        let length = head.len() + (64 << 20) + 2;
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let request = format!(
            "PUT /api/contents/{file} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n\
             Content-Length: {length}\r\n\r\n{head}{encoded}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        connections.push(stream);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    let interrupted = loop {
        let partial: Vec<_> = temp_files(s.root())
            .into_iter()
            .filter(|p| *p != lookalike)
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
            .collect();
        if partial.len() == 2 || std::time::Instant::now() > deadline {
            break partial;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        interrupted.len(),
        2,
        "both saves are under way: {interrupted:?}"
    );
    let s = s.crash_and_restart(&[]);
    drop(connections);
    for file in ["data.bin", "sub/nested.bin"] {
        assert_eq!(std::fs::read(s.root().join(file)).unwrap(), old, "{file}");
    }
    assert_eq!(
        temp_files(s.root()),
        std::slice::from_ref(&lookalike),
        "only the user's own file is left"
    );
    assert_eq!(
        std::fs::read_to_string(&lookalike).unwrap(),
        "a user's file"
    );
    // Saving works as before.
    let (status, _) = send(
        &s.owner(),
        Method::PUT,
        &s.url("api/contents/data.bin"),
        Some(json!({"type": "file", "format": "text", "content": "new"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        std::fs::read_to_string(s.root().join("data.bin")).unwrap(),
        "new"
    );
    assert_eq!(temp_files(s.root()), [lookalike]);
}
