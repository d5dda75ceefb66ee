//! The core's half of the store contract: [`Record`]s out, a [`Snapshot`] in.
//!
//! The core keeps what it needs in memory (history tails, offline mailboxes, the id counter) and
//! asks the runtime to make every change durable with [`Output::Persist`](crate::Output::Persist).
//! At start the runtime reads a [`Snapshot`] back from the store and hands it to
//! [`Chat::restore`](crate::Chat::restore). A store needs to understand nothing but these types.
//!
//! Ids are never reused after a restart, DMs delivered online included: the core reserves ids in
//! blocks ([`Record::IdsReserved`]) before it hands them out, and a restored counter starts at or
//! above every reservation, so a crash at worst skips the unused rest of a block.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::identity::Account;
use crate::ids::MessageId;
use crate::message::{DirectMessage, RoomMessage};
use crate::room_name::RoomName;
use crate::user_name::{UserKey, UserName};

/// A change the store must make durable. Records come out in the order they happened; a store
/// applies them in that order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// Append a message to its room's history.
    Message(Arc<RoomMessage>),
    /// Append a DM to the offline mailbox of [`DirectMessage::owner`].
    Queued(Arc<DirectMessage>),
    /// Append a DM to the history of the conversation between its sender and its recipient
    /// (the same two users in either direction, case-insensitively: see
    /// [`DirectMessage::parties`]). Emitted for every DM between two accounts, online or queued
    /// (a queued one is also a [`Record::Queued`]), so an account can page and resume its DMs.
    Dm(Arc<DirectMessage>),
    /// The owner's mailbox was delivered at login: drop every DM in it with an id up to and
    /// including `through`.
    Delivered {
        /// Whose mailbox.
        owner: UserKey,
        /// The last id delivered.
        through: MessageId,
    },
    /// A name became an account (registered with a password, or first logged in with a token):
    /// from now on only its owner may use it. Stored once per account.
    Account(Account),
    /// An account's rooms changed (a join or leave in any of its sessions, or a guest that
    /// registered with rooms): `rooms` is the whole new set, sorted. A store keeps the latest set
    /// per account; the core rejoins it at the account's next first session. Not emitted when
    /// the last session ends (the rooms stay the account's), nor for guests.
    Rooms {
        /// Whose rooms (an account's).
        owner: UserKey,
        /// Every room the account is in now, sorted.
        rooms: Vec<RoomName>,
    },
    /// The core may hand out ids below `until`; a restored counter must start at `until` or
    /// above it.
    IdsReserved {
        /// The first id not yet reserved.
        until: MessageId,
    },
}

impl Record {
    /// The id of the message or DM this record stores, if it stores one.
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Record::Message(message) => Some(message.id),
            Record::Queued(dm) | Record::Dm(dm) => Some(dm.id),
            Record::Delivered { .. }
            | Record::IdsReserved { .. }
            | Record::Account(_)
            | Record::Rooms { .. } => None,
        }
    }
}

/// What a store hands back at start: enough to continue as if the server had never stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The lowest id the core may hand out: above every stored message and every reservation.
    /// The core also raises it above any id in `rooms` and `mailboxes`.
    pub next_id: Option<MessageId>,
    /// The newest stored messages of each room that has history.
    pub rooms: BTreeMap<RoomName, RoomTail>,
    /// Undelivered DMs by recipient, oldest first.
    pub mailboxes: BTreeMap<UserKey, Vec<DirectMessage>>,
    /// Every account's name, as it was registered (the core needs no password hash).
    pub accounts: BTreeMap<UserKey, UserName>,
    /// The latest stored room set of each account that has one (from [`Record::Rooms`]). An
    /// account without an entry has never logged in: its first login joins the default room.
    /// Entries for names that are not in `accounts` are ignored.
    pub account_rooms: BTreeMap<UserKey, Vec<RoomName>>,
    /// The newest stored DMs of each user that is a party to any ([`Record::Dm`]), both
    /// directions, oldest first: a DM between two users is in the tail of each. Entries for
    /// names that are not in `accounts` are ignored.
    pub dms: BTreeMap<UserKey, DmTail>,
}

/// The newest stored DMs one user sent or received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmTail {
    /// The DMs, oldest first, in strictly increasing id order, each with the user as its sender
    /// or its recipient. Only the last [`Config::history`](crate::Config::history) are kept in
    /// memory.
    pub messages: Vec<DirectMessage>,
    /// The store holds older DMs of this user than `messages`.
    pub has_older: bool,
}

/// The newest stored messages of one room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTail {
    /// The messages, oldest first, in strictly increasing id order. Only the last
    /// [`Config::history`](crate::Config::history) are kept in memory.
    pub messages: Vec<RoomMessage>,
    /// The store holds older messages of this room than `messages` (so history pages that reach
    /// past them must be read from the store).
    pub has_older: bool,
}
