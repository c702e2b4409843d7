//! The path of every request, top to bottom: [`dispatch`] → `route_request` (body size,
//! Host, base URL, the first matching row of the table) → `authorize_request` (Origin,
//! identify, XSRF, the row's declared permission through the [`Guard`]) → the handler →
//! security headers. The checks themselves are in `checks.rs`, the guard in `guard.rs`.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use concord_authz::Resource;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower::ServiceExt;

use crate::audit::RequestInfo;
use crate::auth::AuthVia;
use crate::http::checks::{
    add_sandbox_csp, add_security_headers, check_body_size, check_host, check_origin,
    check_same_site_read, check_xsrf, is_api_path, is_unsafe, sandboxes_answers, serves_user_files,
};
use crate::http::error::{instance_not_found, ApiError};
use crate::http::guard::{canonical_path, Guard, PathForm};
use crate::http::matcher::{PathSegments, Pattern, RouteParams};
use crate::http::routes::{self, Access, Route, RouteService, Target};
use crate::state::App;

/// One row of the table, ready to serve: its pattern compiled, its handler bound.
struct BoundRoute {
    route: Route,
    pattern: Pattern,
    service: RouteService,
}

/// The compiled route table plus the application.
pub struct Dispatcher {
    app: App,
    routes: Vec<BoundRoute>,
}

impl Dispatcher {
    /// Compile every row's pattern and bind its handler to the application, once.
    pub fn new(app: App) -> Arc<Self> {
        let routes = routes::table()
            .into_iter()
            .map(|route| BoundRoute {
                pattern: Pattern::compile(route.pattern),
                service: route.service(app.clone()),
                route,
            })
            .collect();
        Arc::new(Dispatcher { app, routes })
    }
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
    if sandboxes_answers(pattern) {
        add_sandbox_csp(&app.settings.base_url, response.headers_mut());
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
    req: Request,
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
        return ("(no route)", not_found_page(app, &full_path));
    };
    let rel = if rel.is_empty() { "/" } else { rel };

    // Find the route: first row whose pattern and method match; a pattern match with no
    // method match is 405.
    let mut pattern_matched = false;
    let mut found = None;
    let segments = PathSegments::new(rel);
    for bound in &dispatcher.routes {
        if let Some(params) = bound.pattern.matches(&segments) {
            pattern_matched = true;
            if bound.route.verb.serves(req.method()) {
                found = Some((&bound.route, bound.service.clone(), params));
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
        return ("(no route)", not_found_page(app, &full_path));
    };
    let (pattern, response) = serve_route(app, route, service, params, peer, req).await;
    if route.is_api() {
        return (pattern, response);
    }
    // A browser page: an error is shown as a page, not as JSON.
    match response.extensions().get::<ApiError>() {
        Some(error) => {
            let mut page = error.clone().into_page(&app.settings.base_url);
            for cookie in response.headers().get_all(header::SET_COOKIE) {
                page.headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            (pattern, page)
        }
        None => (pattern, response),
    }
}

/// Authorize the request for `route` and run its handler.
async fn serve_route(
    app: &App,
    route: &Route,
    service: RouteService,
    params: RouteParams,
    peer: IpAddr,
    mut req: Request,
) -> (&'static str, Response) {
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

    let guard = Guard::new(
        app.clone(),
        caller.clone(),
        RequestInfo {
            peer,
            method: req.method().clone(),
            route: route.pattern,
        },
    );
    match route.access {
        Access::Requires(action, Target::Path) => {
            // A contents path: a refusal answers exactly as the route does for a missing path.
            let path = canonical_path(params.get("path").unwrap_or(""), PathForm::Url)
                .and_then(|requested| {
                    let method = req.method();
                    guard.require_resolved(action, requested.clone(), || {
                        crate::handlers::contents::not_found(
                            route.pattern,
                            method,
                            params,
                            &requested,
                        )
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
        // A scoped token reaches the routes about the caller themselves (settings,
        // workspaces, profile, tokens) only to read: its scope names no right to change them.
        Access::Identified if caller.scope().is_some() && is_unsafe(req.method()) => {
            return Err(Box::new(
                ApiError::forbidden(format!(
                    "User {} used an API token limited to a scope ({}): it may only read here",
                    caller.identity.username(),
                    caller.scope().map(|s| s.to_string()).unwrap_or_default()
                ))
                .into_response(),
            ));
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

/// Whether a request comes with a body (a length above 0, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn login_redirect(app: &App, req: &Request) -> Response {
    let next = req
        .uri()
        .path_and_query()
        .map(|pq| crate::auth::strip_token_param(pq.as_str()))
        .unwrap_or_else(|| app.settings.base_url.clone());
    let encoded = crate::http::extract::query_escape(&next);
    crate::http::error::found(&format!("{}login?next={encoded}", app.settings.base_url))
}

/// jupyter_server's answer to a URL no route serves: a 404 page; under the API, JSON.
fn not_found_page(app: &App, path: &str) -> Response {
    let error = ApiError::not_found("Not Found");
    if is_api_path(&app.settings.base_url, path) {
        error.into_response()
    } else {
        error.into_page(&app.settings.base_url)
    }
}
