//! The service's error: a kind the server maps to a status code, and a message for people.

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No exporter of that name (jupyter_server's "No exporter for format").
    UnknownFormat,
    /// What was given is not a notebook (not JSON, not nbformat).
    BadNotebook,
    /// nbconvert raised while converting; the message is jupyter_server's
    /// `nbconvert failed: …`.
    Failed,
    /// The conversion took longer than the time limit and was killed.
    TimedOut,
    /// The conversion ran out of the memory it is allowed.
    OutOfMemory,
    /// The export is larger than the output limit.
    TooLarge,
    /// nbconvert cannot be run (no Python, no nbconvert, the sandbox could not be prepared).
    Unavailable,
}

/// An error of the nbconvert service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NbconvertError {
    /// The kind (the server's status code).
    pub kind: ErrorKind,
    /// What the client is told (`{"message": ...}`).
    pub message: String,
}

impl NbconvertError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        NbconvertError {
            kind,
            message: message.into(),
        }
    }
}

/// The service's result.
pub type NbconvertResult<T> = Result<T, NbconvertError>;
