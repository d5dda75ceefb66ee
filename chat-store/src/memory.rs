//! [`MemoryStore`]: the reference behaviour of a [`Store`], kept in memory.
//!
//! It is what every other backend is compared with (the conformance suite and the property tests
//! run both), and what the server uses with `--memory`. Nothing survives the process, and room
//! and DM history are kept in full, so its memory grows with the history: use it for tests,
//! demos and short-lived servers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, RoomTail, Snapshot, UserKey,
    conversation,
};

use crate::conversations::{self, Conversation};
use crate::ledger::Ledger;
use crate::store::{Store, StoreError};

/// A [`Store`] in memory: fast, complete, and gone with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ledger: Ledger,
    /// Every room's full history, oldest first.
    rooms: BTreeMap<RoomName, Vec<Arc<RoomMessage>>>,
    /// Every conversation's full DM history, oldest first.
    conversations: BTreeMap<Conversation, Vec<Arc<DirectMessage>>>,
    closed: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn open(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A panic while holding the lock cannot leave `Inner` half-updated: `append` validates
        // before it changes anything, and the updates themselves do not panic.
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.closed {
            return Err(StoreError::Closed);
        }
        Ok(inner)
    }
}

/// The messages of `history` (oldest first, `id` giving each one's id) with an id below
/// `before`: the last `limit` of them.
fn page<M: Clone>(
    history: &[Arc<M>],
    id: impl Fn(&M) -> MessageId,
    before: Option<MessageId>,
    limit: usize,
) -> Vec<M> {
    let end = match before {
        Some(before) => history.partition_point(|m| id(m) < before),
        None => history.len(),
    };
    let start = end.saturating_sub(limit);
    history[start..end].iter().map(|m| M::clone(m)).collect()
}

#[async_trait]
impl Store for MemoryStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut inner = self.open()?;
        inner.ledger.check(records)?;
        for record in records {
            inner.ledger.apply(record);
            match record {
                Record::Message(message) => inner
                    .rooms
                    .entry(message.room.clone())
                    .or_default()
                    .push(message.clone()),
                Record::Dm(dm) => inner
                    .conversations
                    .entry(dm.parties())
                    .or_default()
                    .push(dm.clone()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        let inner = self.open()?;
        let rooms = inner
            .rooms
            .iter()
            .map(|(room, messages)| {
                let messages = page(messages, |m| m.id, None, history);
                let has_older = messages.len() < inner.rooms[room].len();
                (
                    room.clone(),
                    RoomTail {
                        messages,
                        has_older,
                    },
                )
            })
            .collect();
        let dms = conversations::tails(inner.conversations.keys(), history, |conversation| {
            let dms = inner
                .conversations
                .get(conversation)
                .map_or(&[][..], Vec::as_slice);
            dms.iter().rev().map(|dm| Ok(DirectMessage::clone(dm)))
        })?;
        Ok(Snapshot {
            next_id: inner.ledger.floor,
            rooms,
            mailboxes: inner.ledger.mailboxes.clone(),
            accounts: inner.ledger.account_names(),
            account_rooms: inner.ledger.account_rooms.clone(),
            dms,
        })
    }

    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        Ok(self.open()?.ledger.accounts.get(name).cloned())
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        let inner = self.open()?;
        Ok(inner
            .rooms
            .get(room)
            .map(|messages| page(messages, |m| m.id, before, limit))
            .unwrap_or_default())
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        let inner = self.open()?;
        Ok(inner
            .conversations
            .get(&conversation(a.clone(), b.clone()))
            .map(|dms| page(dms, |dm| dm.id, before, limit))
            .unwrap_or_default())
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        Ok(self.open()?.rooms.keys().cloned().collect())
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        Ok(self
            .open()?
            .ledger
            .mailboxes
            .get(owner)
            .cloned()
            .unwrap_or_default())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.open().map(drop)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.closed = true;
        Ok(())
    }
}
