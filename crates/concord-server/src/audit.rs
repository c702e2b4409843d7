//! Recording decisions: every denial and every allowed write or execute goes to the audit
//! log (JSON lines and/or SQLite, see `concord-identity`). Reads that are allowed are not
//! recorded: they are most requests and say little.

use concord_authz::{Action, Decision, Identity, Resource};
use concord_identity::{AuditLog, AuditRecord};
use std::net::IpAddr;
use std::sync::Arc;

/// Where a decision was asked for: recorded with it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// The client's address.
    pub peer: IpAddr,
    /// The HTTP method.
    pub method: axum::http::Method,
    /// The route pattern (never the raw URL, which may carry secrets).
    pub route: &'static str,
}

/// The server's audit log (absent when disabled); clones share it.
#[derive(Clone)]
pub struct Auditor {
    log: Option<Arc<AuditLog>>,
}

impl Auditor {
    /// Wrap an opened log, or `None` for no audit log.
    pub fn new(log: Option<AuditLog>) -> Self {
        Auditor {
            log: log.map(Arc::new),
        }
    }

    /// The underlying log (for queries in tests and tools).
    pub fn log(&self) -> Option<&AuditLog> {
        self.log.as_deref()
    }

    /// Record what a service reports (a collaborative save, a viewer's refused change).
    pub fn record_event(&self, record: AuditRecord) {
        if let Some(log) = &self.log {
            log.record(record);
        }
    }

    /// Record a decision if it is worth recording (`token_id`: the API token it was made with).
    pub fn record(
        &self,
        who: &Identity,
        token_id: Option<i64>,
        action: Action,
        resource: &Resource,
        decision: &Decision,
        request: &RequestInfo,
    ) {
        if decision.allowed && action == Action::Read {
            return;
        }
        let Some(log) = &self.log else { return };
        log.record(
            AuditRecord::for_decision(who, action, resource, decision, Some(request.peer))
                .with_request(request.method.as_str(), request.route)
                .with_token(token_id),
        );
    }
}
