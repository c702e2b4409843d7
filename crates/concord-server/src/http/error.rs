//! Errors as jupyter_server writes them: a status code and `{"message": ..., "reason": ...}`.
//!
//! Every service error becomes an [`ApiError`] through one `From` impl here, so handlers use
//! `?`, and each service's error kinds are mapped to status codes in exactly one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concord_authz::{CanonicalPath, ErrorKind, ResourceType};
use concord_collab::CollabError;
use concord_contents::ContentsError;
use concord_kernels::{KernelError, SessionError};
use concord_lab::LabError;
use concord_nbconvert::NbconvertError;
use concord_terminals::TerminalError;
use serde_json::json;

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence a person understands.
    pub message: String,
    /// jupyter_server's `reason` field (usually null).
    pub reason: Option<String>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            reason: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500, for failures that are the server's fault; the message must not leak secrets.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Set the `reason` field.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.message, "reason": self.reason });
        let mut response = (self.status, axum::Json(body)).into_response();
        // Kept with the answer, so the pipeline can show it as a page on a browser route.
        response.extensions_mut().insert(self);
        response
    }
}

impl ApiError {
    /// The error as an HTML page, as jupyter_server's `error.html` answers on its pages
    /// (`/files/`, `/lab`, unknown URLs); the API keeps JSON. `base_url` is where the page
    /// links back to.
    pub fn into_page(self, base_url: &str) -> Response {
        let status_message = self.status.canonical_reason().unwrap_or("Error");
        let explanation = match self.status {
            StatusCode::NOT_FOUND => "You are requesting a page that does not exist!",
            StatusCode::FORBIDDEN => "You are not allowed to see this page.",
            _ => "The server could not answer this request.",
        };
        let html = crate::handlers::pages::render(
            "error.html",
            minijinja::context! {
                status_code => self.status.as_u16(),
                status_message => status_message,
                explanation => explanation,
                message => self.message,
                home => format!("{base_url}lab"),
            },
        );
        (self.status, axum::response::Html(html)).into_response()
    }
}

/// The status code of every service's error kind: the one place they are mapped.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden | ErrorKind::LimitReached => StatusCode::FORBIDDEN,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ContentsError> for ApiError {
    fn from(e: ContentsError) -> Self {
        let err = ApiError::new(status_of(e.kind), e.message);
        match e.reason {
            Some(r) => err.with_reason(r),
            None => err,
        }
    }
}

impl From<KernelError> for ApiError {
    fn from(e: KernelError) -> Self {
        ApiError::new(status_of(e.kind()), kernel_error_message(&e))
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound(id) => instance_not_found(ResourceType::Sessions, &id),
            SessionError::Kernel(k) => k.into(),
            other => ApiError::new(status_of(other.kind()), other.to_string()),
        }
    }
}

impl From<CollabError> for ApiError {
    fn from(e: CollabError) -> Self {
        ApiError::new(status_of(e.kind), e.message)
    }
}

impl From<LabError> for ApiError {
    fn from(e: LabError) -> Self {
        ApiError::new(status_of(e.kind), e.message)
    }
}

impl From<NbconvertError> for ApiError {
    fn from(e: NbconvertError) -> Self {
        ApiError::new(status_of(e.kind()), e.message)
    }
}

impl From<TerminalError> for ApiError {
    fn from(e: TerminalError) -> Self {
        ApiError::new(status_of(e.kind()), e.to_string())
    }
}

/// A kernel error in jupyter_server's words (also the `msg` of a failed action's event).
pub fn kernel_error_message(e: &KernelError) -> String {
    match e {
        KernelError::NoSuchKernel(id) => format!("Kernel does not exist: {id}"),
        KernelError::NoSuchKernelSpec(name) => format!("No such kernel named {name}"),
        other => other.to_string(),
    }
}

/// The 404 of a missing instance, worded as jupyter_server words it.
pub fn instance_not_found(kind: ResourceType, id: &str) -> ApiError {
    match kind {
        ResourceType::Kernels => ApiError::not_found(format!("Kernel does not exist: {id}")),
        ResourceType::Sessions => {
            ApiError::not_found(format!("Session not found: session_id='{id}'"))
        }
        ResourceType::Terminals => ApiError::not_found(format!("Terminal not found: {id}")),
        other => ApiError::not_found(format!("{other} not found: {id}")),
    }
}

/// jupyter_server's 404 for a missing file; also what a caller who may not read it gets.
pub fn contents_not_found(path: &CanonicalPath) -> ApiError {
    ApiError::not_found(format!("No such file or directory: {}", path.api_path()))
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

/// A `302 Found` redirect, as jupyter_server (tornado) answers for logins.
pub fn found(location: &str) -> axum::response::Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    response
}
