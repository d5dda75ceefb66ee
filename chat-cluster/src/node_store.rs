//! The store a node's runtime writes through: the Redis store in shared mode, written behind
//! the node's back, in order, and retried until Redis takes it.
//!
//! In a cluster every node stores the records its replica produces, the same records in the
//! same order; the shared [`RedisStore`] keeps each once. A record is already safe in the log
//! when a replica produces it (the log is what acknowledges a message), so a node does not make
//! its clients wait for the store: `append` hands the records to a writer task and returns, and
//! the writer stores them in order, retrying while Redis is away. Nothing is given up (as a
//! single server does when its disk fails, telling its senders `unavailable`) unless the node
//! stops.
//!
//! Reads wait for the writer first: a history page, or the account a login is checked against,
//! sees every record appended before the read (an account registered a moment ago on another
//! node is found, since this node appended its record when it replayed the registration).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, Snapshot, UserKey,
};
use chat_store::{Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::store::RedisStore;

/// The longest pause between two tries of one write.
const LAST_RETRY: Duration = Duration::from_secs(2);
/// The most records the writer stores in one call.
const WRITE_AT_MOST: usize = 4096;

/// One append for the writer: its number, and its records.
type Write = (u64, Vec<Record>);

/// [`RedisStore`] in shared mode, written in order by a task of its own.
pub(crate) struct NodeStore {
    inner: Arc<RedisStore>,
    /// The writer's queue, and how many appends were handed to it (numbered under the lock, so
    /// that the writer gets them in their numbers' order).
    writes: Mutex<(u64, mpsc::UnboundedSender<Write>)>,
    /// How many of them are stored.
    stored: watch::Receiver<u64>,
    closed: AtomicBool,
}

impl NodeStore {
    /// The store, and its writer; once `stopping` is cancelled the writer gives up what Redis
    /// does not take, so that a node can shut down while Redis is away.
    pub(crate) fn new(inner: RedisStore, stopping: CancellationToken) -> NodeStore {
        let inner = Arc::new(inner);
        let (writes, queue) = mpsc::unbounded_channel();
        let (done, stored) = watch::channel(0);
        tokio::spawn(writer(inner.clone(), queue, done, stopping));
        NodeStore {
            inner,
            writes: Mutex::new((0, writes)),
            stored,
            closed: AtomicBool::new(false),
        }
    }

    /// Waits until every append made before the call is stored; `Closed` if the writer gave
    /// up first (the node stopped while Redis was away).
    async fn written(&self) -> Result<(), StoreError> {
        let target = self.writes.lock().unwrap_or_else(|p| p.into_inner()).0;
        let mut stored = self.stored.clone();
        match stored.wait_for(|n| *n >= target).await {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// Stores the appends in order, each retried until Redis takes it; several waiting appends go
/// in one call.
async fn writer(
    store: Arc<RedisStore>,
    mut queue: mpsc::UnboundedReceiver<Write>,
    done: watch::Sender<u64>,
    stopping: CancellationToken,
) {
    let mut batch: Vec<Record> = Vec::new();
    while let Some((mut last, records)) = queue.recv().await {
        batch.extend(records);
        while batch.len() < WRITE_AT_MOST {
            match queue.try_recv() {
                Ok((number, records)) => {
                    last = number;
                    batch.extend(records);
                }
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(50);
        let mut warned = false;
        loop {
            match store.append(&batch).await {
                Ok(()) => {
                    if warned {
                        tracing::info!("redis takes records again");
                    }
                    break;
                }
                Err(error)
                    if !matches!(error, StoreError::Io { .. } | StoreError::Halted { .. }) =>
                {
                    // Not Redis being away (a corrupt key, a closed store): retrying cannot help,
                    // and reads must not wait for it.
                    tracing::error!(%error, records = batch.len(), "redis refused records for good; history pages past memory will miss them (they are in the cluster's log)");
                    break;
                }
                Err(error) => {
                    if stopping.is_cancelled() {
                        tracing::warn!(%error, records = batch.len(), "the node stops with records redis did not take (they are in the cluster's log)");
                        return;
                    }
                    if !warned {
                        tracing::warn!(%error, "cannot store records in redis; retrying until it is back");
                        warned = true;
                    }
                    tokio::select! {
                        () = stopping.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(LAST_RETRY);
                    let _ = store.recover().await;
                }
            }
        }
        batch.clear();
        done.send_replace(last);
    }
}

#[async_trait::async_trait]
impl Store for NodeStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.0 += 1;
        let number = writes.0;
        writes
            .1
            .send((number, records.to_vec()))
            .map_err(|_| StoreError::Closed)
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        self.written().await?;
        self.inner.load(history).await
    }

    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        self.written().await?;
        self.inner.account(name).await
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        self.written().await?;
        self.inner.history(room, before, limit).await
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        self.written().await?;
        self.inner.dm_history(a, b, before, limit).await
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        self.written().await?;
        self.inner.rooms().await
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        self.written().await?;
        self.inner.mailbox(owner).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.written().await?;
        self.inner.flush().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        // What was appended is stored first, unless the node stops without Redis.
        let _ = self.written().await;
        self.inner.close().await
    }
}
