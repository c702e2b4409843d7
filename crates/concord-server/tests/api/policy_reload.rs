//! Hot reload of the policy: on file change and on SIGHUP; an invalid file keeps the old
//! policy in force. Also: denials and allowed writes reach the audit log.

use crate::common;

use std::time::Duration;

const DENY_ALL: &str = "[roles.nothing]\npermissions = []\n";
const ALLOW_STATUS: &str = r#"
[roles.status]
permissions = ["api:read"]

[[bindings]]
role = "status"
users = ["alice"]
"#;

async fn status_of(s: &common::Server, c: &reqwest::Client) -> u16 {
    c.get(s.url("api/status"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Poll until the status is `want` (reload is asynchronous); bounded.
async fn wait_for(s: &common::Server, c: &reqwest::Client, want: u16) -> bool {
    for _ in 0..100 {
        if status_of(s, c).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn policy_file_changes_apply_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, DENY_ALL).unwrap();
    let b = common::server().args(&["--auth", "users", "--policy", policy.to_str().unwrap()]);
    b.add_user("alice", "alice-password", &[]);
    let s = b.start();
    let (alice, _) = s.login("alice", "alice-password").await;
    assert_eq!(status_of(&s, &alice).await, 403);

    std::fs::write(&policy, ALLOW_STATUS).unwrap();
    assert!(wait_for(&s, &alice, 200).await, "valid change not applied");

    // An invalid file: the previous policy stays.
    std::fs::write(&policy, "[roles.status]\npermissions = [\"api:reed\"]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status_of(&s, &alice).await, 200);
    let logged = s.drain_output().join("\n");
    assert!(logged.contains("previous policy stays"), "{logged}");
}

#[tokio::test]
async fn sighup_reloads() {
    // The policy is a symlink to a file in another directory: editing the target is not
    // seen by the watcher, so only SIGHUP can apply it.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("real.toml");
    std::fs::write(&target, DENY_ALL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("policy.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let b = common::server().args(&["--auth", "users", "--policy", link.to_str().unwrap()]);
    b.add_user("alice", "alice-password", &[]);
    let s = b.start();
    let (alice, _) = s.login("alice", "alice-password").await;
    assert_eq!(status_of(&s, &alice).await, 403);
    std::fs::write(&target, ALLOW_STATUS).unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_for(&s, &alice, 200).await, "SIGHUP did not reload");
}

#[tokio::test]
async fn denials_and_writes_are_audited_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let s = common::server()
        .token("audit-secret-token")
        .args(&["--audit-log", audit.to_str().unwrap()])
        .start();
    // A denial: a proxy-less anonymous call is not a decision; use a wrong-group caller via
    // the token owner doing a write instead, and a cookie-less anonymous request.
    let owner = s.owner();
    let r = owner
        .patch(s.url("api/me?token=audit-secret-token"))
        .body(r#"{"color": "blue"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status() == 501);
    let r = owner.post(s.url("api/shutdown")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The write to `server` was allowed and audited.
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("\"server\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("\"server\""), "{text}");
    assert!(
        text.contains("\"allow\"") || text.contains("true"),
        "{text}"
    );
    assert!(
        !text.contains("audit-secret-token"),
        "secret in audit log: {text}"
    );
}
