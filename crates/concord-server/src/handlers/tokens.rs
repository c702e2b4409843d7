//! `/api/concord/tokens`: a user's own API tokens (named users, `--auth users`).
//!
//! - `GET` lists the caller's tokens (never the secrets); `?all=1` lists everybody's, for
//!   admins (the `admin` group).
//! - `POST` creates one for the caller: `{"note": …, "scope": ["contents:read:/a/**", …],
//!   "expires_in": seconds}` (each optional); the answer (201) carries the secret, once.
//! - `DELETE /api/concord/tokens/{token_id}` revokes one of the caller's tokens, or, for an
//!   admin, anyone's; open websockets relying on it close at once.
//!
//! A request made with a *scoped* token cannot manage tokens: it could otherwise mint a
//! token with more rights than its own.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::TokenScope;
use concord_identity::{IdentityError, TokenSpec};
use serde::Deserialize;

use crate::auth::{Caller, ADMIN_GROUP};
use crate::config::AuthMode;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{query_pairs, JsonBody};
use crate::http::matcher::RouteParams;
use crate::state::App;

/// The longest expiry a token may be given (ten years), so the arithmetic never overflows.
const MAX_EXPIRES_IN: u64 = 10 * 366 * 24 * 3600;

/// The body of `POST /api/concord/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for.
    #[serde(default)]
    pub note: String,
    /// Grants such as `contents:read:/projects/a/**`; absent or null: unscoped.
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    /// Seconds from now; absent or null: never expires.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Token management is for named users, with a credential that is not itself limited.
fn may_manage(app: &App, caller: &Caller) -> ApiResult<()> {
    if app.auth.mode() != AuthMode::Users {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "API tokens belong to named users: they are managed with --auth users",
        ));
    }
    if caller.scope().is_some() {
        return Err(ApiError::forbidden(
            "A scoped API token cannot manage API tokens; log in or use an unscoped token",
        ));
    }
    Ok(())
}

fn is_admin(caller: &Caller) -> bool {
    caller.identity.groups.iter().any(|g| g == ADMIN_GROUP)
}

fn store_error(e: IdentityError) -> ApiError {
    ApiError::new(crate::http::error::status_of(e.kind()), e.to_string())
}

/// `GET /api/concord/tokens[?all=1]`.
pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    may_manage(&app, &caller)?;
    let all = query_pairs(query.as_deref())
        .into_iter()
        .any(|(k, v)| k == "all" && !matches!(v.as_str(), "" | "0" | "false"));
    let store = app.auth.store();
    let tokens = if all {
        if !is_admin(&caller) {
            return Err(ApiError::forbidden(format!(
                "User {} is not an admin: only admins may list everybody's API tokens",
                caller.identity.username()
            )));
        }
        store.list_all_tokens()
    } else {
        store.list_tokens(caller.identity.username())
    }
    .map_err(store_error)?;
    Ok(Json(tokens).into_response())
}

/// `POST /api/concord/tokens`.
pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<Option<NewToken>>,
) -> ApiResult<Response> {
    may_manage(&app, &caller)?;
    let body = body.unwrap_or_default();
    let scope = body
        .scope
        .map(|grants| TokenScope::parse(&grants))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("invalid token scope: {e}")))?;
    let expires = match body.expires_in {
        None => None,
        Some(0) => {
            return Err(ApiError::bad_request(
                "expires_in must be at least 1 second",
            ))
        }
        Some(seconds) if seconds > MAX_EXPIRES_IN => {
            return Err(ApiError::bad_request(format!(
                "expires_in is at most {MAX_EXPIRES_IN} seconds (ten years)"
            )))
        }
        Some(seconds) => chrono::Utc::now()
            .checked_add_signed(chrono::TimeDelta::seconds(seconds as i64))
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("expires_in is too large"))?,
    };
    let spec = TokenSpec {
        note: body.note,
        scope,
        expires,
    };
    let created = app
        .auth
        .store()
        .create_token_with(caller.identity.username(), &spec)
        .map_err(store_error)?;
    tracing::info!(user = %caller.identity.username(), token_id = created.id, scoped = created.scope.is_some(), "API token created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /api/concord/tokens/{token_id}`.
pub async fn revoke(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<StatusCode> {
    may_manage(&app, &caller)?;
    let raw = params.get("token_id").unwrap_or("");
    let not_found = || ApiError::not_found(format!("No API token with id {raw}"));
    let id: i64 = raw.parse().map_err(|_| not_found())?;
    let store = app.auth.store();
    let me = caller.identity.username();
    let owner = match store.revoke_token(me, id) {
        Ok(()) => me.to_string(),
        Err(IdentityError::TokenNotFound { .. }) if is_admin(&caller) => {
            store.revoke_token_by_id(id).map_err(|e| match e {
                IdentityError::TokenIdNotFound(_) => not_found(),
                other => store_error(other),
            })?
        }
        Err(IdentityError::TokenNotFound { .. }) => {
            let anyones = store.list_all_tokens().map_err(store_error)?;
            if anyones.iter().any(|t| t.id == id) {
                return Err(ApiError::forbidden(format!(
                    "User {me} is not an admin: only admins may revoke another user's API token"
                )));
            }
            return Err(not_found());
        }
        Err(other) => return Err(store_error(other)),
    };
    tracing::info!(user = %me, token_id = id, owner = %owner, "API token revoked");
    // Websockets opened with it close now, not at the next poll.
    app.access_changed();
    Ok(StatusCode::NO_CONTENT)
}
