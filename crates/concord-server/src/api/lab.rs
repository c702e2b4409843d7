//! The JupyterLab front end: the page (`/lab`, `/lab/tree/…`, `/lab/workspaces/…`, `/doc…`),
//! its static files, federated extensions and themes, and jupyterlab_server's REST API
//! (`/lab/api/settings`, `/workspaces`, `/translations`, `/listings`) plus jupyter_server's
//! `/api/config/{section}`.
//!
//! JupyterLab itself is not part of concord: the installed `jupyterlab` package is found at
//! start-up (see [`lab_install`](super::lab_install)) and served as it is; its `index.html`
//! (a Jinja2 template) is rendered with minijinja. User settings, workspaces and front-end
//! config are kept per user (see [`lab_store`](super::lab_store)).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use concord_authz::{Action, Resource, ResourceType};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value as JValue};
use minijinja::Environment;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tower::ServiceExt;

use super::lab_install::LabInstall;
use super::lab_store::{Item, LabStore, Stored};
use crate::auth::Caller;
use crate::config::AuthMode;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{query_pairs, JsonBody};
use crate::http::guard::Guard;
use crate::http::matcher::RouteParams;
use crate::state::App;

pub use super::lab_install::LabOptions;

/// The JupyterLab front end: the installation (or why there is none) and the per-user store.
pub struct Lab {
    /// The installed JupyterLab, or a message saying why it could not be found.
    pub install: Result<LabInstall, String>,
    env: Option<Environment<'static>>,
    /// Per-user settings, workspaces and config.
    pub store: LabStore,
}

impl Lab {
    /// Find JupyterLab as the settings say and open the per-user store.
    pub async fn start(settings: &crate::config::Settings) -> Lab {
        let mut options = settings.file.lab.clone();
        if settings.cli.lab.lab_app_dir.is_some() {
            options.lab_app_dir = settings.cli.lab.lab_app_dir.clone();
        }
        if settings.cli.lab.labextensions_dir.is_some() {
            options.labextensions_dir = settings.cli.lab.labextensions_dir.clone();
        }
        let install = LabInstall::discover(&options).await;
        let env = match &install {
            Ok(i) => {
                tracing::info!(
                    "JupyterLab {} from {} ({} federated extensions)",
                    i.version,
                    i.app_dir.display(),
                    i.federated.len()
                );
                let mut env = jinja2_environment();
                match env.add_template_owned("index.html", i.template.clone()) {
                    Ok(()) => Some(env),
                    Err(e) => {
                        tracing::error!("JupyterLab's index.html does not parse: {e}");
                        None
                    }
                }
            }
            Err(why) => {
                tracing::warn!("{why}");
                None
            }
        };
        Lab {
            install,
            env,
            store: LabStore::new(&settings.state_dir),
        }
    }
}

/// HTML escaping as Jinja2's (markupsafe): `& < > " '` only, so URLs keep their slashes.
fn markupsafe_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A minijinja environment that renders JupyterLab's Jinja2 templates as Jinja2 does:
/// `page_config.copy()`/`update(**kw)` work, and escaping is markupsafe's.
fn jinja2_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(|_, value, method, args| {
        // Python's dict methods that JupyterLab's template calls on page_config.
        match value.downcast_object_ref::<PageConfig>() {
            Some(config) => config.call_dict_method(method, args),
            None => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    });
    env.set_formatter(|out, state, value| {
        let escape =
            !matches!(state.auto_escape(), minijinja::AutoEscape::None) && !value.is_safe();
        match value.as_str() {
            Some(text) if escape => out
                .write_str(&markupsafe_escape(text))
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure)),
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    for name in ["escape", "e"] {
        env.add_filter(name, |value: JValue| {
            if value.is_safe() {
                return value;
            }
            JValue::from_safe_string(markupsafe_escape(&value.to_string()))
        });
    }
    env
}

fn lab(app: &App) -> ApiResult<&Lab> {
    app.lab
        .as_deref()
        .ok_or_else(|| ApiError::not_found("The JupyterLab front end is not running"))
}

fn install(app: &App) -> ApiResult<&LabInstall> {
    lab(app)?
        .install
        .as_ref()
        .map_err(|why| ApiError::not_found(why.clone()))
}

// --- the page ------------------------------------------------------------------------------

/// `page_config` as the template sees it: a map with Python's `copy()` and `update(**kw)`.
#[derive(Debug, Default)]
struct PageConfig(Mutex<BTreeMap<String, JValue>>);

impl PageConfig {
    fn entries(&self) -> BTreeMap<String, JValue> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn call_dict_method(&self, method: &str, args: &[JValue]) -> Result<JValue, minijinja::Error> {
        match method {
            "copy" => Ok(JValue::from_object(PageConfig(Mutex::new(self.entries())))),
            "update" => {
                let (kwargs,): (Kwargs,) = minijinja::value::from_args(args)?;
                if let Ok(mut map) = self.0.lock() {
                    for name in kwargs.args() {
                        let v: JValue = kwargs.get(name)?;
                        map.insert(name.to_string(), v);
                    }
                }
                Ok(JValue::from(()))
            }
            _ => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}

impl Object for PageConfig {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key.as_str()?;
        self.0.lock().ok()?.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.entries().into_keys().map(JValue::from).collect())
    }
}

/// serde_json → minijinja, without minijinja's serde feature.
fn to_jinja(value: &Value) -> JValue {
    match value {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(a) => JValue::from(a.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(o) => JValue::from(
            o.iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<String, JValue>>(),
        ),
    }
}

/// Kernel message types that do not change the displayed kernel status (jupyterlab_server).
const UNTRACKED_MESSAGE_TYPES: &[&str] = &[
    "comm_info_request",
    "comm_info_reply",
    "kernel_info_request",
    "kernel_info_reply",
    "shutdown_request",
    "shutdown_reply",
    "interrupt_request",
    "interrupt_reply",
    "debug_request",
    "debug_reply",
    "stream",
    "display_data",
    "update_display_data",
    "execute_input",
    "execute_result",
    "error",
    "status",
    "clear_output",
    "debug_event",
    "input_request",
    "input_reply",
];

/// What the URL asked for.
struct PageRequest {
    single_document: bool,
    workspace: String,
    tree_path: String,
    not_found_url: Option<String>,
}

/// The page config of one request. Server paths (`serverRoot`, `*Dir`, `rootUri`) are left
/// out on purpose: in a shared server they would tell every user the server's file layout.
fn page_config(app: &App, i: &LabInstall, guard: &Guard, page: &PageRequest) -> Map<String, Value> {
    let s = &app.settings;
    let base = s.base_url.as_str();
    let full = |rel: &str| format!("{}{}", base, rel.trim_start_matches('/'));
    let contents = (&s.cli.contents, &s.file.contents);
    let allow_hidden = contents
        .0
        .allow_hidden
        .or(contents.1.allow_hidden)
        .unwrap_or(false);
    let to_trash = contents
        .0
        .delete_to_trash
        .or(contents.1.delete_to_trash)
        .unwrap_or(true);
    let terminals = app.instances.contains_key(&ResourceType::Terminals)
        && guard.may(Action::Read, &Resource::service(ResourceType::Terminals));
    let may_quit = guard.may(Action::Write, &Resource::service(ResourceType::Server));
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    put("appName", json!("JupyterLab"));
    put("appNamespace", json!("lab"));
    put("appVersion", json!(i.version));
    put("appUrl", json!("/lab"));
    put("buildAvailable", json!(false));
    put("buildCheck", json!(false));
    put("cacheFiles", json!(false));
    put("copyAbsolutePath", json!(false));
    put("allow_hidden_files", json!(allow_hidden));
    put("delete_to_trash", json!(to_trash));
    put("devMode", json!(false));
    put("disabledExtensions", json!(i.disabled_extensions));
    put("exposeAppInBrowser", json!(false));
    put(
        "extensionManager",
        json!({"name": "read-only", "can_install": false, "install_path": null}),
    );
    put("federated_extensions", Value::Array(i.federated.clone()));
    put("ignorePlugins", json!([]));
    put("news", json!({"disabled": true}));
    put("notebookStartsKernel", json!(true));
    put("notebookVersion", json!("[2, 21, 1]"));
    put("preferredPath", json!("/"));
    put("quitButton", json!(may_quit));
    put("store_id", json!(0));
    put("terminalsAvailable", json!(terminals));
    put("untracked_message_types", json!(UNTRACKED_MESSAGE_TYPES));
    put("mathjaxConfig", json!("TeX-AMS_HTML-full,Safe"));
    for (key, rel) in [
        ("appUrl", "/lab"),
        ("labextensionsUrl", "/lab/extensions"),
        ("licensesUrl", "/lab/api/licenses"),
        ("listingsUrl", "/lab/api/listings"),
        ("settingsUrl", "/lab/api/settings"),
        ("themesUrl", "/lab/api/themes"),
        ("translationsApiUrl", "/lab/api/translations"),
        ("treeUrl", "/lab/tree"),
        ("workspacesApiUrl", "/lab/api/workspaces"),
    ] {
        put(key, json!(rel));
        let mut full_key = String::from("full");
        full_key.push_str(&key[..1].to_ascii_uppercase());
        full_key.push_str(&key[1..]);
        put(&full_key, json!(full(rel)));
    }
    put("fullStaticUrl", json!(full("/static/lab")));
    if s.auth == AuthMode::Token {
        put("token", json!(s.token));
    }
    put(
        "mode",
        json!(if page.single_document {
            "single-document"
        } else {
            "multiple-document"
        }),
    );
    put("workspace", json!(page.workspace));
    put("treePath", json!(page.tree_path));
    if let Some(url) = &page.not_found_url {
        put("notFoundUrl", json!(url));
    }
    c
}

fn render_page(app: &App, guard: &Guard, page: PageRequest) -> Response {
    let lab = match lab(app) {
        Ok(l) => l,
        Err(e) => return not_installed(app, &e.message),
    };
    let (i, env) = match (&lab.install, &lab.env) {
        (Ok(i), Some(env)) => (i, env),
        (Err(why), _) => return not_installed(app, why),
        (Ok(_), None) => {
            return not_installed(
                app,
                "JupyterLab's page template could not be read (see the server log).",
            )
        }
    };
    let config = page_config(app, i, guard, &page);
    let page_config = JValue::from_object(PageConfig(Mutex::new(
        config
            .iter()
            .map(|(k, v)| (k.clone(), to_jinja(v)))
            .collect(),
    )));
    let ctx = minijinja::context! {
        page_config => page_config,
        base_url => app.settings.base_url.clone(),
        ws_url => "",
        custom_css => false,
    };
    match env.get_template("index.html").and_then(|t| t.render(ctx)) {
        Ok(html) => {
            let status = if page.not_found_url.is_some() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            let mut r = (status, Html(html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            tracing::error!("rendering JupyterLab's index.html: {e:#}");
            not_installed(
                app,
                "JupyterLab's page template could not be rendered (see the server log).",
            )
        }
    }
}

/// A plain page saying JupyterLab is missing and how to fix it (404, not a server error).
fn not_installed(app: &App, why: &str) -> Response {
    let html = super::pages::render(
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

fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn valid_workspace_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `GET /lab`, `/lab/tree/{*path}`, `/lab/workspaces/{name}[/tree/{*path}]` and the `/doc`
/// variants (single-document mode).
pub async fn page(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    let rel = path
        .strip_prefix(app.settings.base_url.trim_end_matches('/'))
        .unwrap_or(path);
    let single_document = rel.starts_with("/doc");
    let workspace = params.get("workspace").unwrap_or("default").to_string();
    let not_found_url = (!valid_workspace_name(&workspace)).then(|| path.to_string());
    let page = PageRequest {
        single_document,
        workspace,
        tree_path: params.get("path").map(decoded).unwrap_or_default(),
        not_found_url,
    };
    render_page(&app, &guard, page)
}

/// `GET /lab/{*path}` (anything else under /lab): the page, telling the front end the URL
/// was not found, as jupyterlab_server's `NotFoundHandler`.
pub async fn page_not_found(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    req: Request,
) -> Response {
    let page = PageRequest {
        single_document: false,
        workspace: "default".to_string(),
        tree_path: String::new(),
        not_found_url: Some(req.uri().path().to_string()),
    };
    render_page(&app, &guard, page)
}

// --- static files --------------------------------------------------------------------------

/// How long browsers may keep a file.
#[derive(Clone, Copy)]
enum Caching {
    /// Hashed file names: cache for a year.
    Immutable,
    /// Revalidate every time (304 when unchanged).
    Revalidate,
}

/// The file `rel` (percent-encoded, `/`-separated) under the first root that has it. Hidden
/// and `..` segments are refused, and the file must stay inside its root after symlinks.
fn find_file(roots: &[std::path::PathBuf], rel: &str) -> Option<std::path::PathBuf> {
    let rel = decoded(rel);
    if rel.is_empty()
        || rel
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.') || seg.contains('\\'))
    {
        return None;
    }
    for root in roots {
        let candidate = root.join(&rel);
        let (Ok(real), Ok(real_root)) = (candidate.canonicalize(), root.canonicalize()) else {
            continue;
        };
        if real.starts_with(&real_root) && real.is_file() {
            return Some(real);
        }
    }
    None
}

async fn serve_file(path: std::path::PathBuf, caching: Caching, req: Request) -> Response {
    let mut response = match tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
    {
        Ok(r) => r.map(axum::body::Body::new),
        Err(e) => match e {},
    };
    let value = match caching {
        Caching::Immutable => "public, max-age=31536000, immutable",
        Caching::Revalidate => "no-cache",
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/javascript"),
        );
    }
    response
}

fn file_not_found() -> Response {
    ApiError::not_found("Not Found").into_response()
}

/// `GET /static/{*path}`: JupyterLab's built app under `lab/`, jupyter_server's favicons
/// under `favicons/`. Public, as in jupyter_server (nothing user-specific in them).
pub async fn static_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let Ok(i) = install(&app) else {
        return file_not_found();
    };
    let raw = params.get("path").unwrap_or("");
    let (roots, rel, caching) = if let Some(rel) = raw.strip_prefix("lab/") {
        (vec![i.static_dir.clone()], rel, Caching::Immutable)
    } else if let Some(rel) = raw.strip_prefix("favicons/") {
        (
            i.favicons_dir.iter().cloned().collect(),
            rel,
            Caching::Revalidate,
        )
    } else {
        return file_not_found();
    };
    match find_file(&roots, rel) {
        Some(path) => serve_file(path, caching, req).await,
        None => file_not_found(),
    }
}

/// `GET /favicon.ico`.
pub async fn favicon(State(app): State<App>, req: Request) -> Response {
    let Ok(i) = install(&app) else {
        return file_not_found();
    };
    let roots: Vec<_> = i.favicons_dir.iter().cloned().collect();
    match find_file(&roots, "favicon.ico") {
        Some(path) => serve_file(path, Caching::Revalidate, req).await,
        None => file_not_found(),
    }
}

/// `GET /lab/extensions/{*path}`: federated extensions; their `static/` files have hashed
/// names and are cached for a year.
pub async fn extension_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let Ok(i) = install(&app) else {
        return file_not_found();
    };
    let rel = params.get("path").unwrap_or("");
    let caching = if rel.split('/').any(|s| s == "static") {
        Caching::Immutable
    } else {
        Caching::Revalidate
    };
    match find_file(&i.labextensions, rel) {
        Some(path) => serve_file(path, caching, req).await,
        None => file_not_found(),
    }
}

/// Relative `url('x')` in a theme's CSS → `{themesUrl}/{dir}/x` (jupyterlab_server's
/// `ThemesHandler`), so fonts and images load from the theme's own directory.
fn rewrite_css_urls(css: &str, base: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(pos) = rest.find("url(") {
        out.push_str(&rest[..pos + 4]);
        rest = &rest[pos + 4..];
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        let (open, body) = match quote {
            Some(q) => (q.to_string(), &rest[1..]),
            None => (String::new(), rest),
        };
        let end = match quote {
            Some(q) => body.find(q),
            None => body.find(')'),
        };
        let Some(end) = end else {
            continue;
        };
        let target = &body[..end];
        let relative = !(target.starts_with('/')
            || target.starts_with('#')
            || target.contains(':')
            || target.is_empty());
        out.push_str(&open);
        if relative {
            out.push_str(base);
            out.push('/');
        }
        out.push_str(target);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// `GET /lab/api/themes/{*path}`: theme CSS and assets (extensions' themes, then the core's).
pub async fn theme_files(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
    req: Request,
) -> Response {
    let Ok(i) = install(&app) else {
        return file_not_found();
    };
    let rel = params.get("path").unwrap_or("");
    let Some(path) = find_file(&i.theme_roots, rel) else {
        return file_not_found();
    };
    if path.extension().is_none_or(|e| e != "css") {
        return serve_file(path, Caching::Revalidate, req).await;
    }
    let css = match tokio::fs::read_to_string(&path).await {
        Ok(c) => c,
        Err(_) => return file_not_found(),
    };
    let decoded_rel = decoded(rel);
    let dir = decoded_rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let base = format!("{}lab/api/themes/{}", app.settings.base_url, dir);
    let body = rewrite_css_urls(&css, base.trim_end_matches('/'));
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

// --- settings ------------------------------------------------------------------------------

fn iso(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => json!(crate::state::isoformat(
            chrono::DateTime::<chrono::Utc>::from(t)
        )),
        None => Value::Null,
    }
}

fn io_error(what: &str, e: std::io::Error) -> ApiError {
    tracing::error!("{what}: {e}");
    ApiError::internal(format!(
        "{what}: the server could not read or write its state"
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("a background task failed"))?
}

/// One plugin's settings for one user: schema, the user's raw JSON5 and its parsed value.
/// User settings that no longer validate are dropped with a warning, as jupyterlab_server.
fn plugin_settings(
    lab: &Lab,
    i: &LabInstall,
    user: &str,
    id: &str,
) -> ApiResult<(Value, Option<String>)> {
    let entry = i
        .schemas
        .get()
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("Schema not found: {id}")))?;
    let stored = lab
        .store
        .read(Some(user), Item::Settings, id)
        .map_err(|e| io_error("reading settings", e))?;
    let (mut raw, mut settings, mut warning) = ("{}".to_string(), json!({}), None);
    let (mut modified, mut created) = (None, None);
    if let Some(Stored {
        text,
        modified: m,
        created: c,
    }) = stored
    {
        modified = m;
        created = c;
        match json5::from_str::<Value>(&text) {
            Ok(v) => {
                let valid = match entry.validator(id) {
                    Some(validator) => validator.validate(&v).map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                match valid {
                    Ok(()) => {
                        raw = if text.trim().is_empty() {
                            "{}".to_string()
                        } else {
                            text
                        };
                        settings = v;
                    }
                    Err(e) => warning = Some(format!("Failed validating settings ({id}): {e}")),
                }
            }
            Err(e) => warning = Some(format!("Failed loading settings ({id}): {e}")),
        }
    }
    Ok((
        json!({
            "id": id,
            "schema": entry.schema,
            "version": entry.version,
            "raw": raw,
            "settings": settings,
            "last_modified": iso(modified),
            "created": iso(created),
        }),
        warning,
    ))
}

/// `GET /lab/api/settings` (`?ids_only=true` for ids only): every plugin's settings for the
/// caller, ids descending as jupyterlab_server orders them.
pub async fn list_settings(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> ApiResult<Response> {
    let ids_only = query_pairs(req.uri().query())
        .iter()
        .any(|(k, v)| k == "ids_only" && v == "true");
    let user = caller.identity.username().to_string();
    blocking(move || {
        let lab = lab(&app)?;
        let i = install(&app)?;
        let schemas = i.schemas.get();
        let mut list = Vec::with_capacity(schemas.len());
        for id in schemas.keys().rev() {
            if ids_only {
                list.push(json!({ "id": id }));
            } else {
                let (mut entry, warning) = plugin_settings(lab, i, &user, id)?;
                entry["warning"] = json!(warning);
                list.push(entry);
            }
        }
        Ok(axum::Json(json!({ "settings": list })).into_response())
    })
    .await
}

/// `GET /lab/api/settings/{*plugin}`: one plugin's settings for the caller.
pub async fn get_settings(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let id = decoded(params.get("plugin").unwrap_or(""));
    let user = caller.identity.username().to_string();
    blocking(move || {
        let (entry, _) = plugin_settings(lab(&app)?, install(&app)?, &user, &id)?;
        Ok(axum::Json(entry).into_response())
    })
    .await
}

/// `PUT /lab/api/settings/{*plugin}` with `{"raw": "<json5>"}`: validated against the schema
/// (Draft 7) and stored as the caller's own settings; 204.
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
    blocking(move || {
        let lab = lab(&app)?;
        let i = install(&app)?;
        let entry = i
            .schemas
            .get()
            .get(&id)
            .ok_or_else(|| ApiError::not_found(format!("Schema not found: {id}")))?;
        let value: Value = json5::from_str(&raw)
            .map_err(|e| ApiError::bad_request(format!("Failed parsing settings ({id}): {e}")))?;
        if let Some(validator) = entry.validator(&id) {
            validator.validate(&value).map_err(|e| {
                ApiError::bad_request(format!("Failed validating settings ({id}): {e}"))
            })?;
        }
        lab.store
            .write(Some(&user), Item::Settings, &id, &raw)
            .map_err(|e| io_error("saving settings", e))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

// --- workspaces ----------------------------------------------------------------------------

fn load_workspace(lab: &Lab, user: &str, name: &str) -> ApiResult<Option<Value>> {
    let Some(stored) = lab
        .store
        .read(Some(user), Item::Workspace, name)
        .map_err(|e| io_error("reading workspace", e))?
    else {
        return Ok(None);
    };
    let mut workspace: Value = match serde_json::from_str(&stored.text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("workspace {name} of {user} is not JSON: {e}");
            return Ok(None);
        }
    };
    if let Some(meta) = workspace.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("last_modified".into(), iso(stored.modified));
        meta.insert("created".into(), iso(stored.created));
    }
    Ok(Some(workspace))
}

/// `GET /lab/api/workspaces`: the caller's workspaces.
pub async fn list_workspaces(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    blocking(move || {
        let lab = lab(&app)?;
        let (mut ids, mut values) = (Vec::new(), Vec::new());
        for name in lab.store.list(&user, Item::Workspace) {
            if let Some(w) = load_workspace(lab, &user, &name)? {
                ids.push(w["metadata"]["id"].clone());
                values.push(w);
            }
        }
        Ok(axum::Json(json!({"workspaces": {"ids": ids, "values": values}})).into_response())
    })
    .await
}

fn workspace_name(params: &RouteParams) -> String {
    decoded(params.get("name").unwrap_or(""))
}

/// `GET /lab/api/workspaces/{*name}`: one of the caller's workspaces (an unknown one is empty).
pub async fn get_workspace(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let name = workspace_name(&params);
    blocking(move || {
        let w = load_workspace(lab(&app)?, &user, &name)?.unwrap_or_else(|| {
            let id = if name.starts_with('/') {
                name.clone()
            } else {
                format!("/{name}")
            };
            json!({"data": {}, "metadata": {"id": id}})
        });
        Ok(axum::Json(w).into_response())
    })
    .await
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
    let id = body
        .get("metadata")
        .and_then(|m| m.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("The workspace has no metadata.id"))?;
    let id = decoded(id.strip_prefix('/').unwrap_or(id));
    if id != name {
        return Err(ApiError::bad_request(format!(
            "Workspace metadata ID mismatch: expected {name:?} got {:?}",
            format!("/{id}")
        )));
    }
    let text = body.to_string();
    blocking(move || {
        lab(&app)?
            .store
            .write(Some(&user), Item::Workspace, &name, &text)
            .map_err(|e| io_error("saving workspace", e))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /lab/api/workspaces/{*name}`: 204, or 404 when the caller has no such workspace.
pub async fn delete_workspace(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let user = caller.identity.username().to_string();
    let name = workspace_name(&params);
    blocking(move || {
        let deleted = lab(&app)?
            .store
            .delete(Some(&user), Item::Workspace, &name)
            .map_err(|e| io_error("deleting workspace", e))?;
        if deleted {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(ApiError::not_found(format!("Workspace {name:?} not found")))
        }
    })
    .await
}

// --- translations, listings ----------------------------------------------------------------

/// `GET /lab/api/translations`: the installed language packs (English is built in).
pub async fn list_translations() -> Response {
    axum::Json(json!({
        "data": {"en": {"displayName": "English", "nativeName": "English"}},
        "message": ""
    }))
    .into_response()
}

/// `GET /lab/api/translations/{locale}`: English needs no pack; other locales are reported as
/// not installed (200, as jupyterlab_server).
pub async fn get_translation(Extension(params): Extension<RouteParams>) -> Response {
    let locale = params.get("locale").unwrap_or("default");
    let message = match locale {
        "default" | "en" | "en_US" | "en-US" => String::new(),
        other => format!("Language pack '{other}' not installed!"),
    };
    axum::Json(json!({"data": {}, "message": message})).into_response()
}

/// `GET /lab/api/listings/{*path}`: the extension manager's allow and block lists (none).
pub async fn listings() -> Response {
    axum::Json(json!({
        "blocked_extensions_uris": [],
        "allowed_extensions_uris": [],
        "blocked_extensions": [],
        "allowed_extensions": []
    }))
    .into_response()
}

/// `GET /lab/api/update`: JupyterLab's "check for updates". Concord never calls out to
/// PyPI (jupyterlab's `NeverCheckForUpdate`), so there is never a notification.
pub async fn update_check() -> Response {
    axum::Json(json!({ "notification": null })).into_response()
}

/// `GET /lab/api/news`: the news feed. Concord serves none (page config `news.disabled`), so
/// the list is empty, as jupyterlab's handler answers without a `news_url`.
pub async fn news() -> Response {
    axum::Json(json!({ "news": [] })).into_response()
}

/// `GET /lab/api/licenses/`: the third-party licenses of the front end and of each federated
/// extension (Help → Licenses), in jupyterlab_server's JSON report format.
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
    blocking(move || {
        let i = install(&app)?;
        let mut sources: Vec<(String, std::path::PathBuf)> = i.extension_dirs.clone();
        let app_name = read_json_file(&i.static_dir.join("package.json"))
            .and_then(|p| p.get("name").and_then(Value::as_str).map(String::from));
        if let Some(name) = app_name {
            sources.push((name, i.static_dir.clone()));
        }
        let mut bundles = Map::new();
        for (name, dir) in sources {
            if wanted.as_deref().is_some_and(|w| w != name) {
                continue;
            }
            let mut packages = Vec::new();
            for file in [
                "third-party-licenses.json",
                "static/third-party-licenses.json",
            ] {
                if let Some(list) = read_json_file(&dir.join(file))
                    .and_then(|v| v.get("packages").and_then(Value::as_array).cloned())
                {
                    packages.extend(list);
                }
            }
            bundles.insert(name, json!({ "packages": packages }));
        }
        Ok(axum::Json(json!({ "bundles": bundles })).into_response())
    })
    .await
}

fn read_json_file(path: &std::path::Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

// --- /api/config/{section} -----------------------------------------------------------------

fn valid_section(section: &str) -> ApiResult<()> {
    if section.is_empty()
        || !section
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || section.starts_with('.')
    {
        return Err(ApiError::bad_request(format!(
            "Invalid config section name: {section:?}"
        )));
    }
    Ok(())
}

/// One stored layer of a section, as jupyter_server reads a config file: through
/// [`config_update`] from `{}`, so `null`s and empty objects a `PUT` stored are dropped.
fn read_section(lab: &Lab, user: Option<&str>, section: &str) -> ApiResult<Value> {
    let stored = lab
        .store
        .read(user, Item::Config, section)
        .map_err(|e| io_error("reading config", e))?;
    let mut layer = json!({});
    if let Some(value) = stored.and_then(|s| serde_json::from_str::<Value>(&s.text).ok()) {
        config_update(&mut layer, &value);
    }
    Ok(layer)
}

/// jupyter_server's `recursive_update` of config sections (`PATCH`, and the layers merged
/// by `GET`): an object merges into the object under its key, which is dropped when that
/// leaves it empty; `null` removes the key; anything else replaces it. (Where jupyter_server
/// fails on an object merged into a non-object, 500, the non-object is replaced.)
fn config_update(target: &mut Value, update: &Value) {
    let (Some(target), Some(update)) = (target.as_object_mut(), update.as_object()) else {
        return;
    };
    for (key, value) in update {
        match value {
            Value::Object(_) => {
                let entry = target.entry(key.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                config_update(entry, value);
                if entry.as_object().is_some_and(Map::is_empty) {
                    target.remove(key);
                }
            }
            Value::Null => {
                target.remove(key);
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

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
    valid_section(&section)?;
    let scope = query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v);
    let user = caller.identity.username().to_string();
    blocking(move || {
        let lab = lab(&app)?;
        let value = match scope.as_deref() {
            Some("server") => read_section(lab, None, &section)?,
            Some("user") => read_section(lab, Some(&user), &section)?,
            None => {
                let mut merged = read_section(lab, None, &section)?;
                config_update(&mut merged, &read_section(lab, Some(&user), &section)?);
                merged
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Unknown config scope {other:?}: use 'user' or 'server'"
                )))
            }
        };
        Ok(axum::Json(value).into_response())
    })
    .await
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
    valid_section(&section)?;
    let server = server_scope(&guard, query.as_deref())?;
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "A config section must be a JSON object",
        ));
    }
    let user = caller.identity.username().to_string();
    blocking(move || {
        let lab = lab(&app)?;
        let layer_user = (!server).then_some(user.as_str());
        // As jupyter_server: PUT stores the body as it is and answers 204; PATCH merges
        // with `recursive_update` and answers the updated section.
        let value = if replace {
            patch
        } else {
            let mut value = read_section(lab, layer_user, &section)?;
            config_update(&mut value, &patch);
            value
        };
        lab.store
            .write(layer_user, Item::Config, &section, &value.to_string())
            .map_err(|e| io_error("saving config", e))?;
        if replace {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Ok(axum::Json(value).into_response())
    })
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_urls_are_rebased() {
        let css = "a{background:url('img/x.png')} b{src:url(\"/abs.woff\")} c{x:url(data:image/png;base64,AA)} d{y:url(f.svg)}";
        let out = rewrite_css_urls(css, "/lab/api/themes/@x/t");
        assert!(
            out.contains("url('/lab/api/themes/@x/t/img/x.png')"),
            "{out}"
        );
        assert!(out.contains("url(\"/abs.woff\")"), "{out}");
        assert!(out.contains("url(data:image/png;base64,AA)"), "{out}");
        assert!(out.contains("url(/lab/api/themes/@x/t/f.svg)"), "{out}");
    }

    #[test]
    fn config_patch_merges_removes_and_prunes() {
        let mut v = json!({"a": {"x": 1, "y": 2}, "b": 1, "e": {"f": 1}, "g": 5});
        config_update(
            &mut v,
            &json!({"a": {"y": null, "z": 3}, "b": null, "c": true, "d": {},
                    "e": {"f": null}, "g": {"h": 1}, "l": [null, {"m": null}]}),
        );
        assert_eq!(
            v,
            json!({"a": {"x": 1, "z": 3}, "c": true, "g": {"h": 1}, "l": [null, {"m": null}]})
        );
    }

    #[test]
    fn page_config_copy_and_update_render_the_template_shape() {
        let mut env = jinja2_environment();
        env.add_template_owned(
            "index.html",
            "{% set full = page_config.copy() %}{% set _ = full.update(baseUrl=base_url) %}{{ full | tojson }}|{{ page_config.treePath }}|{{ base_url | escape }}".to_string(),
        )
        .unwrap();
        let mut m = BTreeMap::new();
        m.insert("treePath".to_string(), JValue::from("a</script>&'b"));
        let pc = JValue::from_object(PageConfig(Mutex::new(m)));
        let out = env
            .get_template("index.html")
            .unwrap()
            .render(minijinja::context! { page_config => pc, base_url => "/x/" })
            .unwrap();
        assert!(
            out.contains("\"baseUrl\":\"/x/\"") || out.contains("\"baseUrl\": \"/x/\""),
            "{out}"
        );
        assert!(!out.contains("</script>"), "{out}");
        assert!(out.contains("\\u003c/script\\u003e"), "{out}");
        assert!(out.ends_with("|a&lt;/script&gt;&amp;&#39;b|/x/"), "{out}");
    }
}
