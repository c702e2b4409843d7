//! `/api/kernels…` and the kernel websocket: thin handlers over `concord_kernels`.
//!
//! The route's declared permission was already granted (type-level for the list and for
//! starting a kernel, on the instance for the rest). Here: the working directory named in a
//! POST body is authorized, lists are filtered by the policy, and the websocket's
//! [`Permission`] (execute or watch) comes from a policy decision on the kernel.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, CanonicalPath, Owner, Resource, ResourceType};
use concord_kernels::{
    ClientConnection, ErrorKind, Inbound, InboundError, KernelAction, KernelActionKind, KernelInfo,
    KernelManager, KernelManagerConfig, KernelSpecManager, Permission, SessionManager, StartKernel,
    TransportKind, WsFrame, WsOut, WsProtocol, CLOSE_TOO_SLOW,
};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::http::error::{instance_not_found, kernel_error_message};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::query_pairs;
use crate::http::guard::{Guard, PathForm};
use crate::http::matcher::RouteParams;
use crate::http::websocket::{
    self, ClientMessages, ClientSink, FromClient, OpenConnection, ToClient, WriteFailed,
};
use crate::state::{App, AppState, InstanceLookup, PathResolver};

/// How kernels' ZMQ sockets are reached.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelTransport {
    /// Unix sockets in the runtime directory (only this OS user can reach them).
    Ipc,
    /// TCP on 127.0.0.1 (as jupyter_server by default).
    Tcp,
}

/// Settings of the kernels service (`[kernels]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelsOptions {
    /// Extra kernelspec directories (each holding `<name>/kernel.json`), searched before
    /// jupyter's (`JUPYTER_PATH`, the user data dir, the Python prefix, system dirs).
    #[arg(long = "kernel-dir", env = "CONCORD_KERNEL_DIR", value_delimiter = ',')]
    pub kernel_dir: Option<Vec<PathBuf>>,
    /// The kernelspec used when a request names none (default `python3`).
    #[arg(long, env = "CONCORD_DEFAULT_KERNEL")]
    pub default_kernel: Option<String>,
    /// Shut down kernels idle for this many seconds (0, the default, never culls).
    #[arg(
        id = "kernel_cull_idle_timeout",
        long = "cull-idle-timeout",
        env = "CONCORD_CULL_IDLE_TIMEOUT"
    )]
    pub cull_idle_timeout: Option<u64>,
    /// How often (seconds) to look for idle kernels (default 300).
    #[arg(
        id = "kernel_cull_interval",
        long = "cull-interval",
        env = "CONCORD_CULL_INTERVAL"
    )]
    pub cull_interval: Option<u64>,
    /// Also cull idle kernels that have websocket connections (default false).
    #[arg(
        id = "kernel_cull_connected",
        long = "cull-connected",
        env = "CONCORD_CULL_CONNECTED"
    )]
    pub cull_connected: Option<bool>,
    /// Also cull busy kernels (default false).
    #[arg(id = "kernel_cull_busy", long = "cull-busy", env = "CONCORD_CULL_BUSY")]
    pub cull_busy: Option<bool>,
    /// How kernels' sockets are reached: `ipc` (default) or `tcp`.
    #[arg(long, env = "CONCORD_KERNEL_TRANSPORT", value_enum)]
    pub kernel_transport: Option<KernelTransport>,
    /// Automatic restarts of a crashed kernel before it is declared dead (default 5).
    #[arg(long, env = "CONCORD_RESTART_LIMIT")]
    pub restart_limit: Option<u32>,
    /// More environment variables a `POST /api/kernels` body may set (`NAME` or `PREFIX*`),
    /// besides `JPY_SESSION_NAME` and `KERNEL_*`; reserved names (HOME, TMPDIR, JUPYTER_*,
    /// LD_*, PYTHON*, *PATH, …) are refused.
    #[arg(
        long = "kernel-env-allow",
        env = "CONCORD_KERNEL_ENV_ALLOW",
        value_delimiter = ','
    )]
    pub kernel_env_allow: Option<Vec<String>>,
    /// Bytes queued for one kernel websocket client before it is closed (1008) as too slow
    /// (default 32 MiB).
    #[arg(long, env = "CONCORD_KERNEL_CLIENT_QUEUE_BYTES")]
    pub kernel_client_queue_bytes: Option<usize>,
    /// Bytes kept per kernel for the replay of its disconnected sessions, all together
    /// (default 16 MiB).
    #[arg(long, env = "CONCORD_KERNEL_REPLAY_BYTES")]
    pub kernel_replay_bytes: Option<usize>,
    /// Seconds a disconnected session's replay is kept (default 300).
    #[arg(long, env = "CONCORD_KERNEL_REPLAY_WINDOW")]
    pub kernel_replay_window: Option<u64>,
    /// Seconds a kernel websocket may take to accept a frame before it is closed (1008) as
    /// not reading (default 30).
    #[arg(long, env = "CONCORD_KERNEL_WRITE_TIMEOUT")]
    pub kernel_write_timeout: Option<u64>,
    /// The largest websocket message a kernel client may send, in bytes; larger closes the
    /// socket with 1009 (default 10 MiB, as jupyter_server's).
    #[arg(long, env = "CONCORD_KERNEL_MAX_MESSAGE_SIZE")]
    pub kernel_max_message_size: Option<usize>,
    /// Bytes of client messages waiting for a kernel that does not read them; more are
    /// answered with an error (default 64 MiB).
    #[arg(long, env = "CONCORD_KERNEL_INPUT_QUEUE_BYTES")]
    pub kernel_input_queue_bytes: Option<usize>,
    /// Seconds between heartbeats, each to be answered within its interval (default 3).
    #[arg(long, env = "CONCORD_KERNEL_HEARTBEAT_INTERVAL")]
    pub kernel_heartbeat_interval: Option<f64>,
    /// Heartbeats missed in a row before a kernel is killed and restarted (default 5: a
    /// kernel that stops answering is declared dead after about 15 s).
    #[arg(long, env = "CONCORD_KERNEL_HEARTBEAT_MISSES")]
    pub kernel_heartbeat_misses: Option<u32>,
}

/// The kernels and sessions services.
pub struct KernelService {
    /// Kernel processes.
    pub kernels: KernelManager,
    /// Notebook sessions over `kernels`.
    pub sessions: SessionManager,
    /// The largest websocket message a client may send.
    pub max_message_size: usize,
}

/// The prefix of the first `python3` (or `python`) on `PATH`: its `bin` directory's parent,
/// as jupyter's `sys.prefix` is for a venv (the venv's `share/jupyter/kernels` then holds
/// its kernelspec). Symlinks are not followed: a venv's `python3` links to the system one.
pub fn python_prefix_on_path() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for exe in ["python3", "python"] {
            let candidate = dir.join(exe);
            let executable = std::fs::metadata(&candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if executable {
                return dir.parent().map(Path::to_path_buf);
            }
        }
    }
    None
}

/// Whether kernels use the TCP transport (`--kernel-transport tcp`).
pub fn uses_tcp_transport(settings: &crate::config::Settings) -> bool {
    let (cli, file) = (&settings.cli.kernels, &settings.file.kernels);
    matches!(
        cli.kernel_transport.or(file.kernel_transport),
        Some(KernelTransport::Tcp)
    )
}

/// Build the kernel manager from the settings (inside the tokio runtime: the culler is a
/// task).
pub fn build(settings: &crate::config::Settings) -> anyhow::Result<KernelService> {
    let cli = &settings.cli.kernels;
    let file = &settings.file.kernels;
    let mut config = KernelManagerConfig::new(&settings.root_dir, &settings.runtime_dir);
    if let Some(name) = cli.default_kernel.clone().or(file.default_kernel.clone()) {
        config.default_kernel_name = name;
    }
    let cull = cli
        .cull_idle_timeout
        .or(file.cull_idle_timeout)
        .unwrap_or(0);
    config.cull_idle_timeout = (cull > 0).then(|| Duration::from_secs(cull));
    let interval = cli.cull_interval.or(file.cull_interval).unwrap_or(300);
    if interval == 0 {
        anyhow::bail!("--cull-interval must be at least 1 second");
    }
    config.cull_interval = Duration::from_secs(interval);
    config.cull_connected = cli.cull_connected.or(file.cull_connected).unwrap_or(false);
    config.cull_busy = cli.cull_busy.or(file.cull_busy).unwrap_or(false);
    config.transport = if uses_tcp_transport(settings) {
        TransportKind::Tcp
    } else {
        TransportKind::Ipc
    };
    config.env_remove = crate::confine::secret_env_names();
    // A kernel never listens where confined processes may connect.
    config.reserved_ports = crate::confine::tcp_connect_ports(settings).unwrap_or_default();
    config.restart_limit = cli.restart_limit.or(file.restart_limit).unwrap_or(5);
    let bytes = |name: &str, value: Option<usize>, default: usize| match value {
        Some(n) if n < 1024 => anyhow::bail!("--{name} must be at least 1024 bytes"),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let seconds = |name: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => anyhow::bail!("--{name} must be at least 1 second"),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    };
    config.client_queue_bytes = bytes(
        "kernel-client-queue-bytes",
        cli.kernel_client_queue_bytes
            .or(file.kernel_client_queue_bytes),
        config.client_queue_bytes,
    )?;
    config.replay_bytes = bytes(
        "kernel-replay-bytes",
        cli.kernel_replay_bytes.or(file.kernel_replay_bytes),
        config.replay_bytes,
    )?;
    config.input_queue_bytes = bytes(
        "kernel-input-queue-bytes",
        cli.kernel_input_queue_bytes
            .or(file.kernel_input_queue_bytes),
        config.input_queue_bytes,
    )?;
    let max_message_size = bytes(
        "kernel-max-message-size",
        cli.kernel_max_message_size.or(file.kernel_max_message_size),
        10 << 20,
    )?;
    config.replay_window = seconds(
        "kernel-replay-window",
        cli.kernel_replay_window.or(file.kernel_replay_window),
        config.replay_window,
    )?;
    config.write_timeout = seconds(
        "kernel-write-timeout",
        cli.kernel_write_timeout.or(file.kernel_write_timeout),
        config.write_timeout,
    )?;
    if let Some(interval) = cli
        .kernel_heartbeat_interval
        .or(file.kernel_heartbeat_interval)
    {
        config.heartbeat_interval = Duration::try_from_secs_f64(interval)
            .ok()
            .filter(|d| *d >= Duration::from_millis(10))
            .ok_or_else(|| {
                anyhow::anyhow!("--kernel-heartbeat-interval must be at least 0.01 seconds")
            })?;
    }
    match cli.kernel_heartbeat_misses.or(file.kernel_heartbeat_misses) {
        Some(0) => anyhow::bail!("--kernel-heartbeat-misses must be at least 1"),
        Some(n) => config.heartbeat_misses = n,
        None => {}
    }
    if let Some(extra) = cli
        .kernel_env_allow
        .clone()
        .or(file.kernel_env_allow.clone())
    {
        for entry in extra.into_iter().filter(|e| !e.is_empty()) {
            concord_kernels::env::check_allow_entry(&entry)
                .map_err(|e| anyhow::anyhow!("--kernel-env-allow: {e}"))?;
            config.env_allowlist.push(entry);
        }
    }
    let extra_dirs: Vec<PathBuf> = cli
        .kernel_dir
        .clone()
        .or(file.kernel_dir.clone())
        .unwrap_or_default();
    let prefix = python_prefix_on_path();
    let specs = KernelSpecManager::jupyter_dirs(&extra_dirs, prefix.as_deref());
    tracing::debug!("kernelspec directories: {:?}", specs.kernel_dirs);
    if specs.find_all().is_empty() {
        tracing::warn!(
            "no kernelspecs found (searched {}); install ipykernel or pass --kernel-dir",
            specs
                .kernel_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let kernels = KernelManager::new(config, specs);
    let sessions = SessionManager::new(kernels.clone());
    Ok(KernelService {
        kernels,
        sessions,
        max_message_size,
    })
}

/// Start the service and register what the pipeline, `/api/status` and `/metrics` need.
/// Call after the contents service (owner lookups resolve paths through it).
pub fn start(state: &mut AppState) -> anyhow::Result<()> {
    let service = Arc::new(build(&state.settings)?);
    let paths = state.paths.clone();
    state.instances.insert(
        ResourceType::Kernels,
        Arc::new(KernelLookup {
            service: service.clone(),
            paths: paths.clone(),
        }),
    );
    state.instances.insert(
        ResourceType::Sessions,
        Arc::new(SessionLookup {
            service: service.clone(),
            paths,
        }),
    );
    let km = service.kernels.clone();
    state.kernel_status = Box::new(move || {
        let list = km.list();
        let connections = list.iter().map(|k| k.model.connections).sum();
        (list.len(), connections)
    });
    let km = service.kernels.clone();
    state.metrics.add_source(Box::new(move |out| {
        out.push_str(&km.metrics().prometheus_text())
    }));
    forward_actions(&service.kernels, state.events.clone(), state.paths.clone());
    state.kernels = Some(service);
    Ok(())
}

/// Turn the kernels service's lifecycle actions (requests, restarter, culler alike) into
/// `kernel_actions` events for the readers of each kernel.
fn forward_actions(
    kernels: &KernelManager,
    bus: Arc<crate::events::EventBus>,
    paths: Arc<dyn PathResolver>,
) {
    let mut actions = kernels.subscribe_actions();
    tokio::spawn(async move {
        loop {
            match actions.recv().await {
                Ok(action) => bus.emit(|| Some(kernel_action_event(&paths, &action))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} kernel actions were not turned into events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// jupyter_server's `kernel_actions` event for an action: `kernel_name`, `action`, `status`,
/// `msg` and `kernel_id` in its order and words, for readers of the kernel.
pub fn kernel_action_event(
    paths: &Arc<dyn PathResolver>,
    action: &KernelAction,
) -> crate::events::Event {
    let id = action.kernel_id.as_deref();
    let (status, msg) = match &action.error {
        None => {
            let done = match action.action {
                KernelActionKind::Start => "started",
                KernelActionKind::Interrupt => "interrupted",
                KernelActionKind::Restart => "restarted",
                KernelActionKind::Shutdown => "shutdown",
            };
            (
                "success",
                format!("Kernel {} was {done}.", id.unwrap_or("None")),
            )
        }
        Some(e) => ("error", kernel_error_message(e)),
    };
    let mut fields = vec![
        ("kernel_name", action.kernel_name.as_str()),
        ("action", action.action.as_str()),
        ("status", status),
        ("msg", msg.as_str()),
    ];
    if let Some(id) = id {
        fields.push(("kernel_id", id));
    }
    let kernel = Resource::owned(
        ResourceType::Kernels,
        action.kernel_id.clone(),
        action.owner.clone(),
        action.path.as_ref().map(|p| resolved(paths, p)),
    );
    crate::events::Event {
        frame: crate::events::frame(crate::events::KERNEL_ACTIONS_SCHEMA, &fields),
        audience: crate::events::Audience::Readers(vec![kernel]),
    }
}

/// Shut every kernel down (SIGINT/SIGTERM, `POST /api/shutdown`).
pub async fn stop(app: &App) {
    if let Some(service) = &app.kernels {
        service.kernels.shutdown_all().await;
    }
}

/// A path as authorization sees it: symlinks resolved when the contents service can.
fn resolved(paths: &Arc<dyn PathResolver>, path: &CanonicalPath) -> CanonicalPath {
    paths.resolve(path).unwrap_or_else(|_| path.clone())
}

/// The authorization resource of a running kernel.
pub fn kernel_resource(paths: &Arc<dyn PathResolver>, info: &KernelInfo) -> Resource {
    Resource::owned(
        ResourceType::Kernels,
        Some(info.model.id.clone()),
        info.owner.clone(),
        info.path.as_ref().map(|p| resolved(paths, p)),
    )
}

struct KernelLookup {
    service: Arc<KernelService>,
    paths: Arc<dyn PathResolver>,
}

impl InstanceLookup for KernelLookup {
    fn lookup(&self, id: &str) -> Option<Resource> {
        let info = self.service.kernels.get(id).ok()?;
        Some(kernel_resource(&self.paths, &info))
    }
}

struct SessionLookup {
    service: Arc<KernelService>,
    paths: Arc<dyn PathResolver>,
}

impl InstanceLookup for SessionLookup {
    fn lookup(&self, id: &str) -> Option<Resource> {
        let info = self.service.sessions.get(id).ok()?;
        Some(crate::api::sessions::session_resource(&self.paths, &info))
    }
}

/// The kernels service, or 404 when it is not running.
pub fn service(app: &App) -> ApiResult<Arc<KernelService>> {
    app.kernels
        .clone()
        .ok_or_else(|| ApiError::not_found("The kernels service is not running"))
}

/// `GET /api/kernels`: the kernels the caller may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    let models: Vec<_> = svc
        .kernels
        .list()
        .into_iter()
        .filter(|k| guard.may(Action::Read, &kernel_resource(&app.paths, k)))
        .map(|k| k.model)
        .collect();
    Ok(Json(models).into_response())
}

fn body_str(body: &Value, key: &str) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// `POST /api/kernels {name?, path?, kernel_id?, env?}`: start a kernel owned by the caller,
/// in a working directory the caller may read.
pub async fn start_kernel(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    // jupyter_server accepts an empty body (default kernel).
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))?
    };
    let body = match body {
        Value::Null => Value::Object(Default::default()),
        v @ Value::Object(_) => v,
        _ => {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object",
            ))
        }
    };
    let name = body_str(&body, "name")?;
    let raw_path = body_str(&body, "path")?;
    let kernel_id = body_str(&body, "kernel_id")?;
    let env: Vec<(String, String)> = match body.get("env") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(format!("env.{k} must be a string"))),
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::bad_request("env must be an object")),
    };
    // The working directory: a path the caller may read.
    let path = match raw_path.as_deref() {
        Some(raw) => Some(
            guard
                .require_path(Action::Read, raw, PathForm::Api)?
                .resolved,
        ),
        None => None,
    };
    let owner = Owner::of(guard.identity());
    let new_kernel = Resource::owned(ResourceType::Kernels, None, owner.clone(), path.clone());
    guard.require(Action::Write, &new_kernel, || {
        ApiError::forbidden("You may not start a kernel there")
    })?;
    // jupyter_server answers a POST naming a running kernel's id with that kernel, and
    // starts a kernel under any other id it is given. On a shared server a client's id is
    // honoured only for the caller's own reuse (a kernel they may already execute in);
    // any other id, free or another user's, gets a fresh kernel under a fresh id, so ids
    // can be neither squatted nor probed.
    if let Some(id) = &kernel_id {
        if let Ok(existing) = svc.kernels.get(id) {
            if guard.may(Action::Execute, &kernel_resource(&app.paths, &existing)) {
                return Ok(created(&app, existing));
            }
        }
    }
    let info = svc
        .kernels
        .start(StartKernel {
            name,
            path,
            env,
            kernel_id: None,
            owner,
        })
        .await?;
    Ok(created(&app, info))
}

fn created(app: &App, info: KernelInfo) -> Response {
    let location = format!(
        "{}api/kernels/{}",
        app.settings.base_url,
        crate::http::extract::url_escape(&info.model.id)
    );
    let mut response = (StatusCode::CREATED, Json(info.model)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn kernel_id(params: &RouteParams) -> String {
    params.get("kernel_id").unwrap_or_default().to_string()
}

/// `GET /api/kernels/{kernel_id}`.
pub async fn get(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    let info = svc.kernels.get(&kernel_id(&params))?;
    Ok(Json(info.model).into_response())
}

/// `DELETE /api/kernels/{kernel_id}`: shut it down; 204.
pub async fn delete(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    svc.kernels.shutdown(&kernel_id(&params)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/kernels/{kernel_id}/interrupt`: 204.
pub async fn interrupt(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    svc.kernels.interrupt(&kernel_id(&params)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/kernels/{kernel_id}/restart`: the model once the kernel is ready again.
pub async fn restart(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = service(&app)?;
    let id = kernel_id(&params);
    match svc.kernels.restart(&id).await {
        Ok(info) => Ok(Json(info.model).into_response()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(e.into()),
        Err(e) => {
            tracing::warn!(kernel = %id, "restart failed: {e}");
            Err(ApiError::internal(format!(
                "Exception restarting kernel: {e}"
            )))
        }
    }
}

/// `WS /api/kernels/{kernel_id}/channels?session_id=…`: declared with read on the kernel;
/// callers who may also execute get [`Permission::Execute`], the others watch.
pub async fn channels(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(resource): Extension<Resource>,
    Extension(params): Extension<RouteParams>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = websocket::require_upgrade(ws)?;
    let svc = service(&app)?;
    let id = kernel_id(&params);
    let session_id = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "session_id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let permission = if guard.may(Action::Execute, &resource) {
        Permission::Execute
    } else {
        Permission::Watch
    };
    let offered: Vec<String> = ws
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let (protocol, echo) = WsProtocol::negotiate(offered.iter().map(String::as_str));
    let conn = svc
        .kernels
        .connect(
            &id,
            &session_id,
            guard.identity().username(),
            permission,
            protocol,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => instance_not_found(ResourceType::Kernels, &id),
            _ => e.into(),
        })?;
    tracing::debug!(kernel = %id, user = %guard.identity().username(), ?permission, ?protocol, "kernel websocket");
    let ws = match echo {
        Some(name) => ws.protocols([name]),
        None => ws,
    };
    let limits = Limits {
        max_message_size: svc.max_message_size,
        write_timeout: svc.kernels.config().write_timeout,
    };
    // Counted from here, as the kernel counts it from `connect`.
    let open = OpenConnection::new(&app);
    Ok(websocket::configure(ws, limits.max_message_size)
        .on_upgrade(move |socket| pump(open, conn, socket, limits)))
}

/// What a kernel websocket may take and how long it may keep us waiting.
#[derive(Clone, Copy)]
struct Limits {
    max_message_size: usize,
    write_timeout: Duration,
}

/// How a websocket ended.
enum End {
    /// The client left (or sent something that ends the connection: close with this).
    Client(Option<(u16, String)>),
    /// The kernel side is done (a close frame was written, or the kernel went away).
    Server,
    /// The client's socket took no frame for the write timeout: it is not reading.
    Stalled,
}

/// Move frames both ways until either side is done. Both halves are polled in this one
/// task: reading the client's frames in a task of its own (so an outbound frame would not
/// poll the read half) cost more than it saved: the two tasks hop between the runtime's
/// workers, and every execute paid two more futex wake-ups and thread switches.
async fn pump(open: OpenConnection, conn: ClientConnection, socket: WebSocket, limits: Limits) {
    let _open = open;
    let ClientConnection {
        inbound,
        mut outbound,
    } = conn;
    let (mut messages, mut sink) = websocket::split(socket, limits.max_message_size);
    let end = tokio::select! {
        r = read_loop(&mut messages, &inbound) => End::Client(r),
        r = write_loop(&mut sink, &mut outbound, limits.write_timeout) => r,
    };
    let close = match end {
        End::Client(close) => close,
        End::Server => None,
        End::Stalled => {
            outbound.count_stalled();
            tracing::info!("kernel websocket client stopped reading; disconnected");
            Some((
                CLOSE_TOO_SLOW,
                format!(
                    "the client did not read for {} s; reconnect with the same session_id to resume",
                    limits.write_timeout.as_secs()
                ),
            ))
        }
    };
    sink.send_close(close).await;
    sink.shut_down().await;
}

async fn read_loop(
    messages: &mut ClientMessages,
    inbound: &concord_kernels::ClientInbound,
) -> Option<(u16, String)> {
    while let Some(message) = messages.next().await {
        let frame = match message {
            FromClient::Text(t) => WsFrame::Text(t),
            FromClient::Binary(b) => WsFrame::Binary(b),
            FromClient::TooBig => return Some(websocket::too_big(messages.limit())),
        };
        match inbound.handle(frame).await {
            Ok(Inbound::Forwarded) | Ok(Inbound::Refused) => {}
            Err(InboundError::Codec(e)) => {
                // 1007: "inconsistent data" — the frame is not a Jupyter message.
                return Some((1007, format!("malformed message: {e}")));
            }
            Err(InboundError::Kernel(e)) => {
                tracing::debug!("message not delivered to the kernel: {e}");
            }
        }
    }
    None
}

fn to_client(frame: WsFrame) -> ToClient {
    match frame {
        WsFrame::Text(t) => ToClient::Text(t),
        WsFrame::Binary(b) => ToClient::Binary(b),
    }
}

/// Write what the kernel side yields; frames that are already waiting are written
/// together and flushed once (an iopub burst costs one syscall, not one per message). A
/// socket that takes nothing for `stall` ends it: the client is not reading.
async fn write_loop(
    sink: &mut ClientSink,
    outbound: &mut concord_kernels::ClientOutbound,
    stall: Duration,
) -> End {
    const BATCH: usize = 256;
    let ended = |failed| match failed {
        WriteFailed::Gone => End::Server,
        WriteFailed::Stalled => End::Stalled,
    };
    while let Some(first) = outbound.next().await {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(out) = next.take() {
            match out {
                WsOut::Frame(frame) => {
                    if let Err(failed) = sink.feed_within(to_client(frame), stall).await {
                        return ended(failed);
                    }
                }
                WsOut::Close { code, reason } => {
                    sink.send_close(Some((code, reason))).await;
                    return End::Server;
                }
            }
            written += 1;
            if written < BATCH {
                next = outbound.next().now_or_never().flatten();
            }
        }
        if let Err(failed) = sink.flush_within(stall).await {
            return ended(failed);
        }
    }
    End::Server
}
