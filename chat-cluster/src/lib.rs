//! Several chat servers as one chat, on Redis.
//!
//! Every node runs the same deterministic [`Chat`](chat_core::Chat) core. Instead of feeding its
//! clients' inputs to its core directly, a node appends them to one Redis stream, and every node
//! feeds its core the stream's entries, all of them, in the stream's order, with the time the
//! stream stamped them with. So every core sees the same inputs in the same order and makes the
//! same decisions: the same message ids, the same name given to the same connection, the same
//! presence. Each node then carries out only the outputs that concern its own connections. The
//! core does not know whether it runs alone or in a cluster.
//!
//! Redis is also the store ([`RedisStore`]): the room and DM logs that history pages read beyond
//! what the core keeps in memory, and the accounts the authenticator checks passwords against.
//! Every node appends the same records to it ([`StoreMode::Shared`]), and the store keeps one
//! copy of each.
//!
//! # Layout
//!
//! - [`RedisStore`] (`store`): a [`chat_store::Store`] on Redis, its key layout, its atomic
//!   appends (one Lua script per call) and its two modes.
//! - [`redis_server`]: a throwaway `redis-server` for tests (test support).

pub mod redis_server;
mod store;

pub use store::{RedisStore, StoreMode};
