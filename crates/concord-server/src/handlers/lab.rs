//! The JupyterLab front end over HTTP: the page (`/lab`, `/lab/tree/…`, `/lab/workspaces/…`,
//! `/doc…`), its static files, federated extensions and themes, and jupyterlab_server's REST
//! API (`/lab/api/settings`, `/workspaces`, `/translations`, `/listings`, …) plus
//! jupyter_server's `/api/config/{section}`.
//!
//! The work is the `concord-lab` service's (finding JupyterLab, the page config, per-user
//! settings, workspaces and config, opening files); these handlers parse the request, call
//! it and answer. Its blocking operations run on the blocking pool.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use concord_authz::{Action, Resource, ResourceType};
use concord_lab::{
    Caching, ConfigScope, Lab, LabError, LabFile, PageRequest, ThemeAsset, JAVASCRIPT,
};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

use crate::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{query_pairs, JsonBody};
use crate::http::guard::Guard;
use crate::http::matcher::RouteParams;
use crate::state::App;

/// Run a blocking operation of the service.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LabError> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("a background task failed"))??)
}

fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn json(value: Value) -> Response {
    axum::Json(value).into_response()
}

// --- the page ------------------------------------------------------------------------------

/// The page for one request, or a page saying why there is none.
fn render_page(
    app: &App,
    guard: &Guard,
    url_path: &str,
    known_url: bool,
    params: Option<&RouteParams>,
) -> Response {
    let lab = &app.lab;
    let rel = url_path
        .strip_prefix(app.settings.base_url.trim_end_matches('/'))
        .unwrap_or(url_path);
    let param = |name: &str| params.and_then(|p| p.get(name));
    let request = PageRequest {
        url_path: url_path.to_string(),
        known_url,
        single_document: known_url && rel.starts_with("/doc"),
        workspace: param("workspace").unwrap_or("default").to_string(),
        tree_path: param("path").map(decoded).unwrap_or_default(),
        terminals_available: app.instances.contains_key(&ResourceType::Terminals)
            && guard.may(Action::Read, &Resource::service(ResourceType::Terminals)),
    };
    match lab.render_page(&request) {
        Ok(page) => {
            let status = if page.not_found {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            let mut r = (status, Html(page.html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => not_installed(app, &e.message),
    }
}

/// A plain page saying JupyterLab is missing and how to fix it (404, not a server error).
fn not_installed(app: &App, why: &str) -> Response {
    let html = crate::handlers::pages::render(
        "message.html",
        minijinja::context! {
            title => "JupyterLab is not available",
            text => why,
            link => format!("{}api", app.settings.base_url),
            link_text => "The Jupyter REST API is still served",
        },
    );
    (StatusCode::NOT_FOUND, Html(html)).into_response()
}

/// `GET /lab`, `/lab/tree/{*path}`, `/lab/workspaces/{name}[/tree/{*path}]` and the `/doc`
/// variants (single-document mode).
pub async fn page(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    render_page(&app, &guard, req.uri().path(), true, Some(&params))
}

/// `GET /lab/{*path}` (anything else under /lab): the page, telling the front end the URL
/// was not found, as jupyterlab_server's `NotFoundHandler`.
pub async fn page_not_found(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    req: Request,
) -> Response {
    render_page(&app, &guard, req.uri().path(), false, None)
}

// --- static files --------------------------------------------------------------------------

/// A file the service opened, sent with tower-http's file serving (ranges, conditional
/// requests, `ETag`, HEAD). The server never opens a path itself: tower-http's `ServeDir`
/// asks its backend for "the file at the request's path", and this backend answers with the
/// one file the service handed over, whatever the path.
#[derive(Clone)]
struct HandedFile {
    file: Arc<std::sync::Mutex<Option<std::fs::File>>>,
    metadata: std::fs::Metadata,
}

/// The handed file, open for tower-http.
struct OpenedFile {
    file: tokio::fs::File,
    metadata: std::fs::Metadata,
}

impl tokio::io::AsyncRead for OpenedFile {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncSeek for OpenedFile {
    fn start_seek(
        mut self: std::pin::Pin<&mut Self>,
        position: std::io::SeekFrom,
    ) -> std::io::Result<()> {
        std::pin::Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        std::pin::Pin::new(&mut self.file).poll_complete(cx)
    }
}

type Ready<T> = std::future::Ready<std::io::Result<T>>;

impl tower_http::services::fs::File for OpenedFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = Ready<std::fs::Metadata>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        std::future::ready(Ok(self.metadata.clone()))
    }
}

impl tower_http::services::fs::Backend for HandedFile {
    type File = OpenedFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = Ready<OpenedFile>;
    type MetadataFuture = Ready<std::fs::Metadata>;

    fn open(&self, _path: PathBuf) -> Self::OpenFuture {
        let file = self.file.lock().ok().and_then(|mut f| f.take());
        std::future::ready(match file {
            Some(file) => Ok(OpenedFile {
                file: tokio::fs::File::from_std(file),
                metadata: self.metadata.clone(),
            }),
            None => Err(std::io::ErrorKind::NotFound.into()),
        })
    }

    fn metadata(&self, _path: PathBuf) -> Self::MetadataFuture {
        std::future::ready(Ok(self.metadata.clone()))
    }
}

/// Send `file` as the answer to `req`, with its media type and caching.
async fn send_file(file: LabFile, req: Request) -> Response {
    let LabFile {
        file,
        metadata,
        content_type,
        caching,
    } = file;
    let backend = HandedFile {
        file: Arc::new(std::sync::Mutex::new(Some(file))),
        metadata,
    };
    // Nothing of the URL reaches `ServeDir`: the backend ignores the path anyway.
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::from_static("/file");
    let req = Request::from_parts(parts, body);
    let serve = tower_http::services::ServeDir::with_backend(".", backend);
    let mut response = match serve.oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    let cache_control = match caching {
        Caching::Immutable => "public, max-age=31536000, immutable",
        Caching::Revalidate => "no-cache",
    };
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
    }
    // Where tower-http names a type (it guessed one from the path it was given), the file's
    // own; scripts always say they are JavaScript, which module scripts need.
    if response.headers().contains_key(header::CONTENT_TYPE) || content_type == JAVASCRIPT {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// The answer for a file: sent, or "Not Found" (the file routes are public and say no more).
async fn file_response(
    app: &App,
    open: impl FnOnce(&Lab) -> Result<LabFile, LabError> + Send + 'static,
    req: Request,
) -> Response {
    let lab = app.lab.clone();
    match blocking(move || open(&lab)).await {
        Ok(file) => send_file(file, req).await,
        Err(e) => e.into_response(),
    }
}

/// `GET /static/{*path}`: JupyterLab's built app under `lab/`, jupyter_server's favicons
/// under `favicons/`. Public, as in jupyter_server (nothing user-specific in them).
pub async fn static_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let rel = params.get("path").unwrap_or("").to_string();
    file_response(&app, move |lab| lab.static_file(&rel), req).await
}

/// `GET /favicon.ico`.
pub async fn favicon(State(app): State<App>, req: Request) -> Response {
    file_response(&app, |lab| lab.favicon(), req).await
}

/// `GET /lab/extensions/{*path}`: federated extensions' files.
pub async fn extension_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let rel = params.get("path").unwrap_or("").to_string();
    file_response(&app, move |lab| lab.extension_file(&rel), req).await
}

/// `GET /lab/api/themes/{*path}`: theme CSS (rebased) and assets.
pub async fn theme_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let lab = app.lab.clone();
    let rel = params.get("path").unwrap_or("").to_string();
    match blocking(move || lab.theme(&rel)).await {
        Ok(ThemeAsset::Css(css)) => (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            css,
        )
            .into_response(),
        Ok(ThemeAsset::File(file)) => send_file(file, req).await,
        Err(e) => e.into_response(),
    }
}

// --- settings ------------------------------------------------------------------------------

/// What the caller may do that changes the menus their settings describe.
fn abilities(guard: &Guard) -> concord_lab::Abilities {
    concord_lab::Abilities {
        may_shut_down: guard.may(Action::Write, &Resource::service(ResourceType::Server)),
    }
}

/// `GET /lab/api/settings` (`?ids_only=true` for ids only): every plugin's settings for the
/// caller.
pub async fn list_settings(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(guard): Extension<Guard>,
    req: Request,
) -> ApiResult<Response> {
    let ids_only = query_pairs(req.uri().query())
        .iter()
        .any(|(k, v)| k == "ids_only" && v == "true");
    let user = caller.identity.username().to_string();
    let abilities = abilities(&guard);
    let lab = app.lab.clone();
    blocking(move || lab.list_settings(&user, ids_only, abilities))
        .await
        .map(json)
}

/// `GET /lab/api/settings/{*plugin}`: one plugin's settings for the caller.
pub async fn get_settings(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let id = decoded(params.get("plugin").unwrap_or(""));
    let user = caller.identity.username().to_string();
    let abilities = abilities(&guard);
    let lab = app.lab.clone();
    blocking(move || lab.settings(&user, &id, abilities))
        .await
        .map(json)
}

/// `PUT /lab/api/settings/{*plugin}` with `{"raw": "<json5>"}`: validated against the schema
/// and stored as the caller's own settings; 204.
pub async fn put_settings(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let id = decoded(params.get("plugin").unwrap_or(""));
    let raw = body
        .get("raw")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Missing raw value"))?
        .to_string();
    let user = caller.identity.username().to_string();
    let lab = app.lab.clone();
    blocking(move || lab.save_settings(&user, &id, &raw)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- workspaces ----------------------------------------------------------------------------

fn workspace_name(params: &RouteParams) -> String {
    decoded(params.get("name").unwrap_or(""))
}

/// `GET /lab/api/workspaces`: the caller's workspaces.
pub async fn list_workspaces(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let lab = app.lab.clone();
    blocking(move || lab.list_workspaces(&user)).await.map(json)
}

/// `GET /lab/api/workspaces/{*name}`: one of the caller's workspaces (an unknown one is empty).
pub async fn get_workspace(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let name = workspace_name(&params);
    let lab = app.lab.clone();
    blocking(move || lab.workspace(&user, &name))
        .await
        .map(json)
}

/// `PUT /lab/api/workspaces/{*name}`: save the caller's workspace; `metadata.id` must name it.
pub async fn put_workspace(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let name = workspace_name(&params);
    let lab = app.lab.clone();
    blocking(move || lab.save_workspace(&user, &name, &body)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /lab/api/workspaces/{*name}`: 204, or 404 when the caller has no such workspace.
pub async fn delete_workspace(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let name = workspace_name(&params);
    let lab = app.lab.clone();
    blocking(move || lab.delete_workspace(&user, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- translations, listings, licenses ------------------------------------------------------

/// `GET /lab/api/translations`: the installed language packs.
pub async fn list_translations() -> Response {
    json(Lab::translations())
}

/// `GET /lab/api/translations/{locale}`: one locale's pack (200 even when not installed, as
/// jupyterlab_server).
pub async fn get_translation(Extension(params): Extension<RouteParams>) -> Response {
    json(Lab::translation(params.get("locale").unwrap_or("default")))
}

/// `GET /lab/api/listings/{*path}`: the extension manager's allow and block lists.
pub async fn listings() -> Response {
    json(Lab::listings())
}

/// `GET /lab/api/update`: JupyterLab's "check for updates".
pub async fn update_check() -> Response {
    json(Lab::update_check())
}

/// `GET /lab/api/news`: the news feed.
pub async fn news() -> Response {
    json(Lab::news())
}

/// `GET /lab/api/licenses/`: the third-party licenses of the front end and its extensions.
pub async fn licenses(State(app): State<App>, req: Request) -> ApiResult<Response> {
    let pairs = query_pairs(req.uri().query());
    let arg = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(format) = arg("format").filter(|f| f != "json") {
        return Err(ApiError::bad_request(format!(
            "Unsupported license report format {format:?}: this server writes json"
        )));
    }
    // jupyterlab_server takes a regular expression; the front end sends `.*` or a name.
    let wanted = arg("bundles").filter(|b| b != ".*");
    let lab = app.lab.clone();
    blocking(move || lab.licenses(wanted.as_deref()))
        .await
        .map(json)
}

// --- /api/config/{section} -----------------------------------------------------------------

/// Whether a write asks for the server-wide layer (`?scope=server`); that needs
/// `config:write`, decided and audited here as a second resource of the request.
fn server_scope(guard: &Guard, req_query: Option<&str>) -> ApiResult<bool> {
    let pairs = query_pairs(req_query);
    match pairs
        .iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
    {
        None | Some("user") => Ok(false),
        Some("server") => {
            guard.require(
                Action::Write,
                &Resource::service(ResourceType::Config),
                || ApiError::not_found("Not Found"),
            )?;
            Ok(true)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "Unknown config scope {other:?}: use 'user' (default) or 'server'"
        ))),
    }
}

/// `GET /api/config/{section}`: the server-wide section with the caller's own on top
/// (`?scope=server` or `?scope=user` for one layer alone).
pub async fn get_config(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> ApiResult<Response> {
    let section = params.get("section").unwrap_or("").to_string();
    Lab::check_config_section(&section)?;
    let scope = query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v);
    let scope = match scope.as_deref() {
        None => ConfigScope::Merged,
        Some("server") => ConfigScope::Server,
        Some("user") => ConfigScope::User,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unknown config scope {other:?}: use 'user' or 'server'"
            )))
        }
    };
    let user = caller.identity.username().to_string();
    let lab = app.lab.clone();
    blocking(move || lab.config_section(&user, &section, scope))
        .await
        .map(json)
}

async fn write_config(
    app: App,
    caller: Caller,
    guard: Guard,
    params: RouteParams,
    query: Option<String>,
    body: Bytes,
    replace: bool,
) -> ApiResult<Response> {
    let section = params.get("section").unwrap_or("").to_string();
    Lab::check_config_section(&section)?;
    let server = server_scope(&guard, query.as_deref())?;
    let section_value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))?;
    let user = caller.identity.username().to_string();
    let lab = app.lab.clone();
    let value = blocking(move || {
        let layer_user = (!server).then_some(user.as_str());
        lab.write_config_section(layer_user, &section, section_value, replace)
    })
    .await?;
    // As jupyter_server: PUT answers 204, PATCH the updated section.
    if replace {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(json(value))
}

/// `PATCH /api/config/{section}`: merge into the caller's own section (`?scope=server`: the
/// server-wide one, which needs `config:write`); returns the updated layer.
pub async fn patch_config(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> ApiResult<Response> {
    let query = req.uri().query().map(String::from);
    let body = body_bytes(req).await?;
    write_config(app, caller, guard, params, query, body, false).await
}

/// `PUT /api/config/{section}`: replace the caller's own section (`?scope=server` as PATCH).
pub async fn put_config(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> ApiResult<Response> {
    let query = req.uri().query().map(String::from);
    let body = body_bytes(req).await?;
    write_config(app, caller, guard, params, query, body, true).await
}

async fn body_bytes(req: Request) -> ApiResult<Bytes> {
    axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Config body too large"))
}
