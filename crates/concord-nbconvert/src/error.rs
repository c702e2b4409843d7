//! The service's error: what went wrong ([`Failure`], finer than the shared kinds), the
//! shared [`ErrorKind`] the server maps to a status code, and a message for people.

pub use concord_authz::ErrorKind;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
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
    /// What went wrong.
    pub failure: Failure,
    /// What the client is told (`{"message": ...}`).
    pub message: String,
}

impl NbconvertError {
    /// The outcome in the vocabulary every service shares. jupyter_server answers 500 for a
    /// failed conversion; an unknown format is the 404 its code intends.
    pub fn kind(&self) -> ErrorKind {
        match self.failure {
            Failure::UnknownFormat => ErrorKind::NotFound,
            Failure::BadNotebook => ErrorKind::BadRequest,
            Failure::Unavailable => ErrorKind::Unavailable,
            // The request was fine: the export went past a limit of the server's.
            Failure::Failed | Failure::TimedOut | Failure::OutOfMemory | Failure::TooLarge => {
                ErrorKind::Internal
            }
        }
    }

    /// An error of `kind` with `message`.
    pub fn new(failure: Failure, message: impl Into<String>) -> Self {
        NbconvertError {
            failure,
            message: message.into(),
        }
    }
}

/// The service's result.
pub type NbconvertResult<T> = Result<T, NbconvertError>;
