//! The collaboration service: sessions, rooms by file id, participants and their rights,
//! limits, and the room tasks that save, watch the disk and release empty rooms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map as JsonMap, Value};
use tokio::sync::Notify;

use crate::codec::Limits;
use crate::document::DocKind;
use crate::error::CollabError;
use crate::room::{self, lock, Readiness, Room};
use crate::state::{normalize_path, CellAuthor, StateStore};
use crate::store::DocumentStore;

/// The service's settings.
#[derive(Clone, Debug)]
pub struct CollabConfig {
    /// Bounds on each message.
    pub limits: Limits,
    /// Quiet time after the last change before the document is saved (jupyter-server-ydoc's
    /// `document_save_delay`, 1 s).
    pub save_delay: Duration,
    /// How often the file's last-modified time is read to notice changes made outside the
    /// room (jupyter-server-ydoc's `file_poll_interval`, 1 s).
    pub poll_interval: Duration,
    /// How long an empty room is kept (so a client that reconnects finds it) before its
    /// memory is released (jupyter-server-ydoc's `document_cleanup_delay`, 60 s). It is
    /// saved as soon as the last participant leaves.
    pub cleanup_delay: Duration,
    /// Participants in one room.
    pub max_participants_per_room: usize,
    /// Rooms one user takes part in at once.
    pub max_rooms_per_user: usize,
    /// Rooms open at once.
    pub max_rooms: usize,
    /// Bytes waiting to be sent to one participant; a participant that does not read is
    /// closed.
    pub max_queue_bytes: usize,
    /// Size of one document (its Yjs state); an update past it is refused.
    pub max_document_bytes: usize,
}

impl Default for CollabConfig {
    fn default() -> Self {
        CollabConfig {
            limits: Limits::default(),
            save_delay: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            cleanup_delay: Duration::from_secs(60),
            max_participants_per_room: 64,
            max_rooms_per_user: 32,
            max_rooms: 1024,
            max_queue_bytes: 16 * 1024 * 1024,
            max_document_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Who a participant is, as `/api/me` describes them to JupyterLab (its awareness `user`
/// field). `None` fields are left to the client (JupyterLab fills a missing colour and
/// initials itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The username.
    pub username: String,
    /// The name shown (jupyter_server's `name`).
    pub name: String,
    /// The display name.
    pub display_name: String,
    /// Initials.
    pub initials: Option<String>,
    /// The collaborator colour (a CSS colour).
    pub color: Option<String>,
    /// An avatar URL.
    pub avatar_url: Option<String>,
}

impl Identity {
    /// An identity with only a username (name and display name the same).
    pub fn named(username: &str) -> Self {
        Identity {
            username: username.to_string(),
            name: username.to_string(),
            display_name: username.to_string(),
            initials: None,
            color: None,
            avatar_url: None,
        }
    }

    /// Whether an awareness state claims only this identity: its `user`, if any, has only
    /// the fields of `/api/me`'s identity, each the server's value, except initials and
    /// colour the server left to the client (a short string).
    pub fn allows_awareness(&self, state: &JsonMap<String, Value>) -> bool {
        let Some(user) = state.get("user") else {
            return true;
        };
        let Value::Object(user) = user else {
            return false;
        };
        user.iter().all(|(key, value)| {
            let given = |expected: &str| value.as_str() == Some(expected);
            let free = |mine: &Option<String>| match mine {
                Some(expected) => given(expected),
                None => {
                    value.is_null()
                        || value
                            .as_str()
                            .is_some_and(|s| s.len() <= 64 && !s.chars().any(char::is_control))
                }
            };
            match key.as_str() {
                "username" => given(&self.username),
                "name" => given(&self.name),
                "display_name" => given(&self.display_name),
                "initials" => free(&self.initials),
                "color" => free(&self.color),
                "avatar_url" => match &self.avatar_url {
                    Some(url) => given(url),
                    None => value.is_null(),
                },
                _ => false,
            }
        })
    }
}

/// What a participant may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Change the document and save it (write on its path).
    Edit,
    /// See it live only (read on its path): its changes and save requests are dropped.
    View,
}

/// Websocket close codes the server sends.
pub mod close_codes {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Reason in JSON that JupyterLab's provider shows in a dialog (session expired,
    /// access revoked, file deleted); the document is then closed on the client.
    pub const SESSION: u16 = 1003;
    /// A malformed message.
    pub const INVALID: u16 = 1007;
    /// A message or document past its size limit.
    pub const TOO_LARGE: u16 = 1009;
    /// The participant did not read its messages fast enough.
    pub const TRY_AGAIN: u16 = 1013;
    /// jupyter-server-ydoc's "file not found" on opening (JupyterLab closes the document).
    pub const NOT_FOUND: u16 = 4404;
    /// jupyter-server-ydoc's "internal error" on opening.
    pub const INTERNAL: u16 = 4500;
}

/// Why a participant's websocket is closed: a code and a reason (at most 123 bytes, what
/// a close frame carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// The websocket close code (see [`close_codes`]).
    pub code: u16,
    /// The reason.
    pub reason: String,
}

fn truncated(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl CloseReason {
    /// Close with a code and a reason.
    pub fn new(code: u16, reason: &str) -> Self {
        CloseReason {
            code,
            reason: truncated(reason),
        }
    }

    fn session(reason: &str, reloadable: bool, message: &str) -> Self {
        let json = serde_json::json!({
            "reason": reason, "reloadable": reloadable, "errorReason": message,
        });
        CloseReason::new(close_codes::SESSION, &json.to_string())
    }

    /// A malformed message.
    pub fn malformed(message: &str) -> Self {
        CloseReason::new(close_codes::INVALID, message)
    }

    /// A message or document too large.
    pub fn too_large(message: &str) -> Self {
        CloseReason::new(close_codes::TOO_LARGE, message)
    }

    /// A participant that does not read.
    pub fn too_slow() -> Self {
        CloseReason::new(
            close_codes::TRY_AGAIN,
            "too many messages waiting to be sent",
        )
    }

    /// A client whose document comes from a room that no longer exists: JupyterLab asks
    /// its user to reload.
    pub fn stale() -> Self {
        CloseReason::session("unknown_session", true, "The document changed: reload")
    }

    /// Read access taken away (policy reload, rename): JupyterLab shows the message and
    /// closes the document.
    pub fn revoked() -> Self {
        CloseReason::session(
            "access_revoked",
            false,
            "Your access to this document was removed",
        )
    }

    /// The file was deleted.
    pub fn deleted() -> Self {
        CloseReason::session("file_deleted", false, "This file was deleted")
    }

    /// The server stops.
    pub fn shutdown() -> Self {
        CloseReason::new(close_codes::GOING_AWAY, "the server is stopping")
    }
}

/// A participant's refused changes or awareness, reported once per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedChanges {
    /// Who.
    pub username: String,
    /// The document's path.
    pub path: String,
    /// The room id.
    pub room: String,
    /// What was refused.
    pub what: &'static str,
}

/// One user's changes in one save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditorChanges {
    /// Who.
    pub username: String,
    /// How many of their updates changed the document.
    pub updates: u64,
    /// Their size.
    pub bytes: u64,
    /// The notebook cells they touched (ids).
    pub cells: Vec<String>,
}

/// Who changed a document, batched per save (for the audit log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveRecord {
    /// The path saved.
    pub path: String,
    /// Its file id.
    pub file_id: String,
    /// When (RFC 3339).
    pub saved_at: String,
    /// Who changed it since the previous save.
    pub editors: Vec<EditorChanges>,
}

/// What the server hears from the service (audit log, metrics). Every method has a
/// default that does nothing.
pub trait CollabObserver: Send + Sync + 'static {
    /// A read-only participant tried to change or save the document (once per connection
    /// and permission).
    fn changes_refused(&self, _event: &RefusedChanges) {}
    /// A participant sent awareness claiming another identity or another's client id
    /// (once per connection).
    fn awareness_refused(&self, _event: &RefusedChanges) {}
    /// A document was saved, with who changed it.
    fn document_saved(&self, _record: &SaveRecord) {}
    /// Saving failed (it is retried after the next change or when the room empties).
    fn save_failed(&self, _path: &str, _error: &CollabError) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl CollabObserver for NoObserver {}

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) updates: AtomicU64,
    pub(crate) refused_updates: AtomicU64,
    pub(crate) refused_saves: AtomicU64,
    pub(crate) refused_awareness: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) saves: AtomicU64,
    pub(crate) failed_saves: AtomicU64,
    pub(crate) disk_merges: AtomicU64,
}

/// Counters and gauges for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Rooms in memory.
    pub rooms: usize,
    /// Connected participants.
    pub participants: usize,
    /// Bytes queued for participants.
    pub queued_bytes: usize,
    /// Updates applied.
    pub updates: u64,
    /// Updates from read-only participants dropped.
    pub refused_updates: u64,
    /// Save requests from read-only participants refused.
    pub refused_saves: u64,
    /// Awareness messages refused (forged identity or client id).
    pub refused_awareness: u64,
    /// Malformed or oversized messages.
    pub malformed: u64,
    /// Saves done.
    pub saves: u64,
    /// Saves failed.
    pub failed_saves: u64,
    /// Changes on disk merged into a room.
    pub disk_merges: u64,
}

/// A document session (`PUT /api/collaboration/session/{path}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionModel {
    /// The format asked for.
    pub format: String,
    /// The type asked for.
    pub content_type: String,
    /// The file's id.
    pub file_id: String,
    /// This server's session id.
    pub session_id: String,
    /// Whether the file id was made now (201) or existed (200).
    pub created: bool,
}

impl SessionModel {
    /// The JSON body jupyter-server-ydoc answers.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "format": self.format,
            "type": self.content_type,
            "fileId": self.file_id,
            "sessionId": self.session_id,
        })
    }
}

/// A room id resolved to its file (the server authorizes `path` before joining).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomTarget {
    /// The room id (`format:type:file_id`).
    pub room_id: String,
    /// Its document kind.
    pub kind: DocKind,
    /// The file id.
    pub file_id: String,
    /// The file's current path.
    pub path: String,
}

/// A connected participant, as listed for re-authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Its id (for [`Collaboration::set_permission`] and [`Collaboration::close`]).
    pub id: u64,
    /// Who.
    pub username: String,
    /// The document's path.
    pub path: String,
    /// What they may do now.
    pub permission: Permission,
}

pub(crate) struct Inner {
    pub(crate) config: CollabConfig,
    pub(crate) store: Arc<dyn DocumentStore>,
    pub(crate) state: StateStore,
    pub(crate) observer: Arc<dyn CollabObserver>,
    pub(crate) metrics: Metrics,
    session_id: String,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Which room each participant is in.
    members: Mutex<HashMap<u64, Arc<Room>>>,
    next_participant: AtomicU64,
}

/// The collaboration service (cheap to clone).
#[derive(Clone)]
pub struct Collaboration {
    inner: Arc<Inner>,
}

impl Collaboration {
    /// A service over a file store, with its own state store and an observer.
    pub fn new(
        config: CollabConfig,
        store: Arc<dyn DocumentStore>,
        state: StateStore,
        observer: Arc<dyn CollabObserver>,
    ) -> Self {
        Collaboration {
            inner: Arc::new(Inner {
                config,
                store,
                state,
                observer,
                metrics: Metrics::default(),
                session_id: uuid::Uuid::new_v4().to_string(),
                rooms: Mutex::new(HashMap::new()),
                members: Mutex::new(HashMap::new()),
                next_participant: AtomicU64::new(1),
            }),
        }
    }

    /// This server's session id (what the front end sends back as `?sessionId=`).
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// Open a document session: the file's id (made if it has none). The file must exist.
    pub async fn session(
        &self,
        path: &str,
        format: &str,
        content_type: &str,
    ) -> Result<SessionModel, CollabError> {
        if DocKind::from_format_and_type(format, content_type).is_none() {
            return Err(CollabError::invalid(format!(
                "collaboration on {format:?}:{content_type:?} documents is not supported"
            )));
        }
        let path = normalize_path(path);
        self.inner.store.last_modified(path.clone()).await?;
        let (file_id, created) = self.inner.state.index(&path)?;
        Ok(SessionModel {
            format: format.to_string(),
            content_type: content_type.to_string(),
            file_id,
            session_id: self.inner.session_id.clone(),
            created,
        })
    }

    /// Resolve a room id (`format:type:file_id`, as in `/api/collaboration/room/{id}`).
    pub fn resolve_room(&self, room_id: &str) -> Result<RoomTarget, CollabError> {
        let mut parts = room_id.splitn(3, ':');
        let (Some(format), Some(content_type), Some(file_id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CollabError::not_found(format!(
                "no document room {room_id:?}"
            )));
        };
        let kind = DocKind::from_format_and_type(format, content_type)
            .ok_or_else(|| CollabError::not_found(format!("no document room {room_id:?}")))?;
        let path = self
            .inner
            .state
            .path_of(file_id)?
            .ok_or_else(|| CollabError::not_found(format!("no file with id {file_id:?}")))?;
        Ok(RoomTarget {
            room_id: room_id.to_string(),
            kind,
            file_id: file_id.to_string(),
            path,
        })
    }

    /// Join a room (loading its document if it is not open). The server has authorized
    /// read (view) or write (edit) on the target's path.
    pub async fn join(
        &self,
        target: &RoomTarget,
        identity: Identity,
        permission: Permission,
    ) -> Result<Connection, CollabError> {
        self.join_limited(target, identity, permission, None).await
    }

    /// [`join`](Self::join), refused when the user already takes part in `rooms_limit.max`
    /// other rooms (the policy's per-user limit, on top of the configured one).
    pub async fn join_limited(
        &self,
        target: &RoomTarget,
        identity: Identity,
        permission: Permission,
        rooms_limit: Option<&concord_authz::Limit>,
    ) -> Result<Connection, CollabError> {
        let inner = &self.inner;
        let id = inner.next_participant.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(Notify::new());
        let (room, fresh) = {
            let mut rooms = lock(&inner.rooms);
            let user_rooms = rooms
                .values()
                .filter(|r| room::has_user(r, &identity.username))
                .count();
            let existing = rooms.get(&target.room_id).cloned();
            let already_in = existing
                .as_ref()
                .is_some_and(|r| room::has_user(r, &identity.username));
            if !already_in && user_rooms >= inner.config.max_rooms_per_user {
                return Err(CollabError::limit(format!(
                    "{} already has {user_rooms} documents open together (the limit)",
                    identity.username
                )));
            }
            if let Some(limit) = rooms_limit {
                if !already_in && user_rooms >= limit.max as usize {
                    return Err(CollabError::limit(limit.refusal(&identity.username)));
                }
            }
            match existing {
                Some(room) => {
                    let (participants, _) = room::usage(&room);
                    if participants >= inner.config.max_participants_per_room {
                        return Err(CollabError::limit(format!(
                            "{} has {participants} participants (the limit)",
                            target.path
                        )));
                    }
                    (room, false)
                }
                None => {
                    if rooms.len() >= inner.config.max_rooms {
                        return Err(CollabError::limit(format!(
                            "{} documents are open together (the limit)",
                            rooms.len()
                        )));
                    }
                    let room = Room::new(
                        target.room_id.clone(),
                        target.file_id.clone(),
                        target.kind,
                        target.path.clone(),
                    );
                    rooms.insert(target.room_id.clone(), Arc::clone(&room));
                    (room, true)
                }
            }
        };
        // Count the participant in the room now (limits), even while it loads.
        room.add_participant(id, identity, permission, Arc::clone(&waker));
        lock(&inner.members).insert(id, Arc::clone(&room));
        let connection = Connection {
            service: self.clone(),
            room: Arc::clone(&room),
            id,
            waker,
        };
        if fresh {
            let result = room.load(inner).await;
            match result {
                Ok(()) => {
                    room.ready.send_replace(Readiness::Ready);
                    tokio::spawn(run_room(Arc::clone(&self.inner), Arc::clone(&room)));
                }
                Err(e) => {
                    room.ready.send_replace(Readiness::Failed(e.clone()));
                    lock(&inner.rooms).remove(&target.room_id);
                    return Err(e);
                }
            }
        } else {
            let mut ready = room.ready.subscribe();
            let outcome = ready
                .wait_for(|r| !matches!(r, Readiness::Loading))
                .await
                .map(|r| r.clone());
            match outcome {
                Ok(Readiness::Failed(e)) => return Err(e),
                Ok(_) => {}
                Err(_) => return Err(CollabError::io("the room closed while loading")),
            }
        }
        Ok(connection)
    }

    /// Every connected participant (to re-check rights after a policy reload).
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        rooms
            .iter()
            .flat_map(|room| room::participant_list(room))
            .map(|(id, username, permission, path)| ParticipantInfo {
                id,
                username,
                path,
                permission,
            })
            .collect()
    }

    /// Change a live participant's permission (a viewer's next update is dropped).
    pub fn set_permission(&self, participant: u64, permission: Permission) -> bool {
        let room = lock(&self.inner.members).get(&participant).cloned();
        room.is_some_and(|room| room.set_permission(participant, permission))
    }

    /// Close a live participant's websocket with a reason.
    pub fn close(&self, participant: u64, reason: CloseReason) -> bool {
        let room = lock(&self.inner.members).get(&participant).cloned();
        match room {
            Some(room) => {
                let mut state = lock(&room.state);
                room::close_participant(&mut state, participant, reason);
                true
            }
            None => false,
        }
    }

    /// A file or folder was renamed or moved: ids follow, open rooms learn their new path.
    /// Returns the participants of the moved rooms (whose rights the server re-checks at
    /// the new path).
    pub fn file_moved(&self, old: &str, new: &str) -> Result<Vec<ParticipantInfo>, CollabError> {
        let moved = self.inner.state.moved(old, new)?;
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        let mut affected = Vec::new();
        for (file_id, path) in moved {
            for room in rooms.iter().filter(|r| r.file_id == file_id) {
                room.set_path(&self.inner, &path);
                affected.extend(room::participant_list(room).into_iter().map(
                    |(id, username, permission, path)| ParticipantInfo {
                        id,
                        username,
                        path,
                        permission,
                    },
                ));
            }
        }
        Ok(affected)
    }

    /// A file or folder was deleted: ids go, and its open rooms are closed.
    pub fn file_deleted(&self, path: &str) -> Result<(), CollabError> {
        let path = normalize_path(path);
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        for room in rooms {
            let mut state = lock(&room.state);
            let under = state.path == path || state.path.starts_with(&format!("{path}/"));
            if under {
                // Nothing is left to save to: the room's changes go with the file.
                state.dirty = false;
                let ids: Vec<u64> = state.participants.keys().copied().collect();
                for id in ids {
                    room::close_participant(&mut state, id, CloseReason::deleted());
                }
            }
        }
        self.inner.state.deleted(&path)
    }

    /// Who edited which cell of a notebook (the service's own store: jupyter-collaboration
    /// has no convention for authorship in the notebook).
    pub fn cell_authors(&self, path: &str) -> Result<Vec<CellAuthor>, CollabError> {
        match self.inner.state.id_of(path)? {
            Some(id) => self.inner.state.cell_authors(&id),
            None => Ok(Vec::new()),
        }
    }

    /// The current figures.
    pub fn metrics(&self) -> MetricsSnapshot {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        let (participants, queued_bytes) = rooms
            .iter()
            .map(|r| room::usage(r))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        let m = &self.inner.metrics;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            rooms: rooms.len(),
            participants,
            queued_bytes,
            updates: get(&m.updates),
            refused_updates: get(&m.refused_updates),
            refused_saves: get(&m.refused_saves),
            refused_awareness: get(&m.refused_awareness),
            malformed: get(&m.malformed),
            saves: get(&m.saves),
            failed_saves: get(&m.failed_saves),
            disk_merges: get(&m.disk_merges),
        }
    }

    /// Save every room and close every participant (server shutdown).
    pub async fn shutdown(&self) {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).drain().map(|(_, r)| r).collect();
        for room in rooms {
            let _ = room.save(&self.inner, false).await;
            let mut state = lock(&room.state);
            state.closed = true;
            let ids: Vec<u64> = state.participants.keys().copied().collect();
            for id in ids {
                room::close_participant(&mut state, id, CloseReason::shutdown());
            }
            drop(state);
            room.wake.notify_one();
        }
    }
}

/// One participant's connection to a room. Feed it the client's binary frames with
/// [`Connection::handle`]; send what [`Connection::next`] yields. Dropping it leaves the
/// room.
pub struct Connection {
    service: Collaboration,
    room: Arc<Room>,
    id: u64,
    waker: Arc<Notify>,
}

/// What to send to the client next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A binary frame.
    Message(Bytes),
    /// Close the websocket with this reason; nothing follows.
    Close(CloseReason),
}

impl Connection {
    /// This participant's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Act on one binary frame from the client. An error is the reason to close the
    /// websocket with (also given by [`Connection::next`]).
    pub async fn handle(&self, frame: &[u8]) -> Result<(), CloseReason> {
        self.room.handle(&self.service.inner, self.id, frame).await
    }

    /// The next frame to send, or the close; `None` once the close was given.
    pub async fn next(&self) -> Option<Outbound> {
        loop {
            match self.room.next_outbound(self.id) {
                Some(Ok(message)) => return Some(Outbound::Message(message)),
                Some(Err(reason)) => return Some(Outbound::Close(reason)),
                None if !self.room.is_present(self.id) => return None,
                None => self.waker.notified().await,
            }
        }
    }

    /// Like [`Connection::next`] without waiting: `None` when nothing is queued.
    pub fn try_next(&self) -> Option<Outbound> {
        match self.room.next_outbound(self.id)? {
            Ok(message) => Some(Outbound::Message(message)),
            Err(reason) => Some(Outbound::Close(reason)),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.room.remove_participant(self.id, &self.service.inner);
        lock(&self.service.inner.members).remove(&self.id);
    }
}

/// A room's task: save after the quiet period, watch the disk, save when the last
/// participant leaves, release the room after the cleanup delay.
async fn run_room(inner: Arc<Inner>, room: Arc<Room>) {
    let config = inner.config.clone();
    let mut next_poll = Instant::now() + config.poll_interval;
    // After a failed save, the next attempt waits (the file may be read-only for a while).
    let mut retry_at: Option<Instant> = None;
    loop {
        let (closed, dirty, last_change, emptied_at) = {
            let state = lock(&room.state);
            (
                state.closed,
                state.dirty,
                state.last_change,
                state.emptied_at,
            )
        };
        if closed {
            return;
        }
        let now = Instant::now();
        let may_save = retry_at.is_none_or(|at| now >= at);
        if let Some(emptied) = emptied_at {
            if dirty && may_save {
                retry_at = save_or_retry(&inner, &room, &config).await;
                continue;
            }
            if now >= emptied + config.cleanup_delay {
                let mut rooms = lock(&inner.rooms);
                let mut state = lock(&room.state);
                if state.participants.is_empty() && (!state.dirty || retry_at.is_some()) {
                    if state.dirty {
                        tracing::error!(room = %room.id, "releasing a room whose last changes could not be saved");
                    }
                    state.closed = true;
                    if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, &room)) {
                        rooms.remove(&room.id);
                    }
                    tracing::debug!(room = %room.id, "empty room released");
                    return;
                }
                continue;
            }
        }
        if dirty && may_save {
            if let Some(at) = last_change {
                if now >= at + config.save_delay {
                    retry_at = save_or_retry(&inner, &room, &config).await;
                    continue;
                }
            }
        }
        if now >= next_poll {
            room.poll_disk(&inner).await;
            next_poll = Instant::now() + config.poll_interval;
            continue;
        }
        let mut deadline = next_poll;
        if let (true, Some(at)) = (dirty, last_change) {
            deadline = deadline.min(at + config.save_delay);
        }
        if let Some(emptied) = emptied_at {
            deadline = deadline.min(emptied + config.cleanup_delay);
        }
        if let (true, Some(at)) = (dirty, retry_at) {
            deadline = deadline.min(at);
        }
        tokio::select! {
            _ = room.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

async fn save_or_retry(inner: &Inner, room: &Room, config: &CollabConfig) -> Option<Instant> {
    match room.save(inner, false).await {
        Ok(()) => None,
        Err(_) => Some(Instant::now() + config.save_delay.max(Duration::from_secs(1))),
    }
}
