//! The server's black-box tests, compiled as one test binary (one link of the whole
//! server instead of one per file): a module per area, the shared harness in `common` and
//! the kernel websocket client in `kernels_support`. Run one area with
//! `cargo nextest run -p concord-server --test api -E 'test(/^kernels_api::/)'`.

mod common;
mod kernels_support;

mod auth_proxy;
mod auth_token;
mod auth_users;
mod collaboration;
mod confine_processes;
mod contents_authz;
mod contents_differential;
mod events_api;
mod events_differential;
mod first_run;
mod kernels_api;
mod kernels_sharing;
mod lab_frontend;
mod limits;
mod me_differential;
mod memory;
mod nbconvert;
mod paths_http;
mod policy_cli;
mod policy_reload;
mod quotas;
mod route_table;
mod terminals_api;
mod tokens;
