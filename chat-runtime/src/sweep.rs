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
//! The sweep is a task of its own, not part of the delivery, and every [`YIELD_EVERY`] writes it
//! goes to the back of the runtime's queue, behind the tasks woken meanwhile: at load, other
//! clients' messages are read while a broadcast is being written, and are queued behind it for
//! the connections not yet written to, so that one write carries them all, as the drivers'
//! batches do. Without the pauses, a thousand writes of one broadcast would hold every read
//! back.

use std::sync::Arc;
use std::task::Poll;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::outbox::{Outbound, Outbox};

/// How many writes the sweep makes before it lets the tasks woken meanwhile run: about as many
/// tasks as a current-thread runtime runs between two polls for I/O (61).
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
    while from_delivery.recv_many(&mut lists, 64).await > 0 {
        for list in lists.drain(..) {
            for chunk in list.chunks(YIELD_EVERY) {
                let written: usize = chunk
                    .iter()
                    .map(|outbox| usize::from(outbox.write_idle()))
                    .sum();
                Metrics::add(&metrics.swept, written as u64);
                behind_the_others().await;
            }
        }
    }
}

/// Goes to the back of the runtime's queue: wakes its own task and waits once. (Not tokio's
/// `yield_now`, which waits for the runtime's next poll for I/O: with a yield after every run of
/// broadcasts, a current-thread server at 0.9 M deliveries/s to 10 clients sat idle half the
/// time and delivered a fraction of the load.)
async fn behind_the_others() {
    let mut waited = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut waited, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}
