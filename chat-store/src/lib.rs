//! Durable storage for the chat engine.
//!
//! chat-core decides what must be kept and says so with [`Record`](chat_core::Record)s; this
//! crate keeps them. The runtime hands each batch of records to [`Store::append`] and delivers
//! the events that followed them only once it returns; at start it builds the core from
//! [`Store::load`]; and it answers history pages the core cannot serve from memory with
//! [`Store::history`] (a room's) and [`Store::dm_history`] (a DM conversation's). When an
//! append fails on I/O, nothing of it is stored, and the runtime calls [`Store::recover`] with
//! back-off until the store accepts appends again. Accounts are records like the others
//! ([`Record::Account`](chat_core::Record::Account)); the authenticator reads one, with its
//! password hash, through [`Store::account`].
//!
//! ```
//! use std::sync::Arc;
//! use chat_core::{MessageId, Record, RoomMessage, Text, Timestamp};
//! use chat_store::{MemoryStore, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let message = RoomMessage {
//!     room: "general".parse().unwrap(),
//!     id: MessageId::FIRST,
//!     from: "alice".parse().unwrap(),
//!     text: Text::parse("hello", 4096).unwrap(),
//!     ts: Timestamp::EPOCH,
//! };
//! store.append(&[Record::Message(Arc::new(message.clone()))]).await?;
//! let snapshot = store.load(1000).await?;
//! assert_eq!(snapshot.rooms[&message.room].messages, vec![message]);
//! assert_eq!(snapshot.next_id, MessageId::new(2));
//! # Ok::<(), chat_store::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! # Backends
//!
//! - [`MemoryStore`]: the reference behaviour; nothing survives the process.
//! - [`JsonFileStore`]: a directory of JSON-lines files, group-committed and crash-safe.
//!
//! Both pass the same [`conformance`] suite, which any future backend (SQLite, Redis, Postgres)
//! can run against itself.
//!
//! For tests, [`FailingStore`] wraps any store and fails its appends or history reads on demand.

#![warn(missing_docs, unreachable_pub)]

pub mod conformance;
mod conversations;
mod failing;
mod json_file;
mod ledger;
mod memory;
mod store;

pub use failing::{FailingStore, FailureSwitch};
pub use json_file::JsonFileStore;
pub use memory::MemoryStore;
pub use store::{Store, StoreError};
