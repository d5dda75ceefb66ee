//! The Redis keys a cluster uses, all under one prefix (so several chats, or tests, can share
//! one Redis).

use chat_runtime::NodeId;

/// The names of a cluster's keys.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The stream of every node's inputs.
    pub(crate) fn log(&self) -> String {
        format!("{}log", self.prefix)
    }

    /// The counter that numbers the log's entries (1, 2, 3, …), so a reader sees a gap.
    pub(crate) fn log_seq(&self) -> String {
        format!("{}log:seq", self.prefix)
    }

    /// The counter node ids are drawn from; a node id is never used twice.
    pub(crate) fn node_ids(&self) -> String {
        format!("{}nodes:next", self.prefix)
    }

    /// The set of nodes that joined and have not been declared gone.
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// A node's heartbeat: it expires unless the node renews it; its value is how far the node
    /// has read the log.
    pub(crate) fn node(&self, node: NodeId) -> String {
        format!("{}node:{}", self.prefix, node.0)
    }

    /// Which node leads (declares dead nodes gone, writes checkpoints); expires unless renewed.
    pub(crate) fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// The newest checkpoint: the whole chat at one entry of the log.
    pub(crate) fn checkpoint(&self) -> String {
        format!("{}checkpoint", self.prefix)
    }

    /// The number of the log's last entry in the newest checkpoint (kept apart from the
    /// checkpoint, so a script can compare it without reading the checkpoint).
    pub(crate) fn checkpoint_seq(&self) -> String {
        format!("{}checkpoint:seq", self.prefix)
    }

    /// Held by the node that builds the first checkpoint of a new cluster.
    pub(crate) fn init(&self) -> String {
        format!("{}init", self.prefix)
    }

    /// The prefix of the store's keys.
    pub(crate) fn store(&self) -> String {
        format!("{}store:", self.prefix)
    }
}
