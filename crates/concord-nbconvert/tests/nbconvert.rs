//! The nbconvert service against the real nbconvert of the project's venv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concord_authz::FilesystemView;
use concord_confine::{ConfineConfig, ConfinementPlan, Namespaces, Sandbox, Supervision};
use concord_nbconvert::{ConvertRequest, Failure, Format, Nbconvert, NbconvertConfig};
use serde_json::json;

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");

/// A small notebook: a markdown cell and a code cell with a text output.
fn notebook() -> Vec<u8> {
    notebook_with_outputs(json!([{"output_type": "stream", "name": "stdout", "text": "hello\n"}]))
}

fn notebook_with_outputs(outputs: serde_json::Value) -> Vec<u8> {
    json!({
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# A title"},
            {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1,
             "source": "print('hello')", "outputs": outputs},
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "mimetype": "text/x-python",
                              "file_extension": ".py"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    })
    .to_string()
    .into_bytes()
}

fn request(format: &str, notebook: Vec<u8>) -> ConvertRequest {
    ConvertRequest {
        format: format.into(),
        notebook,
        name: "report".into(),
        ..ConvertRequest::default()
    }
}

fn service(adjust: impl FnOnce(&mut NbconvertConfig)) -> Nbconvert {
    let mut config = NbconvertConfig::new(PathBuf::from(PYTHON));
    adjust(&mut config);
    Nbconvert::new(config)
}

#[tokio::test]
async fn formats_are_what_the_installed_nbconvert_offers() {
    let formats = service(|_| {}).formats().await.unwrap();
    // What jupyter_server's handler computes, asked of the same nbconvert.
    let out = std::process::Command::new(PYTHON)
        .args([
            "-c",
            "import json\nfrom nbconvert.exporters import base\n\
             print(json.dumps({n: {'output_mimetype': base.get_exporter(n).output_mimetype} \
             for n in base.get_export_names()}))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: BTreeMap<String, Format> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(*formats, expected);
    for (name, mime) in [
        ("html", "text/html"),
        ("python", "text/x-python"),
        ("markdown", "text/markdown"),
        ("script", ""),
        ("notebook", "application/json"),
    ] {
        assert_eq!(formats[name].output_mimetype, mime, "{name}");
    }
    assert_eq!(
        serde_json::to_value(&formats["html"]).unwrap(),
        json!({"output_mimetype": "text/html"})
    );
}

#[tokio::test]
async fn html_and_python_exports_have_the_content_and_type() {
    let nbconvert = service(|_| {});
    let html = nbconvert
        .convert(&request("html", notebook()), &Sandbox::direct())
        .await
        .unwrap();
    let text = String::from_utf8(html.bytes.clone()).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>"), "{}", &text[..100]);
    assert!(
        text.contains("<title>report</title>"),
        "the name is the title"
    );
    assert!(text.contains("A title") && text.contains("hello"));
    assert_eq!(html.mime_type.as_deref(), Some("text/html"));
    assert_eq!(html.file_extension, ".html");
    assert!(!html.zipped);
    assert_eq!(
        html.content_type().as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(html.file_name("dir.v2/report.ipynb"), "dir.v2/report.html");

    let python = nbconvert
        .convert(&request("python", notebook()), &Sandbox::direct())
        .await
        .unwrap();
    let text = String::from_utf8(python.bytes.clone()).unwrap();
    assert!(text.starts_with("#!/usr/bin/env python"), "{text}");
    assert!(text.contains("# # A title") && text.contains("print('hello')"));
    assert_eq!(python.mime_type.as_deref(), Some("text/x-python"));
    assert_eq!(python.file_name("report.ipynb"), "report.py");

    // `script` takes the notebook's language, after the conversion.
    let script = nbconvert
        .convert(&request("script", notebook()), &Sandbox::direct())
        .await
        .unwrap();
    assert_eq!(script.mime_type.as_deref(), Some("text/x-python"));
    assert_eq!(script.file_extension, ".py");
}

#[tokio::test]
async fn an_export_with_resource_files_is_a_zip() {
    // A PNG output: the markdown exporter writes it as a file beside the text.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let nb = notebook_with_outputs(json!([{
        "output_type": "display_data", "metadata": {}, "data": {"image/png": png}
    }]));
    let md = service(|_| {})
        .convert(&request("markdown", nb), &Sandbox::direct())
        .await
        .unwrap();
    assert!(md.zipped);
    assert!(md.bytes.starts_with(b"PK\x03\x04"));
    assert_eq!(md.content_type().as_deref(), Some("application/zip"));
    assert_eq!(md.file_name("report.ipynb"), "report.zip");
    let listing = std::process::Command::new(PYTHON)
        .args([
            "-c",
            "import sys, zipfile, io\nprint('\\n'.join(sorted(zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())).namelist())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&md.bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    let names = String::from_utf8(listing.stdout).unwrap();
    assert!(names.lines().any(|n| n == "report.md"), "{names}");
    assert!(names.lines().any(|n| n.ends_with(".png")), "{names}");
}

#[tokio::test]
async fn unknown_formats_are_refused() {
    let nbconvert = service(|_| {});
    for format in ["nosuch", "nbconvert.exporters.HTMLExporter", "", "../html"] {
        let err = nbconvert
            .convert(&request(format, notebook()), &Sandbox::direct())
            .await
            .unwrap_err();
        assert_eq!(err.failure, Failure::UnknownFormat, "{format}: {err}");
        assert_eq!(err.message, format!("No exporter for format: {format}"));
    }
}

#[tokio::test]
async fn a_malformed_notebook_is_refused_with_a_clear_message() {
    let nbconvert = service(|_| {});
    let err = nbconvert
        .convert(&request("html", b"{ not json".to_vec()), &Sandbox::direct())
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::BadNotebook, "{err}");
    assert!(err.message.starts_with("not a notebook: "), "{err}");

    let err = nbconvert
        .convert(
            &request("html", br#"{"cells": 3}"#.to_vec()),
            &Sandbox::direct(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::BadNotebook, "{err}");
}

#[tokio::test]
async fn the_time_limit_stops_a_conversion() {
    let nbconvert = service(|c| c.time_limit = Duration::from_millis(50));
    let err = nbconvert
        .convert(&request("html", notebook()), &Sandbox::direct())
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::TimedOut, "{err}");
    assert_eq!(
        err.message,
        "nbconvert took longer than the limit of 0.05 s and was stopped"
    );
}

#[tokio::test]
async fn the_output_limit_refuses_a_large_export() {
    let nbconvert = service(|c| c.output_limit = 1000);
    let err = nbconvert
        .convert(&request("html", notebook()), &Sandbox::direct())
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::TooLarge, "{err}");
    assert!(err.message.contains("above the limit of 1000"), "{err}");
    // Small enough: the same service converts.
    let python = nbconvert
        .convert(&request("python", notebook()), &Sandbox::direct())
        .await
        .unwrap();
    assert!(python.bytes.len() <= 1000);
}

#[tokio::test]
async fn the_memory_limit_stops_a_conversion() {
    let nbconvert = service(|c| c.memory_limit = Some(64 << 20));
    let err = nbconvert
        .convert(&request("html", notebook()), &Sandbox::direct())
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::OutOfMemory, "{err}");
}

/// A confined conversion runs, and its process can neither read a file outside what it is
/// granted nor write outside its private temporary directory. The interpreter is a wrapper
/// that tries both before it runs the real one; unconfined, the same wrapper gets through.
#[tokio::test]
async fn a_confined_conversion_reaches_only_what_it_is_granted() {
    confined_conversion(None).await;
}

/// The same through the supervisor in namespaces of its own, as the server starts kernels.
/// The supervisor is `concord-confine`'s `concord-supervisor` binary, built beside this test.
#[tokio::test]
async fn a_supervised_conversion_in_namespaces_reaches_only_what_it_is_granted() {
    let exe = std::env::current_exe().unwrap();
    let Some(program) = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("concord-supervisor"))
        .filter(|p| p.exists())
    else {
        eprintln!(
            "skipped: no concord-supervisor beside the tests \
             (cargo build -p concord-confine --bin concord-supervisor)"
        );
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let supervision = move |state: &Path| Supervision {
        program: program.clone(),
        args: Vec::new(),
        namespaces: Some(Namespaces::for_current_user(vec![state.to_path_buf()])),
        drop_capabilities: root,
    };
    confined_conversion(Some(&supervision)).await;
}

async fn confined_conversion(supervision: Option<&dyn Fn(&Path) -> Supervision>) {
    let landlock = concord_confine::status();
    if !landlock.available {
        eprintln!("skipped: Landlock is unavailable: {}", landlock.detail);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let (root, state, outside, bin) = (
        base.join("root"),
        base.join("state"),
        base.join("outside"),
        base.join("bin"),
    );
    for d in [&root, &state, &outside, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, "SECRET").unwrap();
    // Not resolved: a venv's python is a link to the interpreter it was made from.
    let python = Path::new(PYTHON);
    let wrapper = bin.join("python");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             if cat {secret} >&2; then echo escaped: read >&2; exit 3; fi\n\
             if touch {outside}/written; then echo escaped: wrote >&2; exit 3; fi\n\
             exec {python} \"$@\"\n",
            secret = secret.display(),
            outside = outside.display(),
            python = python.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut confine = ConfineConfig::new(state.join("confine"), vec![state.clone()]);
    confine.add_python_prefixes(python).unwrap();
    confine.exec_paths.push(bin.clone());
    // No file of the user's: the venv, the system and the private directories only.
    let plan =
        ConfinementPlan::build(&FilesystemView::default(), &root, "alice", &confine).unwrap();
    let mut confined = Sandbox::confined(Arc::new(plan));
    if let Some(supervision) = supervision {
        let supervision = supervision(&state);
        if let Err(why) = concord_confine::probe_namespaces(&supervision) {
            eprintln!("skipped: namespaces cannot be made here: {why}");
            return;
        }
        confined.supervision = Some(Arc::new(supervision));
    }
    let nbconvert = service(|c| c.python = wrapper.clone());

    let html = nbconvert
        .convert(&request("html", notebook()), &confined)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html.bytes).contains("hello"));
    assert!(!outside.join("written").exists());

    let err = nbconvert
        .convert(&request("html", notebook()), &Sandbox::direct())
        .await
        .unwrap_err();
    assert_eq!(err.failure, Failure::Failed, "{err}");
    assert!(err.message.contains("escaped: read"), "{err}");
}
