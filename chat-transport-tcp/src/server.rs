//! The accept loop: one task per line client.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chat_runtime::{ClientInfo, Handle};
use tokio::net::TcpListener;

use crate::session;

/// The line transport's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// The longest line accepted, without its line end (`--max-frame`, 65,536). A longer line
    /// gets an error line and is dropped; the connection stays.
    pub max_line: usize,
    /// How long one batched write may take before the client is treated as gone (10 s).
    pub write_timeout: Duration,
    /// A client that sends nothing for this long is disconnected (30 minutes; a line client
    /// has no pings, so this is only for connections that were abandoned).
    pub idle_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_line: 65_536,
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Accepts line clients on `listener` and attaches each to the runtime behind `handle`, until
/// the runtime begins shutting down.
pub async fn serve(listener: TcpListener, handle: Handle, config: TcpConfig) -> io::Result<()> {
    let config = Arc::new(config);
    chat_runtime::accept_until_closing(listener, &handle, "line", |stream, peer| {
        let (handle, config) = (handle.clone(), config.clone());
        async move {
            // Without it, small lines wait for delayed ACKs (40 ms on Linux).
            let _ = stream.set_nodelay(true);
            tracing::debug!(%peer, "line client connected");
            session::run(stream, &handle, config, ClientInfo::from_addr(peer)).await;
        }
    })
    .await
}
