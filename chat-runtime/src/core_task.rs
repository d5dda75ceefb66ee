//! The task that owns the [`Chat`]: the only place the core's state lives, so it needs no lock.
//!
//! It takes inputs from every connection over one channel, feeds them to the core with the time
//! (the wall clock for messages' `ts`, tokio's monotonic clock for deadlines, so a stepped wall
//! clock moves no deadline), and drains the outputs after each one (the core's one rule). It hands the
//! outputs of a batch of inputs to the delivery task in one piece, which stores their records in
//! one write (group commit) before it delivers anything. While the store writes, this task goes
//! on with the next inputs.

use std::sync::Arc;
use std::time::SystemTime;

use chat_core::{
    Chat, Command, ConnectionId, DirectMessage, Event, Input, Now, Output, Record, Ref, SendKind,
    Timestamp,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::{Origin, Sink, Work};

/// A message from a connection (or the runtime) to the core task.
pub(crate) enum ToCore {
    Connect {
        conn: ConnectionId,
        sink: Sink,
    },
    Command {
        conn: ConnectionId,
        command: Command,
        reference: Option<Ref>,
    },
    Disconnect(ConnectionId),
    /// An event the transport itself answers with (an undecodable frame's error, say), queued
    /// behind the connection's earlier replies and bounded by its outbox like them.
    Reply {
        conn: ConnectionId,
        event: Event,
        reference: Option<Ref>,
    },
    /// From the delivery task: the store could not keep these records.
    Unstored(Vec<Record>),
    /// From the delivery task: these queued DMs were not delivered after all.
    Undelivered(Vec<Arc<DirectMessage>>),
}

pub(crate) struct CoreTask {
    pub(crate) chat: Chat,
    pub(crate) inbox: mpsc::Receiver<ToCore>,
    pub(crate) delivery: mpsc::Sender<Vec<Work>>,
    pub(crate) batch: usize,
    pub(crate) stop: CancellationToken,
    /// The origin of the monotonic clock the core's deadlines are on.
    pub(crate) started: Instant,
}

impl CoreTask {
    /// Runs until `stop` is cancelled or every sender is gone, then hands back the chat.
    pub(crate) async fn run(mut self) -> Chat {
        let mut inputs = Vec::with_capacity(self.batch);
        loop {
            let deadline = self.chat.poll_timeout().map(|at| self.started + at);
            let mut stopping = false;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => stopping = true,
                received = self.inbox.recv_many(&mut inputs, self.batch) => {
                    if received == 0 {
                        break;
                    }
                }
                () = sleep_until(deadline) => {}
            }
            if stopping {
                // Inputs that arrived before the stop are handled (and stored) like any other;
                // at most a queue's worth, so a client still sending cannot hold shutdown up.
                let queued = self.inbox.len();
                for _ in 0..queued {
                    match self.inbox.try_recv() {
                        Ok(message) => inputs.push(message),
                        Err(_) => break,
                    }
                }
            }
            let mut work = Vec::with_capacity(inputs.len() + 1);
            for message in inputs.drain(..) {
                self.handle(message, &mut work);
            }
            // Deadlines that passed while the inputs waited (or the timer fired).
            self.feed(Input::Tick, None, &mut work);
            if !work.is_empty() && self.delivery.send(work).await.is_err() {
                break;
            }
            if stopping {
                break;
            }
        }
        self.chat
    }

    fn handle(&mut self, message: ToCore, work: &mut Vec<Work>) {
        match message {
            ToCore::Connect { conn, sink } => {
                // Registered before any output can name the connection.
                work.push(Work::Register { conn, sink });
                self.feed(Input::Connect(conn), None, work);
            }
            ToCore::Command {
                conn,
                command,
                reference,
            } => {
                let origin = Origin {
                    conn,
                    reference: reference.clone(),
                };
                let input = Input::Command {
                    conn,
                    command,
                    reference,
                };
                self.feed(input, Some(origin), work);
            }
            ToCore::Disconnect(conn) => {
                self.feed(Input::Disconnect(conn), None, work);
                work.push(Work::Unregister(conn));
            }
            // The core has nothing to decide here; this task is only the point that orders it.
            ToCore::Reply {
                conn,
                event,
                reference,
            } => work.push(Work::Outputs {
                origin: Some(Origin {
                    conn,
                    reference: reference.clone(),
                }),
                outputs: vec![Output::Send {
                    to: conn,
                    event: Arc::new(event),
                    reference,
                    kind: SendKind::Reply,
                }],
            }),
            ToCore::Unstored(records) => {
                let ids = records.iter().filter_map(Record::message_id).collect();
                self.feed(Input::Unstored(records), None, work);
                // From here on no output of the core shows them: the delivery task can stop
                // filtering them out.
                work.push(Work::Forgotten(ids));
            }
            ToCore::Undelivered(messages) => self.feed(Input::Undelivered(messages), None, work),
        }
    }

    /// One input, then every output it caused, as one unit of work. A client's frame always
    /// makes a unit (empty or not), so the delivery task can count it as answered.
    fn feed(&mut self, input: Input, origin: Option<Origin>, work: &mut Vec<Work>) {
        let now = Now::new(
            Timestamp::from_system_time(SystemTime::now()),
            self.started.elapsed(),
        );
        if let Err(error) = self.chat.handle(input, now) {
            tracing::error!(%error, "the runtime fed the core an inconsistent input");
        }
        let outputs: Vec<Output> = std::iter::from_fn(|| self.chat.poll_output()).collect();
        if !outputs.is_empty() || origin.is_some() {
            work.push(Work::Outputs { origin, outputs });
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
