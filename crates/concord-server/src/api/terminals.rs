//! `/api/terminals` and `/terminals/websocket/{name}`, as jupyter_server_terminals serves
//! them, over the `concord-terminals` service. The route table has already authorized the
//! declared permission; these handlers only add the per-item decisions (filtering the list,
//! "may this client type or only watch?").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use concord_authz::{Action, CanonicalPath, Owner, Resource, ResourceType};
use concord_terminals::{
    serve_client, Incoming, Outgoing, Permission, TerminalConfig, TerminalInfo, TerminalManager,
    TerminalModel,
};
use futures::{SinkExt, StreamExt};

use crate::config::Settings;
use crate::http::error::{ApiError, ApiResult};
use crate::http::guard::{Guard, PathForm};
use crate::http::matcher::RouteParams;
use crate::http::websocket::{self, FromClient, OpenConnection, ToClient};
use crate::state::{App, AppState, InstanceLookup};

/// Terminal options: `--terminal-shell …` on the command line, `[terminals]` in the
/// config file.
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
pub struct TerminalsOptions {
    /// The shell, split like a command line ("/bin/bash -l"). Default: $SHELL (or sh),
    /// with -l when concord does not run in a terminal, as jupyter_server_terminals.
    #[arg(long = "terminal-shell", env = "CONCORD_TERMINAL_SHELL")]
    #[serde(default)]
    pub shell: Option<String>,
    /// At most this many terminals at once, all users together (0: no limit).
    #[arg(long = "max-terminals", env = "CONCORD_MAX_TERMINALS")]
    #[serde(default)]
    pub max_terminals: Option<usize>,
    /// At most this many terminals per user (0: no limit).
    #[arg(
        long = "max-terminals-per-user",
        env = "CONCORD_MAX_TERMINALS_PER_USER"
    )]
    #[serde(default)]
    pub max_terminals_per_user: Option<usize>,
    /// End terminals idle for this many seconds (0: never), as `cull_inactive_timeout`.
    #[arg(
        long = "terminals-cull-inactive-timeout",
        env = "CONCORD_TERMINALS_CULL_INACTIVE_TIMEOUT"
    )]
    #[serde(default)]
    pub cull_inactive_timeout: Option<u64>,
    /// How often to look for idle terminals, in seconds (default 300).
    #[arg(
        long = "terminals-cull-interval",
        env = "CONCORD_TERMINALS_CULL_INTERVAL"
    )]
    #[serde(default)]
    pub cull_interval: Option<u64>,
    /// Output queued for one terminal websocket before it is closed (1008) as too slow, in
    /// bytes (default 4 MiB).
    #[arg(
        long = "terminal-client-queue-bytes",
        env = "CONCORD_TERMINAL_CLIENT_QUEUE_BYTES"
    )]
    #[serde(default)]
    pub client_queue_bytes: Option<usize>,
    /// Recent output kept per terminal for clients that attach later, in bytes (default
    /// 512 KiB; at most half the client queue).
    #[arg(
        long = "terminal-history-bytes",
        env = "CONCORD_TERMINAL_HISTORY_BYTES"
    )]
    #[serde(default)]
    pub history_bytes: Option<usize>,
    /// Keystrokes waiting for a shell to read them, in bytes; a typist beyond waits
    /// (default 1 MiB).
    #[arg(
        long = "terminal-input-queue-bytes",
        env = "CONCORD_TERMINAL_INPUT_QUEUE_BYTES"
    )]
    #[serde(default)]
    pub input_queue_bytes: Option<usize>,
    /// Seconds a terminal websocket may take to accept a frame before it is closed (1008)
    /// as not reading (default 30).
    #[arg(
        long = "terminal-write-timeout",
        env = "CONCORD_TERMINAL_WRITE_TIMEOUT"
    )]
    #[serde(default)]
    pub write_timeout: Option<u64>,
    /// The largest websocket message a terminal client may send, in bytes; larger closes
    /// the socket with 1009 (default 1 MiB).
    #[arg(
        long = "terminal-max-message-size",
        env = "CONCORD_TERMINAL_MAX_MESSAGE_SIZE"
    )]
    #[serde(default)]
    pub max_message_size: Option<usize>,
}

/// The largest websocket message a terminal client may send unless configured: a paste of
/// a megabyte is already far more than anyone types.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The terminal service's configuration from the settings.
pub fn terminal_config(settings: &Settings) -> anyhow::Result<TerminalConfig> {
    let cli = &settings.cli.terminals;
    let file = &settings.file.terminals;
    let mut config = TerminalConfig::new(&settings.root_dir);
    if let Some(shell) = cli.shell.clone().or(file.shell.clone()) {
        let words = shlex::split(&shell)
            .filter(|words| !words.is_empty())
            .ok_or_else(|| anyhow::anyhow!("terminal shell {shell:?} is not a valid command"))?;
        config.shell_command = words;
    }
    let limit = |n: Option<usize>| n.filter(|&n| n > 0);
    config.max_terminals = limit(cli.max_terminals.or(file.max_terminals));
    config.max_terminals_per_user =
        limit(cli.max_terminals_per_user.or(file.max_terminals_per_user));
    config.cull_inactive_timeout = cli
        .cull_inactive_timeout
        .or(file.cull_inactive_timeout)
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    if let Some(seconds) = cli.cull_interval.or(file.cull_interval).filter(|&s| s > 0) {
        config.cull_interval = Duration::from_secs(seconds);
    }
    let bytes = |name: &str, value: Option<usize>, default: usize| match value {
        Some(n) if n < 1024 => anyhow::bail!("--{name} must be at least 1024 bytes"),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    config.client_queue_limit_bytes = bytes(
        "terminal-client-queue-bytes",
        cli.client_queue_bytes.or(file.client_queue_bytes),
        config.client_queue_limit_bytes,
    )?;
    config.history_limit_bytes = match cli.history_bytes.or(file.history_bytes) {
        Some(n) => n,
        None => config.history_limit_bytes,
    };
    config.input_queue_bytes = bytes(
        "terminal-input-queue-bytes",
        cli.input_queue_bytes.or(file.input_queue_bytes),
        config.input_queue_bytes,
    )?;
    match cli.write_timeout.or(file.write_timeout) {
        Some(0) => anyhow::bail!("--terminal-write-timeout must be at least 1 second"),
        Some(seconds) => config.write_timeout = Duration::from_secs(seconds),
        None => {}
    }
    // What jupyter_server_terminals gives every shell.
    config.env.insert(
        "JUPYTER_SERVER_ROOT".into(),
        settings.root_dir.display().to_string(),
    );
    // Concord's own settings (the token among them) are not the shell's business.
    config.env_remove = crate::confine::secret_env_names();
    Ok(config)
}

/// Start the terminal service and register its owner lookup (from `services::start`).
pub fn start(state: &mut AppState) -> anyhow::Result<()> {
    let settings = &state.settings;
    let manager = TerminalManager::new(terminal_config(settings)?);
    let max_message_size = match settings
        .cli
        .terminals
        .max_message_size
        .or(settings.file.terminals.max_message_size)
    {
        Some(n) if n < 1024 => {
            anyhow::bail!("--terminal-max-message-size must be at least 1024 bytes")
        }
        Some(n) => n,
        None => DEFAULT_MAX_MESSAGE_SIZE,
    };
    let terminals = Terminals::new(manager, settings.root_dir.clone(), max_message_size);
    state
        .instances
        .insert(ResourceType::Terminals, terminals.clone());
    state.terminals = Some(terminals);
    Ok(())
}

/// End every terminal and all their processes (from `services::stop`, on SIGINT/SIGTERM).
pub async fn stop(app: &App) {
    if let Some(terminals) = &app.terminals {
        terminals.manager.shutdown_all().await;
    }
}

/// The running terminal service, kept in the application state.
pub struct Terminals {
    /// The manager.
    pub manager: TerminalManager,
    root: PathBuf,
    /// The largest websocket message a client may send.
    max_message_size: usize,
}

impl Terminals {
    /// Wrap a manager for the server whose root directory is `root`; clients may send
    /// websocket messages of up to `max_message_size` bytes.
    pub fn new(manager: TerminalManager, root: PathBuf, max_message_size: usize) -> Arc<Self> {
        Arc::new(Terminals {
            manager,
            root,
            max_message_size,
        })
    }

    /// A terminal as an authorization resource: owned by its creator, with its working
    /// directory as path when that is inside the root.
    pub fn resource(&self, info: &TerminalInfo) -> Resource {
        Resource::owned(
            ResourceType::Terminals,
            Some(info.name.clone()),
            info.owner.clone(),
            self.path_of(&info.cwd),
        )
    }

    /// The contents path of a working directory, when it is inside the root.
    fn path_of(&self, cwd: &Path) -> Option<CanonicalPath> {
        cwd.strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .and_then(|relative| CanonicalPath::parse(relative).ok())
    }
}

impl InstanceLookup for Terminals {
    fn lookup(&self, id: &str) -> Option<Resource> {
        self.manager.get(id).ok().map(|info| self.resource(&info))
    }
}

fn service(app: &App) -> ApiResult<&Arc<Terminals>> {
    app.terminals
        .as_ref()
        .ok_or_else(|| ApiError::not_found("Terminals are not enabled on this server"))
}

fn name_param(params: &RouteParams) -> &str {
    params.get("name").unwrap_or("")
}

/// `GET /api/terminals`: the terminals the caller may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Json<Vec<TerminalModel>>> {
    let terminals = service(&app)?;
    let models = terminals
        .manager
        .list()
        .iter()
        .filter(|info| guard.may(Action::Read, &terminals.resource(info)))
        .map(TerminalInfo::model)
        .collect();
    Ok(Json(models))
}

/// `POST /api/terminals`: start the configured shell. Only `cwd` is read from the body.
pub async fn create(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    body: Bytes,
) -> ApiResult<Json<TerminalModel>> {
    let terminals = service(&app)?;
    let cwd = requested_cwd(&app, &guard, &body)?;
    let owner = Owner::of(guard.identity());
    // The new terminal as the policy will judge it, with the directory it will run in (the
    // root when none is asked): as kernels are, it is started only where its creator may
    // use, see and close it, or it would run on unseen, counting against their limit.
    let dir = cwd.as_deref().unwrap_or(&terminals.root);
    let path = terminals.path_of(dir);
    let new_terminal = Resource::owned(ResourceType::Terminals, None, owner.clone(), path.clone());
    for action in [Action::Execute, Action::Read, Action::Write] {
        if !guard.decide(action, &new_terminal).allowed {
            let folder = path
                .as_ref()
                .map_or_else(|| "/".to_string(), |p| p.to_string());
            return Err(ApiError::forbidden(format!(
                "You may not open a terminal in {folder}: your terminal permission does not \
                 cover that folder. Open the terminal from a folder where you may use terminals."
            )));
        }
    }
    let info = terminals.manager.create(owner, cwd.as_deref()).await?;
    Ok(Json(info.model()))
}

/// The directory a POST body asks for, authorized, or `None` for the root. As in
/// jupyter_server, a `cwd` that does not exist falls back to the root; unlike it, the
/// directory must be inside the root and readable by the caller.
fn requested_cwd(app: &App, guard: &Guard, body: &[u8]) -> ApiResult<Option<PathBuf>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "The body of POST /api/terminals must be a JSON object such as {\"cwd\": \"work\"}",
        ));
    };
    let raw = match fields.get("cwd") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        // JupyterLab sends "" from the root of its file browser: the default directory.
        Some(serde_json::Value::String(raw)) if raw.is_empty() => return Ok(None),
        Some(serde_json::Value::String(raw)) => raw.as_str(),
        Some(_) => return Err(ApiError::bad_request("cwd must be a string")),
    };
    let root = &app.settings.root_dir;
    // JupyterLab sends API paths ("work/a"); an absolute OS path inside the root is
    // accepted too, as jupyter_server does.
    let relative = match Path::new(raw).strip_prefix(root) {
        Ok(inside) => inside.to_string_lossy().into_owned(),
        Err(_) => raw.to_string(),
    };
    let target = guard.require_path(Action::Read, &relative, PathForm::Url)?;
    let dir = root.join(target.resolved.api_path());
    Ok(dir.is_dir().then_some(dir))
}

/// `GET /api/terminals/{name}`.
pub async fn get(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Json<TerminalModel>> {
    let info = service(&app)?.manager.get(name_param(&params))?;
    Ok(Json(info.model()))
}

/// `DELETE /api/terminals/{name}`: answers 204 once every process of the terminal is gone.
pub async fn delete(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<StatusCode> {
    service(&app)?.manager.delete(name_param(&params)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /terminals/websocket/{name}`: terminado's websocket. The route requires read on
/// the terminal; with execute too the client types, otherwise it watches.
pub async fn websocket(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(resource): Extension<Resource>,
    Extension(params): Extension<RouteParams>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let terminals = service(&app)?;
    // Not audited: the route's read decision was; a watcher is not an attempt to type.
    let permission = if guard.may(Action::Execute, &resource) {
        Permission::Type
    } else {
        Permission::Watch
    };
    let client =
        terminals
            .manager
            .attach(name_param(&params), guard.identity().username(), permission)?;
    let limit = terminals.max_message_size;
    let open = OpenConnection::new(&app);
    Ok(
        websocket::configure(upgrade, limit).on_upgrade(move |socket| async move {
            let _open = open;
            pump(socket, client, limit).await;
        }),
    )
}

/// The terminals service drives the connection (`serve_client`); this only translates
/// the bridge's messages into its own.
async fn pump(socket: WebSocket, client: concord_terminals::TerminalClient, limit: usize) {
    let (messages, sink) = websocket::split(socket, limit);
    let incoming = messages.map(move |message| match message {
        FromClient::Text(text) => Incoming::Text(text),
        FromClient::Binary(bytes) => Incoming::Binary(bytes.to_vec()),
        FromClient::TooBig => Incoming::TooBig { limit },
    });
    let outgoing = sink.with(|frame: Outgoing| {
        std::future::ready(Ok::<_, axum::Error>(match frame {
            Outgoing::Text(text) => ToClient::Text(text),
            Outgoing::Close { code, reason } => ToClient::Close { code, reason },
        }))
    });
    serve_client(client, Box::pin(incoming), Box::pin(outgoing)).await;
}
