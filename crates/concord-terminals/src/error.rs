//! Errors of the terminal service; the server maps each [`ErrorKind`] to a status code.

pub use concord_authz::ErrorKind;

/// Why a terminal operation failed, with a message a person understands.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// No terminal with this name (jupyter_server's message).
    #[error("Terminal not found: {0}")]
    NotFound(String),
    /// The global limit (terminado's message).
    #[error("Cannot create more than {0} terminals")]
    TooManyTerminals(usize),
    /// The per-user limit.
    #[error("Cannot create more than {limit} terminals per user; {username} already has {limit}")]
    TooManyForUser {
        /// The owner who asked.
        username: String,
        /// The configured limit.
        limit: usize,
    },
    /// The policy's per-user limit (its message names the limit and where it is set).
    #[error("{0}")]
    LimitReached(String),
    /// The working directory is unusable.
    /// (The message leaves out the server's own path to it, which the server logs.)
    #[error("Cannot start a terminal in that directory: {reason}")]
    InvalidCwd {
        /// The directory asked for.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Terminals are being shut down with the server.
    #[error("The server is shutting down; no new terminals can be started")]
    ShuttingDown,
    /// The shell or its PTY could not be started.
    #[error("Could not start the terminal's shell {command:?}: {reason}")]
    Spawn {
        /// The configured command.
        command: String,
        /// The operating system's reason.
        reason: String,
    },
}

impl TerminalError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TerminalError::NotFound(_) => ErrorKind::NotFound,
            TerminalError::TooManyTerminals(_)
            | TerminalError::TooManyForUser { .. }
            | TerminalError::LimitReached(_) => ErrorKind::LimitReached,
            TerminalError::InvalidCwd { .. } => ErrorKind::BadRequest,
            TerminalError::ShuttingDown => ErrorKind::Unavailable,
            TerminalError::Spawn { .. } => ErrorKind::Internal,
        }
    }
}

/// A websocket frame from a client that does not follow terminado's protocol. The server
/// closes that client's connection with this reason; the terminal itself is unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);
