//! Who is asking: the three identity providers (owner token, named users, trusted proxy),
//! login cookies and the XSRF cookie. The state behind them lives in `concord-identity`.

use axum::http::{header, HeaderMap};
use concord_authz::{Identity, TokenScope, User};
use concord_identity::{ProfileUpdate, TokenAuthentication, UserStore, UPDATABLE_FIELDS};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Settings};
use crate::http::error::{ApiError, ApiResult};

/// The name of the XSRF cookie (tornado's, which JupyterLab reads).
pub const XSRF_COOKIE: &str = "_xsrf";

/// The built-in group of administrators; the token owner is in it.
pub const ADMIN_GROUP: &str = "admin";

/// How the caller proved who they are; decides whether the XSRF check applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVia {
    /// `Authorization: token …` or `Bearer …`: no XSRF check (a browser cannot forge it).
    TokenHeader,
    /// `?token=…` in the URL: no XSRF check, as jupyter_server.
    TokenQuery,
    /// The login cookie: XSRF checked on state changes.
    Cookie,
    /// A trusted proxy's header: XSRF checked (the browser's cookies reach the proxy).
    Proxy,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The identity (user model and groups).
    pub identity: Identity,
    /// How it was established.
    pub via: AuthVia,
    /// The API token the request was made with (a user's token, not the owner token):
    /// its id for the audit log, and the scope every decision is narrowed to.
    pub token: Option<TokenUse>,
    /// The credential itself, so that an open websocket can ask whether it still holds.
    credential: Credential,
}

/// A user's API token as a request used it.
#[derive(Clone, Debug)]
pub struct TokenUse {
    /// The token's id (not secret).
    pub id: i64,
    /// What the token is limited to; `None`: all of its owner's rights.
    pub scope: Option<Arc<TokenScope>>,
}

impl Caller {
    /// The scope every decision for this caller is narrowed to (`None`: none).
    pub fn scope(&self) -> Option<&TokenScope> {
        self.token.as_ref().and_then(|t| t.scope.as_deref())
    }

    /// The id of the API token the request was made with, for the audit log.
    pub fn token_id(&self) -> Option<i64> {
        self.token.as_ref().map(|t| t.id)
    }
}

/// What a caller proved who they are with. Kept (in memory only) for as long as the request
/// or its websocket lives, to check that it still holds.
#[derive(Clone)]
enum Credential {
    /// The server's own token (token mode): valid while the server runs.
    OwnerToken,
    /// A user's API token.
    ApiToken(Arc<str>),
    /// A login cookie's value.
    Session(Arc<str>),
    /// A trusted proxy's headers: nothing to check again.
    Proxy,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::OwnerToken => "OwnerToken",
            Credential::ApiToken(_) => "ApiToken([secret])",
            Credential::Session(_) => "Session([secret])",
            Credential::Proxy => "Proxy",
        })
    }
}

/// What identifying a request found: the caller, and cookies to set on the response.
#[derive(Default)]
pub struct Identified {
    /// The caller, when credentials were valid.
    pub caller: Option<Caller>,
    /// `Set-Cookie` values (a login cookie after `?token=`, a fresh `_xsrf`).
    pub set_cookies: Vec<String>,
    /// The `_xsrf` token this response sets, when the request had none.
    pub new_xsrf: Option<String>,
}

/// The `_xsrf` token set on this response (the request had none); handlers that render
/// forms use it so the form and the cookie agree.
#[derive(Clone, Debug)]
pub struct NewXsrf(pub String);

/// The request's XSRF token: its `_xsrf` cookie, or the one this response sets.
pub fn request_xsrf(req: &axum::extract::Request) -> String {
    cookie_value(req.headers(), XSRF_COOKIE)
        .filter(|v| !v.is_empty())
        .or_else(|| req.extensions().get::<NewXsrf>().map(|x| x.0.clone()))
        .unwrap_or_default()
}

/// Why a login form was refused.
#[derive(Debug)]
pub enum LoginFailure {
    /// Wrong credentials (an unknown user looks exactly the same).
    Invalid,
    /// Too many failures recently.
    Throttled {
        /// Seconds until the next attempt is accepted.
        retry_after_secs: u64,
    },
    /// This mode has no login form (proxy mode).
    Unavailable,
}

/// Identifies requests according to the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    token: String,
    /// The token owner; its display fields can change (`PATCH /api/me`) while running,
    /// as jupyter_server keeps them in its cookie.
    owner: parking_lot::RwLock<Identity>,
    store: Arc<UserStore>,
    throttle: concord_identity::LoginThrottle,
    cookie_name: String,
    base_url: String,
    secure_cookie: bool,
    proxy_user_header: String,
    proxy_groups_header: String,
    trusted_proxies: Vec<concord_identity::IpNet>,
}

impl Authenticator {
    /// Build from the settings, with the users store opened in the state directory.
    pub fn new(settings: &Settings, store: Arc<UserStore>) -> anyhow::Result<Self> {
        let trusted_proxies = concord_identity::parse_trusted_proxies(&settings.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
        let mut owner = User::named(&settings.owner);
        owner.initials = settings
            .owner
            .chars()
            .next()
            .map(|c| c.to_uppercase().to_string());
        Ok(Authenticator {
            mode: settings.auth,
            token: settings.token.clone(),
            owner: parking_lot::RwLock::new(Identity {
                user: owner,
                groups: vec![ADMIN_GROUP.to_string()],
            }),
            store,
            throttle: concord_identity::LoginThrottle::default(),
            cookie_name: format!("concord-session-{}", settings.port),
            base_url: settings.base_url.clone(),
            secure_cookie: settings.secure_cookie,
            proxy_user_header: settings.proxy_user_header.clone(),
            proxy_groups_header: settings.proxy_groups_header.clone(),
            trusted_proxies,
        })
    }

    /// Use the real port in the cookie name once the listener is bound (two servers on one
    /// host must not share cookies).
    pub fn set_port(&mut self, port: u16) {
        self.cookie_name = format!("concord-session-{port}");
    }

    /// How callers are identified.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The users store.
    pub fn store(&self) -> &Arc<UserStore> {
        &self.store
    }

    /// Identify a request from its headers, query string and peer address.
    pub fn identify(&self, headers: &HeaderMap, query: Option<&str>, peer: IpAddr) -> Identified {
        let mut found = Identified::default();
        if cookie_value(headers, XSRF_COOKIE)
            .filter(|v| !v.is_empty())
            .is_none()
        {
            let (token, cookie) = self.new_xsrf_cookie();
            found.set_cookies.push(cookie);
            found.new_xsrf = Some(token);
        }
        if self.mode == AuthMode::Proxy {
            found.caller = self
                .identity_from_proxy(headers, peer)
                .map(|identity| Caller {
                    identity,
                    via: AuthVia::Proxy,
                    token: None,
                    credential: Credential::Proxy,
                });
            return found;
        }
        if let Some(token) = header_token(headers) {
            found.caller = self.caller_for_token(token, AuthVia::TokenHeader);
            return found;
        }
        let session = cookie_value(headers, &self.cookie_name).and_then(|value| {
            let identity = self.cookie_identity(&value, &mut found.set_cookies)?;
            Some(Caller {
                identity,
                via: AuthVia::Cookie,
                token: None,
                credential: Credential::Session(value.into()),
            })
        });
        if let Some(token) = query_token(query) {
            if let Some(caller) = self.caller_for_token(&token, AuthVia::TokenQuery) {
                // A token in the URL logs a browser without a session in, so the page can
                // drop the token. It never replaces a session: a link carrying another
                // user's token (login CSRF) acts as that user for this request only, and the
                // browser stays logged in as who it was. A scoped token never starts a
                // session: the session would have all of its owner's rights.
                if session.is_none() && caller.scope().is_none() {
                    if let Some(cookie) = self.login_cookie(&caller.identity) {
                        found.set_cookies.push(cookie);
                    }
                }
                found.caller = Some(caller);
                return found;
            }
        }
        found.caller = session;
        found
    }

    /// The caller as their credential stands now: `None` when it no longer authenticates
    /// (a revoked or expired token, an ended session, a removed user). The identity is the
    /// current one (groups changed since are seen).
    pub fn reidentify(&self, caller: &Caller) -> Option<Caller> {
        match &caller.credential {
            Credential::OwnerToken => Some(Caller {
                identity: self.owner(),
                ..caller.clone()
            }),
            Credential::ApiToken(token) => self.caller_for_token(token, caller.via),
            Credential::Session(value) => {
                let identity = self.cookie_identity(value, &mut Vec::new())?;
                Some(Caller {
                    identity,
                    ..caller.clone()
                })
            }
            Credential::Proxy => Some(caller.clone()),
        }
    }

    /// The identity of a login cookie's value; an unknown or expired cookie is cleared.
    fn cookie_identity(&self, value: &str, set_cookies: &mut Vec<String>) -> Option<Identity> {
        match self.store.session_identity(value) {
            // In token mode every session is the owner's, as they are now.
            Ok(Some(_)) if self.mode == AuthMode::Token => Some(self.owner()),
            Ok(Some(identity)) => Some(identity),
            Ok(None) => {
                set_cookies.push(self.clear_cookie(&self.cookie_name));
                None
            }
            Err(e) => {
                tracing::warn!("login cookie lookup failed: {e}");
                None
            }
        }
    }

    /// The caller a token (from a header or the URL) authenticates: the owner token in
    /// token mode, a user's API token (scoped or not) in users mode.
    fn caller_for_token(&self, token: &str, via: AuthVia) -> Option<Caller> {
        match self.mode {
            AuthMode::Token => constant_time_eq(token, &self.token).then(|| Caller {
                identity: self.owner(),
                via,
                token: None,
                credential: Credential::OwnerToken,
            }),
            AuthMode::Users => match self.store.authenticate_token(token) {
                Ok(Some(TokenAuthentication {
                    identity,
                    token_id,
                    scope,
                })) => Some(Caller {
                    identity,
                    via,
                    token: Some(TokenUse {
                        id: token_id,
                        scope,
                    }),
                    credential: Credential::ApiToken(token.into()),
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!("API token lookup failed: {e}");
                    None
                }
            },
            AuthMode::Proxy => None,
        }
    }

    /// The token owner's identity as it is now.
    fn owner(&self) -> Identity {
        self.owner.read().clone()
    }

    fn identity_from_proxy(&self, headers: &HeaderMap, peer: IpAddr) -> Option<Identity> {
        if !concord_identity::is_trusted_proxy(peer, &self.trusted_proxies) {
            return None;
        }
        let user = headers
            .get(self.proxy_user_header.as_str())?
            .to_str()
            .ok()?;
        let groups = headers
            .get(self.proxy_groups_header.as_str())
            .and_then(|g| g.to_str().ok());
        match concord_identity::identity_from_proxy_headers(user, groups) {
            Ok(identity) => Some(identity),
            Err(e) => {
                tracing::warn!("ignoring proxy identity headers: {e}");
                None
            }
        }
    }

    /// Check a login form and start a session; returns the login cookie.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<String, LoginFailure> {
        let key_user = if self.mode == AuthMode::Users {
            username
        } else {
            ""
        };
        if let Err(wait) = self.throttle.check_throttle(key_user, peer) {
            return Err(LoginFailure::Throttled {
                retry_after_secs: wait.seconds().max(1),
            });
        }
        let identity = match self.mode {
            AuthMode::Proxy => return Err(LoginFailure::Unavailable),
            AuthMode::Token => constant_time_eq(password, &self.token).then(|| self.owner()),
            AuthMode::Users => {
                let store = self.store.clone();
                let (u, p) = (username.to_string(), password.to_string());
                // argon2 is slow on purpose: keep it off the async workers.
                tokio::task::spawn_blocking(move || store.verify_login(&u, &p).ok())
                    .await
                    .ok()
                    .flatten()
            }
        };
        match identity.and_then(|i| self.login_cookie(&i)) {
            Some(cookie) => {
                self.throttle.record_success(key_user, peer);
                Ok(cookie)
            }
            None => {
                self.throttle.record_failure(key_user, peer);
                Err(LoginFailure::Invalid)
            }
        }
    }

    /// End the session named by the request's cookie; returns cookies that clear it.
    pub fn logout(&self, headers: &HeaderMap) -> Vec<String> {
        if let Some(value) = cookie_value(headers, &self.cookie_name) {
            if let Err(e) = self.store.end_session(&value) {
                tracing::warn!("ending a session failed: {e}");
            }
        }
        vec![self.clear_cookie(&self.cookie_name)]
    }

    /// A `Set-Cookie` value that logs `identity` in (a new server-side session).
    fn login_cookie(&self, identity: &Identity) -> Option<String> {
        let value = match self.mode {
            AuthMode::Users => self.store.create_session(identity.username()),
            _ => self.store.create_synthetic_session(identity),
        };
        match value {
            Ok(v) => Some(self.cookie(&self.cookie_name, v.as_str(), true)),
            Err(e) => {
                tracing::error!("cannot start a login session: {e}");
                None
            }
        }
    }

    fn cookie(&self, name: &str, value: &str, http_only: bool) -> String {
        let mut c = format!("{name}={value}; Path={}; SameSite=Lax", self.base_url);
        if http_only {
            c.push_str("; HttpOnly");
        }
        if self.secure_cookie {
            c.push_str("; Secure");
        }
        c
    }

    fn clear_cookie(&self, name: &str) -> String {
        format!(
            "{name}=; Path={}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Lax",
            self.base_url
        )
    }

    fn new_xsrf_cookie(&self) -> (String, String) {
        let token = hex::encode(rand::random::<[u8; 16]>());
        // Readable by scripts: JupyterLab copies it into the X-XSRFToken header.
        let cookie = self.cookie(XSRF_COOKIE, &token, false);
        (token, cookie)
    }

    /// Fields a caller may change with `PATCH /api/me`: all five display fields (as
    /// jupyter_server's password/token provider), none behind a proxy (the proxy owns them).
    pub fn updatable_fields(&self) -> Vec<&'static str> {
        match self.mode {
            AuthMode::Users | AuthMode::Token => UPDATABLE_FIELDS.to_vec(),
            AuthMode::Proxy => Vec::new(),
        }
    }

    /// `PATCH /api/me`.
    pub fn update_profile(&self, caller: &Caller, fields: &Map<String, Value>) -> ApiResult<User> {
        if self.mode == AuthMode::Proxy {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "Identities come from the proxy here and cannot be changed",
            ));
        }
        for key in fields.keys() {
            if !UPDATABLE_FIELDS.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Field {key} is not updatable"
                )));
            }
        }
        let update: ProfileUpdate = serde_json::from_value(Value::Object(fields.clone()))
            .map_err(|e| ApiError::bad_request(format!("Invalid profile update: {e}")))?;
        if self.mode == AuthMode::Token {
            let mut owner = self.owner.write();
            update
                .apply_to(&mut owner.user)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            return Ok(owner.user.clone());
        }
        self.store
            .update_profile(caller.identity.username(), &update)
            .map(|identity| identity.user)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// The token of an `Authorization: token T` or `Authorization: Bearer T` header.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// Compare secrets in constant time.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Remove `token=` from a path-and-query, so a secret never travels into `next=` or logs.
pub fn strip_token_param(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    // The other parameters stay as the client wrote them (as jupyter_server's `next`).
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            form_urlencoded::parse(key.as_bytes())
                .next()
                .is_none_or(|(k, _)| k != "token")
        })
        .collect();
    if kept.is_empty() {
        return path.to_string();
    }
    format!("{path}?{}", kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_token_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "token abc".parse().unwrap());
        assert_eq!(header_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(header_token(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(header_token(&h), None);
    }

    #[test]
    fn cookies_and_tokens_in_urls() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; _xsrf=tok; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, "_xsrf").as_deref(), Some("tok"));
        assert_eq!(strip_token_param("/lab?token=s&x=1"), "/lab?x=1");
        assert_eq!(strip_token_param("/lab?token=s"), "/lab");
        assert_eq!(query_token(Some("a=1&token=s%20t")).as_deref(), Some("s t"));
    }
}
