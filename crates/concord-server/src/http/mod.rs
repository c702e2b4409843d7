//! Everything HTTP that is not a handler: the route table and its matcher, the request
//! pipeline (identify → authorize → handler), the per-request [`guard::Guard`], the checks
//! of Host, Origin and XSRF, the one error type, extractors, and the websocket bridge.

pub mod checks;
pub mod error;
pub mod extract;
pub mod guard;
pub mod matcher;
pub mod pipeline;
pub mod routes;
pub mod websocket;
