//! The input log on Redis: one stream that every node appends its inputs to and reads all of
//! them back from.
//!
//! An entry is one batch of one node's inputs (JSON), or the verdict that a node is gone. One
//! Lua script numbers it (a counter, so readers see a gap if entries went missing) and adds it
//! to the stream in one atomic step: the stream's order is the order every replica handles the
//! inputs in, and the stream's id (milliseconds, never going back) is the time they handle them
//! at. An input is in the log, and so acknowledged, only once Redis has answered the script.

use chat_core::{Input, Timestamp};
use chat_runtime::{InputLog, LogError, NodeId};
use redis::aio::ConnectionManager;
use redis::streams::StreamId;

use crate::keys::Keys;

/// Numbers an entry and appends it, atomically.
const APPEND: &str = r"
local n = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], '*', 'n', n, 'node', ARGV[1], ARGV[2], ARGV[3])
";

/// The log, as a node appends to it.
#[derive(Clone)]
pub(crate) struct RedisLog {
    redis: ConnectionManager,
    keys: Keys,
    script: redis::Script,
}

impl RedisLog {
    pub(crate) fn new(redis: ConnectionManager, keys: Keys) -> RedisLog {
        RedisLog {
            redis,
            keys,
            script: redis::Script::new(APPEND),
        }
    }

    /// Appends the verdict that `gone` is gone (`by` is the node that found it out).
    pub(crate) async fn append_gone(&self, by: NodeId, gone: NodeId) -> Result<(), LogError> {
        self.append_field(by, "gone", gone.0.to_string()).await
    }

    async fn append_field(&self, node: NodeId, field: &str, value: String) -> Result<(), LogError> {
        let mut redis = self.redis.clone();
        let appended: Result<String, redis::RedisError> = self
            .script
            .key(self.keys.log())
            .key(self.keys.log_seq())
            .arg(node.0)
            .arg(field)
            .arg(value)
            .invoke_async(&mut redis)
            .await;
        appended
            .map(|_| ())
            .map_err(|error| LogError::Unreachable(error.to_string()))
    }
}

#[async_trait::async_trait]
impl InputLog for RedisLog {
    async fn append(&self, node: NodeId, inputs: &[Input]) -> Result<(), LogError> {
        let json = serde_json::to_string(inputs)
            .map_err(|error| LogError::Unreachable(format!("inputs not encodable: {error}")))?;
        self.append_field(node, "in", json).await
    }
}

/// One entry, as read back.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The stream's id of it (`<milliseconds>-<n>`): where a reader continues from.
    pub(crate) id: String,
    /// Its number: one more than the entry before it.
    pub(crate) seq: u64,
    /// The log's time: the milliseconds of its id.
    pub(crate) at: Timestamp,
    /// The node that appended it.
    pub(crate) node: NodeId,
    pub(crate) body: Body,
}

/// What an entry carries.
#[derive(Debug)]
pub(crate) enum Body {
    /// A batch of `node`'s inputs.
    Inputs(Vec<Input>),
    /// The verdict that this node is gone.
    Gone(NodeId),
}

/// Why an entry read back could not be understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("log entry {id}: field {field:?} is missing or not text")]
    Field { id: String, field: &'static str },
    #[error("log entry {id}: {field:?} is not a number")]
    Number { id: String, field: &'static str },
    #[error("log entry {id}: its inputs are not valid JSON: {error}")]
    Inputs {
        id: String,
        error: serde_json::Error,
    },
}

impl Entry {
    pub(crate) fn decode(raw: &StreamId) -> Result<Entry, EntryError> {
        let id = raw.id.clone();
        let text = |field: &'static str| -> Result<Option<String>, EntryError> {
            match raw.map.get(field) {
                None => Ok(None),
                Some(value) => redis::from_redis_value::<String>(value.clone())
                    .map(Some)
                    .map_err(|_| EntryError::Field {
                        id: id.clone(),
                        field,
                    }),
            }
        };
        let number = |field: &'static str| -> Result<u64, EntryError> {
            let value = text(field)?.ok_or_else(|| EntryError::Field {
                id: id.clone(),
                field,
            })?;
            value.parse().map_err(|_| EntryError::Number {
                id: id.clone(),
                field,
            })
        };
        let seq = number("n")?;
        let node = NodeId(
            u32::try_from(number("node")?).map_err(|_| EntryError::Number {
                id: id.clone(),
                field: "node",
            })?,
        );
        let millis = id
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<u64>().ok())
            .ok_or_else(|| EntryError::Number {
                id: id.clone(),
                field: "id",
            })?;
        let body =
            match text("in")? {
                Some(json) => Body::Inputs(serde_json::from_str(&json).map_err(|error| {
                    EntryError::Inputs {
                        id: id.clone(),
                        error,
                    }
                })?),
                None => {
                    let gone = number("gone")?;
                    let gone = u32::try_from(gone).map_err(|_| EntryError::Number {
                        id: id.clone(),
                        field: "gone",
                    })?;
                    Body::Gone(NodeId(gone))
                }
            };
        Ok(Entry {
            id,
            seq,
            at: Timestamp::from_unix_millis(millis),
            node,
            body,
        })
    }
}
