//! Checkpoints: the whole chat at one entry of the log, kept in Redis.
//!
//! A node that joins a running cluster (or fell behind what the log still holds) starts from
//! the newest checkpoint and replays the entries after it; it never needs the log from the
//! beginning. The leader writes one now and then, and only then trims the log, up to the
//! checkpoint before (so a node that is slow to read has a whole interval to catch up).

use chat_core::{Chat, Checkpoint, Config};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::keys::Keys;

/// Replaces the checkpoint only with a newer one (two leaders for a moment must not go back).
const SAVE: &str = r"
local current = redis.call('GET', KEYS[2])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1
";

/// Where a replica is in the log: the last entry it has handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The entry's number (0: before the first entry).
    pub(crate) seq: u64,
    /// The entry's stream id (`0-0`: before the first entry).
    pub(crate) id: String,
}

/// A checkpoint as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The last entry whose inputs are in `state`.
    pub(crate) position: Position,
    /// The configuration the cluster runs with: every node must run with the same.
    pub(crate) config: Config,
    /// The chat.
    pub(crate) state: Checkpoint,
}

impl Stored {
    pub(crate) fn of(chat: &Chat, position: Position) -> Stored {
        Stored {
            position,
            config: chat.config().clone(),
            state: chat.checkpoint(),
        }
    }

    /// The chat this checkpoint holds, for a node configured with `config`.
    pub(crate) fn restore(self, config: &Config) -> Result<(Chat, Position), ClusterError> {
        // Compared as a chat applies them (a chat caps some options by others).
        let ours = Chat::new(config.clone()).config().clone();
        if ours != self.config {
            return Err(ClusterError::ConfigMismatch {
                ours: format!("{ours:?}"),
                cluster: format!("{:?}", self.config),
            });
        }
        let chat = Chat::from_checkpoint(config.clone(), self.state)?;
        Ok((chat, self.position))
    }
}

/// The newest checkpoint, if the cluster has one.
pub(crate) async fn load(
    redis: &mut ConnectionManager,
    keys: &Keys,
) -> Result<Option<Stored>, ClusterError> {
    let json: Option<String> = redis::cmd("GET")
        .arg(keys.checkpoint())
        .query_async(redis)
        .await?;
    match json {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|error| ClusterError::Checkpoint(error.to_string())),
    }
}

/// Stores `stored` unless a checkpoint at least as new is there; true if it was stored.
pub(crate) async fn save(
    redis: &mut ConnectionManager,
    keys: &Keys,
    stored: &Stored,
) -> Result<bool, ClusterError> {
    let json = serde_json::to_string(stored)
        .map_err(|error| ClusterError::Checkpoint(error.to_string()))?;
    let saved: i64 = redis::Script::new(SAVE)
        .key(keys.checkpoint())
        .key(keys.checkpoint_seq())
        .arg(stored.position.seq)
        .arg(json)
        .invoke_async(redis)
        .await?;
    Ok(saved == 1)
}
