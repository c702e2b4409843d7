//! Exports (`/api/nbconvert`, `/nbconvert/…`): compared with a real jupyter_server on the
//! same files, refused without leaking and without starting a conversion, and stopped at
//! their limits with a message that says which.

use crate::common;

use common::jupyter::{venv_python, Jupyter};
use serde_json::{json, Value};
use std::path::Path;

/// A notebook as JupyterLab saves it (sources as lists of lines), with an output.
fn notebook() -> Value {
    json!({
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# Title\n", "Some *text*."]},
            {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {},
             "outputs": [{"name": "stdout", "output_type": "stream", "text": ["3\n"]}],
             "source": ["print(1 + 2)"]}
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "mimetype": "text/x-python", "file_extension": ".py"}
        },
        "nbformat": 4,
        "nbformat_minor": 5
    })
}

/// A notebook whose output is an image: the markdown export has a resource file (a zip).
fn notebook_with_image() -> Value {
    // A 1×1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let mut nb = notebook();
    nb["cells"][1]["outputs"] = json!([
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": ["<Figure>"]}}
    ]);
    nb
}

fn write(root: &Path, path: &str, nb: &Value) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, serde_json::to_vec_pretty(nb).unwrap()).unwrap();
}

/// What a client sees of an answer, but the date and cookies.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The headers that say what an export is and how it may be used.
const COMPARED: &[&str] = &[
    "content-type",
    "content-disposition",
    "cache-control",
    "content-security-policy",
    "last-modified",
    "location",
];

async fn seen(r: reqwest::RequestBuilder) -> Seen {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = COMPARED
        .iter()
        .filter_map(|name| {
            r.headers()
                .get(*name)
                .map(|v| (name.to_string(), v.to_str().unwrap().to_string()))
        })
        .collect();
    Seen {
        status,
        headers,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn formats_and_exports_match_jupyter_server() {
    let s = common::server().token("nbconvert-token").start();
    write(s.root(), "dir/a b.ipynb", &notebook());
    write(s.root(), "pics.ipynb", &notebook_with_image());
    std::fs::write(s.root().join("dir/notes.txt"), "not a notebook").unwrap();
    let j = Jupyter::start(s.root(), &[]);

    // The formats: the same JSON.
    let ours = seen(s.owner().get(s.url("api/nbconvert"))).await;
    let theirs = seen(j.client().get(j.url("api/nbconvert"))).await;
    assert_eq!(ours.status, 200);
    assert_eq!(ours.status, theirs.status);
    let ours_json: Value = serde_json::from_slice(&ours.body).unwrap();
    let theirs_json: Value = serde_json::from_slice(&theirs.body).unwrap();
    assert_eq!(ours_json, theirs_json);
    for format in ["html", "python", "script", "markdown", "notebook"] {
        assert!(ours_json.get(format).is_some(), "{format} in {ours_json}");
    }

    // Exports of a file: status, headers and bytes.
    let gets = [
        "nbconvert/html/dir/a%20b.ipynb",
        "nbconvert/html/dir/a%20b.ipynb?download=true",
        "nbconvert/html/dir/a%20b.ipynb?download=true&sanitize_html=true",
        "nbconvert/python/dir/a%20b.ipynb?download=true",
        "nbconvert/script/dir/a%20b.ipynb?download=TRUE",
        "nbconvert/markdown/dir/a%20b.ipynb",
        "nbconvert/latex/dir/a%20b.ipynb?download=1",
        // Fails in both (pandoc is not installed): a 500.
        "nbconvert/rst/dir/a%20b.ipynb",
        "nbconvert/notebook/dir/a%20b.ipynb?download=true",
        // Missing.
        "nbconvert/html/dir/missing.ipynb",
    ];
    for url in gets {
        let ours = seen(s.owner().get(s.url(url))).await;
        let theirs = seen(j.client().get(j.url(url))).await;
        assert_eq!(ours.status, theirs.status, "{url}");
        if ours.status >= 400 {
            // jupyter_server's errors are HTML pages; ours JSON, as for /files/.
            continue;
        }
        assert_eq!(ours.headers, theirs.headers, "{url}");
        if ours.status == 200 {
            assert_eq!(
                String::from_utf8_lossy(&ours.body),
                String::from_utf8_lossy(&theirs.body),
                "{url}"
            );
        }
    }
    // Not a notebook: redirected to /files/ (a directory to /tree/), as jupyter_server's
    // code means; jupyter_server 2.x answers an empty 200 (its redirect is not awaited).
    for (url, location) in [
        ("nbconvert/html/dir/notes.txt", "/files/dir/notes.txt"),
        ("nbconvert/html/dir", "/tree/dir"),
    ] {
        let ours = seen(s.owner().get(s.url(url))).await;
        assert_eq!(ours.status, 302, "{url}");
        assert!(
            ours.headers.contains(&("location".into(), location.into())),
            "{url}: {:?}",
            ours.headers
        );
        let theirs = seen(j.client().get(j.url(url))).await;
        assert_eq!((theirs.status, theirs.body.len()), (200, 0), "{url}");
    }
    let html = seen(s.owner().get(s.url("nbconvert/html/dir/a%20b.ipynb"))).await;
    let html = String::from_utf8(html.body).unwrap();
    assert!(html.contains("<title>a b</title>"), "{html:.300}");
    assert!(html.contains("print"), "the code is in the export");

    // An export with resource files is a zip, always an attachment.
    let url = "nbconvert/markdown/pics.ipynb";
    let ours = seen(s.owner().get(s.url(url))).await;
    let theirs = seen(j.client().get(j.url(url))).await;
    assert_eq!((ours.status, theirs.status), (200, 200));
    assert_eq!(ours.headers, theirs.headers);
    assert!(ours
        .headers
        .contains(&("content-type".into(), "application/zip".into())));
    assert!(ours.body.starts_with(b"PK"), "a zip");
    assert_eq!(
        ours.body.len(),
        theirs.body.len(),
        "the same files, deflated alike"
    );

    // A notebook posted (JupyterLab's model: multi-line strings as strings).
    let mut posted = notebook();
    for cell in posted["cells"].as_array_mut().unwrap() {
        let joined: String = cell["source"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        cell["source"] = json!(joined);
    }
    posted["cells"][1]["outputs"][0]["text"] = json!("3\n");
    for (format, name) in [
        ("html", json!("posted.ipynb")),
        ("python", json!("posted.ipynb")),
        ("html", json!("noext")),
        ("html", Value::Null),
    ] {
        let mut body = json!({"content": posted});
        if !name.is_null() {
            body["name"] = name.clone();
        }
        let url = format!("nbconvert/{format}");
        let ours = seen(s.owner().post(s.url(&url)).json(&body)).await;
        let theirs = seen(j.client().post(j.url(&url)).json(&body)).await;
        assert_eq!(ours.status, 200, "{url} {name}");
        assert_eq!(ours.status, theirs.status, "{url} {name}");
        assert_eq!(ours.headers, theirs.headers, "{url} {name}");
        assert_eq!(
            String::from_utf8_lossy(&ours.body),
            String::from_utf8_lossy(&theirs.body),
            "{url} {name}"
        );
    }
    let zipped = seen(
        s.owner()
            .post(s.url("nbconvert/markdown"))
            .json(&json!({"name": "p.ipynb", "content": notebook_with_image()})),
    )
    .await;
    assert!(zipped.headers.contains(&(
        "content-disposition".into(),
        "attachment; filename*=utf-8''p.zip".into()
    )));

    // An unknown format: the 404 jupyter_server's code means (it answers 500).
    for r in [
        s.owner().get(s.url("nbconvert/nope/dir/a%20b.ipynb")),
        s.owner()
            .post(s.url("nbconvert/nope"))
            .json(&json!({"content": posted})),
    ] {
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 404);
        let message = error_message(r).await;
        assert!(
            message.contains("No exporter for format: nope"),
            "{message}"
        );
    }
    // A POST without a notebook, or with something that is not one: 400.
    for body in [json!({"name": "x.ipynb"}), json!({"content": {"cells": 3}})] {
        let r = s
            .owner()
            .post(s.url("nbconvert/html"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
}

/// An interpreter that notes each nbconvert run (`formats` or `convert`) in `log`, then
/// runs the venv's Python.
fn noting_python(dir: &Path, log: &Path, before_convert: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("python-noting");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor last; do :; done\necho \"$last\" >> '{}'\n\
             if [ \"$last\" = convert ]; then {before_convert}; fi\nexec '{}' \"$@\"\n",
            log.display(),
            venv_python().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

fn runs(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == what)
        .count()
}

const POLICY: &str = r#"
[roles.reader]
permissions = ["contents:read"]

[roles.exporter]
permissions = ["nbconvert:read", "nbconvert:write"]

[[bindings]]
role = "reader"
users = ["alice", "bob"]
paths = ["/public/**"]

[[bindings]]
role = "exporter"
users = ["alice"]
"#;

#[tokio::test]
async fn refused_exports_start_no_conversion() {
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("runs.log");
    let python = noting_python(tools.path(), &log, ":");
    let b = common::server().users_with_policy(POLICY).args(&[
        // The wrapper writes its log outside every user's view.
        "--confine",
        "false",
        "--nbconvert-python",
        python.to_str().unwrap(),
    ]);
    write(b.root(), "public/p.ipynb", &notebook());
    write(b.root(), "secret/s.ipynb", &notebook());
    b.add_user("alice", "alice-password", &[]);
    b.add_user("bob", "bob-password", &[]);
    let (alice, bob) = (b.issue_token("alice"), b.issue_token("bob"));
    let s = b.start();
    let (alice, bob) = (common::token_client(&alice), common::token_client(&bob));

    // Bob may read the notebook but not export: 403 naming the permission, nothing runs.
    for r in [
        bob.get(s.url("api/nbconvert")),
        bob.get(s.url("nbconvert/html/public/p.ipynb")),
        bob.post(s.url("nbconvert/html"))
            .json(&json!({"content": notebook()})),
    ] {
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403);
        let message = error_message(r).await;
        assert!(message.contains("nbconvert"), "{message}");
    }
    assert_eq!(runs(&log, "convert"), 0);

    // Alice may export what she may read, and only that: a notebook she may not read is
    // answered exactly as one that is not there, and no conversion starts.
    let answer = |url: &'static str| {
        let alice = alice.clone();
        let url = s.url(url);
        async move { seen(alice.get(url)).await }
    };
    let refused = answer("nbconvert/html/secret/s.ipynb").await;
    let mut missing = answer("nbconvert/html/secret/none.ipynb").await;
    let named = String::from_utf8(missing.body).unwrap();
    missing.body = named.replace("none.ipynb", "s.ipynb").into_bytes();
    assert_eq!(refused.status, 404);
    assert_eq!(refused, missing);
    let outside = answer("nbconvert/html/public/none.ipynb").await;
    assert_eq!(outside.status, 404);
    assert_eq!(runs(&log, "convert"), 0, "nothing was converted");
    let allowed = answer("nbconvert/html/public/p.ipynb?download=true").await;
    assert_eq!(allowed.status, 200);
    assert_eq!(runs(&log, "convert"), 1, "the allowed export ran once");
    let posted = alice
        .post(s.url("nbconvert/python"))
        .json(&json!({"name": "x.ipynb", "content": notebook()}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert!(posted.text().await.unwrap().contains("print(1 + 2)"));
    assert_eq!(runs(&log, "convert"), 2);
}

#[tokio::test]
async fn exports_past_their_limits_are_stopped_with_a_clear_message() {
    // Output: the HTML export of a small notebook is far above 4 KiB; the Python one is not.
    let s = common::server()
        .token("limits-token")
        .args(&["--nbconvert-output-limit", "4096"])
        .start();
    write(s.root(), "n.ipynb", &notebook());
    let r = s
        .owner()
        .get(s.url("nbconvert/html/n.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let message = error_message(r).await;
    assert!(
        message.contains("limit") && message.contains("4096"),
        "{message}"
    );
    let r = s
        .owner()
        .get(s.url("nbconvert/python/n.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Time: a conversion that takes longer than a second is stopped.
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("runs.log");
    let python = noting_python(tools.path(), &log, "sleep 30");
    let s = common::server()
        .token("time-token")
        .args(&[
            "--confine",
            "false",
            "--nbconvert-time-limit",
            "1",
            "--nbconvert-python",
            python.to_str().unwrap(),
        ])
        .start();
    write(s.root(), "n.ipynb", &notebook());
    let started = std::time::Instant::now();
    let r = s
        .owner()
        .get(s.url("nbconvert/python/n.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let message = error_message(r).await;
    assert!(
        message.contains("longer than the limit of 1 s"),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test]
async fn exports_switched_off_offer_no_format() {
    let s = common::server()
        .token("off-token")
        .args(&["--nbconvert", "false"])
        .start();
    write(s.root(), "n.ipynb", &notebook());
    let r = s.owner().get(s.url("api/nbconvert")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    let r = s
        .owner()
        .get(s.url("nbconvert/html/n.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// The message of an error answer: JSON's `message` from the API (`/api/nbconvert`), the text
/// of the HTML error page from the export routes (browser routes, as in jupyter_server).
async fn error_message(r: reqwest::Response) -> String {
    let api = r.url().path().contains("/api/");
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    if api {
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body: Value = r.json().await.unwrap();
        body["message"].as_str().unwrap().to_string()
    } else {
        assert!(content_type.starts_with("text/html"), "{content_type}");
        r.text().await.unwrap().replace("&#x2f;", "/")
    }
}
