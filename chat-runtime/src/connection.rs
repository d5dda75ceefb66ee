//! [`Connection`]: one client's attachment to the runtime, whatever its transport.
//!
//! A transport gets one from [`Handle::connect`](crate::Handle::connect) (frames as bytes in its
//! wire format) and an in-process client, a bot say, from
//! [`Handle::connect_local`](crate::Handle::connect_local) (events as values). Either way one
//! task drives it: it hands the client's commands in with [`Connection::send`] (after
//! [`Connection::admit`] checked the rate limit, and only while [`Connection::readable`] says
//! the client may be read: see the outbox's pacing), and takes what is queued for the client
//! with [`Connection::next`], every item at once, to be written with one flush. Dropping the
//! connection tells the core it is gone. [`drive`](crate::drive) is that task, written once for
//! every transport.

use std::sync::atomic::Ordering;

use chat_core::{Command, ConnectionId, Event, Ref};
use tokio::sync::mpsc::error::TrySendError;

use crate::core_task::ToCore;
use crate::metrics::Metrics;
use crate::outbox::{Closing, Delivery, Outbound, OutboxReceiver, Outgoing};
use crate::rate_limit::{Admission, RateLimiter};
use crate::runtime::Handle;
use crate::socket::SharedTcp;

/// The runtime has stopped; the connection should close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the chat runtime has stopped")]
pub struct RuntimeStopped;

/// One attached client. `T` is what it receives: [`Outbound`] frames for a transport,
/// [`Delivery`] values for an in-process client ([`LocalConnection`]).
pub struct Connection<T = Outbound> {
    id: ConnectionId,
    outbox: OutboxReceiver<T>,
    handle: Handle,
    limiter: Option<RateLimiter>,
    /// While set, commands are handed to the core without running it (see [`Connection::hold`]).
    holding: bool,
}

/// A client attached in-process: it receives events as values ([`Delivery`]), not bytes.
pub type LocalConnection = Connection<Delivery>;

impl<T> Connection<T> {
    pub(crate) fn new(
        id: ConnectionId,
        outbox: OutboxReceiver<T>,
        handle: Handle,
        limiter: Option<RateLimiter>,
    ) -> Self {
        Connection {
            id,
            outbox,
            handle,
            limiter,
            holding: false,
        }
    }

    /// The connection's id, as the core knows it.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Checks one incoming frame against the connection's rate limit. Transports call it for
    /// every frame or line, the undecodable ones included.
    pub fn admit(&mut self) -> Admission {
        match &mut self.limiter {
            Some(limiter) => limiter.admit(tokio::time::Instant::now()),
            None => Admission::Allowed,
        }
    }

    /// Hands a decoded command to the core. Waits only if the core is far behind.
    pub async fn send(
        &self,
        command: Command,
        reference: Option<Ref>,
    ) -> Result<(), RuntimeStopped> {
        Metrics::add(&self.handle.shared.metrics.commands_in, 1);
        self.to_core(ToCore::Command {
            conn: self.id,
            command,
            reference,
        })
        .await
    }

    /// Answers the client with an event of the transport's own (the `error` for a frame it could
    /// not decode, or that the rate limit refused). It goes out after the replies to the
    /// client's earlier commands, and is paced like them.
    pub async fn reply(&self, event: Event, reference: Option<Ref>) -> Result<(), RuntimeStopped> {
        self.to_core(ToCore::Reply {
            conn: self.id,
            event,
            reference,
        })
        .await
    }

    async fn to_core(&self, message: ToCore) -> Result<(), RuntimeStopped> {
        self.outbox.asked();
        let shared = &self.handle.shared;
        let sent = shared.to_core.send(message).await;
        if sent.is_err() {
            self.outbox.unasked();
        }
        if sent.is_ok() && !self.holding {
            self.help();
        }
        sent.map_err(|_| RuntimeStopped)
    }

    /// On a current-thread runtime, runs the core now, on this task, rather than after every task
    /// woken before it.
    fn help(&self) {
        if let Some(help) = &self.handle.shared.helper {
            help();
        }
    }

    /// Until [`release`](Connection::release), hands commands to the core without running it:
    /// [`drive`](crate::drive) holds while it hands over every frame the client has already
    /// sent, so the core takes them in one turn (and a run of one sender's messages to a room
    /// reaches each recipient as one push: `fan_out.rs`).
    pub(crate) fn hold(&mut self) {
        self.holding = true;
    }

    /// Ends a [`hold`](Connection::hold): the core runs now, on what was handed to it.
    pub(crate) fn release(&mut self) {
        self.holding = false;
        self.help();
    }

    /// Whether the client may be read now: fewer than [`WINDOW`](crate::WINDOW) of its frames
    /// are unanswered and its queued replies are under the outbox bound.
    pub fn may_read(&self) -> bool {
        self.outbox.may_read()
    }

    /// Resolves once the client may be read (see [`Connection::may_read`]). A driver waits for
    /// it before each read, so a client that asks faster than it reads is slowed, not dropped.
    pub async fn readable(&self) {
        self.outbox.readable().await
    }

    /// Waits for items to write or for a reason to close. Items are appended to `batch`, all
    /// that are queued at once, so the driver can write them and flush once.
    pub async fn next(&self, batch: &mut Vec<T>) -> Outgoing {
        self.outbox.next(batch).await
    }

    /// [`next`](Connection::next) as a poll, for [`drive`](crate::drive)'s own wait; it is
    /// also woken when the client may be read again. `socket` is the driver's socket, if the
    /// runtime may write broadcasts to it while the driver waits ([`Peer::socket`]); on a
    /// runtime that does not (a multi-threaded one, where the drivers write in parallel) it is
    /// ignored.
    ///
    /// [`Peer::socket`]: crate::Peer::socket
    pub(crate) fn poll_next(
        &self,
        cx: &mut std::task::Context<'_>,
        batch: &mut Vec<T>,
        socket: Option<&SharedTcp>,
    ) -> std::task::Poll<Outgoing> {
        let idle = socket.filter(|_| self.handle.shared.sweeps);
        self.outbox.poll_next(cx, batch, idle)
    }

    /// Takes the socket back from the runtime after [`poll_next`](Self::poll_next) left it
    /// there: the driver is about to do something other than wait.
    pub(crate) fn unpark(&self) {
        if self.handle.shared.sweeps {
            self.outbox.unpark();
        }
    }

    /// Appends the items queued right now to `batch`, without waiting; returns how many.
    pub fn try_next(&self, batch: &mut Vec<T>) -> usize {
        self.outbox.drain(batch)
    }

    /// Resolves once the runtime closes the connection. A driver races every write against it:
    /// a client whose queue overflows while a write to it is blocked is cut off at once.
    pub async fn closed(&self) -> Closing {
        self.outbox.closed().await
    }

    /// Why the runtime is closing the connection, if it is.
    pub fn closing(&self) -> Option<Closing> {
        self.outbox.closing()
    }

    /// The runtime this connection is attached to.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        match shared.to_core.try_send(ToCore::Disconnect(self.id)) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(message)) => {
                // The core is busy; tell it as soon as it has room, after this connection's
                // earlier commands (which are already queued).
                let to_core = shared.to_core.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { to_core.send(message).await });
                }
            }
        }
        if shared
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::AcqRel)
            == 1
        {
            shared.idle.notify_waiters();
        }
    }
}
