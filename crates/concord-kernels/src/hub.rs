//! Fan-out between one kernel and its websocket clients.
//!
//! Every client is keyed by `(session_id, username)`: the same user reconnecting with the
//! same session id gets the messages buffered while it was away; another user's session id
//! never matches. The iopub drain task never waits on a client.
//!
//! Everything held for clients is counted in **bytes** (a message's parts plus a fixed
//! overhead), and each message is held once, shared by every client it goes to (frames are
//! encoded when written, not when queued):
//!
//! - an attached client's queue holds at most `client_queue_bytes`: a client past it is told
//!   (close 1008) and detached, and what it had not received goes to its replay buffer;
//! - the replay buffers of a kernel's detached sessions hold `replay_bytes` together (the
//!   oldest messages go first), and expire `replay_window` after their session left, by a
//!   timer of the hub's own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::wire::{str_member, Message};
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

/// What holding one message costs besides the bytes of its parts: the message's own
/// structure, its queue entry and the allocator's rounding. Counting it makes a byte budget
/// bound the number of tiny messages too.
pub(crate) const MESSAGE_OVERHEAD: usize = 512;

/// The bytes a message is counted for in the budgets.
pub(crate) fn footprint(msg: &Message) -> usize {
    let parts = [&msg.header, &msg.parent_header, &msg.metadata, &msg.content];
    MESSAGE_OVERHEAD
        + parts.iter().map(|p| p.len()).sum::<usize>()
        + msg.buffers.iter().map(Bytes::len).sum::<usize>()
        + msg.identities.iter().map(Bytes::len).sum::<usize>()
}

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

/// A request waiting for the kernel's reply: who gets it, and what is needed to answer it
/// with an error should the kernel never do so.
pub(crate) struct Pending {
    pub route: Route,
    /// The channel the request came in on (its reply goes back there).
    pub channel: Channel,
    /// The request's `msg_type`.
    pub msg_type: String,
    /// The request's header (a copy of its own, or of its routing fields when it is large),
    /// the parent header of an error reply.
    pub parent: Bytes,
}

/// A close request for one attached connection. Whoever closes also drops the hub's
/// sender to the connection's queue (the `Attached` entry goes), so a connection waiting on
/// an empty queue wakes with `None` and finds the reason here: no separate wake-up is
/// needed. A *preempting* close (the client is too slow, or replaced) is seen before the
/// next queued frame; any other (the kernel went away) after the queued frames, so that
/// the last answers reach the client.
#[derive(Default)]
pub(crate) struct CloseSignal {
    /// Set once a preempting reason is stored: checked per frame without taking the lock.
    preempt: AtomicBool,
    reason: Mutex<Option<(u16, String)>>,
}

impl CloseSignal {
    pub fn close(&self, code: u16, reason: &str, preempt: bool) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            let mut reason = reason.to_string();
            while reason.len() > 123 {
                reason.pop();
            }
            *r = Some((code, reason));
        }
        if preempt {
            self.preempt.store(true, Ordering::Release);
        }
    }

    fn take_preempting(&self) -> Option<(u16, String)> {
        if !self.preempt.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.reason).take()
    }

    fn take(&self) -> Option<(u16, String)> {
        lock(&self.reason).take()
    }
}

/// Lock a std mutex, recovering from poisoning (a panicked holder must not wedge a kernel).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One message held for one client (queued, or kept for its replay), counted in the
/// kernels' buffered bytes for as long as it is held. The message itself is shared.
pub(crate) struct Held {
    channel: Channel,
    msg: Arc<Message>,
    bytes: usize,
    counters: Arc<HubCounters>,
}

impl Held {
    fn new(
        channel: Channel,
        msg: &Arc<Message>,
        bytes: usize,
        counters: &Arc<HubCounters>,
    ) -> Self {
        counters.buffered.fetch_add(bytes as u64, Ordering::Relaxed);
        Held {
            channel,
            msg: Arc::clone(msg),
            bytes,
            counters: Arc::clone(counters),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counters
            .buffered
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
    }
}

struct Attached {
    conn_id: u64,
    tx: mpsc::UnboundedSender<Held>,
    /// Bytes queued for this connection and not yet taken by it (its replay included).
    queued: Arc<AtomicUsize>,
    close: Arc<CloseSignal>,
}

#[derive(Default)]
struct Slot {
    attached: Option<Attached>,
    /// The connection attached last (what it leaves behind may be replayed).
    last_conn: u64,
    replay: VecDeque<Held>,
    replay_bytes: usize,
    dropped: u64,
    detached_at: Option<Instant>,
}

/// Limits of the hub.
#[derive(Clone, Debug)]
pub(crate) struct HubLimits {
    /// Bytes queued for one attached client before it is closed as too slow.
    pub client_queue_bytes: usize,
    /// Bytes kept for the kernel's detached sessions together.
    pub replay_bytes: usize,
    /// How long a detached session's replay is kept.
    pub replay_window: Duration,
    /// Detached sessions kept at most (the oldest go first).
    pub max_detached: usize,
}

/// Counters the hub maintains (shared with the manager's metrics).
#[derive(Default, Debug)]
pub(crate) struct HubCounters {
    pub lagged: AtomicU64,
    pub stalled: AtomicU64,
    pub replayed: AtomicU64,
    /// Bytes held for clients now: queues and replay buffers of every kernel.
    pub buffered: AtomicU64,
}

#[derive(Default)]
struct HubState {
    slots: HashMap<ClientKey, Slot>,
    pending: HashMap<String, Pending>,
    next_conn: u64,
    /// Bytes in every slot's replay.
    replay_total: usize,
    /// A task is waiting for the next replay to expire.
    expiry_armed: bool,
}

pub(crate) struct Hub {
    me: Weak<Hub>,
    state: Mutex<HubState>,
    limits: HubLimits,
    counters: Arc<HubCounters>,
}

/// What [`Hub::attach`] hands back.
pub(crate) struct Attachment {
    pub conn_id: u64,
    pub rx: mpsc::UnboundedReceiver<Held>,
    pub replay: VecDeque<Held>,
    pub queued: Arc<AtomicUsize>,
    pub close: Arc<CloseSignal>,
}

/// Requests remembered at most; a client that sends requests the kernel never answers
/// (ipykernel ignores unknown types) would otherwise grow the table for ever.
const MAX_PENDING: usize = 16_384;

/// A request header longer than this is remembered by its routing fields only.
const MAX_PARENT_COPY: usize = 2048;

impl Hub {
    pub fn new(limits: HubLimits, counters: Arc<HubCounters>) -> Arc<Self> {
        Arc::new_cyclic(|me| Hub {
            me: me.clone(),
            state: Mutex::new(HubState::default()),
            limits,
            counters,
        })
    }

    /// Attach a websocket for `key`, replacing a previous connection of the same key and
    /// handing it what was kept for replay.
    pub fn attach(&self, key: ClientKey) -> Attachment {
        let mut st = lock(&self.state);
        self.expire(&mut st);
        st.next_conn += 1;
        let conn_id = st.next_conn;
        let (tx, rx) = mpsc::unbounded_channel();
        let close = Arc::new(CloseSignal::default());
        let slot = st.slots.entry(key).or_default();
        if let Some(old) = slot.attached.take() {
            old.close.close(
                CLOSE_NORMAL,
                "replaced by a new connection of the same session",
                true,
            );
        }
        if slot.dropped > 0 {
            tracing::warn!(
                dropped = slot.dropped,
                "replay buffer overflowed; the oldest messages were dropped"
            );
        }
        let replay = std::mem::take(&mut slot.replay);
        let replay_bytes = std::mem::take(&mut slot.replay_bytes);
        self.counters
            .replayed
            .fetch_add(replay.len() as u64, Ordering::Relaxed);
        slot.dropped = 0;
        slot.detached_at = None;
        slot.last_conn = conn_id;
        let queued = Arc::new(AtomicUsize::new(replay_bytes));
        slot.attached = Some(Attached {
            conn_id,
            tx,
            queued: Arc::clone(&queued),
            close: close.clone(),
        });
        st.replay_total -= replay_bytes;
        Attachment {
            conn_id,
            rx,
            replay,
            queued,
            close,
        }
    }

    /// Connection `conn_id` of `key` ended, leaving `unsent` (oldest first). Its slot keeps
    /// what it did not receive for a reconnect, unless another connection took the slot.
    fn detach(&self, key: &ClientKey, conn_id: u64, unsent: Vec<Held>) {
        let mut st = lock(&self.state);
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        if slot.attached.as_ref().is_some_and(|a| a.conn_id == conn_id) {
            slot.attached = None;
            slot.detached_at = Some(Instant::now());
        }
        if slot.attached.is_some() || slot.last_conn != conn_id {
            return;
        }
        let mut added = 0;
        for held in unsent.into_iter().rev() {
            added += held.bytes;
            slot.replay.push_front(held);
        }
        slot.replay_bytes += added;
        st.replay_total += added;
        self.trim_replay(&mut st);
        self.arm_expiry(&mut st);
    }

    /// Number of attached websockets.
    pub fn connections(&self) -> usize {
        lock(&self.state)
            .slots
            .values()
            .filter(|s| s.attached.is_some())
            .count()
    }

    /// Close every client (after what is queued for it) and forget every slot (kernel
    /// gone).
    pub fn close_all(&self, reason: &str) {
        let mut st = lock(&self.state);
        for (_, slot) in st.slots.drain() {
            if let Some(a) = slot.attached {
                a.close.close(CLOSE_NORMAL, reason, false);
            }
        }
        st.replay_total = 0;
        st.pending.clear();
    }

    /// Remember who sent request `msg_id`. Refuses (returns false) when another client has
    /// a pending request with that id, so nobody can capture someone else's replies.
    pub fn register(&self, msg_id: &str, pending: Pending) -> bool {
        let mut st = lock(&self.state);
        if let (
            Some(Pending {
                route: Route::Client(existing),
                ..
            }),
            Route::Client(new),
        ) = (st.pending.get(msg_id), &pending.route)
        {
            if existing != new {
                return false;
            }
        }
        if st.pending.len() >= MAX_PENDING {
            // Requests whose replies never came (odd clients): start afresh rather than
            // grow without bound.
            tracing::warn!("pending request table full; clearing it");
            st.pending.clear();
        }
        st.pending.insert(msg_id.to_string(), pending);
        true
    }

    /// Forget request `msg_id` (it could not be sent after all).
    pub fn unregister(&self, msg_id: &str) {
        lock(&self.state).pending.remove(msg_id);
    }

    /// Every request still waiting for a reply from a client, forgotten: the kernel that
    /// had them is gone. (Requests of the server itself are dropped.)
    pub fn take_pending(&self) -> Vec<(ClientKey, Pending)> {
        let mut st = lock(&self.state);
        st.pending
            .drain()
            .filter_map(|(_, p)| match &p.route {
                Route::Client(key) => Some((key.clone(), p)),
                Route::Internal(_) => None,
            })
            .collect()
    }

    /// Route a shell/control/stdin message from the kernel to whoever sent its parent.
    pub fn route(&self, channel: Channel, msg: Message) {
        let Some(parent) = str_member(&msg.parent_header, "msg_id") else {
            tracing::debug!(msg_type = %msg.info.msg_type, "kernel message without parent; dropped");
            return;
        };
        let mut st = lock(&self.state);
        // A reply completes a request; stdin messages (input_request) belong to a request
        // still running, so the entry stays.
        let finished = channel != Channel::Stdin && msg.info.msg_type.ends_with("_reply");
        let route = if finished {
            st.pending.remove(parent.as_ref()).map(|p| p.route)
        } else {
            match st.pending.get(parent.as_ref()).map(|p| &p.route) {
                Some(Route::Client(key)) => Some(Route::Client(key.clone())),
                Some(Route::Internal(tx)) => Some(Route::Internal(tx.clone())),
                None => None,
            }
        };
        match route {
            Some(Route::Client(key)) => self.deliver_locked(&mut st, &key, channel, msg),
            Some(Route::Internal(tx)) => {
                let _ = tx.send(msg);
            }
            None => {
                tracing::debug!(msg_type = %msg.info.msg_type, "reply to an unknown request; dropped")
            }
        }
    }

    /// Send a message to every client (iopub, status pushes).
    pub fn broadcast(&self, channel: Channel, msg: Message) {
        let msg = Arc::new(msg);
        let bytes = footprint(&msg);
        let mut st = lock(&self.state);
        let mut lagged: Vec<ClientKey> = Vec::new();
        let mut kept = 0;
        for (key, slot) in st.slots.iter_mut() {
            match &slot.attached {
                Some(a) => {
                    if !self.enqueue(a, channel, &msg, bytes) {
                        lagged.push(key.clone());
                    }
                }
                None => {
                    slot.replay
                        .push_back(Held::new(channel, &msg, bytes, &self.counters));
                    slot.replay_bytes += bytes;
                    kept += bytes;
                }
            }
        }
        st.replay_total += kept;
        for key in lagged {
            self.lag(&mut st, &key, channel, &msg, bytes);
        }
        if kept > 0 {
            self.trim_replay(&mut st);
        }
    }

    /// Send a message to one client (a reply, or a refusal).
    pub fn deliver(&self, key: &ClientKey, channel: Channel, msg: Message) {
        let mut st = lock(&self.state);
        self.deliver_locked(&mut st, key, channel, msg);
    }

    fn deliver_locked(&self, st: &mut HubState, key: &ClientKey, channel: Channel, msg: Message) {
        let msg = Arc::new(msg);
        let bytes = footprint(&msg);
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        match &slot.attached {
            Some(a) => {
                if !self.enqueue(a, channel, &msg, bytes) {
                    self.lag(st, key, channel, &msg, bytes);
                }
            }
            None => {
                slot.replay
                    .push_back(Held::new(channel, &msg, bytes, &self.counters));
                slot.replay_bytes += bytes;
                st.replay_total += bytes;
                self.trim_replay(st);
            }
        }
    }

    /// Queue a message for an attached client; false when that would take it past its
    /// budget. A message larger than the whole budget still goes to a client with nothing
    /// queued, so that a client that reads gets every output.
    fn enqueue(&self, a: &Attached, channel: Channel, msg: &Arc<Message>, bytes: usize) -> bool {
        let queued = a.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(bytes) > self.limits.client_queue_bytes {
            return false;
        }
        a.queued.fetch_add(bytes, Ordering::AcqRel);
        // A receiver already gone is ending: its detach follows.
        let _ = a.tx.send(Held::new(channel, msg, bytes, &self.counters));
        true
    }

    /// `key`'s client is past its budget: tell it and detach it; `msg` goes to its replay.
    fn lag(
        &self,
        st: &mut HubState,
        key: &ClientKey,
        channel: Channel,
        msg: &Arc<Message>,
        bytes: usize,
    ) {
        let Some(slot) = st.slots.get_mut(key) else {
            return;
        };
        if let Some(a) = slot.attached.take() {
            if !a.tx.is_closed() {
                self.counters.lagged.fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "client fell more than {} behind the kernel's output; reconnect with the same session_id to resume",
                    human_bytes(self.limits.client_queue_bytes)
                );
                a.close.close(CLOSE_TOO_SLOW, &reason, true);
            }
            slot.detached_at = Some(Instant::now());
        }
        slot.replay
            .push_back(Held::new(channel, msg, bytes, &self.counters));
        slot.replay_bytes += bytes;
        st.replay_total += bytes;
        self.trim_replay(st);
        self.arm_expiry(st);
    }

    /// Drop the oldest replayed messages until the kernel's replays fit `replay_bytes`:
    /// first those of the session that left first.
    fn trim_replay(&self, st: &mut HubState) {
        let limit = self.limits.replay_bytes;
        while st.replay_total > limit {
            let oldest = st
                .slots
                .iter_mut()
                .filter(|(_, s)| !s.replay.is_empty())
                .min_by_key(|(_, s)| s.detached_at)
                .map(|(_, s)| s);
            let Some(slot) = oldest else {
                st.replay_total = 0;
                return;
            };
            while st.replay_total > limit {
                let Some(held) = slot.replay.pop_front() else {
                    break;
                };
                slot.replay_bytes -= held.bytes;
                st.replay_total -= held.bytes;
                slot.dropped += 1;
            }
        }
    }

    /// Make sure a task will expire the detached sessions when their window ends (one task
    /// per hub at most, gone once nothing is detached), so that what a client left behind
    /// is freed whether or not anyone attaches again.
    fn arm_expiry(&self, st: &mut HubState) {
        if st.expiry_armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.expiry_armed = true;
        let hub = self.me.clone();
        runtime.spawn(async move {
            loop {
                let next = {
                    let Some(hub) = hub.upgrade() else { return };
                    let mut st = lock(&hub.state);
                    hub.expire(&mut st);
                    let window = hub.limits.replay_window;
                    match st.slots.values().filter_map(|s| s.detached_at).min() {
                        Some(at) => at + window,
                        None => {
                            st.expiry_armed = false;
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(next.into()).await;
            }
        });
    }

    fn expire(&self, st: &mut HubState) {
        let window = self.limits.replay_window;
        let mut freed = 0;
        st.slots.retain(|_, s| {
            let keep = s.attached.is_some() || s.detached_at.is_some_and(|t| t.elapsed() < window);
            if !keep {
                freed += s.replay_bytes;
            }
            keep
        });
        let mut detached: Vec<(Instant, ClientKey)> = st
            .slots
            .iter()
            .filter(|(_, s)| s.attached.is_none())
            .filter_map(|(k, s)| s.detached_at.map(|t| (t, k.clone())))
            .collect();
        if detached.len() > self.limits.max_detached {
            detached.sort();
            let excess = detached.len() - self.limits.max_detached;
            for (_, k) in detached.into_iter().take(excess) {
                if let Some(s) = st.slots.remove(&k) {
                    freed += s.replay_bytes;
                }
            }
        }
        st.replay_total -= freed;
    }

    /// A copy of a request's header to answer it with, not the frame it came in (which a
    /// slice would keep whole).
    pub fn parent_of(msg: &Message) -> Bytes {
        if msg.header.len() <= MAX_PARENT_COPY {
            return Bytes::copy_from_slice(&msg.header);
        }
        let info = &msg.info;
        Bytes::from(
            serde_json::json!({
                "msg_id": info.msg_id,
                "msg_type": info.msg_type,
                "session": info.session,
            })
            .to_string(),
        )
    }
}

/// `33554432` → `32 MiB`, for messages.
pub(crate) fn human_bytes(n: usize) -> String {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// The outbound half of a client connection: frames for the server to write. Dropping it
/// detaches the client; what it had not written is kept for a reconnect of its session.
pub struct ClientOutbound {
    pub(crate) replay: VecDeque<Held>,
    pub(crate) rx: mpsc::UnboundedReceiver<Held>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) protocol: WsProtocol,
    pub(crate) close: Arc<CloseSignal>,
    pub(crate) finished: bool,
    pub(crate) hub: Arc<Hub>,
    pub(crate) key: ClientKey,
    pub(crate) conn_id: u64,
}

impl ClientOutbound {
    pub(crate) fn new(hub: Arc<Hub>, key: ClientKey, protocol: WsProtocol) -> Self {
        let att = hub.attach(key.clone());
        ClientOutbound {
            replay: att.replay,
            rx: att.rx,
            queued: att.queued,
            protocol,
            close: att.close,
            finished: false,
            hub,
            key,
            conn_id: att.conn_id,
        }
    }

    /// The next thing to write to the websocket; `None` once the connection is over (after
    /// a [`WsOut::Close`] has been returned, or when the kernel is gone).
    pub async fn next(&mut self) -> Option<WsOut> {
        if self.finished {
            return None;
        }
        if let Some((code, reason)) = self.close.take_preempting() {
            self.finished = true;
            return Some(WsOut::Close { code, reason });
        }
        let held = match self.replay.pop_front() {
            Some(held) => held,
            None => match self.rx.recv().await {
                Some(held) => held,
                // The sender is gone: closed by the hub (the reason is set), or the kernel is.
                None => {
                    self.finished = true;
                    let (code, reason) = self.close.take()?;
                    return Some(WsOut::Close { code, reason });
                }
            },
        };
        self.queued.fetch_sub(held.bytes, Ordering::AcqRel);
        Some(WsOut::Frame(encode(held.channel, &held.msg, self.protocol)))
    }

    /// Count this client as closed for not reading (the server gave up writing to it).
    pub fn count_stalled(&self) {
        self.hub.counters.stalled.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for ClientOutbound {
    fn drop(&mut self) {
        let mut unsent: Vec<Held> = self.replay.drain(..).collect();
        while let Ok(held) = self.rx.try_recv() {
            unsent.push(held);
        }
        self.hub.detach(&self.key, self.conn_id, unsent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn hub_with(client_queue_bytes: usize, replay_bytes: usize, window: Duration) -> Arc<Hub> {
        Hub::new(
            HubLimits {
                client_queue_bytes,
                replay_bytes,
                replay_window: window,
                max_detached: 10,
            },
            Arc::new(HubCounters::default()),
        )
    }

    fn hub(client_queue_bytes: usize) -> Arc<Hub> {
        hub_with(client_queue_bytes, 1 << 20, Duration::from_secs(60))
    }

    fn key(session: &str) -> ClientKey {
        ClientKey {
            session_id: session.into(),
            username: "alice".into(),
        }
    }

    fn outbound(hub: &Arc<Hub>, key: ClientKey) -> ClientOutbound {
        ClientOutbound::new(hub.clone(), key, WsProtocol::V1)
    }

    fn status(state: &str) -> Message {
        Message::new_server_message(
            "status",
            "k",
            "",
            Bytes::from_static(b"{}"),
            serde_json::json!({ "execution_state": state }),
        )
    }

    fn buffered(hub: &Hub) -> u64 {
        hub.counters.buffered.load(Ordering::Relaxed)
    }

    /// The execution states of the status frames a connection has ready, in order.
    fn states_ready(out: &mut ClientOutbound) -> Vec<String> {
        let mut states = Vec::new();
        while let Some(Some(WsOut::Frame(frame))) = futures::FutureExt::now_or_never(out.next()) {
            let (_, msg) = crate::ws::decode(&frame, WsProtocol::V1).unwrap();
            states.push(
                str_member(&msg.content, "execution_state")
                    .unwrap()
                    .into_owned(),
            );
        }
        states
    }

    /// A connection waiting on an empty queue is woken by a close (replaced, kernel gone).
    #[tokio::test]
    async fn a_waiting_connection_sees_the_close() {
        let hub = hub(1 << 20);
        let mut first = outbound(&hub, key("s"));
        let waiting = tokio::spawn(async move {
            let out = first.next().await;
            (out, first.next().await)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _second = outbound(&hub, key("s"));
        let (out, after) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(
            matches!(&out, Some(WsOut::Close { code: CLOSE_NORMAL, reason }) if reason.contains("replaced")),
            "{out:?}"
        );
        assert_eq!(after, None);

        let mut other = outbound(&hub, key("t"));
        let waiting = tokio::spawn(async move { other.next().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub.close_all("kernel shut down");
        let out = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(
            out,
            Some(WsOut::Close {
                code: CLOSE_NORMAL,
                reason: "kernel shut down".into()
            })
        );
    }

    /// A too-slow close goes before frames still queued, and they are replayed, in order,
    /// on reconnect; when the kernel goes away, what is queued is written before the close.
    #[tokio::test]
    async fn a_close_preempts_queued_frames_and_they_are_replayed() {
        // Room for the first two messages: the third finds the queue over budget.
        let budget = footprint(&status("busy")) + footprint(&status("idle")) + 1;
        let hub = hub(budget);
        let mut slow = outbound(&hub, key("s"));
        hub.broadcast(Channel::Iopub, status("busy"));
        hub.broadcast(Channel::Iopub, status("idle"));
        hub.broadcast(Channel::Iopub, status("starting"));
        let out = slow.next().await;
        assert!(
            matches!(&out, Some(WsOut::Close { code: CLOSE_TOO_SLOW, reason }) if reason.contains("behind")),
            "{out:?}"
        );
        assert_eq!(slow.next().await, None);
        drop(slow);
        let mut again = outbound(&hub, key("s"));
        assert_eq!(states_ready(&mut again), ["busy", "idle", "starting"]);

        hub.broadcast(Channel::Iopub, status("busy"));
        hub.close_all("kernel shut down");
        assert!(matches!(again.next().await, Some(WsOut::Frame(_))));
        assert!(matches!(
            again.next().await,
            Some(WsOut::Close {
                code: CLOSE_NORMAL,
                ..
            })
        ));
        drop(again);
        assert_eq!(buffered(&hub), 0);
    }

    /// A message larger than the whole budget still reaches a client with nothing queued.
    #[tokio::test]
    async fn one_message_above_the_budget_reaches_a_reading_client() {
        let hub = hub(16);
        let mut client = outbound(&hub, key("s"));
        hub.broadcast(Channel::Iopub, status("busy"));
        assert_eq!(states_ready(&mut client), ["busy"]);
        hub.broadcast(Channel::Iopub, status("idle"));
        hub.broadcast(Channel::Iopub, status("busy"));
        assert!(matches!(
            client.next().await,
            Some(WsOut::Close {
                code: CLOSE_TOO_SLOW,
                ..
            })
        ));
    }

    /// The replays of detached sessions keep the most recent messages within the kernel's
    /// budget, the session that left first losing first; what a connection had not written
    /// when it ended is replayed too.
    #[tokio::test]
    async fn replays_keep_the_latest_messages_within_the_budget() {
        let one = footprint(&status("busy"));
        let hub = hub_with(1 << 20, 3 * one, Duration::from_secs(60));
        let first = outbound(&hub, key("first"));
        let second = outbound(&hub, key("second"));
        hub.broadcast(Channel::Iopub, status("busy"));
        drop(first);
        hub.broadcast(Channel::Iopub, status("idle"));
        drop(second);
        // first: busy (unsent), idle; second: busy, idle (unsent); then two more each.
        hub.broadcast(Channel::Iopub, status("busy"));
        assert!(buffered(&hub) <= 3 * one as u64 + 8, "{}", buffered(&hub));
        let mut second = outbound(&hub, key("second"));
        let mut first = outbound(&hub, key("first"));
        assert_eq!(states_ready(&mut second), ["busy", "idle", "busy"]);
        assert!(
            states_ready(&mut first).is_empty(),
            "the first to leave lost first"
        );
        drop((first, second));
        hub.close_all("done");
        assert_eq!(buffered(&hub), 0);
    }

    /// A detached session's replay is freed when its window ends, without anyone
    /// attaching again.
    #[tokio::test]
    async fn replays_expire_by_themselves() {
        let hub = hub_with(1 << 20, 1 << 20, Duration::from_millis(100));
        drop(outbound(&hub, key("gone")));
        hub.broadcast(Channel::Iopub, status("busy"));
        assert!(buffered(&hub) > 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while buffered(&hub) > 0 {
            assert!(Instant::now() < deadline, "the replay did not expire");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lock(&hub.state).slots.len(), 0);
        assert!(!lock(&hub.state).expiry_armed, "the timer task ended");
    }
}
