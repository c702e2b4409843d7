//! The service against real files in temp dirs.

use concord_contents::{
    ActionListener, AllowAll, Body, Caller, CanonicalPath, Content, ContentType, ContentsAction,
    ContentsConfig, ContentsManager, ErrorKind, GetOptions, PathAccess, RenameRequest,
};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn p(s: &str) -> CanonicalPath {
    CanonicalPath::parse(s).unwrap()
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: std::path::PathBuf,
    state: std::path::PathBuf,
    cm: ContentsManager,
}

fn fixture_with(adjust: impl FnOnce(&mut ContentsConfig)) -> Fixture {
    let root_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = ContentsConfig::new(root_dir.path());
    config.state_dir = Some(state_dir.path().join("state"));
    config.trash_dir = Some(state_dir.path().join("Trash"));
    adjust(&mut config);
    let cm = ContentsManager::new(config).unwrap();
    Fixture {
        root: cm.root_dir().to_path_buf(),
        state: state_dir.path().to_path_buf(),
        _dirs: (root_dir, state_dir),
        cm,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

const ALICE: Caller<'static> = Caller {
    username: "alice",
    access: &AllowAll,
};

fn get(f: &Fixture, path: &str) -> Result<Value, (ErrorKind, String)> {
    f.cm.get(
        &ALICE,
        &p(path),
        &GetOptions::from_query(None, None, None, None).unwrap(),
    )
    .map(|m| serde_json::to_value(m).unwrap())
    .map_err(|e| (e.kind, e.message))
}

fn put(f: &Fixture, path: &str, body: Value) -> Result<(Value, bool), (ErrorKind, String)> {
    f.cm.put(&ALICE, &p(path), Body::from_value(Some(body)))
        .map(|o| (serde_json::to_value(o.model).unwrap(), o.created))
        .map_err(|e| (e.kind, e.message))
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn names(listing: &Value) -> Vec<String> {
    let mut n: Vec<String> = listing["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn valid_nb() -> Value {
    json!({
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Title\nline two"},
            {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1,
             "source": "print('hi')", "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "hi\n"}
             ]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                      "custom": {"keep": ["me", 1]}},
        "nbformat": 4,
        "nbformat_minor": 5
    })
}

#[test]
fn directory_model_has_jupyter_fields_and_hides_hidden_entries() {
    let f = fixture();
    write(&f.root, "a.txt", "hello");
    write(&f.root, ".secret", "x");
    write(&f.root, "x.pyc", "x");
    write(
        &f.root,
        "nb.ipynb",
        &concord_contents::notebook::notebook_file_text(&valid_nb()),
    );
    fs::create_dir(f.root.join("sub")).unwrap();
    let m = get(&f, "/").unwrap();
    assert_eq!(m["type"], "directory");
    assert_eq!(m["format"], "json");
    assert_eq!(m["name"], "");
    assert_eq!(m["path"], "");
    assert_eq!(m["size"], Value::Null);
    assert_eq!(m["hash"], Value::Null);
    assert_eq!(m["hash_algorithm"], Value::Null);
    assert_eq!(names(&m), vec!["a.txt", "nb.ipynb", "sub"]);
    let entries = m["content"].as_array().unwrap();
    let a = entries.iter().find(|e| e["name"] == "a.txt").unwrap();
    assert_eq!(a["type"], "file");
    assert_eq!(a["mimetype"], "text/plain");
    assert_eq!(a["content"], Value::Null);
    assert_eq!(a["format"], Value::Null);
    assert_eq!(a["size"], 5);
    assert_eq!(a["writable"], true);
    assert_eq!(a["path"], "a.txt");
    let nb = entries.iter().find(|e| e["name"] == "nb.ipynb").unwrap();
    assert_eq!(nb["type"], "notebook");
    assert_eq!(nb["mimetype"], Value::Null);
    let sub = entries.iter().find(|e| e["name"] == "sub").unwrap();
    assert_eq!(sub["type"], "directory");
    assert_eq!(sub["size"], Value::Null);
    assert!(a["last_modified"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn file_formats_and_hash() {
    let f = fixture();
    write(&f.root, "t.txt", "héllo");
    fs::write(f.root.join("b.bin"), [0xffu8, 0xfe, 0x00]).unwrap();
    let t = get(&f, "t.txt").unwrap();
    assert_eq!(t["format"], "text");
    assert_eq!(t["content"], "héllo");
    let b = get(&f, "b.bin").unwrap();
    assert_eq!(b["format"], "base64");
    assert_eq!(b["content"], "//4A\n");
    assert_eq!(b["mimetype"], "application/octet-stream");
    let err =
        f.cm.get(
            &ALICE,
            &p("b.bin"),
            &GetOptions::from_query(None, Some("text"), None, None).unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.ends_with("is not UTF-8 encoded"));
    let h =
        f.cm.get(
            &ALICE,
            &p("t.txt"),
            &GetOptions::from_query(None, None, Some("0"), Some("1")).unwrap(),
        )
        .unwrap();
    let h = serde_json::to_value(h).unwrap();
    assert_eq!(h["hash_algorithm"], "sha256");
    assert_eq!(h["content"], Value::Null);
    // sha256("héllo")
    assert_eq!(h["hash"].as_str().unwrap().len(), 64);
    assert!(GetOptions::from_query(None, Some("x"), None, None).is_err());
    assert!(GetOptions::from_query(None, None, Some("2"), None).is_err());
    assert!(GetOptions::from_query(None, None, None, Some("yes")).is_err());
}

#[test]
fn wrong_type_and_missing_paths() {
    let f = fixture();
    write(&f.root, "a.txt", "x");
    fs::create_dir(f.root.join("d")).unwrap();
    let opts = GetOptions::from_query(Some("file"), None, None, None).unwrap();
    let e = f.cm.get(&ALICE, &p("d"), &opts).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::BadRequest, "d is a directory, not a file")
    );
    let opts = GetOptions::from_query(Some("directory"), None, None, None).unwrap();
    let e = f.cm.get(&ALICE, &p("a.txt"), &opts).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::BadRequest, "a.txt is not a directory")
    );
    assert_eq!(
        get(&f, "nope.txt").unwrap_err(),
        (
            ErrorKind::NotFound,
            "file or directory '/nope.txt' does not exist".into()
        )
    );
    assert_eq!(get(&f, "a.txt/x").unwrap_err().0, ErrorKind::NotFound);
}

#[test]
fn symlinks_inside_root_work_and_escapes_are_not_found() {
    let f = fixture();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "secret").unwrap();
    write(&f.root, "real/data.txt", "inside");
    symlink(outside.path().join("passwd"), f.root.join("escape.txt")).unwrap();
    symlink(outside.path(), f.root.join("escape_dir")).unwrap();
    symlink(f.root.join("real"), f.root.join("alias")).unwrap();
    symlink(f.root.join("missing"), f.root.join("dangling")).unwrap();
    assert_eq!(get(&f, "escape.txt").unwrap_err().0, ErrorKind::NotFound);
    assert_eq!(
        get(&f, "escape_dir/passwd").unwrap_err().0,
        ErrorKind::NotFound
    );
    assert_eq!(get(&f, "dangling").unwrap_err().0, ErrorKind::NotFound);
    assert_eq!(get(&f, "alias/data.txt").unwrap()["content"], "inside");
    assert_eq!(
        f.cm.resolve(&p("alias/data.txt")).unwrap(),
        p("/real/data.txt")
    );
    assert!(f.cm.resolve(&p("escape_dir/passwd")).is_err());
    assert_eq!(
        f.cm.resolve(&p("alias/new.txt")).unwrap(),
        p("/real/new.txt")
    );
    let listing = get(&f, "").unwrap();
    assert_eq!(names(&listing), vec!["alias", "real"]);
    // Writing through an escaping link is refused too.
    let e = put(
        &f,
        "escape_dir/x.txt",
        json!({"type": "file", "format": "text", "content": "x"}),
    );
    assert_eq!(e.unwrap_err().0, ErrorKind::NotFound);
    assert!(!outside.path().join("x.txt").exists());
}

#[test]
fn hidden_paths_are_404_on_read_and_400_on_write_including_body_fields() {
    let f = fixture();
    write(&f.root, ".hidden/in.txt", "x");
    write(&f.root, "a.txt", "x");
    assert_eq!(
        get(&f, ".hidden/in.txt").unwrap_err().0,
        ErrorKind::NotFound
    );
    assert_eq!(get(&f, ".hidden").unwrap_err().0, ErrorKind::NotFound);
    let body = json!({"type": "file", "format": "text", "content": "x"});
    assert_eq!(
        put(&f, ".new.txt", body.clone()).unwrap_err().0,
        ErrorKind::BadRequest
    );
    let mut with_path = body.clone();
    with_path["path"] = json!(".sneaky");
    assert_eq!(
        put(&f, "ok.txt", with_path).unwrap_err().0,
        ErrorKind::BadRequest
    );
    let e =
        f.cm.post(
            &ALICE,
            &p(""),
            Body::from_value(Some(json!({"copy_from": ".hidden/in.txt"}))),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e =
        f.cm.patch(
            &ALICE,
            &p("a.txt"),
            &RenameRequest::from_body(Some(json!({"path": ".a.txt"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e = f.cm.delete(&ALICE, &p(".hidden/in.txt")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e = f.cm.post(&ALICE, &p(".hidden"), Body::Empty).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(f.root.join(".hidden/in.txt").exists());
    assert!(!f.root.join(".a.txt").exists());

    let g = fixture_with(|c| c.allow_hidden = true);
    write(&g.root, ".hidden/in.txt", "x");
    assert_eq!(get(&g, ".hidden/in.txt").unwrap()["content"], "x");
    assert_eq!(names(&get(&g, "").unwrap()), vec![".hidden"]);
}

#[test]
fn save_create_and_upload() {
    let f = fixture();
    let (m, created) = put(
        &f,
        "new.txt",
        json!({"type": "file", "format": "text", "content": "one"}),
    )
    .unwrap();
    assert!(created);
    assert_eq!(m["content"], Value::Null);
    assert_eq!(m["size"], 3);
    let (_, created) = put(
        &f,
        "new.txt",
        json!({"type": "file", "format": "base64", "content": "dHdv\n"}),
    )
    .unwrap();
    assert!(!created);
    assert_eq!(fs::read_to_string(f.root.join("new.txt")).unwrap(), "two");
    assert_eq!(
        put(&f, "x.txt", json!({"type": "file", "content": "x"})).unwrap_err(),
        (
            ErrorKind::BadRequest,
            "Must specify format of file contents as 'text' or 'base64'".into()
        )
    );
    assert_eq!(
        put(&f, "new.txt", json!({"format": "text", "content": "x"})).unwrap_err(),
        (ErrorKind::BadRequest, "No file type provided".into())
    );
    assert_eq!(
        put(&f, "new.txt", json!({"type": "file"})).unwrap_err(),
        (ErrorKind::BadRequest, "No file content provided".into())
    );
    assert_eq!(
        put(&f, "x", json!({"copy_from": "new.txt"})).unwrap_err(),
        (
            ErrorKind::BadRequest,
            "Cannot copy with PUT, only POST".into()
        )
    );
    // A directory, and a file over a directory.
    let (d, _) = put(&f, "dir", json!({"type": "directory"})).unwrap();
    assert_eq!(d["type"], "directory");
    assert_eq!(
        put(
            &f,
            "dir",
            json!({"type": "file", "format": "text", "content": ""})
        )
        .unwrap_err()
        .0,
        ErrorKind::BadRequest
    );
    assert_eq!(
        put(&f, "new.txt", json!({"type": "directory"}))
            .unwrap_err()
            .0,
        ErrorKind::BadRequest
    );
    // Missing parent directory.
    assert_eq!(
        put(
            &f,
            "no/such/x.txt",
            json!({"type": "file", "format": "text", "content": ""})
        )
        .unwrap_err()
        .0,
        ErrorKind::NotFound
    );
    // Mode is kept across saves.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(f.root.join("new.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    put(
        &f,
        "new.txt",
        json!({"type": "file", "format": "text", "content": "three"}),
    )
    .unwrap();
    let mode = fs::metadata(f.root.join("new.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(&f.root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".~"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn size_limit_applies_to_saves_and_uploads() {
    let f = fixture_with(|c| c.max_save_bytes = Some(10));
    write(&f.root, "keep.txt", "original");
    let e = put(
        &f,
        "keep.txt",
        json!({"type": "file", "format": "text", "content": "x".repeat(11)}),
    );
    assert_eq!(e.unwrap_err().0, ErrorKind::TooLarge);
    assert_eq!(
        fs::read_to_string(f.root.join("keep.txt")).unwrap(),
        "original"
    );
    put(
        &f,
        "up.bin",
        json!({"type": "file", "format": "text", "content": "123456", "chunk": 1}),
    )
    .unwrap();
    let e = put(
        &f,
        "up.bin",
        json!({"type": "file", "format": "text", "content": "123456", "chunk": -1}),
    );
    assert_eq!(e.unwrap_err().0, ErrorKind::TooLarge);
    assert!(!f.root.join("up.bin").exists());
}

#[test]
fn chunked_upload_replaces_target_only_at_the_end() {
    let f = fixture();
    write(&f.root, "big.dat", "OLD");
    let chunk = |n: i64, s: &str| {
        put(
            &f,
            "big.dat",
            json!({"type": "file", "format": "text", "content": s, "chunk": n}),
        )
    };
    chunk(1, "aaa").unwrap();
    assert_eq!(fs::read_to_string(f.root.join("big.dat")).unwrap(), "OLD");
    let (m, _) = chunk(2, "bbb").unwrap();
    assert_eq!(m["size"], 6);
    assert_eq!(m["name"], "big.dat");
    chunk(-1, "ccc").unwrap();
    assert_eq!(
        fs::read_to_string(f.root.join("big.dat")).unwrap(),
        "aaabbbccc"
    );
    assert!(!f.root.join(".~big.dat.upload").exists());
    // Created status: first chunk of a new file is 201, later ones 200.
    let (_, created1) = put(
        &f,
        "n.dat",
        json!({"type": "file", "format": "base64", "content": "YQ==", "chunk": 1}),
    )
    .unwrap();
    let (_, created2) = put(
        &f,
        "n.dat",
        json!({"type": "file", "format": "base64", "content": "Yg==", "chunk": -1}),
    )
    .unwrap();
    assert!(created1 && !created2);
    assert_eq!(fs::read_to_string(f.root.join("n.dat")).unwrap(), "ab");
    let e = put(
        &f,
        "nb.ipynb",
        json!({"type": "notebook", "content": {}, "chunk": 1}),
    )
    .unwrap_err();
    assert_eq!(
        e,
        (
            ErrorKind::BadRequest,
            "File type \"notebook\" is not supported for large file transfer".into()
        )
    );
}

#[test]
fn untitled_names_follow_jupyter() {
    let f = fixture();
    let mk = |body: Option<Value>| {
        serde_json::to_value(f.cm.post(&ALICE, &p(""), Body::from_value(body)).unwrap()).unwrap()
    };
    assert_eq!(
        mk(Some(json!({"type": "notebook"})))["name"],
        "Untitled.ipynb"
    );
    assert_eq!(
        mk(Some(json!({"type": "notebook"})))["name"],
        "Untitled1.ipynb"
    );
    assert_eq!(
        mk(Some(json!({"ext": ".ipynb"})))["name"],
        "Untitled2.ipynb"
    );
    assert_eq!(
        mk(Some(json!({"type": "file", "ext": ".txt"})))["name"],
        "untitled.txt"
    );
    assert_eq!(
        mk(Some(json!({"type": "file", "ext": ".txt"})))["name"],
        "untitled1.txt"
    );
    assert_eq!(mk(None)["name"], "untitled");
    let d = mk(Some(json!({"type": "directory"})));
    assert_eq!(
        (d["name"].as_str(), d["type"].as_str()),
        (Some("Untitled Folder"), Some("directory"))
    );
    assert_eq!(
        mk(Some(json!({"type": "directory"})))["name"],
        "Untitled Folder 1"
    );
    assert_eq!(mk(Some(json!({"type": "bogus"})))["type"], "file");
    let nb = get(&f, "Untitled.ipynb").unwrap();
    assert_eq!(nb["content"]["nbformat"], 4);
    assert_eq!(nb["content"]["cells"], json!([]));
    // A notebook always gets a checkpoint when saved.
    assert_eq!(
        f.cm.list_checkpoints(&ALICE, &p("Untitled.ipynb"))
            .unwrap()
            .len(),
        1
    );
    let e = f.cm.post(&ALICE, &p("missing"), Body::Empty).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::NotFound, "No such directory: missing")
    );
    let e =
        f.cm.post(&ALICE, &p("untitled.txt"), Body::Empty)
            .unwrap_err();
    assert_eq!(e.message, "Cannot POST to files, use PUT instead.");
}

#[test]
fn copies_are_named_like_jupyter() {
    let f = fixture();
    write(&f.root, "a.tar.gz", "x");
    write(&f.root, "sub/keep.txt", "y");
    put(
        &f,
        "nb.ipynb",
        json!({"type": "notebook", "content": valid_nb()}),
    )
    .unwrap();
    let copy = |from: &str, to: &str| {
        f.cm.post(
            &ALICE,
            &p(to),
            Body::from_value(Some(json!({"copy_from": from}))),
        )
        .map(|m| m.path)
        .map_err(|e| (e.kind, e.message))
    };
    assert_eq!(copy("nb.ipynb", "").unwrap(), "nb-Copy1.ipynb");
    assert_eq!(copy("nb.ipynb", "").unwrap(), "nb-Copy2.ipynb");
    assert_eq!(copy("nb-Copy1.ipynb", "").unwrap(), "nb-Copy3.ipynb");
    assert_eq!(copy("a.tar.gz", "").unwrap(), "a-Copy1.tar.gz");
    assert_eq!(copy("a.tar.gz", "sub").unwrap(), "sub/a.tar.gz");
    assert_eq!(
        copy("a.tar.gz", "sub/renamed.gz").unwrap(),
        "sub/renamed.gz"
    );
    assert_eq!(copy("sub", "").unwrap(), "sub-Copy1");
    assert_eq!(
        fs::read_to_string(f.root.join("sub-Copy1/keep.txt")).unwrap(),
        "y"
    );
    assert_eq!(
        copy("nothere.txt", "").unwrap_err(),
        (
            ErrorKind::NotFound,
            "No such file or directory: nothere.txt".into()
        )
    );
    assert_eq!(
        copy("a.tar.gz", "no/dir/x").unwrap_err(),
        (
            ErrorKind::NotFound,
            "No such parent directory: no/dir to copy file in".into()
        )
    );
    // Folders as shutil.copytree: into themselves, into a folder of their own (the folder
    // as it was: no endless nesting), into folders that do not exist yet. A link out of
    // the root is not part of the tree and is not followed.
    symlink(std::env::temp_dir(), f.root.join("sub/outside")).unwrap();
    assert_eq!(copy("sub", "sub").unwrap(), "sub/sub");
    assert!(f.root.join("sub/sub/keep.txt").exists());
    assert!(!f.root.join("sub/sub/sub").exists());
    assert!(fs::symlink_metadata(f.root.join("sub/sub/outside")).is_err());
    assert_eq!(copy("sub", "sub/sub").unwrap(), "sub/sub/sub");
    assert!(f.root.join("sub/sub/sub/sub/keep.txt").exists());
    assert!(!f.root.join("sub/sub/sub/sub/sub").exists());
    assert_eq!(copy("sub", "new/deep").unwrap(), "new/deep/sub");
    assert!(f.root.join("new/deep/sub/sub/sub/keep.txt").exists());
    assert_eq!(copy("/", "new").unwrap_err().0, ErrorKind::BadRequest);
    let copied = get(&f, "nb-Copy1.ipynb").unwrap();
    assert_eq!(
        copied["content"]["metadata"]["custom"],
        json!({"keep": ["me", 1]})
    );
}

#[test]
fn rename_and_move_with_conflicts_and_checkpoints() {
    let f = fixture();
    put(
        &f,
        "nb.ipynb",
        json!({"type": "notebook", "content": valid_nb()}),
    )
    .unwrap();
    write(&f.root, "other.txt", "o");
    fs::create_dir(f.root.join("dir")).unwrap();
    let m =
        f.cm.patch(
            &ALICE,
            &p("nb.ipynb"),
            &RenameRequest::from_body(Some(json!({"path": "dir/moved.ipynb"}))).unwrap(),
        )
        .unwrap();
    assert_eq!(m.path, "dir/moved.ipynb");
    assert!(f
        .root
        .join("dir/.ipynb_checkpoints/moved-checkpoint.ipynb")
        .is_file());
    assert!(!f
        .root
        .join(".ipynb_checkpoints/nb-checkpoint.ipynb")
        .exists());
    let e =
        f.cm.patch(
            &ALICE,
            &p("other.txt"),
            &RenameRequest::from_body(Some(json!({"path": "dir/moved.ipynb"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Conflict, "File already exists: dir/moved.ipynb")
    );
    let e =
        f.cm.patch(
            &ALICE,
            &p("ghost.txt"),
            &RenameRequest::from_body(Some(json!({"path": "g2.txt"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e =
        f.cm.patch(
            &ALICE,
            &p("dir"),
            &RenameRequest::from_body(Some(json!({"path": "dir/inner"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e = RenameRequest::from_body(None).unwrap_err();
    assert_eq!(e.message, "JSON body missing");
    let same =
        f.cm.patch(
            &ALICE,
            &p("other.txt"),
            &RenameRequest::from_body(Some(json!({}))).unwrap(),
        )
        .unwrap();
    assert_eq!(same.path, "other.txt");
}

#[test]
fn delete_permanently_and_to_trash() {
    let f = fixture_with(|c| c.delete_to_trash = false);
    write(&f.root, "full/x.txt", "x");
    fs::create_dir_all(f.root.join("cp_only/.ipynb_checkpoints")).unwrap();
    write(&f.root, "gone.txt", "x");
    f.cm.delete(&ALICE, &p("gone.txt")).unwrap();
    assert!(!f.root.join("gone.txt").exists());
    let e = f.cm.delete(&ALICE, &p("full")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.starts_with("Directory ") && e.message.ends_with(" not empty"));
    f.cm.delete(&ALICE, &p("cp_only")).unwrap();
    assert_eq!(
        f.cm.delete(&ALICE, &p("")).unwrap_err().message,
        "Can't delete root"
    );
    assert_eq!(
        f.cm.delete(&ALICE, &p("nothing")).unwrap_err().kind,
        ErrorKind::NotFound
    );

    let t = fixture();
    write(&t.root, "full/x.txt", "x");
    write(&t.root, "a.txt", "a");
    t.cm.delete(&ALICE, &p("full")).unwrap();
    t.cm.delete(&ALICE, &p("a.txt")).unwrap();
    assert!(t.state.join("Trash/files/full/x.txt").is_file());
    assert!(t.state.join("Trash/files/a.txt").is_file());
    let info = fs::read_to_string(t.state.join("Trash/info/a.txt.trashinfo")).unwrap();
    assert!(info.starts_with("[Trash Info]\nPath=/"));
    write(&t.root, "a.txt", "again");
    t.cm.delete(&ALICE, &p("a.txt")).unwrap();
    assert_eq!(
        fs::read_to_string(t.state.join("Trash/files/a 2.txt")).unwrap(),
        "again"
    );
}

#[test]
fn checkpoints_create_list_restore_delete() {
    let f = fixture();
    write(&f.root, "f.txt", "v1");
    assert!(f
        .cm
        .list_checkpoints(&ALICE, &p("f.txt"))
        .unwrap()
        .is_empty());
    let cp = f.cm.create_checkpoint(&ALICE, &p("f.txt")).unwrap();
    assert_eq!(cp.id, "checkpoint");
    let listed = f.cm.list_checkpoints(&ALICE, &p("f.txt")).unwrap();
    assert_eq!(listed, vec![cp.clone()]);
    let before = get(&f, "f.txt").unwrap()["last_modified"].clone();
    std::thread::sleep(std::time::Duration::from_millis(20));
    put(
        &f,
        "f.txt",
        json!({"type": "file", "format": "text", "content": "v2"}),
    )
    .unwrap();
    f.cm.restore_checkpoint(&ALICE, &p("f.txt"), "checkpoint")
        .unwrap();
    assert_eq!(fs::read_to_string(f.root.join("f.txt")).unwrap(), "v1");
    assert_eq!(get(&f, "f.txt").unwrap()["last_modified"], before);
    let e =
        f.cm.restore_checkpoint(&ALICE, &p("f.txt"), "other")
            .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::NotFound,
            "Checkpoint does not exist: f.txt@other"
        )
    );
    f.cm.delete_checkpoint(&ALICE, &p("f.txt"), "checkpoint")
        .unwrap();
    assert!(f
        .cm
        .list_checkpoints(&ALICE, &p("f.txt"))
        .unwrap()
        .is_empty());
    assert_eq!(
        f.cm.delete_checkpoint(&ALICE, &p("f.txt"), "checkpoint")
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        serde_json::to_value(&cp)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn notebooks_validate_on_save_and_load() {
    let f = fixture();
    let mut bad = valid_nb();
    bad["cells"][1].as_object_mut().unwrap().remove("outputs");
    let e = put(
        &f,
        "bad.ipynb",
        json!({"type": "notebook", "content": bad.clone()}),
    )
    .unwrap_err();
    assert_eq!(e.0, ErrorKind::BadRequest);
    assert!(e.1.starts_with("Notebook validation failed: "), "{}", e.1);
    assert!(e.1.contains("outputs"), "{}", e.1);
    assert!(!f.root.join("bad.ipynb").exists());
    // On load an invalid notebook is still returned, with the message.
    write(
        &f.root,
        "bad.ipynb",
        &concord_contents::notebook::notebook_file_text(&bad),
    );
    let m = get(&f, "bad.ipynb").unwrap();
    assert_eq!(m["type"], "notebook");
    assert!(m["message"]
        .as_str()
        .unwrap()
        .starts_with("Notebook validation failed: "));
    assert_eq!(m["content"]["cells"][0]["source"], "# Title\nline two");
    // Unparseable → 400 Unreadable Notebook.
    write(&f.root, "junk.ipynb", "{not json");
    let e = get(&f, "junk.ipynb").unwrap_err();
    assert_eq!(e.0, ErrorKind::BadRequest);
    assert!(e.1.starts_with("Unreadable Notebook: "), "{}", e.1);
    // Not a dict / missing cells → 400, never a panic.
    assert_eq!(
        put(&f, "x.ipynb", json!({"type": "notebook", "content": "str"}))
            .unwrap_err()
            .0,
        ErrorKind::BadRequest
    );
    assert_eq!(
        put(
            &f,
            "x.ipynb",
            json!({"type": "notebook", "content": {"metadata": {}}})
        )
        .unwrap_err()
        .0,
        ErrorKind::BadRequest
    );
    // Valid one: unknown metadata kept, code cells marked with trust, lines joined.
    put(
        &f,
        "good.ipynb",
        json!({"type": "notebook", "content": valid_nb()}),
    )
    .unwrap();
    let g = get(&f, "good.ipynb").unwrap();
    assert!(g.get("message").is_none());
    assert_eq!(
        g["content"]["metadata"]["custom"],
        json!({"keep": ["me", 1]})
    );
    assert_eq!(g["content"]["cells"][1]["metadata"]["trusted"], true);
    assert!(g["content"]["cells"][0]["metadata"]
        .get("trusted")
        .is_none());
    // The file itself has split lines and no transient fields.
    let text = fs::read_to_string(f.root.join("good.ipynb")).unwrap();
    assert!(text.contains("\"# Title\\n\",\n"));
    assert!(!text.contains("trusted"));
    assert!(text.ends_with("}\n"));
    // Duplicate ids are repaired (nbformat behaviour), missing ids filled.
    let mut dup = valid_nb();
    dup["cells"][1]["id"] = json!("m1");
    dup["cells"][0].as_object_mut().unwrap().remove("id");
    put(&f, "dup.ipynb", json!({"type": "notebook", "content": dup})).unwrap();
    let d = get(&f, "dup.ipynb").unwrap();
    let ids: Vec<&str> = d["content"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    let lenient = fixture_with(|c| c.reject_invalid_notebooks = false);
    let (m, _) = put(
        &lenient,
        "bad.ipynb",
        json!({"type": "notebook", "content": bad}),
    )
    .unwrap();
    assert!(m["message"]
        .as_str()
        .unwrap()
        .starts_with("Notebook validation failed"));
}

#[test]
fn leftover_backup_is_recovered_on_read() {
    let f = fixture();
    write(&f.root, "nb.ipynb", "{truncated");
    write(
        &f.root,
        ".~nb.ipynb",
        &concord_contents::notebook::notebook_file_text(&valid_nb()),
    );
    let m = get(&f, "nb.ipynb").unwrap();
    assert_eq!(m["content"]["nbformat"], 4);
    assert!(f.root.join("nb.ipynb.invalid").exists());
    assert!(!f.root.join(".~nb.ipynb").exists());
}

#[test]
fn trust_is_per_user() {
    let f = fixture();
    let mut nb = valid_nb();
    nb["cells"][1]["outputs"] = json!([{"output_type": "display_data", "metadata": {},
        "data": {"text/html": "<b>x</b>"}}]);
    // Saved by alice with untrusted rich output → untrusted for everyone.
    put(&f, "t.ipynb", json!({"type": "notebook", "content": nb})).unwrap();
    let bob = Caller::new("bob", &AllowAll);
    let opts = GetOptions::from_query(None, None, None, None).unwrap();
    let trusted = |c: &Caller<'_>| {
        let m = serde_json::to_value(f.cm.get(c, &p("t.ipynb"), &opts).unwrap()).unwrap();
        m["content"]["cells"][1]["metadata"]["trusted"]
            .as_bool()
            .unwrap()
    };
    assert!(!trusted(&ALICE));
    f.cm.trust(&ALICE, &p("t.ipynb")).unwrap();
    assert!(trusted(&ALICE));
    assert!(!trusted(&bob));
    // Trust survives a restart (state dir).
    let cm2 = ContentsManager::new(f.cm.config().clone()).unwrap();
    let m = serde_json::to_value(cm2.get(&ALICE, &p("t.ipynb"), &opts).unwrap()).unwrap();
    assert_eq!(m["content"]["cells"][1]["metadata"]["trusted"], true);
    write(&f.root, "plain.txt", "x");
    assert_eq!(
        f.cm.trust(&ALICE, &p("plain.txt")).unwrap_err().kind,
        ErrorKind::BadRequest
    );
}

/// A policy: read under `read`, write under `write` (by whole segments).
struct Policy {
    read: Vec<CanonicalPath>,
    write: Vec<CanonicalPath>,
}

impl PathAccess for Policy {
    fn may_read(&self, path: &CanonicalPath) -> bool {
        self.read
            .iter()
            .any(|r| path.is_within(r) || r.is_within(path) && path.is_root())
    }
    fn may_write(&self, path: &CanonicalPath) -> bool {
        self.write.iter().any(|w| path.is_within(w))
    }
}

#[test]
fn per_path_access_filters_listings_writable_and_body_paths() {
    let f = fixture();
    write(&f.root, "pub/a.txt", "a");
    write(&f.root, "mine/b.txt", "b");
    write(&f.root, "secret/c.txt", "c");
    symlink(f.root.join("secret/c.txt"), f.root.join("pub/link.txt")).unwrap();
    let policy = Policy {
        read: vec![p("/pub"), p("/mine"), p("/")],
        write: vec![p("/mine")],
    };
    // Root readable for listing, but only pub and mine children.
    let policy = Policy {
        read: policy.read.into_iter().filter(|r| !r.is_root()).collect(),
        ..policy
    };
    struct WithRoot(Policy);
    impl PathAccess for WithRoot {
        fn may_read(&self, path: &CanonicalPath) -> bool {
            path.is_root() || self.0.may_read(path)
        }
        fn may_write(&self, path: &CanonicalPath) -> bool {
            self.0.may_write(path)
        }
    }
    let access = WithRoot(policy);
    let carol = Caller::new("carol", &access);
    let opts = GetOptions::from_query(None, None, None, None).unwrap();
    let listing = serde_json::to_value(f.cm.get(&carol, &p("/"), &opts).unwrap()).unwrap();
    assert_eq!(names(&listing), vec!["mine", "pub"]);
    let entries = listing["content"].as_array().unwrap();
    let writable = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap()["writable"].clone();
    assert_eq!(writable("mine"), true);
    assert_eq!(writable("pub"), false);
    assert_eq!(listing["writable"], false);
    // The symlink into secret is judged as secret: not listed, not readable.
    let pub_listing = serde_json::to_value(f.cm.get(&carol, &p("/pub"), &opts).unwrap()).unwrap();
    assert_eq!(names(&pub_listing), vec!["a.txt"]);
    assert_eq!(
        f.cm.get(&carol, &p("/pub/link.txt"), &opts)
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    // Secret looks exactly like a missing path.
    let e1 = f.cm.get(&carol, &p("/secret/c.txt"), &opts).unwrap_err();
    let e2 = f.cm.get(&carol, &p("/secret/none.txt"), &opts).unwrap_err();
    assert_eq!(e1.kind, e2.kind);
    // Copy needs read on the source and write on the destination.
    let e =
        f.cm.post(
            &carol,
            &p("/mine"),
            Body::from_value(Some(json!({"copy_from": "secret/c.txt"}))),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e =
        f.cm.post(
            &carol,
            &p("/pub"),
            Body::from_value(Some(json!({"copy_from": "mine/b.txt"}))),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    f.cm.post(
        &carol,
        &p("/mine"),
        Body::from_value(Some(json!({"copy_from": "pub/a.txt"}))),
    )
    .unwrap();
    assert!(f.root.join("mine/a.txt").exists());
    // A folder holding something the caller may not read (here a link into secret) is not
    // copied at all, rather than copied without it.
    let e =
        f.cm.post(
            &carol,
            &p("/mine"),
            Body::from_value(Some(json!({"copy_from": "pub"}))),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(
        e.message,
        "Cannot copy pub: it contains files or folders you may not read"
    );
    assert!(!f.root.join("mine/pub").exists());
    fs::remove_file(f.root.join("pub/link.txt")).unwrap();
    f.cm.post(
        &carol,
        &p("/mine"),
        Body::from_value(Some(json!({"copy_from": "pub"}))),
    )
    .unwrap();
    assert!(f.root.join("mine/pub/a.txt").exists());
    symlink(f.root.join("secret/c.txt"), f.root.join("pub/link.txt")).unwrap();
    // Rename needs write on both ends.
    let e =
        f.cm.patch(
            &carol,
            &p("/mine/b.txt"),
            &RenameRequest::from_body(Some(json!({"path": "pub/b.txt"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    let e =
        f.cm.patch(
            &carol,
            &p("/mine/b.txt"),
            &RenameRequest::from_body(Some(json!({"path": "secret/b.txt"}))).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(f.root.join("mine/b.txt").exists());
    // Writes outside the write area are refused even if the server forgot to check.
    let body = json!({"type": "file", "format": "text", "content": "x"});
    assert_eq!(
        f.cm.put(&carol, &p("/pub/a.txt"), Body::from_value(Some(body)))
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(
        f.cm.delete(&carol, &p("/pub/a.txt")).unwrap_err().kind,
        ErrorKind::Forbidden
    );
}

#[test]
fn listing_large_directory_with_content_does_not_read_files() {
    let f = fixture();
    for i in 0..1000 {
        write(&f.root, &format!("big/f{i:04}.txt"), "content");
    }
    let m =
        f.cm.get(
            &ALICE,
            &p("big"),
            &GetOptions::from_query(None, None, Some("1"), None).unwrap(),
        )
        .unwrap();
    let Some(Content::Directory(entries)) = m.content else {
        panic!("not a listing")
    };
    assert_eq!(entries.len(), 1000);
    assert!(entries
        .iter()
        .all(|e| e.content.is_none() && e.kind == ContentType::File));
}

/// A large listing: every shown entry appears exactly once, in directory order, with its
/// own path, type, size and writability.
#[test]
fn large_listing_is_complete_and_in_order() {
    let f = fixture();
    let dir = f.root.join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..5000 {
        std::fs::write(dir.join(format!("f{i:04}.txt")), "x".repeat(i % 7)).unwrap();
    }
    for hidden in [".secret", "junk.pyc", "__pycache__"] {
        std::fs::write(dir.join(hidden), "").unwrap();
    }
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("n.ipynb"), "{}").unwrap();
    std::os::unix::fs::symlink(dir.join("f0003.txt"), dir.join("link.txt")).unwrap();
    std::fs::write(dir.join("ro.txt"), "r").unwrap();
    std::fs::set_permissions(
        dir.join("ro.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    let listing = get(&f, "big").unwrap();
    let entries = listing["content"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| ![".secret", "junk.pyc", "__pycache__"].contains(&n.as_str()))
        .collect();
    assert_eq!(names, expected);
    let by_name = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap();
    assert_eq!(by_name("f0012.txt")["path"], "big/f0012.txt");
    assert_eq!(by_name("f0012.txt")["size"], 5);
    assert_eq!(by_name("f0012.txt")["mimetype"], "text/plain");
    assert_eq!(by_name("f0012.txt")["writable"], true);
    assert_eq!(by_name("link.txt")["size"], 3);
    assert_eq!(by_name("sub")["type"], "directory");
    assert_eq!(by_name("n.ipynb")["type"], "notebook");
    // Root ignores file modes, as os.access does.
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    assert_eq!(by_name("ro.txt")["writable"], root);
}

#[test]
fn a_large_directory_lists_every_entry_with_its_own_status() {
    // Enough entries for the status calls to be split over threads: each entry must keep
    // its own size and type, symlinks and hidden files included.
    let f = fixture();
    let dir = f.root.join("big");
    fs::create_dir(&dir).unwrap();
    for i in 0..3000 {
        fs::write(dir.join(format!("f{i:04}.txt")), "x".repeat(i % 97)).unwrap();
    }
    for i in 0..20 {
        fs::create_dir(dir.join(format!("sub{i:02}"))).unwrap();
        fs::write(dir.join(format!(".hidden{i:02}")), "h").unwrap();
    }
    symlink(dir.join("f0005.txt"), dir.join("link-to-f0005.txt")).unwrap();
    symlink(dir.join("sub03"), dir.join("link-to-sub03")).unwrap();
    symlink(dir.join("missing"), dir.join("dangling")).unwrap();

    let listing = get(&f, "big").unwrap();
    let entries = listing["content"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        3000 + 20 + 2,
        "files, dirs and two live links"
    );
    for entry in entries {
        let name = entry["name"].as_str().unwrap();
        assert_eq!(entry["path"], format!("big/{name}"));
        let meta = fs::metadata(dir.join(name)).unwrap();
        if meta.is_dir() {
            assert_eq!(entry["type"], "directory", "{name}");
            assert_eq!(entry["size"], Value::Null, "{name}");
        } else {
            assert_eq!(entry["type"], "file", "{name}");
            assert_eq!(entry["size"], meta.len(), "{name}");
        }
    }
    let link = entries
        .iter()
        .find(|e| e["name"] == "link-to-f0005.txt")
        .unwrap();
    assert_eq!(link["size"], 5);
}

/// Records the actions the service reports.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<ContentsAction>>);

impl ActionListener for Recorder {
    fn listening(&self) -> bool {
        true
    }
    fn hear(&self, actions: &[ContentsAction]) {
        self.0.lock().unwrap().extend_from_slice(actions);
    }
}

impl Recorder {
    /// `action path [source] <- readers` for each action reported since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|a| {
                let readers: Vec<&str> = a.readers.iter().map(|r| r.as_str()).collect();
                let source = a
                    .source_path
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{source} <- {}",
                    a.action.as_str(),
                    a.path,
                    readers.join(" ")
                )
            })
            .collect()
    }
}

#[test]
fn operations_report_jupyter_servers_actions_in_its_order() {
    let f = fixture();
    let heard = std::sync::Arc::new(Recorder::default());
    f.cm.subscribe_actions(heard.clone());
    write(&f.root, "a.txt", "a");
    symlink(f.root.join("a.txt"), f.root.join("link.txt")).unwrap();
    fs::create_dir(f.root.join("dir")).unwrap();

    f.cm.get(&ALICE, &p("link.txt"), &GetOptions::metadata_only())
        .unwrap();
    assert_eq!(heard.take(), ["get link.txt <- /a.txt"]);
    // The server's own look (/view) is not an action.
    f.cm.stat(&ALICE, &p("link.txt")).unwrap();
    assert!(heard.take().is_empty());
    put(
        &f,
        "b.txt",
        json!({"type": "file", "format": "text", "content": "b"}),
    )
    .unwrap();
    assert_eq!(
        heard.take(),
        ["get b.txt <- /b.txt", "save b.txt <- /b.txt"]
    );
    f.cm.post(&ALICE, &p("dir"), Body::Empty).unwrap();
    assert_eq!(
        heard.take(),
        [
            "get dir/untitled <- /dir/untitled",
            "save dir/untitled <- /dir/untitled"
        ]
    );
    // A copy names its source as the client wrote it.
    f.cm.post(
        &ALICE,
        &p("dir"),
        Body::from_value(Some(json!({"copy_from": "/link.txt"}))),
    )
    .unwrap();
    assert_eq!(
        heard.take(),
        [
            "get link.txt <- /a.txt",
            "get link.txt <- /a.txt",
            "get dir/link.txt <- /dir/link.txt",
            "save dir/link.txt <- /dir/link.txt",
            "copy dir/link.txt from /link.txt <- /dir/link.txt /a.txt",
        ]
    );
    // A rename is heard by the readers of both ends, as they were before it.
    let rename = RenameRequest::from_body(Some(json!({"path": "moved.txt"}))).unwrap();
    f.cm.patch(&ALICE, &p("link.txt"), &rename).unwrap();
    assert_eq!(
        heard.take(),
        [
            "rename moved.txt from link.txt <- /moved.txt /a.txt",
            "get moved.txt <- /moved.txt"
        ]
    );
    f.cm.delete(&ALICE, &p("b.txt")).unwrap();
    assert_eq!(heard.take(), ["delete b.txt <- /b.txt"]);
    // Failures and checkpoints report nothing.
    f.cm.delete(&ALICE, &p("b.txt")).unwrap_err();
    f.cm.create_checkpoint(&ALICE, &p("a.txt")).unwrap();
    assert!(heard.take().is_empty());
}
