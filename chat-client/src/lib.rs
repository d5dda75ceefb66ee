//! A client of the chat engine, over WebSocket: a small async client, and the terminal client's
//! session layer.
//!
//! Both speak `chat-protocol`, so no rule or text of the protocol is written here a second time.
//! [`WsClient`] is one connection speaking the JSON frames, for tests, bots and load drivers.
//! [`ClientSession`] is what a terminal client is built on: it logs in, turns typed lines into
//! commands with the line protocol's [`LineSession`](chat_protocol::line::LineSession) (the state
//! machine the line TCP transport runs too, so `/join`, `/dm` … mean and say the same as over
//! `nc`), reports everything as [`Update`]s and reconnects when the connection is lost. The
//! terminal itself (line editing, printing) is the program's, as in `examples/chat_client.rs` in
//! the repository.
//!
//! ```no_run
//! use chat_client::{ClientSession, SessionConfig, Update};
//! use chat_protocol::line::render::render;
//!
//! # async fn run() -> Result<(), chat_client::SessionEnded> {
//! let mut session = ClientSession::start(SessionConfig::new("ws://127.0.0.1:8765/chat", "alice"));
//! session.type_line("/join rust").await?;
//! while let Some(update) = session.next().await {
//!     let shown = match &update {
//!         Update::Server { event, answers_command, kind } => {
//!             render(event, *answers_command, *kind)
//!         }
//!         other => other.render(),
//!     };
//!     print!("{}", shown.unwrap_or_default());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `client.rs`: [`WsClient`], one WebSocket connection speaking the client half of
//!   [`chat_protocol::json`]: [`Command`](chat_core::Command)s out, server frames in as
//!   [`Incoming`]; failures are [`ClientError`]s.
//! - `session.rs`: [`ClientSession`], one user's session, started from a [`SessionConfig`] and fed
//!   typed lines through a [`Typist`] (or [`ClientSession::type_line`]) until it has ended
//!   ([`SessionEnded`]).
//! - `update.rs`: what a session reports, [`Update`]s (the client's own texts are [`Notice`]s), and
//!   how they read as terminal lines.
//! - `backoff.rs`: [`Backoff`], the waits between reconnection attempts.
//! - `driver.rs`: the session's task: connect, log in, chat, wait out the back-off, again; while
//!   chatting, a `select!` over the socket, the typed lines and a keepalive tick.
//! - `resume.rs`: what the session has shown: the `since` of each reconnection's login, the
//!   paging of a room's missed messages past the server's resume limit, and the filters that
//!   keep a message or DM from being shown twice.

#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod client;
mod driver;
mod resume;
mod session;
mod update;

pub use backoff::Backoff;
pub use client::{ClientError, Incoming, WsClient};
pub use session::{ClientSession, SessionConfig, SessionEnded, Typist};
pub use update::{Notice, Update};
