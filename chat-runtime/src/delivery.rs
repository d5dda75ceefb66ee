//! The task that carries out the core's outputs: store first, then deliver.
//!
//! It receives the outputs of batches of inputs from the core task. Whatever has queued up
//! since its last round is one group commit: every [`Record`] in it goes to the store in a single
//! `append`, and only when that returns are the events delivered, so anything a client has seen
//! is durable. Then each event is encoded once per wire format, and the same bytes are pushed
//! to every recipient's outbox: the per-recipient work is a hash lookup and a reference-count
//! increment. Consecutive broadcasts of one sender to one room go as one push per recipient
//! (`fan_out.rs`). On a current-thread runtime, a broadcast to a connection that waits is
//! queued without waking it, and handed to the sweep to write (`sweep.rs`).
//!
//! **When the store fails**, nothing of what it did not keep is delivered:
//!
//! - every unit of work whose messages were in the failed write is replaced by an
//!   `unavailable` error to its sender, and the core is told to forget those messages
//!   ([`Input::Unstored`](chat_core::Input::Unstored)); until it confirms, the task strips them
//!   from anything the core built before it knew (a `joined` frame's history, a page, a login's
//!   DMs);
//! - a login whose mailbox delivery could not be recorded gets no DMs: they go back to the
//!   mailbox ([`Input::Undelivered`](chat_core::Input::Undelivered)), so a DM is still never
//!   delivered twice;
//! - while the store is down, online DMs are refused too, so that no id from an unrecorded
//!   reservation is ever shown (reservations are stored first once the store is back).
//!
//! The task calls [`Store::recover`] with back-off (50 ms, doubling, at most 5 s), and serves
//! again as soon as the store does.
//!
//! **History pages read from the store** are read by tasks of their own (at most
//! [`PAGE_READS`] at once), so a cold file never holds up a broadcast. While one connection's
//! page is being read, everything else for that connection waits in its own queue here, so
//! each client still sees its room and its answers in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    ChatError, ConnectionId, DirectMessage, Event, HistoryOf, HistoryRequest, MessageId, Output,
    Record, Ref, SendKind,
};
use chat_store::{Store, StoreError};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::core_task::ToCore;
use crate::fan_out::{Frames, Run};
use crate::metrics::Metrics;
use crate::outbox::{Class, Closing, Delivery, Outbound, Outbox, Overflow};
use crate::sweep::Sweep;
use crate::wire::WireFormat;

/// The first pause before the store is asked to recover, doubled after each failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two recovery attempts.
const LAST_RETRY: Duration = Duration::from_secs(5);
/// History pages read from the store at once; more wait for a turn.
pub(crate) const PAGE_READS: usize = 4;

/// Where a connection's events go.
pub(crate) enum Sink {
    /// A transport's connection: bytes in `codec`'s format, the runtime's `format`-th.
    Wire {
        outbox: Outbox<Outbound>,
        format: usize,
        codec: Arc<dyn WireFormat>,
    },
    /// An in-process client: events as values.
    Local(Outbox<Delivery>),
}

impl Sink {
    /// Asks the connection to close.
    fn close(&self, reason: Closing) {
        match self {
            Sink::Wire { outbox, .. } => outbox.close(reason),
            Sink::Local(outbox) => outbox.close(reason),
        }
    }

    /// Counts one of the client's frames as answered.
    fn answered(&self) {
        match self {
            Sink::Wire { outbox, .. } => outbox.answered(),
            Sink::Local(outbox) => outbox.answered(),
        }
    }
}

/// The client frame a unit of work answers.
pub(crate) struct Origin {
    pub(crate) conn: ConnectionId,
    pub(crate) reference: Option<Ref>,
}

/// One piece of work from the core task, in the order the core produced it.
pub(crate) enum Work {
    /// A new connection's sink, registered before anything is sent to it.
    Register { conn: ConnectionId, sink: Sink },
    /// The outputs of one input; `origin` when the input was a client's frame.
    Outputs {
        origin: Option<Origin>,
        outputs: Vec<Output>,
    },
    /// The connection is gone; forget its sink.
    Unregister(ConnectionId),
    /// Close the connection (after what is queued for it, as at shutdown) and forget its sink:
    /// a cluster node that starts over drops its connections, whose clients reconnect.
    Drop(ConnectionId),
    /// The core has forgotten these unstored messages: no later output shows them.
    Forgotten(Vec<MessageId>),
}

/// A reply that waits behind a history page being read for the same connection.
enum Deferred {
    Send {
        event: Arc<Event>,
        reference: Option<Ref>,
        kind: SendKind,
    },
    Fetch(HistoryRequest),
    Answered,
}

struct Recipient {
    sink: Sink,
    /// `Some` while a history page is being read for this connection: what must follow it.
    waiting: Option<VecDeque<Deferred>>,
}

/// A history page read by its own task.
struct PageRead {
    request: HistoryRequest,
    /// The `history` event to send.
    page: Result<Event, StoreError>,
}

/// The store failed; when to try to recover it next.
struct Down {
    retry_at: Instant,
    pause: Duration,
}

pub(crate) struct DeliveryTask {
    work: mpsc::Receiver<Vec<Work>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    to_core: mpsc::Sender<ToCore>,
    recipients: HashMap<ConnectionId, Recipient, BuildHasherDefault<IdHasher>>,
    /// The wire formats in the runtime's table, by index; a broadcast encodes once per entry.
    formats: Vec<Option<Arc<dyn WireFormat>>>,
    pages: mpsc::UnboundedReceiver<PageRead>,
    pages_tx: mpsc::UnboundedSender<PageRead>,
    down: Option<Down>,
    /// Id reservations and account room sets of failed writes, stored first on recovery.
    pending: Vec<Record>,
    /// Messages and DMs the store did not keep and the core has not yet forgotten.
    refused: HashSet<MessageId>,
    /// Turns for history page reads.
    reads: Arc<Semaphore>,
    /// Broadcasts of this round not yet delivered: they go together (`fan_out.rs`).
    run: Option<Run>,
    /// On a current-thread runtime: writes broadcasts to waiting connections (`sweep.rs`).
    sweep: Option<Sweep>,
}

impl DeliveryTask {
    pub(crate) fn new(
        work: mpsc::Receiver<Vec<Work>>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        to_core: mpsc::Sender<ToCore>,
    ) -> Self {
        let (pages_tx, pages) = mpsc::unbounded_channel();
        DeliveryTask {
            work,
            store,
            metrics,
            to_core,
            recipients: HashMap::default(),
            formats: Vec::new(),
            pages,
            pages_tx,
            down: None,
            pending: Vec::new(),
            refused: HashSet::new(),
            reads: Arc::new(Semaphore::new(PAGE_READS)),
            run: None,
            sweep: None,
        }
    }

    /// Hands broadcasts to waiting connections to `sweep` rather than waking their drivers.
    pub(crate) fn sweeping(mut self, sweep: Sweep) -> Self {
        self.sweep = Some(sweep);
        self
    }

    /// Runs until the core task stops, then flushes the store and closes every connection.
    pub(crate) async fn run(mut self) -> Result<(), StoreError> {
        let mut rounds = Vec::new();
        loop {
            let retry_at = self.down.as_ref().map(|down| down.retry_at);
            tokio::select! {
                biased;
                Some(read) = self.pages.recv() => self.page_read(read),
                () = sleep_until(retry_at) => self.recover().await,
                received = self.work.recv_many(&mut rounds, 64) => {
                    if received == 0 {
                        break;
                    }
                    let units: Vec<Work> = rounds.drain(..).flatten().collect();
                    self.round(units).await;
                }
            }
        }
        if self.down.is_some() {
            self.recover().await;
        }
        let flushed = self.store.flush().await;
        for recipient in self.recipients.values() {
            recipient.sink.close(Closing::Shutdown)
        }
        flushed
    }

    /// One group commit: store every record of `units`, then carry them out, refusing what
    /// the store did not keep (see the module docs).
    async fn round(&mut self, mut units: Vec<Work>) {
        let mut records = Vec::new();
        let mut held = vec![Held::default(); units.len()];
        for (unit, held) in units.iter_mut().zip(&mut held) {
            if let Work::Outputs { outputs, .. } = unit {
                let all = std::mem::take(outputs);
                for output in all {
                    match output {
                        Output::Persist(record) => {
                            // A registration the store did not keep is refused like a message;
                            // an account a token login made is only forgotten (the login stands).
                            let registration =
                                matches!(&record, Record::Account(a) if a.hash.is_some());
                            held.messages |= record.message_id().is_some() || registration;
                            held.delivery |= matches!(record, Record::Delivered { .. });
                            records.push(record);
                        }
                        other => outputs.push(other),
                    }
                }
            }
        }
        let stored = records.is_empty() || self.persist(records).await;
        let down = self.down.is_some();
        for (unit, held) in units.into_iter().zip(held) {
            if (!stored && held.messages) || (down && is_online_dm(&unit)) {
                // A registration refused with a mailbox it was handed: the DMs go back.
                let unit = match !stored && held.delivery {
                    true => self.without_queued_dms(unit),
                    false => unit,
                };
                self.refuse(unit);
            } else if !stored && held.delivery {
                let unit = self.without_queued_dms(unit);
                self.apply(unit);
            } else {
                self.apply(unit);
            }
        }
        self.deliver_run();
    }

    /// Stores `records`; `false` if the store did not keep them (the core is told to forget
    /// the messages among them, and recovery begins).
    async fn persist(&mut self, records: Vec<Record>) -> bool {
        if self.down.is_none() {
            match self.store.append(&records).await {
                Ok(()) => {
                    Metrics::add(&self.metrics.store_batches, 1);
                    Metrics::add(&self.metrics.store_records, records.len() as u64);
                    return true;
                }
                Err(error) => {
                    Metrics::add(&self.metrics.store_errors, 1);
                    tracing::error!(
                        %error,
                        records = records.len(),
                        "the store refused a batch; its senders get `unavailable` until it recovers"
                    );
                    self.down = Some(Down {
                        retry_at: Instant::now() + FIRST_RETRY,
                        pause: FIRST_RETRY,
                    });
                }
            }
        }
        let mut forget = Vec::new();
        for record in records {
            match record {
                Record::Message(_) | Record::Queued(_) | Record::Dm(_) | Record::Account(_) => {
                    forget.push(record)
                }
                Record::IdsReserved { .. } => self.pending.push(record),
                // An account's whole room set: stored once the store recovers. Only its latest
                // set matters, so an older pending one of the same account is dropped.
                Record::Rooms { ref owner, .. } => {
                    self.pending.retain(
                        |pending| !matches!(pending, Record::Rooms { owner: o, .. } if o == owner),
                    );
                    self.pending.push(record);
                }
                // Its DMs go back to the mailbox (`without_queued_dms`): nothing to record.
                Record::Delivered { .. } => {}
            }
        }
        if !forget.is_empty() {
            self.refused
                .extend(forget.iter().filter_map(Record::message_id));
            self.tell_core(ToCore::Unstored(forget));
        }
        false
    }

    /// Sends the core news from the store without ever waiting on it (the core may be waiting
    /// on this task).
    fn tell_core(&self, message: ToCore) {
        if let Err(mpsc::error::TrySendError::Full(message)) = self.to_core.try_send(message) {
            let to_core = self.to_core.clone();
            tokio::spawn(async move { to_core.send(message).await });
        }
    }

    /// A login's unit without the queued DMs whose delivery the store did not record; the core
    /// puts them back in their mailboxes.
    fn without_queued_dms(&self, unit: Work) -> Work {
        let Work::Outputs { origin, outputs } = unit else {
            return unit;
        };
        let mut undelivered: Vec<Arc<DirectMessage>> = Vec::new();
        let outputs = outputs
            .into_iter()
            .filter(|output| match output {
                Output::Send {
                    event,
                    kind: SendKind::Backlog,
                    ..
                } => match &**event {
                    Event::Dm { message, .. } => {
                        undelivered.push(message.clone());
                        false
                    }
                    _ => true,
                },
                _ => true,
            })
            .collect();
        if !undelivered.is_empty() {
            self.tell_core(ToCore::Undelivered(undelivered));
        }
        Work::Outputs { origin, outputs }
    }

    /// Asks the store to recover and stores the pending state records; on failure, waits
    /// longer before the next try.
    async fn recover(&mut self) {
        let recovered = match self.store.recover().await {
            Ok(()) if self.pending.is_empty() => Ok(()),
            Ok(()) => self.store.append(&self.pending).await,
            Err(error) => Err(error),
        };
        match recovered {
            Ok(()) => {
                self.pending.clear();
                self.down = None;
                tracing::info!("the store recovered; messages are accepted again");
            }
            Err(error) => {
                let pause = self
                    .down
                    .as_ref()
                    .map_or(FIRST_RETRY, |down| (down.pause * 2).min(LAST_RETRY));
                tracing::warn!(%error, retry_in = ?pause, "the store has not recovered yet");
                self.down = Some(Down {
                    retry_at: Instant::now() + pause,
                    pause,
                });
            }
        }
    }

    /// A unit whose messages were not stored: its sender gets `unavailable`, nobody gets the
    /// rest.
    fn refuse(&mut self, unit: Work) {
        if let Work::Outputs {
            origin: Some(origin),
            ..
        } = unit
        {
            let event = Arc::new(Event::error(&ChatError::Unavailable));
            self.send(origin.conn, event, origin.reference, SendKind::Reply);
            self.answered(origin.conn);
        }
    }

    fn apply(&mut self, unit: Work) {
        if !matches!(unit, Work::Outputs { .. }) {
            self.deliver_run();
        }
        match unit {
            Work::Register { conn, sink } => {
                if let Sink::Wire { format, codec, .. } = &sink {
                    if self.formats.len() <= *format {
                        self.formats.resize(*format + 1, None);
                    }
                    self.formats[*format].get_or_insert_with(|| codec.clone());
                }
                let recipient = Recipient {
                    sink,
                    waiting: None,
                };
                self.recipients.insert(conn, recipient);
            }
            Work::Unregister(conn) => {
                self.recipients.remove(&conn);
            }
            Work::Drop(conn) => {
                if let Some(recipient) = self.recipients.remove(&conn) {
                    recipient.sink.close(Closing::Shutdown);
                }
            }
            Work::Forgotten(ids) => {
                for id in ids {
                    self.refused.remove(&id);
                }
            }
            Work::Outputs { origin, outputs } => {
                for output in outputs {
                    self.carry_out(output);
                }
                if let Some(origin) = origin {
                    self.answered(origin.conn);
                }
            }
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send {
                to,
                event,
                reference,
                kind,
            } => self.send(to, event, reference, kind),
            Output::Broadcast { to, except, event } => match &mut self.run {
                Some(run) if run.continued_by(&to, except) => run.push(event),
                _ => {
                    self.deliver_run();
                    self.run = Some(Run::new(to, except, event));
                }
            },
            Output::FetchHistory(request) => self.fetch(request),
            Output::Close { conn, .. } => {
                self.deliver_run_unless_for(conn);
                if let Some(recipient) = self.recipients.get(&conn) {
                    recipient.sink.close(Closing::LoginTimeout)
                }
            }
            // Taken out and stored before delivery.
            Output::Persist(_) => {}
            // The core task hands these to the authenticator; they never reach this task.
            Output::Authenticate { .. } | Output::HashPassword { .. } => {}
        }
    }

    /// Counts one of `conn`'s frames as answered, after whatever waits for a page.
    fn answered(&mut self, conn: ConnectionId) {
        self.deliver_run_unless_for(conn);
        let Some(recipient) = self.recipients.get_mut(&conn) else {
            return;
        };
        match &mut recipient.waiting {
            Some(waiting) => waiting.push_back(Deferred::Answered),
            None => recipient.sink.answered(),
        }
    }

    fn send(
        &mut self,
        to: ConnectionId,
        event: Arc<Event>,
        reference: Option<Ref>,
        kind: SendKind,
    ) {
        self.deliver_run_unless_for(to);
        let event = match without_refused(&self.refused, event) {
            Some(event) => event,
            None => return,
        };
        let Some(recipient) = self.recipients.get_mut(&to) else {
            return;
        };
        if let Some(waiting) = &mut recipient.waiting {
            waiting.push_back(Deferred::Send {
                event,
                reference,
                kind,
            });
            return;
        }
        deliver(
            &self.metrics,
            &self.formats,
            to,
            recipient,
            event,
            reference,
            kind,
        );
    }

    /// Delivers the pending run, unless it passes `conn` (skips it): what is for `conn` alone
    /// may then go first, as `conn` sees nothing of the run.
    fn deliver_run_unless_for(&mut self, conn: ConnectionId) {
        if !self.run.as_ref().is_some_and(|run| run.passes(conn)) {
            self.deliver_run();
        }
    }

    /// Delivers the pending run of broadcasts, if there is one: each wire format's frames are
    /// made when the first recipient that speaks it needs them, and pushed to every recipient.
    fn deliver_run(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        let mut encoded: Vec<Option<Frames>> = vec![None; self.formats.len()];
        let mut queued = 0;
        // The outboxes whose waiting drivers were not woken: the sweep writes to them.
        let mut idle = Vec::new();
        for &conn in run.to.as_slice() {
            if Some(conn) == run.except {
                continue;
            }
            let Some(recipient) = self.recipients.get_mut(&conn) else {
                continue;
            };
            if let Some(waiting) = &mut recipient.waiting {
                // Behind a page being read for it: in its turn, like everything for it.
                waiting.extend(run.events.iter().map(|event| Deferred::Send {
                    event: event.clone(),
                    reference: None,
                    kind: SendKind::Push,
                }));
                continue;
            }
            match &recipient.sink {
                Sink::Wire { outbox, format, .. } => {
                    let frames = encoded[*format].get_or_insert_with(|| {
                        Metrics::add(&self.metrics.encodes, run.events.len() as u64);
                        run.encode(codec(&self.formats, *format))
                    });
                    let pushed = frames.pushes.iter().try_for_each(|bytes| {
                        let outbound = Outbound {
                            bytes: bytes.clone(),
                            event: None,
                        };
                        if self.sweep.is_none() {
                            return outbox.push(outbound, Class::Push);
                        }
                        if outbox.push_for_sweep(outbound)? {
                            idle.push(outbox.clone());
                        }
                        Ok(())
                    });
                    if counted(&self.metrics, conn, pushed) {
                        queued += frames.frames;
                    }
                }
                Sink::Local(outbox) => {
                    let pushed = run.events.iter().try_for_each(|event| {
                        let delivery = Delivery {
                            event: event.clone(),
                            reference: None,
                            kind: SendKind::Push,
                        };
                        outbox.push(delivery, Class::Push)
                    });
                    if counted(&self.metrics, conn, pushed) {
                        queued += run.events.len() as u64;
                    }
                }
            }
        }
        // One shared-counter update per run, not per recipient.
        Metrics::add(&self.metrics.frames_out, queued);
        if let Some(sweep) = &self.sweep
            && !idle.is_empty()
        {
            sweep.hand_over(idle);
        }
    }

    /// Reads a history page from the store in a task of its own; the connection's later
    /// replies wait for it.
    fn fetch(&mut self, request: HistoryRequest) {
        self.deliver_run_unless_for(request.conn);
        let Some(recipient) = self.recipients.get_mut(&request.conn) else {
            return;
        };
        if let Some(waiting) = &mut recipient.waiting {
            waiting.push_back(Deferred::Fetch(request));
            return;
        }
        recipient.waiting = Some(VecDeque::new());
        self.fetch_now(request);
    }

    /// A page came back: send it (or `unavailable`), then what waited behind it, up to the
    /// next page to read.
    fn page_read(&mut self, read: PageRead) {
        let PageRead { request, page } = read;
        let conn = request.conn;
        let event = match page {
            Ok(page) => page,
            Err(error) => {
                Metrics::add(&self.metrics.store_errors, 1);
                tracing::error!(%error, of = ?request.of, "reading a history page failed");
                Event::error(&ChatError::Unavailable)
            }
        };
        let Some(recipient) = self.recipients.get_mut(&conn) else {
            return;
        };
        let mut waiting = recipient.waiting.take().unwrap_or_default();
        deliver(
            &self.metrics,
            &self.formats,
            conn,
            recipient,
            Arc::new(event),
            request.reference,
            SendKind::Backlog,
        );
        while let Some(next) = waiting.pop_front() {
            match next {
                Deferred::Send {
                    event,
                    reference,
                    kind,
                } => deliver(
                    &self.metrics,
                    &self.formats,
                    conn,
                    recipient,
                    event,
                    reference,
                    kind,
                ),
                Deferred::Answered => recipient.sink.answered(),
                Deferred::Fetch(request) => {
                    // The rest waits for this page in turn.
                    self.recipients
                        .get_mut(&conn)
                        .expect("the recipient was found above and nothing removed it")
                        .waiting = Some(waiting);
                    self.fetch_now(request);
                    return;
                }
            }
        }
    }

    /// Starts reading a page for a connection already marked as waiting.
    fn fetch_now(&mut self, request: HistoryRequest) {
        let store = self.store.clone();
        let pages = self.pages_tx.clone();
        let reads = self.reads.clone();
        tokio::spawn(async move {
            // The semaphore is never closed, so a turn always comes.
            let _turn = reads.acquire_owned().await;
            let (before, limit) = (request.before, request.limit);
            let page = match &request.of {
                HistoryOf::Room(room) => {
                    store
                        .history(room, before, limit)
                        .await
                        .map(|page| Event::History {
                            room: room.clone(),
                            messages: page.into_iter().map(Arc::new).collect(),
                        })
                }
                HistoryOf::Dms { user, with } => store
                    .dm_history(user, &with.key(), before, limit)
                    .await
                    .map(|page| Event::DmHistory {
                        with: with.clone(),
                        messages: page.into_iter().map(Arc::new).collect(),
                    }),
            };
            let _ = pages.send(PageRead { request, page });
        });
    }
}

/// What a unit of work held among its records.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    /// A room message or a queued DM.
    messages: bool,
    /// The record of a login's mailbox delivery.
    delivery: bool,
}

/// Whether `unit` is a DM to someone online (the sender's copy is its echo).
fn is_online_dm(unit: &Work) -> bool {
    let Work::Outputs { outputs, .. } = unit else {
        return false;
    };
    outputs.iter().any(|output| {
        matches!(output, Output::Send { event, kind: SendKind::Echo, .. }
            if matches!(&**event, Event::Dm { queued: false, .. }))
    })
}

/// `event` without the messages the store refused (`None`: nothing of it is left to send).
fn without_refused(refused: &HashSet<MessageId>, event: Arc<Event>) -> Option<Arc<Event>> {
    if refused.is_empty() {
        return Some(event);
    }
    /// The messages whose id (`id_of`) was not refused.
    fn kept<M>(
        refused: &HashSet<MessageId>,
        messages: &[Arc<M>],
        id_of: impl Fn(&M) -> MessageId,
    ) -> Vec<Arc<M>> {
        messages
            .iter()
            .filter(|m| !refused.contains(&id_of(m)))
            .cloned()
            .collect()
    }
    match &*event {
        Event::Joined {
            room,
            members,
            member_count,
            history,
            complete,
        } if history.iter().any(|m| refused.contains(&m.id)) => Some(Arc::new(Event::Joined {
            room: room.clone(),
            members: members.clone(),
            member_count: *member_count,
            history: kept(refused, history, |m| m.id),
            complete: *complete,
        })),
        Event::DmHistory { with, messages } if messages.iter().any(|m| refused.contains(&m.id)) => {
            Some(Arc::new(Event::DmHistory {
                with: with.clone(),
                messages: kept(refused, messages, |m| m.id),
            }))
        }
        Event::History { room, messages } if messages.iter().any(|m| refused.contains(&m.id)) => {
            Some(Arc::new(Event::History {
                room: room.clone(),
                messages: kept(refused, messages, |m| m.id),
            }))
        }
        Event::Dm { message, .. } if refused.contains(&message.id) => None,
        _ => Some(event),
    }
}

/// Renders and queues one event for one connection.
fn deliver(
    metrics: &Metrics,
    formats: &[Option<Arc<dyn WireFormat>>],
    to: ConnectionId,
    recipient: &Recipient,
    event: Arc<Event>,
    reference: Option<Ref>,
    kind: SendKind,
) {
    let class = Class::of(kind);
    let pushed = match &recipient.sink {
        Sink::Wire { outbox, format, .. } => {
            Metrics::add(&metrics.encodes, 1);
            let Some(bytes) = codec(formats, *format).encode(&event, reference.as_ref(), kind)
            else {
                return;
            };
            let outbound = Outbound {
                bytes,
                event: Some(event),
            };
            outbox.push(outbound, class)
        }
        Sink::Local(outbox) => outbox.push(
            Delivery {
                event,
                reference,
                kind,
            },
            class,
        ),
    };
    if counted(metrics, to, pushed) {
        Metrics::add(&metrics.frames_out, 1);
    }
}

/// The format a registered connection uses (registered with it, so present).
fn codec(formats: &[Option<Arc<dyn WireFormat>>], index: usize) -> &dyn WireFormat {
    match formats.get(index) {
        Some(Some(format)) => format.as_ref(),
        _ => unreachable!("a connection's format is entered in the table when it registers"),
    }
}

/// Counts a push's outcome; `true` if it was queued.
fn counted(metrics: &Metrics, conn: ConnectionId, pushed: Result<(), Overflow>) -> bool {
    match pushed {
        Ok(()) => true,
        Err(Overflow) => {
            Metrics::add(&metrics.slow_consumers, 1);
            tracing::info!(%conn, "closing a slow consumer: its outbound queue is full");
            false
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hashes connection ids (runtime-assigned, sequential, never chosen by a client) with one
/// multiplication: the recipient lookup is the per-delivery hot path, and SipHash's resistance to
/// chosen keys buys nothing here.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
