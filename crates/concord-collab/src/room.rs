//! Rooms: one shared document per file, its participants, and its persistence.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use yrs::types::{Change, Event, PathSegment};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, DeepObservable, Doc, Map, Out, ReadTxn, StateVector, Transact, Update};

use crate::codec::{self, Message, SaveStatus};
use crate::document::{self, DocKind, FileContent};
use crate::error::{CollabError, ErrorKind};
use crate::service::{
    CloseReason, EditorChanges, Identity, Inner, Permission, RefusedChanges, SaveRecord,
};
use crate::store::FileStamp;

/// An empty Yjs update (no structs, empty delete set).
const EMPTY_UPDATE: &[u8] = &[0, 0];

/// How many awareness client ids one connection may speak for (a page reload makes a new
/// connection; a few allow for a client that renews its document).
const MAX_CLIENT_IDS_PER_CONNECTION: usize = 4;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the room's document is loaded.
#[derive(Clone, Debug)]
pub(crate) enum Readiness {
    Loading,
    Ready,
    Failed(CollabError),
}

pub(crate) struct Room {
    pub(crate) id: String,
    pub(crate) file_id: String,
    pub(crate) kind: DocKind,
    pub(crate) state: Mutex<RoomState>,
    /// Wakes the room's task (a change, a leave, a save request).
    pub(crate) wake: Notify,
    /// One save or disk check at a time.
    pub(crate) persist: tokio::sync::Mutex<()>,
    pub(crate) ready: watch::Sender<Readiness>,
}

/// The file as last read or written: where the room's own edits and the disk's meet.
pub(crate) struct Base {
    /// The document's whole state then.
    update: Vec<u8>,
    /// The file's content then.
    content: FileContent,
    /// The file's last-modified time then.
    stamp: FileStamp,
}

pub(crate) struct Participant {
    pub(crate) identity: Identity,
    pub(crate) permission: Permission,
    queue: VecDeque<Bytes>,
    queue_bytes: usize,
    pub(crate) waker: Arc<Notify>,
    close: Option<CloseReason>,
    close_delivered: bool,
    client_ids: BTreeSet<u64>,
    reported_changes: bool,
    reported_awareness: bool,
}

struct AwarenessSlot {
    clock: u64,
    json: String,
    owner: u64,
}

#[derive(Default)]
struct Tally {
    updates: u64,
    bytes: u64,
    cells: BTreeMap<String, u64>,
}

pub(crate) struct RoomState {
    doc: Doc,
    pub(crate) path: String,
    pub(crate) participants: BTreeMap<u64, Participant>,
    awareness: BTreeMap<u64, AwarenessSlot>,
    base: Option<Base>,
    pub(crate) dirty: bool,
    pub(crate) last_change: Option<Instant>,
    tallies: BTreeMap<String, Tally>,
    touched_cells: Arc<Mutex<BTreeSet<String>>>,
    /// Client ids that wrote earlier loads of this file (not this room's).
    retired: HashSet<u64>,
    /// What the document takes, as last measured plus what was applied since.
    doc_bytes: usize,
    pub(crate) emptied_at: Option<Instant>,
    pub(crate) closed: bool,
}

fn participant_mut(state: &mut RoomState, id: u64) -> Option<&mut Participant> {
    state.participants.get_mut(&id)
}

/// Queue a message for one participant; one who does not read is closed.
fn push(state: &mut RoomState, id: u64, message: Bytes, max_queue_bytes: usize) {
    let Some(p) = participant_mut(state, id) else {
        return;
    };
    if p.close.is_some() {
        return;
    }
    // One message larger than the bound still goes to a reader that has caught up (a
    // whole document in a sync step 2).
    if p.queue_bytes > 0 && p.queue_bytes + message.len() > max_queue_bytes {
        p.queue.clear();
        p.queue_bytes = 0;
        p.close = Some(CloseReason::too_slow());
    } else {
        p.queue_bytes += message.len();
        p.queue.push_back(message);
    }
    p.waker.notify_one();
}

fn broadcast(state: &mut RoomState, except: Option<u64>, message: Bytes, max_queue_bytes: usize) {
    let ids: Vec<u64> = state
        .participants
        .keys()
        .copied()
        .filter(|id| Some(*id) != except)
        .collect();
    for id in ids {
        push(state, id, message.clone(), max_queue_bytes);
    }
}

/// Close one participant with a reason (delivered before anything still queued).
pub(crate) fn close_participant(state: &mut RoomState, id: u64, reason: CloseReason) {
    if let Some(p) = participant_mut(state, id) {
        if p.close.is_none() {
            p.queue.clear();
            p.queue_bytes = 0;
            p.close = Some(reason);
        }
        p.waker.notify_one();
    }
}

/// Decode and apply a client's update; a panic of the CRDT library on hostile input is
/// a malformed message, not a crash.
fn decode_update(bytes: &[u8]) -> Option<Update> {
    catch_unwind(|| Update::decode_v1(bytes).ok())
        .ok()
        .flatten()
}

/// The full state of a document.
fn full_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn normalize(content: FileContent) -> FileContent {
    match content {
        // As jupyter-server-ydoc: the shared text has `\n` line endings.
        FileContent::Text(text) if text.contains("\r\n") => {
            FileContent::Text(text.replace("\r\n", "\n"))
        }
        other => other,
    }
}

/// Give disk cells without ids the ids of the cells they stand for in the document as it
/// was when the file was last read or written (a notebook before nbformat 4.5 keeps no
/// ids on disk), so a change on disk is merged into the same cells.
fn assign_cell_ids(base_doc: &Doc, base: &FileContent, disk: &mut FileContent) {
    let (FileContent::Notebook(base_nb), FileContent::Notebook(disk_nb)) = (base, disk) else {
        return;
    };
    let Some(disk_cells) = disk_nb.get_mut("cells").and_then(Value::as_array_mut) else {
        return;
    };
    if disk_cells.iter().all(|c| c.get("id").is_some()) {
        return;
    }
    let base_ids: Vec<Option<String>> = {
        let txn = base_doc.transact();
        txn.get_array("cells")
            .map(|cells| {
                cells
                    .iter(&txn)
                    .map(|cell| match cell {
                        Out::YMap(map) => match map.get(&txn, "id") {
                            Some(Out::Any(Any::String(id))) => Some(id.to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let key = |cell: &Value| {
        let mut cell = cell.clone();
        if let Some(map) = cell.as_object_mut() {
            map.remove("id");
        }
        cell.to_string()
    };
    let base_cells: Vec<String> = base_nb
        .get("cells")
        .and_then(Value::as_array)
        .map(|cells| cells.iter().map(key).collect())
        .unwrap_or_default();
    if base_cells.len() != base_ids.len() {
        return;
    }
    let new_cells: Vec<String> = disk_cells.iter().map(key).collect();
    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &base_cells, &new_cells);
    let mut assign = |old: usize, new: usize| {
        if let (Some(Some(id)), Some(cell)) = (base_ids.get(old), disk_cells.get_mut(new)) {
            if let Some(map) = cell.as_object_mut() {
                map.entry("id").or_insert_with(|| Value::String(id.clone()));
            }
        }
    };
    for op in ops {
        match op {
            similar::DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => (0..len).for_each(|i| assign(old_index + i, new_index + i)),
            similar::DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (0..old_len.min(new_len)).for_each(|i| assign(old_index + i, new_index + i)),
            _ => {}
        }
    }
}

impl Room {
    pub(crate) fn new(id: String, file_id: String, kind: DocKind, path: String) -> Arc<Room> {
        let server_client = yrs::block::ClientID::random().get();
        let doc = document::new_doc(kind, server_client);
        let touched_cells: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        if kind == DocKind::Notebook {
            // Which cells an update touched: for cell-level attribution.
            let cells = doc.get_or_insert_array("cells");
            let touched = Arc::clone(&touched_cells);
            cells.observe_deep("attribution", move |txn, events| {
                let mut touched = lock(&touched);
                for event in events.iter() {
                    let path = event.path();
                    match path.front() {
                        Some(PathSegment::Index(index)) => {
                            if let Some(id) = cell_id_at(txn, *index) {
                                touched.insert(id);
                            }
                        }
                        None => {
                            if let Event::Array(array) = event {
                                for change in array.delta(txn) {
                                    if let Change::Added(values) = change {
                                        for value in values {
                                            if let Out::YMap(map) = value {
                                                if let Some(Out::Any(Any::String(id))) =
                                                    map.get(txn, "id")
                                                {
                                                    touched.insert(id.to_string());
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
        let (ready, _) = watch::channel(Readiness::Loading);
        Arc::new(Room {
            id,
            file_id,
            kind,
            state: Mutex::new(RoomState {
                doc,
                path,
                participants: BTreeMap::new(),
                awareness: BTreeMap::new(),
                base: None,
                dirty: false,
                last_change: None,
                tallies: BTreeMap::new(),
                touched_cells,
                retired: HashSet::new(),
                doc_bytes: 0,
                emptied_at: None,
                closed: false,
            }),
            wake: Notify::new(),
            persist: tokio::sync::Mutex::new(()),
            ready,
        })
    }

    /// Read the file and load it (as jupyter-server-ydoc: a separately written update
    /// applied to the room's document, then the path set in `state`).
    pub(crate) async fn load(&self, inner: &Inner) -> Result<(), CollabError> {
        let path = lock(&self.state).path.clone();
        let stored = inner.store.load(path.clone(), self.kind).await?;
        let content = normalize(stored.content);
        if content.kind() != self.kind {
            return Err(CollabError::invalid(format!(
                "{path} is not a {:?} document",
                self.kind
            )));
        }
        let (update, loader) = document::initial_update(&content)?;
        let retired: HashSet<u64> = inner
            .state
            .generations(&self.file_id)?
            .into_iter()
            .filter(|id| *id != loader)
            .collect();
        let mut state = lock(&self.state);
        let server_client = state.doc.client_id().get();
        inner
            .state
            .add_generation(&self.file_id, &[loader, server_client])?;
        let decoded = decode_update(&update)
            .ok_or_else(|| CollabError::io("the loaded document could not be decoded"))?;
        {
            let mut txn = state.doc.transact_mut();
            txn.apply_update(decoded)
                .map_err(|e| CollabError::io(format!("loading the document: {e}")))?;
            document::set_state(&mut txn, "path", Any::String(Arc::from(path.as_str())));
            document::set_state(&mut txn, "dirty", Any::Bool(false));
        }
        // The loader's writes are not anyone's edits.
        lock(&state.touched_cells).clear();
        state.doc_bytes = update.len();
        state.retired = retired;
        state.base = Some(Base {
            update: full_state(&state.doc),
            content,
            stamp: stored.last_modified,
        });
        Ok(())
    }

    /// Add a participant (the room is loaded).
    pub(crate) fn add_participant(
        &self,
        id: u64,
        identity: Identity,
        permission: Permission,
        waker: Arc<Notify>,
    ) {
        let mut state = lock(&self.state);
        state.emptied_at = None;
        // y-websocket's greeting: our state vector, and who is here.
        let sv = state.doc.transact().state_vector().encode_v1();
        let mut greeting = vec![Bytes::from(codec::encode_sync_step1(&sv))];
        if !state.awareness.is_empty() {
            greeting.push(Bytes::from(awareness_message(&state.awareness)));
        }
        let queue_bytes = greeting.iter().map(Bytes::len).sum();
        state.participants.insert(
            id,
            Participant {
                identity,
                permission,
                queue: greeting.into(),
                queue_bytes,
                waker: Arc::clone(&waker),
                close: None,
                close_delivered: false,
                client_ids: BTreeSet::new(),
                reported_changes: false,
                reported_awareness: false,
            },
        );
        waker.notify_one();
    }

    /// Remove a participant: its presence goes for everyone else; the last one leaving
    /// wakes the room's task to save and release the room.
    pub(crate) fn remove_participant(&self, id: u64, inner: &Inner) {
        let mut state = lock(&self.state);
        let Some(participant) = state.participants.remove(&id) else {
            return;
        };
        let mut gone = Vec::new();
        for client_id in participant.client_ids {
            if let Some(slot) = state.awareness.remove(&client_id) {
                gone.push((client_id, slot.clock + 1));
            }
        }
        if !gone.is_empty() {
            let message =
                codec::encode_awareness(gone.iter().map(|(id, clock)| (*id, *clock, "null")));
            broadcast(
                &mut state,
                None,
                Bytes::from(message),
                inner.config.max_queue_bytes,
            );
        }
        if state.participants.is_empty() {
            state.emptied_at = Some(Instant::now());
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The next message for a participant, or its close.
    pub(crate) fn next_outbound(&self, id: u64) -> Option<Result<Bytes, CloseReason>> {
        let mut state = lock(&self.state);
        let p = state.participants.get_mut(&id)?;
        if let Some(reason) = &p.close {
            if p.close_delivered {
                return None;
            }
            p.close_delivered = true;
            return Some(Err(reason.clone()));
        }
        let message = p.queue.pop_front()?;
        p.queue_bytes -= message.len();
        Some(Ok(message))
    }

    pub(crate) fn is_present(&self, id: u64) -> bool {
        lock(&self.state)
            .participants
            .get(&id)
            .is_some_and(|p| !p.close_delivered)
    }

    /// Act on one frame from a participant.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        id: u64,
        frame: &[u8],
    ) -> Result<(), CloseReason> {
        // Nothing more is taken from a participant that is being closed.
        if let Some(reason) = lock(&self.state)
            .participants
            .get(&id)
            .and_then(|p| p.close.clone())
        {
            return Err(reason);
        }
        let message = match codec::decode_message(frame, &inner.config.limits) {
            Ok(message) => message,
            Err(e) => return Err(self.refuse_frame(inner, id, &e)),
        };
        match message {
            Message::SyncStep1(sv) => self.sync_step1(inner, id, sv),
            Message::SyncStep2(update) | Message::Update(update) => {
                self.apply_update(inner, id, update)
            }
            Message::Awareness(payload) => self.awareness(inner, id, frame, payload),
            Message::QueryAwareness => {
                let mut state = lock(&self.state);
                if !state.awareness.is_empty() {
                    let message = awareness_message(&state.awareness);
                    push(
                        &mut state,
                        id,
                        Bytes::from(message),
                        inner.config.max_queue_bytes,
                    );
                }
                Ok(())
            }
            Message::Save { request_id } => self.save_request(inner, id, request_id).await,
            Message::Raw(_) | Message::Unknown(_) => Ok(()),
        }
    }

    fn refuse_frame(&self, inner: &Inner, id: u64, error: &codec::CodecError) -> CloseReason {
        let reason = match error {
            codec::CodecError::TooLarge { .. } => CloseReason::too_large(&error.to_string()),
            codec::CodecError::Malformed(_) => CloseReason::malformed(&error.to_string()),
        };
        inner
            .metrics
            .malformed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut state = lock(&self.state);
        close_participant(&mut state, id, reason.clone());
        reason
    }

    fn close_with(&self, id: u64, reason: CloseReason) -> CloseReason {
        let mut state = lock(&self.state);
        close_participant(&mut state, id, reason.clone());
        reason
    }

    fn sync_step1(&self, inner: &Inner, id: u64, sv: &[u8]) -> Result<(), CloseReason> {
        let sv = catch_unwind(|| StateVector::decode_v1(sv).ok())
            .ok()
            .flatten()
            .ok_or_else(|| {
                inner
                    .metrics
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.close_with(id, CloseReason::malformed("malformed state vector"))
            })?;
        let mut state = lock(&self.state);
        let ours = state.doc.transact().state_vector();
        // A client holding what an earlier load of this file wrote, beyond what this room
        // has, comes from a room that no longer exists: merging would duplicate content.
        let stale = sv.iter().any(|(client, clock)| {
            state.retired.contains(&client.get()) && ours.get(client) < *clock
        });
        if stale {
            drop(state);
            return Err(self.close_with(id, CloseReason::stale()));
        }
        let diff = state.doc.transact().encode_diff_v1(&sv);
        push(
            &mut state,
            id,
            Bytes::from(codec::encode_sync_step2(&diff)),
            inner.config.max_queue_bytes,
        );
        Ok(())
    }

    fn apply_update(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        id: u64,
        bytes: &[u8],
    ) -> Result<(), CloseReason> {
        if bytes == EMPTY_UPDATE {
            return Ok(());
        }
        let mut state = lock(&self.state);
        let Some(participant) = state.participants.get(&id) else {
            return Ok(());
        };
        if participant.permission == Permission::View {
            // Dropped before it touches the document; counted, reported once.
            inner
                .metrics
                .refused_updates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let report = self.mark_reported(&mut state, id, false);
            drop(state);
            if let Some(event) = report {
                inner.observer.changes_refused(&event);
            }
            return Ok(());
        }
        let Some(update) = decode_update(bytes) else {
            drop(state);
            inner
                .metrics
                .malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(self.close_with(id, CloseReason::malformed("malformed document update")));
        };
        let ours = state.doc.transact().state_vector();
        let stale = update.state_vector().iter().any(|(client, clock)| {
            state.retired.contains(&client.get()) && ours.get(client) < *clock
        });
        if stale {
            drop(state);
            return Err(self.close_with(id, CloseReason::stale()));
        }
        let limit = inner.config.max_document_bytes;
        if state.doc_bytes + bytes.len() > limit {
            state.doc_bytes = full_state(&state.doc).len();
            if state.doc_bytes + bytes.len() > limit {
                drop(state);
                return Err(self.close_with(
                    id,
                    CloseReason::too_large(&format!(
                        "the document would grow past its limit of {limit} bytes"
                    )),
                ));
            }
        }
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = state.doc.transact_mut();
            match txn.apply_update(update) {
                Ok(()) => Ok(txn.encode_update_v1()),
                Err(e) => Err(e.to_string()),
            }
        }));
        let change = match applied {
            Ok(Ok(change)) => change,
            Ok(Err(_)) | Err(_) => {
                drop(state);
                inner
                    .metrics
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(self.close_with(
                    id,
                    CloseReason::malformed("the update could not be applied"),
                ));
            }
        };
        state.doc_bytes += bytes.len();
        let username = state
            .participants
            .get(&id)
            .map(|p| p.identity.username.clone())
            .unwrap_or_default();
        let touched: Vec<String> = std::mem::take(&mut *lock(&state.touched_cells))
            .into_iter()
            .collect();
        if change.as_slice() != EMPTY_UPDATE {
            let tally = state.tallies.entry(username).or_default();
            tally.updates += 1;
            tally.bytes += bytes.len() as u64;
            for cell in touched {
                *tally.cells.entry(cell).or_default() += 1;
            }
            state.dirty = true;
            state.last_change = Some(Instant::now());
            broadcast(
                &mut state,
                Some(id),
                Bytes::from(codec::encode_update(&change)),
                inner.config.max_queue_bytes,
            );
            inner
                .metrics
                .updates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(state);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Mark a participant's refusal as reported; the event to report if it was not yet.
    fn mark_reported(
        &self,
        state: &mut RoomState,
        id: u64,
        awareness: bool,
    ) -> Option<RefusedChanges> {
        let path = state.path.clone();
        let p = state.participants.get_mut(&id)?;
        let flag = if awareness {
            &mut p.reported_awareness
        } else {
            &mut p.reported_changes
        };
        if *flag {
            return None;
        }
        *flag = true;
        Some(RefusedChanges {
            username: p.identity.username.clone(),
            path,
            room: self.id.clone(),
            what: if awareness {
                "awareness state claiming another identity or client"
            } else {
                "document changes or save from a read-only participant"
            },
        })
    }

    fn awareness(
        &self,
        inner: &Inner,
        id: u64,
        frame: &[u8],
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let entries = match codec::decode_awareness(payload, &inner.config.limits) {
            Ok(entries) => entries,
            Err(e) => return Err(self.refuse_frame(inner, id, &e)),
        };
        let mut state = lock(&self.state);
        let Some(participant) = state.participants.get(&id) else {
            return Ok(());
        };
        let mut owned = participant.client_ids.clone();
        let mut forged = false;
        for entry in &entries {
            let owner = state.awareness.get(&entry.client_id).map(|s| s.owner);
            let ours = owned.contains(&entry.client_id);
            if !ours && owner.is_none() && entry.state.is_none() {
                // The end of a presence nobody here knows: nothing to do.
                continue;
            }
            if owner.is_some_and(|o| o != id)
                || (!ours && owner.is_none() && owned.len() >= MAX_CLIENT_IDS_PER_CONNECTION)
            {
                forged = true;
                break;
            }
            if let Some(st) = &entry.state {
                if !participant.identity.allows_awareness(st) {
                    forged = true;
                    break;
                }
            }
            owned.insert(entry.client_id);
        }
        if forged {
            inner
                .metrics
                .refused_awareness
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let report = self.mark_reported(&mut state, id, true);
            drop(state);
            if let Some(event) = report {
                inner.observer.awareness_refused(&event);
            }
            return Ok(());
        }
        let mut self_removed = false;
        for entry in entries {
            let current = state.awareness.get(&entry.client_id).map(|s| s.clock);
            if current.is_some_and(|c| c > entry.clock) {
                continue;
            }
            match entry.state {
                Some(_) => {
                    state.awareness.insert(
                        entry.client_id,
                        AwarenessSlot {
                            clock: entry.clock,
                            json: entry.json,
                            owner: id,
                        },
                    );
                }
                None => {
                    state.awareness.remove(&entry.client_id);
                    self_removed = true;
                }
            }
        }
        if let Some(p) = state.participants.get_mut(&id) {
            p.client_ids = owned;
        }
        // As pycrdt-websocket: to everyone, the sender too (it keeps the connection
        // alive), except a sender that just said it is leaving.
        let except = self_removed.then_some(id);
        broadcast(
            &mut state,
            except,
            Bytes::copy_from_slice(frame),
            inner.config.max_queue_bytes,
        );
        Ok(())
    }

    async fn save_request(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        id: u64,
        request_id: u64,
    ) -> Result<(), CloseReason> {
        let permission = lock(&self.state)
            .participants
            .get(&id)
            .map(|p| p.permission);
        let status = match permission {
            None => return Ok(()),
            Some(Permission::View) => {
                inner
                    .metrics
                    .refused_saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let report = {
                    let mut state = lock(&self.state);
                    self.mark_reported(&mut state, id, false)
                };
                if let Some(event) = report {
                    inner.observer.changes_refused(&event);
                }
                SaveStatus::Failed
            }
            Some(Permission::Edit) => match self.save(inner, true).await {
                Ok(()) => SaveStatus::Success,
                Err(_) => SaveStatus::Failed,
            },
        };
        let mut state = lock(&self.state);
        push(
            &mut state,
            id,
            Bytes::from(codec::encode_save_reply(request_id, status)),
            inner.config.max_queue_bytes,
        );
        Ok(())
    }

    /// Look at the file on disk: a change made outside the room (a REST save, another
    /// program) is merged into the document. Callers hold `persist`.
    async fn check_disk(&self, inner: &Inner) -> Result<(), CollabError> {
        let (path, known) = {
            let state = lock(&self.state);
            (state.path.clone(), state.base.as_ref().map(|b| b.stamp))
        };
        let stamp = inner.store.last_modified(path.clone()).await?;
        if Some(stamp) == known {
            return Ok(());
        }
        let stored = inner.store.load(path, self.kind).await?;
        let mut disk = normalize(stored.content);
        let mut state = lock(&self.state);
        let current = document::read_content(&state.doc, self.kind);
        if current == disk {
            state.base = Some(Base {
                update: full_state(&state.doc),
                content: disk,
                stamp: stored.last_modified,
            });
            state.dirty = false;
            return Ok(());
        }
        let Some(base) = state.base.take() else {
            return Ok(());
        };
        // The change on disk, as an update to the document as it was when the file was
        // last read or written; applied to the room, it merges with the room's own edits.
        let base_doc = document::new_doc(self.kind, yrs::block::ClientID::random().get());
        let base_update = decode_update(&base.update)
            .ok_or_else(|| CollabError::io("the saved document state could not be decoded"))?;
        base_doc
            .transact_mut()
            .apply_update(base_update)
            .map_err(|e| CollabError::io(format!("rebuilding the saved document: {e}")))?;
        assign_cell_ids(&base_doc, &base.content, &mut disk);
        let disk_change = {
            let mut txn = base_doc.transact_mut();
            document::set_content(&mut txn, &disk)?;
            txn.encode_update_v1()
        };
        let merged = decode_update(&disk_change)
            .ok_or_else(|| CollabError::io("the change on disk could not be encoded"))?;
        let change = {
            let mut txn = state.doc.transact_mut();
            txn.apply_update(merged)
                .map_err(|e| CollabError::io(format!("merging the change on disk: {e}")))?;
            txn.encode_update_v1()
        };
        lock(&state.touched_cells).clear();
        if change.as_slice() != EMPTY_UPDATE {
            broadcast(
                &mut state,
                None,
                Bytes::from(codec::encode_update(&change)),
                inner.config.max_queue_bytes,
            );
        }
        let after = document::read_content(&state.doc, self.kind);
        state.dirty = after != disk;
        if state.dirty {
            state.last_change = Some(Instant::now());
        }
        state.base = Some(Base {
            update: full_state(&base_doc),
            content: disk,
            stamp: stored.last_modified,
        });
        inner
            .metrics
            .disk_merges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(room = %self.id, "a change on disk was merged into the room");
        Ok(())
    }

    /// Poll the disk (outside a save).
    pub(crate) async fn poll_disk(&self, inner: &Inner) {
        let _persist = self.persist.lock().await;
        if let Err(e) = self.check_disk(inner).await {
            if e.kind != ErrorKind::NotFound {
                tracing::warn!(room = %self.id, error = %e, "checking the file on disk failed");
            }
        }
    }

    /// Save the document if it changed (or when asked to, `force`): first merge any
    /// change made on disk meanwhile, so neither side is lost.
    pub(crate) async fn save(&self, inner: &Inner, force: bool) -> Result<(), CollabError> {
        let _persist = self.persist.lock().await;
        if let Err(e) = self.check_disk(inner).await {
            tracing::warn!(room = %self.id, error = %e, "checking the file on disk before saving failed");
        }
        let (path, content, update, tallies) = {
            let mut state = lock(&self.state);
            // An explicit save of an unchanged document has nothing to write.
            let _ = force;
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            (
                state.path.clone(),
                document::read_content(&state.doc, self.kind),
                full_state(&state.doc),
                std::mem::take(&mut state.tallies),
            )
        };
        match inner.store.save(path.clone(), content.clone()).await {
            Ok(saved) => {
                let mut state = lock(&self.state);
                state.doc_bytes = update.len();
                state.base = Some(Base {
                    update,
                    content,
                    stamp: saved.last_modified,
                });
                let change = {
                    let mut txn = state.doc.transact_mut();
                    if !state.dirty {
                        document::set_state(&mut txn, "dirty", Any::Bool(false));
                    }
                    if let Some(hash) = &saved.hash {
                        document::set_state(
                            &mut txn,
                            "hash",
                            Any::String(Arc::from(hash.as_str())),
                        );
                    }
                    txn.encode_update_v1()
                };
                if change.as_slice() != EMPTY_UPDATE {
                    broadcast(
                        &mut state,
                        None,
                        Bytes::from(codec::encode_update(&change)),
                        inner.config.max_queue_bytes,
                    );
                }
                drop(state);
                inner
                    .metrics
                    .saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.record_attribution(inner, &path, tallies);
                Ok(())
            }
            Err(e) => {
                let mut state = lock(&self.state);
                state.dirty = true;
                // Retried after another quiet period, not at once.
                state.last_change = Some(Instant::now());
                for (user, tally) in tallies {
                    let t = state.tallies.entry(user).or_default();
                    t.updates += tally.updates;
                    t.bytes += tally.bytes;
                    for (cell, n) in tally.cells {
                        *t.cells.entry(cell).or_default() += n;
                    }
                }
                drop(state);
                inner
                    .metrics
                    .failed_saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(room = %self.id, path = %path, error = %e, "saving the document failed");
                inner.observer.save_failed(&path, &e);
                Err(e)
            }
        }
    }

    fn record_attribution(&self, inner: &Inner, path: &str, tallies: BTreeMap<String, Tally>) {
        if tallies.is_empty() {
            return;
        }
        let at = chrono::Utc::now().to_rfc3339();
        let mut cell_edits = Vec::new();
        let editors = tallies
            .into_iter()
            .map(|(username, tally)| {
                for (cell, n) in &tally.cells {
                    cell_edits.push((cell.clone(), username.clone(), *n));
                }
                EditorChanges {
                    username,
                    updates: tally.updates,
                    bytes: tally.bytes,
                    cells: tally.cells.into_keys().collect(),
                }
            })
            .collect();
        if let Err(e) = inner.state.add_cell_edits(&self.file_id, &cell_edits, &at) {
            tracing::warn!(error = %e, "recording cell authorship failed");
        }
        inner.observer.document_saved(&SaveRecord {
            path: path.to_string(),
            file_id: self.file_id.clone(),
            saved_at: at,
            editors,
        });
    }

    /// The file was renamed: the document says so to every participant.
    pub(crate) fn set_path(&self, inner: &Inner, path: &str) {
        let mut state = lock(&self.state);
        state.path = path.to_string();
        let change = {
            let mut txn = state.doc.transact_mut();
            document::set_state(&mut txn, "path", Any::String(Arc::from(path)));
            txn.encode_update_v1()
        };
        if change.as_slice() != EMPTY_UPDATE {
            broadcast(
                &mut state,
                None,
                Bytes::from(codec::encode_update(&change)),
                inner.config.max_queue_bytes,
            );
        }
    }

    /// Change what a participant may do.
    pub(crate) fn set_permission(&self, id: u64, permission: Permission) -> bool {
        let mut state = lock(&self.state);
        match state.participants.get_mut(&id) {
            Some(p) => {
                p.permission = permission;
                p.reported_changes = false;
                true
            }
            None => false,
        }
    }
}

fn cell_id_at<T: ReadTxn>(txn: &T, index: u32) -> Option<String> {
    let cells = txn.get_array("cells")?;
    match cells.get(txn, index)? {
        Out::YMap(map) => match map.get(txn, "id")? {
            Out::Any(Any::String(id)) => Some(id.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn awareness_message(slots: &BTreeMap<u64, AwarenessSlot>) -> Vec<u8> {
    codec::encode_awareness(
        slots
            .iter()
            .map(|(id, slot)| (*id, slot.clock, slot.json.as_str())),
    )
}

/// The state of every participant, for the service's listing.
pub(crate) fn participant_list(room: &Room) -> Vec<(u64, String, Permission, String)> {
    let state = lock(&room.state);
    state
        .participants
        .iter()
        .filter(|(_, p)| p.close.is_none())
        .map(|(id, p)| {
            (
                *id,
                p.identity.username.clone(),
                p.permission,
                state.path.clone(),
            )
        })
        .collect()
}

/// For the metrics: participants and queued bytes.
pub(crate) fn usage(room: &Room) -> (usize, usize) {
    let state = lock(&room.state);
    (
        state.participants.len(),
        state.participants.values().map(|p| p.queue_bytes).sum(),
    )
}

/// The rooms a username takes part in are counted by the service.
pub(crate) fn has_user(room: &Room, username: &str) -> bool {
    lock(&room.state)
        .participants
        .values()
        .any(|p| p.identity.username == username)
}
