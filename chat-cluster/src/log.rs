//! The input log on Redis: one stream that every node appends its inputs to and reads all of
//! them back from.
//!
//! An entry is one batch of one node's inputs (JSON), or the verdict that a node is gone. One
//! Lua script numbers it (a counter, so readers see a gap if entries went missing) and adds it
//! to the stream in one atomic step: the stream's order is the order every replica handles the
//! inputs in, and the stream's id (milliseconds, never going back) is the time they handle them
//! at. An input is in the log, and so acknowledged, only once Redis has answered the script.
//!
//! Only members may append inputs: the script refuses a node that is not in the set of nodes.
//! Declaring a node gone takes it out of the set and appends the verdict in one step, so no
//! input of a node can follow the verdict on it (a node that was declared gone while it was
//! still running, cut off from Redis for too long, cannot add a connection nobody would ever
//! disconnect).

use chat_core::{Input, Timestamp};
use chat_runtime::{InputLog, LogError, NodeId};
use redis::aio::ConnectionManager;
use redis::streams::StreamId;

use crate::keys::Keys;

/// Numbers a member's entry and appends it, atomically.
const APPEND: &str = r"
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  return redis.error_reply('NOTMEMBER this node was declared gone')
end
local n = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], '*', 'n', n, 'node', ARGV[1], 'in', ARGV[2])
";

/// Takes a node out of the set of nodes and appends the verdict that it is gone, atomically.
const GONE: &str = r"
redis.call('SREM', KEYS[3], ARGV[2])
local n = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], '*', 'n', n, 'node', ARGV[1], 'gone', ARGV[2])
";

/// The log, as a node appends to it.
#[derive(Clone)]
pub(crate) struct RedisLog {
    redis: ConnectionManager,
    keys: Keys,
    append: redis::Script,
    gone: redis::Script,
}

impl RedisLog {
    pub(crate) fn new(redis: ConnectionManager, keys: Keys) -> RedisLog {
        RedisLog {
            redis,
            keys,
            append: redis::Script::new(APPEND),
            gone: redis::Script::new(GONE),
        }
    }

    /// Appends the verdict that `gone` is gone (`by` is the node that found it out).
    pub(crate) async fn append_gone(&self, by: NodeId, gone: NodeId) -> Result<(), LogError> {
        self.run(&self.gone, by, gone.0.to_string()).await
    }

    async fn run(
        &self,
        script: &redis::Script,
        node: NodeId,
        value: String,
    ) -> Result<(), LogError> {
        let mut redis = self.redis.clone();
        let appended: Result<String, redis::RedisError> = script
            .key(self.keys.log())
            .key(self.keys.log_seq())
            .key(self.keys.nodes())
            .arg(node.0)
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
        self.run(&self.append, node, json).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::RedisServer;
    use chat_core::ConnectionId;

    async fn entries(redis: &mut ConnectionManager, keys: &Keys) -> Vec<Entry> {
        let range: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys.log())
            .arg("-")
            .arg("+")
            .query_async(redis)
            .await
            .expect("the log reads");
        range
            .ids
            .iter()
            .map(|raw| Entry::decode(raw).expect("entries decode"))
            .collect()
    }

    #[tokio::test]
    async fn no_input_of_a_node_follows_the_verdict_that_it_is_gone() {
        let server = RedisServer::launch().await.expect("redis-server starts");
        let client = redis::Client::open(server.url()).expect("a valid URL");
        let mut redis = ConnectionManager::new(client).await.expect("redis answers");
        let keys = Keys::new("test:");
        let log = RedisLog::new(redis.clone(), keys.clone());
        let (a, b) = (NodeId(1), NodeId(2));
        let _: () = redis::cmd("SADD")
            .arg(keys.nodes())
            .arg(&[1, 2])
            .query_async(&mut redis)
            .await
            .expect("SADD");
        let connect = [Input::Connect(ConnectionId(5))];
        log.append(b, &connect).await.expect("a member appends");
        log.append_gone(a, b)
            .await
            .expect("the verdict is appended");
        let refused = log.append(b, &connect).await;
        assert!(
            matches!(refused, Err(LogError::Unreachable(_))),
            "{refused:?}"
        );
        log.append(a, &connect)
            .await
            .expect("a member still appends");

        let entries = entries(&mut redis, &keys).await;
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "numbered without a gap");
        assert!(matches!(entries[1].body, Body::Gone(NodeId(2))));
        assert_eq!(
            entries.iter().filter(|e| e.node == b).count(),
            1,
            "nothing of node 2 after its verdict"
        );
    }
}
