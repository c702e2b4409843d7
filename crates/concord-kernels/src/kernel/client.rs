//! Websocket clients of a kernel: attaching one, and what it sends on its way to the
//! kernel (decoded, checked against the client's access, stamped with its user, registered
//! for the reply, queued); refusals answered in the kernel's own shape, and the errors sent
//! for requests a kernel that died, restarted or shut down will never answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Kernel, KernelError, KernelManager};
use crate::hub::{ClientKey, ClientOutbound, Hub, Pending, Route};
use crate::wire::Message;
use crate::ws::{decode, Channel, CodecError, WsFrame, WsProtocol};

/// What a websocket client may do on a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelAccess {
    /// Send anything.
    Execute,
    /// Receive iopub and ask harmless questions; everything that runs code is refused.
    Watch,
}

/// Messages a watcher may send on shell: questions that run no user code.
const WATCH_ALLOWED_SHELL: [&str; 4] = [
    "kernel_info_request",
    "comm_info_request",
    "is_complete_request",
    "history_request",
];

/// Why an inbound frame was not passed to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The frame could not be decoded; the server should close with 1007 (or ignore it).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The kernel cannot take it now.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// What happened to an inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Passed to the kernel.
    Forwarded,
    /// Refused (content that is not a JSON object, watch-only permission, a clashing
    /// msg_id, a kernel that does not read its input); an error reply went back.
    Refused,
}

/// A websocket client attached to a kernel: the server feeds `inbound` with frames it
/// receives and writes what `outbound` yields.
pub struct ClientConnection {
    /// Frames from the client.
    pub inbound: ClientInbound,
    /// Frames for the client.
    pub outbound: ClientOutbound,
}

/// The inbound half of a client connection.
pub struct ClientInbound {
    kernel: Arc<Kernel>,
    manager: KernelManager,
    key: ClientKey,
    /// Whether the client may execute (else it watches); taken away, never given back,
    /// while the connection lives.
    may_execute: AtomicBool,
    protocol: WsProtocol,
}

impl KernelManager {
    /// Attach a websocket client. `permission` comes from the server's authorization of the
    /// caller on this kernel. The same `(session_id, username)` reconnecting gets what was
    /// buffered while it was away; a different user never shares a session slot.
    pub fn connect(
        &self,
        kernel_id: &str,
        session_id: &str,
        username: &str,
        permission: KernelAccess,
        protocol: WsProtocol,
    ) -> Result<ClientConnection, KernelError> {
        let k = self.kernel(kernel_id)?;
        // jupyter_server accepts a missing session_id; give such a client its own slot.
        let session_id = if session_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            session_id.to_string()
        };
        let key = ClientKey {
            session_id,
            username: username.to_string(),
        };
        let outbound = ClientOutbound::new(k.hub.clone(), key.clone(), protocol);
        k.touch();
        Ok(ClientConnection {
            inbound: ClientInbound {
                kernel: k,
                manager: self.clone(),
                key,
                may_execute: AtomicBool::new(permission == KernelAccess::Execute),
                protocol,
            },
            outbound,
        })
    }
}

impl ClientInbound {
    /// The negotiated protocol.
    pub fn protocol(&self) -> WsProtocol {
        self.protocol
    }

    /// What the client may do now.
    pub fn permission(&self) -> KernelAccess {
        if self.may_execute.load(Ordering::Acquire) {
            KernelAccess::Execute
        } else {
            KernelAccess::Watch
        }
    }

    /// Make the client a watcher from its next message on (its caller lost the right to
    /// execute while connected); what it already sent stays sent.
    pub fn restrict_to_watch(&self) {
        self.may_execute.store(false, Ordering::Release);
    }

    /// Handle one frame from the client: decode, check permission, stamp `header.username`,
    /// and queue it for the kernel.
    pub async fn handle(&self, frame: WsFrame) -> Result<Inbound, InboundError> {
        let counters = &self.manager.inner.counters;
        let (channel, mut msg) = match decode(&frame, self.protocol) {
            Ok(x) => x,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let k = &self.kernel;
        if channel == Channel::Iopub {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return Err(CodecError::Malformed("clients cannot send on iopub".into()).into());
        }
        if let Err(why) = check_parts(&msg) {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            self.refuse(channel, &msg, "InvalidMessage", &why);
            return Ok(Inbound::Refused);
        }
        let allowed = match self.permission() {
            KernelAccess::Execute => true,
            KernelAccess::Watch => {
                channel == Channel::Shell
                    && WATCH_ALLOWED_SHELL.contains(&msg.info.msg_type.as_str())
            }
        };
        if !allowed {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "user {:?} may watch this kernel but not run code in it; {} refused",
                self.key.username, msg.info.msg_type
            );
            self.refuse(channel, &msg, "PermissionError", &why);
            return Ok(Inbound::Refused);
        }
        msg.stamp_username(&self.key.username)
            .map_err(|e| CodecError::Malformed(e.to_string()))?;
        let request = msg.info.msg_type.ends_with("_request");
        if request {
            let pending = Pending {
                route: Route::Client(self.key.clone()),
                channel,
                msg_type: msg.info.msg_type.clone(),
                parent: Hub::parent_of(&msg),
            };
            if !k.hub.register(&msg.info.msg_id, pending) {
                self.refuse(
                    channel,
                    &msg,
                    "DuplicateMessageId",
                    "another client has a pending request with this msg_id",
                );
                return Ok(Inbound::Refused);
            }
        }
        k.touch();
        if let Err((e, msg)) = k.outboxes.try_send(channel, msg) {
            // Answered here: the kernel will never see it.
            if request {
                k.hub.unregister(&msg.info.msg_id);
            }
            self.refuse(channel, &msg, "KernelUnavailable", &e.to_string());
            return Ok(Inbound::Refused);
        }
        Ok(Inbound::Forwarded)
    }

    /// Send this client a kernel-shaped error reply to `req` on `channel` (see
    /// [`answer_with_error`]).
    fn refuse(&self, channel: Channel, req: &Message, ename: &str, evalue: &str) {
        answer_with_error(
            &self.kernel,
            &self.key,
            channel,
            &req.info.msg_type,
            Hub::parent_of(req),
            ename,
            evalue,
            false,
        );
    }
}

/// Why a message from a client cannot go to the kernel although its header is fine: its
/// parent header, metadata or content is not a JSON object (ipykernel drops such a message
/// without a reply, so the client would wait for ever).
fn check_parts(msg: &Message) -> Result<(), String> {
    for (name, raw) in [
        ("parent_header", &msg.parent_header),
        ("metadata", &msg.metadata),
        ("content", &msg.content),
    ] {
        crate::wire::check_object(raw)
            .map_err(|e| format!("the message's {name} is not a JSON object: {e}"))?;
    }
    Ok(())
}

/// Answer a request of `key`'s client with a kernel-shaped error on `channel`: `X_reply`
/// for `X_request` (`error` for other types), `parent_header` = the request's header,
/// content `{status: "error", ename, evalue, traceback}`. For `execute_request` also an
/// iopub `error` output before it and an iopub `idle` status after it, which is what front
/// ends show in the cell and how they know it finished; to every client when
/// `iopub_to_all` (the cell's watchers saw it start), else to this client only.
#[allow(clippy::too_many_arguments)]
fn answer_with_error(
    k: &Kernel,
    key: &ClientKey,
    channel: Channel,
    req_type: &str,
    parent: Bytes,
    ename: &str,
    evalue: &str,
    iopub_to_all: bool,
) {
    let reply_type = match req_type.strip_suffix("_request") {
        Some(base) => format!("{base}_reply"),
        None => "error".to_string(),
    };
    let iopub = |msg: Message| {
        if iopub_to_all {
            k.hub.broadcast(Channel::Iopub, msg);
        } else {
            k.hub.deliver(key, Channel::Iopub, msg);
        }
    };
    let traceback = vec![format!("{ename}: {evalue}")];
    let mut content = json!({
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": traceback,
    });
    let execute = req_type == "execute_request";
    if execute {
        content["execution_count"] = Value::Null;
        iopub(Message::new_server_message(
            "error",
            &k.id,
            "",
            parent.clone(),
            json!({"ename": ename, "evalue": evalue, "traceback": traceback}),
        ));
    }
    let reply = Message::new_server_message(&reply_type, &k.id, "", parent.clone(), content);
    k.hub.deliver(key, channel, reply);
    if execute {
        iopub(Message::new_server_message(
            "status",
            &k.id,
            "",
            parent,
            json!({"execution_state": "idle"}),
        ));
    }
}

/// Why the requests a kernel had not answered never will be.
#[derive(Clone, Copy)]
pub(super) enum Unanswered {
    /// The process died; `restarting` when the restarter brings it back.
    Died { restarting: bool },
    /// A restart was asked for.
    Restarted,
    /// The kernel was shut down.
    ShutDown,
}

impl Unanswered {
    fn ename(self) -> &'static str {
        match self {
            Unanswered::Died { .. } => "DeadKernelError",
            Unanswered::Restarted => "KernelRestarted",
            Unanswered::ShutDown => "KernelShutDown",
        }
    }

    fn evalue(self, execute: bool) -> String {
        let what = if execute {
            "while running this cell"
        } else {
            "before answering this request"
        };
        match self {
            Unanswered::Died { restarting: true } => {
                format!("The kernel died {what}; it is restarting, and its variables are lost.")
            }
            Unanswered::Died { restarting: false } => {
                format!("The kernel died {what}, and it could not be restarted.")
            }
            Unanswered::Restarted => format!("The kernel was restarted {what}."),
            Unanswered::ShutDown => format!("The kernel was shut down {what}."),
        }
    }
}

/// Answer every request the kernel had not answered with an error, on the channel it came
/// in on: the process that had them is gone.
pub(super) fn fail_pending(k: &Kernel, why: Unanswered) {
    for (key, pending) in k.hub.take_pending() {
        let evalue = why.evalue(pending.msg_type == "execute_request");
        answer_with_error(
            k,
            &key,
            pending.channel,
            &pending.msg_type,
            pending.parent,
            why.ename(),
            &evalue,
            true,
        );
    }
}
