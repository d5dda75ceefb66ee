//! A client of the chat engine: a small async WebSocket client, and the terminal client's
//! session layer.
//!
//! # Layout
//!
//! - `client.rs`: [`WsClient`], one WebSocket connection speaking the client half of
//!   [`chat_protocol::json`]: commands out, server frames in as [`Incoming`].
//! - `session.rs`: [`ClientSession`], one user's session on a [`WsClient`]: it reconnects, and
//!   speaks the line protocol's [`LineSession`](chat_protocol::line::LineSession) to its user.

#![warn(missing_docs, unreachable_pub)]

mod client;
mod session;

pub use client::{ClientError, Incoming, WsClient};
pub use session::{Backoff, ClientSession, Notice, SessionConfig, SessionEnded, Typist, Update};
