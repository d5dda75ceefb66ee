//! The chat engine's wire protocol, sans IO: what goes over a connection, and nothing about how.
//!
//! Transports own their sockets, tasks and timers; this crate owns the encodings they speak, as
//! pure functions and state machines on bytes and strings, so every rule and every text a client
//! sees is written once and tested without a network. It depends on `chat-core` for the model
//! (commands, events, names) and on no runtime.
//!
//! # Layout
//!
//! - [`json`]: the WebSocket protocol's JSON codec. Server side: client frames to
//!   [`chat_core::Command`]s with the protocol's `bad_frame` / `unknown_type` rules
//!   ([`json::decode`]), events to server frames with the `ref` spliced in ([`json::encode`]).
//!   Client side: [`json::encode_command`], [`json::decode_server_frame`]. The WebSocket framing
//!   around the JSON is the WebSocket transport's.
//! - [`line`](mod@line): the line protocol a person types and reads (`nc`, the terminal client):
//!   - [`line::split`]: framing, [`LineSplitter`](line::LineSplitter) cutting a `BytesMut` into
//!     lines, over-long ones dropped without being buffered;
//!   - [`line::slash`]: the slash-command language, [`parse_line`](line::parse_line);
//!   - [`line::session`]: [`LineSession`](line::LineSession), the state machine from typed
//!     lines and server events to commands to send and lines to show;
//!   - [`line::render`]: how events look as lines.

#![warn(missing_docs, unreachable_pub)]

pub mod json;
pub mod line;
