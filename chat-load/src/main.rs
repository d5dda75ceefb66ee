//! `chat-load`: drives a running chat server over either transport and reports what one room's
//! fan-out costs: deliveries per second, delivery latency percentiles, lost, duplicated and
//! reordered messages, the server's memory and CPU, and its own CPU (a figure set by a saturated
//! load tool is not the server's). `--idle N` measures memory per idle connection instead.
//!
//! ```sh
//! cargo run --release -p chat-load -- --receivers 1000 --senders 10 --duration 10 --pid PID
//! cargo run --release -p chat-load -- --tcp 127.0.0.1:9999 --rate 2000 --duration 10
//! cargo run --release -p chat-load -- --idle 10000 --pid PID
//! cargo run --release -p chat-load -- --ws URL0,URL1,URL2 --pid P0,P1,P2 \
//!     --redis redis://127.0.0.1:PORT/0 --redis-pid PID
//! cargo run --release -p chat-load -- --ws URL0,URL1,URL2 --pid P0,P1,P2 --idle 50000
//! cargo run --release -p chat-load -- --rate 200 --duration 10 --pid PID --pager archive \
//!     --pager-rate 50
//! cargo run --release -p chat-load -- floor --listen 127.0.0.1:0
//! ```
//!
//! Every text carries its sender, a per-sender sequence number and the instant it was sent, so
//! each receiver measures latency and checks order on its own; the load is closed-loop by default
//! (at most `--window` messages not yet delivered to every receiver) or a fixed `--rate` (the
//! senders take turns, evenly spaced). Only loopback addresses are accepted, and every run is
//! bounded by `--duration`. `--pager ROOM` adds one client that pages through a room's stored
//! history meanwhile, as fast as the server answers or `--pager-rate` pages a second (see
//! `pager.rs`).
//!
//! `chat-load floor` serves the floor instead (see `floor.rs`): a minimal single-threaded line
//! fan-out server that chat-load drives with `--tcp`, so that the chat server's latency can be
//! given as a ratio to the least any line fan-out costs on the same machine, in the same run.
//!
//! Every report gives the server's CPU and chat-load's own, each also as a share of the cores it
//! can use, the CPU other processes used meanwhile, and marks a run as load-tool-bound when
//! chat-load's share is above 90% (see `report.rs`).
//!
//! A cluster (several nodes on one Redis) is driven by giving every node's endpoint: receivers
//! (and idle connections) are spread over them round-robin, senders all use the first, so every
//! delivery on another node went through Redis. With one `--pid` per node the report has each
//! node's CPU and memory and their sum; `--redis-pid` adds Redis's CPU, and `--redis` the Redis
//! commands per message (from `INFO commandstats`, see `redis_stats.rs`). `--idle N` past what
//! one process may hold opens the connections from several chat-load processes (see `idle.rs`).

mod client;
mod floor;
mod idle;
mod inbox;
mod meter;
mod pager;
mod probe;
mod redis_stats;
mod report;
mod run;
mod ws_raw;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load-test a chat server over loopback.
#[derive(Clone, Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub(crate) struct Options {
    /// Something other than a load (a load is the default).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// WebSocket endpoint to drive (the default transport). Repeat it or give a comma-separated
    /// list to drive the nodes of a cluster: receivers and idle connections are spread over them
    /// round-robin, senders (and the pager) all use the first.
    #[arg(
        long,
        value_name = "URL",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8765/chat"
    )]
    pub(crate) ws: Vec<String>,
    /// Drive the line TCP transport at this address instead (repeatable, like --ws).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub(crate) tcp: Vec<SocketAddr>,
    /// Connections that only receive.
    #[arg(long, default_value_t = 1000)]
    pub(crate) receivers: usize,
    /// Connections that send (they receive too, and discard it).
    #[arg(long, default_value_t = 10)]
    pub(crate) senders: usize,
    /// Receivers that log in, join, and then never read (slow consumers).
    #[arg(long, default_value_t = 0)]
    pub(crate) stalled: usize,
    /// Messages per second, all senders together; 0 runs closed-loop at the maximum.
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// At a fixed rate, every sender sends at the same instants (bursts of --senders messages
    /// each period, which the server and chat-load then batch) instead of taking turns.
    #[arg(long)]
    pub(crate) in_phase: bool,
    /// Closed loop: messages in flight (sent, not yet delivered to every receiver). The default
    /// is large enough that the server's core, not the wait for the slowest of 1,000 receivers,
    /// sets the maximum on a 2-core machine; a closed loop's latency is mostly this queue.
    /// A receiver may then be this many messages behind: keep the window times the frame size
    /// (about `--size` plus 100 bytes) under the server's outbox (1 MiB by default), or the
    /// server cuts the receiver off as a slow consumer.
    #[arg(long, default_value_t = 2048)]
    pub(crate) window: usize,
    /// Text size in bytes.
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Seconds of sending (after every connection is set up).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// The room to use.
    #[arg(long, default_value = "general")]
    pub(crate) room: String,
    /// The server's process id, to report its memory and CPU. For a cluster, one per node, in
    /// the order of the endpoints (repeat it or give a comma-separated list): each node's
    /// figures are reported, and their sum.
    #[arg(long, value_delimiter = ',')]
    pub(crate) pid: Vec<u32>,
    /// Redis's process id (a cluster's), to report its CPU too.
    #[arg(long, value_name = "PID")]
    pub(crate) redis_pid: Option<u32>,
    /// A cluster's Redis (`redis://127.0.0.1:PORT/DB`, loopback only): its `INFO commandstats`
    /// before and after the run give the Redis commands per message.
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Instead of a load: open this many idle, logged-in connections and report the server's
    /// memory per connection (needs --pid). With the server's default options they all land in
    /// the default room, which past 500 members is large and announces no joins; the time it
    /// took is a login storm's.
    #[arg(long, value_name = "N")]
    pub(crate) idle: Option<usize>,
    /// --idle: the first connection's number; they are named `idle{K}`, `idle{K+1}`, … (names
    /// are the cluster's, so chat-load processes that share one must not overlap).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) names_from: usize,
    /// --idle: chat-load processes that open the connections between them (default: as few as
    /// the open-file limit allows, each keeping 1,000 files spare).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) processes: Option<u16>,
    /// --idle: this process is one of several (see `idle.rs`): connect, print what it holds,
    /// hold it until standard input closes.
    #[arg(long, hide = true)]
    pub(crate) idle_child: bool,
    /// During the load, one more client (`pager`) reads this room's whole history, page by page
    /// from the newest to the oldest and round again (WebSocket only; the room needs history
    /// and must differ from --room).
    #[arg(long, value_name = "ROOM")]
    pub(crate) pager: Option<String>,
    /// --pager: pages asked per second at most (0: each as soon as the last one is answered, as
    /// fast as the server answers). A paced pager adds a known amount of reading, so its effect
    /// on the broadcast's latency is a stall, not the extra work of an ever faster reader.
    #[arg(long, value_name = "PAGES", default_value_t = 0.0, value_parser = pages_per_second)]
    pub(crate) pager_rate: f64,
    /// Threads that drive the load (1: one `current_thread` runtime). More let chat-load use
    /// more cores where its affinity allows them; its CPU share is then of
    /// min(threads, allowed CPUs) cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: u16,
    /// A label for this run, copied into the JSON line (for plots).
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// What is being driven, copied into the report as `server` (`chat`, or `floor` for
    /// `chat-load floor`), so that a sweep's floor runs are told from the chat server's.
    #[arg(long, value_name = "KIND", default_value = "chat")]
    pub(crate) server_kind: String,
}

/// What chat-load can do besides a load.
#[derive(Clone, Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the floor: a minimal single-threaded line fan-out server to measure the chat
    /// server against (prints `listening tcp://ADDR`, then serves until SIGINT).
    Floor {
        /// Where to listen (loopback only; port 0 picks a free one).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

/// `--pager-rate`: 0, or a rate whose period is a finite number of seconds (at most 1,000 s).
fn pages_per_second(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate == 0.0 || (0.001..=f64::MAX).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not 0 or a rate from 0.001 pages a second up"
        )),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    if let Some(Command::Floor { listen }) = options.command {
        return match floor::main(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("chat-load floor: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = if options.threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(options.threads))
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a tokio runtime starts on this machine");
    match runtime.block_on(run::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-load: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pages_per_second;

    #[test]
    fn a_pager_rate_is_zero_or_a_rate_with_a_finite_period() {
        for good in ["0", "50", "0.5", "0.001"] {
            assert!(pages_per_second(good).is_ok(), "{good}");
        }
        for bad in ["-1", "NaN", "inf", "1e-9", "fast", ""] {
            assert!(pages_per_second(bad).is_err(), "{bad}");
        }
    }
}
