//! The one vocabulary of outcomes every service's errors use; the server maps each kind to
//! a status code in one place.

/// What went wrong, in terms every service shares (and the server turns into jupyter_server's
/// status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing asked for does not exist (or must not be known to exist): 404.
    NotFound,
    /// The request is malformed or asks for something impossible: 400.
    BadRequest,
    /// The operation is refused, by the file system or a rule of the service: 403.
    Forbidden,
    /// The destination exists, or the state does not allow it now: 409.
    Conflict,
    /// The content is larger than the configured limit: 413.
    TooLarge,
    /// A configured limit on how many there may be is reached: 403, as jupyter_server.
    LimitReached,
    /// The service cannot do it at the moment (a process did not start, a peer is gone): 503.
    Unavailable,
    /// An unexpected failure: 500.
    Internal,
}
