//! HTTP handlers. Each module is thin: parse the request, call a service, shape the answer.
//! Authorization of the route's declared permission has already happened (see `routes.rs`).

pub mod contents;
pub mod core;
pub mod events;
pub mod file_response;
pub mod kernels;
pub mod kernelspecs;
pub mod lab;
pub mod lab_install;
pub mod lab_store;
pub mod pages;
pub mod sessions;
pub mod terminals;
