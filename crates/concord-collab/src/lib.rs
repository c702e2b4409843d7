//! Concord's real-time collaboration: the server side of jupyter-collaboration in Rust.
//!
//! - [`codec`]: the room protocol on the wire (y-websocket sync steps and updates,
//!   awareness, query-awareness, Jupyter's raw save request and reply), bounded.
//! - [`document`]: shared documents with jupyter_ydoc 4's Y structure (notebook, text,
//!   binary) and their conversion from and to file content.
//! - [`Collaboration`]: document sessions and file ids ([`Collaboration::session`]), rooms
//!   ([`Collaboration::join`] gives a [`Connection`] per websocket), participants with a
//!   [`Permission`] (a viewer's changes and save requests are dropped and reported once
//!   through [`CollabObserver`]), awareness limited to the participant's own
//!   [`Identity`], permission changes and closes from outside, limits, saving after a quiet
//!   period and when the last participant leaves, changes on disk merged, attribution per
//!   save and per cell.
//! - [`DocumentStore`]: what the server provides (files by path, over its contents
//!   service).
//!
//! This crate never sees HTTP and never decides policy: the server authorizes first and
//! passes the participant's permission.

pub mod codec;
pub mod document;
mod error;
mod room;
mod service;
mod state;
mod store;

pub use error::{CollabError, ErrorKind};
pub use service::{
    close_codes, CloseReason, CollabConfig, CollabObserver, Collaboration, Connection,
    EditorChanges, Identity, MetricsSnapshot, NoObserver, Outbound, ParticipantInfo, Permission,
    RefusedChanges, RoomTarget, SaveRecord, SessionModel,
};
pub use state::{CellAuthor, StateStore};
pub use store::{BoxFuture, DocumentStore, FileStamp, SavedFile, StoredFile};
