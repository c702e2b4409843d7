//! The kernels service's errors, with a `kind` the server maps to an HTTP status.

use crate::kernelspec::KernelSpecError;

/// What went wrong, with a `kind` the server maps to an HTTP status.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KernelError {
    /// No such kernel (or not one the caller may see).
    #[error("kernel does not exist: {0}")]
    NoSuchKernel(String),
    /// No such kernelspec.
    #[error("no such kernel: {0}")]
    NoSuchKernelSpec(String),
    /// A kernel with that id already exists.
    #[error("kernel {0} already exists")]
    Duplicate(String),
    /// Invalid input (env name not allowed, bad id, bad path).
    #[error("{0}")]
    BadRequest(String),
    /// The kernel process could not be started or did not become ready.
    #[error("kernel failed to start: {0}")]
    StartFailed(String),
    /// The kernel cannot take messages now (dead, or its queue is full).
    #[error("kernel is not accepting messages: {0}")]
    Unavailable(String),
    /// The creator already holds as many kernels as the policy allows them.
    #[error("{0}")]
    LimitReached(String),
}

pub use concord_authz::ErrorKind;

impl KernelError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KernelError::NoSuchKernel(_) | KernelError::NoSuchKernelSpec(_) => ErrorKind::NotFound,
            KernelError::Duplicate(_) => ErrorKind::Conflict,
            KernelError::BadRequest(_) => ErrorKind::BadRequest,
            KernelError::StartFailed(_) => ErrorKind::Internal,
            KernelError::Unavailable(_) => ErrorKind::Unavailable,
            KernelError::LimitReached(_) => ErrorKind::LimitReached,
        }
    }
}

impl From<KernelSpecError> for KernelError {
    fn from(e: KernelSpecError) -> Self {
        match e {
            KernelSpecError::NoSuchKernel(n) => KernelError::NoSuchKernelSpec(n),
            other => KernelError::StartFailed(other.to_string()),
        }
    }
}
