//! Counters for `GET /metrics`, in Prometheus' text format.

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A service's contribution to `/metrics` (e.g. kernels by state), rendered on demand.
pub type MetricsSource = Box<dyn Fn(&mut String) + Send + Sync>;

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    allowed: AtomicU64,
    denied: AtomicU64,
    sources: RwLock<Vec<MetricsSource>>,
}

impl Metrics {
    /// Count one HTTP request by route pattern and status.
    pub fn count_request(&self, route: &'static str, status: u16) {
        *self.requests.lock().entry((route, status)).or_insert(0) += 1;
    }

    /// Count one authorization decision.
    pub fn count_decision(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Register a service's metrics.
    pub fn add_source(&self, source: MetricsSource) {
        self.sources.write().push(source);
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self, websocket_connections: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP concord_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE concord_http_requests_total counter\n");
        {
            let map = self.requests.lock();
            for ((route, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "concord_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    route.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        out.push_str("# HELP concord_authz_decisions_total Authorization decisions by result.\n");
        out.push_str("# TYPE concord_authz_decisions_total counter\n");
        let _ = writeln!(
            out,
            "concord_authz_decisions_total{{result=\"allow\"}} {}",
            self.allowed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "concord_authz_decisions_total{{result=\"deny\"}} {}",
            self.denied.load(Ordering::Relaxed)
        );
        out.push_str("# HELP concord_websocket_connections Open websocket connections.\n");
        out.push_str("# TYPE concord_websocket_connections gauge\n");
        let _ = writeln!(out, "concord_websocket_connections {websocket_connections}");
        {
            let sources = self.sources.read();
            for source in sources.iter() {
                source(&mut out);
            }
        }
        out
    }
}
