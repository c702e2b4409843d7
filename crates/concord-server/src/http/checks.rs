//! The checks of every request that are not about permissions: the Host header (DNS
//! rebinding), the Origin of cross-site requests, the XSRF token of cookie-authenticated
//! state changes and cross-site reads of users' files, the announced body size, and the
//! security headers of every answer. All as jupyter_server does them.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

use crate::http::error::ApiError;
use crate::http::routes::Route;
use crate::state::App;

/// Whether a method changes state (XSRF and Origin apply).
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Cookie-authenticated state changes must echo the `_xsrf` cookie in a header
/// (`X-XSRFToken`, or `X-CSRFToken` as tornado also accepts).
pub(crate) fn check_xsrf(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// Refuse a body announced larger than `--max-body-size` from its `Content-Length`, before
/// reading any of it; the connection is closed rather than drained.
pub(crate) fn check_body_size(app: &App, headers: &HeaderMap) -> Option<Response> {
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
/// caller's cookies. jupyter_server checks its `/files/` and `/nbconvert/` handlers; `/view/`
/// is a page naming the file, framed by no other site (`frame-ancestors 'self'`).
pub(crate) fn serves_user_files(route: &Route) -> bool {
    matches!(
        route.pattern,
        "/files/{*path}" | "/nbconvert/{format}/{*path}"
    )
}

/// jupyter_server's check of a cookie-authenticated GET of `/files/` (its
/// `check_xsrf_cookie` then `check_referer`): allowed with the `_xsrf` token (query argument
/// or header, as JupyterLab's download links carry it) or a `Referer` from this host or an
/// allowed origin. Also allowed, as the browser vouches for them: `Sec-Fetch-Site:
/// same-origin`, and `none` (the user typed or bookmarked the address). Anything else,
/// e.g. another site's page including the file, is a 403.
pub(crate) fn check_same_site_read(
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
            crate::http::extract::query_pairs(query)
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
pub(crate) fn url_origin(url: &str) -> &str {
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
pub(crate) fn check_host(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
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
pub(crate) fn host_name(host: &str) -> &str {
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
pub(crate) fn check_origin(
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

/// Whether a request path (with the base URL) is under the JSON API: `/api`, `/api/…`,
/// `/lab/api/…`, whether or not a route serves it.
pub(crate) fn is_api_path(base_url: &str, path: &str) -> bool {
    let Some(rel) = path.strip_prefix(base_url.trim_end_matches('/')) else {
        return false;
    };
    rel == "/api" || rel.starts_with("/api/") || rel.starts_with("/lab/api/")
}

/// Whether the answers of a route are a user's document (an export), which jupyter_server
/// sandboxes: `sandbox allow-scripts` in the CSP runs its scripts in an opaque origin, so
/// they cannot call the server. Refusals get it too, so they look like any other answer.
pub(crate) fn sandboxes_answers(pattern: &str) -> bool {
    pattern.starts_with("/nbconvert/")
}

/// The CSP of a sandboxed route (jupyter_server's `nbconvert_csp_sandbox`, on by default).
pub(crate) fn add_sandbox_csp(base_url: &str, headers: &mut HeaderMap) {
    let csp = format!(
        "frame-ancestors 'self'; report-uri {base_url}api/security/csp-report; sandbox allow-scripts"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// jupyter_server's headers: `nosniff`, and the CSP of its handlers unless the response
/// set its own. API answers (successes, errors, unknown API routes) are data, never a
/// document: they also get `default-src 'none'`, as its `APIHandler`.
pub(crate) fn add_security_headers(base_url: &str, is_api: bool, headers: &mut HeaderMap) {
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
