//! Path normalisation over HTTP: `..`, `%2e%2e`, duplicate slashes, sibling prefixes and the
//! root are resolved before the decision, and the decision is made on the same path the
//! file system uses. Requests are written by hand, so no client normalises them first.

use crate::common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICY: &str = r#"
[roles.editor]
permissions = ["contents:read", "contents:write"]

[[bindings]]
role = "editor"
users = ["alice"]
paths = ["/projects/a/**"]
"#;

/// Send a raw GET with the path exactly as given; returns the status code.
async fn raw_get(s: &common::Server, path: &str, token: &str) -> u16 {
    let host = s.host();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_decision_is_made_on_the_normalised_path() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let b = common::server().args(&["--auth", "users", "--policy", policy.to_str().unwrap()]);
    for d in ["projects/a", "projects/b", "projects/ab"] {
        std::fs::create_dir_all(b.root().join(d)).unwrap();
        std::fs::write(b.root().join(d).join("x.txt"), "hello").unwrap();
    }
    std::fs::write(b.root().join("top.txt"), "root file").unwrap();
    b.add_user("alice", "alice-password", &[]);
    let (code, token, err) = b.user_cmd(&["token", "alice"], None);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    let s = b.start();

    let allowed = [
        "/api/contents/projects/a/x.txt",
        "/api/contents/projects//a///x.txt",
        "/api/contents/projects/./a/x.txt",
        "/api/contents/projects/b/../a/x.txt",
        "/api/contents/projects/b/%2e%2e/a/x.txt",
        "/api/contents/projects%2Fa%2Fx.txt",
        "/api/contents/projects/a",
    ];
    for path in allowed {
        assert_eq!(raw_get(&s, path, &token).await, 200, "{path}");
    }
    // Outside the grant: the same 404 as a missing file (a caller who may not read a
    // place cannot learn what is there).
    let refused = [
        "/api/contents/projects/a/../b/x.txt",
        "/api/contents/projects/a/%2e%2e/b/x.txt",
        "/api/contents/projects/a/%2E%2E/b/x.txt",
        "/api/contents/projects/ab/x.txt",
        "/api/contents/projects",
        "/api/contents/",
        "/api/contents/top.txt",
        "/api/contents/projects/b/missing.txt",
    ];
    for path in refused {
        assert_eq!(raw_get(&s, path, &token).await, 404, "{path}");
    }
    // Climbing above the root is never a path at all.
    for path in [
        "/api/contents/..%2F..%2Fetc%2Fpasswd",
        "/api/contents/%2e%2e/%2e%2e/etc/passwd",
        "/files/../../etc/passwd",
    ] {
        let code = raw_get(&s, path, &token).await;
        assert!(code == 404 || code == 400, "{path}: {code}");
    }
}
