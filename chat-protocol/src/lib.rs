//! The chat engine's wire protocol, sans IO: what goes over a connection, and nothing about how.
//!
//! Transports own their sockets and tasks; this crate owns the encodings they speak, as pure
//! functions and state machines on bytes and strings, so every rule is written once and tested
//! without a network.
//!
//! # Layout
//!
//! - [`json`]: the WebSocket protocol's JSON codec: client frames to [`chat_core::Command`]s
//!   (with the protocol's `bad_frame` / `unknown_type` rules), events to server frames (with the
//!   `ref` spliced in).
//! - [`line`]: the line protocol a person types and reads (`nc`, the terminal client).

#![warn(missing_docs, unreachable_pub)]

pub mod json;
pub mod line;
