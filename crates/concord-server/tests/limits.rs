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
