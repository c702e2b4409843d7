//! The JupyterLab service against a JupyterLab laid out in a temp dir as a venv holds it
//! (`<prefix>/share/jupyter/lab`, `<prefix>/share/jupyter/labextensions`), with real files.

use concord_lab::{
    Abilities, Caching, ConfigScope, ErrorKind, Lab, LabConfig, PageRequest, PageSettings,
    ThemeAsset, JAVASCRIPT,
};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The page template's shape, as JupyterLab's `static/index.html` has it.
const TEMPLATE: &str = r#"<!doctype html><html><head>{% set page_config_full = page_config.copy() %}{% set _ = page_config_full.update(baseUrl=base_url, wsUrl=ws_url) %}<script id="jupyter-config-data" type="application/json">{{ page_config_full | tojson }}</script><link rel="icon" href="{{ base_url | escape }}static/favicons/favicon.ico"><script defer src="{{page_config.fullStaticUrl}}/main.js"></script></head><body></body></html>"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn write_json(path: &Path, value: Value) {
    write(path, &value.to_string());
}

/// A federated extension as `jupyter labextension` installs it.
fn extension(root: &Path, name: &str, entry: &str, disabled: &[&str]) -> PathBuf {
    let dir = root.join(name);
    write_json(
        &dir.join("package.json"),
        json!({
            "name": name,
            "version": "1.0.0",
            "jupyterlab": {
                "_build": {"load": format!("static/{entry}"), "extension": "./extension"},
                "disabledExtensions": disabled
            }
        }),
    );
    write(&dir.join("static").join(entry), "/* remote entry */");
    dir
}

/// `<prefix>/share/jupyter/{lab,labextensions}` plus a second extension directory (a user's
/// data dir) that is searched first.
struct Layout {
    _tmp: tempfile::TempDir,
    app_dir: PathBuf,
    user_extensions: PathBuf,
    prefix_extensions: PathBuf,
    state_dir: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("venv/share/jupyter");
    let app_dir = share.join("lab");
    write(&app_dir.join("static/index.html"), TEMPLATE);
    write_json(
        &app_dir.join("static/package.json"),
        json!({"name": "@jupyterlab/application-top", "version": "4.9.1"}),
    );
    write(&app_dir.join("static/main.js"), "console.log('lab')");
    write_json(
        &app_dir.join("static/third-party-licenses.json"),
        json!({"packages": [{"name": "left-pad", "licenseId": "MIT"}]}),
    );
    write_json(
        &app_dir.join("schemas/@jupyterlab/apputils-extension/themes.json"),
        json!({
            "type": "object",
            "properties": {
                "theme": {"type": "string", "default": "JupyterLab Light"},
                "overrides": {"type": "object", "default": {}}
            },
            "additionalProperties": false
        }),
    );
    write(
        &app_dir.join("themes/@jupyterlab/theme-light-extension/index.css"),
        "body{background:url('images/bg.png')} a{src:url(data:x)}",
    );
    write(
        &app_dir.join("themes/@jupyterlab/theme-light-extension/images/bg.png"),
        "png",
    );
    write_json(
        &app_dir.join("settings/overrides.json"),
        json!({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}),
    );
    write_json(
        &app_dir.join("settings/page_config.json"),
        json!({"disabledExtensions": ["@site/admin:off"]}),
    );

    let prefix_extensions = share.join("labextensions");
    let ext = extension(
        &prefix_extensions,
        "@demo/widgets",
        "remoteEntry.prefix.js",
        &["@demo/widgets:from-the-copy-not-served"],
    );
    write_json(
        &ext.join("schemas/@demo/widgets/plugin.json"),
        json!({"type": "object", "properties": {"size": {"type": "integer", "default": 1}}}),
    );
    extension(
        &prefix_extensions,
        "jupyterlab_pygments",
        "remoteEntry.p.js",
        &[],
    );
    // Not an extension: no `jupyterlab._build`.
    write_json(
        &prefix_extensions.join("not-built/package.json"),
        json!({"name": "not-built", "jupyterlab": {}}),
    );

    let user_extensions = tmp.path().join("home/.local/share/jupyter/labextensions");
    extension(
        &user_extensions,
        "@demo/widgets",
        "remoteEntry.user.js",
        &["@demo/widgets:legacy"],
    );

    let state_dir = tmp.path().join("state");
    Layout {
        app_dir,
        user_extensions,
        prefix_extensions,
        state_dir,
        _tmp: tmp,
    }
}

fn config(l: &Layout) -> LabConfig {
    LabConfig {
        app_dir: Some(l.app_dir.clone()),
        labextensions_dirs: Some(vec![l.user_extensions.clone(), l.prefix_extensions.clone()]),
        state_dir: l.state_dir.clone(),
        base_url: "/hub/user/ada/".to_string(),
        page: PageSettings {
            token: Some("s3cret".to_string()),
            allow_hidden_files: false,
            delete_to_trash: true,
            disabled_extensions: vec![],
        },
    }
}

fn page_request(workspace: &str) -> PageRequest {
    PageRequest {
        url_path: format!("/hub/user/ada/lab/workspaces/{workspace}"),
        known_url: true,
        single_document: false,
        workspace: workspace.to_string(),
        tree_path: "notebooks/a b.ipynb".to_string(),
        terminals_available: true,
    }
}

#[tokio::test]
async fn extensions_are_discovered_first_directory_wins() {
    let l = layout();
    let lab = Lab::start(config(&l)).await;
    assert_eq!(lab.version().unwrap(), "4.9.1");
    let federated = lab.federated_extensions().unwrap();
    let names: Vec<&str> = federated
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["@demo/widgets", "jupyterlab_pygments"]);
    assert_eq!(federated[0]["load"], "static/remoteEntry.user.js");
    assert_eq!(federated[0]["extension"], "./extension");
    assert_eq!(federated[0]["entrypoints"], Value::Null);

    // The user's copy is served, and its hashed static files may be kept for a year.
    let mut file = lab
        .extension_file("%40demo/widgets/static/remoteEntry.user.js")
        .unwrap();
    assert_eq!(file.caching, Caching::Immutable);
    assert_eq!(file.content_type, JAVASCRIPT);
    let mut text = String::new();
    file.file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "/* remote entry */");
    assert_eq!(file.metadata.len(), text.len() as u64);
    let package = lab.extension_file("@demo/widgets/package.json").unwrap();
    assert_eq!(package.caching, Caching::Revalidate);
    assert_eq!(package.content_type, "application/json");

    // A file only the second directory holds is found there, as jupyterlab_server's
    // `FileFindHandler` searches every directory.
    let prefix = lab
        .extension_file("@demo/widgets/static/remoteEntry.prefix.js")
        .unwrap();
    assert_eq!(prefix.metadata.len(), "/* remote entry */".len() as u64);

    // Nothing outside the roots, hidden or missing.
    for rel in [
        "@demo/widgets/static/missing.js",
        "../lab/static/index.html",
        "@demo/../../lab/static/index.html",
        "@demo/widgets/.hidden",
        "",
    ] {
        let e = lab.extension_file(rel).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{rel}");
    }

    let main = lab.static_file("lab/main.js").unwrap();
    assert_eq!(main.caching, Caching::Immutable);
    assert_eq!(
        lab.static_file("other/main.js").unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn settings_round_trip_per_user_with_overrides_and_validation() {
    let l = layout();
    let lab = Lab::start(config(&l)).await;
    let themes = "@jupyterlab/apputils-extension:themes";

    let ids = lab
        .list_settings("ada", true, Abilities::default())
        .unwrap();
    assert_eq!(
        ids,
        json!({"settings": [{"id": themes}, {"id": "@demo/widgets:plugin"}]}),
        "ids descending, extension schemas included"
    );

    let fresh = lab.settings("ada", themes, Abilities::default()).unwrap();
    assert_eq!(fresh["raw"], "{}");
    assert_eq!(fresh["settings"], json!({}));
    assert_eq!(fresh["last_modified"], Value::Null);
    assert_eq!(
        fresh["schema"]["properties"]["theme"]["default"], "JupyterLab Dark",
        "the admin's overrides.json is applied to the schema's defaults"
    );

    let raw = "{\n  // JSON5, kept as sent\n  theme: 'JupyterLab Light',\n}";
    lab.save_settings("ada", themes, raw).unwrap();
    let saved = lab.settings("ada", themes, Abilities::default()).unwrap();
    assert_eq!(saved["raw"], raw);
    assert_eq!(saved["settings"], json!({"theme": "JupyterLab Light"}));
    assert!(saved["last_modified"].as_str().unwrap().ends_with('Z'));

    // Another user has their own.
    assert_eq!(
        lab.settings("grace", themes, Abilities::default()).unwrap()["raw"],
        "{}"
    );
    let listed = lab
        .list_settings("ada", false, Abilities::default())
        .unwrap();
    assert_eq!(listed["settings"][0]["raw"], raw);
    assert_eq!(listed["settings"][0]["warning"], Value::Null);

    let invalid = lab.save_settings("ada", themes, "{theme: 3}").unwrap_err();
    assert_eq!(invalid.kind, ErrorKind::BadRequest);
    assert!(
        invalid.message.starts_with("Failed validating settings"),
        "{invalid}"
    );
    let unparsable = lab.save_settings("ada", themes, "{theme: ").unwrap_err();
    assert_eq!(unparsable.kind, ErrorKind::BadRequest);
    assert!(
        unparsable.message.starts_with("Failed parsing settings"),
        "{unparsable}"
    );
    let unknown = lab.save_settings("ada", "@x/y:z", "{}").unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);
    assert_eq!(
        lab.settings("ada", themes, Abilities::default()).unwrap()["raw"],
        raw,
        "unchanged"
    );
}

#[tokio::test]
async fn workspaces_round_trip_per_user() {
    let l = layout();
    let lab = Lab::start(config(&l)).await;
    assert_eq!(
        lab.workspace("ada", "default").unwrap(),
        json!({"data": {}, "metadata": {"id": "/default"}}),
        "an unknown workspace is empty"
    );
    let layout =
        json!({"data": {"layout-restorer:data": {"main": {}}}, "metadata": {"id": "/default"}});
    lab.save_workspace("ada", "default", &layout).unwrap();
    let saved = lab.workspace("ada", "default").unwrap();
    assert_eq!(saved["data"], layout["data"]);
    assert!(saved["metadata"]["last_modified"].is_string());
    assert!(saved["metadata"]["created"].is_string());
    let listed = lab.list_workspaces("ada").unwrap();
    assert_eq!(listed["workspaces"]["ids"], json!(["/default"]));
    assert_eq!(listed["workspaces"]["values"][0]["data"], layout["data"]);
    assert_eq!(
        lab.list_workspaces("grace").unwrap(),
        json!({"workspaces": {"ids": [], "values": []}})
    );

    let mismatch = lab.save_workspace("ada", "other", &layout).unwrap_err();
    assert_eq!(mismatch.kind, ErrorKind::BadRequest);
    let no_id = lab
        .save_workspace("ada", "default", &json!({"data": {}}))
        .unwrap_err();
    assert_eq!(no_id.kind, ErrorKind::BadRequest);

    assert_eq!(
        lab.delete_workspace("grace", "default").unwrap_err().kind,
        ErrorKind::NotFound
    );
    lab.delete_workspace("ada", "default").unwrap();
    assert_eq!(
        lab.delete_workspace("ada", "default").unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn page_config_has_what_the_front_end_needs_and_no_server_paths() {
    let l = layout();
    let lab = Lab::start(config(&l)).await;
    let c = lab.page_config(&page_request("default")).unwrap();
    assert_eq!(c["appVersion"], "4.9.1");
    assert_eq!(c["appUrl"], "/lab");
    assert_eq!(c["fullAppUrl"], "/hub/user/ada/lab");
    assert_eq!(c["fullStaticUrl"], "/hub/user/ada/static/lab");
    assert_eq!(c["themesUrl"], "/lab/api/themes");
    assert_eq!(c["fullSettingsUrl"], "/hub/user/ada/lab/api/settings");
    assert_eq!(c["token"], "s3cret");
    assert_eq!(c["terminalsAvailable"], true);
    assert_eq!(
        c["quitButton"], true,
        "on for everyone: it also shows Log Out"
    );
    assert_eq!(c["delete_to_trash"], true);
    assert_eq!(c["mode"], "multiple-document");
    assert_eq!(c["workspace"], "default");
    assert_eq!(c["treePath"], "notebooks/a b.ipynb");
    assert_eq!(
        c["disabledExtensions"],
        json!(["@demo/widgets:legacy", "@site/admin:off"])
    );
    assert_eq!(c["federated_extensions"].as_array().unwrap().len(), 2);
    assert!(!c.contains_key("notFoundUrl"));
    // An extension the server disables (collaboration off) no longer disables others.
    let mut without_widgets = config(&l);
    without_widgets.page.disabled_extensions = vec!["@demo/widgets".to_string()];
    let lab_without = Lab::start(without_widgets).await;
    let c_without = lab_without.page_config(&page_request("default")).unwrap();
    assert_eq!(
        c_without["disabledExtensions"],
        json!(["@demo/widgets", "@site/admin:off"])
    );
    for leak in [
        "serverRoot",
        "appSettingsDir",
        "userSettingsDir",
        "rootUri",
        "labextensionsPath",
    ] {
        assert!(!c.contains_key(leak), "{leak}");
    }

    let page = lab.render_page(&page_request("default")).unwrap();
    assert!(!page.not_found);
    let start = page.html.find("application/json\">").unwrap() + "application/json\">".len();
    let end = page.html[start..].find("</script>").unwrap() + start;
    let embedded: Value = serde_json::from_str(&page.html[start..end]).unwrap();
    assert_eq!(embedded["baseUrl"], "/hub/user/ada/");
    assert_eq!(embedded["token"], "s3cret");
    assert!(page
        .html
        .contains("src=\"/hub/user/ada/static/lab/main.js\""));

    // A workspace name no URL may carry: the page says the URL was not found.
    let bad = page_request("a.b");
    let page = lab.render_page(&bad).unwrap();
    assert!(page.not_found);
    let c = lab.page_config(&bad).unwrap();
    assert_eq!(c["notFoundUrl"], "/hub/user/ada/lab/workspaces/a.b");

    // Cookie-only login: no token in the page.
    let mut cookie_only = config(&l);
    cookie_only.page.token = None;
    let lab = Lab::start(cookie_only).await;
    assert!(!lab
        .page_config(&page_request("default"))
        .unwrap()
        .contains_key("token"));
}

#[tokio::test]
async fn themes_licenses_and_config_sections() {
    let l = layout();
    let lab = Lab::start(config(&l)).await;
    match lab
        .theme("@jupyterlab/theme-light-extension/index.css")
        .unwrap()
    {
        ThemeAsset::Css(css) => assert_eq!(
            css,
            "body{background:url('/hub/user/ada/lab/api/themes/@jupyterlab/theme-light-extension/images/bg.png')} a{src:url(data:x)}"
        ),
        ThemeAsset::File(_) => panic!("CSS is rewritten"),
    }
    match lab
        .theme("@jupyterlab/theme-light-extension/images/bg.png")
        .unwrap()
    {
        ThemeAsset::File(f) => assert_eq!(f.content_type, "image/png"),
        ThemeAsset::Css(_) => panic!("an image is sent as it is"),
    }

    let licenses = lab.licenses(None).unwrap();
    assert_eq!(
        licenses["bundles"]["@jupyterlab/application-top"]["packages"][0]["name"],
        "left-pad"
    );
    assert_eq!(licenses["bundles"]["@demo/widgets"]["packages"], json!([]));
    let one = lab.licenses(Some("@demo/widgets")).unwrap();
    assert_eq!(one["bundles"].as_object().unwrap().len(), 1);

    lab.write_config_section(None, "notebook", json!({"a": 1, "b": {"c": 2}}), true)
        .unwrap();
    let mine = lab
        .write_config_section(
            Some("ada"),
            "notebook",
            json!({"b": {"d": 3}, "a": null}),
            false,
        )
        .unwrap();
    assert_eq!(mine, json!({"b": {"d": 3}}));
    assert_eq!(
        lab.config_section("ada", "notebook", ConfigScope::Merged)
            .unwrap(),
        json!({"a": 1, "b": {"c": 2, "d": 3}}),
        "a null in a PATCH removes the key from the caller's own layer only"
    );
    assert_eq!(
        lab.config_section("grace", "notebook", ConfigScope::Merged)
            .unwrap(),
        json!({"a": 1, "b": {"c": 2}})
    );
    assert_eq!(
        lab.config_section("ada", "notebook", ConfigScope::Server)
            .unwrap(),
        json!({"a": 1, "b": {"c": 2}})
    );
    assert_eq!(
        lab.write_config_section(Some("ada"), "../x", json!({}), true)
            .unwrap_err()
            .kind,
        ErrorKind::BadRequest
    );
    assert_eq!(
        lab.write_config_section(Some("ada"), "notebook", json!([1]), true)
            .unwrap_err()
            .kind,
        ErrorKind::BadRequest
    );
}

#[tokio::test]
async fn a_missing_jupyterlab_is_explained_and_per_user_state_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::start(LabConfig {
        app_dir: Some(tmp.path().join("nowhere/share/jupyter/lab")),
        labextensions_dirs: Some(vec![]),
        state_dir: tmp.path().join("state"),
        base_url: "/".to_string(),
        page: PageSettings::default(),
    })
    .await;
    let e = lab.render_page(&page_request("default")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("pip install jupyterlab"), "{e}");
    assert!(e.message.contains("--lab-app-dir"), "{e}");
    assert_eq!(
        lab.list_settings("ada", true, Abilities::default())
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    let file = lab.static_file("lab/main.js").unwrap_err();
    assert_eq!(file.message, "Not Found", "public files say no more");
    let w = json!({"data": {}, "metadata": {"id": "/default"}});
    lab.save_workspace("ada", "default", &w).unwrap();
    assert_eq!(lab.workspace("ada", "default").unwrap()["data"], json!({}));
}
