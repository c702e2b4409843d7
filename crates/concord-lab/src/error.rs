//! The service's error: a kind the server maps to a status code, and a message for people.

pub use concord_authz::ErrorKind;

/// An error of the JupyterLab service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LabError {
    /// The kind (status code).
    pub kind: ErrorKind,
    /// What the client is told (`{"message": ...}`).
    pub message: String,
}

impl LabError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LabError {
            kind,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// 500 for a failed read or write of the server's state: the details go to the log, the
    /// client learns only what failed.
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        tracing::error!("{what}: {e}");
        Self::new(
            ErrorKind::Internal,
            format!("{what}: the server could not read or write its state"),
        )
    }
}

/// The service's result.
pub type LabResult<T> = Result<T, LabError>;
