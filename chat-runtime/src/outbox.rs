//! A connection's outbound queue, bounded in bytes.
//!
//! The runtime's delivery task is the only producer; the connection's driver task the only
//! consumer. The queue is a vector behind a lock that neither side holds for more than a push or
//! a swap, and the driver is woken only when the queue goes from empty to non-empty: a broadcast
//! to 10,000 connections costs each of them one short lock and, if it was idle, one wake-up, and
//! the driver takes everything queued with one swap. A push that would take the queue past its
//! bound closes the connection as a slow consumer instead of waiting, so nobody else ever waits
//! for one client.
//!
//! A backlog the client asked for in one go (a `joined` frame's history, a history page, a
//! login's queued DMs) is exempt from the bound, but only one such reply at a time: while an
//! earlier reply's exempt bytes are still unwritten, a new one counts like any other frame.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use chat_core::Event;
use tokio::sync::Notify;

/// Why the runtime closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// The connection let its outbound queue fill (WebSocket close code 1008).
    SlowConsumer,
    /// The connection did not log in in time (1008).
    LoginTimeout,
    /// The server is shutting down (1001).
    Shutdown,
}

/// What is queued, and how much of it counts against the bound.
#[derive(Debug, Default)]
struct Queue {
    frames: Vec<Outbound>,
    /// Bytes queued that count against the bound.
    counted: usize,
    /// Bytes queued under the backlog exemption.
    exempt: usize,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    closing: OnceLock<Closing>,
    notify: Notify,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock can only come from an allocation failure inside
        // `Vec::push`; the queue's counters stay consistent either way, so carry on.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A frame ready to write: its bytes, rendered by the connection's
/// [`WireFormat`](crate::WireFormat), and, when the event was addressed to this connection alone
/// (a reply, an echo, a backlog, a DM), the event itself, so a transport with per-connection
/// state (the line transport's current room, say) can follow what happened. Broadcasts carry
/// only their shared bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// What to write.
    pub bytes: Bytes,
    /// The event shown, for events to this connection alone.
    pub event: Option<Arc<Event>>,
}

/// The producing end, held by the runtime.
#[derive(Debug)]
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    limit: usize,
    /// The reply (numbered by the delivery task) that owns the current exemption.
    exempt_reply: u64,
}

/// The consuming end, held by the connection's driver (inside [`Connection`](crate::Connection)).
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    shared: Arc<Shared>,
}

/// The queue overflowed; the connection is now closing as a slow consumer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

/// A new outbound queue of at most `limit` counted bytes.
pub(crate) fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        closing: OnceLock::new(),
        notify: Notify::new(),
    });
    let outbox = Outbox {
        shared: shared.clone(),
        limit,
        exempt_reply: 0,
    };
    (outbox, OutboxReceiver { shared })
}

impl Outbox {
    /// Queues a frame. `backlog` names the reply a backlog frame belongs to (numbered by the
    /// caller, increasing); `None` for ordinary frames. Frames for a closing connection are
    /// dropped.
    pub(crate) fn push(
        &mut self,
        outbound: Outbound,
        backlog: Option<u64>,
    ) -> Result<(), Overflow> {
        if self.shared.closing.get().is_some() {
            return Ok(());
        }
        let len = outbound.bytes.len();
        let mut queue = self.shared.queue();
        let exempt = match backlog {
            Some(reply) if queue.exempt == 0 || reply == self.exempt_reply => {
                self.exempt_reply = reply;
                true
            }
            _ => false,
        };
        if exempt {
            queue.exempt += len;
        } else if queue.counted + len > self.limit {
            drop(queue);
            self.close(Closing::SlowConsumer);
            return Err(Overflow);
        } else {
            queue.counted += len;
        }
        let was_empty = queue.frames.is_empty();
        queue.frames.push(outbound);
        drop(queue);
        if was_empty {
            self.shared.notify.notify_one();
        }
        Ok(())
    }

    /// Asks the connection to close; the first reason given wins.
    pub(crate) fn close(&self, reason: Closing) {
        if self.shared.closing.set(reason).is_ok() {
            self.shared.notify.notify_one();
        }
    }

    /// Bytes queued and not yet taken by the driver, exempt ones included.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        let queue = self.shared.queue();
        queue.counted + queue.exempt
    }
}

/// What a connection's driver should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Frames were appended to the batch: write them (all of them, then flush once).
    Frames,
    /// Close the connection for this reason (after writing what is in the batch, if anything).
    Close(Closing),
}

impl OutboxReceiver {
    /// Waits until there is something to do: appends every queued frame to `batch` (so the
    /// driver can write them all and flush once), or reports that the connection must close.
    pub(crate) async fn next(&mut self, batch: &mut Vec<Outbound>) -> Outgoing {
        loop {
            if let Some(&reason) = self.shared.closing.get() {
                // A slow consumer's backlog is dropped; otherwise what is queued goes out first.
                if reason != Closing::SlowConsumer {
                    self.drain(batch);
                }
                return Outgoing::Close(reason);
            }
            if self.drain(batch) > 0 {
                return Outgoing::Frames;
            }
            // A push or close between the check above and this wait leaves a permit behind, so
            // no wake-up is lost.
            self.shared.notify.notified().await;
        }
    }

    /// Appends every frame queued now to `batch`; returns how many.
    pub(crate) fn drain(&mut self, batch: &mut Vec<Outbound>) -> usize {
        let mut queue = self.shared.queue();
        let n = queue.frames.len();
        if n > 0 {
            if batch.is_empty() {
                // Swap, so both vectors keep their allocations for the next round.
                std::mem::swap(&mut queue.frames, batch);
            } else {
                batch.append(&mut queue.frames);
            }
            queue.counted = 0;
            queue.exempt = 0;
        }
        n
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        // Nobody will read any more: later pushes are dropped instead of queued.
        let _ = self.shared.closing.set(Closing::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Outbound {
        text(vec![b'x'; n])
    }

    fn text(bytes: impl Into<Bytes>) -> Outbound {
        Outbound {
            bytes: bytes.into(),
            event: None,
        }
    }

    #[tokio::test]
    async fn frames_within_the_bound_are_delivered_in_order_as_one_batch() {
        let (mut tx, mut rx) = outbox(10);
        tx.push(text(&b"ab"[..]), None).unwrap();
        tx.push(text(&b"cd"[..]), None).unwrap();
        let mut batch = Vec::new();
        assert_eq!(rx.next(&mut batch).await, Outgoing::Frames);
        assert_eq!(batch, [text(&b"ab"[..]), text(&b"cd"[..])]);
        assert_eq!(tx.queued(), 0, "taking frames frees their bytes");
    }

    #[tokio::test]
    async fn overflowing_the_bound_closes_as_a_slow_consumer() {
        let (mut tx, mut rx) = outbox(10);
        tx.push(frame(6), None).unwrap();
        assert_eq!(tx.push(frame(6), None), Err(Overflow));
        assert_eq!(
            tx.push(frame(1), None),
            Ok(()),
            "later frames are dropped quietly"
        );
        let mut batch = Vec::new();
        assert_eq!(
            rx.next(&mut batch).await,
            Outgoing::Close(Closing::SlowConsumer)
        );
    }

    #[tokio::test]
    async fn one_backlog_reply_at_a_time_is_exempt() {
        let (mut tx, _rx) = outbox(10);
        // A 30-byte history page on top of a nearly full queue is fine...
        tx.push(frame(9), None).unwrap();
        tx.push(frame(20), Some(1)).unwrap();
        tx.push(frame(10), Some(1)).unwrap();
        // ...but a second reply while the first is unread counts against the bound.
        assert_eq!(tx.push(frame(5), Some(2)), Err(Overflow));
    }

    #[tokio::test]
    async fn the_exemption_is_free_again_once_the_backlog_is_read() {
        let (mut tx, mut rx) = outbox(10);
        tx.push(frame(20), Some(1)).unwrap();
        assert_eq!(rx.next(&mut Vec::new()).await, Outgoing::Frames);
        tx.push(frame(20), Some(2)).unwrap();
        assert_eq!(tx.queued(), 20);
    }

    #[tokio::test]
    async fn shutdown_lets_queued_frames_out_first() {
        let (mut tx, mut rx) = outbox(10);
        tx.push(frame(3), None).unwrap();
        tx.close(Closing::Shutdown);
        let mut batch = Vec::new();
        assert_eq!(
            rx.next(&mut batch).await,
            Outgoing::Close(Closing::Shutdown)
        );
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_driver() {
        let (tx, mut rx) = outbox(10);
        let waiter = tokio::spawn(async move { rx.next(&mut Vec::new()).await });
        tokio::task::yield_now().await;
        tx.close(Closing::Shutdown);
        assert_eq!(waiter.await.unwrap(), Outgoing::Close(Closing::Shutdown));
    }
}
