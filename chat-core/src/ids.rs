//! Identifiers: the runtime's connection handles and the server's message ids.
//!
//! A [`ConnectionId`] is opaque to the core: the runtime picks one per accepted connection and
//! the core only compares them. A [`MessageId`] is assigned by the core to every room message and
//! DM it accepts; ids are positive and strictly increasing in acceptance order, and the counter is
//! restored from the store so that they are never reused after a restart.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The runtime's handle for one client connection, whatever its transport. Its serde form is the
/// bare number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A server-assigned message id: a positive integer, unique on the server, strictly increasing in
/// the order messages were accepted (room messages and DMs share one sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MessageId(u64);

impl MessageId {
    /// The first id a new server hands out.
    pub const FIRST: MessageId = MessageId(1);

    /// The id `n`, or `None` for 0 (ids are positive).
    pub fn new(n: u64) -> Option<Self> {
        (n > 0).then_some(MessageId(n))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id after this one (saturating: 2^64 − 1 ids outlast any server).
    pub fn next(self) -> Self {
        MessageId(self.0.saturating_add(1))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        MessageId::new(n).ok_or_else(|| serde::de::Error::custom("message ids are positive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_not_an_id() {
        assert_eq!(MessageId::new(0), None);
        assert!(serde_json::from_str::<MessageId>("0").is_err());
        assert_eq!(serde_json::from_str::<MessageId>("42").unwrap().get(), 42);
        assert_eq!(MessageId::FIRST.next().get(), 2);
    }
}
