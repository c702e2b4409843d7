//! The `concord` server: a Jupyter Server (jupyter_server 2.x's REST and websocket API) in
//! which every request is identified, then authorized against a policy, before a service
//! handles it. See `docs/architecture.md`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bodies;
pub mod cli;
pub mod config;
pub mod confine;
pub mod events;
pub mod http;
pub mod math;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod serve;
pub mod services;
pub mod state;
