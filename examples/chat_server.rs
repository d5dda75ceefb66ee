//! The bundled chat server: every option listed in the protocol reference (`docs/protocol.md`).
//!
//! ```sh
//! cargo run --release --example chat_server -- --help
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chat_engine::cluster::ClusterOptions;
use chat_engine::core::{Config, DEFAULT_LARGE_ROOM, DEFAULT_RESUME_LIMIT, RoomName};
use chat_engine::runtime::RuntimeConfig;
use chat_engine::server::{self, ServerConfig, StoreChoice};
use chat_engine::tcp::TcpConfig;
use chat_engine::tls::TlsFiles;
use chat_engine::ws::WsConfig;
use clap::Parser;

/// A chat server: WebSocket (JSON frames) and line TCP clients in the same rooms.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// WebSocket listener address, or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    ws: String,
    /// Line TCP listener address, or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9999")]
    tcp: String,
    /// JSON-file store directory.
    #[arg(long, value_name = "DIR", default_value = "./chat-data")]
    data: PathBuf,
    /// Use the in-memory store instead (nothing survives a restart).
    #[arg(long)]
    memory: bool,
    /// Messages kept in memory per room.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    history: usize,
    /// Messages sent to a user who joins a room.
    #[arg(long, value_name = "N", default_value_t = 5)]
    join_history: usize,
    /// Room joined at login by guests and at an account's first login, or `off`.
    #[arg(long, value_name = "NAME", default_value = "general")]
    default_room: String,
    /// DMs kept per offline name.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    mailbox: usize,
    /// Outbound queue per connection, in bytes of encoded frames.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    outbox: usize,
    /// Largest WebSocket frame, or TCP line without its line end, accepted.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    max_frame: usize,
    /// Frames or lines per second per connection, bursts up to 2N (0 disables).
    #[arg(long, value_name = "N", default_value_t = 50)]
    rate_limit: u32,
    /// Open connections, both transports together.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Whether a name without an account may log in.
    #[arg(
        long,
        value_name = "on|off",
        default_value = "on",
        value_parser = on_off,
        action = clap::ArgAction::Set
    )]
    guests: bool,
    /// Sessions (connections) one account may have at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_sessions: usize,
    /// Messages per room (and DMs) a login or join with `since` catches up at most; past it the
    /// client pages.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RESUME_LIMIT)]
    resume_limit: usize,
    /// Members past which a room is large: joins and leaves are not announced, and `joined`
    /// lists only this many members (with `member_count`).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LARGE_ROOM)]
    large_room: usize,
    /// HS256 secret (the file's content without its trailing newline); enables token logins.
    #[arg(long, value_name = "FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, both listeners speak TLS (wss://, TLS lines).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, RSA or SEC1) of the --tls-cert certificate.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Cluster mode: every server started with the same Redis is one chat; Redis is the store
    /// and the bus (--data and --memory do not apply).
    #[arg(long, value_name = "URL", conflicts_with_all = ["data", "memory"])]
    redis: Option<String>,
    /// Cluster: how long a silent node's users stay present, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "redis")]
    node_timeout: u64,
    /// Threads that run the server (0: one per CPU this process may use). With 1, everything
    /// runs on one thread, with no hand-offs between threads.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

/// What to log: `RUST_LOG` (default `info`), except that the WebSocket and HTTP libraries never
/// log above `info`. At `trace` they print every frame a client sends, passwords and tokens
/// included, and no password or token may ever reach the log.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    [
        "tungstenite=info",
        "tokio_tungstenite=info",
        "hyper=info",
        "hyper_util=info",
    ]
    .into_iter()
    .filter_map(|directive| directive.parse().ok())
    .fold(filter, |filter, directive| filter.add_directive(directive))
}

/// `on` or `off`.
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} is neither on nor off")),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter())
        .init();
    let runtime = match runtime_builder(options.threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat_server: cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat_server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The tokio runtime for `threads` threads (0: the CPUs this process may use).
///
/// On one CPU (a container's share, or a server pinned to a core) a multi-threaded runtime
/// still runs its worker beside the main thread, and every broadcast then hands work between
/// them on the one core: measured at 1,000 receivers and 1 M deliveries/s, that tripled the
/// p99 latency. A current-thread runtime runs the connections, the core and the delivery on
/// one thread, the layout of a minimal fan-out server.
fn runtime_builder(threads: usize) -> tokio::runtime::Builder {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let default_room = match options.default_room.as_str() {
        "off" => None,
        name => Some(RoomName::parse(name).map_err(|e| format!("--default-room: {e}"))?),
    };
    let tls = match (options.tls_cert, options.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }.load()?),
        (None, None) => None,
        (Some(_), None) => {
            return Err("--tls-cert needs --tls-key (the certificate's private key)".into());
        }
        (None, Some(_)) => return Err("--tls-key needs --tls-cert (the certificate chain)".into()),
    };
    let listener = |addr: String| (addr != "off").then_some(addr);
    let config = ServerConfig {
        ws: listener(options.ws),
        tcp: listener(options.tcp),
        store: match options.redis {
            Some(url) => {
                let mut cluster = ClusterOptions::new(url);
                cluster.node_timeout = Duration::from_secs(options.node_timeout.max(1));
                StoreChoice::Redis(cluster)
            }
            None if options.memory => StoreChoice::Memory,
            None => StoreChoice::JsonFile(options.data),
        },
        chat: Config {
            default_room,
            history: options.history,
            join_history: options.join_history,
            mailbox: options.mailbox,
            guests: options.guests,
            max_sessions: options.max_sessions,
            resume_limit: options.resume_limit,
            large_room: options.large_room,
            ..Config::default()
        },
        jwt_secret_file: options.jwt_secret_file,
        limits: RuntimeConfig {
            outbox_bytes: options.outbox,
            max_connections: options.max_connections,
            rate_limit: options.rate_limit,
            ..RuntimeConfig::default()
        },
        ws_config: WsConfig {
            max_frame: options.max_frame,
            ..WsConfig::default()
        },
        tcp_config: TcpConfig {
            max_line: options.max_frame,
            ..TcpConfig::default()
        },
        tls,
        announce: true,
        ..ServerConfig::default()
    };
    let signal = shutdown_signal()?;
    Ok(server::run(config, signal).await?)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed before it returns, so a
/// signal that comes while the server starts is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
