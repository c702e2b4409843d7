//! `/api/kernels…` and the kernel websocket: thin handlers over `concord_kernels`.
//!
//! The route's declared permission was already granted (type-level for the list and for
//! starting a kernel, on the instance for the rest). Here: the working directory named in a
//! POST body is authorized, lists are filtered by the policy, and the websocket's
//! [`KernelAccess`] (execute or watch) comes from a policy decision on the kernel, made
//! again whenever credentials or the policy change while it is open: a client that may no
//! longer read the kernel is disconnected, one that may no longer execute becomes a watcher.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, Owner, Resource, ResourceType};
use concord_kernels::{
    ClientConnection, ErrorKind, Inbound, InboundError, KernelAccess, KernelInfo, StartKernel,
    WsFrame, WsOut, WsProtocol, CLOSE_TOO_SLOW,
};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use std::time::Duration;

use crate::http::error::{instance_not_found, ApiError, ApiResult};
use crate::http::extract::query_pairs;
use crate::http::guard::{Guard, PathForm};
use crate::http::matcher::RouteParams;
use crate::http::websocket::{
    self, ClientMessages, ClientSink, FromClient, OpenConnection, Standing, ToClient, WriteFailed,
};
use crate::services::kernels::kernel_resource;
use crate::state::App;

/// `GET /api/kernels`: the kernels the caller may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
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
    let svc = &app.kernels;
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
            limit: guard
                .limits()
                .get(concord_authz::LimitedKind::Kernels)
                .cloned(),
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
    let svc = &app.kernels;
    let info = svc.kernels.get(&kernel_id(&params))?;
    Ok(Json(info.model).into_response())
}

/// `DELETE /api/kernels/{kernel_id}`: shut it down; 204.
pub async fn delete(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    svc.kernels.shutdown(&kernel_id(&params)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/kernels/{kernel_id}/interrupt`: 204.
pub async fn interrupt(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    svc.kernels.interrupt(&kernel_id(&params)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/kernels/{kernel_id}/restart`: the model once the kernel is ready again.
pub async fn restart(
    State(app): State<App>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
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
/// callers who may also execute get [`KernelAccess::Execute`], the others watch.
pub async fn channels(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(resource): Extension<Resource>,
    Extension(params): Extension<RouteParams>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = websocket::require_upgrade(ws)?;
    let svc = &app.kernels;
    let id = kernel_id(&params);
    let session_id = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "session_id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let permission = if guard.may(Action::Execute, &resource) {
        KernelAccess::Execute
    } else {
        KernelAccess::Watch
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
    let standing = Standing::new(&app, guard);
    Ok(websocket::configure(ws, limits.max_message_size)
        .on_upgrade(move |socket| pump(open, conn, socket, limits, standing, resource)))
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
async fn pump(
    open: OpenConnection,
    conn: ClientConnection,
    socket: WebSocket,
    limits: Limits,
    mut standing: Standing,
    kernel: Resource,
) {
    let _open = open;
    let ClientConnection {
        inbound,
        mut outbound,
    } = conn;
    let (mut messages, mut sink) = websocket::split(socket, limits.max_message_size);
    let end = tokio::select! {
        r = read_loop(&mut messages, &inbound) => End::Client(r),
        r = write_loop(&mut sink, &mut outbound, limits.write_timeout) => r,
        r = keep_access(&mut standing, &kernel, &inbound) => End::Client(Some(r)),
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

/// Re-decide what the client may do whenever credentials or the policy change; returns the
/// close of a client that may no longer read the kernel (or whose credential ended). One
/// that keeps read but loses execute goes on as a watcher.
async fn keep_access(
    standing: &mut Standing,
    kernel: &Resource,
    inbound: &concord_kernels::ClientInbound,
) -> (u16, String) {
    loop {
        let Some(guard) = standing.changed().await else {
            tracing::info!("kernel websocket closed: its credential was revoked");
            return websocket::credential_revoked();
        };
        if !guard.may(Action::Read, kernel) {
            tracing::info!(user = %guard.identity().username(), "kernel websocket closed: read on the kernel was taken away");
            return websocket::right_revoked("read this kernel");
        }
        if inbound.permission() == KernelAccess::Execute && !guard.may(Action::Execute, kernel) {
            tracing::info!(user = %guard.identity().username(), "kernel websocket client is now a watcher: execute was taken away");
            inbound.restrict_to_watch();
        }
    }
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
