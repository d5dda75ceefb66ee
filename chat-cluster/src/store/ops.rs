//! What `append.lua` receives for one call: each record as an op that names the keys it touches
//! and carries its entry ready to store, so the script only checks and writes. Ids are 20
//! digits ([`keys::digits`]), so the script compares them as strings and never as Lua numbers
//! (doubles, exact only up to 2^53).

use chat_core::{MessageId, Record};
use serde::Serialize;

use super::StoreMode;
use super::keys::{self, Keys};

/// One record as the script applies it.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Op {
    /// Add `entry` to the room's `log`; `room` joins the set of rooms.
    Message {
        log: String,
        room: String,
        id: String,
        entry: String,
    },
    /// Add `entry` to the conversation's `log`, and `pointer` to the DM index of each party.
    Dm {
        log: String,
        conversation: String,
        id: String,
        entry: String,
        index: Vec<String>,
        pointer: String,
    },
    /// Add `entry` to the `owner`'s `mailbox`.
    Queued {
        mailbox: String,
        owner: String,
        id: String,
        entry: String,
    },
    /// Drop the entries of the `owner`'s `mailbox` up to `through`.
    Delivered {
        mailbox: String,
        owner: String,
        through: String,
    },
    /// Store `value` (`Account` JSON) under `key`; `hashed` says whether it has a hash.
    Account {
        key: String,
        value: String,
        hashed: bool,
    },
    /// Store `value` (a JSON array of room names) as the `owner`'s room set.
    Rooms { owner: String, value: String },
}

/// The ops of one call, with the record each op stores, and the id counter's new floor.
#[derive(Debug, Default)]
pub(super) struct Call<'r> {
    /// The ops, in the records' order.
    pub(super) ops: Vec<Op>,
    /// `records[i]` is the record of `ops[i]`.
    pub(super) records: Vec<&'r Record>,
    /// The least id above every id the call stores, delivers or reserves (what the mode
    /// counts), if any.
    pub(super) floor: Option<MessageId>,
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value)
        .expect("chat-core's records serialise: string keys only, no failing Serialize impls")
}

impl<'r> Call<'r> {
    /// The call for `records` in `mode`: in shared mode only the messages, DMs and accounts.
    pub(super) fn new(keys: &Keys, mode: StoreMode, records: &'r [Record]) -> Self {
        let shared = mode == StoreMode::Shared;
        let mut call = Call::default();
        for record in records {
            let (op, floor) = match record {
                Record::Message(message) => (
                    Op::Message {
                        log: keys.room(&message.room),
                        room: message.room.to_string(),
                        id: keys::digits(message.id),
                        entry: keys::entry(message.id, &json(message)),
                    },
                    Some(message.id.next()),
                ),
                Record::Dm(dm) => {
                    let parties = dm.parties();
                    let mut index = vec![keys.dms_of(&parties.0)];
                    if parties.1 != parties.0 {
                        index.push(keys.dms_of(&parties.1));
                    }
                    let conversation = keys::conversation_name(&parties);
                    (
                        Op::Dm {
                            log: keys.conversation(&parties),
                            id: keys::digits(dm.id),
                            entry: keys::entry(dm.id, &json(dm)),
                            index,
                            pointer: keys::entry(dm.id, &conversation),
                            conversation,
                        },
                        Some(dm.id.next()),
                    )
                }
                Record::Account(account) => (
                    Op::Account {
                        key: account.name.key().to_string(),
                        value: json(account),
                        hashed: account.hash.is_some(),
                    },
                    None,
                ),
                // The cluster keeps these in its own checkpoints.
                Record::Queued(_)
                | Record::Delivered { .. }
                | Record::Rooms { .. }
                | Record::IdsReserved { .. }
                    if shared =>
                {
                    continue;
                }
                Record::Queued(dm) => (
                    Op::Queued {
                        mailbox: keys.mailbox(&dm.owner()),
                        owner: dm.owner().to_string(),
                        id: keys::digits(dm.id),
                        entry: keys::entry(dm.id, &json(dm)),
                    },
                    Some(dm.id.next()),
                ),
                Record::Delivered { owner, through } => (
                    Op::Delivered {
                        mailbox: keys.mailbox(owner),
                        owner: owner.to_string(),
                        through: keys::digits(*through),
                    },
                    Some(through.next()),
                ),
                Record::Rooms { owner, rooms } => (
                    Op::Rooms {
                        owner: owner.to_string(),
                        value: json(rooms),
                    },
                    None,
                ),
                Record::IdsReserved { until } => {
                    call.raise(*until);
                    continue;
                }
            };
            if let Some(floor) = floor {
                call.raise(floor);
            }
            call.ops.push(op);
            call.records.push(record);
        }
        call
    }

    fn raise(&mut self, floor: MessageId) {
        self.floor = Some(self.floor.map_or(floor, |f| f.max(floor)));
    }

    /// Whether the call changes nothing in Redis.
    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.floor.is_none()
    }

    /// The ops as the script's JSON argument.
    pub(super) fn ops_json(&self) -> String {
        json(&self.ops)
    }

    /// The floor as the script's argument: 20 digits, or `''` for none.
    pub(super) fn floor_arg(&self) -> String {
        self.floor.map(keys::digits).unwrap_or_default()
    }
}
