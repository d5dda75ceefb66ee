//! The store a node's runtime writes through: the Redis store in shared mode, retried until
//! Redis takes the records.
//!
//! In a cluster every node stores the records its replica produces, the same records in the
//! same order; the shared [`RedisStore`] keeps each once. A record is already safe in the log
//! when a replica produces it, so a node never gives one up (as a single server does when its
//! disk fails, telling its senders `unavailable`): it retries while Redis is away, and
//! delivers what follows once the record is stored. Reads (history pages, accounts) are not
//! retried: a page that cannot be read is answered `unavailable`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, Snapshot, UserKey,
};
use chat_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::store::RedisStore;

/// The longest pause between two tries of one append.
const LAST_RETRY: Duration = Duration::from_secs(2);

/// [`RedisStore`] in shared mode, with appends retried until they land.
pub(crate) struct NodeStore {
    inner: RedisStore,
    closed: AtomicBool,
    /// Cancelled when the node stops: an append that is still retrying gives up, so that a node
    /// can shut down while Redis is away.
    stopping: CancellationToken,
}

impl NodeStore {
    pub(crate) fn new(inner: RedisStore, stopping: CancellationToken) -> NodeStore {
        NodeStore {
            inner,
            closed: AtomicBool::new(false),
            stopping,
        }
    }
}

#[async_trait::async_trait]
impl Store for NodeStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut pause = Duration::from_millis(50);
        let mut warned = false;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            match self.inner.append(records).await {
                Ok(()) => {
                    if warned {
                        tracing::info!("redis takes records again");
                    }
                    return Ok(());
                }
                Err(StoreError::Closed) => return Err(StoreError::Closed),
                Err(error) if self.stopping.is_cancelled() => return Err(error),
                Err(error) => {
                    if !warned {
                        tracing::warn!(%error, "cannot store records in redis; retrying until it is back");
                        warned = true;
                    }
                    tokio::select! {
                        () = self.stopping.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(LAST_RETRY);
                    let _ = self.inner.recover().await;
                }
            }
        }
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        self.inner.load(history).await
    }

    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        self.inner.account(name).await
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        self.inner.history(room, before, limit).await
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        self.inner.dm_history(a, b, before, limit).await
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        self.inner.rooms().await
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        self.inner.mailbox(owner).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.inner.close().await
    }
}
