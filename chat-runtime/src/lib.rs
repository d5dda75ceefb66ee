//! The tokio driver of a [`chat_core::Chat`].
//!
//! The core decides; this crate does. One task owns the core (no lock around it) and feeds it
//! every connection's commands; a second task carries out its outputs: it stores each burst of
//! records in one write (group commit) and only then delivers, encoding every event once per
//! wire format and pushing the same bytes to each recipient's bounded outbox. Transports attach
//! connections through a [`Handle`] and drive each one with a single task.
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
//! Modules: [`Runtime`] and [`Handle`] (`runtime.rs`), [`Connection`] (`connection.rs`), the
//! byte-bounded outbox (`outbox.rs`), the core and delivery tasks (`core_task.rs`,
//! `delivery.rs`), [`WireFormat`] (`wire.rs`), the rate limiter (`rate_limit.rs`), counters
//! (`metrics.rs`), settings (`config.rs`).

#![warn(missing_docs, unreachable_pub)]

mod accept;
mod config;
mod connection;
mod core_task;
mod deadline;
mod delivery;
mod drive;
mod metrics;
mod outbox;
mod rate_limit;
mod runtime;
mod wire;

pub use accept::accept_until_closing;
pub use config::RuntimeConfig;
pub use connection::{Connection, LocalConnection, RuntimeStopped};
pub use deadline::{TimedOut, within};
pub use drive::{Ending, Flow, Pacing, Peer, drive};
pub use metrics::MetricsSnapshot;
pub use outbox::{Closing, Delivery, Outbound, Outgoing, WINDOW, Weigh};
pub use rate_limit::{Admission, CALM, FLOOD_GRACE, RateLimiter};
pub use runtime::{ConnectError, Handle, Runtime, RuntimeError};
pub use wire::WireFormat;
