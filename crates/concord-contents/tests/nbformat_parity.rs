//! Byte-for-byte parity of the notebook writer (and reader) with Python's nbformat, run from
//! the project venv. Skipped, with a printed reason, when the venv is missing.

use concord_contents::notebook::{notebook_file_text, read_notebook};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<PathBuf> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import nbformat"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: no Python venv with nbformat at {}", py.display());
        return None;
    }
    Some(py)
}

const WRITER: &str = r#"
import json, sys, nbformat
src, out = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    nb = nbformat.from_dict(json.load(f))
with open(out, "w", encoding="utf-8", newline="\n") as f:
    nbformat.write(nb, f, version=nbformat.NO_CONVERT)
"#;

const READER: &str = r#"
import json, sys, nbformat
with open(sys.argv[1], encoding="utf-8") as f:
    nb = nbformat.reads(f.read(), as_version=4)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(nb, f)
"#;

fn samples() -> Vec<Value> {
    vec![
        json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
        json!({
            "cells": [
                {"cell_type": "markdown", "id": "a1", "metadata": {"tags": ["x", "ü"]},
                 "source": "# Ünïcödé 日本語 ✓\r\nwindows line\rold mac\u{2028}sep\nlast no newline",
                 "attachments": {"img.png": {"image/png": "iVBORw0KGgo=\n", "text/plain": "a\nb"}}},
                {"cell_type": "code", "id": "b2", "execution_count": 3,
                 "metadata": {"trusted": true, "collapsed": false, "scrolled": "auto",
                              "zeta": {"b": 2, "a": [1, 2.5, 1e-7, 1e16, 123456789.125, -0.0, 0.1]}},
                 "source": "x = '\\t tab \u{1} ctrl \u{7f} del \"quote\" \\\\ back'\nprint(x)\n",
                 "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "line1\nline2\n"},
                    {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                     "data": {"text/plain": "'multi\\nline'", "text/html": "<b>\n</b>",
                              "application/json": {"k": [1, {"z": null, "a": true}]},
                              "image/svg+xml": "<svg>\n</svg>\n",
                              "application/vnd.custom+json": {"x": 1},
                              "application/javascript": "alert(1);\nalert(2)"}},
                    {"output_type": "display_data", "metadata": {"image/png": {"width": 10}},
                     "data": {"image/png": "AAAA\nBBBB\n", "text/plain": "<Figure>"}},
                    {"output_type": "error", "ename": "E", "evalue": "v",
                     "traceback": ["line 1", "line 2\nwith newline"]}
                 ]},
                {"cell_type": "raw", "id": "c3", "metadata": {"format": "text/x-rst"}, "source": ""}
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"codemirror_mode": {"name": "ipython", "version": 3},
                                  "name": "python", "version": "3.11.2"},
                "orig_nbformat": 3, "signature": "sha256:abc",
                "unknown_extension": {"nested": {"deep": [[], {}, "", 0, -5, 18446744073709551615u64]}}
            },
            "nbformat": 4,
            "nbformat_minor": 5
        }),
        json!({
            "cells": [{"cell_type": "code", "execution_count": null, "metadata": {},
                       "source": ["already\n", "split"], "outputs": []}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 4
        }),
    ]
}

#[test]
fn writer_is_byte_identical_to_nbformat() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, nb) in samples().iter().enumerate() {
        let src = dir.path().join(format!("in{i}.json"));
        let out = dir.path().join(format!("out{i}.ipynb"));
        std::fs::write(&src, serde_json::to_vec(nb).unwrap()).unwrap();
        let status = Command::new(&py)
            .args(["-c", WRITER])
            .arg(&src)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let expected = std::fs::read_to_string(&out).unwrap();
        let ours = notebook_file_text(nb);
        if ours != expected {
            for (n, (a, b)) in ours.lines().zip(expected.lines()).enumerate() {
                assert_eq!(a, b, "sample {i}, first difference at line {n}");
            }
            assert_eq!(ours.len(), expected.len(), "sample {i}: lengths differ");
        }
    }
}

#[test]
fn reader_matches_nbformat_reads() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, nb) in samples().iter().enumerate() {
        let text = notebook_file_text(nb);
        let src = dir.path().join(format!("r{i}.ipynb"));
        let out = dir.path().join(format!("r{i}.json"));
        std::fs::write(&src, &text).unwrap();
        let status = Command::new(&py)
            .args(["-c", READER])
            .arg(&src)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let expected: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let ours = read_notebook(&text).unwrap().nb;
        assert_eq!(ours, expected, "sample {i}");
    }
}

fn signed_bytes(nb: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    concord_contents::notebook::signature_stream(nb, &mut |b| out.extend_from_slice(b));
    out
}

/// Saving signs the in-memory notebook instead of its re-read file when `signs_as_written`
/// says the two sign alike: check that on every sample and on line-list edge cases.
#[test]
fn signs_as_written_means_the_reread_signs_alike() {
    use concord_contents::notebook::{signs_as_written, strip_transient};
    let mut cases = samples();
    cases.push(json!({"cells": [
        {"cell_type": "code", "id": "a", "metadata": {"trusted": true}, "execution_count": null,
         "source": ["x = 1\n", "", "y"], "outputs": [
            {"output_type": "stream", "name": "stdout", "text": ["a\r\n", "b\u{2028}c"]},
            {"output_type": "display_data", "metadata": {},
             "data": {"text/plain": ["1", "2\n"], "image/svg+xml": "<svg>\n</svg>",
                      "application/json": {"k": ["a", "b"]}}},
            {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}]},
        {"cell_type": "markdown", "id": "b", "metadata": {}, "source": "",
         "attachments": {"x.png": {"image/png": ["aGVs", "bG8="]}}}],
        "metadata": {"signature": "sha256:0", "orig_nbformat": 3, "big": 18446744073709551615u64},
        "nbformat": 4, "nbformat_minor": 5}));
    let mut checked = 0;
    for (i, nb) in cases.iter().enumerate() {
        let mut nb = nb.clone();
        strip_transient(&mut nb);
        if !signs_as_written(&nb) {
            continue;
        }
        let reread = read_notebook(&notebook_file_text(&nb)).unwrap().nb;
        assert_eq!(signed_bytes(&nb), signed_bytes(&reread), "sample {i}");
        checked += 1;
    }
    assert!(
        checked >= 2,
        "only {checked} samples exercised the fast path"
    );
    // Refused: floats, other majors, line lists that do not read back.
    for bad in [
        json!({"cells": [], "metadata": {"w": 0.1}, "nbformat": 4, "nbformat_minor": 5}),
        json!({"cells": [], "metadata": {}, "nbformat": 3, "nbformat_minor": 0}),
        json!({"cells": [{"cell_type": "code", "metadata": {}, "source": ["a", 1], "outputs": []}],
               "metadata": {}, "nbformat": 4, "nbformat_minor": 4}),
        json!({"cells": [{"cell_type": "code", "metadata": {}, "source": "",
               "outputs": [{"output_type": "stream", "name": "stdout", "text": [null]}]}],
               "metadata": {}, "nbformat": 4, "nbformat_minor": 4}),
    ] {
        assert!(!signs_as_written(&bad), "{bad}");
    }
}

/// The writer splits lines while writing; it must give what splitting first and then
/// dumping gives, including for values in unexpected places and of unexpected types.
#[test]
fn writer_splits_lines_like_split_lines() {
    use concord_contents::notebook::{dumps_python, split_lines, strip_transient};
    let mut cases = samples();
    cases.push(json!({"cells": [
        {"cell_type": "code", "metadata": {"trusted": true, "source": "a\nb"}, "source": "x\ny",
         "attachments": {"a": {"text/plain": "p\nq", "image/png": "AA\nBB", "image/svg+xml": "<s>\n"},
                         "b": "not a bundle", "c": ["t\n"]},
         "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "l1\nl2\r\n"},
            {"output_type": "stream", "text": ["kept\n", "as is"]},
            {"output_type": "execute_result", "data": {"text/html": "<b>\n</b>",
             "application/javascript": "f()\ng()", "application/json": {"text/plain": "n\n"}},
             "text": "not split\n", "metadata": {}},
            {"output_type": "error", "text": "e\nf", "data": {"text/plain": "g\nh"}},
            "not an output", 3, {"output_type": 7, "text": "x\ny"}]},
        {"cell_type": "markdown", "metadata": {}, "source": "", "outputs": [
            {"output_type": "stream", "text": "not\nsplit"}]},
        {"cell_type": "raw", "metadata": {}, "source": ["a\n", "b"], "attachments": []},
        "not a cell", [], {}],
        "metadata": {"cells": [{"source": "m\nn"}], "signature": "s", "orig_nbformat": 3},
        "nbformat": 4, "nbformat_minor": 5}));
    cases.push(json!({"cells": {"source": "a\nb"}, "metadata": {}}));
    cases.push(json!({"cells": [{"cell_type": "code", "source": 1, "outputs": {"text": "a\nb"}}]}));
    cases.push(json!(["not", "a notebook\n"]));
    for (i, nb) in cases.iter().enumerate() {
        let mut expected = nb.clone();
        split_lines(&mut expected);
        strip_transient(&mut expected);
        let expected = dumps_python(&expected, true, false) + "\n";
        assert_eq!(notebook_file_text(nb), expected, "case {i}");
    }
}
