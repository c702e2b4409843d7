//! Rooms driven by Yjs clients (yrs documents speaking the room protocol through the codec)
//! over real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_collab::codec::{self, decode_raw_reply};
use concord_collab::document::{DocKind, FileContent};
use concord_collab::{
    close_codes, BoxFuture, CloseReason, CollabConfig, CollabError, CollabObserver, Collaboration,
    Connection, DocumentStore, FileStamp, Identity, Outbound, Permission, RefusedChanges,
    RoomTarget, SaveRecord, SavedFile, StateStore, StoredFile,
};
use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, TransactionMut, Update, WriteTxn};

/// Files in a directory, as the contents service would serve them.
struct DirStore {
    root: PathBuf,
}

fn stamp(path: &Path) -> Result<FileStamp, CollabError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CollabError::not_found(format!("{}: {e}", path.display())))?;
    Ok(meta.modified().unwrap().into())
}

impl DocumentStore for DirStore {
    fn load(&self, path: String, kind: DocKind) -> BoxFuture<'_, Result<StoredFile, CollabError>> {
        Box::pin(async move {
            let full = self.root.join(&path);
            let bytes = std::fs::read(&full).map_err(|e| CollabError::not_found(e.to_string()))?;
            let content = match kind {
                DocKind::Notebook => FileContent::Notebook(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| CollabError::invalid(e.to_string()))?,
                ),
                DocKind::Text => FileContent::Text(String::from_utf8(bytes).unwrap()),
                DocKind::Blob => FileContent::Binary(bytes),
            };
            Ok(StoredFile {
                content,
                last_modified: stamp(&full)?,
            })
        })
    }

    fn save(
        &self,
        path: String,
        content: FileContent,
    ) -> BoxFuture<'_, Result<SavedFile, CollabError>> {
        Box::pin(async move {
            let full = self.root.join(&path);
            let bytes = match content {
                FileContent::Notebook(nb) => serde_json::to_vec_pretty(&nb).unwrap(),
                FileContent::Text(text) => text.into_bytes(),
                FileContent::Binary(bytes) => bytes,
            };
            let tmp = full.with_extension("saving");
            std::fs::write(&tmp, &bytes).map_err(|e| CollabError::io(e.to_string()))?;
            std::fs::rename(&tmp, &full).map_err(|e| CollabError::io(e.to_string()))?;
            Ok(SavedFile {
                last_modified: stamp(&full)?,
                hash: Some(format!("{:x}", bytes.len())),
            })
        })
    }

    fn last_modified(&self, path: String) -> BoxFuture<'_, Result<FileStamp, CollabError>> {
        Box::pin(async move { stamp(&self.root.join(path)) })
    }
}

#[derive(Default)]
struct Recorder {
    refused: Mutex<Vec<RefusedChanges>>,
    awareness: Mutex<Vec<RefusedChanges>>,
    saves: Mutex<Vec<SaveRecord>>,
}

impl CollabObserver for Recorder {
    fn changes_refused(&self, event: &RefusedChanges) {
        self.refused.lock().unwrap().push(event.clone());
    }
    fn awareness_refused(&self, event: &RefusedChanges) {
        self.awareness.lock().unwrap().push(event.clone());
    }
    fn document_saved(&self, record: &SaveRecord) {
        self.saves.lock().unwrap().push(record.clone());
    }
}

struct Setup {
    dir: tempfile::TempDir,
    service: Collaboration,
    recorder: Arc<Recorder>,
}

fn fast_config() -> CollabConfig {
    CollabConfig {
        save_delay: Duration::from_millis(50),
        poll_interval: Duration::from_millis(50),
        cleanup_delay: Duration::ZERO,
        ..CollabConfig::default()
    }
}

fn setup(config: CollabConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let service = Collaboration::new(
        config,
        Arc::new(DirStore {
            root: dir.path().to_path_buf(),
        }),
        StateStore::open(&dir.path().join(".state/collaboration.db")).unwrap(),
        recorder.clone(),
    );
    Setup {
        dir,
        service,
        recorder,
    }
}

impl Setup {
    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    async fn target(&self, path: &str, format: &str, kind: &str) -> RoomTarget {
        let session = self.service.session(path, format, kind).await.unwrap();
        self.service
            .resolve_room(&format!("{format}:{kind}:{}", session.file_id))
            .unwrap()
    }
}

/// A Yjs client: its own document, synchronised through a connection.
struct Client {
    doc: Doc,
    conn: Connection,
    raw: Vec<serde_json::Value>,
    awareness: Vec<Vec<u8>>,
    closed: Option<CloseReason>,
}

impl Client {
    async fn join(s: &Setup, target: &RoomTarget, user: &str, permission: Permission) -> Client {
        let conn = s
            .service
            .join(target, Identity::named(user), permission)
            .await
            .unwrap();
        let mut client = Client::with_doc(Doc::new(), conn);
        client.sync().await;
        client
    }

    fn with_doc(doc: Doc, conn: Connection) -> Client {
        Client {
            doc,
            conn,
            raw: Vec::new(),
            awareness: Vec::new(),
            closed: None,
        }
    }

    /// Send our state vector (what y-websocket does on connecting) and take what is queued.
    async fn sync(&mut self) {
        let sv = self.doc.transact().state_vector().encode_v1();
        let _ = self.conn.handle(&codec::encode_sync_step1(&sv)).await;
        self.pump().await;
    }

    /// Take every queued message, answering the server's step 1.
    async fn pump(&mut self) {
        while let Some(out) = self.conn.try_next() {
            match out {
                Outbound::Close(reason) => self.closed = Some(reason),
                Outbound::Message(bytes) => self.receive(&bytes).await,
            }
        }
    }

    async fn receive(&mut self, bytes: &[u8]) {
        let limits = codec::Limits::default();
        match codec::decode_message(bytes, &limits) {
            Ok(codec::Message::SyncStep1(sv)) => {
                let sv = StateVector::decode_v1(sv).unwrap();
                let diff = self.doc.transact().encode_diff_v1(&sv);
                let _ = self.conn.handle(&codec::encode_sync_step2(&diff)).await;
            }
            Ok(codec::Message::SyncStep2(u)) | Ok(codec::Message::Update(u)) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(u).unwrap())
                    .unwrap();
            }
            Ok(codec::Message::Awareness(_)) => self.awareness.push(bytes.to_vec()),
            _ => {
                if let Some(reply) = decode_raw_reply(bytes) {
                    self.raw.push(reply);
                }
            }
        }
    }

    /// Change our document and send the change.
    async fn edit(&mut self, change: impl FnOnce(&mut TransactionMut)) -> Result<(), CloseReason> {
        let update = {
            let mut txn = self.doc.transact_mut();
            change(&mut txn);
            txn.encode_update_v1()
        };
        self.conn.handle(&codec::encode_update(&update)).await
    }

    /// Pump until `check` holds (with a deadline).
    async fn pump_until(&mut self, what: &str, check: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.pump().await;
            if check(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn text(&self) -> String {
        let txn = self.doc.transact();
        txn.get_text("source")
            .map(|t| t.get_string(&txn))
            .unwrap_or_default()
    }
}

fn insert(index: u32, chunk: &'static str) -> impl FnOnce(&mut TransactionMut) {
    move |txn| {
        let text = txn.get_or_insert_text("source");
        text.insert(txn, index, chunk);
    }
}

fn append(chunk: &'static str) -> impl FnOnce(&mut TransactionMut) {
    move |txn| {
        let text = txn.get_or_insert_text("source");
        let len = text.len(txn);
        text.insert(txn, len, chunk);
    }
}

/// Poll until `check` holds (no sleeps in tests: a deadline).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_editors_edit_concurrently_converge_and_reach_the_file() {
    let s = setup(fast_config());
    s.write("notes.txt", "middle\n");
    let target = s.target("notes.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    let mut bob = Client::join(&s, &target, "bob", Permission::Edit).await;
    assert_eq!(alice.text(), "middle\n");
    assert_eq!(bob.text(), "middle\n");

    // Both edit before seeing the other's change.
    alice.edit(insert(0, "alice was here: ")).await.unwrap();
    bob.edit(append("bob too\n")).await.unwrap();
    alice.pump().await;
    bob.pump().await;
    assert_eq!(alice.text(), bob.text());
    assert_eq!(alice.text(), "alice was here: middle\nbob too\n");

    eventually("both edits on disk", || {
        s.read("notes.txt") == "alice was here: middle\nbob too\n"
    })
    .await;
    let saves = s.recorder.saves.lock().unwrap().clone();
    let editors: Vec<String> = saves
        .iter()
        .flat_map(|r| r.editors.iter().map(|e| e.username.clone()))
        .collect();
    assert!(
        editors.contains(&"alice".to_string()) && editors.contains(&"bob".to_string()),
        "{saves:?}"
    );
}

#[tokio::test]
async fn a_viewers_changes_and_saves_change_nothing_anywhere() {
    let s = setup(fast_config());
    s.write("shared.txt", "original\n");
    let target = s.target("shared.txt", "text", "file").await;
    let mut editor = Client::join(&s, &target, "alice", Permission::Edit).await;
    let mut viewer = Client::join(&s, &target, "victor", Permission::View).await;

    viewer.edit(append("VIEWER WAS HERE\n")).await.unwrap();
    viewer.edit(insert(0, "AGAIN ")).await.unwrap();
    viewer
        .conn
        .handle(&codec::encode_save_request(1))
        .await
        .unwrap();
    viewer.pump().await;
    editor.pump().await;
    assert_eq!(
        editor.text(),
        "original\n",
        "the viewer's change reached an editor"
    );
    assert_eq!(
        viewer.raw,
        vec![json!({"type": "save", "responseTo": 1, "status": "failed"})]
    );

    // A newcomer sees what the room has: not the viewer's text.
    let newcomer = Client::join(&s, &target, "carol", Permission::View).await;
    assert_eq!(newcomer.text(), "original\n");

    // The editor's change is saved; the viewer's never is.
    editor.edit(append("by alice\n")).await.unwrap();
    eventually("the editor's change on disk", || {
        s.read("shared.txt") == "original\nby alice\n"
    })
    .await;
    viewer.pump().await;
    assert!(
        viewer.text().contains("by alice"),
        "the viewer sees edits live"
    );

    let metrics = s.service.metrics();
    assert_eq!(metrics.refused_updates, 2);
    assert_eq!(metrics.refused_saves, 1);
    let refused = s.recorder.refused.lock().unwrap().clone();
    assert_eq!(
        refused.len(),
        1,
        "reported once per connection: {refused:?}"
    );
    assert_eq!(refused[0].username, "victor");
    assert_eq!(refused[0].path, "shared.txt");
    drop((editor, viewer, newcomer));
    eventually("room released", || s.service.metrics().rooms == 0).await;
    assert_eq!(s.read("shared.txt"), "original\nby alice\n");
}

#[tokio::test]
async fn a_change_on_disk_while_the_room_is_open_is_merged_not_lost() {
    let s = setup(CollabConfig {
        // The room's own edit stays unsaved while the file changes on disk.
        save_delay: Duration::from_secs(3600),
        ..fast_config()
    });
    s.write("story.txt", "line one\nline two\n");
    let target = s.target("story.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    alice.edit(insert(0, "TITLE\n")).await.unwrap();

    // A REST save or another program changes the file meanwhile.
    s.write("story.txt", "line one\nline two\nline three from disk\n");
    alice
        .pump_until("the change on disk reaches the room", |c| {
            c.text().contains("from disk")
        })
        .await;
    assert_eq!(
        alice.text(),
        "TITLE\nline one\nline two\nline three from disk\n"
    );
    assert_eq!(s.service.metrics().disk_merges, 1);

    // The last participant leaving flushes both changes to disk.
    drop(alice);
    eventually("both changes on disk", || {
        s.read("story.txt") == "TITLE\nline one\nline two\nline three from disk\n"
    })
    .await;
}

fn awareness(client_id: u64, clock: u64, state: serde_json::Value) -> Vec<u8> {
    let json = state.to_string();
    codec::encode_awareness([(client_id, clock, json.as_str())])
}

#[tokio::test]
async fn awareness_claiming_another_identity_or_client_is_refused() {
    let s = setup(fast_config());
    s.write("a.txt", "x");
    let target = s.target("a.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    let mut bob = Client::join(&s, &target, "bob", Permission::View).await;

    // Bob's own presence goes to everyone.
    let own = awareness(
        200,
        1,
        json!({"user": {"username": "bob", "name": "bob",
        "display_name": "bob", "initials": "B", "color": "var(--jp-collaborator-color1)",
        "avatar_url": null}, "cursors": []}),
    );
    bob.conn.handle(&own).await.unwrap();
    alice.pump().await;
    assert_eq!(alice.awareness, vec![own.clone()]);

    // Bob claiming to be alice, or writing alice's presence, goes nowhere.
    let forged_name = awareness(
        200,
        2,
        json!({"user": {"username": "alice", "name": "alice",
        "display_name": "alice"}}),
    );
    bob.conn.handle(&forged_name).await.unwrap();
    let alice_state = awareness(
        100,
        1,
        json!({"user": {"username": "alice", "name": "alice",
        "display_name": "alice"}}),
    );
    alice.conn.handle(&alice_state).await.unwrap();
    let overwrite_alice = awareness(
        100,
        5,
        json!({"user": {"username": "bob", "name": "bob",
        "display_name": "bob"}}),
    );
    bob.conn.handle(&overwrite_alice).await.unwrap();
    let remove_alice = awareness(100, 6, serde_json::Value::Null);
    bob.conn.handle(&remove_alice).await.unwrap();
    let unknown_field = awareness(200, 3, json!({"user": {"username": "bob", "admin": true}}));
    bob.conn.handle(&unknown_field).await.unwrap();
    alice.pump().await;
    bob.pump().await;
    assert_eq!(alice.awareness, vec![own.clone(), alice_state.clone()]);
    assert_eq!(s.service.metrics().refused_awareness, 4);
    let reports = s.recorder.awareness.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].username, "bob");

    // A newcomer learns who is here; query-awareness answers the same.
    let mut carol = Client::join(&s, &target, "carol", Permission::View).await;
    assert_eq!(carol.awareness.len(), 1);
    carol.awareness.clear();
    carol
        .conn
        .handle(&codec::encode_query_awareness())
        .await
        .unwrap();
    carol.pump().await;
    assert_eq!(carol.awareness.len(), 1);
    let entries = codec::decode_awareness(
        match codec::decode_message(&carol.awareness[0], &codec::Limits::default()).unwrap() {
            codec::Message::Awareness(p) => p,
            other => panic!("{other:?}"),
        },
        &codec::Limits::default(),
    )
    .unwrap();
    let ids: Vec<u64> = entries.iter().map(|e| e.client_id).collect();
    assert_eq!(ids, vec![100, 200]);

    // Bob leaving removes his presence for the others.
    drop(bob);
    alice.pump().await;
    let last = alice.awareness.last().unwrap();
    let codec::Message::Awareness(p) =
        codec::decode_message(last, &codec::Limits::default()).unwrap()
    else {
        panic!()
    };
    let gone = codec::decode_awareness(p, &codec::Limits::default()).unwrap();
    assert_eq!((gone[0].client_id, gone[0].state.clone()), (200, None));
}

#[tokio::test]
async fn malformed_or_huge_messages_close_with_a_clear_code() {
    let s = setup(CollabConfig {
        limits: codec::Limits {
            max_message_bytes: 4096,
            ..codec::Limits::default()
        },
        ..fast_config()
    });
    s.write("a.txt", "x");
    let target = s.target("a.txt", "text", "file").await;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            vec![0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2],
            close_codes::INVALID,
        ),
        (vec![0, 9, 1, 0], close_codes::INVALID),
        (vec![0xff; 12], close_codes::INVALID),
        (
            codec::encode_update(&[1, 2, 3, 4, 5, 6, 7, 8]),
            close_codes::INVALID,
        ),
        (
            codec::encode_sync_step1(&[0xff, 0xff, 0xff]),
            close_codes::INVALID,
        ),
        (vec![1, 3, 1, 1, 1], close_codes::INVALID),
        (awareness(1, 1, json!([1, 2])), close_codes::INVALID),
        (
            codec::encode_update(&vec![0u8; 5000]),
            close_codes::TOO_LARGE,
        ),
    ];
    for (frame, code) in cases {
        let mut client = Client::join(&s, &target, "alice", Permission::Edit).await;
        let err = client.conn.handle(&frame).await.unwrap_err();
        assert_eq!(err.code, code, "{frame:?}: {err:?}");
        client.pump().await;
        assert_eq!(client.closed.as_ref().map(|r| r.code), Some(code));
        assert!(client.conn.next().await.is_none());
        assert_eq!(client.text(), "x");
    }
    // Unknown message types and other raw strings are ignored, as jupyter-server-ydoc does.
    let client = Client::join(&s, &target, "alice", Permission::Edit).await;
    client.conn.handle(&[125, 1, 2]).await.unwrap();
    client
        .conn
        .handle(&codec::encode_raw("hello"))
        .await
        .unwrap();
    assert!(s.service.metrics().malformed >= 8);
}

#[tokio::test]
async fn limits_bound_participants_rooms_queues_and_documents() {
    let s = setup(CollabConfig {
        max_participants_per_room: 2,
        max_rooms_per_user: 1,
        max_queue_bytes: 2048,
        max_document_bytes: 64 * 1024,
        ..fast_config()
    });
    s.write("a.txt", "x");
    s.write("b.txt", "y");
    let a = s.target("a.txt", "text", "file").await;
    let b = s.target("b.txt", "text", "file").await;
    let mut alice = Client::join(&s, &a, "alice", Permission::Edit).await;
    let slow = s
        .service
        .join(&a, Identity::named("sam"), Permission::View)
        .await
        .unwrap();
    let full = s
        .service
        .join(&a, Identity::named("zoe"), Permission::View)
        .await;
    assert!(full.err().unwrap().message.contains("participants"));
    let too_many = s
        .service
        .join(&b, Identity::named("alice"), Permission::Edit)
        .await;
    assert!(too_many.err().unwrap().message.contains("documents open"));

    // Sam never reads: once his queue passes its bound he is closed, the room goes on.
    for _ in 0..60 {
        alice
            .edit(append(
                "0123456789012345678901234567890123456789012345678901234567890123456789",
            ))
            .await
            .unwrap();
    }
    let mut closed = None;
    while let Some(out) = slow.try_next() {
        if let Outbound::Close(reason) = out {
            closed = Some(reason.code);
        }
    }
    assert_eq!(closed, Some(close_codes::TRY_AGAIN));

    // A document past its size limit refuses the update that would grow it.
    let big: &'static str = Box::leak("z".repeat(70 * 1024).into_boxed_str());
    let err = alice.edit(append(big)).await.unwrap_err();
    assert_eq!(err.code, close_codes::TOO_LARGE);

    // Empty rooms are released.
    drop((alice, slow));
    eventually("rooms released", || s.service.metrics().rooms == 0).await;
    assert_eq!(s.service.metrics().participants, 0);
}

#[tokio::test]
async fn permission_changes_and_revocation_reach_live_participants() {
    let s = setup(fast_config());
    s.write("a.txt", "start\n");
    let target = s.target("a.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    let mut bob = Client::join(&s, &target, "bob", Permission::Edit).await;
    let bob_id = s
        .service
        .participants()
        .into_iter()
        .find(|p| p.username == "bob")
        .unwrap();
    assert_eq!(
        (bob_id.permission, bob_id.path.as_str()),
        (Permission::Edit, "a.txt")
    );

    assert!(s.service.set_permission(bob_id.id, Permission::View));
    bob.edit(append("after downgrade\n")).await.unwrap();
    alice.pump().await;
    assert_eq!(alice.text(), "start\n");
    assert_eq!(s.service.metrics().refused_updates, 1);

    assert!(s.service.close(bob_id.id, CloseReason::revoked()));
    bob.pump().await;
    let reason = bob.closed.clone().unwrap();
    assert_eq!(reason.code, close_codes::SESSION);
    let payload: serde_json::Value = serde_json::from_str(&reason.reason).unwrap();
    assert_eq!(payload["reason"], "access_revoked");
    assert!(bob.conn.next().await.is_none());
}

#[tokio::test]
async fn a_client_of_a_released_room_is_asked_to_reload_instead_of_duplicating() {
    let s = setup(fast_config());
    s.write("a.txt", "one\n");
    let target = s.target("a.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    alice.edit(append("two\n")).await.unwrap();
    let old_doc = alice.doc;
    drop(alice.conn);
    eventually("saved and released", || {
        s.read("a.txt") == "one\ntwo\n" && s.service.metrics().rooms == 0
    })
    .await;

    // The old document (y-websocket reconnecting with it) meets a room loaded anew.
    let conn = s
        .service
        .join(&target, Identity::named("alice"), Permission::Edit)
        .await
        .unwrap();
    let mut stale = Client::with_doc(old_doc, conn);
    stale.sync().await;
    let reason = stale.closed.clone().expect("closed");
    assert_eq!(reason.code, close_codes::SESSION);
    assert!(reason.reason.contains("\"reloadable\":true"));

    // A fresh client is fine and sees the file once.
    let fresh = Client::join(&s, &target, "alice", Permission::Edit).await;
    assert_eq!(fresh.text(), "one\ntwo\n");
}

#[tokio::test]
async fn file_ids_survive_renames_and_rooms_follow() {
    let s = setup(fast_config());
    std::fs::create_dir(s.dir.path().join("dir")).unwrap();
    s.write("dir/a.txt", "x");
    let first = s
        .service
        .session("dir/a.txt", "text", "file")
        .await
        .unwrap();
    assert!(first.created);
    let again = s
        .service
        .session("/dir/a.txt", "text", "file")
        .await
        .unwrap();
    assert_eq!(
        (again.file_id.as_str(), again.created),
        (first.file_id.as_str(), false)
    );
    assert_eq!(first.to_json()["sessionId"], s.service.session_id());
    assert!(s
        .service
        .session("missing.txt", "text", "file")
        .await
        .is_err());

    let target = s.target("dir/a.txt", "text", "file").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    std::fs::rename(s.dir.path().join("dir"), s.dir.path().join("moved")).unwrap();
    let affected = s.service.file_moved("dir", "moved").unwrap();
    assert_eq!(affected.len(), 1);
    assert_eq!(affected[0].path, "moved/a.txt");
    let renamed = s
        .service
        .session("moved/a.txt", "text", "file")
        .await
        .unwrap();
    assert_eq!(renamed.file_id, first.file_id);
    alice.pump().await;
    let path = {
        let txn = alice.doc.transact();
        let state = txn.get_map("state").unwrap();
        yrs::Map::get(&state, &txn, "path").unwrap().to_string(&txn)
    };
    assert_eq!(path, "moved/a.txt");
    alice.edit(append("y")).await.unwrap();
    eventually("saved at the new path", || s.read("moved/a.txt") == "xy").await;

    s.service.file_deleted("moved").unwrap();
    alice.pump().await;
    assert!(alice.closed.unwrap().reason.contains("file_deleted"));
    assert!(s.service.resolve_room(&target.room_id).is_err());
}

fn notebook(cells: serde_json::Value, minor: u32) -> String {
    json!({"nbformat": 4, "nbformat_minor": minor, "metadata": {}, "cells": cells}).to_string()
}

fn cell_source(doc: &Doc, index: u32) -> String {
    use yrs::{Array, Map, Out};
    let txn = doc.transact();
    let cells = txn.get_array("cells").unwrap();
    let Some(Out::YMap(cell)) = cells.get(&txn, index) else {
        panic!("no cell {index}")
    };
    let Some(Out::YText(text)) = cell.get(&txn, "source") else {
        panic!()
    };
    text.get_string(&txn)
}

fn edit_cell(index: u32, at: u32, chunk: &'static str) -> impl FnOnce(&mut TransactionMut) {
    use yrs::{Array, Map, Out};
    move |txn| {
        let cells = txn.get_or_insert_array("cells");
        let Some(Out::YMap(cell)) = cells.get(txn, index) else {
            panic!()
        };
        let Some(Out::YText(text)) = cell.get(txn, "source") else {
            panic!()
        };
        text.insert(txn, at, chunk);
    }
}

#[tokio::test]
async fn notebook_cells_merge_with_disk_changes_and_record_their_authors() {
    let s = setup(CollabConfig {
        save_delay: Duration::from_secs(3600),
        ..fast_config()
    });
    // nbformat 4.4: no cell ids on disk.
    s.write(
        "nb.ipynb",
        &notebook(
            json!([
                {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
                {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
                 "source": "x = 1"}
            ]),
            4,
        ),
    );
    let target = s.target("nb.ipynb", "json", "notebook").await;
    let mut alice = Client::join(&s, &target, "alice", Permission::Edit).await;
    alice.edit(edit_cell(1, 5, "0")).await.unwrap();
    assert_eq!(cell_source(&alice.doc, 1), "x = 10");

    // Someone changes the first cell on disk meanwhile.
    s.write(
        "nb.ipynb",
        &notebook(
            json!([
                {"cell_type": "markdown", "metadata": {}, "source": "# Title, edited on disk"},
                {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
                 "source": "x = 1"}
            ]),
            4,
        ),
    );
    alice
        .pump_until("the disk's change", |c| {
            cell_source(&c.doc, 0).contains("on disk")
        })
        .await;
    assert_eq!(
        cell_source(&alice.doc, 1),
        "x = 10",
        "the room's edit survived"
    );

    drop(alice);
    eventually("both in the file", || {
        let nb: serde_json::Value = serde_json::from_str(&s.read("nb.ipynb")).unwrap();
        nb["cells"][0]["source"] == "# Title, edited on disk"
            && nb["cells"][1]["source"] == "x = 10"
    })
    .await;
    let nb: serde_json::Value = serde_json::from_str(&s.read("nb.ipynb")).unwrap();
    assert!(
        nb["cells"][0].get("id").is_none(),
        "nbformat 4.4 keeps no ids"
    );
    let authors = s.service.cell_authors("nb.ipynb").unwrap();
    assert_eq!(authors.len(), 1, "{authors:?}");
    assert_eq!(authors[0].username, "alice");
    let saves = s.recorder.saves.lock().unwrap().clone();
    assert_eq!(
        saves.last().unwrap().editors[0].cells,
        vec![authors[0].cell_id.clone()]
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Random sync and awareness payloads from an editor never panic the room: each is
        /// applied or refused with a close code, and the room keeps serving others.
        #[test]
        fn random_payloads_never_break_a_room(
            kind in 0u8..4,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let s = setup(fast_config());
                s.write("a.txt", "stable");
                let target = s.target("a.txt", "text", "file").await;
                let mut witness = Client::join(&s, &target, "wendy", Permission::Edit).await;
                let fuzzer = s.service.join(&target, Identity::named("fred"), Permission::Edit).await.unwrap();
                let frame = match kind {
                    0 => codec::encode_update(&payload),
                    1 => codec::encode_sync_step1(&payload),
                    2 => { let mut f = vec![1u8]; codec::write_var_bytes(&mut f, &payload); f }
                    _ => payload.clone(),
                };
                let result = fuzzer.handle(&frame).await;
                if let Err(reason) = result {
                    assert!([close_codes::INVALID, close_codes::TOO_LARGE, close_codes::SESSION].contains(&reason.code));
                }
                witness.edit(append("!")).await.unwrap();
                witness.pump().await;
                assert!(witness.text().ends_with('!'));
            });
        }
    }
}
