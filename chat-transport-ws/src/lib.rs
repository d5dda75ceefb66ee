//! The WebSocket transport: JSON frames on `ws://HOST:PORT/chat`, as the protocol reference
//! (`docs/protocol.md` in the repository) describes them.
//!
//! [`serve`] accepts connections and attaches each to a [`chat_runtime::Runtime`] through its
//! public [`Handle`](chat_runtime::Handle), one driver task per connection (`session.rs`).
//! Client frames are decoded, and events encoded, by the JSON codec of
//! [`chat_protocol::json`]; [`frame`] puts the WebSocket header in front, with [`JsonFormat`] as
//! the runtime's [`WireFormat`](chat_runtime::WireFormat) so a broadcast is serialised and
//! framed once for every WebSocket recipient. [`page`] serves the browser client (a static
//! page) to plain HTTP `GET`s on the same listener. [`WsClient`] is a small client for tests,
//! bots and the terminal client; [`client_session`] is the terminal client's library layer (a
//! session that reconnects, speaking the line protocol's [`chat_protocol::line::LineSession`] to
//! its user).

#![warn(missing_docs, unreachable_pub)]

mod client;
pub mod client_session;
pub mod frame;
pub mod page;
mod server;
mod session;

pub use client::{ClientError, Incoming, WsClient};
pub use client_session::{ClientSession, SessionConfig, Typist, Update};
pub use frame::JsonFormat;
pub use server::{WsConfig, serve};
