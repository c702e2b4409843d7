//! Concord's terminals: PTY shells that belong to their creator, spoken to with
//! terminado's websocket protocol so JupyterLab's terminal works unchanged.
//!
//! - [`TerminalManager`] starts the configured shell ([`TerminalConfig`]) on a PTY, in its
//!   own session and process group, names it "1", "2", … and enforces per-user and global
//!   limits; idle terminals can be culled. Deleting a terminal, or
//!   [`TerminalManager::shutdown_all`] when the server exits, ends every process the
//!   terminal started (SIGHUP, then SIGTERM, then SIGKILL) and reaps them.
//! - [`TerminalManager::attach`] gives a [`TerminalClient`]: its [`ClientInput`] takes the
//!   websocket's text frames, its [`ClientOutput`] yields the frames to send
//!   (`["setup", {}]`, the replayed history, live `["stdout", …]`, `["disconnect", 1]`).
//!   A [`TerminalAccess::Watch`] client sees everything but its input never reaches the shell.
//! - [`serve_client`] drives one websocket with any library: the server maps its messages
//!   to [`Incoming`] and from [`Outgoing`].
//!
//! This crate never sees HTTP and never decides policy: the server authorizes first.

mod client;
mod config;
mod error;
mod manager;
mod procs;
mod protocol;
mod socket;
mod terminal;
mod utf8;

pub use client::{
    ClientInput, ClientOutput, CloseKind, CloseReason, ServerFrame, TerminalAccess, TerminalClient,
    WATCH_ONLY_NOTICE,
};
pub use config::TerminalConfig;
pub use error::{ErrorKind, ProtocolError, TerminalError};
pub use manager::{ConfinementProvider, TerminalManager};
pub use socket::{
    serve_client, Incoming, Outgoing, CLOSE_INVALID_PAYLOAD, CLOSE_NORMAL, CLOSE_POLICY,
    CLOSE_TOO_BIG,
};
pub use terminal::{AttachedClient, TerminalInfo, TerminalModel};
