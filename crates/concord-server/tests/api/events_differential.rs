//! `/api/events` compared with a real jupyter_server: the same requests to both, with a
//! subscriber on each, and the frames (kernel ids aside) and `POST /api/events` answers
//! compared. Each step ends with a posted marker event, so a step's frames are exactly those
//! before its marker.

use crate::common;
use crate::kernels_support;

use common::events::{marker, subscribe, Subscriber, CONTENTS, KERNEL_ACTIONS};
use common::jupyter::Jupyter;
use kernels_support::path_with_venv;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

fn fixture(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
}

/// One server under test: its base URL, token and subscriber.
struct Side {
    base: String,
    token: String,
    sub: Subscriber,
    step: usize,
}

impl Side {
    async fn new(base: &str, token: &str) -> Side {
        Side {
            base: base.to_string(),
            token: token.to_string(),
            sub: subscribe(base, token).await.expect("subscribed"),
            step: 0,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = reqwest::Client::new()
            .request(m, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The frames of one step: up to this step's marker, and at least `min` of them
    /// (Concord forwards kernel actions from the kernels service, possibly after the
    /// marker).
    async fn frames(&mut self, min: usize) -> Vec<String> {
        self.step += 1;
        let name = format!("marker-{}", self.step);
        let body = marker(&name).to_string();
        let (status, answer) = self.call("POST", "api/events", Some(&body)).await;
        assert_eq!(status, 204, "{answer}");
        let mut frames = self.sub.until_marker(&name).await;
        while frames.len() < min {
            frames.push(self.sub.next().await.expect("more frames"));
        }
        frames
    }
}

/// Kernel ids replaced by `K1`, `K2`… in order of appearance, so two servers compare.
fn normalise(frames: &[String], ids: &mut HashMap<String, String>) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f).unwrap();
            let mut out = f.clone();
            if let Some(id) = v["kernel_id"].as_str() {
                let n = ids.len() + 1;
                let name = ids.entry(id.to_string()).or_insert_with(|| format!("K{n}"));
                out = out.replace(id, name);
            }
            out
        })
        .collect()
}

#[tokio::test]
async fn event_frames_match_jupyter_server() {
    let jroot = tempfile::tempdir().unwrap();
    fixture(jroot.path());
    let jupyter = Jupyter::start(jroot.path(), &[]);
    let b = common::server().env("PATH", &path_with_venv());
    fixture(b.root());
    let s = b.start();
    let mut c = Side::new(&s.base, s.token.as_deref().unwrap()).await;
    let mut j = Side::new(&jupyter.base, &jupyter.token).await;

    let file =
        |content: &str| json!({"type": "file", "format": "text", "content": content}).to_string();
    let nb = json!({"type": "notebook", "content": {"cells": [], "metadata": {},
                    "nbformat": 4, "nbformat_minor": 5}})
    .to_string();
    let chunk =
        |n: i64| json!({"type": "file", "format": "text", "content": "ab", "chunk": n}).to_string();
    let steps: Vec<(&str, &str, Option<String>)> = vec![
        ("PUT", "api/contents/a.txt", Some(file("hi"))),
        ("GET", "api/contents/a.txt", None),
        ("GET", "api/contents/sub", None),
        ("GET", "api/contents/sub?content=0", None),
        (
            "PATCH",
            "api/contents/a.txt",
            Some(json!({"path": "/b.txt"}).to_string()),
        ),
        (
            "PATCH",
            "api/contents/b.txt",
            Some(json!({"path": "b.txt"}).to_string()),
        ),
        (
            "POST",
            "api/contents/sub",
            Some(json!({"copy_from": "/b.txt"}).to_string()),
        ),
        (
            "POST",
            "api/contents/sub",
            Some(json!({"copy_from": "b.txt"}).to_string()),
        ),
        (
            "POST",
            "api/contents",
            Some(json!({"copy_from": "emptydir"}).to_string()),
        ),
        (
            "POST",
            "api/contents/sub",
            Some(json!({"type": "notebook"}).to_string()),
        ),
        (
            "POST",
            "api/contents",
            Some(json!({"type": "directory"}).to_string()),
        ),
        ("PUT", "api/contents/c.ipynb", Some(nb)),
        ("POST", "api/contents/c.ipynb/trust", None),
        ("POST", "api/contents/c.ipynb/checkpoints", None),
        ("PUT", "api/contents/big.bin", Some(chunk(1))),
        ("PUT", "api/contents/big.bin", Some(chunk(-1))),
        (
            "PUT",
            "api/contents/newdir",
            Some(json!({"type": "directory"}).to_string()),
        ),
        ("GET", "files/b.txt", None),
        ("DELETE", "api/contents/b.txt", None),
        // Failures emit nothing.
        ("DELETE", "api/contents/nope.txt", None),
        ("GET", "api/contents/nope.txt", None),
        (
            "PUT",
            "api/contents/bad.txt",
            Some(json!({"type": "file"}).to_string()),
        ),
    ];
    let mut total = 0;
    for (method, path, body) in &steps {
        let (cs, _) = c.call(method, path, body.as_deref()).await;
        let (js, _) = j.call(method, path, body.as_deref()).await;
        assert_eq!(cs, js, "{method} {path}: status");
        let (cf, jf) = (c.frames(0).await, j.frames(0).await);
        assert_eq!(cf, jf, "{method} {path}: frames");
        total += jf.len();
    }
    // What jupyter_server 2.x emits for these steps (so a silent subscriber cannot pass).
    assert_eq!(total, 36);

    // Kernels: start, interrupt, restart, shut down, and a start that fails.
    let mut ids = (HashMap::new(), HashMap::new());
    let start = json!({"name": "python3"}).to_string();
    let (_, ck) = c.call("POST", "api/kernels", Some(&start)).await;
    let (_, jk) = j.call("POST", "api/kernels", Some(&start)).await;
    let (cid, jid) = (ck["id"].as_str().unwrap(), jk["id"].as_str().unwrap());
    let mut compare = |label: &str, cf: Vec<String>, jf: Vec<String>| {
        assert_eq!(
            normalise(&cf, &mut ids.0),
            normalise(&jf, &mut ids.1),
            "{label}"
        );
        assert!(
            cf.iter().all(|f| f.contains(KERNEL_ACTIONS)),
            "{label}: {cf:?}"
        );
    };
    let (cf, jf) = (c.frames(1).await, j.frames(1).await);
    compare("start", cf, jf);
    for (method, action) in [("POST", "interrupt"), ("POST", "restart"), ("DELETE", "")] {
        let (cpath, jpath) = if action.is_empty() {
            (format!("api/kernels/{cid}"), format!("api/kernels/{jid}"))
        } else {
            (
                format!("api/kernels/{cid}/{action}"),
                format!("api/kernels/{jid}/{action}"),
            )
        };
        let (cs, _) = c.call(method, &cpath, None).await;
        let (js, _) = j.call(method, &jpath, None).await;
        assert_eq!(cs, js, "{method} {cpath}");
        let (cf, jf) = (c.frames(1).await, j.frames(1).await);
        compare(&format!("{method} {action}"), cf, jf);
    }
    // A kernel that is gone is not acted on.
    c.call("DELETE", &format!("api/kernels/{cid}"), None).await;
    j.call("DELETE", &format!("api/kernels/{jid}"), None).await;
    let (cf, jf) = (c.frames(0).await, j.frames(0).await);
    compare("shutdown of a gone kernel", cf, jf);
    // (jupyter_server answers 500 here, Concord 404: only the events are compared.)
    let nosuch = json!({"name": "nosuch"}).to_string();
    c.call("POST", "api/kernels", Some(&nosuch)).await;
    j.call("POST", "api/kernels", Some(&nosuch)).await;
    let (cf, jf) = (c.frames(1).await, j.frames(1).await);
    compare("failed start", cf, jf);
}

/// jupyter_server's message for a data validation error is the error's first line followed
/// by a dump of the schema; Concord sends the first line.
fn first_line(message: &str) -> &str {
    message
        .split("\n\nFailed validating")
        .next()
        .unwrap_or(message)
}

#[tokio::test]
async fn post_answers_and_frames_match_jupyter_server() {
    let jroot = tempfile::tempdir().unwrap();
    let jupyter = Jupyter::start(jroot.path(), &[]);
    let s = common::server().start();
    // jupyter_server validates event data only while someone listens: both have a listener.
    let mut c = Side::new(&s.base, s.token.as_deref().unwrap()).await;
    let mut j = Side::new(&jupyter.base, &jupyter.token).await;
    let ok = json!({"action": "save", "path": "x"});
    let k = KERNEL_ACTIONS;
    let bodies: Vec<String> = [
        "", "null", "not json", "5", "1.5", "true",
        // One key missing at a time (with several missing, jupyter_server's choice of which to
        // name changes from run to run).
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        [
            json!({"version": 1, "data": ok}),
            json!({"schema_id": CONTENTS, "data": ok}),
            json!({"schema_id": CONTENTS, "version": 1}),
            json!({"schema_id": "nope", "version": 1, "data": ok}),
            json!({"schema_id": 5, "version": 1, "data": ok}),
            json!({"schema_id": [1], "version": 1, "data": ok}),
            json!({"schema_id": CONTENTS, "version": 2, "data": ok}),
            json!({"schema_id": CONTENTS, "version": "2", "data": ok}),
            json!({"schema_id": CONTENTS, "version": 1.0, "data": ok}),
            json!({"schema_id": CONTENTS, "version": null, "data": ok}),
            json!({"schema_id": CONTENTS, "version": true, "data": ok}),
            json!({"schema_id": CONTENTS, "version": "it's", "data": ok}),
            json!({"schema_id": CONTENTS, "version": 1, "data": {}}),
            json!({"schema_id": CONTENTS, "version": 1, "data": {"action": "fly", "path": "x"}}),
            json!({"schema_id": CONTENTS, "version": 1, "data": {"action": "save", "path": 5}}),
            json!({"schema_id": CONTENTS, "version": 1, "data": "str"}),
            json!({"schema_id": k, "version": 1, "data": {"action": "shutdown", "msg": "m"}}),
            json!({"schema_id": CONTENTS, "version": 1, "data": ok, "timestamp": "2022-05-26T13:50:00Z"}),
            json!({"schema_id": CONTENTS, "version": 1, "data": ok, "timestamp": 5}),
            // Accepted.
            json!({"schema_id": CONTENTS, "version": 1, "data": ok}),
            json!({"schema_id": CONTENTS, "version": "1", "data": ok, "timestamp": "2022-05-26T13:50:00+05:00Z"}),
            json!({"schema_id": k, "version": 1, "data": {"action": "start", "msg": "m", "status": "error"}}),
            json!({"schema_id": CONTENTS, "version": 1, "data": {"action": "save", "path": "x", "schema_id": "y"}}),
        ]
        .iter()
        .map(Value::to_string),
    )
    // Key order and formatting as the client wrote them.
    .chain([
        format!(r#"{{"schema_id":"{CONTENTS}","version":1,"data":{{"path":"d/é.txt","action":"copy","source_path":"a","extra":[1,2.50,{{"z":null,"a":true}}]}}}}"#),
    ])
    .collect();
    let mut delivered = Vec::new();
    for body in &bodies {
        let (cs, cb) = c.call("POST", "api/events", Some(body)).await;
        let (js, jb) = j.call("POST", "api/events", Some(body)).await;
        assert_eq!(cs, js, "{body}: status ({cb} / {jb})");
        if js != 204 {
            let (cm, jm) = (
                cb["message"].as_str().unwrap_or_default(),
                jb["message"].as_str().unwrap_or_default(),
            );
            assert_eq!(cm, first_line(jm), "{body}: message");
        }
        let (cf, jf) = (c.frames(0).await, j.frames(0).await);
        assert_eq!(cf, jf, "{body}: frames");
        delivered.extend(cf);
    }
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    assert_eq!(
        delivered[3],
        format!(
            r#"{{"schema_id": "{CONTENTS}", "path": "d/\u00e9.txt", "action": "copy", "source_path": "a", "extra": [1, 2.5, {{"z": null, "a": true}}]}}"#
        )
    );
}
