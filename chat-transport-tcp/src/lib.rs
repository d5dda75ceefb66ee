//! The line TCP transport: plain UTF-8 lines, so `nc 127.0.0.1 9999` is a full client.
//!
//! The server asks for a name, then every line typed is said in the client's room, and slash
//! commands (`/join`, `/dm`, `/who`, `/rooms`, `/history`, `/help`, `/quit`, parsed by
//! [`chat_protocol::line::parse_line`]) do the rest, as PROTOCOL.md's "Line TCP transport" fixes
//! it. Line clients share rooms, DMs and history with WebSocket clients: both transports drive
//! one runtime. Modules: framing (`codec.rs`), rendering ([`LineFormat`], `format.rs`, once per
//! event for all line recipients, with [`chat_protocol::line::render`]), one driver task per
//! client (`session.rs`), and the accept loop ([`serve`], `server.rs`).

#![warn(missing_docs, unreachable_pub)]

pub mod codec;
mod format;
mod server;
mod session;

pub use format::LineFormat;
pub use server::{TcpConfig, serve};
