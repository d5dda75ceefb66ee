//! Running the core as one replica among several: how a runtime takes part in a cluster.
//!
//! The core is deterministic: fed the same inputs in the same order at the same times, two
//! [`Chat`]s make the same decisions (the same ids, the same name given to the same
//! connection). So several runtimes are one chat if each feeds its core not its own clients'
//! inputs but the inputs of *every* node, in one order that all of them agree on: an
//! [`InputLog`] (chat-cluster's is a Redis stream). Each node appends what its connections send
//! and replays what the log hands back ([`Replay`]), stamped with the log's time, and carries
//! out only the outputs that concern its own connections. The core never learns that it is one
//! of several.
//!
//! What stays local:
//!
//! - `ping` is answered from this node's replica once the connection's earlier frames are back
//!   from the log (so the answers keep their order);
//! - `who` and `rooms` ([`Command::reads_only`]) go through the log like any command, so that
//!   they see everything acknowledged before them on any node (a client told that a join on
//!   another node was done finds it in `who`); while the log is unreachable they are answered
//!   from this node's replica, as it was when the log went away;
//! - the authenticator runs on the node that holds the connection, and its verdict goes
//!   through the log like any input;
//! - history pages past the core's memory are read from the store by that node alone.
//!
//! While the log refuses appends (Redis is down), every command is answered `unavailable` at
//! once. Connects, disconnects and verdicts are kept, in order, and appended when the log is
//! back, so no node is left believing in a connection that is gone (a verdict is kept as an
//! `unavailable` one: the client is told to try again, rather than being logged in long after it
//! asked); so is a tick, so a deadline that passed meanwhile is kept once the log is back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chat_core::{
    AuthError, Chat, ChatError, Command, ConnectionId, Event, Input, LoginAttempt, Output, Ref,
    Secret, Timestamp,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::stand_in::StandIns;

/// A node of a cluster, as named by the cluster (chat-cluster hands out a fresh one to every node
/// that joins). Connection ids carry their node in their high bits, so they are unique across
/// the cluster and a node's connections can be told apart from the others'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// Bits of a [`ConnectionId`] below its node's.
const NODE_SHIFT: u32 = 40;

impl NodeId {
    /// The highest node id: connection ids keep 24 bits for their node.
    pub const MAX: NodeId = NodeId((1 << (64 - NODE_SHIFT)) - 1);

    /// The node a connection id belongs to.
    pub fn of(conn: ConnectionId) -> NodeId {
        NodeId((conn.0 >> NODE_SHIFT) as u32)
    }

    /// The first connection id this node hands out.
    pub fn first_connection(self) -> ConnectionId {
        ConnectionId((u64::from(self.0) << NODE_SHIFT) | 1)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// Why an append to the log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log cannot be reached now (Redis is down, say); the append did not happen.
    #[error("the input log is unreachable: {0}")]
    Unreachable(String),
    /// The log was closed: the node is stopping.
    #[error("the input log is closed")]
    Closed,
}

/// The ordered log every node of a cluster appends its inputs to, and reads all of them back
/// from (through [`Replay`]).
#[async_trait::async_trait]
pub trait InputLog: Send + Sync + 'static {
    /// Appends `inputs`, `node`'s, in this order, as one entry. On `Ok` the log holds them and
    /// every node (this one too) will replay them; on `Err` none of them was appended.
    async fn append(&self, node: NodeId, inputs: &[Input]) -> Result<(), LogError>;
}

/// What the log hands a replica, in the log's order.
pub enum Replay {
    /// One entry: `node`'s inputs, in order, at the log's time `at`.
    Inputs {
        /// The node that appended them.
        node: NodeId,
        /// When the log took them: the time every replica handles them at.
        at: Timestamp,
        /// The inputs.
        inputs: Vec<Input>,
    },
    /// The cluster declared `node` dead (it stopped, or fell silent for too long): every
    /// connection it had is disconnected, in id order.
    NodeGone {
        /// The node.
        node: NodeId,
        /// When the log took the verdict.
        at: Timestamp,
    },
    /// Runs a function on the replica here, between two entries: how a cluster takes a
    /// checkpoint of the state at a known point of the log.
    Inspect(Box<dyn FnOnce(&Chat) + Send>),
    /// Start over as `node`: every connection of this node is closed (its clients reconnect and
    /// resume), and, if given, the replica is replaced by `chat` (rebuilt from a checkpoint,
    /// when this node fell too far behind the log to catch up entry by entry).
    Restart {
        /// The node's new id.
        node: NodeId,
        /// The replica to continue from, if the current one cannot.
        chat: Option<Box<Chat>>,
    },
}

/// What a runtime needs to run as a replica: its node id, the log to append to, and the
/// entries to replay.
pub struct Replication {
    /// This node's id.
    pub node: NodeId,
    /// Where this node's inputs go.
    pub log: Arc<dyn InputLog>,
    /// Every node's inputs, in the log's order.
    pub replay: mpsc::Receiver<Replay>,
}

/// A batch for the publisher task, or a word about its backlog.
pub(crate) enum Publish {
    Inputs(NodeId, Vec<Input>),
    /// The node restarted: what its previous self kept for retrying no longer means anything.
    Forget,
}

/// The core task's side of replication.
pub(crate) struct Replica {
    pub(crate) node: NodeId,
    pub(crate) replay: mpsc::Receiver<Replay>,
    /// Commands the publisher could not append, to answer with `unavailable`.
    pub(crate) refused: mpsc::UnboundedReceiver<Vec<Input>>,
    publish: mpsc::UnboundedSender<Publish>,
    /// This batch's inputs, appended as one entry when the batch ends.
    outgoing: Vec<Input>,
    /// This node's connections, and how many of each one's inputs (its connect, its commands)
    /// are out in the log.
    local: HashMap<ConnectionId, u32>,
    /// The `ref` of the frame each verdict out in the log answers.
    verdicts: HashMap<ConnectionId, Option<Ref>>,
    /// The deadline a tick was last asked for, and when: it is asked again only after
    /// [`TICK_AGAIN`] (the log's clock may lag this node's, so that the tick came too early).
    ticked: Option<(Duration, Instant)>,
    next_conn: Arc<AtomicU64>,
    /// Set by the publisher while the log refuses appends.
    down: Arc<AtomicBool>,
    /// The secrets this node's clients sent; the log carries stand-ins.
    stand_ins: StandIns,
    publisher: tokio::task::JoinHandle<()>,
    /// Replies of the runtime's own held until the connection's frames out in the log are
    /// answered.
    replies: HashMap<ConnectionId, Vec<(Event, Option<Ref>)>>,
}

impl Replica {
    /// The replica of `replication`, and the publisher task that appends for it.
    pub(crate) fn start(replication: Replication, next_conn: Arc<AtomicU64>) -> Replica {
        let (publish, batches) = mpsc::unbounded_channel();
        let (refuse, refused) = mpsc::unbounded_channel();
        let down = Arc::new(AtomicBool::new(false));
        let publisher = tokio::spawn(publisher(replication.log, batches, refuse, down.clone()));
        next_conn.store(replication.node.first_connection().0, Ordering::Relaxed);
        Replica {
            node: replication.node,
            replay: replication.replay,
            refused,
            publish,
            outgoing: Vec::new(),
            local: HashMap::new(),
            verdicts: HashMap::new(),
            ticked: None,
            next_conn,
            down,
            stand_ins: StandIns::default(),
            publisher,
            replies: HashMap::new(),
        }
    }

    /// Whether `conn` is one of this node's connections now.
    pub(crate) fn is_local(&self, conn: ConnectionId) -> bool {
        self.local.contains_key(&conn)
    }

    /// A connection of this node was accepted; false if its id is from before a restart.
    pub(crate) fn connected(&mut self, conn: ConnectionId) -> bool {
        if NodeId::of(conn) != self.node {
            return false;
        }
        // Until its connect is back from the log the replica does not know the connection, so
        // not even a `ping` of it can be answered here.
        self.local.insert(conn, 1);
        self.outgoing.push(Input::Connect(conn));
        true
    }

    /// A connection of this node is gone.
    pub(crate) fn disconnected(&mut self, conn: ConnectionId) {
        if self.local.remove(&conn).is_some() {
            self.verdicts.remove(&conn);
            self.replies.remove(&conn);
            self.stand_ins.forget(conn);
            self.outgoing.push(Input::Disconnect(conn));
        }
    }

    /// Whether `command` of `conn` may be answered from this replica alone: it only reads, the
    /// connection's connect and earlier commands are all back from the log, and it is a `ping`
    /// or the log refuses appends (a read through the log sees every write acknowledged before
    /// it, on any node; one from this replica could miss a write another node acknowledged a
    /// moment ago).
    pub(crate) fn answers_locally(&self, conn: ConnectionId, command: &Command) -> bool {
        let settled = self.local.get(&conn) == Some(&0);
        let alone = matches!(command, Command::Ping) || self.down.load(Ordering::Acquire);
        command.reads_only() && settled && alone
    }

    /// Holds a reply the runtime makes itself (`rate_limited`, `bad_frame`) while `conn` has
    /// frames out in the log, so that it does not overtake their answers; gives it back if it
    /// may go now.
    pub(crate) fn hold_reply(
        &mut self,
        conn: ConnectionId,
        event: Event,
        reference: Option<Ref>,
    ) -> Option<(Event, Option<Ref>)> {
        match self.local.get(&conn) {
            Some(out) if *out > 0 => {
                self.replies
                    .entry(conn)
                    .or_default()
                    .push((event, reference));
                None
            }
            _ => Some((event, reference)),
        }
    }

    /// The replies held for `conn`, once nothing of it is out in the log any more.
    pub(crate) fn released(&mut self, conn: ConnectionId) -> Vec<(Event, Option<Ref>)> {
        if self.local.get(&conn).is_some_and(|out| *out > 0) {
            return Vec::new();
        }
        self.replies.remove(&conn).unwrap_or_default()
    }

    /// Whether `command` is a `ping` to answer without the core: while the log refuses
    /// appends, a `ping` is answered `pong` even if the connection's earlier frames (or its
    /// connect) are still waiting for the log, as a client's way to tell that the server is up.
    pub(crate) fn pongs_directly(&self, command: &Command) -> bool {
        matches!(command, Command::Ping) && self.down.load(Ordering::Acquire)
    }

    /// Sends a command of `conn` to the log.
    pub(crate) fn submit(&mut self, conn: ConnectionId, command: Command, reference: Option<Ref>) {
        if let Some(out) = self.local.get_mut(&conn) {
            *out += 1;
            let command = self.stand_ins.conceal(conn, command);
            self.outgoing.push(Input::Command {
                conn,
                command,
                reference,
            });
        }
    }

    /// A login attempt of one of this node's connections, with its secrets back.
    pub(crate) fn reveal_attempt(
        &mut self,
        conn: ConnectionId,
        attempt: LoginAttempt,
    ) -> LoginAttempt {
        self.stand_ins.reveal_attempt(conn, attempt)
    }

    /// A password one of this node's connections registers with, back from its stand-in.
    pub(crate) fn reveal(&mut self, conn: ConnectionId, password: Secret) -> Secret {
        self.stand_ins.reveal(conn, password)
    }

    /// Sends a verdict on `conn`'s login or registration (the frame with `reference`) to the log.
    pub(crate) fn submit_verdict(
        &mut self,
        conn: ConnectionId,
        verdict: Input,
        reference: Option<Ref>,
    ) {
        if let Some(out) = self.local.get_mut(&conn) {
            // Outstanding like a command: until the verdict is back, this replica still holds
            // the connection's later commands, so no read of it may be answered here alone.
            *out += 1;
            self.verdicts.insert(conn, reference);
            self.outgoing.push(verdict);
        }
    }

    /// Appends what this batch gathered, as one entry.
    pub(crate) fn flush(&mut self) {
        if !self.outgoing.is_empty() {
            let inputs = std::mem::take(&mut self.outgoing);
            let _ = self.publish.send(Publish::Inputs(self.node, inputs));
        }
    }

    /// Asks the log for a tick if the replica's deadline has passed on this node's clock (all
    /// replicas then handle it at the same point).
    pub(crate) fn tick_if_due(&mut self, deadline: Option<Duration>) {
        let Some(deadline) = deadline else {
            return;
        };
        let asked = self.ticked.filter(|(asked_for, _)| *asked_for == deadline);
        if asked.is_some_and(|(_, at)| at.elapsed() < TICK_AGAIN) || wall_clock() < deadline {
            return;
        }
        self.ticked = Some((deadline, Instant::now()));
        self.outgoing.push(Input::Tick);
    }

    /// When to look at the replica's deadline next, on tokio's clock: when this node's clock
    /// reaches it, or, if a tick was asked for it already, [`TICK_AGAIN`] after that.
    pub(crate) fn timer(&self, deadline: Option<Duration>) -> Option<Instant> {
        let deadline = deadline?;
        match self.ticked {
            Some((asked_for, at)) if asked_for == deadline => Some(at + TICK_AGAIN),
            _ => Some(Instant::now() + deadline.saturating_sub(wall_clock())),
        }
    }

    /// Where an input of the log came from, if it answers a frame of this node's: the frame's
    /// connection and `ref`, for the unit of work that answers it. (A connect of this node's
    /// answers no frame, but the connection's reads wait for it no longer.)
    pub(crate) fn origin_of(
        &mut self,
        node: NodeId,
        input: &Input,
    ) -> Option<(ConnectionId, Option<Ref>)> {
        if node != self.node {
            return None;
        }
        match input {
            Input::Connect(conn) => {
                let out = self.local.get_mut(conn)?;
                *out = out.saturating_sub(1);
                None
            }
            Input::Command {
                conn, reference, ..
            } => {
                let out = self.local.get_mut(conn)?;
                if *out == 0 {
                    // Answered already: an append whose reply was lost (a timeout, a dropped
                    // connection) was refused here but had reached the log. The frame is not
                    // counted as answered twice.
                    return None;
                }
                *out -= 1;
                Some((*conn, reference.clone()))
            }
            Input::Authenticated { conn, .. } | Input::PasswordHashed { conn, .. } => {
                let reference = self.verdicts.remove(conn)?;
                if let Some(out) = self.local.get_mut(conn) {
                    *out = out.saturating_sub(1);
                }
                Some((*conn, reference))
            }
            _ => None,
        }
    }

    /// Whether this node carries out `output` (it concerns one of its connections, or every
    /// node does it, as storing records).
    pub(crate) fn carries_out(&self, output: &Output) -> bool {
        match output {
            Output::Authenticate { conn, .. } | Output::HashPassword { conn, .. } => {
                self.is_local(*conn)
            }
            Output::FetchHistory(request) => self.is_local(request.conn),
            Output::Send { to, .. } => self.is_local(*to),
            Output::Close { conn, .. } => self.is_local(*conn),
            Output::Broadcast { .. } | Output::Persist(_) => true,
        }
    }

    /// Commands the publisher could not append: each answered `unavailable`, as the unit of
    /// work of its frame.
    pub(crate) fn refusals(
        &mut self,
        inputs: Vec<Input>,
    ) -> Vec<(ConnectionId, Event, Option<Ref>)> {
        let mut answers = Vec::new();
        for input in inputs {
            if let Input::Command {
                conn,
                reference,
                command,
            } = input
            {
                let Some(out) = self.local.get_mut(&conn) else {
                    continue;
                };
                *out = out.saturating_sub(1);
                self.stand_ins.forget_command(conn, &command);
                // A `ping` needs no log: it is answered, log or not.
                let event = match command {
                    Command::Ping => Event::Pong,
                    _ => Event::error(&ChatError::Unavailable),
                };
                answers.push((conn, event, reference));
            }
        }
        answers
    }

    /// Appends what this node still has for the log (at most [`FINISH_AT_MOST`]: the log may be
    /// away), then stops the publisher: the runtime is stopping, and whoever announces that
    /// the node leaves must do so after its last inputs.
    pub(crate) async fn finish(mut self) {
        self.flush();
        let Replica {
            publish, publisher, ..
        } = self;
        drop(publish);
        if tokio::time::timeout(FINISH_AT_MOST, publisher)
            .await
            .is_err()
        {
            tracing::warn!("the last inputs of this node may not be in the cluster's log");
        }
    }

    /// Starts over as `node`: every connection of this node is forgotten (the caller closes
    /// them) and returned.
    pub(crate) fn restart(&mut self, node: NodeId) -> Vec<ConnectionId> {
        self.node = node;
        self.next_conn
            .store(node.first_connection().0, Ordering::Relaxed);
        self.verdicts.clear();
        self.replies.clear();
        self.stand_ins.clear();
        self.outgoing.clear();
        self.ticked = None;
        let _ = self.publish.send(Publish::Forget);
        let mut gone: Vec<ConnectionId> = self.local.drain().map(|(conn, _)| conn).collect();
        gone.sort_unstable();
        gone
    }
}

/// The connections of `node` a replica knows of, for a [`Replay::NodeGone`].
pub(crate) fn connections_of(chat: &Chat, node: NodeId) -> Vec<ConnectionId> {
    let ids = chat.connection_ids().into_iter();
    ids.filter(|conn| NodeId::of(*conn) == node).collect()
}

/// The wall clock as the log's time is: milliseconds since the Unix epoch.
fn wall_clock() -> Duration {
    Duration::from_millis(Timestamp::from_system_time(SystemTime::now()).unix_millis())
}

/// How long after asking for a tick a node asks again, if the deadline still stands (the tick
/// came before the deadline on the log's clock, or went missing).
const TICK_AGAIN: Duration = Duration::from_secs(1);

/// How long a stopping runtime waits for its last inputs to reach the log.
const FINISH_AT_MOST: Duration = Duration::from_secs(3);

/// The most inputs the publisher puts in one entry of the log (more wait for the next).
const ENTRY_AT_MOST: usize = 4096;

/// The first pause before a backlog is appended again, doubled after each failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Appends the core task's batches in order. While the log refuses, commands are handed back to
/// be answered `unavailable`, and everything else waits in a backlog that goes first once the
/// log takes appends again.
async fn publisher(
    log: Arc<dyn InputLog>,
    mut batches: mpsc::UnboundedReceiver<Publish>,
    refuse: mpsc::UnboundedSender<Vec<Input>>,
    down: Arc<AtomicBool>,
) {
    let mut backlog: VecDeque<Input> = VecDeque::new();
    let mut node = NodeId(0);
    let mut retry = FIRST_RETRY;
    loop {
        let batch = if backlog.is_empty() {
            match batches.recv().await {
                Some(batch) => Some(batch),
                None => return,
            }
        } else {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => Some(batch),
                    None => return,
                },
                () = tokio::time::sleep(retry) => None,
            }
        };
        let mut inputs = Vec::new();
        let mut next = batch;
        // Batches that queued up while the last append was out go in one entry.
        loop {
            match next {
                Some(Publish::Forget) => {
                    backlog.clear();
                    inputs.clear();
                }
                Some(Publish::Inputs(from, more)) => {
                    node = from;
                    inputs.extend(more);
                }
                None => {}
            }
            if inputs.len() >= ENTRY_AT_MOST {
                break;
            }
            next = match batches.try_recv() {
                Ok(batch) => Some(batch),
                Err(_) => break,
            };
        }
        if !backlog.is_empty() {
            let waiting: Vec<Input> = backlog.iter().cloned().collect();
            match log.append(node, &waiting).await {
                Ok(()) => {
                    backlog.clear();
                    retry = FIRST_RETRY;
                    down.store(false, Ordering::Release);
                    tracing::info!("the input log takes appends again");
                }
                Err(LogError::Closed) => return,
                Err(error) => {
                    retry = (retry * 2).min(LAST_RETRY);
                    tracing::debug!(%error, "the input log still refuses appends");
                    keep_or_refuse(inputs, &mut backlog, &refuse);
                    continue;
                }
            }
        }
        if inputs.is_empty() {
            continue;
        }
        match log.append(node, &inputs).await {
            Ok(()) => down.store(false, Ordering::Release),
            Err(LogError::Closed) => return,
            Err(error) => {
                down.store(true, Ordering::Release);
                tracing::warn!(%error, "the input log refused an append; commands are answered `unavailable` until it is back");
                keep_or_refuse(inputs, &mut backlog, &refuse);
            }
        }
    }
}

/// Sorts inputs the log refused: commands go back to be answered `unavailable`; connects,
/// disconnects and verdicts wait for the log (a verdict as an `unavailable` one), and so does
/// one tick: the replica asks for a tick once per deadline, so a tick dropped here would leave
/// the deadline unkept until some other entry came.
fn keep_or_refuse(
    inputs: Vec<Input>,
    backlog: &mut VecDeque<Input>,
    refuse: &mpsc::UnboundedSender<Vec<Input>>,
) {
    let mut refused = Vec::new();
    for input in inputs {
        match input {
            Input::Command { .. } => refused.push(input),
            Input::Authenticated { conn, .. } => backlog.push_back(Input::Authenticated {
                conn,
                outcome: Err(AuthError::Unavailable),
            }),
            Input::PasswordHashed { conn, .. } => backlog.push_back(Input::PasswordHashed {
                conn,
                outcome: Err(AuthError::Unavailable),
            }),
            Input::Tick if backlog.contains(&Input::Tick) => {}
            other => backlog.push_back(other),
        }
    }
    if !refused.is_empty() {
        let _ = refuse.send(refused);
    }
}
