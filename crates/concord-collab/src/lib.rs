//! Concord's real-time collaboration (jupyter-collaboration's server side, in Rust).
pub mod codec;
pub mod document;
mod error;

pub use error::{CollabError, ErrorKind};
