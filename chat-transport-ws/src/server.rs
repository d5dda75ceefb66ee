//! The WebSocket listener: the transport's settings, and [`serve`], which answers each accepted
//! socket with hyper (`http.rs`): the chat on the upgrade path, the browser page beside it;
//! [`serve_tls`] does the same inside TLS (`wss://`, `https://`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chat_runtime::{Handle, Handshake};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The WebSocket transport's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// The path upgrades are accepted on (`/chat`); upgrades on other paths get HTTP 404.
    pub path: String,
    /// The largest frame (message) accepted, in bytes (`--max-frame`, 65,536). A larger one
    /// closes the connection with code 1009.
    pub max_frame: usize,
    /// How often an otherwise quiet connection is pinged (30 s).
    pub ping_interval: Duration,
    /// A connection that sends nothing, not even a pong, for this long is closed (75 s).
    pub idle_timeout: Duration,
    /// How long one batched write may take before the client is treated as gone (10 s).
    pub write_timeout: Duration,
    /// How long a client may take to send an HTTP request head, the upgrade's included (10 s);
    /// with [`serve_tls`], also how long it may take to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// tungstenite's read buffer per connection (1 KiB rather than its default 128 KiB, so an
    /// idle connection costs little memory).
    pub read_buffer: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            path: "/chat".into(),
            max_frame: 65_536,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_buffer: 1024,
        }
    }
}

/// Accepts connections on `listener` and serves each (the chat on [`WsConfig::path`], the
/// browser page on `/`), attaching chat clients to the runtime behind `handle`, until the
/// runtime begins shutting down. Connections already open are closed by the runtime's
/// shutdown (code 1001).
pub async fn serve(listener: TcpListener, handle: Handle, config: WsConfig) -> io::Result<()> {
    let config = Arc::new(config);
    chat_runtime::accept_until_closing(listener, &handle, "ws", |stream, peer| {
        crate::http::serve_socket(stream, peer, handle.clone(), config.clone())
    })
    .await
}

/// [`serve`] with TLS: each connection first completes a TLS handshake with `acceptor`, in its
/// own task and within [`WsConfig::handshake_timeout`], and then gets the same answers inside
/// TLS (the chat at `wss://HOST:PORT/chat`, the page at `https://HOST:PORT/`). A client that
/// does not speak TLS (plain HTTP, silence) gets no HTTP answer: it is disconnected, with one
/// log line.
pub async fn serve_tls(
    listener: TcpListener,
    handle: Handle,
    config: WsConfig,
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
        "ws",
        handshake,
        move |stream, peer| {
            crate::http::serve_socket(stream, peer, sessions.clone(), config.clone())
        },
    )
    .await
}
