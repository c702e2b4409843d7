//! `/api/nbconvert`, `/nbconvert/{format}/{path}` and `POST /nbconvert/{format}`: thin
//! handlers over `concord_nbconvert`, answering as jupyter_server's nbconvert handlers.
//!
//! A conversion runs in the caller's reading sandbox (their kernels' confinement without
//! write grants), so an exporter that reads beside the notebook sees only what the caller
//! may read. The pipeline gives every answer of the export routes jupyter_server's
//! sandboxing CSP (`http/checks.rs`, `sandboxes_answers`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, Owner, Resource, ResourceType};
use concord_contents::{Content, ContentType, GetOptions};
use concord_nbconvert::{ConvertRequest, Converted, Nbconvert};
use serde_json::Value;
use std::sync::Arc;

use super::contents::run;
use super::file_response::{attachment_disposition, http_date, whole_seconds};
use crate::http::error::{found, status_of, ApiError, ApiResult};
use crate::http::extract::{query_pairs, url_escape, JsonBody};
use crate::http::guard::{Guard, TargetPath};
use crate::http::matcher::RouteParams;
use crate::state::App;

/// What jupyter_server's export handlers send: no copy may be kept.
const NO_STORE: &str = "no-store, no-cache, must-revalidate, max-age=0";

/// `GET /api/nbconvert`: the installed nbconvert's exporters and their MIME types (none
/// when exports are switched off).
pub async fn formats(State(app): State<App>) -> ApiResult<Response> {
    let Some(service) = &app.nbconvert else {
        return Ok(Json(serde_json::json!({})).into_response());
    };
    Ok(Json(&*service.formats().await?).into_response())
}

/// `GET /nbconvert/{format}/{path}`: the notebook at `path` exported; `download=true` makes
/// it an attachment. A path that is not a notebook is redirected to `/files/` (a directory
/// to `/tree/`), as jupyter_server does.
pub async fn export_file(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(target): Extension<TargetPath>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> ApiResult<Response> {
    // jupyter_server's handler belongs to the `nbconvert` resource; the row required the path.
    guard.require(
        Action::Read,
        &Resource::service(ResourceType::Nbconvert),
        || ApiError::not_found("Not Found"),
    )?;
    let format = params.get("format").unwrap_or_default();
    let service = exporter(&app, format).await?;
    let query = query_pairs(req.uri().query());
    let last = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_lowercase())
    };
    let download = last("download").is_some_and(|v| v == "true");
    let sanitize_html = (format == "html")
        .then(|| last("sanitize_html").map(|v| v == "true"))
        .flatten();

    let path = target.requested.clone();
    let stat = {
        let path = path.clone();
        run(&app, &guard, move |cm, c| cm.stat(c, &path)).await?
    };
    if stat.kind != ContentType::Notebook {
        let room = match stat.kind {
            ContentType::Directory => "tree",
            _ => "files",
        };
        let location = format!(
            "{}{room}/{}",
            app.settings.base_url,
            url_escape(path.api_path())
        );
        return Ok(found(&location));
    }
    let model = {
        let path = path.clone();
        let opts = GetOptions {
            content: true,
            kind: Some(ContentType::Notebook),
            format: None,
            hash: false,
        };
        run(&app, &guard, move |cm, c| cm.get(c, &path, &opts)).await?
    };
    let Some(Content::Notebook(notebook)) = &model.content else {
        return Err(ApiError::internal(format!(
            "{} could not be read as a notebook",
            path.api_path()
        )));
    };
    let modified = chrono::DateTime::<chrono::Utc>::from(model.modified_time);
    // Where the exporter may look for files the notebook refers to (jupyter_server's
    // `resources.metadata.path`): the notebook's directory as the file system resolves it.
    let mut directory = app.contents.root_dir().to_path_buf();
    if let Some(parent) = target.resolved.parent() {
        directory.extend(parent.segments());
    }
    let request = ConvertRequest {
        format: format.to_string(),
        notebook: notebook_bytes(notebook)?,
        name: splitext(&model.name).0.to_string(),
        modified_date: Some(modified.format("%B %-d, %Y").to_string()),
        path: Some(directory),
        sanitize_html,
    };
    let converted = convert(&app, &guard, &service, &request).await?;

    let mut headers = HeaderMap::new();
    let last_modified = http_date(whole_seconds(model.modified_time));
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if download && !converted.zipped {
        insert(
            &mut headers,
            header::CONTENT_DISPOSITION,
            &attachment_disposition(&file_name(&model.name, &converted)),
        );
    }
    Ok(respond(&model.name, converted, headers, true))
}

/// `POST /nbconvert/{format}`: the notebook in the body (`{"name": …, "content": {…}}`)
/// exported.
pub async fn export_posted(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    body: Result<JsonBody<Value>, ApiError>,
) -> ApiResult<Response> {
    let format = params.get("format").unwrap_or_default();
    let service = exporter(&app, format).await?;
    let JsonBody(body) = body?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("notebook.ipynb")
        .to_string();
    let notebook = body
        .get("content")
        .ok_or_else(|| ApiError::bad_request("The request body has no notebook (its `content`)"))?;
    let request = ConvertRequest {
        format: format.to_string(),
        notebook: notebook_bytes(notebook)?,
        name: posted_stem(&name).to_string(),
        ..ConvertRequest::default()
    };
    let converted = convert(&app, &guard, &service, &request).await?;
    Ok(respond(&name, converted, HeaderMap::new(), false))
}

/// The service, when it offers `format`; otherwise jupyter_server's 404 for an unknown
/// format (also when exports are switched off).
async fn exporter(app: &App, format: &str) -> ApiResult<Arc<Nbconvert>> {
    let unknown = || ApiError::not_found(format!("No exporter for format: {format}"));
    let service = app.nbconvert.clone().ok_or_else(unknown)?;
    if !service.formats().await?.contains_key(format) {
        return Err(unknown());
    }
    Ok(service)
}

/// Convert in the caller's reading sandbox.
async fn convert(
    app: &App,
    guard: &Guard,
    service: &Nbconvert,
    request: &ConvertRequest,
) -> ApiResult<Converted> {
    let sandbox = app
        .confinement
        .reading_sandbox_for(&Owner::of(guard.identity()))
        .map_err(|why| {
            ApiError::new(
                status_of(concord_authz::ErrorKind::Unavailable),
                format!("The export cannot start: {why}"),
            )
        })?;
    Ok(service.convert(request, &sandbox).await?)
}

/// The export as jupyter_server sends it: a zip (output and resource files) is always an
/// attachment named after the notebook; otherwise the exporter's type. `no_store`: the
/// file route's `Cache-Control`.
fn respond(
    notebook_name: &str,
    converted: Converted,
    mut headers: HeaderMap,
    no_store: bool,
) -> Response {
    if converted.zipped {
        insert(
            &mut headers,
            header::CONTENT_DISPOSITION,
            &attachment_disposition(&file_name(notebook_name, &converted)),
        );
    }
    if let Some(content_type) = converted.content_type() {
        insert(&mut headers, header::CONTENT_TYPE, &content_type);
    } else {
        // tornado's default, which jupyter_server keeps when the exporter names no type.
        insert(
            &mut headers,
            header::CONTENT_TYPE,
            "text/html; charset=UTF-8",
        );
    }
    if no_store || converted.zipped {
        insert(&mut headers, header::CACHE_CONTROL, NO_STORE);
    }
    (StatusCode::OK, headers, converted.bytes).into_response()
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn notebook_bytes(notebook: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(notebook)
        .map_err(|e| ApiError::internal(format!("The notebook could not be encoded: {e}")))
}

/// The download's name: the notebook's stem and the export's extension (`.zip` for a zip).
fn file_name(notebook_name: &str, converted: &Converted) -> String {
    let stem = splitext(notebook_name).0;
    if converted.zipped {
        format!("{stem}.zip")
    } else {
        format!("{stem}{}", converted.file_extension)
    }
}

/// Python's `os.path.splitext` of a file name: the extension starts at the last dot that
/// is not part of the leading dots.
fn splitext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if name[..dot].chars().any(|c| c != '.') => name.split_at(dot),
        _ => (name, ""),
    }
}

/// The POST route's `name[: name.rfind(".")]`: without a dot, Python's slice drops the
/// last character, and jupyter_server's title shows that.
fn posted_stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) => &name[..dot],
        None => name
            .char_indices()
            .last()
            .map_or(name, |(last, _)| &name[..last]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_as_python_splits_them() {
        // Expected values from Python's os.path.splitext and name[:name.rfind(".")].
        assert_eq!(splitext("a.ipynb"), ("a", ".ipynb"));
        assert_eq!(splitext("a.b.ipynb"), ("a.b", ".ipynb"));
        assert_eq!(splitext(".ipynb"), (".ipynb", ""));
        assert_eq!(splitext("..a"), ("..a", ""));
        assert_eq!(splitext("noext"), ("noext", ""));
        assert_eq!(posted_stem("a.ipynb"), "a");
        assert_eq!(posted_stem("noext"), "noex");
        assert_eq!(posted_stem("é"), "");
        assert_eq!(posted_stem(""), "");
    }
}
