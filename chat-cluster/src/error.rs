//! Why a node could not join its cluster.

use chat_core::RestoreError;
use chat_store::StoreError;

/// Why a node could not join its cluster (or start over in it).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be reached, or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The cluster runs with another chat configuration (history, limits, …) than this node was
    /// started with; every node must be started with the same options.
    #[error(
        "this node's chat options differ from the cluster's: start it with the same options as the others (ours: {ours}; the cluster's: {cluster})"
    )]
    ConfigMismatch {
        /// This node's configuration.
        ours: String,
        /// The cluster's.
        cluster: String,
    },
    /// The stored checkpoint cannot be read.
    #[error("the cluster's checkpoint cannot be read: {0}")]
    Checkpoint(String),
    /// The checkpoint, or the store a new cluster starts from, contradicts itself.
    #[error("the cluster's state is inconsistent: {0}")]
    Restore(#[from] RestoreError),
    /// The store failed while a new cluster loaded it.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Every node id a cluster can give out has been given (node ids are never used twice, and
    /// a connection id keeps 24 bits for its node): start the cluster afresh, under another
    /// prefix.
    #[error(
        "this cluster has given out all its node ids (the last was {0}); start a new cluster under another prefix"
    )]
    NodeIdsUsedUp(u32),
    /// Redis stayed unreachable for as long as a node waits at start.
    #[error("redis did not answer within {0:?}")]
    Unreachable(std::time::Duration),
}
