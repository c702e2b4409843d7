//! The route table: every route of the server, with the permission it needs, in one place.
//!
//! Each row says: method, path pattern (relative to the base URL), who may call it, and the
//! handler. The request pipeline (`http/pipeline.rs`) authorizes from the row before the
//! handler runs; handlers never re-check the declared permission. A handler that acts on a
//! *second* resource named in the request body (the source of a copy, the destination of a
//! rename) asks the request's [`crate::http::guard::Guard`], which decides, audits and answers
//! the same way.
//!
//! Patterns (`http/matcher.rs`): `/api/kernels/{kernel_id}` captures one segment; `{*path}`
//! captures zero or more segments (percent-encoded, as received) and may stand anywhere. Rows
//! are tried in order; the first whose pattern and method match wins.
//!
//! Access: `Public` (no login), `Identified` (any logged-in caller), `needs(action, type)` (a
//! permission on the resource type), `path(action)` (on the contents path captured by
//! `{*path}`, symlinks resolved), `kernel`/`session`/`terminal(action)` (on the owned instance
//! named by the capture). A websocket row (`Ws`) declares what opening the socket needs; what
//! a client may then do on it is decided by its handler (kernels and terminals: read lets a
//! client watch, execute also lets it type).

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::Response;
use concord_authz::{Action, ResourceType};
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;

use crate::handlers;
use crate::state::App;

use Access::{Identified, Public, Requires};
use Action::{Execute, Read, Write};
use ResourceType::{
    Api, Config, Events, Kernels, Kernelspecs, Nbconvert, Server, Sessions, Terminals,
};

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
    Requires(action, Target::Type(kind))
}

/// Every route of the server. Keep the columns aligned: method, pattern, access, handler.
#[rustfmt::skip]
pub fn table() -> Vec<Route> {
    use Verb::*;
    let mut rows = vec![
        // --- server and identity -----------------------------------------------------------------
        row(Get,    "/api",                         Public,                 handlers::core::version),
        row(Get,    "/api/status",                  needs(Read, Api),       handlers::core::status),
        row(Get,    "/api/spec.yaml",               needs(Read, Api),       handlers::core::spec),
        row(Get,    "/api/concord/status",          needs(Read, Api),       handlers::core::concord_status),
        row(Get,    "/api/me",                      Identified,             handlers::core::me),
        row(Patch,  "/api/me",                      Identified,             handlers::core::update_me),
        row(Post,   "/api/shutdown",                needs(Write, Server),   handlers::core::shutdown),
        // --- API tokens (docs/users.md): one's own; admins see and revoke everyone's (handler) --
        row(Get,    "/api/concord/tokens",          Identified,             handlers::tokens::list),
        row(Post,   "/api/concord/tokens",          Identified,             handlers::tokens::create),
        row(Delete, "/api/concord/tokens/{token_id}", Identified,           handlers::tokens::revoke),
        // --- events (docs/events.md): each subscriber gets only what it may read ---------------
        row(Ws,     "/api/events/subscribe",        needs(Execute, Events), handlers::events::subscribe),
        row(Post,   "/api/events",                  needs(Write, Events),   handlers::events::post),
        row(Get,    "/metrics",                     needs(Read, Server),    handlers::core::metrics),
        // --- pages ---------------------------------------------------------------------------------
        row(Get,    "/login",                       Public,                 handlers::pages::login_form),
        row(Post,   "/login",                       Public,                 handlers::pages::login_submit),
        row(Get,    "/logout",                      Public,                 handlers::pages::logout),
        row(Get,    "/",                            Public,                 handlers::pages::root),
    ];
    // Services add their rows below, one block each.
    rows.extend(service_rows());
    rows
}

/// Rows of the services (contents, exports, kernels, sessions, kernelspecs, terminals,
/// JupyterLab).
#[rustfmt::skip]
fn service_rows() -> Vec<Route> {
    use Verb::*;
    let path = |action| Requires(action, Target::Path);
    let kernel = |action| Requires(action, Target::Instance(Kernels, "kernel_id"));
    let session = |action| Requires(action, Target::Instance(Sessions, "session_id"));
    let terminal = |action| Requires(action, Target::Instance(Terminals, "name"));
    vec![
        // --- contents: the path is authorized as the file system resolves it --------------------
        row(Get,    "/api/contents/{*path}/checkpoints",                  path(Read),  handlers::contents::list_checkpoints),
        row(Post,   "/api/contents/{*path}/checkpoints",                  path(Write), handlers::contents::create_checkpoint),
        row(Post,   "/api/contents/{*path}/checkpoints/{checkpoint_id}",  path(Write), handlers::contents::restore_checkpoint),
        row(Delete, "/api/contents/{*path}/checkpoints/{checkpoint_id}",  path(Write), handlers::contents::delete_checkpoint),
        row(Post,   "/api/contents/{*path}/trust",                        path(Write), handlers::contents::trust),
        row(Get,    "/api/contents/{*path}",                              path(Read),  handlers::contents::get),
        row(Put,    "/api/contents/{*path}",                              path(Write), handlers::contents::put),
        // A copy (`copy_from` in the body) also needs read on the source (handler).
        row(Post,   "/api/contents/{*path}",                              path(Write), handlers::contents::post),
        // A rename (`path` in the body) also needs write on the destination (handler).
        row(Patch,  "/api/contents/{*path}",                              path(Write), handlers::contents::patch),
        row(Delete, "/api/contents/{*path}",                              path(Write), handlers::contents::delete),
        row(Get,    "/files/{*path}",                                     path(Read),  handlers::contents::files),
        row(Get,    "/view/{*path}",                                      path(Read),  handlers::contents::view),
        // --- exports (nbconvert), run in the caller's reading sandbox -----------------------------
        row(Get,    "/api/nbconvert",                                     needs(Read, Nbconvert),  handlers::nbconvert::formats),
        // Also needs nbconvert:read, as jupyter_server's handler (handler).
        row(Get,    "/nbconvert/{format}/{*path}",                        path(Read),              handlers::nbconvert::export_file),
        row(Post,   "/nbconvert/{format}",                                needs(Write, Nbconvert), handlers::nbconvert::export_posted),
        // --- real-time collaboration (docs/collaboration.md) ------------------------------------------
        row(Put,    "/api/collaboration/session/{*path}",                 path(Read),  handlers::collaboration::session),
        // The room's path comes from its file id: the handler requires read on it, and the
        // participant edits with write, else views.
        row(Ws,     "/api/collaboration/room/{room}",                     Identified,  handlers::collaboration::room),
        // --- JupyterLab front end: pages need login, its static assets are public ------------------
        row(Get,    "/lab",                                               Identified,  handlers::lab::page),
        row(Get,    "/lab/tree/{*path}",                                  Identified,  handlers::lab::page),
        row(Get,    "/lab/workspaces/{workspace}",                        Identified,  handlers::lab::page),
        row(Get,    "/lab/workspaces/{workspace}/tree/{*path}",           Identified,  handlers::lab::page),
        row(Get,    "/doc",                                               Identified,  handlers::lab::page),
        row(Get,    "/doc/tree/{*path}",                                  Identified,  handlers::lab::page),
        row(Get,    "/doc/workspaces/{workspace}",                        Identified,  handlers::lab::page),
        row(Get,    "/doc/workspaces/{workspace}/tree/{*path}",           Identified,  handlers::lab::page),
        row(Get,    "/static/{*path}",                                    Public,      handlers::lab::static_files),
        row(Get,    "/favicon.ico",                                       Public,      handlers::lab::favicon),
        row(Get,    "/lab/extensions/{*path}",                            Public,      handlers::lab::extension_files),
        row(Get,    "/lab/api/themes/{*path}",                            Public,      handlers::lab::theme_files),
        row(Get,    "/lab/api/settings",                                  Identified,  handlers::lab::list_settings),
        row(Get,    "/lab/api/settings/{*plugin}",                        Identified,  handlers::lab::get_settings),
        row(Put,    "/lab/api/settings/{*plugin}",                        Identified,  handlers::lab::put_settings),
        row(Get,    "/lab/api/workspaces",                                Identified,  handlers::lab::list_workspaces),
        row(Get,    "/lab/api/workspaces/{*name}",                        Identified,  handlers::lab::get_workspace),
        row(Put,    "/lab/api/workspaces/{*name}",                        Identified,  handlers::lab::put_workspace),
        row(Delete, "/lab/api/workspaces/{*name}",                        Identified,  handlers::lab::delete_workspace),
        row(Get,    "/lab/api/translations",                              Identified,  handlers::lab::list_translations),
        row(Get,    "/lab/api/translations/{locale}",                     Identified,  handlers::lab::get_translation),
        row(Get,    "/lab/api/listings/{*path}",                          Identified,  handlers::lab::listings),
        row(Get,    "/lab/api/licenses",                                  Identified,  handlers::lab::licenses),
        row(Get,    "/lab/api/update",                                    Identified,  handlers::lab::update_check),
        row(Get,    "/lab/api/news",                                      Identified,  handlers::lab::news),
        row(Get,    "/lab/{*path}",                                       Identified,  handlers::lab::page_not_found),
        // Front-end config: each user's own layer over the server-wide one; writing the
        // server-wide layer (`?scope=server`) also needs config:write (checked by the handler).
        row(Get,    "/api/config/{section}",                              needs(Read, Config),          handlers::lab::get_config),
        row(Patch,  "/api/config/{section}",                              Identified,                   handlers::lab::patch_config),
        row(Put,    "/api/config/{section}",                              Identified,                   handlers::lab::put_config),
        // --- terminals -----------------------------------------------------------------------------
        row(Get,    "/api/terminals",                                     needs(Read, Terminals),       handlers::terminals::list),
        // The new terminal's folder also needs execute, read and write (handler).
        row(Post,   "/api/terminals",                                     needs(Execute, Terminals),    handlers::terminals::create),
        row(Get,    "/api/terminals/{name}",                              terminal(Read),               handlers::terminals::get),
        row(Delete, "/api/terminals/{name}",                              terminal(Write),              handlers::terminals::delete),
        // Read lets a watcher in; the handler decides whether the client may also type (execute).
        row(Ws,     "/terminals/websocket/{name}",                        terminal(Read),               handlers::terminals::websocket),
        // --- kernels, sessions, kernelspecs --------------------------------------------------------
        row(Get,    "/api/kernels",                                       needs(Read, Kernels),         handlers::kernels::list),
        // The kernel's working directory (`path` in the body) also needs read (handler).
        row(Post,   "/api/kernels",                                       needs(Write, Kernels),        handlers::kernels::start_kernel),
        // Read lets a watcher in; the handler decides whether the client may also execute.
        row(Ws,     "/api/kernels/{kernel_id}/channels",                  kernel(Read),                 handlers::kernels::channels),
        row(Post,   "/api/kernels/{kernel_id}/interrupt",                 kernel(Write),                handlers::kernels::interrupt),
        row(Post,   "/api/kernels/{kernel_id}/restart",                   kernel(Write),                handlers::kernels::restart),
        row(Get,    "/api/kernels/{kernel_id}",                           kernel(Read),                 handlers::kernels::get),
        row(Delete, "/api/kernels/{kernel_id}",                           kernel(Write),                handlers::kernels::delete),
        row(Get,    "/api/sessions",                                      needs(Read, Sessions),        handlers::sessions::list),
        // The notebook path also needs read, the session and its kernel write (handler).
        row(Post,   "/api/sessions",                                      needs(Write, Sessions),       handlers::sessions::create),
        row(Get,    "/api/sessions/{session_id}",                         session(Read),                handlers::sessions::get),
        // A new path is authorized as on creation (handler).
        row(Patch,  "/api/sessions/{session_id}",                         session(Write),               handlers::sessions::update),
        row(Delete, "/api/sessions/{session_id}",                         session(Write),               handlers::sessions::delete),
        row(Get,    "/api/kernelspecs",                                   needs(Read, Kernelspecs),     handlers::kernelspecs::list),
        row(Get,    "/api/kernelspecs/{kernel_name}",                     needs(Read, Kernelspecs),     handlers::kernelspecs::get),
        row(Get,    "/kernelspecs/{kernel_name}/{*path}",                 needs(Read, Kernelspecs),     handlers::kernelspecs::resource),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

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
