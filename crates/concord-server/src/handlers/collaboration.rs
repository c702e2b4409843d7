//! `/api/collaboration/…`: real-time collaboration as jupyter-server-ydoc serves it to
//! JupyterLab's `@jupyter/docprovider`, over the `concord-collab` service (see
//! `docs/collaboration.md`). The session route is declared with read on its path; the room
//! websocket reaches its path through the file id, so it is resolved and read required here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, ErrorKind};
use concord_collab::{close_codes, CloseReason, Connection, Identity, Outbound, Permission};
use futures::StreamExt;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::BodyBytes;
use crate::http::guard::{Guard, PathForm, TargetPath};
use crate::http::matcher::RouteParams;
use crate::http::websocket::{self, FromClient, OpenConnection, ToClient, WriteFailed};
use crate::services::collaboration::Collab;
use crate::state::App;

/// How long a participant's socket may take to accept a frame before it is let go.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

fn service(app: &App) -> ApiResult<&Arc<Collab>> {
    app.collab.as_ref().ok_or_else(|| {
        ApiError::not_found("Real-time collaboration is off on this server (--collaboration)")
    })
}

/// `PUT /api/collaboration/session/{path}` with `{"format": …, "type": …}`: the file's id
/// (made now: 201, or existing: 200) and the server's session id.
pub async fn session(
    State(app): State<App>,
    Extension(target): Extension<TargetPath>,
    BodyBytes(body): BodyBytes,
) -> ApiResult<Response> {
    let collab = service(&app)?;
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))?;
    let field = |name: &str| {
        body.get(name).and_then(|v| v.as_str()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "The body must be a JSON object with string fields \"format\" and \"type\" \
                 (missing {name:?})"
            ))
        })
    };
    let (format, content_type) = (field("format")?, field("type")?);
    let model = collab
        .service
        .session(target.resolved.api_path(), format, content_type)
        .await?;
    let status = if model.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(model.to_json())).into_response())
}

/// The awareness identity of a caller: what `/api/me` tells JupyterLab about them.
fn awareness_identity(guard: &Guard) -> Identity {
    let user = &guard.identity().user;
    Identity {
        username: user.username.clone(),
        name: user.name.clone(),
        display_name: user.display_name.clone(),
        initials: user.initials.clone(),
        color: user.color.clone(),
        avatar_url: user.avatar_url.clone(),
    }
}

/// `WS /api/collaboration/room/{format}:{type}:{file_id}`: the room of a document. Read on
/// the file's current path is required (a path reached through a lookup, so checked here);
/// with write the participant edits, otherwise their changes are dropped (viewer).
pub async fn room(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = websocket::require_upgrade(ws)?;
    let collab = service(&app)?.clone();
    let room_id = params.get("room").unwrap_or_default();
    let target = collab.service.resolve_room(room_id)?;
    let path = guard.require_path(Action::Read, &target.path, PathForm::Api)?;
    let permission = collab
        .permission_of(guard.identity(), &path.resolved)
        .unwrap_or(Permission::View);
    let limits = guard.limits();
    let joined = collab
        .service
        .join_limited(
            &target,
            awareness_identity(&guard),
            permission,
            limits.get(concord_authz::LimitedKind::Rooms),
        )
        .await;
    // A limit is answered before the upgrade; a document that cannot be opened is told
    // with the close codes JupyterLab shows ("Could not find …", "Internal server error …").
    let outcome = match joined {
        Ok(connection) => {
            collab.joined(connection.id(), guard.identity().clone());
            Ok(connection)
        }
        Err(e) if e.kind == ErrorKind::LimitReached => return Err(e.into()),
        Err(e) if e.kind == ErrorKind::NotFound => {
            Err(CloseReason::new(close_codes::NOT_FOUND, &e.message))
        }
        Err(e) => Err(CloseReason::new(close_codes::INTERNAL, &e.message)),
    };
    let limit = app
        .settings
        .collaboration
        .as_ref()
        .map_or(websocket::WS_READ_BUFFER, |c| c.limits.max_message_bytes);
    let open = OpenConnection::new(&app);
    Ok(
        websocket::configure(ws, limit).on_upgrade(move |socket| async move {
            let _open = open;
            match outcome {
                Ok(connection) => {
                    let id = connection.id();
                    pump(socket, connection, limit).await;
                    collab.left(id);
                }
                Err(reason) => {
                    let (_, mut sink) = websocket::split(socket, limit);
                    sink.send_close(Some((reason.code, reason.reason))).await;
                }
            }
        }),
    )
}

/// Carry frames between the socket and the participant's connection until either ends;
/// dropping the connection leaves the room.
async fn pump(socket: WebSocket, connection: Connection, limit: usize) {
    let (mut messages, mut sink) = websocket::split(socket, limit);
    let close = loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(FromClient::Binary(frame)) => {
                    if let Err(reason) = connection.handle(&frame).await {
                        break Some((reason.code, reason.reason));
                    }
                }
                // Not part of the protocol (y-websocket sends binary frames only).
                Some(FromClient::Text(_)) => {}
                Some(FromClient::TooBig) => break Some(websocket::too_big(limit)),
                None => break None,
            },
            outbound = connection.next() => match outbound {
                Some(Outbound::Message(frame)) => {
                    // A burst goes out in one write.
                    let mut batch = vec![frame];
                    let mut then_close = None;
                    while let Some(more) = connection.try_next() {
                        match more {
                            Outbound::Message(frame) => batch.push(frame),
                            Outbound::Close(reason) => {
                                then_close = Some((reason.code, reason.reason));
                                break;
                            }
                        }
                    }
                    if let Err(failed) = send_all(&mut sink, batch).await {
                        break match failed {
                            WriteFailed::Gone => None,
                            WriteFailed::Stalled => {
                                let reason = CloseReason::too_slow();
                                Some((reason.code, reason.reason))
                            }
                        };
                    }
                    if then_close.is_some() {
                        break then_close;
                    }
                }
                Some(Outbound::Close(reason)) => break Some((reason.code, reason.reason)),
                None => break None,
            },
        }
    };
    drop(connection);
    sink.send_close(close).await;
    sink.shut_down().await;
}

async fn send_all(
    sink: &mut websocket::ClientSink,
    frames: Vec<bytes::Bytes>,
) -> Result<(), WriteFailed> {
    for frame in frames {
        sink.feed_within(ToClient::Binary(frame), WRITE_DEADLINE)
            .await?;
    }
    sink.flush_within(WRITE_DEADLINE).await
}
