//! The sweep: on a current-thread runtime, the task that writes broadcasts to idle connections.
//!
//! A connection's driver writes what its outbox holds. But when a broadcast reaches a thousand
//! connections that are all waiting, waking a thousand tasks to each take one frame and write it
//! costs a thousand task switches beside the thousand writes; a minimal fan-out server pays
//! less. So on a current-thread runtime (one thread: no parallel writes are given up) a driver
//! that waits with nothing of its own half-written leaves its socket in its outbox, and the
//! delivery task queues a broadcast to it without waking it (`outbox.rs`). It hands the outboxes
//! it queued to, in one list per run of broadcasts, to this task, which writes each one's queued
//! frames to its socket with a non-blocking vectored `write`. Only what a socket does not take
//! at once (or a write that fails) wakes its driver, which then writes the rest as it would
//! have (or meets the error).
//!
//! The sweep is a task of its own, not part of the delivery, and every [`YIELD_EVERY`] writes
//! (counted across runs: a pause per run of a small room would leave it a run behind per poll)
//! it lets the runtime poll for I/O and run what that woke, so that the writes for a room of
//! thousands do not hold every read back; messages read meanwhile join the queues of the
//! connections not yet written to, and one write carries them all, as the drivers' batches do.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::outbox::{Outbound, Outbox};

/// How many writes the sweep makes before it lets the runtime poll for I/O and run what that
/// woke: about as many tasks as a current-thread runtime runs between two polls (61). Fewer
/// pauses (every 1,024 writes) measured a higher closed-loop rate at 1,000 receivers, but a p99
/// at 0.2 M deliveries/s of 1.2-1.5x the floor's, against 0.6-0.7x with these.
const YIELD_EVERY: usize = 64;

/// The delivery task's side: where it hands the outboxes it queued broadcasts to without
/// waking their drivers.
pub(crate) struct Sweep {
    to_sweep: mpsc::UnboundedSender<Vec<Outbox<Outbound>>>,
}

impl Sweep {
    /// A sweep, and the task that writes for it (to be spawned; it ends once the sweep is
    /// dropped and everything handed to it is written).
    pub(crate) fn new(metrics: Arc<Metrics>) -> (Sweep, impl Future<Output = ()> + Send) {
        let (to_sweep, from_delivery) = mpsc::unbounded_channel();
        (Sweep { to_sweep }, run(from_delivery, metrics))
    }

    /// Hands over the outboxes that [`Outbox::push_for_sweep`] asked to be written. Should the
    /// task be gone (the runtime is going away), their drivers are woken to write instead.
    pub(crate) fn hand_over(&self, idle: Vec<Outbox<Outbound>>) {
        if let Err(returned) = self.to_sweep.send(idle) {
            for outbox in returned.0 {
                outbox.wake_taker();
            }
        }
    }
}

/// Writes what each outbox handed over holds, until the delivery task drops its [`Sweep`].
async fn run(
    mut from_delivery: mpsc::UnboundedReceiver<Vec<Outbox<Outbound>>>,
    metrics: Arc<Metrics>,
) {
    let mut lists = Vec::new();
    let mut since_pause = 0;
    while from_delivery.recv_many(&mut lists, 64).await > 0 {
        let mut written = 0;
        for outbox in lists.drain(..).flatten() {
            written += u64::from(outbox.write_idle());
            since_pause += 1;
            if since_pause == YIELD_EVERY {
                since_pause = 0;
                tokio::task::yield_now().await;
            }
        }
        Metrics::add(&metrics.swept, written);
    }
}
