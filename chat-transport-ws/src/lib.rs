//! The WebSocket transport: JSON frames on `ws://HOST:PORT/chat`, as the protocol reference
//! (`docs/protocol.md` in the repository) describes them.
//!
//! # Layout
//!
//! - [`serve`] (`server.rs`): the bundled listener, and [`serve_tls`], the same inside TLS.
//!   Each accepted socket (or TLS stream) is served by hyper (`http.rs`): an upgrade on
//!   [`WsConfig::path`] becomes a chat connection, a plain `GET` gets the browser page
//!   ([`page`]), embedded in the binary.
//! - `handshake.rs`: the WebSocket opening handshake on plain `http` requests, shared by the
//!   listener and the `axum` module (feature `axum`): a full server answers
//!   503 before any WebSocket exists.
//! - [`connect`] and [`run`] (`session.rs`): one connection after its handshake, on any byte
//!   stream (an upgrade from hyper or axum, a TLS stream, an in-memory duplex in tests), run by
//!   the runtime's one connection loop, [`chat_runtime::drive`].
//! - [`frame`]: the WebSocket header in front of [`chat_protocol::json`]'s payloads;
//!   [`JsonFormat`] is the runtime's wire format, so a broadcast is serialised and framed once
//!   for every WebSocket recipient.
//!
//! This crate is the server side only: the WebSocket client and the terminal client's session
//! are in the `chat-client` crate.

#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "axum")]
pub mod axum;

pub mod frame;
mod handshake;
mod http;
pub mod page;
mod server;
mod session;

pub use frame::JsonFormat;
pub use handshake::{PeerAddr, upgrade};
pub use server::{WsConfig, serve, serve_tls};
pub use session::{connect, connect_from, run};
