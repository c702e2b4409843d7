//! The per-path authorization matrix of the contents API: a user who may read `/pub`,
//! write `/mine`, and nothing in `/secret`.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const POLICY: &str = r#"
[roles.reader]
permissions = ["contents:read"]

[roles.writer]
permissions = ["contents:read", "contents:write"]

[[bindings]]
role = "reader"
users = ["alice"]
paths = ["/", "/pub/**"]

[[bindings]]
role = "writer"
users = ["alice"]
paths = ["/mine/**"]
"#;

#[tokio::test]
async fn contents_authorization_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let b = common::server().args(&[
        "--auth",
        "users",
        "--policy",
        policy.to_str().unwrap(),
        "--delete-to-trash",
        "false",
    ]);
    for (rel, content) in [
        ("pub/a.txt", "a"),
        ("mine/b.txt", "b"),
        ("secret/c.txt", "c"),
    ] {
        let p = b.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    std::fs::write(
        b.root().join("pub/nb.ipynb"),
        r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(b.root().join("secret/c.txt"), b.root().join("pub/link.txt"))
        .unwrap();
    std::os::unix::fs::symlink(b.root().join("secret"), b.root().join("mine/secret-dir")).unwrap();
    b.add_user("alice", "alice-password", &[]);
    let s = b.start();
    let (alice, xsrf) = s.login("alice", "alice-password").await;

    let send = |method: Method, path: &str, body: Option<Value>| {
        let mut req = alice
            .request(method, s.url(path))
            .header("X-XSRFToken", &xsrf);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        req.send()
    };
    let file = json!({"type": "file", "format": "text", "content": "x"});
    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::GET, "api/contents/pub/a.txt", None, 200),
        (Method::GET, "api/contents/secret/c.txt", None, 404),
        (Method::GET, "api/contents/secret/none.txt", None, 404),
        (Method::GET, "api/contents/secret", None, 404),
        (Method::GET, "api/contents/pub/link.txt", None, 404),
        (Method::GET, "api/contents/mine/secret-dir/c.txt", None, 404),
        (Method::GET, "files/pub/a.txt", None, 200),
        (Method::GET, "files/secret/c.txt", None, 404),
        (Method::GET, "files/pub/link.txt", None, 404),
        (Method::GET, "view/pub/a.txt", None, 200),
        (Method::GET, "view/secret/c.txt", None, 404),
        (Method::GET, "api/contents/pub/a.txt/checkpoints", None, 200),
        (
            Method::GET,
            "api/contents/secret/c.txt/checkpoints",
            None,
            404,
        ),
        (
            Method::POST,
            "api/contents/pub/a.txt/checkpoints",
            None,
            403,
        ),
        (
            Method::POST,
            "api/contents/mine/b.txt/checkpoints",
            None,
            201,
        ),
        (Method::POST, "api/contents/pub/nb.ipynb/trust", None, 403),
        (
            Method::PUT,
            "api/contents/mine/new.txt",
            Some(file.clone()),
            201,
        ),
        (
            Method::PUT,
            "api/contents/pub/new.txt",
            Some(file.clone()),
            403,
        ),
        (
            Method::PUT,
            "api/contents/secret/new.txt",
            Some(file.clone()),
            404,
        ),
        (
            Method::PUT,
            "api/contents/pub/link.txt",
            Some(file.clone()),
            404,
        ),
        (
            Method::PUT,
            "api/contents/mine/up.bin",
            Some(json!({"type": "file", "format": "text", "content": "1", "chunk": 1})),
            201,
        ),
        (
            Method::PUT,
            "api/contents/mine/up.bin",
            Some(json!({"type": "file", "format": "text", "content": "2", "chunk": -1})),
            200,
        ),
        (
            Method::PUT,
            "api/contents/pub/up.bin",
            Some(json!({"type": "file", "format": "text", "content": "1", "chunk": 1})),
            403,
        ),
        (
            Method::POST,
            "api/contents/mine",
            Some(json!({"type": "notebook"})),
            201,
        ),
        (
            Method::POST,
            "api/contents/pub",
            Some(json!({"type": "notebook"})),
            403,
        ),
        (
            Method::POST,
            "api/contents/mine",
            Some(json!({"copy_from": "pub/a.txt"})),
            201,
        ),
        (
            Method::POST,
            "api/contents/mine",
            Some(json!({"copy_from": "secret/c.txt"})),
            404,
        ),
        (
            Method::POST,
            "api/contents/mine",
            Some(json!({"copy_from": "pub/link.txt"})),
            404,
        ),
        (
            Method::POST,
            "api/contents/pub",
            Some(json!({"copy_from": "mine/b.txt"})),
            403,
        ),
        // A folder holding something alice may not read (a link into secret) is not
        // copied at all.
        (
            Method::POST,
            "api/contents/mine",
            Some(json!({"copy_from": "pub"})),
            403,
        ),
        (
            Method::PATCH,
            "api/contents/mine/b.txt",
            Some(json!({"path": "pub/b.txt"})),
            403,
        ),
        (
            Method::PATCH,
            "api/contents/mine/b.txt",
            Some(json!({"path": "secret/b.txt"})),
            404,
        ),
        (
            Method::PATCH,
            "api/contents/pub/a.txt",
            Some(json!({"path": "mine/a2.txt"})),
            403,
        ),
        (
            Method::PATCH,
            "api/contents/mine/b.txt",
            Some(json!({"path": "mine/b2.txt"})),
            200,
        ),
        (Method::DELETE, "api/contents/pub/a.txt", None, 403),
        (Method::DELETE, "api/contents/secret/c.txt", None, 404),
        (Method::DELETE, "api/contents/mine/b2.txt", None, 204),
    ];
    for (method, path, body, want) in cases {
        let what = format!("{method} {path} {body:?}");
        let r = send(method, path, body).await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::from_u16(want).unwrap(),
            "{what}: {text}"
        );
    }
    // Nothing outside the write area changed.
    assert!(s.root().join("pub/a.txt").exists());
    assert!(!s.root().join("pub/new.txt").exists());
    assert!(!s.root().join("secret/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(s.root().join("secret/c.txt")).unwrap(),
        "c"
    );
    // Listings contain only what the caller may read; `writable` is theirs.
    let root: Value = send(Method::GET, "api/contents", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<(&str, bool)> = root["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["writable"].as_bool().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, vec![("mine", true), ("pub", false)]);
    let public: Value = send(Method::GET, "api/contents/pub", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = public["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["a.txt", "nb.ipynb"]);
    // A refused read looks exactly like a missing path.
    let a: Value = send(Method::GET, "api/contents/secret/c.txt", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = send(Method::GET, "api/contents/secret/c.txx", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        a["message"].as_str().unwrap().replace("c.txt", "X"),
        b["message"].as_str().unwrap().replace("c.txx", "X")
    );
}
