//! Rooms driven by Yjs clients (yrs documents speaking the room protocol through the codec)
//! over real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_collab::codec::{self, decode_raw_reply};
use concord_collab::document::{DocKind, FileContent};
use concord_collab::{
    close_codes, BoxFuture, CloseReason, CollabConfig, CollabError, CollabObserver,
    Collaboration, Connection, DocumentStore, FileStamp, Identity, Outbound, Permission,
    RefusedChanges, RoomTarget, SaveRecord, SavedFile, StateStore, StoredFile,
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
                    serde_json::from_slice(&bytes).map_err(|e| CollabError::invalid(e.to_string()))?,
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

    fn save(&self, path: String, content: FileContent) -> BoxFuture<'_, Result<SavedFile, CollabError>> {
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
        txn.get_text("source").map(|t| t.get_string(&txn)).unwrap_or_default()
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

    eventually("both edits on disk", || s.read("notes.txt") == "alice was here: middle\nbob too\n").await;
    let saves = s.recorder.saves.lock().unwrap().clone();
    let editors: Vec<String> = saves
        .iter()
        .flat_map(|r| r.editors.iter().map(|e| e.username.clone()))
        .collect();
    assert!(editors.contains(&"alice".to_string()) && editors.contains(&"bob".to_string()), "{saves:?}");
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
    viewer.conn.handle(&codec::encode_save_request(1)).await.unwrap();
    viewer.pump().await;
    editor.pump().await;
    assert_eq!(editor.text(), "original\n", "the viewer's change reached an editor");
    assert_eq!(viewer.raw, vec![json!({"type": "save", "responseTo": 1, "status": "failed"})]);

    // A newcomer sees what the room has: not the viewer's text.
    let newcomer = Client::join(&s, &target, "carol", Permission::View).await;
    assert_eq!(newcomer.text(), "original\n");

    // The editor's change is saved; the viewer's never is.
    editor.edit(append("by alice\n")).await.unwrap();
    eventually("the editor's change on disk", || s.read("shared.txt") == "original\nby alice\n").await;
    viewer.pump().await;
    assert!(viewer.text().contains("by alice"), "the viewer sees edits live");

    let metrics = s.service.metrics();
    assert_eq!(metrics.refused_updates, 2);
    assert_eq!(metrics.refused_saves, 1);
    let refused = s.recorder.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 1, "reported once per connection: {refused:?}");
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
    alice.pump_until("the change on disk reaches the room", |c| c.text().contains("from disk")).await;
    assert_eq!(alice.text(), "TITLE\nline one\nline two\nline three from disk\n");
    assert_eq!(s.service.metrics().disk_merges, 1);

    // The last participant leaving flushes both changes to disk.
    drop(alice);
    eventually("both changes on disk", || {
        s.read("story.txt") == "TITLE\nline one\nline two\nline three from disk\n"
    })
    .await;
}
