//! Several chat servers as one chat, on Redis.
//!
//! Every node runs the same deterministic [`Chat`](chat_core::Chat) core. Instead of feeding its
//! clients' inputs to its core directly, a node appends them to one Redis stream, and every node
//! feeds its core the stream's entries, all of them, in the stream's order, with the time the
//! stream stamped them with (see [`chat_runtime::Replication`]). So every core sees the same
//! inputs in the same order and makes the same decisions: the same message ids, the same name
//! given to the same connection, the same presence. Each node then carries out only the outputs
//! that concern its own connections. The core does not know whether it runs alone or in a
//! cluster.
//!
//! - **The log** is one stream; a Lua script numbers each entry and appends it in one step, so
//!   a reader that finds a number missing knows it missed something.
//! - **Checkpoints**: the leader stores the whole chat at a known entry now and then, and trims
//!   the log behind it; a joining node starts from the newest checkpoint.
//! - **Membership**: heartbeat keys that expire; the leader declares a node whose key expired
//!   gone, with an entry in the log, and its users leave everywhere.
//! - **The store** ([`RedisStore`]) keeps the room and DM logs that history pages read beyond
//!   what the core keeps in memory, and the accounts that passwords are checked against. Every
//!   node appends the same records to it ([`StoreMode::Shared`]), and it keeps one copy of each.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chat_cluster::{ClusterNode, ClusterOptions};
//! use chat_core::Config;
//! use chat_runtime::{GuestsOnly, Runtime, RuntimeConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClusterOptions::new("redis://127.0.0.1:6379/0");
//! let joined = ClusterNode::join(&options, Config::default()).await?;
//! let runtime = Runtime::replica(
//!     joined.chat,
//!     joined.store,
//!     RuntimeConfig::default(),
//!     Arc::new(GuestsOnly),
//!     joined.replication,
//! );
//! // … attach transports to `runtime.handle()` …
//! runtime.shutdown().await?;
//! joined.node.leave().await;
//! # Ok(()) }
//! ```

//!
//! # Layout
//!
//! - [`ClusterNode`] (`node`): joining, heartbeats, the leader's duties, leaving.
//! - `log`: the stream every node appends to; `reader`: the task that hands it to the replica.
//! - `checkpoint`: the whole chat at one entry of the log.
//! - [`RedisStore`] (`store`): a [`chat_store::Store`] on Redis, its key layout, its atomic
//!   appends (one Lua script per call) and its two modes; `node_store`: how a node writes
//!   through it.
//! - [`redis_server`]: a throwaway `redis-server` for tests (test support).

mod checkpoint;
mod error;
mod keys;
mod log;
mod node;
mod node_store;
mod reader;
pub mod redis_server;
mod store;

pub use error::ClusterError;
pub use node::{ClusterNode, ClusterOptions, Joined};
pub use store::{RedisStore, StoreMode};
