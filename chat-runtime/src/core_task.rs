//! The task that owns the [`Chat`]: the only place the core's state lives, so it needs no lock.
//!
//! It takes inputs from every connection over one channel, feeds them to the core with the time
//! (the wall clock for messages' `ts`, tokio's monotonic clock for deadlines, so a stepped wall
//! clock moves no deadline), and drains the outputs after each one (the core's one rule). It hands the
//! outputs of a batch of inputs to the delivery task in one piece, which stores their records in
//! one write (group commit) before it delivers anything. While the store writes, this task goes
//! on with the next inputs.
//!
//! Logins with credentials and registrations the core asks to check
//! ([`Output::Authenticate`], [`Output::HashPassword`]) are handed to the [`Authenticator`] on
//! tasks of their own, after the login throttle had its say; their verdicts come back on a
//! channel of their own and are fed to the core like any input. While a connection's check is
//! out, this task holds the connection's later frames and feeds them after the verdict, one
//! unit of work each: every frame is answered (or refused, if the store fails) on its own.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chat_core::{
    AuthError, Chat, Command, ConnectionId, DirectMessage, Event, Identity, Input, LoginAttempt,
    Now, Output, PasswordHash, Record, Ref, SendKind, Timestamp, UserKey,
};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, ClientInfo};
use crate::delivery::{Origin, Sink, Work};
use crate::metrics::Metrics;
use crate::replication::{Replay, Replica, connections_of};
use crate::throttle::LoginThrottle;

/// How long an authenticator may take over one check before the client is told `unavailable`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A message from a connection (or the runtime) to the core task.
pub(crate) enum ToCore {
    Connect {
        conn: ConnectionId,
        sink: Sink,
        client: ClientInfo,
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

/// An authenticator's verdict, back from its task.
pub(crate) enum Checked {
    Login {
        conn: ConnectionId,
        outcome: Result<Identity, AuthError>,
        /// What the throttle counts a failure against: the name the login claimed (a token's,
        /// as the authenticator read it) and the client's address.
        name: Option<UserKey>,
        addr: Option<IpAddr>,
    },
    Hash {
        conn: ConnectionId,
        outcome: Result<PasswordHash, AuthError>,
    },
}

/// A connection whose login or registration is being checked.
struct Pending {
    /// The `ref` of the frame being checked, for the unit of work its verdict makes.
    reference: Option<Ref>,
    /// The connection's frames since, fed after the verdict.
    held: VecDeque<ToCore>,
}

/// What a transport knew of a client, as kept while it is connected: its address only, unless
/// the authenticator wants the handshake's headers too.
enum Client {
    Addr(SocketAddr),
    Full(Arc<ClientInfo>),
}

/// The core task's side of authentication: the authenticator, what each connection's
/// transport knew of it, the checks out, and the throttle.
pub(crate) struct Checks {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    clients: HashMap<ConnectionId, Client>,
    pending: HashMap<ConnectionId, Pending>,
    pub(crate) throttle: LoginThrottle,
    pub(crate) verdicts: mpsc::UnboundedReceiver<Checked>,
    pub(crate) verdicts_tx: mpsc::UnboundedSender<Checked>,
    /// Verdicts known at once (a throttled login), fed after the input that asked.
    pub(crate) immediate: VecDeque<Checked>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Checks {
    pub(crate) fn new(authenticator: Arc<dyn Authenticator>, metrics: Arc<Metrics>) -> Self {
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        Checks {
            authenticator,
            clients: HashMap::new(),
            pending: HashMap::new(),
            throttle: LoginThrottle::default(),
            verdicts,
            verdicts_tx,
            immediate: VecDeque::new(),
            metrics,
        }
    }

    fn connected(&mut self, conn: ConnectionId, client: ClientInfo) {
        let kept = match (client.addr, self.authenticator.wants_headers()) {
            (_, true) => Client::Full(Arc::new(client)),
            (Some(addr), false) => Client::Addr(addr),
            (None, false) => return,
        };
        self.clients.insert(conn, kept);
    }

    fn disconnected(&mut self, conn: ConnectionId) {
        self.clients.remove(&conn);
        self.pending.remove(&conn);
    }

    /// What the transport knew of `conn`.
    fn client(&self, conn: ConnectionId) -> Arc<ClientInfo> {
        match self.clients.get(&conn) {
            Some(Client::Full(client)) => client.clone(),
            Some(Client::Addr(addr)) => Arc::new(ClientInfo::from_addr(*addr)),
            None => Arc::default(),
        }
    }

    /// Holds `message` if its connection is being checked; gives it back otherwise.
    fn hold(&mut self, message: ToCore) -> Option<ToCore> {
        let conn = match &message {
            ToCore::Command { conn, .. } | ToCore::Reply { conn, .. } => *conn,
            _ => return Some(message),
        };
        match self.pending.get_mut(&conn) {
            Some(pending) => {
                pending.held.push_back(message);
                None
            }
            None => Some(message),
        }
    }

    /// A check of `conn`'s frame with `reference` begins.
    fn started(&mut self, conn: ConnectionId, reference: Option<Ref>) {
        let held = VecDeque::new();
        self.pending.insert(conn, Pending { reference, held });
    }

    /// Hands a login to the authenticator, unless the throttle refuses it unchecked.
    fn authenticate(&mut self, conn: ConnectionId, attempt: LoginAttempt) {
        let client = self.client(conn);
        let addr = client.addr.map(|a| a.ip());
        let name = self.authenticator.claimed_name(&attempt).map(|n| n.key());
        if attempt.has_credentials() && self.throttle.is_locked(name.as_ref(), addr, Instant::now())
        {
            Metrics::add(&self.metrics.logins_throttled, 1);
            self.immediate.push_back(Checked::Login {
                conn,
                outcome: Err(AuthError::Throttled),
                name: None,
                addr: None,
            });
            return;
        }
        let authenticator = self.authenticator.clone();
        let verdicts = self.verdicts_tx.clone();
        tokio::spawn(async move {
            let outcome = guarded(authenticator.authenticate(&attempt, &client)).await;
            let name = name.filter(|_| attempt.has_credentials());
            let _ = verdicts.send(Checked::Login {
                conn,
                outcome,
                name,
                addr: addr.filter(|_| attempt.has_credentials()),
            });
        });
    }

    fn hash(&mut self, conn: ConnectionId, name: chat_core::UserName, password: chat_core::Secret) {
        let authenticator = self.authenticator.clone();
        let verdicts = self.verdicts_tx.clone();
        tokio::spawn(async move {
            let outcome = guarded(authenticator.hash_password(&name, &password)).await;
            let _ = verdicts.send(Checked::Hash { conn, outcome });
        });
    }

    /// The input a verdict is for the core, after the throttle counted a failure.
    fn verdict(&mut self, checked: Checked) -> (ConnectionId, Input) {
        match checked {
            Checked::Login {
                conn,
                outcome,
                name,
                addr,
            } => {
                if outcome == Err(AuthError::Failed) {
                    Metrics::add(&self.metrics.logins_failed, 1);
                    let locked = self.throttle.failed(name.as_ref(), addr, Instant::now());
                    if locked.name {
                        let name = name.as_ref().map(|n| n.as_str()).unwrap_or_default();
                        tracing::warn!(%name, "too many failed logins for this name: locked for a minute");
                    }
                    if locked.addr {
                        let addr = addr.map(|a| a.to_string()).unwrap_or_default();
                        tracing::warn!(%addr, "too many failed logins from this address: locked for a minute");
                    }
                }
                (conn, Input::Authenticated { conn, outcome })
            }
            Checked::Hash { conn, outcome } => (conn, Input::PasswordHashed { conn, outcome }),
        }
    }
}

/// Runs one authenticator call, turning a panic or a hang into `unavailable`, so a client never
/// waits for an answer that cannot come.
async fn guarded<T>(check: impl Future<Output = Result<T, AuthError>>) -> Result<T, AuthError> {
    match tokio::time::timeout(CHECK_TIMEOUT, AssertUnwindSafe(check).catch_unwind()).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => {
            tracing::error!("the authenticator panicked; the client is told to try again");
            Err(AuthError::Unavailable)
        }
        Err(_) => {
            tracing::warn!(
                seconds = CHECK_TIMEOUT.as_secs(),
                "the authenticator took too long; the client is told to try again"
            );
            Err(AuthError::Unavailable)
        }
    }
}

pub(crate) struct CoreTask {
    pub(crate) chat: Chat,
    pub(crate) checks: Checks,
    pub(crate) inbox: mpsc::Receiver<ToCore>,
    pub(crate) delivery: mpsc::Sender<Vec<Work>>,
    pub(crate) batch: usize,
    pub(crate) stop: CancellationToken,
    /// The origin of the monotonic clock the core's deadlines are on.
    pub(crate) started: Instant,
    /// Set when this runtime is one replica of a cluster: inputs then go through the cluster's
    /// log, and the core is fed the log's entries (see [`crate::replication`]).
    pub(crate) replica: Option<Replica>,
    /// The time of the last entry replayed from the log: what a replica answers local reads at,
    /// so they move no deadline the other replicas have not moved.
    pub(crate) replayed_at: Now,
}

impl CoreTask {
    /// Runs until `stop` is cancelled or every sender is gone, then hands back the chat.
    pub(crate) async fn run(mut self) -> Chat {
        let mut inputs = Vec::with_capacity(self.batch);
        let mut replays = Vec::new();
        loop {
            let deadline = match &self.replica {
                None => self.chat.poll_timeout().map(|at| self.started + at),
                Some(replica) => replica.timer(self.chat.poll_timeout()),
            };
            let (replay, refused) = match &mut self.replica {
                Some(replica) => (Some(&mut replica.replay), Some(&mut replica.refused)),
                None => (None, None),
            };
            let mut stopping = false;
            let mut refusals = None;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => stopping = true,
                received = self.inbox.recv_many(&mut inputs, self.batch) => {
                    if received == 0 {
                        break;
                    }
                }
                Some(checked) = self.checks.verdicts.recv() => {
                    self.checks.immediate.push_back(checked);
                }
                received = recv_many(replay, &mut replays, self.batch) => {
                    if received == 0 {
                        tracing::error!("the cluster's log reader stopped; this node stops too");
                        break;
                    }
                }
                Some(inputs) = recv(refused) => refusals = Some(inputs),
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
                if let Some(message) = self.checks.hold(message) {
                    self.handle(message, &mut work);
                }
                self.feed_verdicts(&mut work);
            }
            self.feed_verdicts(&mut work);
            for replay in replays.drain(..) {
                self.replay(replay, &mut work);
            }
            match &mut self.replica {
                None => {
                    // Deadlines that passed while the inputs waited (or the timer fired).
                    self.feed(Input::Tick, None, &mut work);
                }
                Some(replica) => {
                    for (conn, event, reference) in replica.refusals(refusals.unwrap_or_default()) {
                        push_reply(&mut work, conn, event, reference);
                        for (event, reference) in replica.released(conn) {
                            push_reply(&mut work, conn, event, reference);
                        }
                    }
                    replica.tick_if_due(self.chat.poll_timeout());
                    replica.flush();
                }
            }
            if !work.is_empty() && self.delivery.send(work).await.is_err() {
                break;
            }
            if stopping {
                break;
            }
        }
        if let Some(replica) = self.replica.take() {
            replica.finish().await;
        }
        self.chat
    }

    fn handle(&mut self, message: ToCore, work: &mut Vec<Work>) {
        match message {
            ToCore::Connect { conn, sink, client } => {
                // Registered before any output can name the connection.
                work.push(Work::Register { conn, sink });
                if let Some(replica) = &mut self.replica {
                    if !replica.connected(conn) {
                        // Numbered before this node restarted under a new id: its client
                        // connects again.
                        work.push(Work::Drop(conn));
                        return;
                    }
                    self.checks.connected(conn, client);
                    return;
                }
                self.checks.connected(conn, client);
                self.feed(Input::Connect(conn), None, work);
            }
            ToCore::Command {
                conn,
                command,
                reference,
            } => {
                if let Some(replica) = &mut self.replica {
                    if replica.pongs_directly(&command) {
                        push_reply(work, conn, Event::Pong, reference);
                        return;
                    }
                    if !replica.answers_locally(conn, &command) {
                        replica.submit(conn, command, reference);
                        return;
                    }
                }
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
                self.checks.disconnected(conn);
                match &mut self.replica {
                    Some(replica) => replica.disconnected(conn),
                    None => self.feed(Input::Disconnect(conn), None, work),
                }
                work.push(Work::Unregister(conn));
            }
            // The core has nothing to decide here; this task is only the point that orders it
            // (a replica holds it until the connection's frames out in the log are answered).
            ToCore::Reply {
                conn,
                event,
                reference,
            } => {
                let reply = match &mut self.replica {
                    Some(replica) => replica.hold_reply(conn, event, reference),
                    None => Some((event, reference)),
                };
                if let Some((event, reference)) = reply {
                    push_reply(work, conn, event, reference);
                }
            }
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
        let now = match self.replica {
            // A replica answers what it answers alone at the time of the last entry it
            // replayed, so that it moves no deadline the other replicas have not moved.
            Some(_) => self.replayed_at,
            None => Now::new(
                Timestamp::from_system_time(SystemTime::now()),
                self.started.elapsed(),
            ),
        };
        self.feed_at(input, origin, now, work);
    }

    /// [`CoreTask::feed`] at a given time. A replica carries out only the outputs that concern
    /// its own connections (and stores every record).
    fn feed_at(&mut self, input: Input, origin: Option<Origin>, now: Now, work: &mut Vec<Work>) {
        if let Err(error) = self.chat.handle(input, now) {
            tracing::error!(%error, "the runtime fed the core an inconsistent input");
        }
        let mut outputs: Vec<Output> = Vec::new();
        let mut origin = origin;
        while let Some(output) = self.chat.poll_output() {
            if let Some(replica) = &self.replica {
                if !replica.carries_out(&output) {
                    continue;
                }
            }
            match output {
                Output::Authenticate {
                    conn,
                    attempt,
                    reference,
                } => {
                    let attempt = match &mut self.replica {
                        Some(replica) => replica.reveal_attempt(conn, attempt),
                        None => attempt,
                    };
                    self.checks.started(conn, reference);
                    self.checks.authenticate(conn, attempt);
                    // The frame is answered by its verdict's unit, not this one.
                    origin = None;
                }
                Output::HashPassword {
                    conn,
                    name,
                    password,
                    reference,
                } => {
                    let password = match &mut self.replica {
                        Some(replica) => replica.reveal(conn, password),
                        None => password,
                    };
                    self.checks.started(conn, reference);
                    self.checks.hash(conn, name, password);
                    origin = None;
                }
                output => outputs.push(output),
            }
        }
        if !outputs.is_empty() || origin.is_some() {
            work.push(Work::Outputs { origin, outputs });
        }
    }
}

impl CoreTask {
    /// Feeds the verdicts that are in, each as the unit of work that answers its frame, then
    /// the frames its connection sent meanwhile, one unit each.
    fn feed_verdicts(&mut self, work: &mut Vec<Work>) {
        while let Some(checked) = self.checks.immediate.pop_front() {
            let (conn, input) = self.checks.verdict(checked);
            let Some(pending) = self.checks.pending.remove(&conn) else {
                // The connection left while it was checked.
                continue;
            };
            match &mut self.replica {
                Some(replica) => replica.submit_verdict(conn, input, pending.reference),
                None => {
                    let origin = Origin {
                        conn,
                        reference: pending.reference,
                    };
                    self.feed(input, Some(origin), work);
                }
            }
            for message in pending.held {
                // A held frame may start a check of its own: the rest then wait for that one.
                if let Some(message) = self.checks.hold(message) {
                    self.handle(message, work);
                }
            }
        }
    }
}

impl CoreTask {
    /// One thing the cluster's log handed this replica.
    fn replay(&mut self, replay: Replay, work: &mut Vec<Work>) {
        match replay {
            Replay::Inputs { node, at, inputs } => {
                let now = Now::from(at);
                self.replayed_at = now;
                for input in inputs {
                    let origin = self.replica.as_mut().and_then(|replica| {
                        let (conn, reference) = replica.origin_of(node, &input)?;
                        Some(Origin { conn, reference })
                    });
                    // Whose frame (or connect) of this node's this input was: replies held for
                    // that connection may go once it has nothing out in the log.
                    let settled = match &input {
                        Input::Connect(conn)
                        | Input::Command { conn, .. }
                        | Input::Authenticated { conn, .. }
                        | Input::PasswordHashed { conn, .. } => Some(*conn),
                        _ => None,
                    };
                    self.feed_at(input, origin, now, work);
                    let settled =
                        settled.filter(|_| self.replica.as_ref().is_some_and(|r| r.node == node));
                    if let (Some(conn), Some(replica)) = (settled, &mut self.replica) {
                        for (event, reference) in replica.released(conn) {
                            push_reply(work, conn, event, reference);
                        }
                    }
                }
            }
            Replay::NodeGone { node, at } => {
                let now = Now::from(at);
                self.replayed_at = now;
                tracing::info!(%node, "a node of the cluster is gone: its connections leave");
                for conn in connections_of(&self.chat, node) {
                    self.feed_at(Input::Disconnect(conn), None, now, work);
                }
            }
            Replay::Inspect(inspect) => inspect(&self.chat),
            Replay::Restart { node, chat } => {
                let Some(replica) = &mut self.replica else {
                    return;
                };
                tracing::warn!(%node, "this node starts over in the cluster: its connections are closed");
                for conn in replica.restart(node) {
                    self.checks.disconnected(conn);
                    work.push(Work::Drop(conn));
                }
                if let Some(chat) = chat {
                    self.chat = *chat;
                }
            }
        }
    }
}

/// A reply the runtime itself makes to one of `conn`'s frames, as the unit of work that answers
/// it.
fn push_reply(work: &mut Vec<Work>, conn: ConnectionId, event: Event, reference: Option<Ref>) {
    work.push(Work::Outputs {
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
    });
}

/// Takes up to `limit` of what a receiver has, or never returns if there is no receiver.
async fn recv_many<T>(
    receiver: Option<&mut mpsc::Receiver<T>>,
    into: &mut Vec<T>,
    limit: usize,
) -> usize {
    match receiver {
        Some(receiver) => receiver.recv_many(into, limit).await,
        None => std::future::pending().await,
    }
}

/// The next value of a receiver, or never if there is no receiver.
async fn recv<T>(receiver: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
