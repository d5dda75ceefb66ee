//! The task that carries out the core's outputs: store first, then deliver.
//!
//! It receives the outputs of batches of inputs from the core task. Whatever has queued up
//! since its last round is one group commit: every [`Record`] in it goes to the store in a single
//! `append`, and only when that returns are the events delivered, so anything a client has seen
//! is durable. Then each event is encoded once per wire format, and the same [`Bytes`] is pushed
//! to every recipient's outbox: the per-recipient work is a hash lookup and a reference-count
//! increment.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use chat_core::{ConnectionId, Event, HistoryRequest, Output, Recipients, Record, SendKind};
use chat_store::Store;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::outbox::{Closing, Outbound, Outbox};
use crate::wire::WireFormat;

/// One piece of work from the core task, in the order the core produced it.
pub(crate) enum Work {
    /// A new connection's outbox, registered before anything is sent to it.
    Register {
        conn: ConnectionId,
        outbox: Outbox,
        format: Arc<dyn WireFormat>,
    },
    /// The outputs of one input.
    Outputs(Vec<Output>),
    /// The connection is gone; forget its outbox.
    Unregister(ConnectionId),
}

struct Recipient {
    outbox: Outbox,
    /// Index into the task's format table.
    format: usize,
}

pub(crate) struct DeliveryTask {
    pub(crate) work: mpsc::Receiver<Vec<Work>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    recipients: HashMap<ConnectionId, Recipient, BuildHasherDefault<IdHasher>>,
    /// The wire formats of the registered connections, compared by identity (the same `Arc`),
    /// each with how many connections use it; a broadcast encodes once per entry. A slot whose
    /// last connection left is free for the next new format.
    formats: Vec<Option<(Arc<dyn WireFormat>, usize)>>,
    /// Numbers each input's outputs, so the outbox can tell one backlog reply from the next.
    reply: u64,
}

impl DeliveryTask {
    pub(crate) fn new(
        work: mpsc::Receiver<Vec<Work>>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        DeliveryTask {
            work,
            store,
            metrics,
            recipients: HashMap::default(),
            formats: Vec::new(),
            reply: 0,
        }
    }

    /// Runs until the core task stops, then flushes the store and closes every connection.
    pub(crate) async fn run(mut self) -> Result<(), chat_store::StoreError> {
        let mut rounds = Vec::new();
        while self.work.recv_many(&mut rounds, 64).await > 0 {
            let mut units: Vec<Work> = rounds.drain(..).flatten().collect();
            let records = take_records(&mut units);
            if !records.is_empty() {
                self.persist(&records).await;
            }
            for unit in units {
                self.apply(unit).await;
            }
        }
        let flushed = self.store.flush().await;
        for recipient in self.recipients.values() {
            recipient.outbox.close(Closing::Shutdown);
        }
        flushed
    }

    async fn persist(&self, records: &[Record]) {
        match self.store.append(records).await {
            Ok(()) => {
                Metrics::add(&self.metrics.store_batches, 1);
                Metrics::add(&self.metrics.store_records, records.len() as u64);
            }
            Err(error) => {
                // Delivering anyway keeps the chat usable; the operator sees the failure here
                // and in the `store_errors` counter.
                Metrics::add(&self.metrics.store_errors, 1);
                tracing::error!(%error, records = records.len(), "the store refused a batch");
            }
        }
    }

    async fn apply(&mut self, unit: Work) {
        match unit {
            Work::Register {
                conn,
                outbox,
                format,
            } => {
                let format = self.format_index(format);
                self.recipients.insert(conn, Recipient { outbox, format });
            }
            Work::Unregister(conn) => {
                if let Some(recipient) = self.recipients.remove(&conn) {
                    self.release_format(recipient.format);
                }
            }
            Work::Outputs(outputs) => {
                self.reply += 1;
                for output in outputs {
                    self.carry_out(output).await;
                }
            }
        }
    }

    async fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send {
                to,
                event,
                reference,
                kind,
            } => self.send(to, &event, reference.as_ref(), kind),
            Output::Broadcast { to, except, event } => self.broadcast(&to, except, &event),
            Output::FetchHistory(request) => self.fetch_history(request).await,
            Output::Close { conn, .. } => {
                if let Some(recipient) = self.recipients.get(&conn) {
                    recipient.outbox.close(Closing::LoginTimeout);
                }
            }
            // Taken out and stored before delivery.
            Output::Persist(_) => {}
        }
    }

    fn send(
        &mut self,
        to: ConnectionId,
        event: &Arc<Event>,
        reference: Option<&chat_core::Ref>,
        kind: SendKind,
    ) {
        let Some(recipient) = self.recipients.get_mut(&to) else {
            return;
        };
        Metrics::add(&self.metrics.encodes, 1);
        let Some(bytes) = format(&self.formats, recipient.format).encode(event, reference, kind)
        else {
            return;
        };
        let backlog = kind.is_backlog().then_some(self.reply);
        let outbound = Outbound {
            bytes,
            event: Some(event.clone()),
        };
        if push(&self.metrics, to, recipient, outbound, backlog) {
            Metrics::add(&self.metrics.frames_out, 1);
        }
    }

    fn broadcast(&mut self, to: &Recipients, except: Option<ConnectionId>, event: &Event) {
        // One encoding per wire format, made when its first recipient needs it.
        let mut encoded: Vec<Option<Option<Bytes>>> = vec![None; self.formats.len()];
        let mut queued = 0;
        for &conn in to.as_slice() {
            if Some(conn) == except {
                continue;
            }
            let Some(recipient) = self.recipients.get_mut(&conn) else {
                continue;
            };
            let slot = &mut encoded[recipient.format];
            let bytes = slot.get_or_insert_with(|| {
                Metrics::add(&self.metrics.encodes, 1);
                format(&self.formats, recipient.format).encode(event, None, SendKind::Push)
            });
            if let Some(bytes) = bytes {
                let outbound = Outbound {
                    bytes: bytes.clone(),
                    event: None,
                };
                queued += u64::from(push(&self.metrics, conn, recipient, outbound, None));
            }
        }
        // One shared-counter update per broadcast, not per recipient.
        Metrics::add(&self.metrics.frames_out, queued);
    }

    async fn fetch_history(&mut self, request: HistoryRequest) {
        let page = self
            .store
            .history(&request.room, request.before, request.limit)
            .await
            .unwrap_or_else(|error| {
                Metrics::add(&self.metrics.store_errors, 1);
                tracing::error!(%error, room = %request.room, "reading a history page failed");
                Vec::new()
            });
        let event = Arc::new(Event::History {
            room: request.room,
            messages: page.into_iter().map(Arc::new).collect(),
        });
        self.send(
            request.conn,
            &event,
            request.reference.as_ref(),
            SendKind::Backlog,
        );
    }

    fn format_index(&mut self, format: Arc<dyn WireFormat>) -> usize {
        let known = self
            .formats
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|(f, _)| Arc::ptr_eq(f, &format)));
        if let Some(i) = known {
            if let Some((_, users)) = &mut self.formats[i] {
                *users += 1;
            }
            return i;
        }
        match self.formats.iter().position(Option::is_none) {
            Some(free) => {
                self.formats[free] = Some((format, 1));
                free
            }
            None => {
                self.formats.push(Some((format, 1)));
                self.formats.len() - 1
            }
        }
    }

    fn release_format(&mut self, index: usize) {
        if let Some(Some((_, users))) = self.formats.get_mut(index) {
            *users -= 1;
            if *users == 0 {
                self.formats[index] = None;
            }
        }
    }
}

/// The format in a slot that a registered connection holds (so it is occupied).
fn format(formats: &[Option<(Arc<dyn WireFormat>, usize)>], index: usize) -> &dyn WireFormat {
    match &formats[index] {
        Some((format, _)) => format.as_ref(),
        None => unreachable!("a registered connection keeps its format's slot occupied"),
    }
}

/// Queues a frame; `true` if it was queued (the caller counts `frames_out`, once per batch).
fn push(
    metrics: &Metrics,
    conn: ConnectionId,
    recipient: &mut Recipient,
    outbound: Outbound,
    backlog: Option<u64>,
) -> bool {
    match recipient.outbox.push(outbound, backlog) {
        Ok(()) => true,
        Err(_) => {
            Metrics::add(&metrics.slow_consumers, 1);
            tracing::info!(%conn, "closing a slow consumer: its outbound queue is full");
            false
        }
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

/// Moves every record out of `units`, in order, leaving the other outputs in place.
fn take_records(units: &mut [Work]) -> Vec<Record> {
    let mut records = Vec::new();
    for unit in units {
        if let Work::Outputs(outputs) = unit {
            outputs.retain_mut(|output| match output {
                Output::Persist(record) => {
                    records.push(record.clone());
                    false
                }
                _ => true,
            });
        }
    }
    records
}
