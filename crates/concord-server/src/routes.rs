//! The route table: every route of the server, with the permission it needs, in one place.
//!
//! Each row says: method, path pattern (relative to the base URL), who may call it, and the
//! handler. The request pipeline (`pipeline.rs`) authorizes from the row before the handler
//! runs; handlers never re-check the declared permission. A handler that acts on a *second*
//! resource named in the request body (the source of a copy, the destination of a rename)
//! asks the request's [`crate::pipeline::Guard`], which decides, audits and answers the same way.
//!
//! Patterns: `/api/kernels/{kernel_id}` captures one segment; `{*path}` captures zero or more
//! segments (percent-encoded, as received) and may stand anywhere. Rows are tried in order;
//! the first whose pattern and method match wins.

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::Response;
use concord_authz::{Action, ResourceType};
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;

use crate::api;
use crate::state::App;

use Action::{Read, Write};
use ResourceType::{Api, Events, Kernels, Kernelspecs, Server, Sessions};

/// The HTTP methods a route can declare; `Ws` is a GET that upgrades to a websocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// GET (and HEAD).
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// A websocket: a GET with `Upgrade: websocket`.
    Ws,
}

impl Verb {
    /// The HTTP method name as written in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::Ws => "WS",
        }
    }

    /// Whether a request with this HTTP method is served by a row with this verb.
    pub fn serves(self, method: &axum::http::Method) -> bool {
        use axum::http::Method;
        match self {
            Verb::Get | Verb::Ws => method == Method::GET || method == Method::HEAD,
            Verb::Post => method == Method::POST,
            Verb::Put => method == Method::PUT,
            Verb::Patch => method == Method::PATCH,
            Verb::Delete => method == Method::DELETE,
        }
    }
}

/// Which resource a route acts on, so the pipeline can build the [`concord_authz::Resource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The resource type as a whole (`api`, `server`, or "list kernels").
    Type(ResourceType),
    /// The contents path captured by `{*path}`.
    Path,
    /// An owned instance (kernel, session, terminal) whose id is the named capture.
    Instance(ResourceType, &'static str),
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, even without credentials (`/api`, `/login`).
    Public,
    /// Any authenticated caller: routes about the caller themselves (`/api/me`).
    Identified,
    /// An authenticated caller allowed `Action` on the target.
    Requires(Action, Target),
}

/// A handler bound to the application state, ready to serve requests.
pub type RouteService = BoxCloneSyncService<Request, Response, Infallible>;

/// One row of the table.
pub struct Route {
    /// The method.
    pub verb: Verb,
    /// The path pattern, relative to the base URL.
    pub pattern: &'static str,
    /// Who may call it.
    pub access: Access,
    make: Box<dyn Fn(App) -> RouteService + Send + Sync>,
}

impl Route {
    /// Bind the handler to the application state.
    pub fn service(&self, app: App) -> RouteService {
        (self.make)(app)
    }

    /// Whether the route belongs to the JSON API (errors as JSON, no login redirects).
    pub fn is_api(&self) -> bool {
        self.pattern == "/api"
            || self.pattern.starts_with("/api/")
            || self.pattern.starts_with("/lab/api/")
            || self.verb == Verb::Ws
    }
}

fn row<H, T>(verb: Verb, pattern: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, App> + Clone + Send + Sync + 'static,
    T: 'static,
{
    Route {
        verb,
        pattern,
        access,
        make: Box::new(move |app| BoxCloneSyncService::new(handler.clone().with_state(app))),
    }
}

/// `Requires(action, Target::Type(kind))`, the common case.
const fn needs(action: Action, kind: ResourceType) -> Access {
    Access::Requires(action, Target::Type(kind))
}

/// Every route of the server. Keep the columns aligned: method, pattern, access, handler.
#[rustfmt::skip]
pub fn table() -> Vec<Route> {
    use Access::{Identified, Public};
    use Verb::*;
    let mut rows = vec![
        // --- server and identity -----------------------------------------------------------------
        row(Get,    "/api",                         Public,                 api::core::version),
        row(Get,    "/api/status",                  needs(Read, Api),       api::core::status),
        row(Get,    "/api/spec.yaml",               needs(Read, Api),       api::core::spec),
        row(Get,    "/api/concord/status",          needs(Read, Api),       api::core::concord_status),
        row(Get,    "/api/me",                      Identified,             api::core::me),
        row(Patch,  "/api/me",                      Identified,             api::core::update_me),
        row(Post,   "/api/shutdown",                needs(Write, Server),   api::core::shutdown),
        // --- events (docs/events.md): each subscriber gets only what it may read ---------------
        row(Ws,     "/api/events/subscribe",        needs(Action::Execute, Events), api::events::subscribe),
        row(Post,   "/api/events",                  needs(Write, Events),   api::events::post),
        row(Get,    "/metrics",                     needs(Read, Server),    api::core::metrics),
        // --- pages ---------------------------------------------------------------------------------
        row(Get,    "/login",                       Public,                 api::pages::login_form),
        row(Post,   "/login",                       Public,                 api::pages::login_submit),
        row(Get,    "/logout",                      Public,                 api::pages::logout),
        row(Get,    "/",                            Public,                 api::pages::root),
    ];
    // Services add their rows below, one block each.
    rows.extend(service_rows());
    rows
}

/// Rows of the services (contents, kernels, sessions, kernelspecs, terminals, JupyterLab).
#[rustfmt::skip]
fn service_rows() -> Vec<Route> {
    use Verb::*;
    let path = |action| Access::Requires(action, Target::Path);
    let kernel = |action| Access::Requires(action, Target::Instance(Kernels, "kernel_id"));
    let session = |action| Access::Requires(action, Target::Instance(Sessions, "session_id"));
    let terminal = |action| Access::Requires(action, Target::Instance(ResourceType::Terminals, "name"));
    vec![
        // --- contents (issue 3) --------------------------------------------------------------------
        row(Get,    "/api/contents/{*path}/checkpoints",                  path(Read),  api::contents::list_checkpoints),
        row(Post,   "/api/contents/{*path}/checkpoints",                  path(Write), api::contents::create_checkpoint),
        row(Post,   "/api/contents/{*path}/checkpoints/{checkpoint_id}",  path(Write), api::contents::restore_checkpoint),
        row(Delete, "/api/contents/{*path}/checkpoints/{checkpoint_id}",  path(Write), api::contents::delete_checkpoint),
        row(Post,   "/api/contents/{*path}/trust",                        path(Write), api::contents::trust),
        row(Get,    "/api/contents/{*path}",                              path(Read),  api::contents::get),
        row(Put,    "/api/contents/{*path}",                              path(Write), api::contents::put),
        row(Post,   "/api/contents/{*path}",                              path(Write), api::contents::post),
        row(Patch,  "/api/contents/{*path}",                              path(Write), api::contents::patch),
        row(Delete, "/api/contents/{*path}",                              path(Write), api::contents::delete),
        row(Get,    "/files/{*path}",                                     path(Read),  api::contents::files),
        row(Get,    "/view/{*path}",                                      path(Read),  api::contents::view),
        // --- JupyterLab front end (issue 6): pages need login, its static assets are public -------
        row(Get,    "/lab",                                               Access::Identified, api::lab::page),
        row(Get,    "/lab/tree/{*path}",                                  Access::Identified, api::lab::page),
        row(Get,    "/lab/workspaces/{workspace}",                        Access::Identified, api::lab::page),
        row(Get,    "/lab/workspaces/{workspace}/tree/{*path}",           Access::Identified, api::lab::page),
        row(Get,    "/doc",                                               Access::Identified, api::lab::page),
        row(Get,    "/doc/tree/{*path}",                                  Access::Identified, api::lab::page),
        row(Get,    "/doc/workspaces/{workspace}",                        Access::Identified, api::lab::page),
        row(Get,    "/doc/workspaces/{workspace}/tree/{*path}",           Access::Identified, api::lab::page),
        row(Get,    "/static/{*path}",                                    Access::Public,     api::lab::static_files),
        row(Get,    "/favicon.ico",                                       Access::Public,     api::lab::favicon),
        row(Get,    "/lab/extensions/{*path}",                            Access::Public,     api::lab::extension_files),
        row(Get,    "/lab/api/themes/{*path}",                            Access::Public,     api::lab::theme_files),
        row(Get,    "/lab/api/settings",                                  Access::Identified, api::lab::list_settings),
        row(Get,    "/lab/api/settings/{*plugin}",                        Access::Identified, api::lab::get_settings),
        row(Put,    "/lab/api/settings/{*plugin}",                        Access::Identified, api::lab::put_settings),
        row(Get,    "/lab/api/workspaces",                                Access::Identified, api::lab::list_workspaces),
        row(Get,    "/lab/api/workspaces/{*name}",                        Access::Identified, api::lab::get_workspace),
        row(Put,    "/lab/api/workspaces/{*name}",                        Access::Identified, api::lab::put_workspace),
        row(Delete, "/lab/api/workspaces/{*name}",                        Access::Identified, api::lab::delete_workspace),
        row(Get,    "/lab/api/translations",                              Access::Identified, api::lab::list_translations),
        row(Get,    "/lab/api/translations/{locale}",                     Access::Identified, api::lab::get_translation),
        row(Get,    "/lab/api/listings/{*path}",                          Access::Identified, api::lab::listings),
        row(Get,    "/lab/api/licenses",                                  Access::Identified, api::lab::licenses),
        row(Get,    "/lab/api/update",                                    Access::Identified, api::lab::update_check),
        row(Get,    "/lab/api/news",                                      Access::Identified, api::lab::news),
        row(Get,    "/lab/{*path}",                                       Access::Identified, api::lab::page_not_found),
        // Front-end config: each user's own layer over the server-wide one; writing the
        // server-wide layer (`?scope=server`) also needs config:write (checked by the handler).
        row(Get,    "/api/config/{section}",                              needs(Read, ResourceType::Config), api::lab::get_config),
        row(Patch,  "/api/config/{section}",                              Access::Identified, api::lab::patch_config),
        row(Put,    "/api/config/{section}",                              Access::Identified, api::lab::put_config),
        // --- terminals (issue 5) -------------------------------------------------------------------
        row(Get,    "/api/terminals",                                     needs(Read, ResourceType::Terminals),            api::terminals::list),
        row(Post,   "/api/terminals",                                     needs(Action::Execute, ResourceType::Terminals), api::terminals::create),
        row(Get,    "/api/terminals/{name}",                              terminal(Read),                                  api::terminals::get),
        row(Delete, "/api/terminals/{name}",                              terminal(Write),                                 api::terminals::delete),
        // Read lets a watcher in; the handler decides whether the client may also type.
        row(Ws,     "/terminals/websocket/{name}",                        terminal(Read),                                  api::terminals::websocket),
        // --- kernels, sessions, kernelspecs (issue 4) ---------------------------------------------
        row(Get,    "/api/kernels",                                       needs(Read, Kernels),          api::kernels::list),
        row(Post,   "/api/kernels",                                       needs(Write, Kernels),         api::kernels::start_kernel),
        row(Ws,     "/api/kernels/{kernel_id}/channels",                  kernel(Read),                  api::kernels::channels),
        row(Post,   "/api/kernels/{kernel_id}/interrupt",                 kernel(Write),                 api::kernels::interrupt),
        row(Post,   "/api/kernels/{kernel_id}/restart",                   kernel(Write),                 api::kernels::restart),
        row(Get,    "/api/kernels/{kernel_id}",                           kernel(Read),                  api::kernels::get),
        row(Delete, "/api/kernels/{kernel_id}",                           kernel(Write),                 api::kernels::delete),
        row(Get,    "/api/sessions",                                      needs(Read, Sessions),         api::sessions::list),
        row(Post,   "/api/sessions",                                      needs(Write, Sessions),        api::sessions::create),
        row(Get,    "/api/sessions/{session_id}",                         session(Read),                 api::sessions::get),
        row(Patch,  "/api/sessions/{session_id}",                         session(Write),                api::sessions::update),
        row(Delete, "/api/sessions/{session_id}",                         session(Write),                api::sessions::delete),
        row(Get,    "/api/kernelspecs",                                   needs(Read, Kernelspecs),      api::kernelspecs::list),
        row(Get,    "/api/kernelspecs/{kernel_name}",                     needs(Read, Kernelspecs),      api::kernelspecs::get),
        row(Get,    "/kernelspecs/{kernel_name}/{*path}",                 needs(Read, Kernelspecs),      api::kernelspecs::resource),
    ]
}

/// The values captured by a route's pattern.
#[derive(Clone, Debug, Default)]
pub struct RouteParams(Vec<(&'static str, String)>);

impl RouteParams {
    /// A captured value by name (`{*path}` captures are percent-encoded as received; single
    /// segments are decoded).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Match a request path (relative to the base URL, starting with `/`) against a pattern.
pub fn match_pattern(pattern: &'static str, path: &str) -> Option<RouteParams> {
    let pat: Vec<&'static str> = split(pattern);
    let mut segs: Vec<&str> = split(path);
    // A trailing slash is not a segment: `/api/contents/` is `/api/contents`.
    if segs.last() == Some(&"") {
        segs.pop();
    }
    let mut params = Vec::new();
    match pat.iter().position(|p| p.starts_with("{*")) {
        None => {
            if pat.len() != segs.len() {
                return None;
            }
            for (p, s) in pat.iter().zip(&segs) {
                match_segment(p, s, &mut params)?;
            }
        }
        Some(w) => {
            let after = pat.len() - w - 1;
            if segs.len() < w + after {
                return None;
            }
            for (p, s) in pat[..w].iter().zip(&segs[..w]) {
                match_segment(p, s, &mut params)?;
            }
            let rest = segs.len() - after;
            for (p, s) in pat[w + 1..].iter().zip(&segs[rest..]) {
                match_segment(p, s, &mut params)?;
            }
            let middle = &segs[w..rest];
            let name = &pat[w][2..pat[w].len() - 1];
            params.push((name, middle.join("/")));
        }
    }
    Some(RouteParams(params))
}

fn split(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

fn match_segment(
    pattern: &'static str,
    segment: &str,
    params: &mut Vec<(&'static str, String)>,
) -> Option<()> {
    if let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if segment.is_empty() {
            return None;
        }
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()?
            .into_owned();
        params.push((name, decoded));
        Some(())
    } else if pattern == segment {
        Some(())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_single_segment() {
        assert!(match_pattern("/api/status", "/api/status").is_some());
        assert!(match_pattern("/api/status", "/api/status/").is_some());
        assert!(match_pattern("/api/status", "/api/statusx").is_none());
        let p = match_pattern("/api/kernels/{kernel_id}", "/api/kernels/abc%2D1").unwrap();
        assert_eq!(p.get("kernel_id"), Some("abc-1"));
        assert!(match_pattern("/api/kernels/{kernel_id}", "/api/kernels/").is_none());
    }

    #[test]
    fn wildcard_in_the_middle() {
        let pat = "/api/contents/{*path}/checkpoints/{checkpoint_id}";
        let p = match_pattern(pat, "/api/contents/a/b.ipynb/checkpoints/checkpoint").unwrap();
        assert_eq!(p.get("path"), Some("a/b.ipynb"));
        assert_eq!(p.get("checkpoint_id"), Some("checkpoint"));
        let p = match_pattern("/api/contents/{*path}", "/api/contents").unwrap();
        assert_eq!(p.get("path"), Some(""));
        let p = match_pattern("/api/contents/{*path}", "/api/contents/a%2Fb/c").unwrap();
        assert_eq!(p.get("path"), Some("a%2Fb/c"));
        assert!(match_pattern(pat, "/api/contents/a").is_none());
    }

    mod fuzz {
        //! Fuzz target of the route matcher, run as a bounded property test: no request path
        //! makes it panic, and every value a client puts in a pattern's places comes back.
        use super::super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn encode(s: &str) -> String {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        }

        fn patterns() -> Vec<&'static str> {
            let mut p: Vec<&'static str> = table().iter().map(|r| r.pattern).collect();
            p.dedup();
            p
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_paths_never_panic(raw in "(/|[a-z]{1,3}|%[0-9a-fA-F]{0,2}|\\.|.){0,24}") {
                for pattern in patterns() {
                    let _ = match_pattern(pattern, &raw);
                    let _ = match_pattern(pattern, &format!("/{raw}"));
                }
            }

            #[test]
            fn captured_values_come_back(
                values in vec(".{1,8}", 8),
                rest in vec("[^/]{1,6}", 0..4),
                trailing_slash in any::<bool>(),
            ) {
                for pattern in patterns() {
                    let mut path = String::new();
                    let mut expected: Vec<(String, String)> = Vec::new();
                    for (i, seg) in split(pattern).into_iter().enumerate() {
                        path.push('/');
                        if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                            let raw: Vec<String> = rest.iter().map(|r| encode(r)).collect();
                            path.push_str(&raw.join("/"));
                            if raw.is_empty() {
                                path.pop();
                            }
                            expected.push((name.to_string(), raw.join("/")));
                        } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            let value = &values[i % values.len()];
                            path.push_str(&encode(value));
                            expected.push((name.to_string(), value.clone()));
                        } else {
                            path.push_str(seg);
                        }
                    }
                    if path.is_empty() {
                        path.push('/');
                    }
                    if trailing_slash && !path.ends_with('/') {
                        path.push('/');
                    }
                    let params = match_pattern(pattern, &path);
                    prop_assert!(params.is_some(), "{} does not match {}", pattern, path);
                    let params = params.unwrap_or_default();
                    for (name, value) in &expected {
                        prop_assert_eq!(params.get(name), Some(value.as_str()), "{} {}", pattern, path);
                    }
                }
            }
        }
    }

    #[test]
    fn every_route_declares_a_known_pattern_once_per_verb() {
        let rows = table();
        for (i, a) in rows.iter().enumerate() {
            assert!(a.pattern.starts_with('/'), "{}", a.pattern);
            for b in &rows[i + 1..] {
                assert!(
                    !(a.pattern == b.pattern && a.verb == b.verb),
                    "duplicate row {} {}",
                    a.verb.as_str(),
                    a.pattern
                );
            }
        }
    }
}
