//! The path of every request: host and origin checks → route → identify → XSRF →
//! authorize (from the route's declaration) → handler → security headers.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use concord_authz::{Action, CanonicalPath, Decision, Identity, PathError, Resource};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower::ServiceExt;

use crate::audit::RequestInfo;
use crate::auth::{AuthVia, Caller};
use crate::error::ApiError;
use crate::routes::{self, Access, Route, RouteParams, RouteService, Target};
use crate::state::App;

/// The compiled route table plus the application.
pub struct Dispatcher {
    app: App,
    routes: Vec<(Route, RouteService)>,
}

impl Dispatcher {
    /// Bind every row of the table to the application.
    pub fn new(app: App) -> Arc<Self> {
        let routes = routes::table()
            .into_iter()
            .map(|r| {
                let service = r.service(app.clone());
                (r, service)
            })
            .collect();
        Arc::new(Dispatcher { app, routes })
    }
}

/// The contents path a route acts on: as the client wrote it (normalised) and as the file
/// system resolves it (symlinks followed). Authorization was decided on `resolved`.
#[derive(Clone, Debug)]
pub struct TargetPath {
    /// The normalised path from the URL.
    pub requested: CanonicalPath,
    /// The path the file system will open.
    pub resolved: CanonicalPath,
}

/// Per-request authorization for handlers: the caller, plus checks of *additional*
/// resources named in a request body (the declared permission is already checked).
#[derive(Clone)]
pub struct Guard {
    app: App,
    /// Who is asking.
    pub caller: Caller,
    request: RequestInfo,
}

impl Guard {
    /// The caller's identity.
    pub fn identity(&self) -> &Identity {
        &self.caller.identity
    }

    /// Decide and audit.
    pub fn decide(&self, action: Action, resource: &Resource) -> Decision {
        let decision = self
            .app
            .authz
            .authorize(&self.caller.identity, action, resource);
        self.app.metrics.count_decision(decision.allowed);
        self.app.audit.record(
            &self.caller.identity,
            action,
            resource,
            &decision,
            &self.request,
        );
        decision
    }

    /// Decide without auditing: for filtering lists (each hidden item is not an attempt).
    pub fn may(&self, action: Action, resource: &Resource) -> bool {
        self.app
            .authz
            .authorize(&self.caller.identity, action, resource)
            .allowed
    }

    /// For a directory listing: whether the caller may perform `action` on each child of
    /// `dir` (not audited; uses the engine's fast path for children no rule names).
    pub fn may_children(&self, action: Action, dir: &CanonicalPath, names: &[&str]) -> Vec<bool> {
        self.app
            .authz
            .authorize_children(&self.caller.identity, action, dir, names)
    }

    /// Require `action` on `resource`: 403 naming the permission, or 404 (with `not_found`)
    /// when the caller may not even read it, so they cannot learn it exists.
    pub fn require(
        &self,
        action: Action,
        resource: &Resource,
        not_found: impl FnOnce() -> ApiError,
    ) -> Result<(), ApiError> {
        let decision = self.decide(action, resource);
        if decision.allowed {
            return Ok(());
        }
        // An instance or a path the caller may not even read is "not found", so a refusal
        // never tells them it exists; a whole service is simply forbidden.
        let is_instance = resource.path.is_some() || resource.id.is_some();
        if is_instance && (action == Action::Read || !self.may(Action::Read, resource)) {
            return Err(not_found());
        }
        Err(denied(&self.caller.identity, action, resource))
    }

    /// Normalise a contents path from a request body or query (`copy_from`, a PATCH `path`),
    /// resolve it and require `action` on it. Returns the requested and resolved paths.
    pub fn require_path(&self, action: Action, raw: &str) -> Result<TargetPath, ApiError> {
        let requested = canonical_path(raw)?;
        let not_found = contents_not_found(&requested);
        self.require_resolved(action, requested, || not_found.clone())
    }

    /// Resolve `requested` (symlinks followed) and require `action` on where it leads. A
    /// path the caller may not see gets `not_found()`, the answer for a path with nothing
    /// there, whatever lies on disk: a path they may neither read nor act on as written is
    /// refused before the disk is looked at, and a path that cannot be resolved (a link
    /// out of the root, a dangling link) is answered as missing too.
    pub fn require_resolved(
        &self,
        action: Action,
        requested: CanonicalPath,
        not_found: impl Fn() -> ApiError,
    ) -> Result<TargetPath, ApiError> {
        let as_written = Resource::contents(requested.clone());
        if !self.may(Action::Read, &as_written) && !self.may(action, &as_written) {
            self.decide(action, &as_written);
            return Err(not_found());
        }
        let resolved = self
            .app
            .paths
            .resolve(&requested)
            .map_err(|_| not_found())?;
        self.require(action, &Resource::contents(resolved.clone()), &not_found)?;
        Ok(TargetPath {
            requested,
            resolved,
        })
    }
}

/// The 403 of a refused request: names the user, the action and the resource.
pub fn denied(who: &Identity, action: Action, resource: &Resource) -> ApiError {
    ApiError::forbidden(format!(
        "User {} is not authorized to {action} on resource: {resource}.",
        who.username()
    ))
}

/// jupyter_server's 404 for a missing file; also what a caller who may not read it gets.
pub fn contents_not_found(path: &CanonicalPath) -> ApiError {
    ApiError::not_found(format!("No such file or directory: {}", path.api_path()))
}

/// Parse a raw (percent-encoded) contents path.
pub fn canonical_path(raw: &str) -> Result<CanonicalPath, ApiError> {
    CanonicalPath::from_url(raw).map_err(|e| match e {
        PathError::OutsideRoot(_) => ApiError::not_found(format!(
            "No such file or directory: {raw} (outside the root directory)"
        )),
        PathError::Invalid(_) => ApiError::bad_request(format!("Invalid path: {raw:?}")),
    })
}

/// The one handler axum calls: everything else is decided here.
pub async fn dispatch(
    State(dispatcher): State<Arc<Dispatcher>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let app = &dispatcher.app;
    let is_head = req.method() == Method::HEAD;
    let method = req.method().clone();
    // Redacted before it is ever formatted: tokens in query strings never reach the log.
    let uri = concord_identity::redact_url(
        req.uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/"),
    );
    let is_api = is_api_path(&app.settings.base_url, req.uri().path());
    let started = std::time::Instant::now();
    let (pattern, mut response) = route_request(&dispatcher, peer.ip(), req).await;
    let status = response.status().as_u16();
    app.metrics.count_request(pattern, status);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match status {
        500.. => tracing::error!("{status} {method} {uri} ({}) {ms:.2}ms", peer.ip()),
        400..=499 => tracing::warn!("{status} {method} {uri} ({}) {ms:.2}ms", peer.ip()),
        _ => tracing::debug!("{status} {method} {uri} ({}) {ms:.2}ms", peer.ip()),
    }
    add_security_headers(&app.settings.base_url, is_api, response.headers_mut());
    if is_head {
        *response.body_mut() = Body::empty();
    }
    response
}

async fn route_request(
    dispatcher: &Dispatcher,
    peer: IpAddr,
    mut req: Request,
) -> (&'static str, Response) {
    let app = &dispatcher.app;
    if let Some(refusal) = check_body_size(app, req.headers()) {
        return ("(body size)", refusal);
    }
    if let Err(e) = check_host(app, req.headers()) {
        return ("(host check)", e.into_response());
    }
    let base = app.settings.base_url.as_str();
    let full_path = req.uri().path().to_string();
    let Some(rel) = full_path
        .strip_prefix(base.trim_end_matches('/'))
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return ("(no route)", not_found_page());
    };
    let rel = if rel.is_empty() { "/" } else { rel };

    // Find the route: first row whose pattern and method match; a pattern match with no
    // method match is 405.
    let mut pattern_matched = false;
    let mut found = None;
    for (route, service) in &dispatcher.routes {
        if let Some(params) = routes::match_pattern(route.pattern, rel) {
            pattern_matched = true;
            if route.verb.serves(req.method()) {
                found = Some((route, service.clone(), params));
                break;
            }
        }
    }
    let Some((route, service, params)) = found else {
        if pattern_matched {
            return (
                "(method)",
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response(),
            );
        }
        return ("(no route)", not_found_page());
    };

    match authorize_request(app, route, &params, peer, &mut req) {
        Ok(set_cookie) => {
            req.extensions_mut().insert(params);
            // Held until the answer is ready: what the handler kept of the body counts.
            let mut charge = None;
            if has_body(req.headers()) {
                let (charged, c) = app.bodies.charge(req);
                req = charged;
                charge = Some(c);
            }
            let mut response = match service.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if charge.is_some_and(|c| !c.finished()) {
                // Answered before the whole body was read: tell the client this connection
                // ends with the answer.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            for cookie in set_cookie {
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            (route.pattern, response)
        }
        Err(response) => (route.pattern, *response),
    }
}

/// Identify, check XSRF and authorize the route's declared permission. On success the
/// request carries [`Caller`], [`Guard`], the authorized [`Resource`] and, for contents
/// routes, a [`TargetPath`]; returns cookies to set on the response.
fn authorize_request(
    app: &App,
    route: &Route,
    params: &RouteParams,
    peer: IpAddr,
    req: &mut Request,
) -> Result<Vec<String>, Box<Response>> {
    let is_ws = route.verb == routes::Verb::Ws;
    let identified = app.auth.identify(req.headers(), req.uri().query(), peer);
    // As jupyter_server: a request that carries a token (header or `?token=`) cannot be
    // forged by another site, so only the others (cookies, proxy headers, anonymous) are
    // held to the Origin check; scripts and editors send an Origin of their own.
    let by_token = identified
        .caller
        .as_ref()
        .is_some_and(|c| matches!(c.via, AuthVia::TokenHeader | AuthVia::TokenQuery));
    if !by_token {
        if let Err(e) = check_origin(app, req.method(), req.headers(), route.is_api(), is_ws) {
            return Err(Box::new(e.into_response()));
        }
    }
    if let Some(token) = &identified.new_xsrf {
        req.extensions_mut()
            .insert(crate::auth::NewXsrf(token.clone()));
    }
    let caller = match (identified.caller, route.access) {
        (caller, Access::Public) => {
            if let Some(c) = caller {
                req.extensions_mut().insert(c);
            }
            return Ok(identified.set_cookies);
        }
        (Some(caller), _) => caller,
        (None, _) => {
            if !route.is_api() && req.method() == Method::GET {
                return Err(Box::new(login_redirect(app, req)));
            }
            return Err(Box::new(
                ApiError::forbidden(
                    "Not authenticated: log in, or send a token in the Authorization header",
                )
                .into_response(),
            ));
        }
    };

    if matches!(caller.via, AuthVia::Cookie | AuthVia::Proxy) && is_unsafe(req.method()) {
        if let Err(e) = check_xsrf(req.headers()) {
            return Err(Box::new(e.into_response()));
        }
    }
    if serves_user_files(route) && matches!(caller.via, AuthVia::Cookie | AuthVia::Proxy) {
        if let Err(e) = check_same_site_read(app, req.headers(), req.uri().query()) {
            return Err(Box::new(e.into_response()));
        }
    }
    if !matches!(
        route.pattern,
        "/api/status" | "/api/concord/status" | "/metrics"
    ) {
        app.touch();
    }

    let guard = Guard {
        app: app.clone(),
        caller: caller.clone(),
        request: RequestInfo {
            peer,
            method: req.method().clone(),
            route: route.pattern,
        },
    };
    match route.access {
        Access::Requires(action, Target::Path) => {
            // A contents path: a refusal answers exactly as the route does for a missing path.
            let path = canonical_path(params.get("path").unwrap_or(""))
                .and_then(|requested| {
                    let method = req.method();
                    guard.require_resolved(action, requested.clone(), || {
                        crate::api::contents::not_found(route.pattern, method, params, &requested)
                    })
                })
                .map_err(|e| Box::new(e.into_response()))?;
            req.extensions_mut()
                .insert(Resource::contents(path.resolved.clone()));
            req.extensions_mut().insert(path);
        }
        Access::Requires(action, target) => {
            let resource = match resolve_target(app, target, params) {
                Ok(r) => r,
                Err(e) => return Err(Box::new(e.into_response())),
            };
            let not_found = || match target {
                Target::Instance(kind, param) => {
                    instance_not_found(kind, params.get(param).unwrap_or(""))
                }
                _ => ApiError::not_found("Not Found"),
            };
            if let Err(e) = guard.require(action, &resource, not_found) {
                return Err(Box::new(e.into_response()));
            }
            req.extensions_mut().insert(resource);
        }
        Access::Public | Access::Identified => {}
    }
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(guard);
    Ok(identified.set_cookies)
}

fn resolve_target(app: &App, target: Target, params: &RouteParams) -> Result<Resource, ApiError> {
    match target {
        Target::Type(kind) => Ok(Resource::service(kind)),
        // Contents paths are resolved by `Guard::require_resolved`.
        Target::Path => Err(ApiError::internal("A contents path is resolved apart")),
        Target::Instance(kind, param) => {
            let id = params.get(param).unwrap_or("");
            let lookup = app.instances.get(&kind).ok_or_else(|| {
                ApiError::not_found(format!("No {kind} service is running on this server"))
            })?;
            lookup
                .lookup(id)
                .ok_or_else(|| instance_not_found(kind, id))
        }
    }
}

/// The 404 of a missing instance, worded as jupyter_server words it.
pub fn instance_not_found(kind: concord_authz::ResourceType, id: &str) -> ApiError {
    use concord_authz::ResourceType as T;
    match kind {
        T::Kernels => ApiError::not_found(format!("Kernel does not exist: {id}")),
        T::Sessions => ApiError::not_found(format!("Session not found: session_id='{id}'")),
        T::Terminals => ApiError::not_found(format!("Terminal not found: {id}")),
        other => ApiError::not_found(format!("{other} not found: {id}")),
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Cookie-authenticated state changes must echo the `_xsrf` cookie in a header
/// (`X-XSRFToken`, or `X-CSRFToken` as tornado also accepts).
fn check_xsrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let cookie = crate::auth::cookie_value(headers, crate::auth::XSRF_COOKIE);
    let sent = headers
        .get("x-xsrftoken")
        .or_else(|| headers.get("x-csrftoken"))
        .and_then(|v| v.to_str().ok());
    match (cookie, sent) {
        (_, None) => Err(ApiError::forbidden("'_xsrf' argument missing from POST")),
        (Some(c), Some(s)) if !c.is_empty() && crate::auth::constant_time_eq(&c, s) => Ok(()),
        _ => Err(ApiError::forbidden(
            "XSRF cookie does not match POST argument",
        )),
    }
}

/// Whether a request comes with a body (a length above 0, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Refuse a body announced larger than `--max-body-size` from its `Content-Length`, before
/// reading any of it; the connection is closed rather than drained.
fn check_body_size(app: &App, headers: &HeaderMap) -> Option<Response> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    let limit = app.settings.max_body_size;
    if announced <= u64::try_from(limit).unwrap_or(u64::MAX) {
        return None;
    }
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Request body of {announced} bytes is larger than the server accepts \
             (--max-body-size {limit})"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Routes that hand users' files to a browser as they are (not as a JSON model): another
/// site must not be able to include them (`<script src>`, `<img>`, a stylesheet) with the
/// caller's cookies. jupyter_server checks its `/files/` (and `/nbconvert/`) handlers; `/view/`
/// is a page naming the file, framed by no other site (`frame-ancestors 'self'`).
fn serves_user_files(route: &Route) -> bool {
    route.pattern == "/files/{*path}"
}

/// jupyter_server's check of a cookie-authenticated GET of `/files/` (its
/// `check_xsrf_cookie` then `check_referer`): allowed with the `_xsrf` token (query argument
/// or header, as JupyterLab's download links carry it) or a `Referer` from this host or an
/// allowed origin. Also allowed, as the browser vouches for them: `Sec-Fetch-Site:
/// same-origin`, and `none` (the user typed or bookmarked the address). Anything else,
/// e.g. another site's page including the file, is a 403.
fn check_same_site_read(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let allow_origin = &app.settings.allow_origin;
    if allow_origin.iter().any(|o| o == "*") {
        return Ok(());
    }
    let cookie = crate::auth::cookie_value(headers, crate::auth::XSRF_COOKIE).unwrap_or_default();
    let sent = headers
        .get("x-xsrftoken")
        .or_else(|| headers.get("x-csrftoken"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            crate::api::query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "_xsrf")
                .map(|(_, v)| v)
        });
    if let Some(sent) = sent {
        if !cookie.is_empty() && crate::auth::constant_time_eq(&cookie, &sent) {
            return Ok(());
        }
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("same-origin") || fetch_site.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    let Some(referer) = headers.get(header::REFERER).and_then(|r| r.to_str().ok()) else {
        return Err(ApiError::forbidden("Blocking request from unknown origin"));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let referer_origin = url_origin(referer);
    let referer_host = referer_origin
        .split_once("://")
        .map_or("", |(_, authority)| authority);
    let allowed = (!host.is_empty() && referer_host.eq_ignore_ascii_case(host))
        || allow_origin
            .iter()
            .any(|o| o.eq_ignore_ascii_case(referer_origin));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Blocking Cross Origin request from {referer}."
        )))
    }
}

/// `scheme://host:port` of an absolute URL (empty when it has none).
fn url_origin(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "";
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The authority without userinfo is what a browser sends; drop any to compare hosts.
    if rest[..authority_end].contains('@') {
        return "";
    }
    &url[..scheme.len() + 3 + authority_end]
}

/// Refuse requests whose Host header is not this server's (DNS rebinding).
fn check_host(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Ok(()); // HTTP/1.0 without Host: nothing a browser sends.
    };
    let name = host_name(host);
    let settings = &app.settings;
    let allowed = settings.allowed_hosts.iter().any(|h| h == "*")
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback() || ip == settings.ip || settings.ip.is_unspecified())
            .unwrap_or(false)
        || settings
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Blocking request with non-local 'Host' {name}. If the server should be reachable at that name, add it to --allowed-hosts."
        )))
    }
}

/// `example.org:8888` → `example.org`; `[::1]:8888` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Cross-origin API requests, websockets and form posts are refused unless the origin is
/// allowed: 404 for API requests (as jupyter_server), 403 for websockets and pages.
fn check_origin(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    is_api: bool,
    is_ws: bool,
) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    if !is_api && !is_ws && !is_unsafe(method) {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same_origin = origin
        .split_once("://")
        .map(|(_, rest)| rest.eq_ignore_ascii_case(host))
        .unwrap_or(false);
    let allowed = same_origin
        || app
            .settings
            .allow_origin
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if allowed {
        Ok(())
    } else if is_ws {
        Err(ApiError::forbidden(format!(
            "Cross-origin websocket from {origin} refused"
        )))
    } else if is_api {
        Err(ApiError::not_found(format!(
            "Blocking cross-origin API request from {origin}"
        )))
    } else {
        Err(ApiError::forbidden(format!(
            "Blocking cross-origin request from {origin}"
        )))
    }
}

fn login_redirect(app: &App, req: &Request) -> Response {
    let next = req
        .uri()
        .path_and_query()
        .map(|pq| crate::auth::strip_token_param(pq.as_str()))
        .unwrap_or_else(|| app.settings.base_url.clone());
    let encoded = crate::api::query_escape(&next);
    crate::error::found(&format!("{}login?next={encoded}", app.settings.base_url))
}

fn not_found_page() -> Response {
    ApiError::not_found("Not Found").into_response()
}

/// Whether a request path (with the base URL) is under the JSON API: `/api`, `/api/…`,
/// `/lab/api/…`, whether or not a route serves it.
fn is_api_path(base_url: &str, path: &str) -> bool {
    let Some(rel) = path.strip_prefix(base_url.trim_end_matches('/')) else {
        return false;
    };
    rel == "/api" || rel.starts_with("/api/") || rel.starts_with("/lab/api/")
}

/// jupyter_server's headers: `nosniff`, and the CSP of its handlers unless the response
/// set its own. API answers (successes, errors, unknown API routes) are data, never a
/// document: they also get `default-src 'none'`, as its `APIHandler`.
fn add_security_headers(base_url: &str, is_api: bool, headers: &mut HeaderMap) {
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let mut csp =
            format!("frame-ancestors 'self'; report-uri {base_url}api/security/csp-report");
        if is_api {
            csp.push_str("; default-src 'none'");
        }
        if let Ok(v) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("example.org:8888"), "example.org");
        assert_eq!(host_name("[::1]:8888"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn url_origins() {
        assert_eq!(
            url_origin("http://a.example:8888/x?y#z"),
            "http://a.example:8888"
        );
        assert_eq!(url_origin("https://a.example"), "https://a.example");
        assert_eq!(url_origin("http://a.example?q"), "http://a.example");
        assert_eq!(url_origin("http://user@a.example/"), "");
        assert_eq!(url_origin("a.example/x"), "");
        assert_eq!(url_origin(""), "");
    }
}
