//! In-process cost of the service's hot paths (no HTTP): listing 1,000 and 10,000 entries
//! with content=1 and a per-entry PathAccess, and reading/saving a 5 MB notebook.
//! `cargo bench -p concord-contents --bench listing` prints `name value` lines.

use concord_contents::{
    Body, Caller, CanonicalPath, ContentsConfig, ContentsManager, GetOptions, PathAccess,
};
use serde_json::json;
use std::time::Instant;

/// A policy-shaped access check: read everywhere except under `/secret`.
struct Filter;

impl PathAccess for Filter {
    fn may_read(&self, path: &CanonicalPath) -> bool {
        !path.as_str().starts_with("/secret")
    }
    fn may_write(&self, path: &CanonicalPath) -> bool {
        path.name().ends_with(".txt") || path.name().ends_with(".ipynb")
    }
}

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[runs / 2]
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    for (dir, n) in [("d1k", 1_000), ("d10k", 10_000)] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
        for i in 0..n {
            std::fs::write(root.path().join(dir).join(format!("f{i:05}.txt")), "x").unwrap();
        }
    }
    let cm = ContentsManager::new(ContentsConfig::new(root.path())).unwrap();
    let caller = Caller::new("bench", &Filter);
    let opts = GetOptions::from_query(None, None, Some("1"), None).unwrap();
    for dir in ["d1k", "d10k"] {
        let path = CanonicalPath::parse(dir).unwrap();
        let ms = median_ms(
            || {
                let m = cm.get(&caller, &path, &opts).unwrap();
                std::hint::black_box(serde_json::to_vec(&m).unwrap());
            },
            21,
        );
        println!("contents.list.{dir}.ms {ms:.3}");
    }
    let cells: Vec<_> = (0..2000)
        .map(|i| {
            json!({"cell_type": "code", "id": format!("c{i}"), "metadata": {},
            "execution_count": 1, "source": "x = 1  # padding padding padding\n".repeat(75),
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "ok\n"}]})
        })
        .collect();
    let nb = json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let path = CanonicalPath::parse("big.ipynb").unwrap();
    let body = json!({"type": "notebook", "content": nb});
    cm.put(&caller, &path, Body::from_value(Some(body.clone())))
        .unwrap();
    let size = std::fs::metadata(root.path().join("big.ipynb"))
        .unwrap()
        .len();
    println!("contents.nb.bytes {size}");
    let ms = median_ms(
        || {
            cm.put(&caller, &path, Body::from_value(Some(body.clone())))
                .unwrap();
        },
        7,
    );
    println!("contents.nb.put.ms {ms:.3}");
    let ms = median_ms(
        || {
            let m = cm
                .get(
                    &caller,
                    &path,
                    &GetOptions::from_query(None, None, None, None).unwrap(),
                )
                .unwrap();
            std::hint::black_box(serde_json::to_vec(&m).unwrap());
        },
        7,
    );
    println!("contents.nb.get.ms {ms:.3}");

    // Where a notebook GET/PUT spends its time, phase by phase.
    use concord_contents::notebook;
    let text = std::fs::read_to_string(root.path().join("big.ipynb")).unwrap();
    let phase = |name: &str, f: &mut dyn FnMut()| {
        println!("contents.nb.phase.{name}.ms {:.3}", median_ms(f, 7));
    };
    phase("parse", &mut || {
        std::hint::black_box(serde_json::from_str::<serde_json::Value>(&text).unwrap());
    });
    phase("read_notebook", &mut || {
        std::hint::black_box(notebook::read_notebook(&text).unwrap());
    });
    let nb = notebook::read_notebook(&text).unwrap().nb;
    phase("validate", &mut || {
        let mut copy = nb.clone();
        std::hint::black_box(notebook::validate(&mut copy));
    });
    phase("clone", &mut || {
        std::hint::black_box(nb.clone());
    });
    phase("signature_stream", &mut || {
        let mut n = 0usize;
        notebook::signature_stream(&nb, &mut |b| n += b.len());
        std::hint::black_box(n);
    });
    phase("signature_sha256", &mut || {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        notebook::signature_stream(&nb, &mut |b| hasher.update(b));
        std::hint::black_box(hasher.finalize());
    });
    phase("to_vec", &mut || {
        std::hint::black_box(serde_json::to_vec(&nb).unwrap());
    });
    phase("file_text", &mut || {
        std::hint::black_box(notebook::notebook_file_text(&nb));
    });
}
