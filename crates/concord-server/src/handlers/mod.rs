//! The HTTP handlers, one file per service: each reads the request, calls its service (see
//! `services/`) and shapes the answer. The route's declared permission was granted before
//! a handler runs (see `http/routes.rs`); a handler only checks a *second* resource named in
//! the request, through the request's `Guard`.

pub mod collaboration;
pub mod contents;
pub mod core;
pub mod events;
pub mod file_response;
pub mod kernels;
pub mod kernelspecs;
pub mod lab;
pub mod nbconvert;
pub mod pages;
pub mod sessions;
pub mod terminals;
pub mod tokens;
