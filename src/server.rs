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
use chat_cluster::{ClusterError, ClusterNode, ClusterOptions};
use chat_core::Config;
use chat_runtime::{Runtime, RuntimeConfig, RuntimeError};
use chat_store::{JsonFileStore, MemoryStore, Store, StoreError};
use chat_transport_tcp::TcpConfig;
use chat_transport_ws::WsConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Where the server keeps what must survive a restart.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// The crash-safe JSON-lines store in this directory (`--data`).
    JsonFile(PathBuf),
    /// Memory only: nothing survives a restart (`--memory`).
    Memory,
    /// Cluster mode (`--redis`): this server is one node of the chat on this Redis, which is
    /// its store and its bus.
    Redis(ClusterOptions),
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
    /// TLS on both listeners (`--tls-cert`, `--tls-key`), or `None` for plain TCP. With it the
    /// WebSocket listener serves `wss://HOST:PORT/chat` and the page over `https://`, the line
    /// listener lines inside TLS, and a client that does not speak TLS is disconnected.
    /// [`TlsFiles::load`](crate::tls::TlsFiles::load) makes one from PEM files.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Print `listening ws://HOST:PORT/chat` and `listening tcp://HOST:PORT` (`wss://` and
    /// `tls://` with TLS) on standard output once each listener accepts connections, as the
    /// bundled server does for scripts to wait on.
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
            tls: None,
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
    /// The node could not join its cluster.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
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
/// waits (at most [`ServerConfig::drain`]) for them to go. [`Server::start`] and
/// [`Server::run_until`] are the same in two steps, for a caller that needs the bound addresses.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::start(config).await?.run_until(shutdown).await
}

/// A started bundled server: its listeners are bound and accepting, its runtime is running.
/// Ask it which addresses it bound (port 0 picks a free one), then run it until shutdown.
///
/// ```no_run
/// use chat_engine::server::{Server, ServerConfig, StoreChoice};
///
/// # async fn example() -> Result<(), chat_engine::server::ServerError> {
/// let config = ServerConfig {
///     ws: Some("127.0.0.1:0".into()),
///     tcp: None,
///     store: StoreChoice::Memory,
///     ..ServerConfig::default()
/// };
/// let server = Server::start(config).await?;
/// println!("chat at ws://{}/chat", server.ws_addr().expect("the WebSocket listener is on"));
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct Server {
    runtime: Runtime,
    /// The cluster node, in cluster mode: it leaves the cluster after the runtime stops.
    node: Option<ClusterNode>,
    listeners: Vec<tokio::task::JoinHandle<io::Result<()>>>,
    ws: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    drain: Duration,
}

impl Server {
    /// Checks `config`, binds the listeners, opens the store, starts the runtime and begins
    /// accepting connections (announcing each listener, when [`ServerConfig::announce`] says
    /// so).
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        if config.chat.join_history > config.chat.history {
            return Err(ServerError::Config(format!(
                "join history ({}, --join-history) is more than history ({}, --history): \
                 joiners get messages from memory",
                config.chat.join_history, config.chat.history
            )));
        }
        let ws = bind(config.ws.as_deref()).await?;
        let tcp = bind(config.tcp.as_deref()).await?;
        if ws.is_none() && tcp.is_none() {
            return Err(ServerError::NoListener);
        }
        let jwt_secret = match &config.jwt_secret_file {
            Some(path) => Some(
                chat_auth::read_jwt_secret(path).map_err(|e| ServerError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let accounts = |store: Arc<dyn Store>| {
            let accounts = Accounts::new(store);
            Arc::new(match jwt_secret {
                Some(secret) => accounts.with_jwt_secret(secret),
                None => accounts,
            })
        };
        let (runtime, node) = match &config.store {
            StoreChoice::Redis(options) => {
                let joined = ClusterNode::join(options, config.chat).await?;
                let authenticator = accounts(joined.store.clone());
                let runtime = Runtime::replica(
                    joined.chat,
                    joined.store,
                    config.limits,
                    authenticator,
                    joined.replication,
                );
                (runtime, Some(joined.node))
            }
            choice => {
                let store: Arc<dyn Store> = match choice {
                    StoreChoice::JsonFile(dir) => Arc::new(JsonFileStore::open(dir).await?),
                    _ => Arc::new(MemoryStore::new()),
                };
                let authenticator = accounts(store.clone());
                let runtime =
                    Runtime::start_with(config.chat, store, config.limits, authenticator).await?;
                (runtime, None)
            }
        };
        let handle = runtime.handle();

        let acceptor = config.tls.map(TlsAcceptor::from);
        let mut listeners = Vec::new();
        let mut ws_addr = None;
        let mut tcp_addr = None;
        if let Some(listener) = ws {
            let addr = listener.local_addr()?;
            let scheme = if acceptor.is_some() { "wss" } else { "ws" };
            let url = format!("{scheme}://{}/chat", display(addr));
            let (handle, ws_config) = (handle.clone(), config.ws_config);
            listeners.push(match &acceptor {
                Some(tls) => tokio::spawn(chat_transport_ws::serve_tls(
                    listener,
                    handle,
                    ws_config,
                    tls.clone(),
                )),
                None => tokio::spawn(chat_transport_ws::serve(listener, handle, ws_config)),
            });
            warn_if_in_clear(addr, &url, acceptor.is_some());
            announced(config.announce, &url);
            ws_addr = Some(addr);
        }
        if let Some(listener) = tcp {
            let addr = listener.local_addr()?;
            let scheme = if acceptor.is_some() { "tls" } else { "tcp" };
            let url = format!("{scheme}://{}", display(addr));
            let (handle, tcp_config) = (handle.clone(), config.tcp_config);
            listeners.push(match &acceptor {
                Some(tls) => tokio::spawn(chat_transport_tcp::serve_tls(
                    listener,
                    handle,
                    tcp_config,
                    tls.clone(),
                )),
                None => tokio::spawn(chat_transport_tcp::serve(listener, handle, tcp_config)),
            });
            warn_if_in_clear(addr, &url, acceptor.is_some());
            announced(config.announce, &url);
            tcp_addr = Some(addr);
        }
        Ok(Server {
            runtime,
            node,
            listeners,
            ws: ws_addr,
            tcp: tcp_addr,
            drain: config.drain,
        })
    }

    /// The address the WebSocket listener bound, if it is on.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws
    }

    /// The address the line listener bound, if it is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The runtime's handle: attach in-process clients (a bot) beside the listeners.
    pub fn handle(&self) -> chat_runtime::Handle {
        self.runtime.handle()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully (see [`run`]).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        shutdown.await;
        tracing::info!("shutting down: flushing the store and closing connections");
        let handle = self.runtime.handle();
        if let Some(node) = &self.node {
            node.stop();
        }
        self.runtime.shutdown().await?;
        if let Some(node) = self.node {
            node.leave().await;
        }
        for listener in self.listeners {
            listener.await??;
        }
        // Let the connections write their last frames and close frames before returning.
        handle.wait_idle(self.drain).await;
        Ok(())
    }
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

/// Warns (once, at start) about a listener that other machines can reach and that speaks no
/// TLS: accounts and passwords are on by default, and they would cross the network in clear.
fn warn_if_in_clear(addr: SocketAddr, url: &str, tls: bool) {
    if in_clear(addr, tls) {
        tracing::warn!(
            %url,
            "this listener is not on a loopback address and has no TLS: passwords and messages \
             cross the network in clear; give the server a certificate (--tls-cert and \
             --tls-key) or put a TLS proxy in front"
        );
    }
}

/// Whether a listener on `addr` would carry passwords in clear to other machines.
fn in_clear(addr: SocketAddr, tls: bool) -> bool {
    !tls && !addr.ip().to_canonical().is_loopback()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listeners_beyond_loopback_without_tls_are_in_clear() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        for loopback in [
            "127.0.0.1:9999",
            "127.1.2.3:0",
            "[::1]:8765",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(!in_clear(addr(loopback), false), "{loopback}");
        }
        for exposed in [
            "0.0.0.0:9999",
            "[::]:8765",
            "192.0.2.7:80",
            "[2001:db8::1]:443",
        ] {
            assert!(in_clear(addr(exposed), false), "{exposed}");
            assert!(!in_clear(addr(exposed), true), "{exposed} with TLS");
        }
    }
}
