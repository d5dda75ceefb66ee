//! The bundled server as a library call: [`run`] opens the store, starts the runtime, serves
//! both transports, and on `shutdown` stops accepting, stores everything, closes every client
//! (WebSocket close code 1001) and waits for them to go.
//!
//! `examples/chat_server.rs` is this plus argument parsing; an application that wants the same
//! server inside its own process calls [`run`] with its own shutdown future:
//!
//! ```no_run
//! use chat_engine::server::{ServerConfig, StoreChoice, run};
//!
//! # async fn example() -> Result<(), chat_engine::server::ServerError> {
//! let config = ServerConfig {
//!     store: StoreChoice::Memory,
//!     ..ServerConfig::default()
//! };
//! run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_auth::Accounts;
use chat_core::Config;
use chat_runtime::{Runtime, RuntimeConfig, RuntimeError};
use chat_store::{JsonFileStore, MemoryStore, Store, StoreError};
use chat_transport_tcp::TcpConfig;
use chat_transport_ws::WsConfig;
use tokio::net::TcpListener;

/// Where the server keeps what must survive a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The crash-safe JSON-lines store in this directory (`--data`).
    JsonFile(PathBuf),
    /// Memory only: nothing survives a restart (`--memory`).
    Memory,
}

/// Everything [`run`] needs. The default is the bundled server's defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The WebSocket listener's address (`--ws`), or `None` for none.
    pub ws: Option<String>,
    /// The line TCP listener's address (`--tcp`), or `None` for none.
    pub tcp: Option<String>,
    /// The store.
    pub store: StoreChoice,
    /// The HS256 secret for token logins is the content of this file, without its trailing
    /// newline (`--jwt-secret-file`); `None`: no token logins. Accounts with passwords are
    /// always on; whether guests may log in is [`Config::guests`] (`--guests`).
    pub jwt_secret_file: Option<PathBuf>,
    /// The chat's rules (history, mailboxes, default room, …).
    pub chat: Config,
    /// Per-connection limits.
    pub limits: RuntimeConfig,
    /// The WebSocket transport's settings.
    pub ws_config: WsConfig,
    /// The line transport's settings.
    pub tcp_config: TcpConfig,
    /// How long shutdown waits for clients to take their last frames (5 s).
    pub drain: Duration,
    /// Print `listening ws://HOST:PORT/chat` and `listening tcp://HOST:PORT` on standard output
    /// once each listener accepts connections, as the bundled server does for scripts to wait
    /// on.
    pub announce: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ws: Some("127.0.0.1:8765".into()),
            tcp: Some("127.0.0.1:9999".into()),
            store: StoreChoice::JsonFile("./chat-data".into()),
            jwt_secret_file: None,
            chat: Config::default(),
            limits: RuntimeConfig::default(),
            ws_config: WsConfig::default(),
            tcp_config: TcpConfig::default(),
            drain: Duration::from_secs(5),
            announce: false,
        }
    }
}

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration contradicts itself; the text says how.
    #[error("{0}")]
    Config(String),
    /// Both listeners are off.
    #[error("every listener is off; nothing to serve")]
    NoListener,
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The runtime failed to start or to stop cleanly.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A listener failed while serving.
    #[error("a listener failed: {0}")]
    Listener(#[from] io::Error),
    /// A listener's task panicked.
    #[error("a listener's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the bundled server until `shutdown` resolves, then shuts it down gracefully: stops
/// accepting, stores and flushes everything, closes every client after its queued frames, and
/// waits (at most [`ServerConfig::drain`]) for them to go.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    if config.chat.join_history > config.chat.history {
        return Err(ServerError::Config(format!(
            "join history ({}, --join-history) is more than history ({}, --history): joiners get \
             messages from memory",
            config.chat.join_history, config.chat.history
        )));
    }
    let ws = bind(config.ws.as_deref()).await?;
    let tcp = bind(config.tcp.as_deref()).await?;
    if ws.is_none() && tcp.is_none() {
        return Err(ServerError::NoListener);
    }
    let jwt_secret = match &config.jwt_secret_file {
        Some(path) => {
            Some(chat_auth::read_jwt_secret(path).map_err(|e| ServerError::Config(e.to_string()))?)
        }
        None => None,
    };
    let store: Arc<dyn Store> = match &config.store {
        StoreChoice::Memory => Arc::new(MemoryStore::new()),
        StoreChoice::JsonFile(dir) => Arc::new(JsonFileStore::open(dir).await?),
    };
    let mut accounts = Accounts::new(store.clone());
    if let Some(secret) = jwt_secret {
        accounts = accounts.with_jwt_secret(secret);
    }
    let runtime =
        Runtime::start_with(config.chat, store, config.limits, Arc::new(accounts)).await?;
    let handle = runtime.handle();

    let mut listeners = Vec::new();
    if let Some(listener) = ws {
        let url = format!("ws://{}/chat", display(listener.local_addr()?));
        let serving = chat_transport_ws::serve(listener, handle.clone(), config.ws_config);
        listeners.push(tokio::spawn(serving));
        announced(config.announce, &url);
    }
    if let Some(listener) = tcp {
        let url = format!("tcp://{}", display(listener.local_addr()?));
        let serving = chat_transport_tcp::serve(listener, handle.clone(), config.tcp_config);
        listeners.push(tokio::spawn(serving));
        announced(config.announce, &url);
    }

    shutdown.await;
    tracing::info!("shutting down: flushing the store and closing connections");
    runtime.shutdown().await?;
    for listener in listeners {
        listener.await??;
    }
    // Let the connections write their last frames and close frames before returning.
    handle.wait_idle(config.drain).await;
    Ok(())
}

/// Binds `addr`, if there is one.
async fn bind(addr: Option<&str>) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Logs the listener, and prints the `listening …` line scripts wait for when asked to.
fn announced(print: bool, url: &str) {
    tracing::info!(%url, "listening");
    if print {
        use std::io::Write;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "listening {url}");
        let _ = out.flush();
    }
}

fn display(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}
