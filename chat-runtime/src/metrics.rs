//! Counters a runtime keeps about itself, readable at any time without stopping it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated with relaxed atomics by the runtime's tasks.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) commands_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) encodes: AtomicU64,
    pub(crate) swept: AtomicU64,
    pub(crate) store_batches: AtomicU64,
    pub(crate) store_records: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) logins_throttled: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections_open: get(&self.connections_open),
            connections_total: get(&self.connections_total),
            connections_refused: get(&self.connections_refused),
            commands_in: get(&self.commands_in),
            frames_out: get(&self.frames_out),
            encodes: get(&self.encodes),
            swept: get(&self.swept),
            store_batches: get(&self.store_batches),
            store_records: get(&self.store_records),
            store_errors: get(&self.store_errors),
            slow_consumers: get(&self.slow_consumers),
            logins_failed: get(&self.logins_failed),
            logins_throttled: get(&self.logins_throttled),
        }
    }
}

/// The runtime's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Commands received from clients (messages in).
    pub commands_in: u64,
    /// Frames queued to clients (messages out).
    pub frames_out: u64,
    /// Events encoded: one per broadcast per wire format, one per direct send.
    pub encodes: u64,
    /// Writes the runtime made itself, on a current-thread runtime, of broadcasts to
    /// connections that were waiting, without waking their tasks (but to write what a full
    /// socket did not take).
    pub swept: u64,
    /// Store writes (each a group commit of one or more records).
    pub store_batches: u64,
    /// Records stored.
    pub store_records: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Connections closed for letting their outbound queue fill.
    pub slow_consumers: u64,
    /// Logins the authenticator refused as wrong (`auth_failed`).
    pub logins_failed: u64,
    /// Logins refused unchecked because their name or address was locked after failures.
    pub logins_throttled: u64,
}
