//! concord-contents: Concord's files service, at jupyter_server 2.x parity.
//!
//! A [`ContentsManager`] serves one root directory. Its operations take the request path as
//! a [`CanonicalPath`] (already normalised by the server) and a [`Caller`] (username and a
//! [`PathAccess`] capability), and return models that serialize exactly like
//! jupyter_server's. The server authorizes the path returned by
//! [`ContentsManager::resolve`] (symlinks followed) before calling an operation; the
//! service filters listings, computes `writable` and checks body-field paths (`copy_from`,
//! the PATCH `path`) through the same [`PathAccess`].
//!
//! All operations are blocking file-system work: call them from `spawn_blocking`.

mod access;
mod actions;
pub mod atomic;
mod config;
pub mod dirents;
mod error;
mod manager;
mod mimetypes;
mod model;
pub mod notebook;
mod pyfmt;
mod request;
mod trash;
mod trust;
mod upload;
pub mod write_check;

pub use access::{AllowAll, Caller, PathAccess};
pub use actions::{ActionKind, ActionListener, ContentsAction};
pub use concord_authz::CanonicalPath;
pub use config::ContentsConfig;
pub use error::{ContentsError, ErrorKind, Result};
pub use manager::{ContentsManager, FileDownload, FileFormat, GetOptions, Missing, SaveOutcome};
pub use mimetypes::guess_type;
pub use model::{
    format_time, format_timestamp, Checkpoint, Content, ContentType, Model, Timestamp,
};
/// Python's `repr()` of a float, as `json.dumps` writes floats.
pub use pyfmt::repr_float as python_float_repr;
/// Python's `repr()` of a string, as jupyter_server's messages quote values.
pub use pyfmt::repr_str as python_repr;
pub use request::{parse_json_body, Body, CreateRequest, Field, RenameRequest, SaveModel};
pub use upload::RequestBody;
