//! `chat-engine`: the facade of the chat engine workspace.
//!
//! It re-exports the workspace's crates under one name and owns the top-level `examples/` and
//! `benches/`. See the README for the crate map.

#![doc = include_str!("../README.md")]

pub mod server;
pub mod tls;

pub use chat_client as client;
pub use chat_cluster as cluster;
pub use chat_core as core;
pub use chat_protocol as protocol;
pub use chat_runtime as runtime;
pub use chat_store as store;
pub use chat_transport_tcp as tcp;
pub use chat_transport_ws as ws;
