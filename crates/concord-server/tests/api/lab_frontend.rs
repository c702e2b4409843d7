//! Black-box tests of the JupyterLab front end served by concord: the page and its config,
//! static files and federated extensions, per-user settings/workspaces/config, and how the
//! routes are authorized. They use the JupyterLab installed in the project's venv.

use crate::common;

use serde_json::{json, Value};
use std::path::PathBuf;

/// The venv's prefix (`…/.venv`).
fn venv_prefix() -> PathBuf {
    let python = common::jupyter::venv_python();
    python
        .parent()
        .and_then(|bin| bin.parent())
        .expect("venv layout")
        .to_path_buf()
}

fn lab_app_dir() -> String {
    venv_prefix()
        .join("share/jupyter/lab")
        .to_str()
        .unwrap()
        .to_string()
}

fn lab_args() -> Vec<String> {
    vec!["--lab-app-dir".into(), lab_app_dir()]
}

fn installed_version() -> String {
    let text = std::fs::read_to_string(venv_prefix().join("share/jupyter/lab/static/package.json"))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["version"].as_str().unwrap().to_string()
}

/// The `<script id="jupyter-config-data">` JSON of a page, and the raw text between the tags.
fn page_config(html: &str) -> (Value, String) {
    let open = "<script id=\"jupyter-config-data\" type=\"application/json\">";
    let start = html.find(open).expect("config script") + open.len();
    let end = start + html[start..].find("</script>").expect("end of config");
    let raw = html[start..end].to_string();
    (serde_json::from_str(&raw).expect("config is JSON"), raw)
}

fn policy_file(dir: &std::path::Path) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        r#"
[roles.everything]
permissions = ["*:*:any"]

[roles.member]
permissions = ["api:read", "config:read", "contents:read", "kernelspecs:read"]

[[bindings]]
role = "everything"
groups = ["admin"]

[[bindings]]
role = "member"
users = ["alice", "bob"]
"#,
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// A users-mode server with alice, bob (members), root (admin) and carol (nothing).
fn users_server(policy_dir: &tempfile::TempDir) -> common::Server {
    let policy = policy_file(policy_dir.path());
    let mut args = vec![
        "--auth".to_string(),
        "users".into(),
        "--policy".into(),
        policy,
    ];
    args.extend(lab_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = common::server().args(&args);
    b.add_user("alice", "alice-password", &[]);
    b.add_user("bob", "bob-password", &[]);
    b.add_user("carol", "carol-password", &[]);
    b.add_user("root", "root-password", &["admin"]);
    b.start()
}

#[tokio::test]
async fn lab_page_has_the_page_config_jupyterlab_needs() {
    let s = common::server()
        .token("tok-lab")
        .args(&["--lab-app-dir", &lab_app_dir()])
        .start();
    let r = s.owner().get(s.url("lab")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    let (c, _) = page_config(&html);
    assert_eq!(c["baseUrl"], "/");
    assert_eq!(c["wsUrl"], "");
    assert_eq!(c["appUrl"], "/lab");
    assert_eq!(c["fullStaticUrl"], "/static/lab");
    assert_eq!(c["themesUrl"], "/lab/api/themes");
    assert_eq!(c["settingsUrl"], "/lab/api/settings");
    assert_eq!(c["workspacesApiUrl"], "/lab/api/workspaces");
    assert_eq!(c["fullLabextensionsUrl"], "/lab/extensions");
    assert_eq!(c["treePath"], "");
    assert_eq!(c["workspace"], "default");
    assert_eq!(c["mode"], "multiple-document");
    assert_eq!(c["appVersion"], installed_version());
    assert_eq!(
        c["token"], "tok-lab",
        "token mode puts the token in the page"
    );
    assert_eq!(c["buildCheck"], false);
    let federated = c["federated_extensions"].as_array().expect("an array");
    assert!(
        federated.iter().any(|e| e["name"] == "jupyterlab_pygments"
            && e["load"]
                .as_str()
                .unwrap()
                .starts_with("static/remoteEntry.")),
        "{federated:?}"
    );
    // Server paths are not disclosed.
    for key in [
        "serverRoot",
        "rootUri",
        "schemasDir",
        "userSettingsDir",
        "labextensionsPath",
    ] {
        assert!(c.get(key).is_none(), "{key} must not be in the page config");
    }
    // The main bundle named by the page is served, cached for a year.
    let i = html.find("/static/lab/main.").expect("main bundle");
    let src = html[i..].split('"').next().unwrap();
    let r = reqwest::get(s.url(src)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/javascript");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
}

#[tokio::test]
async fn url_values_are_escaped_in_the_page() {
    let s = common::server()
        .token("t")
        .args(&["--lab-app-dir", &lab_app_dir()])
        .start();
    let owner = s.owner();
    let r = owner
        .get(s.url("lab/tree/x%3C%2Fscript%3E%3Cb%3E%26'%22.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let (c, raw) = page_config(&html);
    assert_eq!(c["treePath"], "x</script><b>&'\".ipynb");
    assert!(
        !raw.contains('<') && !raw.contains('>') && !raw.contains('&'),
        "{raw}"
    );
    // Workspaces and single-document mode.
    let html = owner
        .get(s.url("doc/workspaces/w-1/tree/a/b.ipynb"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (c, _) = page_config(&html);
    assert_eq!(c["mode"], "single-document");
    assert_eq!(c["workspace"], "w-1");
    assert_eq!(c["treePath"], "a/b.ipynb");
    // Anything else under /lab is the page telling the front end it was not found.
    let r = owner.get(s.url("lab/nope%3Cx%3E")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (c, raw) = page_config(&r.text().await.unwrap());
    assert_eq!(c["notFoundUrl"], "/lab/nope%3Cx%3E");
    assert!(!raw.contains('<'));
}

#[tokio::test]
async fn base_url_prefixes_every_full_url() {
    let s = common::server()
        .token("t")
        .args(&["--base-url", "/hub/u/", "--lab-app-dir", &lab_app_dir()])
        .start();
    let html = s
        .owner()
        .get(s.url("lab"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (c, _) = page_config(&html);
    assert_eq!(c["baseUrl"], "/hub/u/");
    assert_eq!(c["fullStaticUrl"], "/hub/u/static/lab");
    assert_eq!(c["fullSettingsUrl"], "/hub/u/lab/api/settings");
    assert_eq!(c["appUrl"], "/lab");
    assert!(html.contains("src=\"/hub/u/static/lab/main."));
    let r = reqwest::get(s.url("lab/api/themes/@jupyterlab/theme-light-extension/index.css"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn pages_need_login_and_static_assets_are_public() {
    let dir = tempfile::tempdir().unwrap();
    let s = users_server(&dir);
    let anon = s.browser();
    // `/` → /lab → login.
    let r = anon.get(s.url("")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/lab");
    let r = anon
        .get(s.url("lab/tree/a%20b.ipynb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Flab%2Ftree%2Fa%2520b.ipynb"
    );
    // The JSON API under /lab/api answers 403 to anonymous callers, like /api.
    for path in [
        "lab/api/settings",
        "lab/api/workspaces/default",
        "lab/api/translations/default",
        "api/config/notebook",
    ] {
        let r = anon.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // Static files, extensions and themes need no login.
    let r = anon
        .get(s.url("lab/api/themes/@jupyterlab/theme-light-extension/index.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let ext_dir = venv_prefix().join("share/jupyter/labextensions/jupyterlab_pygments/static");
    let remote = std::fs::read_dir(&ext_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().into_string().unwrap())
        .find(|n| n.starts_with("remoteEntry."))
        .unwrap();
    let r = anon
        .get(s.url(&format!(
            "lab/extensions/jupyterlab_pygments/static/{remote}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/javascript");
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let r = anon
        .get(s.url("lab/extensions/jupyterlab_pygments/package.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    // No way out of the served directories.
    for path in [
        "static/lab/..%2F..%2F..%2Fbin%2Fpython",
        "static/lab/..%2Fschemas/@jupyterlab/apputils-extension/themes.json",
        "static/other/x.js",
        "lab/extensions/..%2Flab%2Fstatic%2Findex.html",
        "lab/api/themes/..%2Fstatic/index.html",
        "static/lab/.hidden",
    ] {
        let r = anon.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // Logged in, the page renders without a token in it (cookie + _xsrf instead).
    let (alice, _) = s.login("alice", "alice-password").await;
    let r = alice.get(s.url("lab")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (c, _) = page_config(&r.text().await.unwrap());
    assert!(c.get("token").is_none());
    // JupyterLab shows Log Out only with Shut Down (both follow `quitButton`): on for
    // everyone, and Shut Down is left out of the File menu of those who may not use it.
    assert_eq!(c["quitButton"], true, "alice gets Log Out");
    let (root, _) = s.login("root", "root-password").await;
    let (c, _) = page_config(
        &root
            .get(s.url("lab"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(c["quitButton"], true);
    let file_menu_entry = |settings: &Value, command: &str| -> Value {
        settings["schema"]["jupyter.lab.menus"]["main"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|menu| menu["id"] == "jp-mainmenu-file")
            .flat_map(|menu| menu["items"].as_array().unwrap())
            .find(|item| item["command"] == command)
            .cloned()
            .unwrap_or_else(|| panic!("no {command} in {settings}"))
    };
    let mainmenu = "lab/api/settings/@jupyterlab/mainmenu-extension:plugin";
    for (who, client, may_shut_down) in [("alice", &alice, false), ("root", &root, true)] {
        let r = client.get(s.url(mainmenu)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{who}");
        let settings: Value = r.json().await.unwrap();
        assert_eq!(
            file_menu_entry(&settings, "filemenu:logout").get("disabled"),
            None,
            "{who} gets Log Out"
        );
        assert_eq!(
            file_menu_entry(&settings, "filemenu:shutdown")["disabled"] == true,
            !may_shut_down,
            "{who}"
        );
        // The listing says the same.
        let r = client.get(s.url("lab/api/settings")).send().await.unwrap();
        let listed: Value = r.json().await.unwrap();
        let listed = listed["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == "@jupyterlab/mainmenu-extension:plugin")
            .unwrap();
        assert_eq!(
            file_menu_entry(listed, "filemenu:shutdown")["disabled"] == true,
            !may_shut_down,
            "{who}"
        );
    }
}

/// The files the JupyterLab service opens are sent as a static file server sends them:
/// ranges, `ETag` and `Last-Modified` with their 304s, HEAD without a body.
#[tokio::test]
async fn files_are_sent_with_ranges_and_revalidation() {
    let dir = tempfile::tempdir().unwrap();
    let s = users_server(&dir);
    let anon = s.browser();
    let url = s.url("lab/extensions/jupyterlab_pygments/package.json");
    let on_disk = std::fs::read(
        venv_prefix().join("share/jupyter/labextensions/jupyterlab_pygments/package.json"),
    )
    .unwrap();
    let r = anon.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let etag = r.headers()["etag"].clone();
    let modified = r.headers()["last-modified"].clone();
    assert_eq!(r.bytes().await.unwrap(), on_disk);

    let r = anon
        .get(&url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let r = anon
        .get(&url)
        .header("If-Modified-Since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = anon
        .get(&url)
        .header("Range", "bytes=1-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1-4/{}", on_disk.len())
    );
    assert_eq!(r.bytes().await.unwrap(), on_disk[1..5]);

    let r = anon.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        on_disk.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());
}

const THEMES: &str = "@jupyterlab/apputils-extension:themes";

#[tokio::test]
async fn settings_are_kept_per_user_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let s = users_server(&dir);
    let (alice, alice_xsrf) = s.login("alice", "alice-password").await;
    let (bob, _) = s.login("bob", "bob-password").await;
    let url = s.url(&format!("lab/api/settings/{THEMES}"));

    let r = alice.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], THEMES);
    assert_eq!(v["raw"], "{}");
    assert_eq!(
        v["schema"]["properties"]["theme"]["default"],
        "JupyterLab Light"
    );
    assert_ne!(v["version"], "N/A");

    let raw = "{\n  // comments are kept (JSON5)\n  \"theme\": \"JupyterLab Dark\"\n}";
    let r = alice
        .put(&url)
        .header("X-XSRFToken", &alice_xsrf)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(json!({ "raw": raw }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["raw"], raw);
    assert_eq!(v["settings"]["theme"], "JupyterLab Dark");
    assert!(v["last_modified"].is_string());
    // Bob's settings are his own.
    let v: Value = bob.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["raw"], "{}");
    // The list carries alice's value too; ids only is small.
    let v: Value = alice
        .get(s.url("lab/api/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = v["settings"].as_array().unwrap();
    assert!(list.len() > 50);
    let themes = list.iter().find(|e| e["id"] == THEMES).unwrap();
    assert_eq!(themes["settings"]["theme"], "JupyterLab Dark");
    let ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "ids descending, as jupyterlab_server");
    let v: Value = bob
        .get(s.url("lab/api/settings?ids_only=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["settings"][0].get("schema").is_none());
    assert_eq!(v["settings"].as_array().unwrap().len(), list.len());

    // Invalid values, bad JSON5, unknown plugins, XSRF.
    for (body, status) in [
        (json!({"raw": "{\"theme\": 5}"}), 400),
        (json!({"raw": "{not json"}), 400),
        (json!({"nothing": 1}), 400),
    ] {
        let r = alice
            .put(&url)
            .header("X-XSRFToken", &alice_xsrf)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let msg: Value = r.json().await.unwrap();
        assert!(msg["message"].as_str().unwrap().len() > 5);
    }
    let r = alice
        .get(s.url("lab/api/settings/@nope/x:y"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = alice
        .put(&url)
        .body(json!({"raw": "{}"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "XSRF is checked");
    // Still alice's valid value; stored under the state directory.
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["settings"]["theme"], "JupyterLab Dark");
    assert!(s.state().join("lab/users/alice/settings").is_dir());
}

#[tokio::test]
async fn workspaces_are_kept_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = users_server(&dir);
    let (alice, ax) = s.login("alice", "alice-password").await;
    let (bob, bx) = s.login("bob", "bob-password").await;
    let url = s.url("lab/api/workspaces/default");
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"data": {}, "metadata": {"id": "/default"}}));
    let layout = json!({"data": {"layout-restorer:data": {"main": {"current": "notebook:a.ipynb"}}}, "metadata": {"id": "default"}});
    let r = alice
        .put(&url)
        .header("X-XSRFToken", &ax)
        .body(layout.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"], layout["data"]);
    assert!(v["metadata"]["last_modified"].is_string());
    let v: Value = bob.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"], json!({}), "bob does not get alice's layout");
    let v: Value = alice
        .get(s.url("lab/api/workspaces"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["workspaces"]["ids"], json!(["default"]));
    let v: Value = bob
        .get(s.url("lab/api/workspaces"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["workspaces"]["ids"], json!([]));
    // The id in the body must name the workspace.
    let r = bob
        .put(s.url("lab/api/workspaces/other"))
        .header("X-XSRFToken", &bx)
        .body(layout.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = bob
        .put(s.url("lab/api/workspaces/other"))
        .header("X-XSRFToken", &bx)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Bob cannot delete alice's; alice can, once.
    let r = bob
        .delete(&url)
        .header("X-XSRFToken", &bx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = alice
        .delete(&url)
        .header("X-XSRFToken", &ax)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = alice
        .delete(&url)
        .header("X-XSRFToken", &ax)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn front_end_config_is_per_user_and_server_wide_needs_write_on_config() {
    let dir = tempfile::tempdir().unwrap();
    let s = users_server(&dir);
    let (alice, ax) = s.login("alice", "alice-password").await;
    let (bob, _) = s.login("bob", "bob-password").await;
    let (root, rx) = s.login("root", "root-password").await;
    let (carol, _) = s.login("carol", "carol-password").await;
    let url = s.url("api/config/notebook");
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({}));
    let r = alice
        .patch(&url)
        .header("X-XSRFToken", &ax)
        .body(json!({"a": {"x": 1, "y": 2}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = alice
        .patch(&url)
        .header("X-XSRFToken", &ax)
        .body(json!({"a": {"y": null}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"a": {"x": 1}}));
    let v: Value = bob.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({}), "alice's config is hers");
    // The server-wide layer needs config:write.
    let r = alice
        .patch(s.url("api/config/notebook?scope=server"))
        .header("X-XSRFToken", &ax)
        .body(json!({"b": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not authorized to write"));
    let r = root
        .patch(s.url("api/config/notebook?scope=server"))
        .header("X-XSRFToken", &rx)
        .body(json!({"b": 1, "a": {"z": 3}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = bob.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"b": 1, "a": {"z": 3}}));
    let v: Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        v,
        json!({"b": 1, "a": {"x": 1, "z": 3}}),
        "own layer over the server's"
    );
    // Reading config needs config:read; bad section names are refused.
    let r = carol.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = alice
        .get(s.url("api/config/%2E%2Esecret"))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 404, "{}", r.status());
    let r = alice
        .patch(&url)
        .header("X-XSRFToken", &ax)
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn translations_and_listings_answer_as_jupyterlab_server() {
    let s = common::server()
        .token("t")
        .args(&["--lab-app-dir", &lab_app_dir()])
        .start();
    let o = s.owner();
    let v: Value = o
        .get(s.url("lab/api/translations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["en"]["displayName"], "English");
    let v: Value = o
        .get(s.url("lab/api/translations/default"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"data": {}, "message": ""}));
    let r = o
        .get(s.url("lab/api/translations/fr_FR"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("not installed"));
    let v: Value = o
        .get(s.url("lab/api/listings/@jupyterlab/extensionmanager-extension/listings.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["blocked_extensions"], json!([]));
    // Help → Licenses: the app's bundle and each federated extension's.
    let v: Value = o
        .get(s.url("lab/api/licenses/?format=json&full_text=false&bundles=.*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = &v["bundles"]["@jupyterlab/application-top"]["packages"];
    assert!(app.as_array().unwrap().len() > 50, "{app}");
    assert!(app[0]["name"].is_string() && app[0]["licenseId"].is_string());
    let r = o
        .get(s.url("lab/api/licenses?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The update check and the news feed answer as jupyterlab does when both are off.
    let v: Value = o
        .get(s.url("lab/api/update?1795490796072"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"notification": null}));
    let v: Value = o
        .get(s.url("lab/api/news"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"news": []}));
}

#[tokio::test]
async fn missing_jupyterlab_is_explained_not_a_server_error() {
    let s = common::server()
        .token("t")
        .args(&["--lab-app-dir", "/nonexistent/share/jupyter/lab"])
        .start();
    let r = s.owner().get(s.url("lab")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.contains("JupyterLab is not installed"), "{body}");
    assert!(body.contains("--lab-app-dir"), "{body}");
    let r = reqwest::get(s.url("static/lab/main.js")).await.unwrap();
    assert_eq!(r.status(), 404);
    // The rest of the server works.
    let r = s.owner().get(s.url("api/contents")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn jupyterlab_is_found_through_the_python_on_path() {
    let path = format!(
        "{}:{}",
        venv_prefix().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let s = common::server().token("t").env("PATH", &path).start();
    let r = s.owner().get(s.url("lab")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (c, _) = page_config(&r.text().await.unwrap());
    assert_eq!(c["appVersion"], installed_version());
    let r = reqwest::get(s.url("static/favicons/favicon.ico"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "jupyter_server's favicons are found too");
}

/// `/api/config/{section}` against jupyter_server: PUT answers 204 and stores the body,
/// PATCH merges with jupyter_server's `recursive_update` (null removes a key, an object
/// left empty is pruned), GET reads through it; the same answers, request by request.
#[tokio::test]
async fn config_sections_match_jupyter_server() {
    let s = common::server()
        .token("config-token")
        .args(&lab_args().iter().map(String::as_str).collect::<Vec<_>>())
        .start();
    let jroot = tempfile::tempdir().unwrap();
    let j = common::jupyter::Jupyter::start(jroot.path(), &[]);
    let steps: Vec<(&str, Option<String>)> = vec![
        ("GET", None),
        (
            "PUT",
            Some(json!({"a": {"x": 1, "y": {"z": 2}}, "b": 1, "n": null, "e": {}}).to_string()),
        ),
        ("GET", None),
        ("PATCH", Some(json!({"a": {"y": {"z": null}}}).to_string())),
        (
            "PATCH",
            Some(json!({"a": {"x": null}, "c": {}}).to_string()),
        ),
        (
            "PATCH",
            Some(json!({"b": null, "d": [1, {"e": null}], "f": "s"}).to_string()),
        ),
        ("GET", None),
        ("PUT", Some("{oops".to_string())),
        ("PUT", Some(json!({}).to_string())),
        ("GET", None),
    ];
    let mut answers = Vec::new();
    for (client, base) in [(s.owner(), s.url("")), (j.client(), j.url(""))] {
        let mut seen = Vec::new();
        for (method, body) in &steps {
            let mut req = client.request(
                method.parse().unwrap(),
                format!("{base}api/config/concordtest"),
            );
            if let Some(b) = body {
                req = req.body(b.clone());
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let value = if status < 400 {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            } else {
                Value::Null
            };
            seen.push((*method, status, value));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "concord, then jupyter_server");
    assert_eq!(answers[0][1].1, 204);
    assert_eq!(answers[0][6].2, json!({"d": [1, {"e": null}], "f": "s"}));
}
