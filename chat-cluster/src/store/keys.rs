//! The key layout of a [`RedisStore`](super::RedisStore) (documented on the type) and the
//! encoding of the entries of its logs.
//!
//! Every log (a room, a conversation, a mailbox, a user's DM index) is a sorted set whose
//! members all have the score 0, so Redis orders them by their bytes. Each member starts with
//! its id as 20 decimal digits (`u64::MAX` has 20), then `:`, then the rest: for equal-length
//! digit strings the byte order is the numeric order, so the sorted set is in id order, exact
//! for every `u64` (a score, a double, is exact only up to 2^53), and a page of ids below `b` is
//! one `ZREVRANGEBYLEX key (<b> -`. Names are safe inside keys: room names and user keys only
//! use `a-z 0-9 _ - .`, never `:`.

use chat_core::{MessageId, RoomName, UserKey};

/// The digits of an id in a log entry.
pub(super) const ID_DIGITS: usize = 20;

/// Every key of one store, built from its prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

/// The keys the scripts receive as `KEYS`, in this order.
pub(super) const GLOBALS: usize = 8;

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The set of rooms with history.
    pub(super) fn rooms(&self) -> String {
        self.key("rooms")
    }

    /// A room's log: `<id>:<RoomMessage JSON>`.
    pub(super) fn room(&self, room: &RoomName) -> String {
        self.key(&format!("room:{room}"))
    }

    /// The set of conversations with history, each as `a:b`.
    pub(super) fn conversations(&self) -> String {
        self.key("conversations")
    }

    /// A conversation's log: `<id>:<DirectMessage JSON>`.
    pub(super) fn conversation(&self, parties: &(UserKey, UserKey)) -> String {
        self.key(&format!("dm:{}", conversation_name(parties)))
    }

    /// What [`Keys::conversation`] puts before a conversation's name.
    pub(super) fn conversation_prefix(&self) -> String {
        self.key("dm:")
    }

    /// A user's DM index: `<id>:<a>:<b>` for every DM of the conversation `a:b` the user is a
    /// party to.
    pub(super) fn dms_of(&self, user: &UserKey) -> String {
        self.key(&format!("dms-of:{user}"))
    }

    /// The set of owners of a non-empty mailbox.
    pub(super) fn mailboxes(&self) -> String {
        self.key("mailboxes")
    }

    /// An owner's mailbox: `<id>:<DirectMessage JSON>`.
    pub(super) fn mailbox(&self, owner: &UserKey) -> String {
        self.key(&format!("mailbox:{owner}"))
    }

    /// The hash of accounts: user key to `Account` JSON.
    pub(super) fn accounts(&self) -> String {
        self.key("accounts")
    }

    /// The hash of account room sets: user key to a JSON array of room names.
    pub(super) fn account_rooms(&self) -> String {
        self.key("account-rooms")
    }

    /// The id counter: the next id, as 20 digits.
    pub(super) fn next_id(&self) -> String {
        self.key("next-id")
    }

    /// The undo journal of the last append (exclusive mode).
    pub(super) fn undo(&self) -> String {
        self.key("undo")
    }

    /// The token of a failed append that `recover` found not run, so it never runs.
    pub(super) fn fence(&self) -> String {
        self.key("fence")
    }

    /// A counter that numbers the store instances (for unique call tokens).
    pub(super) fn instances(&self) -> String {
        self.key("instances")
    }

    /// The keys every script receives as `KEYS`, in the order the scripts name them.
    pub(super) fn globals(&self) -> [String; GLOBALS] {
        [
            self.rooms(),
            self.conversations(),
            self.mailboxes(),
            self.accounts(),
            self.account_rooms(),
            self.next_id(),
            self.undo(),
            self.fence(),
        ]
    }
}

/// A conversation as its set member and key suffix: `a:b`.
pub(super) fn conversation_name((a, b): &(UserKey, UserKey)) -> String {
    format!("{a}:{b}")
}

/// Parses a [`conversation_name`] back; `None` if it is not one.
pub(super) fn parse_conversation(name: &str) -> Option<(UserKey, UserKey)> {
    let (a, b) = name.split_once(':')?;
    let parties = (UserKey::parse(a).ok()?, UserKey::parse(b).ok()?);
    (parties.0 <= parties.1).then_some(parties)
}

/// An id as 20 digits.
pub(super) fn digits(id: MessageId) -> String {
    format!("{:0width$}", id.get(), width = ID_DIGITS)
}

/// A log entry: the id's digits, `:`, and `rest`.
pub(super) fn entry(id: MessageId, rest: &str) -> String {
    format!("{}:{rest}", digits(id))
}

/// The lex bound that selects the entries with an id below `id` (`(<digits>`: every entry with
/// that id is longer, so above it).
pub(super) fn below(id: MessageId) -> String {
    format!("({}", digits(id))
}

/// Parses 20 digits back into an id; `None` if they are not an id.
pub(super) fn parse_digits(text: &str) -> Option<MessageId> {
    if text.len() != ID_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    MessageId::new(text.parse().ok()?)
}

/// Splits a log entry into its id and the rest; `None` if it is not an entry.
pub(super) fn split_entry(entry: &str) -> Option<(MessageId, &str)> {
    let digits = entry.get(..ID_DIGITS)?;
    let rest = entry.get(ID_DIGITS..)?.strip_prefix(':')?;
    Some((parse_digits(digits)?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        MessageId::new(n).unwrap()
    }

    #[test]
    fn entries_sort_by_id_as_bytes() {
        let ids = [1, 9, 10, 99, 100, 1 << 53, (1 << 53) + 1, u64::MAX];
        let entries: Vec<String> = ids.iter().map(|&n| entry(id(n), "{}")).collect();
        let mut sorted = entries.clone();
        sorted.sort();
        assert_eq!(sorted, entries);
        for (&n, entry) in ids.iter().zip(&entries) {
            assert_eq!(split_entry(entry), Some((id(n), "{}")));
            // An entry is above the bound of its own id and below that of the next one.
            assert!(entry.as_str() > &below(id(n))[1..]);
            if n < u64::MAX {
                assert!(entry.as_str() < &below(id(n + 1))[1..]);
            }
        }
    }

    #[test]
    fn malformed_entries_are_none() {
        for bad in [
            "",
            "garbage",
            "0000000000000000000:x",
            "00000000000000000000:x",
            "0000000000000000001x:x",
            "00000000000000000001x",
            "99999999999999999999:x",
        ] {
            assert_eq!(split_entry(bad), None, "{bad:?}");
        }
        assert_eq!(split_entry("00000000000000000001:"), Some((id(1), "")));
    }

    #[test]
    fn conversation_names_round_trip() {
        let parties = (
            UserKey::parse("alice").unwrap(),
            UserKey::parse("bob").unwrap(),
        );
        assert_eq!(
            parse_conversation(&conversation_name(&parties)),
            Some(parties)
        );
        assert_eq!(parse_conversation("bob:alice"), None, "a < b");
        assert_eq!(parse_conversation("alice"), None);
        assert_eq!(parse_conversation("al ice:bob"), None);
    }
}
