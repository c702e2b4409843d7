//! `/api/events` with several users (`--auth users`): every subscriber gets the events about
//! what it may read and nothing else: contents actions by path (a rename also by its source),
//! kernel actions by kernel; what a client posts reaches only readers the poster could tell
//! anyway; a subscriber that stops reading does not hold anyone else up.

use crate::common;
use crate::kernels_support;

use common::events::{marker, subscribe, summary, Subscriber, CONTENTS, KERNEL_ACTIONS};
use kernels_support::{metric, path_with_venv, rss_kib};
use serde_json::{json, Value};

const POLICY: &str = r#"
[roles.everything]
permissions = ["*:*:any"]

[roles.worker]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own",
               "kernelspecs:read", "events:execute", "events:write"]

[roles.reader]
permissions = ["contents:read"]

[[bindings]]
role = "everything"
groups = ["admin"]

[[bindings]]
role = "worker"
everyone = true
paths = ["/shared/**", "/home/{username}/**"]

# dave may read alice's home but may neither subscribe to events nor post any.
[[bindings]]
role = "reader"
users = ["dave"]
paths = ["/home/alice/**"]

[[deny]]
users = ["dave"]
permissions = ["events:execute", "events:write"]
"#;

struct Users {
    s: common::Server,
    admin: String,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
}

fn start() -> Users {
    start_with(&[])
}

fn start_with(args: &[&str]) -> Users {
    let b = common::server()
        .users_with_policy(POLICY)
        .args(args)
        .env("PATH", &path_with_venv());
    b.add_user("root", "root-password-1", &["admin"]);
    for user in ["alice", "bob", "carol", "dave"] {
        b.add_user(user, &format!("{user}-password-1"), &[]);
    }
    let token = |user: &str| b.issue_token(user);
    let (admin, alice, bob, carol, dave) = (
        token("root"),
        token("alice"),
        token("bob"),
        token("carol"),
        token("dave"),
    );
    for d in ["shared", "home/alice", "home/bob", "home/carol"] {
        std::fs::create_dir_all(b.root().join(d)).unwrap();
    }
    Users {
        s: b.start(),
        admin,
        alice,
        bob,
        carol,
        dave,
    }
}

async fn call(
    s: &common::Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(m, s.url(path))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Post the marker `path` as `token` (who must be able to read it).
async fn post_marker(s: &common::Server, token: &str, path: &str) {
    let (status, body) = call(s, token, "POST", "api/events", Some(marker(path))).await;
    assert_eq!(status, 204, "{body}");
}

fn summaries(frames: &[String]) -> Vec<(String, String, String)> {
    frames.iter().map(|f| summary(f)).collect()
}

fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

fn file(content: &str) -> Value {
    json!({"type": "file", "format": "text", "content": content})
}

#[tokio::test]
async fn contents_events_reach_only_the_readers_of_their_paths() {
    let u = start();
    let s = &u.s;
    let mut alice = subscribe(&s.base, &u.alice).await.unwrap();
    let mut bob = subscribe(&s.base, &u.bob).await.unwrap();

    // At a path both may read: both hear of the save, the rename and the delete.
    let (st, _) = call(
        s,
        &u.alice,
        "PUT",
        "api/contents/shared/a.txt",
        Some(file("x")),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = call(
        s,
        &u.alice,
        "PATCH",
        "api/contents/shared/a.txt",
        Some(json!({"path": "shared/b.txt"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(s, &u.alice, "DELETE", "api/contents/shared/b.txt", None).await;
    assert_eq!(st, 204);
    post_marker(s, &u.alice, "shared/m1").await;
    let expected = vec![
        t("get", "shared/a.txt", ""),
        t("save", "shared/a.txt", ""),
        t("rename", "shared/b.txt", "shared/a.txt"),
        t("get", "shared/b.txt", ""),
        t("delete", "shared/b.txt", ""),
    ];
    assert_eq!(summaries(&alice.until_marker("shared/m1").await), expected);
    assert_eq!(summaries(&bob.until_marker("shared/m1").await), expected);

    // In alice's home: only alice hears of it. Moved out to the shared folder: bob hears
    // of the file at its new place but not the rename (its source is private).
    let (st, _) = call(
        s,
        &u.alice,
        "PUT",
        "api/contents/home/alice/p.txt",
        Some(file("p")),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = call(s, &u.alice, "GET", "api/contents/home/alice", None).await;
    assert_eq!(st, 200);
    let (st, _) = call(
        s,
        &u.alice,
        "PATCH",
        "api/contents/home/alice/p.txt",
        Some(json!({"path": "shared/p.txt"})),
    )
    .await;
    assert_eq!(st, 200);
    // And a copy back into the home: bob reads the source, not the copy.
    let (st, _) = call(
        s,
        &u.alice,
        "POST",
        "api/contents/home/alice",
        Some(json!({"copy_from": "shared/p.txt"})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = call(s, &u.alice, "DELETE", "api/contents/home/alice/p.txt", None).await;
    assert_eq!(st, 204);
    post_marker(s, &u.alice, "shared/m2").await;
    assert_eq!(
        summaries(&alice.until_marker("shared/m2").await),
        vec![
            t("get", "home/alice/p.txt", ""),
            t("save", "home/alice/p.txt", ""),
            t("get", "home/alice", ""),
            t("rename", "shared/p.txt", "home/alice/p.txt"),
            t("get", "shared/p.txt", ""),
            t("get", "shared/p.txt", ""),
            t("get", "shared/p.txt", ""),
            t("get", "home/alice/p.txt", ""),
            t("save", "home/alice/p.txt", ""),
            t("copy", "home/alice/p.txt", "shared/p.txt"),
            t("delete", "home/alice/p.txt", ""),
        ]
    );
    assert_eq!(
        summaries(&bob.until_marker("shared/m2").await),
        vec![
            t("get", "shared/p.txt", ""),
            t("get", "shared/p.txt", ""),
            t("get", "shared/p.txt", ""),
        ]
    );

    // A policy that no longer lets bob read /shared/secret takes effect at the next event.
    std::fs::create_dir_all(s.root().join("shared/secret")).unwrap();
    let (st, _) = call(s, &u.bob, "GET", "api/contents/shared/secret", None).await;
    assert_eq!(st, 200);
    let policy = s.state().join("policy.toml");
    let tightened = POLICY.replace(
        "[[deny]]\nusers = [\"dave\"]",
        "[[deny]]\nusers = [\"bob\"]\npermissions = [\"contents:read\"]\npaths = [\"/shared/secret/**\"]\n\n[[deny]]\nusers = [\"dave\"]",
    );
    std::fs::write(&policy, tightened).unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    let mut reloaded = false;
    for _ in 0..200 {
        let (st, _) = call(s, &u.bob, "GET", "api/contents/shared/secret", None).await;
        if st == 404 || st == 403 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the policy was not reloaded");
    let (st, _) = call(
        s,
        &u.alice,
        "PUT",
        "api/contents/shared/secret/s.txt",
        Some(file("s")),
    )
    .await;
    assert_eq!(st, 201);
    post_marker(s, &u.alice, "shared/m3").await;
    // (Before them, both heard of bob's own reads of shared/secret while it was allowed.)
    let secret = |frames: Vec<String>| {
        summaries(&frames)
            .into_iter()
            .filter(|(_, path, _)| path == "shared/secret/s.txt")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        secret(alice.until_marker("shared/m3").await),
        vec![
            t("get", "shared/secret/s.txt", ""),
            t("save", "shared/secret/s.txt", "")
        ]
    );
    assert!(secret(bob.until_marker("shared/m3").await).is_empty());
}

#[tokio::test]
async fn kernel_events_reach_the_owner_and_not_an_outsider() {
    let u = start();
    let s = &u.s;
    let mut alice = subscribe(&s.base, &u.alice).await.unwrap();
    let mut bob = subscribe(&s.base, &u.bob).await.unwrap();
    let mut admin = subscribe(&s.base, &u.admin).await.unwrap();

    let (st, k) = call(
        s,
        &u.alice,
        "POST",
        "api/kernels",
        Some(json!({"path": "home/alice"})),
    )
    .await;
    assert_eq!(st, 201, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    let started = alice.next().await.unwrap();
    let v: Value = serde_json::from_str(&started).unwrap();
    assert_eq!(v["schema_id"], KERNEL_ACTIONS);
    assert_eq!(
        started,
        format!(
            r#"{{"schema_id": "{KERNEL_ACTIONS}", "kernel_name": "python3", "action": "start", "status": "success", "msg": "Kernel {id} was started.", "kernel_id": "{id}"}}"#
        )
    );
    let (st, _) = call(s, &u.alice, "DELETE", &format!("api/kernels/{id}"), None).await;
    assert_eq!(st, 204);
    assert_eq!(
        summary(&alice.next().await.unwrap()),
        t("shutdown", &id, "success")
    );
    // A failed start is the owner's business too.
    let (st, _) = call(
        s,
        &u.alice,
        "POST",
        "api/kernels",
        Some(json!({"name": "no-such-kernel"})),
    )
    .await;
    assert_eq!(st, 404);
    let failed: Value = serde_json::from_str(&alice.next().await.unwrap()).unwrap();
    assert_eq!(failed["status"], "error");
    assert_eq!(failed["msg"], "No such kernel named no-such-kernel");
    assert_eq!(failed["kernel_name"], "no-such-kernel");

    // Bob may claim nothing about alice's kernels: his post reaches nobody, not even alice.
    let (st, k2) = call(s, &u.alice, "POST", "api/kernels", Some(json!({}))).await;
    assert_eq!(st, 201);
    let id2 = k2["id"].as_str().unwrap().to_string();
    assert_eq!(
        summary(&alice.next().await.unwrap()),
        t("start", &id2, "success")
    );
    let claim = json!({"schema_id": KERNEL_ACTIONS, "version": 1,
                       "data": {"action": "shutdown", "msg": "gone", "kernel_id": id2}});
    let (st, _) = call(s, &u.bob, "POST", "api/events", Some(claim.clone())).await;
    assert_eq!(st, 204);
    // Alice's own claim about her kernel reaches her (and the admins).
    let (st, _) = call(s, &u.alice, "POST", "api/events", Some(claim)).await;
    assert_eq!(st, 204);
    let (st, _) = call(s, &u.alice, "DELETE", &format!("api/kernels/{id2}"), None).await;
    assert_eq!(st, 204);
    assert_eq!(
        summary(&alice.next().await.unwrap()),
        t("shutdown", &id2, "")
    );
    assert_eq!(
        summary(&alice.next().await.unwrap()),
        t("shutdown", &id2, "success")
    );

    post_marker(s, &u.alice, "shared/k").await;
    assert!(
        bob.until_marker("shared/k").await.is_empty(),
        "bob heard of alice's kernels"
    );
    // The admins may read every kernel: they hear of all of it.
    let heard = summaries(&admin.until_marker("shared/k").await);
    assert_eq!(heard.len(), 6, "{heard:?}");
    assert_eq!(alice.until_marker("shared/k").await, Vec::<String>::new());
}

#[tokio::test]
async fn posted_events_reach_only_those_the_poster_could_tell() {
    let u = start();
    let s = &u.s;
    let mut alice = subscribe(&s.base, &u.alice).await.unwrap();
    let mut bob = subscribe(&s.base, &u.bob).await.unwrap();
    let mut dave_refused = subscribe(&s.base, &u.dave).await.err();
    assert_eq!(
        dave_refused.take(),
        Some(403),
        "events:execute is denied to dave"
    );

    let post = |token: String, data: Value| async move {
        let body = json!({"schema_id": CONTENTS, "version": 1, "data": data});
        let (st, b) = call(s, &token, "POST", "api/events", Some(body)).await;
        assert_eq!(st, 204, "{b}");
    };
    // Bob tells everyone about alice's home: he may not read it, so nobody hears it.
    post(
        u.bob.clone(),
        json!({"action": "delete", "path": "home/alice/p.txt"}),
    )
    .await;
    // Nor through a source path, nor through `..` or a symlink.
    post(
        u.bob.clone(),
        json!({"action": "copy", "path": "shared/x", "source_path": "home/alice/p.txt"}),
    )
    .await;
    post(
        u.bob.clone(),
        json!({"action": "save", "path": "shared/../home/alice/p.txt"}),
    )
    .await;
    std::os::unix::fs::symlink(s.root().join("home/alice"), s.root().join("shared/alias")).unwrap();
    post(
        u.bob.clone(),
        json!({"action": "save", "path": "shared/alias/p.txt"}),
    )
    .await;
    // Outside the root: nobody.
    post(
        u.bob.clone(),
        json!({"action": "save", "path": "../etc/passwd"}),
    )
    .await;
    // Alice about her home: herself only. About the shared folder: both, as written.
    post(
        u.alice.clone(),
        json!({"action": "save", "path": "home/alice/p.txt"}),
    )
    .await;
    post(
        u.alice.clone(),
        json!({"path": "shared/q.txt", "action": "save", "note": ["é", {"z": 1, "a": 2}]}),
    )
    .await;
    // A gateway event is about nothing the policy knows: the poster's own subscriptions.
    let gateway = json!({"schema_id": "https://events.jupyter.org/jupyter_server/gateway_client/v1",
                         "version": "1", "data": {"status": "error", "msg": "unreachable"}});
    let (st, _) = call(s, &u.bob, "POST", "api/events", Some(gateway)).await;
    assert_eq!(st, 204);
    post_marker(s, &u.alice, "shared/end").await;

    let shared = format!(
        r#"{{"schema_id": "{CONTENTS}", "path": "shared/q.txt", "action": "save", "note": ["\u00e9", {{"z": 1, "a": 2}}]}}"#
    );
    assert_eq!(
        alice.until_marker("shared/end").await,
        vec![
            format!(
                r#"{{"schema_id": "{CONTENTS}", "action": "save", "path": "home/alice/p.txt"}}"#
            ),
            shared.clone(),
        ]
    );
    assert_eq!(
        bob.until_marker("shared/end").await,
        vec![
            shared,
            r#"{"schema_id": "https://events.jupyter.org/jupyter_server/gateway_client/v1", "status": "error", "msg": "unreachable"}"#.to_string(),
        ]
    );
    // Posting needs events:write: dave has none.
    let (st, _) = call(
        s,
        &u.dave,
        "POST",
        "api/events",
        Some(marker("home/alice/x")),
    )
    .await;
    assert_eq!(st, 403);
    let _ = &u.carol;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_nobody_up() {
    let u = start();
    let s = &u.s;
    // Carol subscribes and never reads her socket.
    let _carol = subscribe(&s.base, &u.carol).await.unwrap();
    let mut alice: Subscriber = subscribe(&s.base, &u.alice).await.unwrap();
    // Big events fill carol's socket buffers long before the last one is published.
    let filler = "x".repeat(64 * 1024);
    let n = 400;
    let reader = tokio::spawn(async move {
        for i in 0..n {
            let frame = alice.next().await.expect("alice keeps receiving");
            assert_eq!(summary(&frame).1, format!("shared/f{i}"));
        }
        alice
    });
    for i in 0..n {
        let body = json!({"schema_id": CONTENTS, "version": 1,
                          "data": {"action": "get", "path": format!("shared/f{i}"), "filler": filler}});
        let (st, b) = call(s, &u.carol, "POST", "api/events", Some(body)).await;
        assert_eq!(st, 204, "{b}");
    }
    let mut alice = reader.await.unwrap();
    // Carol's stalled subscription is dropped (and counted); alice's stays.
    let mut dropped = false;
    for _ in 0..300 {
        let metrics = s.metrics(&u.admin).await;
        if metrics.contains("concord_event_subscribers_lagged_total 1")
            && metrics.contains("concord_event_subscribers 1\n")
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(dropped, "carol's stalled subscription was not dropped");
    post_marker(s, &u.alice, "shared/still-here").await;
    assert!(alice.until_marker("shared/still-here").await.is_empty());
}

#[tokio::test]
async fn subscribers_are_closed_when_the_server_stops() {
    let mut s = common::server().start();
    let token = s.token.clone().unwrap();
    let mut sub = subscribe(&s.base, &token).await.unwrap();
    // Well within the 5 s the server grants open connections at exit: the subscriber does
    // not hold the shutdown open.
    let status = s.terminate(4).expect("the server stops in time");
    assert!(status.success(), "{status:?}");
    assert_eq!(sub.next().await, None);
}

/// `/metrics` counts an events subscriber once its upgrade is answered, and no longer once it
/// left (the count is taken in the handler: the upgrade completes in a task of its own).
#[tokio::test]
async fn a_subscriber_is_counted_in_metrics_as_soon_as_it_is_connected() {
    let u = start();
    let connections = || async {
        let (status, _) = call(&u.s, &u.admin, "GET", "api/status", None).await;
        assert_eq!(status, 200);
        let text = u.s.metrics(&u.admin).await;
        text.lines()
            .find_map(|l| l.strip_prefix("concord_websocket_connections "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    for _ in 0..10 {
        let sub = subscribe(&u.s.base, &u.alice).await.unwrap();
        assert_eq!(connections().await, "1");
        drop(sub);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while connections().await != "0" {
            assert!(std::time::Instant::now() < deadline, "still counted");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// What waits for a subscriber that does not read is bounded by its byte budget
/// (`--events-queue-bytes`): the server holds no more than that for it while a reader
/// receives every event, and once its socket took nothing for the write timeout it is
/// dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_a_subscriber_is_bounded_by_its_byte_budget() {
    const BUDGET: u64 = 1 << 20;
    let u = start_with(&[
        "--events-queue-bytes",
        &BUDGET.to_string(),
        "--events-write-timeout",
        "3",
    ]);
    let s = &u.s;
    let _carol = subscribe(&s.base, &u.carol).await.unwrap();
    let mut alice: Subscriber = subscribe(&s.base, &u.alice).await.unwrap();
    post_marker(s, &u.alice, "shared/warm").await;
    assert!(alice.until_marker("shared/warm").await.is_empty());
    let idle = rss_kib(s.pid());
    // 50 MiB of events: far more than carol's socket buffers and her budget.
    let filler = "x".repeat(64 * 1024);
    let n = 800;
    let reader = tokio::spawn(async move {
        for i in 0..n {
            let frame = alice.next().await.expect("alice keeps receiving");
            assert_eq!(summary(&frame).1, format!("shared/f{i}"));
        }
        alice
    });
    let (mut peak_rss, mut peak_buffered) = (0, 0);
    for i in 0..n {
        let body = json!({"schema_id": CONTENTS, "version": 1,
                          "data": {"action": "get", "path": format!("shared/f{i}"), "filler": filler}});
        let (st, b) = call(s, &u.carol, "POST", "api/events", Some(body)).await;
        assert_eq!(st, 204, "{b}");
        if i % 10 == 0 {
            peak_rss = peak_rss.max(rss_kib(s.pid()));
            let text = s.metrics(&u.admin).await;
            let buffered = metric(&text, "concord_event_buffered_bytes").expect("gauge");
            peak_buffered = peak_buffered.max(buffered);
        }
    }
    let mut alice = reader.await.unwrap();
    // Carol's budget and one event more, and what alice had not taken yet.
    assert!(
        peak_buffered <= 2 * (BUDGET + 70 * 1024),
        "{peak_buffered} bytes queued"
    );
    assert!(
        peak_rss <= idle + 16 * 1024,
        "RSS {peak_rss} KiB, idle {idle} KiB"
    );
    let mut dropped = false;
    for _ in 0..300 {
        let metrics = s.metrics(&u.admin).await;
        if metrics.contains("concord_event_subscribers_lagged_total 1")
            && metrics.contains("concord_event_subscribers 1\n")
            && metric(&metrics, "concord_event_buffered_bytes") == Some(0)
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(dropped, "carol's subscription was not dropped");
    post_marker(s, &u.alice, "shared/still-here").await;
    assert!(alice.until_marker("shared/still-here").await.is_empty());
}

/// A subscriber that sends a message above `--events-max-message-size` (64 KiB by
/// default) is closed with 1009.
#[tokio::test]
async fn a_message_above_the_limit_closes_the_subscription_with_1009() {
    let u = start();
    let mut sub = subscribe(&u.s.base, &u.alice).await.unwrap();
    sub.send_text("x".repeat(100 * 1024)).await;
    assert_eq!(sub.close_code().await, Some(1009));
}
