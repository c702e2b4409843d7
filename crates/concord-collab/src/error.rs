//! The service's errors: a kind the server maps to a status code, and a message for people.

/// The classes of [`CollabError`] (the server maps them to HTTP statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file, file id or room (404).
    NotFound,
    /// A malformed request or content (400).
    Invalid,
    /// A configured limit was reached (429 or 403 with the message).
    Limit,
    /// Reading or writing the file or the state store failed (500).
    Io,
}

/// An error of the collaboration service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CollabError {
    /// The class.
    pub kind: ErrorKind,
    /// What happened, for a person.
    pub message: String,
}

impl CollabError {
    /// A [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Invalid`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::Invalid,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Limit`] error.
    pub fn limit(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::Limit,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Io`] error.
    pub fn io(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::Io,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for CollabError {
    fn from(e: rusqlite::Error) -> Self {
        CollabError::io(format!("collaboration state store: {e}"))
    }
}
