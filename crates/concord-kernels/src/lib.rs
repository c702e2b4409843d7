//! Concord's kernels: kernelspec discovery, kernel processes over ZMQ (the HMAC-signed
//! Jupyter wire protocol), the kernel websocket's two frame formats, fan-out to many clients
//! with message-level permission (execute vs watch), and notebook sessions.
//!
//! This crate never sees HTTP: the server authorizes, then hands websocket frames to a
//! [`ClientConnection`] and writes back what it yields. See `docs/kernels.md`.

pub mod env;
mod hub;
mod kernel;
pub mod kernelspec;
mod sessions;
pub mod transport;
pub mod wire;
pub mod ws;
pub mod zmtp;

pub use hub::{ClientOutbound, WsOut, CLOSE_NORMAL, CLOSE_TOO_SLOW};
pub use kernel::{
    ClientConnection, ClientInbound, ConfinementProvider, ErrorKind, Inbound, InboundError,
    KernelAccess, KernelAction, KernelActionKind, KernelError, KernelInfo, KernelManager,
    KernelManagerConfig, KernelMetrics, KernelModel, StartKernel, TransportKind,
};
pub use kernelspec::{
    python_prefix_on_path, InterruptMode, KernelSpec, KernelSpecError, KernelSpecManager,
    KernelSpecResource,
};
pub use sessions::{NewSession, SessionError, SessionInfo, SessionManager, SessionPatch};
pub use ws::{Channel, WsFrame, WsProtocol, V1_SUBPROTOCOL};
