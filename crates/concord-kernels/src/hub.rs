//! Fan-out between one kernel and its websocket clients.
//!
//! Every client is keyed by `(session_id, username)`: the same user reconnecting with the
//! same session id gets the messages buffered while it was away; another user's session id
//! never matches. Each attached client has a bounded queue; the iopub drain task never waits
//! on it: a client whose queue is full is told and detached (its messages are buffered for a
//! reconnect), and nobody else is affected.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::wire::{parent_msg_id, Message};
use crate::ws::{encode, Channel, WsFrame, WsProtocol};

/// Something the server should write to a client's websocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsOut {
    /// A data frame.
    Frame(WsFrame),
    /// Close the websocket with this code and reason; nothing follows.
    Close {
        /// Websocket close code.
        code: u16,
        /// Human-readable reason (at most 123 bytes, as the protocol requires).
        reason: String,
    },
}

/// Close code for a client that fell too far behind (1008: policy violation).
pub const CLOSE_TOO_SLOW: u16 = 1008;
/// Close code when the same session reconnected elsewhere, or the kernel went away (1000).
pub const CLOSE_NORMAL: u16 = 1000;

/// Identifies one client session of one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientKey {
    pub session_id: String,
    pub username: String,
}

/// Where a kernel's reply goes.
pub(crate) enum Route {
    Client(ClientKey),
    Internal(mpsc::UnboundedSender<Message>),
}

/// A close request for one attached connection.
#[derive(Default)]
pub(crate) struct CloseSignal {
    reason: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl CloseSignal {
    pub fn close(&self, code: u16, reason: &str) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            let mut reason = reason.to_string();
            while reason.len() > 123 {
                reason.pop();
            }
            *r = Some((code, reason));
        }
        drop(r);
        self.notify.notify_one();
    }

    fn take(&self) -> Option<(u16, String)> {
        lock(&self.reason).take()
    }
}

/// Lock a std mutex, recovering from poisoning (a panicked holder must not wedge a kernel).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One queued message, with its frame already encoded for the client's protocol. Queues
/// carry it boxed: a tokio channel allocates its slots 32 at a time, and 32 inline messages
/// are 9 KiB per idle websocket.
pub(crate) struct Queued {
    channel: Channel,
    msg: Message,
    frame: WsFrame,
}

struct Attached {
    conn_id: u64,
    tx: mpsc::Sender<Box<Queued>>,
    protocol: WsProtocol,
    close: Arc<CloseSignal>,
}

#[derive(Default)]
struct Slot {
    attached: Option<Attached>,
    backlog: VecDeque<(Channel, Message)>,
    dropped: u64,
    detached_at: Option<Instant>,
}

/// Limits of the hub.
#[derive(Clone, Debug)]
pub(crate) struct HubLimits {
    pub client_queue: usize,
    pub replay_messages: usize,
    pub replay_window: Duration,
    pub max_detached: usize,
}

/// Counters the hub maintains (shared with the manager's metrics).
#[derive(Default, Debug)]
pub(crate) struct HubCounters {
    pub lagged: AtomicU64,
    pub replayed: AtomicU64,
}

#[derive(Default)]
struct HubState {
    slots: HashMap<ClientKey, Slot>,
    pending: HashMap<String, Route>,
    next_conn: u64,
}

pub(crate) struct Hub {
    state: Mutex<HubState>,
    limits: HubLimits,
    counters: Arc<HubCounters>,
}

/// What [`Hub::attach`] hands back.
pub(crate) struct Attachment {
    pub conn_id: u64,
    pub rx: mpsc::Receiver<Box<Queued>>,
    pub backlog: VecDeque<WsOut>,
    pub close: Arc<CloseSignal>,
}

const MAX_PENDING: usize = 65_536;

impl Hub {
    pub fn new(limits: HubLimits, counters: Arc<HubCounters>) -> Self {
        Hub {
            state: Mutex::new(HubState::default()),
            limits,
            counters,
        }
    }

    /// Attach a websocket for `key`, replacing a previous connection of the same key and
    /// replaying what was buffered for it.
    pub fn attach(&self, key: ClientKey, protocol: WsProtocol) -> Attachment {
        let mut st = lock(&self.state);
        self.expire(&mut st);
        st.next_conn += 1;
        let conn_id = st.next_conn;
        let (tx, rx) = mpsc::channel(self.limits.client_queue.max(1));
        let close = Arc::new(CloseSignal::default());
        let slot = st.slots.entry(key).or_default();
        if let Some(old) = slot.attached.take() {
            old.close.close(
                CLOSE_NORMAL,
                "replaced by a new connection of the same session",
            );
        }
        let mut backlog: VecDeque<WsOut> = VecDeque::new();
        if slot.dropped > 0 {
            tracing::warn!(
                dropped = slot.dropped,
                "replay buffer overflowed; the oldest messages were dropped"
            );
        }
        let replayed = slot.backlog.len() as u64;
        for (channel, msg) in slot.backlog.drain(..) {
            backlog.push_back(WsOut::Frame(encode(channel, &msg, protocol)));
        }
        self.counters
            .replayed
            .fetch_add(replayed, Ordering::Relaxed);
        slot.dropped = 0;
        slot.detached_at = None;
        slot.attached = Some(Attached {
            conn_id,
            tx,
            protocol,
            close: close.clone(),
        });
        Attachment {
            conn_id,
            rx,
            backlog,
            close,
        }
    }

    /// Detach connection `conn_id` of `key` (if it is still the attached one); its slot
    /// starts buffering.
    pub fn detach(&self, key: &ClientKey, conn_id: u64) {
        let mut st = lock(&self.state);
        if let Some(slot) = st.slots.get_mut(key) {
            if slot.attached.as_ref().is_some_and(|a| a.conn_id == conn_id) {
                slot.attached = None;
                slot.detached_at = Some(Instant::now());
            }
        }
    }

    /// Number of attached websockets.
    pub fn connections(&self) -> usize {
        lock(&self.state)
            .slots
            .values()
            .filter(|s| s.attached.is_some())
            .count()
    }

    /// Close every client and forget every slot (kernel gone).
    pub fn close_all(&self, reason: &str) {
        let mut st = lock(&self.state);
        for (_, slot) in st.slots.drain() {
            if let Some(a) = slot.attached {
                a.close.close(CLOSE_NORMAL, reason);
            }
        }
        st.pending.clear();
    }

    /// Remember who sent request `msg_id`. Refuses (returns false) when another client has
    /// a pending request with that id, so nobody can capture someone else's replies.
    pub fn register(&self, msg_id: &str, route: Route) -> bool {
        let mut st = lock(&self.state);
        if let (Some(Route::Client(existing)), Route::Client(new)) =
            (st.pending.get(msg_id), &route)
        {
            if existing != new {
                return false;
            }
        }
        if st.pending.len() >= MAX_PENDING {
            // Requests whose replies never came (dead kernels, odd clients): start afresh
            // rather than grow without bound.
            tracing::warn!("pending request table full; clearing it");
            st.pending.clear();
        }
        st.pending.insert(msg_id.to_string(), route);
        true
    }

    /// Route a shell/control/stdin message from the kernel to whoever sent its parent.
    pub fn route(&self, channel: Channel, msg: Message) {
        let Some(parent) = parent_msg_id(&msg.parent_header) else {
            tracing::debug!(msg_type = %msg.info.msg_type, "kernel message without parent; dropped");
            return;
        };
        let mut st = lock(&self.state);
        // A reply completes a request; stdin messages (input_request) belong to a request
        // still running, so the entry stays.
        let finished = channel != Channel::Stdin && msg.info.msg_type.ends_with("_reply");
        let route = if finished {
            st.pending.remove(&parent)
        } else {
            None
        };
        match route.as_ref().or_else(|| st.pending.get(&parent)) {
            Some(Route::Client(key)) => {
                let key = key.clone();
                self.deliver_locked(&mut st, &key, channel, msg);
            }
            Some(Route::Internal(tx)) => {
                let _ = tx.send(msg);
            }
            None => {
                tracing::debug!(msg_type = %msg.info.msg_type, "reply to an unknown request; dropped")
            }
        }
    }

    /// Send a message to every client (iopub, status pushes).
    pub fn broadcast(&self, channel: Channel, msg: &Message) {
        let mut st = lock(&self.state);
        let mut cache: [Option<WsFrame>; 2] = [None, None];
        let mut lagged: Vec<ClientKey> = Vec::new();
        for (key, slot) in st.slots.iter_mut() {
            match &slot.attached {
                Some(a) => {
                    let idx = usize::from(a.protocol == WsProtocol::V1);
                    let frame = cache[idx]
                        .get_or_insert_with(|| encode(channel, msg, a.protocol))
                        .clone();
                    let q = Box::new(Queued {
                        channel,
                        msg: msg.clone(),
                        frame,
                    });
                    if a.tx.try_send(q).is_err() {
                        lagged.push(key.clone());
                    }
                }
                None => push_backlog(slot, channel, msg.clone(), self.limits.replay_messages),
            }
        }
        for key in lagged {
            if let Some(slot) = st.slots.get_mut(&key) {
                self.lag(slot, channel, msg.clone());
            }
        }
    }

    /// Send a message to one client (a reply, or a refusal).
    pub fn deliver(&self, key: &ClientKey, channel: Channel, msg: Message) {
        let mut st = lock(&self.state);
        self.deliver_locked(&mut st, key, channel, msg);
    }

    fn deliver_locked(&self, st: &mut HubState, key: &ClientKey, channel: Channel, msg: Message) {
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        match &slot.attached {
            Some(a) => {
                let frame = encode(channel, &msg, a.protocol);
                let q = Box::new(Queued {
                    channel,
                    msg,
                    frame,
                });
                if let Err(e) = a.tx.try_send(q) {
                    let q = match e {
                        mpsc::error::TrySendError::Full(q)
                        | mpsc::error::TrySendError::Closed(q) => q,
                    };
                    self.lag(slot, q.channel, q.msg);
                }
            }
            None => push_backlog(slot, channel, msg, self.limits.replay_messages),
        }
    }

    fn lag(&self, slot: &mut Slot, channel: Channel, msg: Message) {
        if let Some(a) = slot.attached.take() {
            if !a.tx.is_closed() {
                self.counters.lagged.fetch_add(1, Ordering::Relaxed);
                a.close.close(
                    CLOSE_TOO_SLOW,
                    "client fell too far behind the kernel's output; reconnect with the same session_id to resume",
                );
            }
            slot.detached_at = Some(Instant::now());
        }
        push_backlog(slot, channel, msg, self.limits.replay_messages);
    }

    /// Put messages a too-slow client never got back in front of its replay buffer, unless
    /// the session has already reconnected.
    pub fn requeue(&self, key: &ClientKey, items: Vec<(Channel, Message)>) {
        let mut st = lock(&self.state);
        if let Some(slot) = st.slots.get_mut(key) {
            if slot.attached.is_none() {
                for item in items.into_iter().rev() {
                    slot.backlog.push_front(item);
                }
                while slot.backlog.len() > self.limits.replay_messages {
                    slot.backlog.pop_front();
                    slot.dropped += 1;
                }
            }
        }
    }

    fn expire(&self, st: &mut HubState) {
        let window = self.limits.replay_window;
        st.slots.retain(|_, s| {
            s.attached.is_some() || s.detached_at.is_some_and(|t| t.elapsed() < window)
        });
        let mut detached: Vec<(Instant, ClientKey)> = st
            .slots
            .iter()
            .filter_map(|(k, s)| s.detached_at.map(|t| (t, k.clone())))
            .collect();
        if detached.len() > self.limits.max_detached {
            detached.sort();
            let excess = detached.len() - self.limits.max_detached;
            for (_, k) in detached.into_iter().take(excess) {
                st.slots.remove(&k);
            }
        }
    }
}

fn push_backlog(slot: &mut Slot, channel: Channel, msg: Message, limit: usize) {
    if slot.backlog.len() >= limit {
        slot.backlog.pop_front();
        slot.dropped += 1;
    }
    slot.backlog.push_back((channel, msg));
}

/// The outbound half of a client connection: frames for the server to write.
pub struct ClientOutbound {
    pub(crate) backlog: VecDeque<WsOut>,
    pub(crate) rx: mpsc::Receiver<Box<Queued>>,
    pub(crate) close: Arc<CloseSignal>,
    pub(crate) finished: bool,
    pub(crate) _guard: DetachGuard,
}

pub(crate) struct DetachGuard {
    pub hub: Arc<Hub>,
    pub key: ClientKey,
    pub conn_id: u64,
}

impl Drop for DetachGuard {
    fn drop(&mut self) {
        self.hub.detach(&self.key, self.conn_id);
    }
}

impl ClientOutbound {
    /// The next thing to write to the websocket; `None` once the connection is over (after
    /// a [`WsOut::Close`] has been returned, or when the kernel is gone).
    pub async fn next(&mut self) -> Option<WsOut> {
        if self.finished {
            return None;
        }
        if let Some((code, reason)) = self.close.take() {
            return Some(self.finish(code, reason));
        }
        if let Some(f) = self.backlog.pop_front() {
            return Some(f);
        }
        tokio::select! {
            biased;
            _ = self.close.notify.notified() => {
                let (code, reason) = self
                    .close
                    .take()
                    .unwrap_or((CLOSE_NORMAL, "connection closed".to_string()));
                Some(self.finish(code, reason))
            }
            m = self.rx.recv() => match m {
                Some(q) => Some(WsOut::Frame(q.frame)),
                None => {
                    self.finished = true;
                    None
                }
            }
        }
    }

    fn finish(&mut self, code: u16, reason: String) -> WsOut {
        self.finished = true;
        if code == CLOSE_TOO_SLOW {
            // What was queued but never written goes back to the replay buffer, so a
            // reconnect with the same session id loses nothing.
            let mut items = Vec::new();
            while let Ok(q) = self.rx.try_recv() {
                items.push((q.channel, q.msg));
            }
            self._guard.hub.requeue(&self._guard.key, items);
        }
        WsOut::Close { code, reason }
    }
}
