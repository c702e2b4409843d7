//! `/api`, `/api/status`, `/api/spec.yaml`, `/api/concord/status`, `/api/me`,
//! `/api/shutdown`, `/metrics`.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, Resource, ResourceType};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{query_pairs, JsonBody};
use crate::http::guard::Guard;
use crate::state::{isoformat, App};

/// The version of the jupyter_server API that concord speaks.
pub const JUPYTER_SERVER_API_VERSION: &str = "2.21.1";

/// `GET /api`: the version, without login (as little as possible is said).
pub async fn version() -> Json<Value> {
    Json(json!({ "version": JUPYTER_SERVER_API_VERSION }))
}

/// `GET /api/status`: exactly jupyter_server's model (strict clients reject other keys).
pub async fn status(State(app): State<App>) -> Json<Value> {
    let kernels = app.kernels.kernels.list();
    let connections: usize = kernels.iter().map(|k| k.model.connections).sum();
    let kernels = kernels.len();
    Json(json!({
        "started": isoformat(app.started),
        "last_activity": isoformat(app.last_activity()),
        "kernels": kernels,
        "connections": connections,
    }))
}

/// `GET /api/concord/status`: what concord adds to `/api/status` (the confinement of
/// kernels and terminals, and the policy's limits on what the caller may hold), with the
/// same access.
pub async fn concord_status(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> Json<Value> {
    let limits: Map<String, Value> = guard
        .limits()
        .limits
        .iter()
        .map(|limit| {
            (
                limit.kind.as_str().to_string(),
                json!({"max": limit.max, "set_by": limit.set_by}),
            )
        })
        .collect();
    Json(json!({
        "confinement": app.confinement.to_json(),
        "limits": limits,
    }))
}

/// The API description jupyter_server serves (concord speaks its API), unchanged.
const API_SPEC: &str = include_str!("../../schemas/api/api.yaml");

/// `GET /api/spec.yaml`: the description of the REST API, as jupyter_server serves it.
pub async fn spec() -> Response {
    ([(header::CONTENT_TYPE, "text/x-yaml")], API_SPEC).into_response()
}

/// `GET /api/me[?permissions={"resource": ["action", ...]}]`: the caller's identity and
/// which of the asked permissions they hold, as jupyter_server answers.
pub async fn me(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(guard): Extension<Guard>,
    req: Request,
) -> ApiResult<Json<Value>> {
    let raw = query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "permissions")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let bad = || {
        ApiError::bad_request(format!(
            "permissions should be a JSON dict of {{\"resource\": [\"action\",]}}, got {}",
            concord_contents::python_repr(&raw)
        ))
    };
    let asked: Map<String, Value> = if raw.is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(map)) => map,
            _ => return Err(bad()),
        }
    };
    let mut permissions = Map::new();
    for (resource, actions) in &asked {
        let Value::Array(actions) = actions else {
            return Err(bad());
        };
        let mut allowed = Vec::new();
        for action in actions {
            let Value::String(action) = action else {
                return Err(bad());
            };
            // Unknown resource types and actions are simply not held.
            let (Ok(kind), Ok(act)) = (resource.parse::<ResourceType>(), action.parse::<Action>())
            else {
                continue;
            };
            if guard.may(act, &Resource::service(kind)) {
                allowed.push(Value::String(action.clone()));
            }
        }
        permissions.insert(resource.clone(), Value::Array(allowed));
    }
    permissions.insert(
        "updatable_fields".into(),
        json!(app.auth.updatable_fields()),
    );
    Ok(Json(json!({
        "identity": identity_model(&caller),
        "permissions": permissions,
    })))
}

/// `PATCH /api/me`: update the caller's display fields.
pub async fn update_me(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("Invalid or missing JSON body"));
    };
    if fields.is_empty() {
        return Err(ApiError::bad_request("Invalid or missing JSON body"));
    }
    let user = app.auth.update_profile(&caller, &fields)?;
    Ok(Json(json!({ "status": "success", "identity": user })))
}

/// The six fields of jupyter_server's identity model.
pub fn identity_model(caller: &Caller) -> Value {
    serde_json::to_value(&caller.identity.user).unwrap_or(Value::Null)
}

/// `POST /api/shutdown`: stop the server (kernels and terminals are shut down first).
pub async fn shutdown(State(app): State<App>) -> Response {
    tracing::info!("shutdown requested through the API");
    let _ = app.shutdown.send(true);
    StatusCode::OK.into_response()
}

/// `GET /metrics`, Prometheus text format.
pub async fn metrics(State(app): State<App>) -> Response {
    let body = app
        .metrics
        .render(app.connections.load(std::sync::atomic::Ordering::Relaxed));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
