//! Slow consumers, measured: many WebSocket clients in one room, a few senders saying
//! timestamped messages at a steady rate, and some clients that log in and then never read
//! again. Prints the delivery latency the reading clients saw (p50, p99, p99.9, max), whether
//! every reading client got every message, and when the server disconnected each stalled
//! client. `scripts/slow-consumers.sh` runs it twice, without and with stalled clients, against
//! a fresh release server each time, and compares the two p99s.
//!
//! ```sh
//! target/release/examples/chat_server --memory --tcp off --ws 127.0.0.1:0 &   # prints its URL
//! target/release/examples/slow_consumers --url ws://127.0.0.1:PORT/chat --clients 1000 --stalled 10
//! ```
//!
//! Latency is measured from the send time embedded in each text (microseconds since the Unix
//! epoch; senders and receivers are in this process, so they share the clock) to its arrival at
//! each reading client. Only messages sent after the warm-up count. A stalled client's
//! disconnection is observed through the protocol itself: a probe client DMs each stalled client
//! every 250 ms, and the first DM that comes back `queued` (the name is no longer online) marks
//! the moment, to within 250 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::Event;
use clap::Parser;
use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// Measures delivery latency with and without clients that stop reading.
#[derive(Debug, Parser)]
struct Options {
    /// The server's WebSocket URL.
    #[arg(long)]
    url: String,
    /// Clients in the room, stalled ones included.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Clients that log in and then never read.
    #[arg(long, default_value_t = 10)]
    stalled: usize,
    /// Clients that say messages (they read too).
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second per sender.
    #[arg(long, default_value_t = 2.5)]
    rate: f64,
    /// Bytes of each text (timestamp and padding).
    #[arg(long, default_value_t = 2000)]
    text_bytes: usize,
    /// Seconds of sending before latency counts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of sending that count.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// SO_RCVBUF of the stalled clients in bytes (0: the system's default).
    #[arg(long, default_value_t = 0)]
    stall_rcvbuf: u32,
    /// Names are prefixed with this, so runs against one server do not collide.
    #[arg(long, default_value = "sc")]
    prefix: String,
}

/// What one reading client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Latency of each counted delivery, in microseconds, with the second (since latency began
    /// to count) in which the message was sent.
    latencies: Vec<(u32, u32)>,
    /// Messages received per sender (the highest sequence number + 1 if none is missing).
    per_sender: Vec<u64>,
    /// Messages received out of sequence (a gap or a repeat).
    out_of_sequence: u64,
    /// Messages received per sender, counted.
    counts: Vec<u64>,
    /// The first few messages out of sequence: (sender, expected, got, id).
    anomalies: Vec<(usize, u64, u64, u64)>,
    /// Stalled clients found disconnected (probe only): index and seconds after the stall.
    disconnected: Vec<(usize, f64)>,
    /// Messages said (senders only), with the sender's index.
    said: Option<(usize, u64)>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn say(text: &str) -> String {
    json!({"type": "say", "room": "general", "text": text}).to_string()
}

async fn login(url: &str, name: &str) -> Result<WsClient, Box<dyn std::error::Error>> {
    let mut client = WsClient::connect(url).await?;
    client
        .send_text(&json!({"type": "login", "name": name}).to_string())
        .await?;
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(30), client.recv()).await?? {
            Incoming::Event { .. } => {}
            other => return Err(format!("{name}: no welcome: {other:?}").into()),
        }
    }
    Ok(client)
}

/// Logs in and never reads again; the socket stays open until the end of the run.
async fn stalled_login(
    url: &str,
    name: &str,
    rcvbuf: u32,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Box<dyn std::error::Error>> {
    let addr: SocketAddr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or("a ws://HOST:PORT/… URL")?
        .parse()?;
    let socket = TcpSocket::new_v4()?;
    if rcvbuf > 0 {
        socket.set_recv_buffer_size(rcvbuf)?;
    }
    let stream = socket.connect(addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    ws.send(Message::text(
        json!({"type": "login", "name": name}).to_string(),
    ))
    .await?;
    Ok(ws)
}

/// The roles a reading client may also have.
enum Role {
    Reader,
    /// Says a message every `1/rate` seconds until the end, then `end`.
    Sender {
        index: usize,
    },
    /// DMs every stalled client that is still online every 250 ms.
    Probe {
        stalled: Vec<String>,
    },
}

async fn run_client(
    mut client: WsClient,
    role: Role,
    options: Arc<Options>,
    mut start: watch::Receiver<Option<(u64, Instant)>>,
    stop_sending: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen {
        per_sender: vec![0; options.senders],
        counts: vec![0; options.senders],
        ..Seen::default()
    };
    // Wait for the start signal, reading what arrives meanwhile (presence of later logins). A
    // room message means the start has come (senders begin after it): keep it for below.
    let mut pending = None;
    let (count_from, stall_start) = loop {
        if let Some(start) = *start.borrow() {
            break start;
        }
        tokio::select! {
            changed = start.changed() => if changed.is_err() { return seen },
            incoming = client.recv() => match incoming {
                Ok(message @ Incoming::Event { event: Event::Message(_), .. }) => pending = Some(message),
                Ok(Incoming::Event { .. }) => {}
                _ => return seen,
            },
        }
    };
    let period = Duration::from_secs_f64(1.0 / options.rate);
    let mut tick = match &role {
        Role::Sender { index } => {
            // Senders are staggered over one period.
            let offset = period.mul_f64(*index as f64 / options.senders as f64);
            tokio::time::interval_at(Instant::now() + offset, period)
        }
        Role::Probe { .. } => tokio::time::interval(Duration::from_millis(250)),
        Role::Reader => tokio::time::interval(Duration::from_secs(3600)),
    };
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let padding = "x".repeat(options.text_bytes.saturating_sub(40));
    let mut sequence = 0u64;
    let mut sent_end = false;
    let mut ends = 0;
    let mut online: Vec<bool> = match &role {
        Role::Probe { stalled } => vec![true; stalled.len()],
        _ => Vec::new(),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => match &role {
                Role::Sender { index } if !sent_end => {
                    let text = if stop_sending.load(Ordering::Acquire) {
                        sent_end = true;
                        seen.said = Some((*index, sequence));
                        format!("end {index}")
                    } else {
                        sequence += 1;
                        format!("{index} {} {} {padding}", sequence - 1, now_micros())
                    };
                    if client.send_text(&say(&text)).await.is_err() {
                        return seen;
                    }
                }
                Role::Probe { stalled } => {
                    for (name, _) in stalled.iter().zip(&online).filter(|(_, up)| **up) {
                        let dm = json!({"type": "dm", "to": name, "text": "are you there?"});
                        if client.send_text(&dm.to_string()).await.is_err() {
                            return seen;
                        }
                    }
                }
                _ => {}
            },
            incoming = async {
                match pending.take() {
                    Some(message) => Ok(message),
                    None => client.recv().await,
                }
            } => {
                let event = match incoming {
                    Ok(Incoming::Event { event, .. }) => event,
                    Ok(Incoming::Unknown(_)) => continue,
                    Ok(Incoming::Closed { .. }) | Err(_) => return seen,
                };
                match event {
                    Event::Message(message) => {
                        let arrived = now_micros();
                        let mut words = message.text.as_str().split(' ');
                        let first = words.next().unwrap_or_default();
                        if first == "end" {
                            ends += 1;
                            if ends == options.senders {
                                return seen;
                            }
                            continue;
                        }
                        let (Ok(from), Some(Ok(n)), Some(Ok(sent))) = (
                            first.parse::<usize>(),
                            words.next().map(str::parse::<u64>),
                            words.next().map(str::parse::<u64>),
                        ) else {
                            continue;
                        };
                        let Some(expected) = seen.per_sender.get_mut(from) else { continue };
                        if *expected != n {
                            seen.out_of_sequence += 1;
                            if seen.anomalies.len() < 3 {
                                seen.anomalies.push((from, *expected, n, message.id.get()));
                            }
                        }
                        *expected = n + 1;
                        seen.counts[from] += 1;
                        if sent >= count_from {
                            let latency = arrived.saturating_sub(sent);
                            let second = u32::try_from((sent - count_from) / 1_000_000).unwrap_or(u32::MAX);
                            seen.latencies.push((second, u32::try_from(latency).unwrap_or(u32::MAX)));
                        }
                    }
                    Event::Dm { message, queued: true, .. } => {
                        if let Role::Probe { stalled } = &role
                            && let Some(i) = stalled.iter().position(|s| s == message.to.as_str())
                            && online[i]
                        {
                            online[i] = false;
                            seen.disconnected.push((i, stall_start.elapsed().as_secs_f64()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Arc::new(Options::parse());
    if options.clients < options.senders + options.stalled + 1 {
        return Err("--clients must leave room for the senders, the stalled and a probe".into());
    }
    let readers = options.clients - options.stalled;
    let stalled_names: Vec<String> = (0..options.stalled)
        .map(|i| format!("{}stalled{i}", options.prefix))
        .collect();
    let (start_tx, start_rx) = watch::channel(None);
    let stop_sending = Arc::new(AtomicBool::new(false));

    eprintln!("connecting {readers} reading clients …");
    let mut tasks = Vec::new();
    for i in 0..readers {
        let client = login(&options.url, &format!("{}{i:04}", options.prefix)).await?;
        let role = if i < options.senders {
            Role::Sender { index: i }
        } else if i == options.senders && options.stalled > 0 {
            Role::Probe {
                stalled: stalled_names.clone(),
            }
        } else {
            Role::Reader
        };
        tasks.push(tokio::spawn(run_client(
            client,
            role,
            options.clone(),
            start_rx.clone(),
            stop_sending.clone(),
        )));
    }
    eprintln!("connecting {} stalled clients …", options.stalled);
    let mut stalled = Vec::new();
    for name in &stalled_names {
        stalled.push(stalled_login(&options.url, name, options.stall_rcvbuf).await?);
    }
    let count_from = now_micros() + options.warmup * 1_000_000;
    let _ = start_tx.send(Some((count_from, Instant::now())));
    eprintln!(
        "sending: {} senders × {}/s, {} B texts, {} s warm-up + {} s measured",
        options.senders, options.rate, options.text_bytes, options.warmup, options.seconds
    );
    tokio::time::sleep(Duration::from_secs(options.warmup + options.seconds)).await;
    stop_sending.store(true, Ordering::Release);

    let mut latencies = Vec::new();
    let mut complete = 0;
    let mut out_of_sequence = 0;
    let mut disconnected = Vec::new();
    let mut said = vec![0; options.senders];
    let mut per_client = Vec::new();
    for task in tasks {
        let seen = tokio::time::timeout(Duration::from_secs(120), task).await??;
        latencies.extend_from_slice(&seen.latencies);
        out_of_sequence += seen.out_of_sequence;
        disconnected.extend(seen.disconnected);
        if !seen.anomalies.is_empty() {
            println!(
                "out of sequence at client {}: (sender, expected, got, id) {:?}",
                per_client.len(),
                seen.anomalies
            );
        }
        per_client.push((seen.per_sender, seen.counts, seen.out_of_sequence));
        if let Some((index, count)) = seen.said {
            said[index] = count;
        }
    }
    for (next, counts, anomalies) in &per_client {
        if *next == said && *counts == said && *anomalies == 0 {
            complete += 1;
        }
    }
    drop(stalled);
    // p99 per 10 s of sending, to show when the latency moved (stalls, disconnections).
    let mut windows: Vec<Vec<u32>> = Vec::new();
    for &(second, latency) in &latencies {
        let w = second as usize / 10;
        if windows.len() <= w {
            windows.resize_with(w + 1, Vec::new);
        }
        windows[w].push(latency);
    }
    let series: Vec<String> = windows
        .iter_mut()
        .map(|w| {
            w.sort_unstable();
            format!("{:.0}", percentile(w, 99.0))
        })
        .collect();
    let mut latencies: Vec<u32> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    let total: u64 = said.iter().sum();
    println!(
        "clients {} ({} stalled, stall rcvbuf {}), senders {} × {}/s, text {} B, measured {} s",
        options.clients,
        options.stalled,
        options.stall_rcvbuf,
        options.senders,
        options.rate,
        options.text_bytes,
        options.seconds
    );
    println!(
        "messages said {total}; reading clients with every message, in order: {complete}/{readers}; out of sequence: {out_of_sequence}"
    );
    println!(
        "latency over {} deliveries: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        percentile(&latencies, 100.0)
    );
    println!("p99 per 10 s of sending, ms: {}", series.join(" "));
    disconnected.sort_by(|a, b| a.1.total_cmp(&b.1));
    if options.stalled > 0 {
        let times: Vec<String> = disconnected
            .iter()
            .map(|(_, t)| format!("{t:.1}"))
            .collect();
        println!(
            "stalled clients disconnected: {}/{} after [{}] s",
            disconnected.len(),
            options.stalled,
            times.join(", ")
        );
    }
    println!(
        "RESULT p99_ms={:.3} complete={complete} readers={readers} stalled={} disconnected={} last_disconnect_s={:.1}",
        percentile(&latencies, 99.0),
        options.stalled,
        disconnected.len(),
        disconnected.last().map_or(0.0, |d| d.1)
    );
    Ok(())
}
