//! [`Connection`]: one client's attachment to the runtime, whatever its transport.
//!
//! A transport gets one from [`Handle::connect`](crate::Handle::connect) and runs one driver task
//! per client that selects over three things: the socket's reads (decoded commands go in with
//! [`Connection::send`], after [`Connection::admit`] checked the rate limit), the outbox
//! ([`Connection::next`] hands over every queued frame at once, to be written with one flush),
//! and the runtime's shutdown. Dropping the connection tells the core it is gone.

use std::sync::atomic::Ordering;

use chat_core::{Command, ConnectionId, Event, Ref};
use tokio::sync::mpsc::error::TrySendError;

use crate::core_task::ToCore;
use crate::metrics::Metrics;
use crate::outbox::{Outbound, OutboxReceiver, Outgoing};
use crate::rate_limit::{Admission, RateLimiter};
use crate::runtime::Handle;

/// The runtime has stopped; the connection should close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the chat runtime has stopped")]
pub struct RuntimeStopped;

/// One attached client.
pub struct Connection {
    id: ConnectionId,
    outbox: OutboxReceiver,
    handle: Handle,
    limiter: Option<RateLimiter>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        outbox: OutboxReceiver,
        handle: Handle,
        limiter: Option<RateLimiter>,
    ) -> Self {
        Connection {
            id,
            outbox,
            handle,
            limiter,
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
        self.handle
            .shared
            .to_core
            .send(ToCore::Command {
                conn: self.id,
                command,
                reference,
            })
            .await
            .map_err(|_| RuntimeStopped)
    }

    /// Answers the client with an event of the transport's own (the `error` for a frame it could
    /// not decode, or that the rate limit refused). It goes out after the replies to the
    /// client's earlier commands, and counts against the outbox like them, so a client that
    /// sends garbage and never reads is closed like any slow reader.
    pub async fn reply(&self, event: Event, reference: Option<Ref>) -> Result<(), RuntimeStopped> {
        self.handle
            .shared
            .to_core
            .send(ToCore::Reply {
                conn: self.id,
                event,
                reference,
            })
            .await
            .map_err(|_| RuntimeStopped)
    }

    /// Waits for frames to write or for a reason to close. Frames are appended to `batch`, all
    /// that are queued at once, so the driver can write them and flush once.
    pub async fn next(&mut self, batch: &mut Vec<Outbound>) -> Outgoing {
        self.outbox.next(batch).await
    }

    /// Appends the frames queued right now to `batch`, without waiting; returns how many.
    pub fn try_next(&mut self, batch: &mut Vec<Outbound>) -> usize {
        self.outbox.drain(batch)
    }

    /// The runtime this connection is attached to.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Connection {
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
