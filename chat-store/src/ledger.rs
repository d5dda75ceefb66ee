//! The bookkeeping every backend shares: each room's and each conversation's last id, the
//! mailboxes, the accounts, the id floor, and the validation of a call's records against them.
//!
//! Both backends run every `append` through one [`Ledger`], so they accept and reject exactly the
//! same calls and compute the same [`Snapshot::next_id`](chat_core::Snapshot::next_id). Mailboxes
//! live here in full: they are bounded by the core's mailbox limit and the core keeps all of them
//! in memory anyway. Accounts live here in full too, as the index [`Store::account`] reads (a
//! name and a hash each; the core keeps every account's name in memory as well). Room and DM
//! history do not: only each room's and each conversation's last id is kept. Each account's
//! latest room set is kept in full.
//!
//! [`Store::account`]: crate::Store::account

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use chat_core::{Account, DirectMessage, MessageId, Record, RoomName, UserKey, UserName};

use crate::conversations::{self, Conversation};
use crate::store::StoreError;

/// Last ids, mailboxes, accounts and the id floor, as of the records applied so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger {
    /// The last stored id of every room with history.
    pub(crate) room_last: HashMap<RoomName, MessageId>,
    /// The last stored id of every conversation with DM history.
    pub(crate) conversation_last: HashMap<Conversation, MessageId>,
    /// The undelivered DMs of every non-empty mailbox, oldest first.
    pub(crate) mailboxes: BTreeMap<UserKey, Vec<DirectMessage>>,
    /// Every account, by the key of its name; the last record for a key wins.
    pub(crate) accounts: BTreeMap<UserKey, Account>,
    /// The latest room set of every account that stored one; the last record for a key wins.
    pub(crate) account_rooms: BTreeMap<UserKey, Vec<RoomName>>,
    /// The least id the core may hand out, or `None` if no id was ever stored.
    pub(crate) floor: Option<MessageId>,
}

impl Ledger {
    /// Raises the floor to at least `id`.
    pub(crate) fn raise_floor(&mut self, id: MessageId) {
        self.floor = Some(self.floor.map_or(id, |f| f.max(id)));
    }

    /// Every account's name as stored, for [`Snapshot::accounts`](chat_core::Snapshot::accounts).
    pub(crate) fn account_names(&self) -> BTreeMap<UserKey, UserName> {
        self.accounts
            .iter()
            .map(|(key, account)| (key.clone(), account.name.clone()))
            .collect()
    }

    /// Checks that applying `records` in order keeps every room, conversation and mailbox in
    /// strictly increasing id order, without changing anything. (Account and room-set records
    /// are always valid: a later one for a stored name replaces it.)
    pub(crate) fn check(&self, records: &[Record]) -> Result<(), StoreError> {
        // The last id of each room, conversation and mailbox touched so far by `records`.
        let mut room_last: HashMap<RoomName, MessageId> = HashMap::new();
        let mut conversation_last: HashMap<Conversation, MessageId> = HashMap::new();
        let mut mailboxes: HashMap<UserKey, Option<MessageId>> = HashMap::new();
        let mailbox_last =
            |mailboxes: &HashMap<UserKey, Option<MessageId>>, owner: &UserKey| match mailboxes
                .get(owner)
            {
                Some(last) => *last,
                None => self
                    .mailboxes
                    .get(owner)
                    .and_then(|dms| dms.last())
                    .map(|dm| dm.id),
            };
        for record in records {
            match record {
                Record::Message(message) => follow(
                    &mut room_last,
                    &self.room_last,
                    message.room.clone(),
                    message.id,
                    |room| format!("#{room}"),
                )?,
                Record::Dm(dm) => follow(
                    &mut conversation_last,
                    &self.conversation_last,
                    dm.parties(),
                    dm.id,
                    conversations::place,
                )?,
                Record::Queued(dm) => {
                    let owner = dm.owner();
                    if let Some(last) = mailbox_last(&mailboxes, &owner).filter(|&l| l >= dm.id) {
                        return Err(StoreError::OutOfOrder {
                            place: format!("the mailbox of {owner}"),
                            id: dm.id,
                            last,
                        });
                    }
                    mailboxes.insert(owner, Some(dm.id));
                }
                Record::Delivered { owner, through } => {
                    // Everything up to `through` is gone; what is left keeps its last id.
                    let left = mailbox_last(&mailboxes, owner).filter(|&last| last > *through);
                    mailboxes.insert(owner.clone(), left);
                }
                Record::IdsReserved { .. } | Record::Account(_) | Record::Rooms { .. } => {}
            }
        }
        Ok(())
    }

    /// Applies one record (already [checked](Ledger::check)).
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Message(message) => {
                self.room_last.insert(message.room.clone(), message.id);
                self.raise_floor(message.id.next());
            }
            Record::Dm(dm) => {
                self.conversation_last.insert(dm.parties(), dm.id);
                self.raise_floor(dm.id.next());
            }
            Record::Queued(dm) => {
                self.raise_floor(dm.id.next());
                self.mailboxes
                    .entry(dm.owner())
                    .or_default()
                    .push(DirectMessage::clone(dm));
            }
            Record::Delivered { owner, through } => {
                self.raise_floor(through.next());
                if let Some(dms) = self.mailboxes.get_mut(owner) {
                    dms.retain(|dm| dm.id > *through);
                    if dms.is_empty() {
                        self.mailboxes.remove(owner);
                    }
                }
            }
            Record::IdsReserved { until } => self.raise_floor(*until),
            Record::Account(account) => {
                self.accounts.insert(account.name.key(), account.clone());
            }
            Record::Rooms { owner, rooms } => {
                self.account_rooms.insert(owner.clone(), rooms.clone());
            }
        }
    }
}

/// Checks that a message with `id` may follow in the history `log` (a room, a conversation),
/// whose last id is the last one this call put there (in `touched`) or else the stored one, and
/// notes it as that history's last id in `touched`. `place` names the history for the error.
fn follow<K: Hash + Eq>(
    touched: &mut HashMap<K, MessageId>,
    stored: &HashMap<K, MessageId>,
    log: K,
    id: MessageId,
    place: impl FnOnce(&K) -> String,
) -> Result<(), StoreError> {
    let last = touched.get(&log).or_else(|| stored.get(&log)).copied();
    if let Some(last) = last.filter(|&last| last >= id) {
        return Err(StoreError::OutOfOrder {
            place: place(&log),
            id,
            last,
        });
    }
    touched.insert(log, id);
    Ok(())
}
