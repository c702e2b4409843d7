//! `/api/terminals` and `/terminals/websocket/{name}`, as jupyter_server_terminals serves
//! them, over the `concord-terminals` service. The route table has already authorized the
//! declared permission; these handlers only add the per-item decisions (filtering the list,
//! "may this client type or only watch?").

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use concord_authz::{Action, Owner, Resource, ResourceType};
use concord_terminals::{
    serve_client, Incoming, Outgoing, TerminalAccess, TerminalInfo, TerminalModel,
};
use futures::{SinkExt, StreamExt};

use crate::http::error::{ApiError, ApiResult};
use crate::http::guard::{Guard, PathForm};
use crate::http::matcher::RouteParams;
use crate::http::websocket::{self, FromClient, OpenConnection, Standing, ToClient};
use crate::state::App;

fn name_param(params: &RouteParams) -> &str {
    params.get("name").unwrap_or("")
}

/// `GET /api/terminals`: the terminals the caller may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Json<Vec<TerminalModel>>> {
    let terminals = &app.terminals;
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
    let terminals = &app.terminals;
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
    let limits = guard.limits();
    let info = terminals
        .manager
        .create_limited(
            owner,
            cwd.as_deref(),
            limits.get(concord_authz::LimitedKind::Terminals),
        )
        .await?;
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
    let info = app.terminals.manager.get(name_param(&params))?;
    Ok(Json(info.model()))
}

/// `DELETE /api/terminals/{name}`: answers 204 once every process of the terminal is gone.
pub async fn delete(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<StatusCode> {
    app.terminals.manager.delete(name_param(&params)).await?;
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
    let terminals = &app.terminals;
    // Not audited: the route's read decision was; a watcher is not an attempt to type.
    let permission = if guard.may(Action::Execute, &resource) {
        TerminalAccess::Type
    } else {
        TerminalAccess::Watch
    };
    let client =
        terminals
            .manager
            .attach(name_param(&params), guard.identity().username(), permission)?;
    let limit = terminals.max_message_size;
    let open = OpenConnection::new(&app);
    let standing = Standing::new(&app, guard);
    Ok(
        websocket::configure(upgrade, limit).on_upgrade(move |socket| async move {
            let _open = open;
            pump(socket, client, limit, standing, resource, permission).await;
        }),
    )
}

/// The terminals service drives the connection (`serve_client`); this only translates
/// the bridge's messages into its own, and ends the connection when the caller loses the
/// right to it: read, or execute for a client that types (it may reconnect as a watcher).
async fn pump(
    socket: WebSocket,
    client: concord_terminals::TerminalClient,
    limit: usize,
    standing: Standing,
    terminal: Resource,
    permission: TerminalAccess,
) {
    let (messages, sink) = websocket::split(socket, limit);
    let incoming = messages.map(move |message| match message {
        FromClient::Text(text) => Incoming::Text(text),
        FromClient::Binary(bytes) => Incoming::Binary(bytes.to_vec()),
        FromClient::TooBig => Incoming::TooBig { limit },
    });
    // The merged stream must still end when the client leaves.
    let incoming = incoming.chain(futures::stream::once(std::future::ready(Incoming::Close)));
    let revoked = futures::stream::once(lost_access(standing, terminal, permission))
        .map(|(code, reason)| Incoming::End { code, reason });
    let incoming = futures::stream::select(incoming, revoked);
    let outgoing = sink.with(|frame: Outgoing| {
        std::future::ready(Ok::<_, axum::Error>(match frame {
            Outgoing::Text(text) => ToClient::Text(text),
            Outgoing::Close { code, reason } => ToClient::Close { code, reason },
        }))
    });
    serve_client(client, Box::pin(incoming), Box::pin(outgoing)).await;
}

/// Resolves with the close of a client whose caller lost the right to this terminal.
async fn lost_access(
    mut standing: Standing,
    terminal: Resource,
    permission: TerminalAccess,
) -> (u16, String) {
    loop {
        let Some(guard) = standing.changed().await else {
            tracing::info!("terminal websocket closed: its credential was revoked");
            return websocket::credential_revoked();
        };
        if !guard.may(Action::Read, &terminal) {
            return websocket::right_revoked("read this terminal");
        }
        if permission == TerminalAccess::Type && !guard.may(Action::Execute, &terminal) {
            return websocket::right_revoked("type in this terminal");
        }
    }
}
