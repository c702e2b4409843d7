//! What outside input may cost and how it is refused: names too long for the file system,
//! request bodies (a limit read from the header, uploads streamed to disk within a memory
//! bound), connections that never finish their headers, bare-LF requests, `/files/` served
//! as a stream, and the temp files of saves interrupted by a crash.

mod common;

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
    // A sibling: a path through a file.
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
        assert_eq!(status, 400, "{method} {url}: {answer}");
        assert_eq!(
            answer["message"],
            format!("A parent of {named} is not a directory"),
            "{method} {url}"
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
    let cases: Vec<(&str, Method, Vec<(&str, &str)>)> = vec![
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
