//! The contents API compared with a real jupyter_server: the same fixture files in two
//! roots, the same requests in the same order to both, the JSON answers compared modulo
//! timestamps (and each server's own root directory in messages).

use crate::common;

use common::jupyter::Jupyter;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;

fn fixture(root: &Path) {
    let nb = json!({
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# Title\n", "text"]},
            {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1,
             "source": ["print('hi')"], "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "custom": {"keep": true}},
        "nbformat": 4, "nbformat_minor": 5
    });
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    write("hello.txt", "héllo wörld\n".as_bytes());
    write("data.bin", &[0u8, 159, 146, 150, 255]);
    write("script.py", b"print(1)\n");
    write("page.html", b"<b>x</b>");
    write(
        "nb.ipynb",
        concord_contents::notebook::notebook_file_text(&nb).as_bytes(),
    );
    write("broken.ipynb", b"{not json");
    let mut invalid = nb.clone();
    invalid["cells"][1]
        .as_object_mut()
        .unwrap()
        .remove("outputs");
    write(
        "invalid.ipynb",
        concord_contents::notebook::notebook_file_text(&invalid).as_bytes(),
    );
    write("sub/inner.txt", b"inner");
    write("my-dir.d/f-1.txt", b"f");
    write("my-dir.d/in~side/x_y.txt", b"x");
    write("sub/deeper/x.md", b"# x");
    write(".hidden/secret.txt", b"s");
    write(".dotfile", b"d");
    write("junk.pyc", b"c");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let outside = root
        .parent()
        .unwrap()
        .join(format!("outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "secret").unwrap();
    std::fs::create_dir_all(root.join("links")).unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), root.join("links/escape.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("sublink")).unwrap();
}

/// Drop what legitimately differs between two servers: timestamps, root directories.
fn normalise(v: &mut Value, roots: &[&str]) {
    match v {
        Value::Object(map) => {
            map.remove("created");
            map.remove("last_modified");
            for value in map.values_mut() {
                normalise(value, roots);
            }
            if let Some(Value::Array(items)) = map.get_mut("content") {
                items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalise(i, roots)),
        Value::String(s) => {
            // jupyter_server names files by their path on the server; concord by their path
            // in the API.
            for root in roots {
                *s = s.replace(&format!("{root}/"), "").replace(root, "<root>");
            }
        }
        _ => {}
    }
}

struct Pair {
    s: common::Server,
    j: Jupyter,
    ours: reqwest::Client,
    theirs: reqwest::Client,
    roots: Vec<String>,
    failures: std::sync::Mutex<Vec<String>>,
}

/// How to compare one request's answers.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Same status and the same JSON (modulo timestamps and roots).
    All,
    /// Same status; the message only as far as its first line.
    StatusAndFirstLine,
    /// Same status only (the messages are worded differently on purpose).
    Status,
}

impl Pair {
    /// Send to both; answers normalised. A `Location` header must be the same on both
    /// (paths are compared by clients), else a failure is recorded.
    async fn send(&self, method: Method, url_path: &str, body: Option<Value>) -> [(u16, Value); 2] {
        let mut out = Vec::new();
        let mut locations = Vec::new();
        for (client, url) in [
            (&self.ours, self.s.url(url_path)),
            (&self.theirs, self.j.url(url_path)),
        ] {
            let mut req = client.request(method.clone(), url);
            if let Some(b) = &body {
                // Browsers send text/plain; both must read it as JSON.
                req = req
                    .header("Content-Type", "text/plain;charset=UTF-8")
                    .body(b.to_string());
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            locations.push(
                resp.headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            let text = resp.text().await.unwrap();
            let mut value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let roots: Vec<&str> = self.roots.iter().map(String::as_str).collect();
            normalise(&mut value, &roots);
            out.push((status, value));
        }
        if locations[0] != locations[1] {
            self.failures.lock().unwrap().push(format!(
                "Location differs: {method} {url_path}\n ours:   {:?}\n theirs: {:?}",
                locations[0], locations[1]
            ));
        }
        [out[0].clone(), out[1].clone()]
    }

    async fn check(
        &self,
        method: Method,
        url_path: &str,
        body: Option<Value>,
        how: Compare,
    ) -> Value {
        let [(s1, ours), (s2, theirs)] = self.send(method.clone(), url_path, body.clone()).await;
        let what =
            format!("{method} {url_path} {body:?}\n ours:   {s1} {ours}\n theirs: {s2} {theirs}");
        let fail = |why: &str| self.failures.lock().unwrap().push(format!("{why}: {what}"));
        if s1 != s2 {
            fail("status differs");
            return ours;
        }
        // jupyter_server answers some 404s in plain text; compare the message text.
        let msg = |v: &Value| {
            v.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.as_str().unwrap_or("").to_string())
        };
        let first = |s: String| s.lines().next().unwrap_or("").to_string();
        let same = match how {
            Compare::All if s1 < 400 => ours == theirs,
            Compare::All | Compare::StatusAndFirstLine if s1 >= 400 => {
                first(msg(&ours)) == first(msg(&theirs))
            }
            Compare::StatusAndFirstLine => {
                ours.get("message").is_some() == theirs.get("message").is_some()
            }
            _ => true,
        };
        if !same {
            fail("answers differ");
        }
        ours
    }
}

#[tokio::test]
async fn contents_api_matches_jupyter_server() {
    let b = common::server()
        .token("contents-token")
        .args(&["--delete-to-trash", "false"]);
    fixture(b.root());
    let s = b.start();
    let jroot = tempfile::tempdir().unwrap();
    fixture(jroot.path());
    let j = Jupyter::start(
        jroot.path(),
        &["--FileContentsManager.delete_to_trash=False"],
    );
    let roots = vec![
        std::fs::canonicalize(s.root())
            .unwrap()
            .display()
            .to_string(),
        std::fs::canonicalize(jroot.path())
            .unwrap()
            .display()
            .to_string(),
        s.root().display().to_string(),
        jroot.path().display().to_string(),
    ];
    let p = Pair {
        ours: s.owner(),
        theirs: j.client(),
        s,
        j,
        roots,
        failures: Default::default(),
    };
    use Compare::*;
    use Method as M;
    let get = M::GET;

    // A symlink leading outside the root: jupyter_server follows it, concord says 404.
    let [(ours, _), (theirs, _)] = p
        .send(get.clone(), "api/contents/links/escape.txt", None)
        .await;
    assert_eq!((ours, theirs), (404, 200));
    let listing = p.send(get.clone(), "api/contents/links", None).await;
    assert_eq!(listing[0].1["content"], json!([]));
    std::fs::remove_file(p.j_root().join("links/escape.txt")).unwrap();

    // Reads: directories, files, notebooks, formats, hashes, types, unknown parameters.
    for q in [
        "api/contents",
        "api/contents/",
        "api/contents?content=0",
        "api/contents/sub",
        "api/contents/sub/deeper?type=directory",
        "api/contents/hello.txt",
        "api/contents/hello.txt?format=base64",
        "api/contents/hello.txt?hash=1",
        "api/contents/hello.txt?content=0&hash=1",
        "api/contents/data.bin",
        "api/contents/data.bin?format=base64&hash=1",
        "api/contents/script.py?type=file",
        "api/contents/nb.ipynb",
        "api/contents/nb.ipynb?content=0",
        "api/contents/nb.ipynb?hash=1",
        "api/contents/nb.ipynb?type=file",
        "api/contents/nb.ipynb?type=file&format=text",
        "api/contents/hello.txt?type=notebook",
        "api/contents/hello.txt?unknown=1&x=y",
        "api/contents/sublink/inner.txt",
        "api/contents/empty",
        "api/contents/hello.txt?type=bogus",
    ] {
        p.check(get.clone(), q, None, All).await;
    }
    // Read errors.
    for q in [
        "api/contents/missing.txt",
        "api/contents/sub?type=file",
        "api/contents/hello.txt?type=directory",
        "api/contents/data.bin?format=text",
        "api/contents/hello.txt?format=xml",
        "api/contents/hello.txt?content=2",
        "api/contents/hello.txt?hash=2",
        "api/contents/.hidden/secret.txt",
        "api/contents/.dotfile",
        "api/contents/broken.ipynb",
    ] {
        p.check(get.clone(), q, None, All).await;
    }
    // A path below a file: jupyter_server fails with a 500 here; concord says 404.
    let [(ours, _), (theirs, _)] = p
        .send(get.clone(), "api/contents/hello.txt/child", None)
        .await;
    assert_eq!((ours, theirs), (404, 500));

    // An invalid notebook still loads, with a message (worded by each validator).
    let ours = p
        .check(
            get.clone(),
            "api/contents/invalid.ipynb",
            None,
            StatusAndFirstLine,
        )
        .await;
    assert!(ours["message"]
        .as_str()
        .unwrap()
        .starts_with("Notebook validation failed: "));

    // Creating: untitled notebooks, files and folders; uploads; saves.
    for body in [
        None,
        Some(json!({"type": "notebook"})),
        Some(json!({"type": "notebook"})),
        Some(json!({"ext": ".ipynb"})),
        Some(json!({"type": "file", "ext": ".txt"})),
        Some(json!({"type": "file", "ext": ".txt"})),
        Some(json!({"type": "directory"})),
        Some(json!({"type": "directory"})),
        Some(json!({"type": "weird"})),
        Some(json!({})),
    ] {
        p.check(M::POST, "api/contents/sub", body, All).await;
    }
    // Locations keep unreserved characters (`-`, `.`, `~`, `_`) as they are.
    p.check(
        M::POST,
        "api/contents/my-dir.d/in~side",
        Some(json!({"type": "notebook"})),
        All,
    )
    .await;
    p.check(
        M::PUT,
        "api/contents/my-dir.d/a_b-c.txt",
        Some(json!({"type": "file", "format": "text", "content": "x"})),
        All,
    )
    .await;
    p.check(M::POST, "api/contents/nowhere", None, All).await;
    p.check(M::POST, "api/contents/hello.txt", None, All).await;
    p.check(M::GET, "api/contents/sub/Untitled.ipynb", None, All)
        .await;
    let file = |content: &str| json!({"type": "file", "format": "text", "content": content});
    p.check(M::PUT, "api/contents/new.txt", Some(file("one")), All)
        .await;
    p.check(M::PUT, "api/contents/new.txt", Some(file("two")), All)
        .await;
    p.check(
        M::PUT,
        "api/contents/up.bin",
        Some(json!({"type": "file", "format": "base64", "content": "AAEC\n"})),
        All,
    )
    .await;
    p.check(M::GET, "api/contents/up.bin", None, All).await;
    p.check(
        M::PUT,
        "api/contents/newdir",
        Some(json!({"type": "directory"})),
        All,
    )
    .await;
    p.check(
        M::PUT,
        "api/contents/newdir",
        Some(json!({"type": "directory"})),
        All,
    )
    .await;
    p.check(
        M::PUT,
        "api/contents/made.ipynb",
        Some(json!({"type": "notebook"})),
        All,
    )
    .await;
    p.check(M::PUT, "api/contents/empty-body-dir", None, Status)
        .await;
    for (path, body) in [
        (
            "api/contents/x.txt",
            json!({"type": "file", "content": "x"}),
        ),
        (
            "api/contents/new.txt",
            json!({"format": "text", "content": "x"}),
        ),
        ("api/contents/new.txt", json!({"type": "file"})),
        ("api/contents/x.txt", json!({"copy_from": "hello.txt"})),
        ("api/contents/.new", file("x")),
        (
            "api/contents/ok.txt",
            json!({"type": "file", "format": "text", "content": "x", "path": ".sneaky"}),
        ),
        ("api/contents/hello.txt", json!({"type": "directory"})),
        (
            "api/contents/chunky.nb",
            json!({"type": "notebook", "content": {}, "chunk": 1}),
        ),
    ] {
        p.check(M::PUT, path, Some(body), All).await;
    }
    // Chunked upload.
    for (chunk, content) in [(1, "aaa"), (2, "bbb"), (-1, "ccc")] {
        p.check(
            M::PUT,
            "api/contents/big.dat",
            Some(json!({"type": "file", "format": "text", "content": content, "chunk": chunk})),
            All,
        )
        .await;
    }
    p.check(M::GET, "api/contents/big.dat", None, All).await;
    // Saving a valid notebook model (as JupyterLab does).
    let nb: Value = p.check(M::GET, "api/contents/nb.ipynb", None, All).await;
    p.check(
        M::PUT,
        "api/contents/nb.ipynb",
        Some(json!({"type": "notebook", "format": "json", "content": nb["content"]})),
        All,
    )
    .await;
    assert_eq!(
        std::fs::read(p.s.root().join("nb.ipynb")).unwrap(),
        std::fs::read(p.j_root().join("nb.ipynb")).unwrap(),
        "saved notebook bytes differ"
    );
    // Bad JSON bodies.
    for body in ["{oops", "[1, 2]"] {
        let mut statuses = Vec::new();
        for (client, url) in [
            (&p.ours, p.s.url("api/contents/q.txt")),
            (&p.theirs, p.j.url("api/contents/q.txt")),
        ] {
            statuses.push(
                client
                    .put(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        assert_eq!(statuses[0], 400, "{body}");
        if body == "{oops" {
            assert_eq!(statuses[0], statuses[1]);
        }
    }

    // Copies.
    for (to, from) in [
        ("api/contents", "nb.ipynb"),
        ("api/contents", "nb.ipynb"),
        ("api/contents", "nb-Copy1.ipynb"),
        ("api/contents/sub", "hello.txt"),
        ("api/contents/sub", "hello.txt"),
        ("api/contents/copied.txt", "hello.txt"),
        ("api/contents", "sub"),
        ("api/contents", "missing.txt"),
        ("api/contents/no/dir/x", "hello.txt"),
        ("api/contents", ".hidden/secret.txt"),
        ("api/contents/.hidden", "hello.txt"),
        // Directories: beside themselves, into themselves, into another folder, into one
        // that does not exist yet (created, as shutil.copytree does).
        ("api/contents", "my-dir.d"),
        ("api/contents/my-dir.d", "my-dir.d"),
        ("api/contents/sub", "my-dir.d/in~side"),
        ("api/contents/fresh/new", "my-dir.d"),
        ("api/contents/my-dir.d", "/my-dir.d/"),
    ] {
        p.check(M::POST, to, Some(json!({"copy_from": from})), All)
            .await;
    }
    for copied in [
        "api/contents/sub-Copy1",
        "api/contents/my-dir-Copy1.d",
        "api/contents/my-dir.d/my-dir.d",
        "api/contents/my-dir.d/my-dir.d/in~side",
        "api/contents/my-dir.d/my-dir-Copy1.d",
        "api/contents/my-dir.d/my-dir-Copy1.d/my-dir.d",
        "api/contents/sub/in~side",
        "api/contents/fresh/new/my-dir.d/in~side",
    ] {
        p.check(M::GET, copied, None, All).await;
    }

    // Renames.
    for (from, body) in [
        ("api/contents/new.txt", json!({"path": "renamed.txt"})),
        ("api/contents/renamed.txt", json!({"path": "sub/moved.txt"})),
        ("api/contents/sub/moved.txt", json!({"path": "hello.txt"})),
        ("api/contents/ghost.txt", json!({"path": "g2.txt"})),
        ("api/contents/hello.txt", json!({"path": ".hidden.txt"})),
        ("api/contents/hello.txt", json!({})),
        (
            "api/contents/made.ipynb",
            json!({"path": "newdir/made.ipynb"}),
        ),
    ] {
        p.check(M::PATCH, from, Some(body), All).await;
    }
    p.check(M::PATCH, "api/contents/hello.txt", None, All).await;

    // Checkpoints.
    p.check(M::GET, "api/contents/hello.txt/checkpoints", None, All)
        .await;
    p.check(M::POST, "api/contents/hello.txt/checkpoints", None, All)
        .await;
    p.check(M::GET, "api/contents/hello.txt/checkpoints", None, All)
        .await;
    p.check(M::PUT, "api/contents/hello.txt", Some(file("changed")), All)
        .await;
    p.check(
        M::POST,
        "api/contents/hello.txt/checkpoints/checkpoint",
        None,
        All,
    )
    .await;
    p.check(M::GET, "api/contents/hello.txt", None, All).await;
    p.check(
        M::GET,
        "api/contents/newdir/made.ipynb/checkpoints",
        None,
        All,
    )
    .await;
    p.check(
        M::DELETE,
        "api/contents/hello.txt/checkpoints/checkpoint",
        None,
        All,
    )
    .await;
    p.check(
        M::DELETE,
        "api/contents/hello.txt/checkpoints/checkpoint",
        None,
        All,
    )
    .await;

    // Trust.
    p.check(M::POST, "api/contents/nb.ipynb/trust", None, All)
        .await;
    p.check(M::GET, "api/contents/nb.ipynb", None, All).await;

    // Deletes.
    for path in [
        "api/contents/up.bin",
        "api/contents/up.bin",
        "api/contents/sub",
        "api/contents/empty",
        "api/contents/.hidden/secret.txt",
        "api/contents/newdir/made.ipynb",
    ] {
        p.check(M::DELETE, path, None, All).await;
    }
    p.check(M::GET, "api/contents", None, All).await;

    // /files.
    for q in [
        "files/hello.txt",
        "files/hello.txt?download=1",
        "files/data.bin",
        "files/missing",
        "files/.dotfile",
    ] {
        let mut got = Vec::new();
        for (client, url) in [(&p.ours, p.s.url(q)), (&p.theirs, p.j.url(q))] {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let disposition = r
                .headers()
                .get("content-disposition")
                .map(|v| v.to_str().unwrap().to_string());
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = r.bytes().await.unwrap();
            // Error pages differ in format (HTML vs JSON): compare their status only.
            got.push(if status == 200 {
                (status, disposition, ctype, bytes.to_vec())
            } else {
                (status, None, None, vec![])
            });
        }
        if got[0] != got[1] {
            p.failures
                .lock()
                .unwrap()
                .push(format!("{q}: ours {:?} theirs {:?}", got[0], got[1]));
        }
    }
    // An anonymous page request is sent to the login page with `next` encoded alike.
    for q in ["files/a%20b~c*d-e.txt", "view/x_y.txt?p=1&q=~"] {
        let mut got = Vec::new();
        for url in [p.s.url(q), p.j.url(q)] {
            let r = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            let location = r.headers().get("location").map(|v| {
                let v = v.to_str().unwrap();
                v[v.find("/login").unwrap_or(0)..].to_string()
            });
            got.push((r.status().as_u16(), location));
        }
        if got[0] != got[1] {
            p.failures
                .lock()
                .unwrap()
                .push(format!("{q}: ours {:?} theirs {:?}", got[0], got[1]));
        }
    }
    let failures = p.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn invalid_notebook_save_is_refused_where_jupyter_accepts_it() {
    // A deliberate difference: an invalid notebook is never written to disk, so Concord
    // answers 400 naming the problem where jupyter_server saves it with a warning.
    let s = common::server().token("t").start();
    let nb = json!({"cells": [{"cell_type": "code", "metadata": {}, "source": "x", "id": "a"}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let r = s
        .owner()
        .put(s.url("api/contents/bad.ipynb"))
        .body(json!({"type": "notebook", "content": nb}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Notebook validation failed"),
        "{body}"
    );
    assert!(!s.root().join("bad.ipynb").exists());
}

impl Pair {
    fn j_root(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.roots[1])
    }
}

/// A folder above `max_copy_folder_size_mb` is not copied, with jupyter_server's message
/// (its size as `du` counts it), and nothing is left behind.
#[tokio::test]
async fn directory_copy_over_the_size_limit_matches_jupyter_server() {
    let b = common::server()
        .token("copy-token")
        .args(&["--max-copy-folder-size-mb", "0"]);
    let jroot = tempfile::tempdir().unwrap();
    for root in [b.root(), jroot.path()] {
        std::fs::create_dir_all(root.join("big/inner")).unwrap();
        std::fs::write(root.join("big/inner/a.txt"), "x".repeat(5000)).unwrap();
        std::fs::create_dir(root.join("into")).unwrap();
    }
    let s = b.start();
    let j = Jupyter::start(
        jroot.path(),
        &["--FileContentsManager.max_copy_folder_size_mb=0"],
    );
    let mut answers = Vec::new();
    for (client, url) in [
        (s.owner(), s.url("api/contents/into")),
        (j.client(), j.url("api/contents/into")),
    ] {
        let r = client
            .post(url)
            .body(json!({"copy_from": "big"}).to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        answers.push((status, body["message"].clone()));
    }
    assert_eq!(answers[0].0, 400);
    assert_eq!(answers[0], answers[1]);
    for root in [s.root(), jroot.path()] {
        assert_eq!(std::fs::read_dir(root.join("into")).unwrap().count(), 0);
    }
}

/// A browser logged in with the token in the URL (a login cookie), with its `_xsrf` cookie.
async fn cookie_browser(base: &str, token: &str) -> (reqwest::Client, String) {
    use reqwest::cookie::CookieStore;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The login page sets `_xsrf`; the token in the URL logs the browser in.
    client.get(format!("{base}login")).send().await.unwrap();
    client
        .get(format!("{base}api/status?token={token}"))
        .send()
        .await
        .unwrap();
    let cookies = jar.cookies(&base.parse().unwrap()).expect("cookies");
    let xsrf = cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("_xsrf="))
        .expect("an _xsrf cookie")
        .trim_matches('"')
        .to_string();
    (client, xsrf)
}

/// Another site must not read a user's files through their cookies (a `<script src>`,
/// an `<img>`): a cookie-authenticated GET of `/files/` needs the `_xsrf` token or a
/// `Referer` of this host, as jupyter_server's files handler; tokens are not forgeable.
#[tokio::test]
async fn files_refuse_cross_site_reads_as_jupyter_server() {
    let s = common::server().token("files-token").start();
    let jroot = tempfile::tempdir().unwrap();
    let j = Jupyter::start(jroot.path(), &[]);
    for root in [s.root(), jroot.path()] {
        std::fs::write(root.join("secret.js"), "var secret = 1;").unwrap();
    }
    let servers = [
        (s.base.clone(), "files-token".to_string()),
        (j.base.clone(), j.token.clone()),
    ];
    let mut statuses: Vec<Vec<(String, u16)>> = Vec::new();
    for (base, token) in &servers {
        let (browser, xsrf) = cookie_browser(base, token).await;
        let host = base.trim_start_matches("http://").trim_end_matches('/');
        let own_page = format!("http://{host}/lab");
        let file = format!("{base}files/secret.js");
        let mut seen = Vec::new();
        let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "foreign referer, cross-site",
                browser
                    .get(&file)
                    .header("Referer", "http://evil.example/page")
                    .header("Sec-Fetch-Site", "cross-site"),
            ),
            ("no referer", browser.get(&file)),
            (
                "foreign referer, HEAD",
                browser
                    .head(&file)
                    .header("Referer", "http://evil.example/"),
            ),
            (
                "wrong _xsrf",
                browser
                    .get(format!("{file}?_xsrf=forged"))
                    .header("Referer", "http://evil.example/"),
            ),
            (
                "a host that only starts like ours",
                browser
                    .get(&file)
                    .header("Referer", format!("http://{host}.evil.example/")),
            ),
            (
                "own referer",
                browser.get(&file).header("Referer", &own_page),
            ),
            (
                "_xsrf argument",
                browser.get(format!("{file}?_xsrf={xsrf}")),
            ),
            (
                "_xsrf header",
                browser.get(&file).header("X-XSRFToken", &xsrf),
            ),
            (
                "token header",
                browser
                    .get(&file)
                    .header("Authorization", format!("token {token}"))
                    .header("Referer", "http://evil.example/"),
            ),
            (
                "token argument",
                browser
                    .get(format!("{file}?token={token}"))
                    .header("Referer", "http://evil.example/"),
            ),
        ];
        for (what, request) in cases {
            let r = request.send().await.unwrap();
            seen.push((what.to_string(), r.status().as_u16()));
        }
        statuses.push(seen);
    }
    assert_eq!(statuses[0], statuses[1], "ours, then jupyter_server's");
    let refused: Vec<&str> = statuses[0]
        .iter()
        .filter(|(_, status)| *status == 403)
        .map(|(what, _)| what.as_str())
        .collect();
    assert_eq!(
        refused,
        [
            "foreign referer, cross-site",
            "no referer",
            "foreign referer, HEAD",
            "wrong _xsrf",
            "a host that only starts like ours"
        ]
    );

    // Concord also takes the browser's word for a same-origin request or one the user
    // started (typed, bookmarked) even without a Referer; never for another site's.
    let (browser, _) = cookie_browser(&s.base, "files-token").await;
    for (site, status) in [
        ("same-origin", 200),
        ("none", 200),
        ("cross-site", 403),
        ("same-site", 403),
    ] {
        let r = browser
            .get(s.url("files/secret.js"))
            .header("Sec-Fetch-Site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "Sec-Fetch-Site: {site}");
        if status == 403 {
            // A browser route: the refusal is a page, as jupyter_server's `error.html`.
            let page = r.text().await.unwrap();
            assert!(
                page.contains("Blocking request from unknown origin"),
                "{page}"
            );
        }
    }
    let r = browser
        .get(s.url("files/secret.js"))
        .header("Referer", "http://evil.example/x")
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Blocking Cross Origin request from http:&#x2f;&#x2f;evil.example&#x2f;x."),
        "{page}"
    );
}

/// Errors name files by their API path, never by where the server keeps them, and a path
/// through a file (ENOTDIR) is a 404 like a missing directory, never a 500.
#[tokio::test]
async fn errors_name_api_paths_and_a_path_through_a_file_is_not_found() {
    let b = common::server()
        .token("errors-token")
        .args(&["--delete-to-trash", "false"]);
    let root = b.root().to_path_buf();
    std::fs::write(root.join("f.txt"), "f").unwrap();
    std::fs::write(root.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(root.join("bad.ipynb"), "{not json").unwrap();
    std::fs::write(root.join("latin.ipynb"), [0xff, 0xfe]).unwrap();
    std::fs::create_dir_all(root.join("full/inner")).unwrap();
    std::fs::create_dir(root.join("d")).unwrap();
    let s = b.start();
    let roots = [
        root.display().to_string(),
        std::fs::canonicalize(&root).unwrap().display().to_string(),
    ];
    let nb = json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let long = "n".repeat(300);
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        (
            "PUT",
            "x.txt".into(),
            Some(json!({"type": "file", "format": "text", "content": 5})),
            400,
        ),
        (
            "PUT",
            "f.txt/x.txt".into(),
            Some(json!({"type": "file", "format": "text", "content": "a"})),
            404,
        ),
        (
            "PUT",
            "f.txt/x.txt".into(),
            Some(json!({"type": "file", "format": "text", "content": "a", "chunk": 1})),
            404,
        ),
        (
            "PUT",
            "f.txt/sub".into(),
            Some(json!({"type": "directory"})),
            404,
        ),
        (
            "PUT",
            "f.txt/x.ipynb".into(),
            Some(json!({"type": "notebook", "content": nb})),
            404,
        ),
        (
            "PUT",
            "f.txt/a/b.txt".into(),
            Some(json!({"type": "file", "format": "text", "content": "a"})),
            404,
        ),
        (
            "PUT",
            long.clone(),
            Some(json!({"type": "file", "format": "text", "content": "a"})),
            400,
        ),
        (
            "PUT",
            format!("d/{long}"),
            Some(json!({"type": "directory"})),
            400,
        ),
        (
            "PUT",
            "f.txt".into(),
            Some(json!({"type": "directory"})),
            400,
        ),
        (
            "PATCH",
            "f.txt".into(),
            Some(json!({"path": "f.txt/y.txt"})),
            404,
        ),
        ("PATCH", "d".into(), Some(json!({"path": "f.txt/d"})), 404),
        ("PATCH", "d".into(), Some(json!({"path": "nowhere/d"})), 404),
        ("PATCH", "d".into(), Some(json!({"path": long})), 400),
        (
            "PATCH",
            "f.txt/x".into(),
            Some(json!({"path": "y.txt"})),
            404,
        ),
        ("POST", "f.txt/x".into(), Some(json!({"type": "file"})), 404),
        (
            "POST",
            "f.txt/x".into(),
            Some(json!({"copy_from": "f.txt"})),
            404,
        ),
        ("DELETE", "f.txt/x".into(), None, 404),
        ("DELETE", "missing".into(), None, 404),
        ("DELETE", "full".into(), None, 400),
        ("GET", "f.txt/x".into(), None, 404),
        ("GET", "bin.dat?format=text".into(), None, 400),
        ("GET", "bad.ipynb".into(), None, 400),
        ("GET", "latin.ipynb".into(), None, 400),
        ("POST", "f.txt/x/checkpoints".into(), None, 404),
    ];
    let mut failures = Vec::new();
    for (method, path, body, status) in cases {
        let mut req = s.owner().request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            s.url(&format!("api/contents/{path}")),
        );
        if let Some(b) = &body {
            req = req.body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = v["message"].as_str().unwrap_or("");
        let what = format!("{method} {path} {body:?}: {got} {text}");
        if got != status {
            failures.push(format!("expected {status}: {what}"));
        }
        if message.is_empty() || roots.iter().any(|r| text.contains(r.as_str())) {
            failures.push(format!(
                "message names the server's path or nothing: {what}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
