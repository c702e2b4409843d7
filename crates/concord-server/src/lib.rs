//! The `concord` server: a Jupyter Server (jupyter_server 2.x's REST and websocket API) in
//! which every request is identified, then authorized against a policy, before a service
//! handles it. See `docs/architecture.md`.
//!
//! # Layout
//!
//! A request walks down this list, and each room imports only from rooms below it (the one
//! pair that points both ways is the route table and the handlers it names):
//!
//! - [`cli`], [`serve`]: the `concord` command; start-up (state directories, the policy,
//!   the listener, the services) and shutdown.
//! - [`http`]: everything HTTP that is not a handler.
//!   - [`http::routes`]: **the route table**: every endpoint with its method, its access
//!     (public, any logged-in caller, or an action on a resource: a type, the contents path,
//!     an owned kernel/session/terminal) and its handler. Start here to find an endpoint.
//!   - [`http::matcher`]: the patterns (`{name}`, `{*path}`), compiled once.
//!   - [`http::pipeline`]: the path of a request: checks → route → identify → authorize →
//!     handler → security headers.
//!   - [`http::guard`]: the request's `Guard`: decides, audits and refuses a second resource
//!     named in a request (one `require_path`) and filters lists.
//!   - [`http::checks`]: Host, Origin, XSRF, body size, security headers.
//!   - [`http::error`]: the one `ApiError`; every service error converts into it (`?`).
//!   - [`http::extract`]: request bodies, query strings, URL escaping.
//!   - [`http::websocket`]: the one websocket bridge (kernels, terminals, events).
//! - [`handlers`]: one file per service, HTTP only: read the request, call the service,
//!   shape the answer (`handlers::lab` for the JupyterLab front end, whose work is the
//!   `concord-lab` crate's).
//! - [`auth`]: who is asking: owner token, named users, trusted proxy; cookies.
//! - [`state`]: `AppState`, what every request may use: settings, policy, services.
//! - [`services`]: one file per service: build it from its typed configuration, stop it,
//!   the owner lookups and path resolution the pipeline needs, event adapters.
//! - [`config`]: every option (flag > environment > file > default), merged once into the
//!   services' typed configurations; one file per service's options.
//! - [`events`]: the `/api/events` bus and its schemas; [`audit`], [`policy`],
//!   [`metrics`], [`bodies`] (request-body memory budget), [`memory`], [`math`].

pub mod audit;
pub mod auth;
pub mod bodies;
pub mod cli;
pub mod config;
pub mod events;
pub mod handlers;
pub mod http;
pub mod math;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod serve;
pub mod services;
pub mod state;
