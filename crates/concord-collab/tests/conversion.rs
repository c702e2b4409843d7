//! Documents against the reference: the same file loaded by jupyter_ydoc 4 (pycrdt, from the
//! project's venv) and by this crate gives the same Y document (every root, map, array,
//! text and plain value, with its type), and both read back to the same file content.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use concord_collab::document::{initial_update, new_doc, read_content, DocKind, FileContent};
use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

/// The venv's python: `$CONCORD_TEST_PYTHON`, else `<workspace>/.venv/bin/python`.
fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCORD_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs jupyter_ydoc and pycrdt in the venv)",
        p.display()
    );
    p
}

struct Reference {
    python_typed: Value,
    rust_typed: Value,
    python_get: Value,
    rust_get_by_python: Value,
    python_update: Vec<u8>,
}

fn reference(kind: &str, content: Value, rust_update: &[u8]) -> Reference {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ydoc_reference.py");
    let mut child = Command::new(venv_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv's python");
    let request = json!({"kind": kind, "content": content, "rust_update": hex(rust_update)});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    Reference {
        python_typed: answer["python_typed"].clone(),
        rust_typed: answer["rust_typed"].clone(),
        python_get: answer["python_get"].clone(),
        rust_get_by_python: answer["rust_get_by_python"].clone(),
        python_update: unhex(answer["python_update"].as_str().unwrap()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The content this crate reads from a document built by an update.
fn read_update(kind: DocKind, update: &[u8]) -> FileContent {
    let doc = new_doc(kind, 42);
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    read_content(&doc, kind)
}

/// Replace every cell id in a typed dump (for inputs without ids, where jupyter_ydoc draws
/// random ones).
fn without_cell_ids(mut typed: Value) -> Value {
    if let Some(cells) = typed["cells"][1].as_array_mut() {
        for cell in cells {
            if cell[1].get("id").is_some() {
                cell[1]["id"] = json!("<id>");
            }
        }
    }
    typed
}

fn check_notebook(nb: Value, ids_given: bool) {
    let (update, _) = initial_update(&FileContent::Notebook(nb.clone())).unwrap();
    let r = reference("notebook", nb, &update);
    if ids_given {
        assert_eq!(r.rust_typed, r.python_typed, "the Y documents differ");
    } else {
        assert_eq!(
            without_cell_ids(r.rust_typed.clone()),
            without_cell_ids(r.python_typed.clone()),
            "the Y documents differ"
        );
    }
    // Out: what jupyter_ydoc makes of our document is what we make of it, and of its own.
    let FileContent::Notebook(ours) = read_update(DocKind::Notebook, &update) else {
        unreachable!()
    };
    assert_eq!(
        ours, r.rust_get_by_python,
        "our reading differs from jupyter_ydoc's"
    );
    let FileContent::Notebook(theirs) = read_update(DocKind::Notebook, &r.python_update) else {
        unreachable!()
    };
    assert_eq!(
        theirs, r.python_get,
        "we read jupyter_ydoc's document differently"
    );
    if ids_given {
        assert_eq!(ours, r.python_get);
    }
}

#[test]
fn notebook_with_every_kind_of_cell_and_output() {
    let nb = json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "version": "3.11.2",
                              "codemirror_mode": {"name": "ipython", "version": 3}},
            "widgets": {"state": {}, "version_major": 2, "ratio": 0.5},
            "title": "Ünïcödé ✓"
        },
        "cells": [
            {"id": "a1", "cell_type": "markdown", "metadata": {"tags": ["intro"]},
             "source": ["# Title\n", "text with *emphasis* 🎉"],
             "attachments": {"img.png": {"image/png": "iVBORw0KGgo="}}},
            {"id": "a2", "cell_type": "markdown", "metadata": {}, "source": "", "attachments": {}},
            {"id": "b1", "cell_type": "code", "execution_count": 3,
             "metadata": {"collapsed": false, "scrolled": 2.5, "jupyter": {"outputs_hidden": false}},
             "source": "print('hi')\n1 + 1",
             "outputs": [
                 {"output_type": "stream", "name": "stdout", "text": ["hi\n", "there\n"]},
                 {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                  "data": {"text/plain": ["2"], "application/json": {"a": [1, 2.5, null, true]}}},
                 {"output_type": "display_data", "metadata": {"image/png": {"width": 10}},
                  "data": {"image/png": "iVBORw0KGgo=\n"}},
                 {"output_type": "error", "ename": "ValueError", "evalue": "bad",
                  "traceback": ["\u{1b}[0;31mValueError\u{1b}[0m", "line 2"]}
             ]},
            {"id": "b2", "cell_type": "code", "execution_count": null, "metadata": {},
             "source": [], "outputs": []},
            {"id": "c1", "cell_type": "raw", "metadata": {"format": "text/x-rst"},
             "source": "raw *text*"}
        ]
    });
    check_notebook(nb, true);
}

#[test]
fn notebook_4_4_without_ids_and_without_language_metadata() {
    let nb = json!({
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "x = 1",
             "outputs": []},
            {"cell_type": "markdown", "metadata": {}, "source": "same"},
            {"cell_type": "markdown", "metadata": {}, "source": "same"}
        ]
    });
    check_notebook(nb, false);
}

#[test]
fn notebook_without_cells_gets_one_empty_code_cell() {
    let nb = json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []});
    check_notebook(nb, false);
}

#[test]
fn text_files() {
    for text in [
        "",
        "plain\n",
        "héllo wörld\n日本語 🎉 emoji\nlast line without newline",
    ] {
        let content = FileContent::Text(text.to_string());
        let (update, _) = initial_update(&content).unwrap();
        let r = reference("text", json!(text), &update);
        assert_eq!(r.rust_typed, r.python_typed, "text {text:?}");
        assert_eq!(r.rust_get_by_python, json!(text));
        assert_eq!(read_update(DocKind::Text, &update), content);
        assert_eq!(read_update(DocKind::Text, &r.python_update), content);
    }
}

#[test]
fn binary_files() {
    for bytes in [
        vec![],
        vec![0u8, 1, 2, 255, 254, 0x80],
        (0..=255u8).collect::<Vec<_>>(),
    ] {
        let content = FileContent::Binary(bytes.clone());
        let (update, _) = initial_update(&content).unwrap();
        let r = reference("blob", json!(hex(&bytes)), &update);
        assert_eq!(r.rust_typed, r.python_typed);
        assert_eq!(r.rust_get_by_python, json!({"$bytes": hex(&bytes)}));
        assert_eq!(read_update(DocKind::Blob, &update), content);
        assert_eq!(read_update(DocKind::Blob, &r.python_update), content);
    }
}

#[test]
fn loading_the_same_file_twice_gives_the_same_update() {
    let nb = json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {},
                    "cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"}]});
    let content = FileContent::Notebook(nb);
    // Same loader id, same items (plain maps may encode their keys in another order).
    let (first, first_id) = initial_update(&content).unwrap();
    let (second, second_id) = initial_update(&content).unwrap();
    assert_eq!(first_id, second_id);
    let state = |update: &[u8]| Update::decode_v1(update).unwrap().state_vector();
    assert_eq!(state(&first), state(&second));
    assert_eq!(
        read_update(DocKind::Notebook, &first),
        content_read(&content)
    );
    let other = FileContent::Text("y".into());
    assert_ne!(
        initial_update(&content).unwrap().1,
        initial_update(&other).unwrap().1
    );
}

fn content_read(content: &FileContent) -> FileContent {
    let (update, _) = initial_update(content).unwrap();
    read_update(content.kind(), &update)
}
