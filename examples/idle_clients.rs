//! Measures what an idle, logged-in WebSocket connection costs the server: opens N connections,
//! logs each in, and reads the server's resident memory (VmRSS, from /proc) before and after.
//!
//! ```sh
//! cargo run --release --example chat_server -- --memory --ws 127.0.0.1:8765 --tcp off \
//!     --max-connections 20000 --default-room off &
//! cargo run --release --example idle_clients -- --pid $! --count 10000
//! ```
//!
//! Connections are spread over the source addresses 127.0.0.1, 127.0.0.2, … (20,000 each), so
//! counts beyond one address's port range work. Loopback only.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use chat_engine::core::{Command, Event};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "Measure the server's memory per idle WebSocket connection")]
struct Options {
    /// The server's WebSocket address (loopback).
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// The server's process id, to read its memory.
    #[arg(long)]
    pid: u32,
    /// How many idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    count: u32,
}

fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    if !options.addr.ip().is_loopback() {
        return Err("only loopback addresses are measured".into());
    }
    let before = rss_kib(options.pid)?;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(options.count as usize);
    for i in 0..options.count {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i / 20_000) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        let stream = socket.connect(options.addr).await?;
        let url = format!("ws://{}/chat", options.addr);
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        let login = serde_json::to_string(&Command::Login {
            name: format!("idle{i}"),
        })?;
        ws.send(Message::text(login)).await?;
        // Wait for the welcome, so the login is complete before the next connection.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(Event::Welcome { .. }) = serde_json::from_str(text.as_str()) {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the server closed a connection".into()),
            }
        }
        clients.push(ws);
    }
    let after = rss_kib(options.pid)?;
    let per = (after.saturating_sub(before)) as f64 / f64::from(options.count.max(1));
    println!(
        "{} idle logged-in connections in {:.1} s: server RSS {} KiB -> {} KiB, {:.2} KiB per connection",
        options.count,
        started.elapsed().as_secs_f64(),
        before,
        after,
        per
    );
    Ok(())
}
