//! The service's errors: a kind the server maps to a status code, and a message for people.

pub use concord_authz::ErrorKind;

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

    /// A [`ErrorKind::BadRequest`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::BadRequest,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::LimitReached`] error.
    pub fn limit(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::LimitReached,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Internal`] error.
    pub fn io(message: impl Into<String>) -> Self {
        CollabError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for CollabError {
    fn from(e: rusqlite::Error) -> Self {
        CollabError::io(format!("collaboration state store: {e}"))
    }
}
