//! A connection's outbound queue, bounded in bytes, and the window that paces its reads.
//!
//! The runtime's delivery task is the only producer; the connection's driver task the consumer
//! (and, for a driver that waits, the sweep: below). The queue is a vector behind a lock that
//! neither side holds for more than a push or a swap, and the driver is woken only when the
//! queue goes from empty to non-empty: a broadcast to 10,000 connections costs each of them one
//! short lock and, if it was idle, one wake-up, and the driver takes everything queued with one
//! swap. The driver's wait for items keeps its waker
//! in the queue itself, so a push and a wake-up take the one lock; its rarer waits (for room to
//! read, for a close while a write is blocked) share one `Notify`, to keep an idle connection
//! small.
//!
//! On a current-thread runtime, a driver that waits with nothing of its own half-written leaves
//! its socket in the queue too ([`Queue::idle`]): a broadcast to it is then queued without waking
//! it ([`Outbox::push_for_sweep`]), and the runtime's sweep writes it to the socket itself
//! ([`Outbox::write_idle`], see `sweep.rs`); only what the socket does not take at once goes to
//! the driver, first, and if the sweep stopped inside a frame, the rest of that frame is written
//! even when the connection is then closed as a slow consumer ([`Queue::torn`]). Everything else
//! (a reply, a push while the sweep has frames queued, a close, room to read again) wakes the
//! driver and takes the socket back, so the driver and the sweep never write at the same time,
//! and the client sees whole frames in the order they were queued.
//!
//! What is queued comes in two classes. A **push** is something the client did not ask for
//! (others' messages, presence, a DM from someone else): pushes count against the bound, and a
//! push that would take them past it closes the connection as a slow consumer at once, instead
//! of waiting, so nobody else ever waits for one client. A **reply** answers the client's own
//! frame (an echo, an error, a pong, a `joined` frame, a history page, a login's queued DMs):
//! replies never make a client "slow". They are paced at the source instead: the driver reads
//! the client's next frame only while fewer than [`WINDOW`] of its frames are still being
//! handled and its queued replies are under the bound, so a client that keeps asking without
//! reading stops being read (backpressure), and its replies stay bounded.

use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use chat_core::{Event, Ref, SendKind};
use tokio::sync::Notify;

use crate::socket::SharedTcp;

/// How many of one client's frames may be in the runtime at once (read, not yet answered)
/// before its driver stops reading more.
pub const WINDOW: usize = 16;

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

/// Whether a queued item answers the client's own frame or was pushed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// An answer to the client's own frame: never counts towards "slow".
    Reply,
    /// Something the client did not ask for: counts against the bound.
    Push,
}

impl Class {
    /// The class of an event sent to one connection with `kind`.
    pub(crate) fn of(kind: SendKind) -> Class {
        match kind {
            SendKind::Reply | SendKind::Echo | SendKind::Backlog => Class::Reply,
            // A copy for the user's other session did not answer that session's frame.
            SendKind::Push | SendKind::Copy => Class::Push,
        }
    }
}

/// What a queue holds must say how many bytes it stands for.
pub(crate) trait Weigh {
    /// The bytes this item costs in the queue.
    fn weight(&self) -> usize;
}

/// A frame ready to write: its bytes, rendered by the connection's
/// [`WireFormat`](crate::WireFormat), and, when the event was addressed to this connection alone
/// (a reply, an echo, a backlog, a DM), the event itself, so a transport with per-connection
/// state (the line transport's current room, say) can follow what happened. Broadcasts carry
/// only their shared bytes: those of one event or, in a format that
/// [`joins`](crate::WireFormat::joins) frames, of several consecutive ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// What to write.
    pub bytes: Bytes,
    /// The event shown, for events to this connection alone.
    pub event: Option<Arc<Event>>,
}

impl Weigh for Outbound {
    fn weight(&self) -> usize {
        self.bytes.len()
    }
}

/// About the size of `event`'s JSON frame, its texts included: what it costs a WebSocket
/// client, and what an in-process client's queue counts it as.
pub(crate) fn event_weight(event: &Event) -> usize {
    const FRAME: usize = 96;
    let texts: usize = match event {
        Event::Message(m) => m.text.as_str().len(),
        Event::Dm { message, .. } => message.text.as_str().len(),
        Event::Joined { history, .. } => {
            history.iter().map(|m| FRAME + m.text.as_str().len()).sum()
        }
        Event::History { messages, .. } => {
            messages.iter().map(|m| FRAME + m.text.as_str().len()).sum()
        }
        Event::Error { message, .. } => message.len(),
        _ => 0,
    };
    FRAME + texts
}

/// An event for a connection attached in-process ([`Handle::connect_local`](crate::Handle::connect_local)):
/// the value itself, no bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The event.
    pub event: Arc<Event>,
    /// The `ref` of the command it answers, if any.
    pub reference: Option<Ref>,
    /// What the event is to this connection.
    pub kind: SendKind,
}

impl Weigh for Delivery {
    /// About the size of the event's JSON frame: what it would cost a WebSocket client.
    fn weight(&self) -> usize {
        event_weight(&self.event)
    }
}

/// What is queued, and how much of it counts.
#[derive(Debug)]
struct Queue<T> {
    items: Vec<T>,
    /// Bytes of pushes queued: these count against the bound.
    pushed: usize,
    /// Bytes of replies queued: these pace reading.
    replies: usize,
    /// The driver, while it waits in [`OutboxReceiver::next`] with nothing queued: the push
    /// that makes the queue non-empty, or a close, takes it and wakes it.
    taker: Option<Waker>,
    /// The driver's socket, while the driver waits (`taker` is set) on a runtime that sweeps and
    /// has nothing of its own half-written: the sweep may write what is queued to it. Whatever
    /// wakes the driver takes it back, so everything queued while it is here was pushed by
    /// [`Outbox::push_for_sweep`].
    idle: Option<SharedTcp>,
    /// The first item is the rest of a frame the sweep began to write: whatever happens next,
    /// it must be written before anything else, last words included.
    torn: bool,
}

impl<T> Queue<T> {
    /// Moves every queued item to the end of `batch`; returns how many.
    fn take(&mut self, batch: &mut Vec<T>) -> usize {
        let n = self.items.len();
        if n > 0 {
            if batch.is_empty() {
                // Swap: the queue's allocation goes to the driver, which lets it go once written.
                std::mem::swap(&mut self.items, batch);
            } else {
                batch.append(&mut self.items);
            }
            self.pushed = 0;
            self.replies = 0;
            self.torn = false;
        }
        n
    }

    /// Takes the driver's waker to wake it, and its socket back from the sweep.
    fn wake(&mut self) -> Option<Waker> {
        self.idle = None;
        self.taker.take()
    }
}

impl<T: Weigh> Queue<T> {
    /// Recounts the pushes' bytes after items were taken off the front.
    fn recount(&mut self) {
        self.pushed = self.items.iter().map(Weigh::weight).sum();
    }
}

#[derive(Debug)]
struct Shared<T> {
    queue: Mutex<Queue<T>>,
    limit: usize,
    closing: OnceLock<Closing>,
    /// Wakes the driver's rarer waits (room to read again, closing): each re-checks its own
    /// condition after a wake-up, and registers before it checks, so no wake-up is lost. (The
    /// wait for items is the queue's [`Queue::taker`].)
    wake: Notify,
    /// The client's frames read and not yet answered.
    in_flight: AtomicUsize,
}

impl<T> Shared<T> {
    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        // A panic while holding this lock can only come from an allocation failure inside
        // `Vec::push`; the queue's counters stay consistent either way, so carry on.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn may_read(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < WINDOW && self.queue().replies < self.limit
    }
}

/// The producing end, held by the runtime.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming end, held by the connection's driver (inside [`Connection`](crate::Connection)).
#[derive(Debug)]
pub(crate) struct OutboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// The queue overflowed; the connection is now closing as a slow consumer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

/// A new outbound queue of at most `limit` bytes of pushes.
pub(crate) fn outbox<T>(limit: usize) -> (Outbox<T>, OutboxReceiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: Vec::new(),
            pushed: 0,
            replies: 0,
            taker: None,
            idle: None,
            torn: false,
        }),
        limit,
        closing: OnceLock::new(),
        wake: Notify::new(),
        in_flight: AtomicUsize::new(0),
    });
    let outbox = Outbox {
        shared: shared.clone(),
    };
    (outbox, OutboxReceiver { shared })
}

impl<T: Weigh> Outbox<T> {
    /// Queues an item. A push past the bound closes the connection as a slow consumer; items
    /// for a closing connection are dropped.
    pub(crate) fn push(&self, item: T, class: Class) -> Result<(), Overflow> {
        self.enqueue(item, class, false).map(drop)
    }

    /// Queues a broadcast (counted like a [`Class::Push`]) on a runtime that sweeps. If the
    /// driver is idle, it is not woken: `Ok(true)` says this item made the queue non-empty, and
    /// the caller must hand the outbox to the sweep, which writes it ([`Outbox::write_idle`]) or
    /// wakes the driver. Otherwise it is [`push`](Self::push), and `Ok(false)`.
    pub(crate) fn push_for_sweep(&self, item: T) -> Result<bool, Overflow> {
        self.enqueue(item, Class::Push, true)
    }

    /// [`push`](Self::push) and [`push_for_sweep`](Self::push_for_sweep), under one lock:
    /// `Ok(true)` when the item waits for the sweep and made the queue non-empty.
    fn enqueue(&self, item: T, class: Class, for_sweep: bool) -> Result<bool, Overflow> {
        if self.shared.closing.get().is_some() {
            return Ok(false);
        }
        let weight = item.weight();
        let mut queue = self.shared.queue();
        match class {
            Class::Reply => queue.replies += weight,
            Class::Push if queue.pushed + weight > self.shared.limit => {
                drop(queue);
                self.close(Closing::SlowConsumer);
                return Err(Overflow);
            }
            Class::Push => queue.pushed += weight,
        }
        let was_empty = queue.items.is_empty();
        queue.items.push(item);
        if for_sweep && queue.idle.is_some() {
            return Ok(was_empty);
        }
        // An idle driver is woken even behind broadcasts that wait for the sweep: this item may
        // need the driver (a reply to follow), and must come after them.
        let taker = if was_empty || queue.idle.is_some() {
            queue.wake()
        } else {
            None
        };
        drop(queue);
        if let Some(taker) = taker {
            taker.wake();
        }
        Ok(false)
    }
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Outbox<Outbound> {
    /// The sweep's turn: if the driver is still idle, writes what is queued to its socket now,
    /// without waiting. What the socket did not take (its buffer is full) stays queued, first,
    /// and the driver is woken to write it when there is room; so it is if the write failed (the
    /// driver meets the error itself). Returns whether anything was written here.
    pub(crate) fn write_idle(&self) -> bool {
        let mut guard = self.shared.queue();
        let queue = &mut *guard;
        let (Some(socket), false) = (&queue.idle, queue.items.is_empty()) else {
            // The driver took over (and what was queued with it), or nothing is left.
            return false;
        };
        debug_assert!(
            queue.items.iter().all(|item| item.event.is_none()),
            "only broadcasts wait for the sweep"
        );
        let written = match queue.items.as_slice() {
            [one] => socket.write_now(&mut [IoSlice::new(&one.bytes)]),
            many => {
                let mut slices: Vec<IoSlice<'_>> =
                    many.iter().map(|item| IoSlice::new(&item.bytes)).collect();
                socket.write_now(&mut slices)
            }
        };
        let total: usize = queue.items.iter().map(|item| item.bytes.len()).sum();
        let written = match written {
            Ok(n) if n == total => {
                // Let go, as the driver lets its written batches go: kept, a thousand idle
                // connections' vectors would each hold the largest run they were ever sent.
                queue.items = Vec::new();
                queue.pushed = 0;
                return true;
            }
            Ok(n) => n,
            Err(_) => 0,
        };
        // The rest is the driver's, from the first byte the socket did not take.
        let whole = queue
            .items
            .iter()
            .scan(0, |end, item| {
                *end += item.bytes.len();
                Some(*end)
            })
            .take_while(|&end| end <= written)
            .count();
        let taken: usize = queue
            .items
            .drain(..whole)
            .map(|item| item.bytes.len())
            .sum();
        if let Some(first) = queue.items.first_mut()
            && written > taken
        {
            first.bytes = first.bytes.slice(written - taken..);
            queue.torn = true;
        }
        queue.recount();
        let taker = queue.wake();
        drop(guard);
        if let Some(taker) = taker {
            taker.wake();
        }
        written > 0
    }
}

impl<T> Outbox<T> {
    /// Asks the connection to close; the first reason given wins.
    pub(crate) fn close(&self, reason: Closing) {
        if self.shared.closing.set(reason).is_ok() {
            self.wake_taker();
            self.shared.wake.notify_waiters();
        }
    }

    /// Wakes the driver if it waits for items (taking its socket back from the sweep).
    pub(crate) fn wake_taker(&self) {
        let taker = self.shared.queue().wake();
        if let Some(taker) = taker {
            taker.wake();
        }
    }

    /// One of the client's frames has been answered (everything it caused is queued).
    pub(crate) fn answered(&self) {
        let before = self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "answered more frames than were read");
        if before == WINDOW {
            // Reading may resume: wake the driver where it waits for items too, if it does.
            self.wake_taker();
            self.shared.wake.notify_waiters();
        }
    }

    /// Bytes queued and not yet taken by the driver.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        let queue = self.shared.queue();
        queue.pushed + queue.replies
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

impl<T> OutboxReceiver<T> {
    /// Waits until there is something to do: appends every queued item to `batch` (so the
    /// driver can write them all and flush once), or reports that the connection must close.
    /// One task at a time may wait here (the connection's driver): a second one would take the
    /// first's place in the queue, and the first would not be woken.
    pub(crate) async fn next(&self, batch: &mut Vec<T>) -> Outgoing {
        std::future::poll_fn(|cx| self.poll_next(cx, batch, None)).await
    }

    /// Takes the driver's socket back from the sweep: the driver is about to write to it itself
    /// (or to do something after which it may), and what is queued is now its own to write.
    pub(crate) fn unpark(&self) {
        self.shared.queue().idle = None;
    }

    /// [`next`](Self::next) as a poll: a driver that polls it (rather than awaiting `next`) is
    /// also woken when reading may resume ([`Outbox::answered`]). `idle` is the driver's socket
    /// when the sweep may write to it while the driver waits (see the module docs): it is left
    /// in the queue on `Pending` (kept there, if it is there already), and taken back on
    /// `Ready`.
    pub(crate) fn poll_next(
        &self,
        cx: &mut Context<'_>,
        batch: &mut Vec<T>,
        idle: Option<&SharedTcp>,
    ) -> Poll<Outgoing> {
        if let Some(reason) = self.closing() {
            return Poll::Ready(self.close_with(reason, batch));
        }
        let mut queue = self.shared.queue();
        if queue.take(batch) > 0 {
            queue.idle = None;
            return Poll::Ready(Outgoing::Frames);
        }
        match (idle, &queue.idle) {
            (Some(_), Some(_)) => {}
            (idle, _) => queue.idle = idle.cloned(),
        }
        // Nothing now: leave the waker where a push looks, under the lock it takes, so no push
        // is missed. The same task's waker is usually there already from its last wait.
        if !queue
            .taker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            queue.taker = Some(cx.waker().clone());
        }
        drop(queue);
        // A close set before the waker was in place did not see it: look again.
        match self.closing() {
            Some(reason) => Poll::Ready(self.close_with(reason, batch)),
            None => Poll::Pending,
        }
    }

    /// What [`next`](Self::next) says once the connection is closing: a slow consumer's backlog
    /// is dropped (but for the rest of a frame the sweep began: the client must not get half a
    /// frame and then the last words); otherwise what is queued goes out first.
    fn close_with(&self, reason: Closing, batch: &mut Vec<T>) -> Outgoing {
        let mut queue = self.shared.queue();
        queue.idle = None;
        if reason != Closing::SlowConsumer {
            queue.take(batch);
        } else if std::mem::take(&mut queue.torn) && !queue.items.is_empty() {
            batch.push(queue.items.remove(0));
        }
        Outgoing::Close(reason)
    }

    /// Appends every item queued now to `batch`; returns how many.
    pub(crate) fn drain(&self, batch: &mut Vec<T>) -> usize {
        self.shared.queue().take(batch)
    }

    /// Why the connection is closing, if it is.
    pub(crate) fn closing(&self) -> Option<Closing> {
        self.shared.closing.get().copied()
    }

    /// Resolves once the runtime closes the connection (for any reason): a driver races its
    /// writes against it, so a client whose queue overflowed while a write to it was blocked is
    /// cut off at once.
    pub(crate) async fn closed(&self) -> Closing {
        loop {
            let notified = self.shared.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(&reason) = self.shared.closing.get() {
                return reason;
            }
            notified.await;
        }
    }

    /// Counts one frame of the client's as read and handed to the runtime.
    pub(crate) fn asked(&self) {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes back [`asked`](Self::asked) for a frame that never reached the runtime.
    pub(crate) fn unasked(&self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether the driver may read the client's next frame now.
    pub(crate) fn may_read(&self) -> bool {
        self.shared.may_read()
    }

    /// Resolves once the driver may read the client's next frame.
    pub(crate) async fn readable(&self) {
        if self.shared.may_read() {
            return;
        }
        loop {
            let notified = self.shared.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.shared.may_read() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Drop for OutboxReceiver<T> {
    fn drop(&mut self) {
        // Nobody will read any more: later pushes are dropped instead of queued, and the
        // driver's waker is let go with the driver.
        let _ = self.shared.closing.set(Closing::Shutdown);
        drop(self.shared.queue().wake());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let (tx, rx) = outbox(10);
        tx.push(text(&b"ab"[..]), Class::Push).unwrap();
        tx.push(text(&b"cd"[..]), Class::Push).unwrap();
        let mut batch = Vec::new();
        assert_eq!(rx.next(&mut batch).await, Outgoing::Frames);
        assert_eq!(batch, [text(&b"ab"[..]), text(&b"cd"[..])]);
        assert_eq!(tx.queued(), 0, "taking frames frees their bytes");
    }

    #[tokio::test]
    async fn overflowing_the_bound_with_pushes_closes_as_a_slow_consumer() {
        let (tx, rx) = outbox(10);
        tx.push(frame(6), Class::Push).unwrap();
        assert_eq!(tx.push(frame(6), Class::Push), Err(Overflow));
        assert_eq!(
            tx.push(frame(1), Class::Push),
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
    async fn replies_never_overflow_but_stop_reading_until_taken() {
        let (tx, rx) = outbox(10);
        for _ in 0..5 {
            tx.push(frame(8), Class::Reply).unwrap();
        }
        assert_eq!(rx.closing(), None, "replies never make a client slow");
        assert!(!rx.may_read(), "40 bytes of replies are over the bound");
        // Pushes still count on their own.
        tx.push(frame(9), Class::Push).unwrap();
        let mut batch = Vec::new();
        assert_eq!(rx.next(&mut batch).await, Outgoing::Frames);
        assert_eq!(batch.len(), 6);
        assert!(rx.may_read(), "taken replies free the window");
    }

    #[tokio::test]
    async fn reading_waits_while_a_window_of_frames_is_unanswered() {
        let (tx, rx) = outbox::<Outbound>(10);
        for _ in 0..WINDOW {
            rx.asked();
        }
        assert!(!rx.may_read());
        let rx = Arc::new(rx);
        let waiter = tokio::spawn({
            let rx = rx.clone();
            async move { rx.readable().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        tx.answered();
        waiter.await.unwrap();
        assert!(rx.may_read());
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// An outbox whose driver waits with its socket left for the sweep; the client's end of the
    /// socket, and the driver's wake-ups.
    async fn idle_driver(
        limit: usize,
    ) -> (
        Outbox<Outbound>,
        OutboxReceiver<Outbound>,
        tokio::net::TcpStream,
        Arc<Wakes>,
    ) {
        let (socket, client) = crate::socket::pair().await;
        let (tx, rx) = outbox(limit);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut batch = Vec::new();
        let polled = rx.poll_next(&mut Context::from_waker(&waker), &mut batch, Some(&socket));
        assert!(polled.is_pending());
        (tx, rx, client, wakes)
    }

    /// Polls the driver's side once, without leaving a socket.
    fn poll_driver(rx: &OutboxReceiver<Outbound>) -> Poll<(Outgoing, Vec<Outbound>)> {
        let mut batch = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        rx.poll_next(&mut cx, &mut batch, None)
            .map(|outgoing| (outgoing, batch))
    }

    #[tokio::test]
    async fn broadcasts_to_an_idle_driver_are_written_by_the_sweep_without_waking_it() {
        use tokio::io::AsyncReadExt;
        let (tx, rx, mut client, wakes) = idle_driver(100).await;
        assert_eq!(tx.push_for_sweep(text(&b"one\n"[..])), Ok(true));
        assert_eq!(
            tx.push_for_sweep(text(&b"two\n"[..])),
            Ok(false),
            "the outbox is with the sweep already"
        );
        assert!(tx.write_idle());
        let mut got = [0; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one\ntwo\n");
        assert_eq!(tx.queued(), 0);
        assert_eq!(wakes.count(), 0, "the driver was never woken");
        // Still idle: the next broadcast goes to the sweep too.
        assert_eq!(tx.push_for_sweep(text(&b"three\n"[..])), Ok(true));
        assert!(poll_driver(&rx).is_ready(), "polling takes the socket back");
        assert!(!tx.write_idle(), "the frame went with it");
    }

    #[tokio::test]
    async fn a_reply_behind_broadcasts_for_the_sweep_wakes_the_driver_to_write_them_all() {
        let (tx, rx, client, wakes) = idle_driver(100).await;
        assert_eq!(tx.push_for_sweep(text(&b"broadcast\n"[..])), Ok(true));
        tx.push(text(&b"reply\n"[..]), Class::Reply).unwrap();
        assert_eq!(wakes.count(), 1);
        assert!(!tx.write_idle(), "the socket is the driver's again");
        let mut unread = [0; 1];
        let nothing = client.try_read(&mut unread);
        assert_eq!(nothing.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        let Poll::Ready((Outgoing::Frames, batch)) = poll_driver(&rx) else {
            panic!("the driver has frames to write");
        };
        assert_eq!(batch, [text(&b"broadcast\n"[..]), text(&b"reply\n"[..])]);
    }

    #[tokio::test]
    async fn what_a_full_socket_does_not_take_is_left_first_for_the_driver() {
        use tokio::io::AsyncReadExt;
        const BIG: usize = 32 << 20;
        let (tx, rx, mut client, wakes) = idle_driver(BIG + 64).await;
        let sent: Bytes = (0..BIG).map(|i| (i % 251) as u8).collect();
        assert_eq!(tx.push_for_sweep(text(sent.clone())), Ok(true));
        assert_eq!(tx.push_for_sweep(text(&b"after"[..])), Ok(false));
        assert!(tx.write_idle(), "the kernel took a first part");
        assert_eq!(wakes.count(), 1, "the driver is woken for the rest");
        let Poll::Ready((Outgoing::Frames, batch)) = poll_driver(&rx) else {
            panic!("the rest is the driver's");
        };
        let [rest, after] = &batch[..] else {
            panic!("the rest of the frame, then the next: {}", batch.len());
        };
        assert!(!rest.bytes.is_empty() && rest.bytes.len() < BIG);
        assert_eq!(after.bytes, &b"after"[..]);
        // The client reads what the sweep wrote, then exactly the rest.
        let mut got = vec![0; BIG - rest.bytes.len()];
        client.read_exact(&mut got).await.unwrap();
        got.extend_from_slice(&rest.bytes);
        assert!(got == sent, "the frame is whole once the rest follows");
    }

    #[tokio::test]
    async fn a_slow_consumer_still_gets_the_rest_of_a_frame_the_sweep_began() {
        const BIG: usize = 32 << 20;
        let (tx, rx, _client, _) = idle_driver(BIG + 64).await;
        assert_eq!(tx.push_for_sweep(frame(BIG)), Ok(true));
        assert_eq!(tx.push_for_sweep(frame(10)), Ok(false));
        assert!(tx.write_idle(), "the kernel took a first part");
        let rest = tx.queued() - 10;
        assert_eq!(tx.push(frame(BIG), Class::Push), Err(Overflow));
        let Poll::Ready((Outgoing::Close(Closing::SlowConsumer), batch)) = poll_driver(&rx) else {
            panic!("the connection closes as a slow consumer");
        };
        // The rest of the torn frame goes out before the last words; nothing else does.
        let [torn] = &batch[..] else {
            panic!("only the torn frame's rest: {} items", batch.len());
        };
        assert_eq!(torn.bytes.len(), rest);
    }

    #[tokio::test]
    async fn a_broadcast_to_a_driver_that_is_not_idle_wakes_it_as_any_push() {
        let (tx, rx) = outbox::<Outbound>(100);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut batch = Vec::new();
        let polled = rx.poll_next(&mut Context::from_waker(&waker), &mut batch, None);
        assert!(polled.is_pending());
        assert_eq!(tx.push_for_sweep(text(&b"hi\n"[..])), Ok(false));
        assert_eq!(wakes.count(), 1);
        assert!(!tx.write_idle());
    }

    #[tokio::test]
    async fn broadcasts_for_the_sweep_count_against_the_bound() {
        let (tx, rx, _client, wakes) = idle_driver(10).await;
        assert_eq!(tx.push_for_sweep(frame(6)), Ok(true));
        assert_eq!(tx.push_for_sweep(frame(6)), Err(Overflow));
        assert_eq!(wakes.count(), 1, "the close wakes the driver");
        assert!(!tx.write_idle(), "and takes its socket back");
        assert_eq!(
            poll_driver(&rx),
            Poll::Ready((Outgoing::Close(Closing::SlowConsumer), Vec::new()))
        );
    }

    /// Spawns a driver waiting in `next` on its own task and lets it get to the wait.
    async fn waiting_driver(
        rx: OutboxReceiver<Outbound>,
    ) -> tokio::task::JoinHandle<(Outgoing, Vec<Outbound>)> {
        let driver = tokio::spawn(async move {
            let mut batch = Vec::new();
            let outgoing = rx.next(&mut batch).await;
            (outgoing, batch)
        });
        tokio::task::yield_now().await;
        assert!(!driver.is_finished(), "nothing is queued yet");
        driver
    }

    // Paused time: a driver that is never woken leaves the runtime idle, the clock jumps, and
    // the timeout fails the test instead of hanging it.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_driver_is_woken_by_the_first_push() {
        let (tx, rx) = outbox(10);
        let driver = waiting_driver(rx).await;
        tx.push(text(&b"ab"[..]), Class::Push).unwrap();
        tx.push(text(&b"cd"[..]), Class::Push).unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(1), driver).await;
        let (outgoing, batch) = woken.expect("the push wakes the driver").unwrap();
        assert_eq!(outgoing, Outgoing::Frames);
        assert_eq!(batch, [text(&b"ab"[..]), text(&b"cd"[..])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_driver_is_woken_by_a_close() {
        let (tx, rx) = outbox(10);
        let driver = waiting_driver(rx).await;
        tx.close(Closing::LoginTimeout);
        let woken = tokio::time::timeout(Duration::from_secs(1), driver).await;
        let (outgoing, _) = woken.expect("the close wakes the driver").unwrap();
        assert_eq!(outgoing, Outgoing::Close(Closing::LoginTimeout));
    }

    #[tokio::test]
    async fn shutdown_lets_queued_frames_out_first() {
        let (tx, rx) = outbox(10);
        tx.push(frame(3), Class::Push).unwrap();
        tx.close(Closing::Shutdown);
        let mut batch = Vec::new();
        assert_eq!(
            rx.next(&mut batch).await,
            Outgoing::Close(Closing::Shutdown)
        );
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_driver_and_a_blocked_write() {
        let (tx, rx) = outbox::<Outbound>(10);
        let rx_closed = async { rx.closed().await };
        let tx2 = &tx;
        let (reason, ()) = tokio::join!(rx_closed, async move {
            tokio::task::yield_now().await;
            tx2.close(Closing::SlowConsumer);
        });
        assert_eq!(reason, Closing::SlowConsumer);
        assert_eq!(
            rx.next(&mut Vec::new()).await,
            Outgoing::Close(Closing::SlowConsumer)
        );
    }
}
