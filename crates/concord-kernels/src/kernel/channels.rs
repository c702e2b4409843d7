//! The kernel's channels, in the order a message travels: the queues from clients to the
//! kernel and the writer tasks that sign and send what waits in them; the reader tasks that
//! verify what the kernel sends and pass it to the hub (a reply to the client that asked,
//! iopub to every client); and what happens when a channel breaks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::{Kernel, KernelError};
use crate::hub::{footprint, human_bytes, lock};
use crate::transport::{FrameReceiver, FrameSender, TransportError};
use crate::wire::{Message, Signer};
use crate::ws::Channel;

/// Requests on their way to the kernel's shell, control and stdin channels. The queues
/// outlive incarnations, so a message sent during a restart reaches the new process. Boxed:
/// a tokio channel allocates its slots 32 at a time when it is made, and three channels of
/// unboxed messages cost every idle kernel 24 KiB.
pub(super) struct Outboxes {
    shell: mpsc::Sender<Box<Message>>,
    control: mpsc::Sender<Box<Message>>,
    stdin: mpsc::Sender<Box<Message>>,
    /// Bytes of the messages waiting in the three queues ([`footprint`]s).
    pub(super) bytes: Arc<AtomicUsize>,
    /// At most this many bytes wait (a message alone always may).
    limit: usize,
}

/// Slots in each request queue.
const QUEUE_SLOTS: usize = 1024;

impl Outboxes {
    /// Empty queues holding at most `limit` bytes, and their receiving ends (shell, control,
    /// stdin: the order of [`Kernel::inboxes`](super::Kernel)).
    pub(super) fn new(limit: usize) -> (Outboxes, [Inbox; 3]) {
        let (shell, shell_rx) = mpsc::channel(QUEUE_SLOTS);
        let (control, control_rx) = mpsc::channel(QUEUE_SLOTS);
        let (stdin, stdin_rx) = mpsc::channel(QUEUE_SLOTS);
        let outboxes = Outboxes {
            shell,
            control,
            stdin,
            bytes: Arc::new(AtomicUsize::new(0)),
            limit,
        };
        let inboxes =
            [shell_rx, control_rx, stdin_rx].map(|rx| Arc::new(tokio::sync::Mutex::new(rx)));
        (outboxes, inboxes)
    }

    /// Queue `msg` for the kernel on `channel` (shell for anything but control and stdin).
    pub(super) fn send(&self, channel: Channel, msg: Message) -> Result<(), KernelError> {
        self.try_send(channel, msg).map_err(|(e, _)| e)
    }

    /// As [`Outboxes::send`], handing the message back when it cannot be queued.
    pub(super) fn try_send(
        &self,
        channel: Channel,
        msg: Message,
    ) -> Result<(), (KernelError, Box<Message>)> {
        let msg = Box::new(msg);
        let size = footprint(&msg);
        let waiting = self.bytes.load(Ordering::Acquire);
        if waiting > 0 && waiting.saturating_add(size) > self.limit {
            let why = format!(
                "the kernel is not reading its input: {} of messages are waiting for it",
                human_bytes(waiting)
            );
            return Err((KernelError::Unavailable(why), msg));
        }
        let queue = match channel {
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            Channel::Shell | Channel::Iopub => &self.shell,
        };
        self.bytes.fetch_add(size, Ordering::AcqRel);
        queue.try_send(msg).map_err(|e| {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            let msg = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            let why = KernelError::Unavailable("the kernel's queue is full".into());
            (why, msg)
        })
    }
}

/// The receiving end of a request queue, drained by one writer task at a time.
pub(super) type Inbox = Arc<tokio::sync::Mutex<mpsc::Receiver<Box<Message>>>>;

/// Sends what clients (and the server) queued for the kernel on one channel.
pub(super) async fn writer_task(
    inbox: Inbox,
    waiting: Arc<AtomicUsize>,
    mut tx: Box<dyn FrameSender>,
    signer: Signer,
) {
    let mut inbox = inbox.lock().await;
    while let Some(msg) = inbox.recv().await {
        let frames = msg.to_frames(&signer);
        waiting.fetch_sub(footprint(&msg), Ordering::AcqRel);
        drop(msg);
        if let Err(e) = tx.send(frames).await {
            tracing::warn!("sending to kernel failed: {e}");
        }
    }
}

/// Drop what clients sent and the gone process never read: those requests are answered
/// with errors, and must not run in the next process. Call once the writers are stopped
/// (each holds its queue's lock while it runs).
pub(super) async fn drop_unread_input(k: &Kernel) {
    for inbox in &k.inboxes {
        let Ok(mut rx) = tokio::time::timeout(Duration::from_secs(5), inbox.lock()).await else {
            tracing::warn!(kernel = %k.id, "a writer to the kernel did not stop");
            continue;
        };
        while let Ok(msg) = rx.try_recv() {
            k.outboxes
                .bytes
                .fetch_sub(footprint(&msg), Ordering::AcqRel);
        }
    }
}

/// Receives the kernel's replies on `channel` and passes each to the client that asked.
pub(super) async fn reader_task(
    k: Arc<Kernel>,
    channel: Channel,
    mut rx: Box<dyn FrameReceiver>,
    signer: Signer,
    live: Liveness,
) {
    loop {
        let frames = match rx.recv().await {
            Ok(f) => f,
            Err(e) => return channel_ended(&k, channel, &e, live).await,
        };
        match Message::from_frames(frames, &signer) {
            Ok(msg) => k.hub.route(channel, msg),
            Err(e) => tracing::warn!(
                kernel = %k.id,
                channel = channel.as_str(),
                "dropping malformed kernel message: {e}"
            ),
        }
    }
}

/// Receives the kernel's broadcasts: keeps the kernel's execution state and activity, and
/// passes every message to all clients.
pub(super) async fn iopub_task(
    k: Arc<Kernel>,
    mut rx: Box<dyn FrameReceiver>,
    signer: Signer,
    live: Liveness,
) {
    loop {
        let frames = match rx.recv().await {
            Ok(f) => f,
            Err(e) => return channel_ended(&k, Channel::Iopub, &e, live).await,
        };
        let msg = match Message::from_frames(frames, &signer) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(kernel = %k.id, "dropping malformed iopub message: {e}");
                continue;
            }
        };
        {
            let mut st = lock(&k.state);
            st.last_activity = Utc::now();
            if msg.info.msg_type == "status" {
                if let Some(s) = crate::wire::str_member(&msg.content, "execution_state") {
                    if st.execution_state != s {
                        st.execution_state = s.into_owned();
                    }
                    // Readiness wants an idle status: it proves the subscription is
                    // live and leaves the model in a settled state.
                    if st.execution_state == "idle" {
                        if let Some(p) = crate::wire::str_member(&msg.parent_header, "msg_id") {
                            let mut last = lock(&k.last_idle_parent);
                            if *last != p {
                                *last = p.into_owned();
                            }
                        }
                    }
                }
            }
        }
        k.hub.broadcast(Channel::Iopub, msg);
    }
}

/// What a channel's reader needs to tell a broken channel from a kernel that is exiting.
#[derive(Clone)]
pub(super) struct Liveness {
    /// The incarnation's process (group leader).
    pub(super) pid: i32,
    /// Becomes true when that process has exited.
    pub(super) exited: watch::Receiver<bool>,
    /// Set when the server is stopping or restarting it.
    pub(super) intentional: Arc<AtomicBool>,
}

/// How long a channel that ended waits for its kernel's exit to be seen before deciding the
/// kernel lives on without it (a kernel that exits closes its sockets first).
const CHANNEL_EXIT_GRACE: Duration = Duration::from_secs(2);

/// A kernel channel ended. When the process is exiting (or being stopped), nothing to do:
/// the exit watcher takes over. When it lives on (it closed the socket, or sent what is not
/// ZMTP), it cannot be used any more, and no one would know: it is killed, and the restarter
/// brings it back as after a crash, telling the clients.
async fn channel_ended(k: &Kernel, channel: Channel, error: &TransportError, mut live: Liveness) {
    tracing::debug!(kernel = %k.id, channel = channel.as_str(), "channel ended: {error}");
    if live.intentional.load(Ordering::SeqCst) {
        return;
    }
    let exit = tokio::time::timeout(CHANNEL_EXIT_GRACE, live.exited.wait_for(|e| *e)).await;
    // Err(_) inside: the exit watcher is gone, so is the process.
    if exit.is_ok() || live.intentional.load(Ordering::SeqCst) {
        return;
    }
    tracing::error!(
        kernel = %k.id,
        channel = channel.as_str(),
        "the kernel's {} channel failed ({error}) while it runs; killing it so that it restarts",
        channel.as_str()
    );
    let _ = killpg(Pid::from_raw(live.pid), Signal::SIGKILL);
}
