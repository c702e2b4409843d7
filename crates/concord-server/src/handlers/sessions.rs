//! `/api/sessions…`: notebook sessions with owners, over `concord_kernels::SessionManager`.
//!
//! POST and PATCH authorize the session's path (read on the notebook path; write on the
//! session owned by the caller, and on the kernel it may start). JupyterLab creates a
//! session with a placeholder path beside the notebook, then PATCHes the real one: the PATCH
//! is authorized the same way. Lists hold only what the caller may read.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, CanonicalPath, Owner, Resource, ResourceType};
use concord_kernels::{KernelError, NewSession, SessionError, SessionPatch};
use serde_json::{json, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::http::guard::{Guard, PathForm};
use crate::http::matcher::RouteParams;
use crate::services::kernels::session_resource;
use crate::state::App;

/// The directory a session's kernel runs in (jupyter_server's `get_kernel_path`).
fn kernel_dir(path: &CanonicalPath) -> CanonicalPath {
    path.parent().unwrap_or_else(CanonicalPath::root)
}

/// jupyter_server's 501 for a kernelspec that is not installed.
fn no_such_kernelspec(name: &str, starting: bool) -> Response {
    let (message, short) = if starting {
        (
            format!("The '{name}' kernel could not be started: 'No such kernel named {name}'"),
            format!("Error starting kernel {name}"),
        )
    } else {
        (
            format!(
                "The '{name}' kernel is not available. Please pick another suitable kernel instead, or install that kernel."
            ),
            format!("{name} not found"),
        )
    };
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(json!({"message": message, "short_message": short})),
    )
        .into_response()
}

/// The policy hook of the sessions service: may the caller use (execute in) a kernel that
/// `owner` started for a notebook at `path`?
fn share_hook<'a>(
    guard: &'a Guard,
    app: &'a App,
) -> impl Fn(&Owner, &str) -> bool + Send + Sync + 'a {
    move |owner: &Owner, path: &str| {
        let Ok(p) = CanonicalPath::parse(path) else {
            return false;
        };
        let dir = kernel_dir(&app.paths.resolve(&p).unwrap_or(p));
        guard.may(
            Action::Execute,
            &Resource::owned(ResourceType::Kernels, None, owner.clone(), Some(dir)),
        )
    }
}

/// Authorize a session for `raw_path` owned by `owner` (read on the notebook path, write on
/// the session and on a kernel in its directory).
fn authorize_session(
    guard: &Guard,
    raw_path: &str,
    id: Option<String>,
    owner: Owner,
) -> ApiResult<()> {
    let path = guard
        .require_path(Action::Read, raw_path, PathForm::Api)?
        .resolved;
    let forbidden = || ApiError::forbidden("You may not open a session there");
    guard.require(
        Action::Write,
        &Resource::owned(
            ResourceType::Sessions,
            id,
            owner.clone(),
            Some(path.clone()),
        ),
        forbidden,
    )?;
    guard.require(
        Action::Write,
        &Resource::owned(ResourceType::Kernels, None, owner, Some(kernel_dir(&path))),
        forbidden,
    )
}

/// `GET /api/sessions`: the sessions the caller may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let models: Vec<Value> = svc
        .sessions
        .list()
        .into_iter()
        .filter(|s| guard.may(Action::Read, &session_resource(&app.paths, s)))
        .map(|s| s.model)
        .collect();
    Ok(Json(models).into_response())
}

/// `POST /api/sessions {path, type, name?, kernel?: {name?, id?}}`: 201 with the model (the
/// caller's existing session for that path, or one the policy shares, or a new one).
pub async fn create(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let req = NewSession::from_json(&body)?;
    let owner = Owner::of(guard.identity());
    authorize_session(&guard, &req.path, None, owner.clone())?;
    let kernel_name = req
        .kernel
        .name
        .clone()
        .unwrap_or_else(|| svc.kernels.config().default_kernel_name.clone());
    let hook = share_hook(&guard, &app);
    let info = match svc
        .sessions
        .create(req, owner, &hook, &guard.limits())
        .await
    {
        Ok(info) => info,
        Err(SessionError::Kernel(KernelError::NoSuchKernelSpec(_))) => {
            return Ok(no_such_kernelspec(&kernel_name, false))
        }
        Err(e) => return Err(e.into()),
    };
    let location = format!(
        "{}api/sessions/{}",
        app.settings.base_url,
        crate::http::extract::url_escape(&info.id)
    );
    let mut response = (StatusCode::CREATED, Json(info.model)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn session_id(params: &RouteParams) -> String {
    params.get("session_id").unwrap_or_default().to_string()
}

/// `GET /api/sessions/{session_id}`.
pub async fn get(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let info = svc.sessions.get(&session_id(&params))?;
    Ok(Json(info.model).into_response())
}

/// `PATCH /api/sessions/{session_id}`: rename (path, name), retype, or change the kernel.
/// A new path is authorized as on creation.
pub async fn update(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let id = session_id(&params);
    if !body.is_object() {
        return Err(ApiError::bad_request("No JSON data provided"));
    }
    let patch = SessionPatch::from_json(&body)?;
    let before = svc.sessions.get(&id)?;
    let caller = Owner::of(guard.identity());
    if let Some(path) = &patch.path {
        authorize_session(&guard, path, Some(id.clone()), before.owner.clone())?;
    }
    let starts_kernel = patch
        .kernel
        .as_ref()
        .is_some_and(|k| k.id.is_none() && k.name.is_some());
    if starts_kernel {
        let path = patch.path.as_deref().unwrap_or(&before.path);
        let dir = CanonicalPath::parse(path)
            .map(|p| kernel_dir(&app.paths.resolve(&p).unwrap_or(p)))
            .ok();
        guard.require(
            Action::Write,
            &Resource::owned(ResourceType::Kernels, None, caller.clone(), dir),
            || ApiError::forbidden("You may not start a kernel there"),
        )?;
    }
    let kernel_name = patch
        .kernel
        .as_ref()
        .and_then(|k| k.name.clone())
        .unwrap_or_default();
    let hook = share_hook(&guard, &app);
    match svc
        .sessions
        .update(&id, patch, caller, &hook, &guard.limits())
        .await
    {
        Ok(info) => Ok(Json(info.model).into_response()),
        Err(SessionError::Kernel(KernelError::NoSuchKernelSpec(_))) => {
            Ok(no_such_kernelspec(&kernel_name, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/sessions/{session_id}`: 204; the kernel is shut down when no other session
/// uses it.
pub async fn delete(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    svc.sessions.delete(&session_id(&params)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
