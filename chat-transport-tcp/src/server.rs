//! The accept loop: one task per line client, on plain TCP ([`serve`]) or TLS ([`serve_tls`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chat_runtime::{Handle, Handshake};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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
    /// How long a client of [`serve_tls`] may take to finish its TLS handshake (10 s, as
    /// `WsConfig::handshake_timeout`); one that is silent or slow for longer is disconnected.
    pub handshake_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_line: 65_536,
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30 * 60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts line clients on `listener` and attaches each to the runtime behind `handle`, until
/// the runtime begins shutting down.
pub async fn serve(listener: TcpListener, handle: Handle, config: TcpConfig) -> io::Result<()> {
    let config = Arc::new(config);
    chat_runtime::accept_until_closing(listener, &handle, "line", |stream, peer| {
        session::run_tcp(stream, &handle, config.clone(), Some(peer))
    })
    .await
}

/// [`serve`] with TLS: each client first completes a TLS handshake with `acceptor`, in its own
/// task and within [`TcpConfig::handshake_timeout`], and then speaks lines inside TLS
/// (`openssl s_client -quiet -connect HOST:PORT` is a client). A client that does not speak TLS
/// (plain lines, HTTP, silence) gets no prompt: it is disconnected, with one log line.
pub async fn serve_tls(
    listener: TcpListener,
    handle: Handle,
    config: TcpConfig,
    acceptor: TlsAcceptor,
) -> io::Result<()> {
    let config = Arc::new(config);
    let handshake = Handshake::tls(config.handshake_timeout, move |stream| {
        acceptor.accept(stream)
    });
    let sessions = handle.clone();
    chat_runtime::accept_with_handshake_until_closing(
        listener,
        &handle,
        "line",
        handshake,
        move |stream, peer| session::run(stream, &sessions, config.clone(), Some(peer)),
    )
    .await
}
