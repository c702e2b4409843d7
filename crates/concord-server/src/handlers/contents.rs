//! `/api/contents/…`, `/files/…`, `/view/…`: thin handlers over `concord_contents`.
//!
//! The route's declared permission was already granted on the resolved path. A second path
//! named in the body (`copy_from`, the PATCH `path`) is required here through the `Guard`;
//! listings and `writable` are filtered through a `PathAccess` backed by the policy.
//!
//! The contents service reports what it does (`ContentsManager::subscribe_actions`); the
//! adapter in `services/contents.rs` publishes those actions as jupyter_server's
//! `contents_service` events (see `docs/events.md`). These handlers publish nothing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use concord_authz::{Action, CanonicalPath, Resource};
use concord_contents::{
    Body, Caller as ContentsCaller, Content, ContentsError, ContentsManager, CreateRequest,
    GetOptions, Missing, Model, PathAccess, RenameRequest,
};
use std::sync::Arc;

use crate::bodies::{BlockingBody, BodyCharge};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{query_pairs, url_escape, BodyBytes};
use crate::http::guard::{Guard, PathForm, TargetPath};
use crate::http::matcher::RouteParams;
use crate::state::App;

/// Per-path decisions of the policy for one caller.
struct PolicyAccess(Guard);

impl PathAccess for PolicyAccess {
    fn may_read(&self, path: &CanonicalPath) -> bool {
        self.0.may(Action::Read, &Resource::contents(path.clone()))
    }
    fn may_write(&self, path: &CanonicalPath) -> bool {
        self.0.may(Action::Write, &Resource::contents(path.clone()))
    }
    fn readable_children(&self, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        self.0.may_children(Action::Read, dir, names)
    }
    fn writable_children(&self, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        self.0.may_children(Action::Write, dir, names)
    }
}

/// What a contents route answers for a path that does not exist: the pipeline answers a
/// path the caller may not see with exactly this, so a refusal never tells what lies there.
/// (A POST answers as for a new untitled file, a PUT as for a file, whatever the body.)
pub fn not_found(
    pattern: &str,
    method: &axum::http::Method,
    params: &RouteParams,
    path: &CanonicalPath,
) -> ApiError {
    use axum::http::Method;
    let op = if pattern.ends_with("/checkpoints/{checkpoint_id}") {
        Missing::Checkpoint(params.get("checkpoint_id").unwrap_or_default())
    } else if pattern == "/api/contents/{*path}" {
        match *method {
            Method::PUT => Missing::Save,
            Method::POST => Missing::CreateIn,
            Method::PATCH | Method::DELETE => Missing::Change,
            _ => Missing::Read,
        }
    } else {
        Missing::Read
    };
    ContentsError::missing(op, path).into()
}

/// Run blocking file work off the async threads, with the caller's policy access.
pub(crate) async fn run<T, F>(app: &App, guard: &Guard, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&ContentsManager, &ContentsCaller<'_>) -> Result<T, ContentsError> + Send + 'static,
{
    let cm = app.contents.clone();
    let guard = guard.clone();
    tokio::task::spawn_blocking(move || {
        let username = guard.identity().username().to_string();
        let access = PolicyAccess(guard);
        let caller = ContentsCaller::new(&username, &access);
        work(&cm, &caller)
    })
    .await
    .map_err(|_| ApiError::internal("The contents operation failed unexpectedly"))?
    .map_err(ApiError::from)
}

fn http_date(t: std::time::SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn model_response(app: &App, status: StatusCode, model: &Model, location: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&http_date(model.modified_time)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let loc = format!(
            "{}api/contents/{}",
            app.settings.base_url,
            url_escape(&model.path)
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            headers.insert(header::LOCATION, v);
        }
    }
    let mut body = Vec::with_capacity(json_size_hint(model));
    if model.write_json(&mut body).is_err() {
        body.clear();
    }
    (status, headers, body).into_response()
}

/// About how long `model`'s JSON is, so it is written into one buffer without regrowing
/// (a 10,000-entry listing is ~3 MB; a notebook about its file's size).
fn json_size_hint(model: &Model) -> usize {
    // The fields of a model without content, their names and punctuation included.
    const FIXED: usize = 280;
    let own = FIXED + model.name.len() + model.path.len();
    own + match &model.content {
        None => 0,
        Some(Content::Directory(entries)) => entries
            .iter()
            .map(|e| FIXED + e.name.len() + e.path.len() + e.mimetype.map_or(0, str::len))
            .sum(),
        Some(Content::Text(text)) => text.len() + text.len() / 8,
        Some(Content::Notebook(_)) => {
            let size = usize::try_from(model.size.unwrap_or(0)).unwrap_or(0);
            size + size / 8
        }
    }
}

/// `GET /api/contents/{path}`.
pub async fn get(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    req: Request,
) -> ApiResult<Response> {
    let query = query_pairs(req.uri().query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (kind, format, content, hash) = (
        param("type"),
        param("format"),
        param("content"),
        param("hash"),
    );
    let opts = GetOptions::from_query(
        kind.as_deref(),
        format.as_deref(),
        content.as_deref(),
        hash.as_deref(),
    )?;
    let path = target.requested;
    let model = run(&app, &guard, move |cm, c| cm.get(c, &path, &opts)).await?;
    Ok(model_response(&app, StatusCode::OK, &model, false))
}

/// `PUT /api/contents/{path}`: save, create, upload (also chunked). The body is streamed
/// to the contents service, which writes a file's content to disk as it arrives.
pub async fn put(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    req: Request,
) -> ApiResult<Response> {
    let charge = req.extensions().get::<Arc<BodyCharge>>().cloned();
    let path = target.requested.clone();
    let outcome = match charge {
        Some(charge) => {
            let _turn = app.bodies.stream_turn().await;
            charge.stream();
            let mut body =
                BlockingBody::feed(req.into_body(), charge.clone(), app.settings.max_body_size);
            let saved = run(&app, &guard, move |cm, c| {
                cm.put_stream(c, &path, &mut body)
            })
            .await;
            // A body that could not be read is that answer, whatever the service made of it.
            match charge.failure() {
                Some(failure) => return Err(failure.to_api_error()),
                None => saved?,
            }
        }
        None => run(&app, &guard, move |cm, c| cm.put(c, &path, Body::Empty)).await?,
    };
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(model_response(&app, status, &outcome.model, true))
}

/// `POST /api/contents/{path}`: new untitled entry, or copy (`copy_from`, which needs read).
pub async fn post(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    BodyBytes(body): BodyBytes,
) -> ApiResult<Response> {
    let body = Body::<CreateRequest>::from_json(&body)?;
    if let Body::Model(request) = &body {
        if let Some(from) = request.copy_from.as_str().filter(|from| !from.is_empty()) {
            guard.require_path(Action::Read, from, PathForm::Url)?;
        }
    }
    let path = target.requested;
    let model = run(&app, &guard, move |cm, c| cm.post(c, &path, body)).await?;
    Ok(model_response(&app, StatusCode::CREATED, &model, true))
}

/// `PATCH /api/contents/{path}`: rename or move (the new `path` needs write).
pub async fn patch(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    BodyBytes(body): BodyBytes,
) -> ApiResult<Response> {
    let body = concord_contents::parse_json_body(&body)?;
    let request = RenameRequest::from_body(body)?;
    if let Some(to) = request.path.as_str() {
        guard.require_path(Action::Write, to, PathForm::Url)?;
    }
    let path = target.requested;
    let model = run(&app, &guard, move |cm, c| cm.patch(c, &path, &request)).await?;
    Ok(model_response(&app, StatusCode::OK, &model, true))
}

/// `DELETE /api/contents/{path}`.
pub async fn delete(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
) -> ApiResult<Response> {
    let path = target.requested;
    run(&app, &guard, move |cm, c| cm.delete(c, &path)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/contents/{path}/checkpoints`.
pub async fn list_checkpoints(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
) -> ApiResult<Response> {
    let path = target.requested;
    let list = run(&app, &guard, move |cm, c| cm.list_checkpoints(c, &path)).await?;
    Ok(json_response(StatusCode::OK, &list))
}

/// `POST /api/contents/{path}/checkpoints`.
pub async fn create_checkpoint(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
) -> ApiResult<Response> {
    let path = target.requested;
    let api_path = path.api_path().to_string();
    let cp = run(&app, &guard, move |cm, c| cm.create_checkpoint(c, &path)).await?;
    let mut response = json_response(StatusCode::CREATED, &cp);
    let loc = format!(
        "{}api/contents/{}/checkpoints/{}",
        app.settings.base_url,
        url_escape(&api_path),
        url_escape(&cp.id)
    );
    if let Ok(v) = HeaderValue::from_str(&loc) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn checkpoint_id(params: &RouteParams) -> String {
    params.get("checkpoint_id").unwrap_or_default().to_string()
}

/// `POST /api/contents/{path}/checkpoints/{checkpoint_id}`: restore.
pub async fn restore_checkpoint(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let (path, id) = (target.requested, checkpoint_id(&params));
    run(&app, &guard, move |cm, c| {
        cm.restore_checkpoint(c, &path, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/contents/{path}/checkpoints/{checkpoint_id}`.
pub async fn delete_checkpoint(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let (path, id) = (target.requested, checkpoint_id(&params));
    run(&app, &guard, move |cm, c| {
        cm.delete_checkpoint(c, &path, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/contents/{path}/trust`: the caller trusts the notebook (for them only).
pub async fn trust(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
) -> ApiResult<Response> {
    let path = target.requested;
    run(&app, &guard, move |cm, c| cm.trust(c, &path)).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `GET /files/{path}` (`?download=…` or a notebook → attachment), streamed. Users' files
/// are sandboxed: no same-origin, so an HTML or SVG file cannot act as the user.
pub async fn files(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    req: Request,
) -> ApiResult<Response> {
    let query = query_pairs(req.uri().query());
    // jupyter_server: any non-empty `download` value, and every notebook.
    let download = query
        .iter()
        .rev()
        .find(|(k, _)| k == "download")
        .is_some_and(|(_, v)| !v.is_empty());
    let versioned = query.iter().any(|(k, _)| k == "v");
    let path = target.requested;
    let file = run(&app, &guard, move |cm, c| cm.read_file(c, &path)).await?;
    let content_type = if file.name.ends_with(".ipynb") {
        "application/x-ipynb+json".to_string()
    } else {
        match file.mimetype {
            Some("text/plain") => "text/plain; charset=UTF-8".to_string(),
            Some(m) => m.to_string(),
            None => "application/octet-stream".to_string(),
        }
    };
    let disposition = (download || file.name.ends_with(".ipynb"))
        .then(|| super::file_response::attachment_disposition(&file.name));
    let presentation = super::file_response::Presentation {
        content_type,
        disposition,
        versioned,
    };
    let mut response = super::file_response::respond(file, req.headers(), presentation);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `GET /view/{path}`: a page showing the file in a sandboxed frame.
pub async fn view(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
) -> ApiResult<Response> {
    let path = target.requested;
    let api_path = path.api_path().to_string();
    let model = run(&app, &guard, move |cm, c| cm.stat(c, &path)).await?;
    if model.kind == concord_contents::ContentType::Directory {
        return Err(ApiError::not_found(format!(
            "File {api_path} does not exist"
        )));
    }
    let src = format!("{}files/{}", app.settings.base_url, url_escape(&api_path));
    let title = html_escape(&model.name);
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>html,body,iframe{{margin:0;border:0;width:100%;height:100%}}</style></head>\
         <body><iframe src=\"{}\" sandbox=\"allow-scripts\"></iframe></body></html>\n",
        html_escape(&src)
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        html,
    )
        .into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}
