//! The per-path authorization matrix of the contents API: a user who may read `/pub`,
//! write `/mine`, and nothing in `/secret`.

use crate::common;

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

/// alice may read and write `/pub/**`, read `/`, and nothing under `/secret`.
const ORACLE_POLICY: &str = r#"
[roles.reader]
permissions = ["contents:read"]

[roles.writer]
permissions = ["contents:read", "contents:write"]

[[bindings]]
role = "reader"
users = ["alice"]
paths = ["/"]

[[bindings]]
role = "writer"
users = ["alice"]
paths = ["/pub/**"]
"#;

/// Everything of an answer a client can see: status, headers (but the date and the fresh
/// random `_xsrf` cookie) and body.
type Answer = (u16, Vec<(String, String)>, String);

async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date" && *name != "set-cookie")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_string()))
        .collect();
    (status, headers, r.text().await.unwrap())
}

/// Every request a client can make on a contents path: each route and method.
fn path_requests(p: &str) -> Vec<(Method, String, Option<Value>)> {
    let file = json!({"type": "file", "format": "text", "content": "x"});
    vec![
        (Method::GET, format!("api/contents/{p}"), None),
        (
            Method::GET,
            format!("api/contents/{p}?content=0&type=file"),
            None,
        ),
        (Method::HEAD, format!("api/contents/{p}"), None),
        (Method::PUT, format!("api/contents/{p}"), Some(file)),
        (
            Method::POST,
            format!("api/contents/{p}"),
            Some(json!({"type": "notebook"})),
        ),
        (
            Method::PATCH,
            format!("api/contents/{p}"),
            Some(json!({"path": "pub/renamed.txt"})),
        ),
        (Method::DELETE, format!("api/contents/{p}"), None),
        (Method::GET, format!("api/contents/{p}/checkpoints"), None),
        (Method::POST, format!("api/contents/{p}/checkpoints"), None),
        (
            Method::POST,
            format!("api/contents/{p}/checkpoints/checkpoint"),
            None,
        ),
        (
            Method::DELETE,
            format!("api/contents/{p}/checkpoints/checkpoint"),
            None,
        ),
        (Method::POST, format!("api/contents/{p}/trust"), None),
        (Method::GET, format!("files/{p}"), None),
        (Method::HEAD, format!("files/{p}"), None),
        (Method::GET, format!("files/{p}?download=1"), None),
        (Method::GET, format!("view/{p}"), None),
    ]
}

/// Shapes of a path below a folder, as a client may write them (some lead through files,
/// symlinks in and out of the root, dangling links, checkpoints).
const SHAPES: &[&str] = &[
    "file.txt",
    "nb.ipynb",
    "dir",
    "dir/inner.txt",
    "dir/deep/x.txt",
    "file.txt/x",
    "file.txt/x/y.txt",
    "link-out",
    "link-out/hostname",
    "link-out-file",
    "link-in",
    "link-in-dir/a.txt",
    "dangling",
    "dangling/x",
    "missing",
    "missing/x.txt",
    ".ipynb_checkpoints",
    "dir/./inner.txt",
    "dir/deep/../inner.txt",
    "a%20b.txt",
    "x%2F..%2Ffile.txt",
];

/// What lies in `/secret` (and links from `/pub` into it).
fn populate_secret(root: &std::path::Path) {
    use std::os::unix::fs::symlink;
    let s = root.join("secret");
    std::fs::create_dir_all(s.join("dir/deep")).unwrap();
    std::fs::create_dir_all(s.join(".ipynb_checkpoints")).unwrap();
    for (rel, content) in [
        ("file.txt", "secret"),
        ("a b.txt", "secret"),
        ("dir/inner.txt", "secret"),
        ("dir/deep/x.txt", "secret"),
        (".ipynb_checkpoints/file-checkpoint.txt", "old"),
        (
            "nb.ipynb",
            r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
        ),
    ] {
        std::fs::write(s.join(rel), content).unwrap();
    }
    symlink("/etc", s.join("link-out")).unwrap();
    symlink("/etc/hostname", s.join("link-out-file")).unwrap();
    symlink(root.join("pub/a.txt"), s.join("link-in")).unwrap();
    symlink(root.join("pub"), s.join("link-in-dir")).unwrap();
    symlink(s.join("nowhere"), s.join("dangling")).unwrap();
    symlink(s.join("file.txt"), root.join("pub/ln1")).unwrap();
    symlink(s.join("dir"), root.join("pub/ln2")).unwrap();
}

/// The existence oracle: whatever lies at a path the caller may not read, every route and
/// method answers byte for byte as for a path where nothing lies, and as it answers for a
/// missing path the caller could otherwise use.
#[tokio::test]
async fn hidden_paths_answer_exactly_as_missing_ones() {
    let b = common::server()
        .users_with_policy(ORACLE_POLICY)
        .args(&["--delete-to-trash", "false"]);
    std::fs::create_dir_all(b.root().join("pub")).unwrap();
    std::fs::write(b.root().join("pub/a.txt"), "public").unwrap();
    b.add_user("alice", "alice-password", &[]);
    let token = b.issue_token("alice");
    let root = b.root().to_path_buf();
    let s = b.start();
    let alice = common::token_client(&token);
    let run = |folder: &'static str, shapes: Vec<String>| {
        let (s, alice) = (&s, &alice);
        async move {
            let mut out = Vec::new();
            for shape in shapes {
                for (method, url, body) in path_requests(&format!("{folder}/{shape}")) {
                    let mut req = alice.request(method.clone(), s.url(&url));
                    if let Some(b) = &body {
                        req = req.body(b.to_string());
                    }
                    out.push((format!("{method} {url}"), answer(req).await));
                }
            }
            out
        }
    };
    let shapes: Vec<String> = SHAPES.iter().map(|s| s.to_string()).collect();
    let links: Vec<String> = ["ln1", "ln2/inner.txt", "ln2"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    populate_secret(&root);
    let hidden = run("secret", shapes.clone()).await;
    let hidden_links = run("pub", links.clone()).await;
    // Nothing was changed through the refusals.
    assert_eq!(
        std::fs::read_to_string(root.join("secret/file.txt")).unwrap(),
        "secret"
    );
    std::fs::remove_dir_all(root.join("secret")).unwrap();
    let absent = run("secret", shapes.clone()).await;
    let dangling_links = run("pub", links).await;
    // The same shapes where alice could read and write, but nothing lies ("pub/nw" has the
    // length of "secret", so even Content-Length must agree).
    let missing: Vec<_> = run("pub/nw", shapes)
        .await
        .into_iter()
        .map(|(what, (status, mut headers, body))| {
            // HTML pages (`/files/`) escape the slash, so there the lengths differ: the
            // length is taken from the renamed body.
            let body = body
                .replace("pub/nw", "secret")
                .replace("pub&#x2f;nw", "secret");
            for (name, value) in headers.iter_mut() {
                if name == "content-length" {
                    *value = body.len().to_string();
                }
            }
            (what.replace("pub/nw", "secret"), (status, headers, body))
        })
        .collect();

    let mut failures = Vec::new();
    for (((what, h), (_, a)), (_, m)) in hidden.iter().zip(&absent).zip(&missing) {
        if h != a {
            failures.push(format!("{what}\n  hidden: {h:?}\n  absent: {a:?}"));
        }
        // Listing the checkpoints of a missing file the caller may read is an empty list
        // (as jupyter_server); of a path they may not see, it is a 404 like every refusal.
        // A hidden (dot) name is refused for its name alone where the caller may write.
        let by_name = what.contains("/.") || what.ends_with("/checkpoints");
        if h != m && !by_name {
            failures.push(format!("{what}\n  hidden:  {h:?}\n  missing: {m:?}"));
        }
        if h.0 < 400 {
            failures.push(format!("{what} was answered {}", h.0));
        }
    }
    for ((what, h), (_, d)) in hidden_links.iter().zip(&dangling_links) {
        if h != d {
            failures.push(format!(
                "{what}\n  into hidden: {h:?}\n  dangling:    {d:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
