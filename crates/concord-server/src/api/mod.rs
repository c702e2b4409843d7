//! The JupyterLab front end's handlers and the code behind them (finding the installation,
//! the per-user store). They are to become a service crate of their own with thin handlers
//! in `handlers/`; until then they stay here.

pub mod lab;
pub mod lab_install;
pub mod lab_store;

/// The login page's renderer, which the lab pages share.
pub use crate::handlers::pages;
