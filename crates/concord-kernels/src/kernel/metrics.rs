//! The kernels service's counters and their `/metrics` snapshot (Prometheus text).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::KernelManager;
use crate::hub::{lock, HubCounters};

/// Counters for `/metrics`.
#[derive(Default, Debug)]
pub(super) struct Counters {
    pub(super) started: AtomicU64,
    pub(super) auto_restarts: AtomicU64,
    pub(super) deaths: AtomicU64,
    pub(super) culled: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) hub: Arc<HubCounters>,
}

/// A snapshot of the kernel service's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelMetrics {
    /// Kernels by execution state.
    pub kernels_by_state: Vec<(String, u64)>,
    /// Attached kernel websockets.
    pub websocket_connections: u64,
    /// Kernels started (including restarts).
    pub kernels_started_total: u64,
    /// Automatic restarts after a crash.
    pub kernel_auto_restarts_total: u64,
    /// Unexpected kernel deaths.
    pub kernel_deaths_total: u64,
    /// Kernels culled for idleness.
    pub kernels_culled_total: u64,
    /// Client messages refused by watch-only permission.
    pub messages_refused_total: u64,
    /// Malformed client frames.
    pub frames_malformed_total: u64,
    /// Clients disconnected for falling behind.
    pub clients_lagged_total: u64,
    /// Clients disconnected for not reading their socket within the write timeout.
    pub clients_stalled_total: u64,
    /// Messages replayed to reconnecting clients.
    pub messages_replayed_total: u64,
    /// Bytes held for clients now (queues and replay buffers of every kernel).
    pub client_buffered_bytes: u64,
}

impl KernelMetrics {
    /// Prometheus text exposition of these metrics.
    pub fn prometheus_text(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP concord_kernels Running kernels by execution state.\n# TYPE concord_kernels gauge\n");
        for (state, n) in &self.kernels_by_state {
            s.push_str(&format!("concord_kernels{{state=\"{state}\"}} {n}\n"));
        }
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        one(
            "concord_kernel_websocket_connections",
            "gauge",
            "Attached kernel websockets.",
            self.websocket_connections,
        );
        one(
            "concord_kernels_started_total",
            "counter",
            "Kernel processes started.",
            self.kernels_started_total,
        );
        one(
            "concord_kernel_auto_restarts_total",
            "counter",
            "Automatic restarts of crashed kernels.",
            self.kernel_auto_restarts_total,
        );
        one(
            "concord_kernel_deaths_total",
            "counter",
            "Unexpected kernel deaths.",
            self.kernel_deaths_total,
        );
        one(
            "concord_kernels_culled_total",
            "counter",
            "Kernels culled for idleness.",
            self.kernels_culled_total,
        );
        one(
            "concord_kernel_messages_refused_total",
            "counter",
            "Client messages refused (watch-only).",
            self.messages_refused_total,
        );
        one(
            "concord_kernel_frames_malformed_total",
            "counter",
            "Malformed client websocket frames.",
            self.frames_malformed_total,
        );
        one(
            "concord_kernel_clients_lagged_total",
            "counter",
            "Clients disconnected for falling behind.",
            self.clients_lagged_total,
        );
        one(
            "concord_kernel_clients_stalled_total",
            "counter",
            "Clients disconnected for not reading within the write timeout.",
            self.clients_stalled_total,
        );
        one(
            "concord_kernel_messages_replayed_total",
            "counter",
            "Messages replayed on reconnect.",
            self.messages_replayed_total,
        );
        one(
            "concord_kernel_buffered_bytes",
            "gauge",
            "Bytes held for kernel websocket clients (queues and replay buffers).",
            self.client_buffered_bytes,
        );
        s
    }
}

impl KernelManager {
    /// Metrics snapshot.
    pub fn metrics(&self) -> KernelMetrics {
        let mut by_state: HashMap<String, u64> = HashMap::new();
        let mut connections = 0u64;
        for k in lock(&self.inner.kernels).values() {
            let m = k.model();
            *by_state.entry(m.execution_state).or_default() += 1;
            connections += m.connections as u64;
        }
        let mut kernels_by_state: Vec<(String, u64)> = by_state.into_iter().collect();
        kernels_by_state.sort();
        let c = &self.inner.counters;
        KernelMetrics {
            kernels_by_state,
            websocket_connections: connections,
            kernels_started_total: c.started.load(Ordering::Relaxed),
            kernel_auto_restarts_total: c.auto_restarts.load(Ordering::Relaxed),
            kernel_deaths_total: c.deaths.load(Ordering::Relaxed),
            kernels_culled_total: c.culled.load(Ordering::Relaxed),
            messages_refused_total: c.refused.load(Ordering::Relaxed),
            frames_malformed_total: c.malformed.load(Ordering::Relaxed),
            clients_lagged_total: c.hub.lagged.load(Ordering::Relaxed),
            clients_stalled_total: c.hub.stalled.load(Ordering::Relaxed),
            messages_replayed_total: c.hub.replayed.load(Ordering::Relaxed),
            client_buffered_bytes: c.hub.buffered.load(Ordering::Relaxed),
        }
    }
}
