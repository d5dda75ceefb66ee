//! The line TCP transport: plain UTF-8 lines, so `nc 127.0.0.1 9999` is a full client.
//!
//! The server asks for a name, then every line typed is said in the client's room, and slash
//! commands (`/join`, `/leave`, `/dm`, `/who`, `/rooms`, `/history`, `/help`, `/quit`) do the
//! rest, as the protocol reference `docs/protocol.md` says. Line clients share rooms, DMs and
//! history with WebSocket clients: both transports drive one runtime.
//!
//! The line protocol itself (framing, the slash commands, the session's rules and texts,
//! rendering) is [`chat_protocol::line`]'s; this crate runs it on byte streams. Modules: framing
//! as a `tokio_util` decoder (`codec.rs`), the runtime's wire format ([`LineFormat`],
//! `format.rs`: each event rendered once for all line recipients), one client on any stream
//! ([`run`], `session.rs`: a [`chat_runtime::Peer`] around a
//! [`chat_protocol::line::LineSession`], driven by the runtime's one connection loop), and the
//! accept loop ([`serve`], and [`serve_tls`] for lines inside TLS, `server.rs`).

#![warn(missing_docs, unreachable_pub)]

pub mod codec;
mod format;
mod server;
mod session;

pub use format::LineFormat;
pub use server::{TcpConfig, serve, serve_tls};
pub use session::{run, run_tcp};
