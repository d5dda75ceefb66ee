//! The tokio driver of a [`chat_core::Chat`].
//!
//! The core decides; this crate does. One task owns the core (no lock around it) and feeds it
//! every connection's commands; a second task carries out its outputs: it stores each burst of
//! records in one write (group commit) and only then delivers, encoding every event once per
//! wire format and pushing the same bytes to each recipient's bounded outbox. On a
//! current-thread runtime the two are one task, which a connection that has just handed the
//! core a command runs at once (`helped.rs`): on one thread, a hand-off between tasks would
//! wait for every task woken before it. What the store
//! does not keep is delivered to nobody (its senders get `unavailable`), and the store is asked
//! to recover until it does. Transports attach connections through a [`Handle`] and run each
//! one with [`drive`], the one connection loop; in-process clients attach with
//! [`Handle::connect_local`] and receive events as values.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chat_runtime::{Runtime, RuntimeConfig};
//! use chat_store::MemoryStore;
//!
//! # async fn example() -> Result<(), chat_runtime::RuntimeError> {
//! let runtime = Runtime::start(
//!     chat_core::Config::default(),
//!     Arc::new(MemoryStore::new()),
//!     RuntimeConfig::default(),
//! )
//! .await?;
//! let handle = runtime.handle(); // give this to your transports
//! # let _ = handle;
//! runtime.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `runtime.rs`: [`Runtime`] (start, shutdown) and [`Handle`] (attach connections; wire
//!   formats are registered by type).
//! - `connection.rs`: [`Connection`], one client's attachment, bytes or values.
//! - `outbox.rs`: the per-connection queue, bounded in bytes of pushes, and the pacing of reads
//!   by replies ([`WINDOW`]).
//! - `drive.rs`: [`drive`], the loop every connection runs, and the [`Peer`] a transport
//!   supplies. `socket.rs`: [`SharedTcp`], a TCP socket the runtime may write to too; `sweep.rs`:
//!   on a current-thread runtime, the task that writes broadcasts to waiting connections itself.
//! - `core_task.rs`, `delivery.rs`: the task that owns the core, and the one that stores, then
//!   delivers (history pages are read beside it). `fan_out.rs`: consecutive broadcasts of one
//!   sender to one room, delivered to each recipient as one push.
//! - `auth.rs`: [`Authenticator`], who may log in, and [`ClientInfo`], what a transport knows
//!   of a client. `throttle.rs`: failed logins lock a name or an address for a minute.
//! - `wire.rs`: [`WireFormat`]. `rate_limit.rs`: the token bucket. `accept.rs`: the accept loop
//!   (with an optional [`Handshake`], e.g. TLS, in each connection's task).
//!   `deadline.rs`: timeouts that arm no timer for work that finishes at once. `metrics.rs`:
//!   counters. `config.rs`: settings.

#![warn(missing_docs, unreachable_pub)]

mod accept;
mod auth;
mod config;
mod connection;
mod core_task;
mod deadline;
mod delivery;
mod drive;
mod fan_out;
mod helped;
mod metrics;
mod outbox;
mod rate_limit;
mod replication;
mod runtime;
mod socket;
mod stand_in;
mod sweep;
mod throttle;
mod wire;

pub use accept::{Handshake, accept_until_closing, accept_with_handshake_until_closing};
pub use auth::{Authenticator, ClientInfo, GuestsOnly};
pub use config::RuntimeConfig;
pub use connection::{Connection, LocalConnection, RuntimeStopped};
pub use deadline::{TimedOut, within};
pub use drive::{Ending, Flow, Pacing, Peer, drive, guarded, write_frames};
pub use metrics::MetricsSnapshot;
pub use outbox::{Closing, Delivery, Outbound, Outgoing, WINDOW};
pub use rate_limit::{Admission, CALM, FLOOD_GRACE, RateLimiter};
pub use replication::{InputLog, LogError, NodeId, Replay, Replication};
pub use runtime::{ConnectError, Handle, Runtime, RuntimeError};
pub use socket::SharedTcp;
pub use throttle::{FAILURES as LOGIN_FAILURES, LOCK as LOGIN_LOCK, WINDOW as LOGIN_WINDOW};
pub use wire::WireFormat;
