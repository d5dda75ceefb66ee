//! The WebSocket transport: JSON frames on `ws://HOST:PORT/chat`, as the protocol reference
//! (`docs/protocol.md` in the repository) describes them.
//!
//! [`serve`] accepts connections and attaches each to a [`chat_runtime::Runtime`] through its
//! public [`Handle`](chat_runtime::Handle), one driver task per connection (`session.rs`).
//! Client frames are decoded, and events encoded, by the JSON codec of
//! [`chat_protocol::json`]; [`frame`] puts the WebSocket header in front, with [`JsonFormat`] as
//! the runtime's [`WireFormat`](chat_runtime::WireFormat) so a broadcast is serialised and
//! framed once for every WebSocket recipient. [`page`] serves the browser client (a static
//! page) to plain HTTP `GET`s on the same listener. This crate is the server side only: the
//! WebSocket client and the terminal client's session are in the `chat-client` crate.

#![warn(missing_docs, unreachable_pub)]

pub mod frame;
pub mod page;
mod server;
mod session;

pub use frame::JsonFormat;
pub use server::{WsConfig, serve};
