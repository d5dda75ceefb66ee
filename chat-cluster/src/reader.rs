//! The reader: hands the log's entries to this node's replica, in order, and notices when it
//! cannot.
//!
//! It reads the stream from where the replica is. Each entry's number must be one more than the
//! last: a gap means entries this replica needs are gone (trimmed while this node could not
//! read, or lost by Redis), and the node starts over under a new id: from the newest checkpoint
//! if that reaches past the gap (the entries were trimmed), or else from its own replica, past
//! the gap (the entries were lost: no replica has them). An entry that
//! declares this node gone (it could not renew its heartbeat in time) makes it start over under
//! a new id. While Redis is unreachable it retries, and continues from the same entry: nothing
//! published meanwhile is missed. When this node leads, the reader also asks the replica for a
//! checkpoint now and then, at a known entry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_core::Config;
use chat_runtime::Replay;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::StreamReadReply;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Position, Stored};
use crate::keys::Keys;
use crate::log::{Body, Entry, RedisLog};
#[cfg(doc)]
use crate::node::ClusterOptions;
use crate::node::{self, NodeState};

/// Entries read at once.
const READ_COUNT: usize = 1024;
/// How long one read waits for new entries (then it reads again, and takes a checkpoint if one
/// is due).
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// A checkpoint after this many entries, or after [`ClusterOptions::checkpoint_interval`],
/// whichever comes first (if any entry came at all).
const CHECKPOINT_ENTRIES: u64 = 20_000;

pub(crate) struct Reader {
    pub(crate) client: redis::Client,
    pub(crate) redis: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) log: RedisLog,
    pub(crate) config: Config,
    pub(crate) state: Arc<NodeState>,
    pub(crate) position: Position,
    pub(crate) replay: mpsc::Sender<Replay>,
    pub(crate) stop: CancellationToken,
    pub(crate) checkpoint_interval: Duration,
}

impl Reader {
    /// Follows the log until the node stops or its replica is gone. When the replica is gone
    /// (the runtime stopped or failed) it stops the node's other tasks too, so that its
    /// heartbeat lapses and the cluster declares it gone, instead of keeping its users present.
    pub(crate) async fn run(mut self) {
        let stop = self.stop.clone();
        self.follow().await;
        stop.cancel();
    }

    async fn follow(&mut self) {
        let mut connection: Option<MultiplexedConnection> = None;
        let mut retry = Duration::from_millis(50);
        let mut checkpointed = (Instant::now(), self.position.seq);
        // The checkpoint before the newest: how far the log may be trimmed.
        let mut previous: Option<Position> = None;
        loop {
            // A read blocks for up to `READ_BLOCK`: a stop does not wait for it (a node that
            // leaves announces it only once this task has ended).
            let read = tokio::select! {
                () = self.stop.cancelled() => return,
                read = self.read(&mut connection) => read,
            };
            let entries = match read {
                Ok(entries) => {
                    retry = Duration::from_millis(50);
                    entries
                }
                Err(error) => {
                    connection = None;
                    tracing::warn!(%error, "cannot read the cluster's log; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            for raw in &entries {
                let entry = match Entry::decode(raw) {
                    Ok(entry) => entry,
                    Err(error) => {
                        // Every replica skips it alike, so they stay in step.
                        tracing::error!(%error, "skipping a log entry that cannot be read");
                        self.position = Position {
                            seq: self.position.seq + 1,
                            id: raw.id.clone(),
                        };
                        continue;
                    }
                };
                // Never an older number: the read starts after this replica's entry. An older
                // one means Redis lost the log's tail (a crash before its append-only file had
                // it), and the numbers were handed out again: the replica is ahead of Redis.
                if entry.seq != self.position.seq + 1 {
                    tracing::warn!(
                        expected = self.position.seq + 1,
                        found = entry.seq,
                        "entries of the cluster's log are missing for this node: it starts over from the newest checkpoint"
                    );
                    if !self.start_over(entry.seq).await {
                        return;
                    }
                    break;
                }
                if !self.forward(entry).await {
                    return;
                }
            }
            self.state.read_to(&self.position.id);
            let due = self.position.seq.saturating_sub(checkpointed.1) >= CHECKPOINT_ENTRIES
                || (self.position.seq > checkpointed.1
                    && checkpointed.0.elapsed() >= self.checkpoint_interval);
            if due && self.state.leader.load(Ordering::Acquire) {
                checkpointed = (Instant::now(), self.position.seq);
                let trim_to = previous.replace(self.position.clone());
                if !self.checkpoint(trim_to).await {
                    return;
                }
            }
        }
    }

    async fn read(
        &self,
        connection: &mut Option<MultiplexedConnection>,
    ) -> Result<Vec<redis::streams::StreamId>, redis::RedisError> {
        if connection.is_none() {
            // A connection of its own: a blocking read must not hold up other commands.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
            *connection = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let Some(redis) = connection.as_mut() else {
            return Ok(Vec::new());
        };
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys.log())
            .arg(&self.position.id)
            .query_async(redis)
            .await?;
        Ok(reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// Hands one entry to the replica; false if the replica is gone.
    async fn forward(&mut self, entry: Entry) -> bool {
        self.position = Position {
            seq: entry.seq,
            id: entry.id,
        };
        let me = self.state.id();
        let replay = match entry.body {
            Body::Inputs(inputs) => Replay::Inputs {
                node: entry.node,
                at: entry.at,
                inputs,
            },
            Body::Gone(node) => Replay::NodeGone { node, at: entry.at },
        };
        let gone_is_me = matches!(&replay, Replay::NodeGone { node, .. } if *node == me);
        if self.replay.send(replay).await.is_err() {
            return false;
        }
        if gone_is_me {
            tracing::warn!(node = %me, "the cluster declared this node gone (it could not renew its heartbeat in time)");
            return self.rejoin(None).await;
        }
        true
    }

    /// Starts over under a new node id, from `chat` if given; false if the replica is gone.
    async fn rejoin(&mut self, chat: Option<Box<chat_core::Chat>>) -> bool {
        loop {
            match node::register(&mut self.redis, &self.keys, &self.state).await {
                Ok(node) => {
                    let restart = Replay::Restart { node, chat };
                    return self.replay.send(restart).await.is_ok();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot rejoin the cluster yet; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => return false,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Starts over after a gap (the next entry in the stream is numbered `found`): from the
    /// newest checkpoint if it reaches past the missing entries, from this replica otherwise;
    /// false if the replica is gone or the node stops.
    ///
    /// A checkpoint older than the missing entries cannot help: replaying from it meets the
    /// same gap again. Then nobody can have those entries, and every replica meets the gap at
    /// the same entry with the same chat, so each steps over it and stays like the others.
    /// A number at or below this replica's (Redis lost the log's tail and numbers the entries
    /// again) always goes back to the checkpoint: the replica is ahead of what Redis kept.
    async fn start_over(&mut self, found: u64) -> bool {
        let old = self.state.id();
        loop {
            let loaded = checkpoint::load(&mut self.redis, &self.keys).await;
            let restored = match loaded {
                Ok(Some(stored)) => stored.restore(&self.config),
                Ok(None) => Err(crate::ClusterError::Checkpoint(
                    "the cluster has no checkpoint".into(),
                )),
                Err(error) => Err(error),
            };
            match restored {
                Ok((chat, position)) => {
                    // Whatever the checkpoint says this node's connections were, they leave.
                    if let Err(error) = self.log.append_gone(old, old).await {
                        tracing::warn!(%error, "cannot announce this node's restart yet; retrying");
                    } else if position.seq + 1 >= found || found <= self.position.seq {
                        // The checkpoint reaches past the missing entries, or Redis lost the
                        // log's tail (numbers handed out again): the log from the checkpoint on
                        // is what the cluster is now.
                        self.position = position;
                        return self.rejoin(Some(Box::new(chat))).await;
                    } else {
                        self.position.seq = found - 1;
                        return self.rejoin(None).await;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start over from the cluster's checkpoint; retrying");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Takes a checkpoint at the current entry and stores it, then trims the log up to
    /// `trim_to` (the checkpoint before); false if the replica is gone.
    async fn checkpoint(&mut self, trim_to: Option<Position>) -> bool {
        let (sender, receiver) = oneshot::channel();
        let position = self.position.clone();
        let inspect = Replay::Inspect(Box::new(move |chat| {
            let _ = sender.send(Stored::of(chat, position));
        }));
        if self.replay.send(inspect).await.is_err() {
            return false;
        }
        let mut redis = self.redis.clone();
        let keys = self.keys.clone();
        tokio::spawn(async move {
            let Ok(stored) = receiver.await else {
                return;
            };
            let seq = stored.position.seq;
            match checkpoint::save(&mut redis, &keys, &stored).await {
                Ok(_) => tracing::debug!(seq, "checkpoint stored"),
                Err(error) => {
                    tracing::warn!(%error, "cannot store a checkpoint; the log is not trimmed");
                    return;
                }
            }
            if let Some(trim_to) = trim_to {
                if let Err(error) = node::trim(&mut redis, &keys, &trim_to.id).await {
                    tracing::warn!(%error, "cannot trim the cluster's log");
                }
            }
        });
        true
    }
}
