//! The two kinds of message the server accepts, as they are delivered, kept and stored.
//!
//! A message gets its [`MessageId`] and [`Timestamp`] once, when the core accepts it, and keeps
//! both forever: in history, in an offline mailbox, on disk. Their serde form is the protocol's
//! MESSAGE and DM frames without the `type` field, which [`Event`](crate::Event) adds.

use serde::{Deserialize, Serialize};

use crate::ids::MessageId;
use crate::room_name::RoomName;
use crate::text::Text;
use crate::timestamp::Timestamp;
use crate::user_name::{UserKey, UserName};

/// A message said in a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// The room it was said in.
    pub room: RoomName,
    /// Its server-assigned id.
    pub id: MessageId,
    /// Who said it, as they logged in.
    pub from: UserName,
    /// What they said.
    pub text: Text,
    /// When the server accepted it.
    pub ts: Timestamp,
}

/// A direct message from one user to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    /// Its server-assigned id (one sequence with room messages).
    pub id: MessageId,
    /// The sender, as they logged in.
    pub from: UserName,
    /// The recipient, as the sender wrote the name.
    pub to: UserName,
    /// What the sender wrote.
    pub text: Text,
    /// When the server accepted it.
    pub ts: Timestamp,
}

impl DirectMessage {
    /// The mailbox this DM belongs in while its recipient is offline.
    pub fn owner(&self) -> UserKey {
        self.to.key()
    }

    /// The conversation this DM belongs to: its two users' keys, the smaller first, so a DM and
    /// its answer land in the same history whoever sent which.
    pub fn parties(&self) -> (UserKey, UserKey) {
        conversation(self.from.key(), self.to.key())
    }
}

/// The key of the conversation between `a` and `b`: the two keys, the smaller first.
pub fn conversation(a: UserKey, b: UserKey) -> (UserKey, UserKey) {
    if a <= b { (a, b) } else { (b, a) }
}
