//! The login and logout pages: plain HTML forms that work without JavaScript.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use minijinja::{context, Environment};
use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::auth::{Caller, LoginFailure, XSRF_COOKIE};
use crate::config::AuthMode;
use crate::http::extract::query_pairs;
use crate::state::App;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Names end in .html, so minijinja escapes every value.
        for (name, source) in [
            ("page.html", include_str!("../../templates/page.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("message.html", include_str!("../../templates/message.html")),
            ("error.html", include_str!("../../templates/error.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!("built-in template {name} is invalid: {e}");
            }
        }
        env
    })
}

pub(crate) fn render(name: &str, ctx: minijinja::Value) -> String {
    templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!("rendering {name}: {e}");
            "<!DOCTYPE html><title>Concord</title><p>Internal error rendering this page.</p>"
                .to_string()
        })
}

/// Where to go after logging in: only a path on this server, never another origin.
pub fn safe_next(app: &App, next: Option<&str>) -> String {
    let base = &app.settings.base_url;
    match next {
        Some(n)
            if n.starts_with(base.as_str())
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => base.clone(),
    }
}

fn login_page(
    app: &App,
    status: StatusCode,
    message: Option<&str>,
    next: &str,
    xsrf: &str,
) -> Response {
    let html = render(
        "login.html",
        context! {
            base_url => app.settings.base_url.clone(),
            message => message,
            next => next,
            xsrf => xsrf,
            form => app.settings.auth != AuthMode::Proxy,
            ask_username => app.settings.auth == AuthMode::Users,
        },
    );
    (status, Html(html)).into_response()
}

/// `GET /login`: the form (or straight on to `next` when already logged in).
pub async fn login_form(
    State(app): State<App>,
    caller: Option<Extension<Caller>>,
    req: Request,
) -> Response {
    let pairs = query_pairs(req.uri().query());
    let next = safe_next(
        &app,
        pairs
            .iter()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.as_str()),
    );
    if caller.is_some() {
        return crate::http::error::found(&next);
    }
    let xsrf = crate::auth::request_xsrf(&req);
    login_page(&app, StatusCode::OK, None, &next, &xsrf)
}

/// `POST /login`: check the form's XSRF token, the throttle and the credentials.
pub async fn login_submit(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let xsrf_now = crate::auth::request_xsrf(&req);
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "Login form too large").into_response();
        }
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let next = safe_next(&app, field("next"));
    let cookie_xsrf = crate::auth::cookie_value(&headers, XSRF_COOKIE).unwrap_or_default();
    let form_xsrf = field("_xsrf").unwrap_or("");
    if cookie_xsrf.is_empty() || !crate::auth::constant_time_eq(&cookie_xsrf, form_xsrf) {
        return login_page(
            &app,
            StatusCode::FORBIDDEN,
            Some("Your session expired or the form was sent from another site. Please try again."),
            &next,
            &xsrf_now,
        );
    }
    let username = field("username").unwrap_or("");
    let password = field("password").unwrap_or("");
    match app.auth.login(username, password, peer.ip()).await {
        Ok(set_cookie) => {
            let mut response = crate::http::error::found(&next);
            if let Ok(v) = HeaderValue::from_str(&set_cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(LoginFailure::Throttled { retry_after_secs }) => {
            let mut response = login_page(
                &app,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many failed attempts. Try again in {retry_after_secs} seconds."
                )),
                &next,
                &cookie_xsrf,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Err(LoginFailure::Invalid) => {
            let message = if app.settings.auth == AuthMode::Users {
                "Invalid username or password."
            } else {
                "Invalid token."
            };
            login_page(
                &app,
                StatusCode::UNAUTHORIZED,
                Some(message),
                &next,
                &cookie_xsrf,
            )
        }
        Err(LoginFailure::Unavailable) => login_page(
            &app,
            StatusCode::NOT_FOUND,
            Some("This server does not log people in with a form."),
            &next,
            &cookie_xsrf,
        ),
    }
}

/// `GET /logout`: end the session on the server and clear the cookie.
pub async fn logout(State(app): State<App>, req: Request) -> Response {
    let clear = app.auth.logout(req.headers());
    let html = render(
        "message.html",
        context! {
            title => "Logged out",
            text => "You have been logged out of Concord.",
            link => format!("{}login", app.settings.base_url),
            link_text => "Log in again",
        },
    );
    let mut response = Html(html).into_response();
    for cookie in clear {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /`: on to JupyterLab (which sends anonymous callers to the login page).
pub async fn root(State(app): State<App>) -> Response {
    crate::http::error::found(&format!("{}lab", app.settings.base_url))
}
