//! The service's error: a kind the server maps to a status code (in one place,
//! `api::contents::to_api_error`), and a message for people.

use std::io;

/// What went wrong, in the terms of jupyter_server's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the path does not exist, is hidden, or lies outside the root.
    NotFound,
    /// 400: the request is malformed or asks for something impossible.
    BadRequest,
    /// 403: the file system (or the caller's permissions) refuses the operation.
    Forbidden,
    /// 409: the destination already exists.
    Conflict,
    /// 413: the content is larger than the configured limit.
    TooLarge,
    /// 500: an unexpected failure of the file system.
    Internal,
}

/// An error from the contents service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ContentsError {
    /// The kind (status code).
    pub kind: ErrorKind,
    /// The message jupyter_server would give (`{"message": ...}` in the response).
    pub message: String,
    /// jupyter_server's short `reason` (e.g. `"bad type"`, `"bad format"`), where it gives one.
    pub reason: Option<&'static str>,
}

impl ContentsError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ContentsError {
            kind,
            message: message.into(),
            reason: None,
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
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Attach jupyter_server's `reason`.
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Map an I/O error on `api_path` the way jupyter_server's `perm_to_403` does:
    /// permission errors (and a read-only file system) are 403 "Permission denied: path"; a
    /// missing file, or a path through a file, is 404; what the request asks for that cannot
    /// be (a directory where a file must be, a name too long) is 400; an existing
    /// destination 409; anything else is `context` followed by the error, as a 500. The
    /// message names the API path, never the server's own path.
    pub(crate) fn from_io(err: &io::Error, api_path: &str, context: &str) -> Self {
        if let Some(refusal) = Self::from_client_io(err, api_path) {
            return refusal;
        }
        use io::ErrorKind as K;
        match err.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => {
                Self::forbidden(format!("Permission denied: {api_path}"))
            }
            K::NotFound | K::NotADirectory => {
                Self::not_found(format!("file or directory does not exist: {api_path:?}"))
            }
            K::IsADirectory | K::DirectoryNotEmpty | K::InvalidFilename | K::InvalidInput => {
                Self::bad_request(format!("{context}: {api_path} {err}"))
            }
            K::AlreadyExists => Self::conflict(format!("File already exists: {api_path}")),
            _ => Self::internal(format!("{context}: {api_path} {err}")),
        }
    }

    /// Whether an I/O error means a directory on the way does not exist (or is a file).
    pub(crate) fn is_missing_parent(err: &io::Error) -> bool {
        matches!(
            err.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        )
    }
}

impl ContentsError {
    /// The file system's refusals that come from what the client asked for, not from the
    /// server's state: a name or path longer than the file system holds, a loop of links, a
    /// file larger than the file system allows, a read-only mount. Whatever the operation,
    /// these are a 4xx naming the problem (jupyter_server answers most of them with a 500).
    /// A path through a file is not among them: it is a missing parent, as where nothing is.
    pub(crate) fn from_client_io(err: &io::Error, api_path: &str) -> Option<Self> {
        let refusal = match err.raw_os_error()? {
            libc::ENAMETOOLONG => Self::bad_request(format!("File name too long: {api_path}")),
            libc::ELOOP => {
                Self::bad_request(format!("Too many levels of symbolic links: {api_path}"))
            }
            libc::EFBIG => {
                Self::too_large(format!("File too large for the file system: {api_path}"))
            }
            libc::EROFS => Self::forbidden(format!("Read-only file system: {api_path}")),
            _ => return None,
        };
        Some(refusal)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ContentsError> = std::result::Result<T, E>;
