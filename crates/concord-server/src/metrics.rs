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

/// Real-time collaboration's figures (rooms, participants, updates, a viewer's dropped
/// changes and saves, refused awareness, saves), in Prometheus' text format.
pub fn collaboration_text(m: &concord_collab::MetricsSnapshot, out: &mut String) {
    let gauges = [
        ("rooms", "Shared documents open.", m.rooms as u64),
        (
            "participants",
            "Participants connected to shared documents.",
            m.participants as u64,
        ),
        (
            "queued_bytes",
            "Bytes queued for collaboration participants.",
            m.queued_bytes as u64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP concord_collaboration_{name} {help}");
        let _ = writeln!(out, "# TYPE concord_collaboration_{name} gauge");
        let _ = writeln!(out, "concord_collaboration_{name} {value}");
    }
    let counters = [
        ("updates_total", "Document updates applied.", m.updates),
        (
            "refused_updates_total",
            "Updates from read-only participants dropped.",
            m.refused_updates,
        ),
        (
            "refused_saves_total",
            "Save requests from read-only participants refused.",
            m.refused_saves,
        ),
        (
            "refused_awareness_total",
            "Awareness messages claiming another identity refused.",
            m.refused_awareness,
        ),
        (
            "malformed_total",
            "Malformed or oversized collaboration messages.",
            m.malformed,
        ),
        ("saves_total", "Shared documents saved.", m.saves),
        (
            "failed_saves_total",
            "Saves of shared documents that failed.",
            m.failed_saves,
        ),
        (
            "disk_merges_total",
            "Changes made on disk merged into open documents.",
            m.disk_merges,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP concord_collaboration_{name} {help}");
        let _ = writeln!(out, "# TYPE concord_collaboration_{name} counter");
        let _ = writeln!(out, "concord_collaboration_{name} {value}");
    }
}
