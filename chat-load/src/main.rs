//! `chat-load`: drives a running chat server over either transport and reports what one room's
//! fan-out costs: deliveries per second, delivery latency percentiles, lost, duplicated and
//! reordered messages, the server's memory and CPU, and its own CPU (a figure set by a saturated
//! load tool is not the server's). `--idle N` measures memory per idle connection instead.
//!
//! ```sh
//! cargo run --release -p chat-load -- --receivers 1000 --senders 10 --duration 10 --pid PID
//! cargo run --release -p chat-load -- --tcp 127.0.0.1:9999 --rate 2000 --duration 10
//! cargo run --release -p chat-load -- --idle 10000 --pid PID
//! cargo run --release -p chat-load -- --rate 200 --duration 10 --pid PID --pager archive
//! cargo run --release -p chat-load -- floor --listen 127.0.0.1:0
//! ```
//!
//! Every text carries its sender, a per-sender sequence number and the instant it was sent, so
//! each receiver measures latency and checks order on its own; the load is closed-loop by default
//! (at most `--window` messages not yet delivered to every receiver) or a fixed `--rate` (the
//! senders take turns, evenly spaced). Only loopback addresses are accepted, and every run is
//! bounded by `--duration`. `--pager ROOM` adds one client that pages through a room's stored
//! history meanwhile (see `pager.rs`).
//!
//! `chat-load floor` serves the floor instead (see `floor.rs`): a minimal single-threaded line
//! fan-out server that chat-load drives with `--tcp`, so that the chat server's latency can be
//! given as a ratio to the least any line fan-out costs on the same machine, in the same run.
//!
//! Every report gives the server's CPU and chat-load's own, each also as a share of the cores it
//! can use, the CPU other processes used meanwhile, and marks a run as load-tool-bound when
//! chat-load's share is above 90% (see `report.rs`).

mod client;
mod floor;
mod pager;
mod probe;
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
    /// WebSocket endpoint to drive (the default transport).
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8765/chat")]
    pub(crate) ws: String,
    /// Drive the line TCP transport at this address instead.
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<SocketAddr>,
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
    /// Closed loop: messages in flight (sent, not yet delivered to every receiver).
    #[arg(long, default_value_t = 64)]
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
    /// The server's process id, to report its memory and CPU.
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Instead of a load: open this many idle, logged-in connections and report the server's
    /// memory per connection (needs --pid; run the server with --default-room off, so that
    /// logins do not fill the idle clients' queues with presence).
    #[arg(long, value_name = "N")]
    pub(crate) idle: Option<usize>,
    /// During the load, one more client (`pager`) reads this room's whole history, page by page
    /// from the newest to the oldest and round again (WebSocket only; the room needs history
    /// and must differ from --room).
    #[arg(long, value_name = "ROOM")]
    pub(crate) pager: Option<String>,
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
