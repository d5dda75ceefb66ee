//! The chat server as a pure, deterministic state machine.
//!
//! `chat-core` models everything a chat server decides (who is online, who is in which room,
//! which message gets which id, what each connection is told, what must be stored), and nothing
//! it does: no sockets, no tasks, no clock, no randomness. A runtime (`chat-runtime`) owns the
//! I/O and drives a [`Chat`] with [`Input`]s; the chat answers with [`Output`]s. Because time is
//! passed in, tests run a whole conversation in microseconds, and the same inputs always give
//! the same outputs.
//!
//! # The run loop
//!
//! ```
//! use chat_core::{Chat, Command, Config, ConnectionId, Input, Output, Timestamp};
//!
//! let mut chat = Chat::new(Config::default());
//! let now = Timestamp::from_unix_millis(1_764_000_000_000);
//! let alice = ConnectionId(1);
//! let inputs = [
//!     Input::Connect(alice),
//!     Input::Command { conn: alice, command: Command::login("alice"), reference: None },
//!     Input::Command {
//!         conn: alice,
//!         command: Command::Say { room: "general".into(), text: "hello".into() },
//!         reference: None,
//!     },
//! ];
//! for input in inputs {
//!     chat.handle(input, now).expect("the runtime knows its connections");
//!     // The one rule: after every input, drain the outputs.
//!     while let Some(output) = chat.poll_output() {
//!         match output {
//!             Output::Send { to, event, .. } => println!("to {to}: {}", event.kind()),
//!             Output::Broadcast { to, event, .. } => println!("to {} members: {}", to.len(), event.kind()),
//!             Output::Persist(record) => println!("store {record:?}"),
//!             Output::FetchHistory(request) => println!("read a page from the store: {request:?}"),
//!             Output::Close { conn, reason } => println!("close {conn}: {reason:?}"),
//!             // Logins with a password or token, and registrations, are checked off the core.
//!             Output::Authenticate { conn, .. } => println!("verify the login of {conn}"),
//!             Output::HashPassword { conn, .. } => println!("hash the password of {conn}"),
//!         }
//!     }
//! }
//! assert_eq!(chat.history_len(&"general".parse().unwrap()), 1);
//! ```
//!
//! A runtime does the same with real connections: for each event from a socket or timer it calls
//! [`Chat::handle`] with the current time, then drains [`Chat::poll_output`] until it returns
//! `None`, carrying out each output in order. It wakes the chat with [`Input::Tick`] at
//! [`Chat::poll_timeout`]. Records ([`Output::Persist`]) must be durable before the events that
//! follow them are delivered, so that whatever a client saw survives a crash; a runtime may batch
//! the records of many inputs into one store write (group commit).
//!
//! # What the outputs promise
//!
//! - A room message costs the core O(1): one [`Output::Broadcast`] with a shared, cached
//!   [`Recipients`] set and one shared [`Event`], plus the sender's own copy carrying its `ref`.
//!   The runtime does the per-recipient work (and can encode the event once). A user logged in
//!   from several connections (an account's sessions, up to [`Config::max_sessions`]) is in
//!   that set once per session: its sessions are just more recipients.
//! - Rooms and presence belong to the user, not the connection: a join or leave in one session
//!   holds for all of them (the others get a [`SendKind::Copy`]), presence `join` comes when the
//!   user joins and `leave` when it leaves or its last session ends.
//! - A join or leave costs the core O(1) outputs however large the room. Past
//!   [`Config::large_room`] members a room is *large*: joins and leaves are not announced (no
//!   presence, so no delivery to every member), and `joined` lists only the first
//!   `large_room` members with the total in `member_count`; `who` still lists everyone.
//! - Nothing a client saw is lost to a reconnect: `since` on a login or join (the last id the
//!   client saw) makes each `joined` carry the room's messages after it, at most
//!   [`Config::resume_limit`], with `complete` saying whether that is all; an account's DMs
//!   (kept per account, stored as [`Record::Dm`] between two accounts, paged with `history` and
//!   `with`) follow as replays. Resume is answered from memory; what memory no longer holds,
//!   the client pages from the store.
//! - Events serialise (serde) to exactly the protocol's server frames and [`Command`]s
//!   deserialise from its client frames, so transports need no second model.
//! - Every rule a client can break is a [`ChatError`], answered with an `error` event; the
//!   connection stays.
//!
//! # Replicas
//!
//! Nothing a chat decides depends on anything but its inputs and their times: not a clock, not
//! randomness, not the iteration order of a hash map. So several nodes can each run a [`Chat`]
//! and feed it one shared log of [`Input`]s (they serialise with serde) with the times the log
//! gives: every replica makes the same decisions, and each node carries out the outputs that
//! concern its own connections. A node that joins later starts from a [`Checkpoint`] of another
//! replica ([`Chat::checkpoint`], [`Chat::from_checkpoint`]) and feeds the inputs after it.
//!
//! # Room left for later
//!
//! - *Rate limits* count frames the core never sees (undecodable ones too), so they belong to
//!   the runtime, which answers with [`ChatError::RateLimited`].

#![warn(missing_docs, unreachable_pub)]

mod chat;
mod checkpoint;
mod command;
mod config;
mod error;
mod event;
mod history;
mod identifier;
mod identity;
mod ids;
mod mailbox;
mod message;
mod now;
mod output;
mod persistence;
mod room;
mod room_name;
mod room_set;
mod text;
mod timestamp;
mod user_name;

pub use chat::Chat;
pub use checkpoint::Checkpoint;
pub use command::{Command, MAX_REF_LEN, Ref, RefError};
pub use config::{
    Config, DEFAULT_LARGE_ROOM, DEFAULT_MAX_SESSIONS, DEFAULT_PAGE, DEFAULT_RESUME_LIMIT,
    DEFAULT_ROOM, MAX_PAGE,
};
pub use error::{ChatError, ErrorCode, InputError, RestoreError};
pub use event::{Event, PresenceChange, RoomSummary};
pub use identity::{
    AUTH_FAILED, Account, AuthError, Identity, LoginAttempt, MAX_PASSWORD_BYTES,
    MIN_PASSWORD_BYTES, PasswordHash, Secret,
};
pub use ids::{ConnectionId, MessageId};
pub use message::{DirectMessage, RoomMessage, conversation};
pub use now::Now;
pub use output::{CloseReason, HistoryOf, HistoryRequest, Input, Output, Recipients, SendKind};
pub use persistence::{DmTail, Record, RoomTail, Snapshot};
pub use room_name::{MAX_ROOM_NAME_LEN, RoomName};
pub use text::{DEFAULT_MAX_TEXT_BYTES, Text};
pub use timestamp::{Timestamp, TimestampError};
pub use user_name::{MAX_USER_NAME_LEN, UserKey, UserName};
