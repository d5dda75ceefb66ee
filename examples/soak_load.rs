//! The soak's load (`scripts/soak.sh` runs it): a running server (`--pid`, for its memory and
//! file descriptors in `/proc`) gets steady chatters for the whole run and waves of thousands of
//! clients that connect, log in, join a room, say something, DM a chatter, and leave (some
//! cleanly, some by dropping the socket), plus a few connections that never complete the
//! WebSocket handshake. It reports the server's RSS at the start, at its peak and at the end
//! after every client left, its open file descriptors at the start and the end, and exits 1 if
//! the sockets and file descriptors did not return to the start's count (the store's open room
//! files apart), if memory at the end is more than 8 MiB above its warm baseline (idle after the
//! tenth wave), or if a chatter lost a message or its connection.
//!
//! ```sh
//! target/release/examples/chat_server --data /tmp/soak --tcp off --default-room off --ws 127.0.0.1:0 &
//! target/release/examples/soak_load --url ws://127.0.0.1:PORT/chat --pid $! --minutes 10
//! ```
//!
//! The server is expected to run with `--default-room off`: the waves join twenty rooms of their
//! own, so that 2,000 logins do not each tell 2,000 members.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::Event;
use clap::Parser;
use serde_json::json;
use tokio::sync::{Barrier, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// A mixed, bounded load against a running server, with its memory and fds watched.
#[derive(Debug, Parser)]
struct Options {
    /// The server's WebSocket URL.
    #[arg(long)]
    url: String,
    /// The server's process id (its /proc entry is read).
    #[arg(long)]
    pid: u32,
    /// How long the waves go on.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Clients that chat for the whole run.
    #[arg(long, default_value_t = 20)]
    chatters: usize,
    /// Messages per second per chatter.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Clients per wave.
    #[arg(long, default_value_t = 2000)]
    wave: usize,
    /// Rooms the waves spread over.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Seconds between waves.
    #[arg(long, default_value_t = 1.0)]
    pause: f64,
    /// Print every Nth wave.
    #[arg(long, default_value_t = 10)]
    every: usize,
    /// Connections per wave that never complete the handshake.
    #[arg(long, default_value_t = 20)]
    half_open: usize,
    /// Allowed RSS growth, in MiB, from the warm baseline (the server idle after the tenth wave,
    /// when the rooms' in-memory histories are full and the allocator has grown its pools for a
    /// wave) to the end, after every client left.
    #[arg(long, default_value_t = 8)]
    rss_slack_mib: u64,
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of `pid`: (all, sockets, the store's data files). The JSON-file store
/// keeps the files it appends to open (a bounded number), so those are counted apart.
fn fds(pid: u32) -> (usize, usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0, 0);
    };
    let (mut all, mut sockets, mut store) = (0, 0, 0);
    for entry in dir.flatten() {
        all += 1;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target.starts_with("socket:") {
            sockets += 1;
        } else if target.contains("/rooms/") || target.contains("/mailboxes/") {
            store += 1;
        }
    }
    (all, sockets, store)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Waits (at most `limit`) until the server has `target` sockets open; returns whether it did.
async fn settle_sockets(pid: u32, target: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if fds(pid).1 == target {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fds(pid).1 == target
}

async fn recv(client: &mut WsClient) -> Result<Event, String> {
    match tokio::time::timeout(Duration::from_secs(60), client.recv()).await {
        Ok(Ok(Incoming::Event { event, .. })) => Ok(event),
        Ok(Ok(Incoming::Unknown(v))) => Err(format!("unknown frame {v}")),
        Ok(Ok(Incoming::Closed { code, reason })) => Err(format!("closed {code:?} {reason}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("nothing for 60 s".into()),
    }
}

async fn send(client: &mut WsClient, frame: serde_json::Value) -> Result<(), String> {
    client
        .send_text(&frame.to_string())
        .await
        .map_err(|e| e.to_string())
}

/// A chatter: says a numbered message every `1/rate` s in `general` until `stop`, then `bye`;
/// reads until it has every chatter's `bye`. Returns (said, received from chatters).
async fn chatter(
    options: Arc<Options>,
    me: usize,
    mut stop: watch::Receiver<bool>,
    everyone_in: Arc<Barrier>,
) -> Result<(u64, u64), String> {
    let name = format!("chatter{me}");
    let mut client = WsClient::connect(&options.url)
        .await
        .map_err(|e| e.to_string())?;
    send(&mut client, json!({"type": "login", "name": name})).await?;
    send(&mut client, json!({"type": "join", "room": "general"})).await?;
    loop {
        if let Event::Joined { .. } = recv(&mut client).await? {
            break;
        }
    }
    // Nobody says anything before every chatter is in the room.
    everyone_in.wait().await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    let (mut said, mut received, mut byes, mut stopping) = (0u64, 0u64, 0, false);
    loop {
        tokio::select! {
            _ = tick.tick(), if !stopping => {
                if *stop.borrow() {
                    stopping = true;
                    send(&mut client, json!({"type": "say", "room": "general", "text": format!("bye {me}")})).await?;
                } else {
                    said += 1;
                    let text = format!("chat {me} {said}");
                    send(&mut client, json!({"type": "say", "room": "general", "text": text})).await?;
                    if said % 30 == 0 {
                        send(&mut client, json!({"type": "history", "room": "general", "limit": 100})).await?;
                    }
                }
            }
            _ = stop.changed(), if !stopping => {}
            event = recv(&mut client) => match event.map_err(|e| format!("{name}: {e}"))? {
                Event::Message(message) if message.text.as_str().starts_with("bye ") => {
                    byes += 1;
                    if byes == options.chatters {
                        let _ = client.close().await;
                        return Ok((said, received));
                    }
                }
                Event::Message(message) if message.text.as_str().starts_with("chat ") => received += 1,
                Event::Error { code, message } => return Err(format!("{name}: error {code:?}: {message}")),
                _ => {}
            }
        }
    }
}

/// One wave client: logs in, joins a room, maybe DMs a chatter, says one message and reads
/// until it is back (then gives back its `connecting` permit); then reads until `go` and leaves,
/// cleanly or by dropping the socket.
async fn wave_client(
    options: Arc<Options>,
    wave: usize,
    i: usize,
    ready: Arc<AtomicUsize>,
    mut go: watch::Receiver<bool>,
    connecting: Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let mut client = WsClient::connect(&options.url)
        .await
        .map_err(|e| e.to_string())?;
    let name = format!("w{wave}x{i}");
    send(&mut client, json!({"type": "login", "name": name})).await?;
    send(
        &mut client,
        json!({"type": "join", "room": format!("wave{}", i % options.rooms)}),
    )
    .await?;
    if i % 10 == 0 {
        let to = format!("chatter{}", i / 10 % options.chatters);
        send(
            &mut client,
            json!({"type": "dm", "to": to, "text": format!("hi from {name}")}),
        )
        .await?;
    }
    let text = format!("{name} was here");
    send(
        &mut client,
        json!({"type": "say", "room": format!("wave{}", i % options.rooms), "text": text}),
    )
    .await?;
    loop {
        match recv(&mut client).await? {
            Event::Message(message) if message.text.as_str() == text => break,
            Event::Error { code, message } => return Err(format!("{name}: {code:?}: {message}")),
            _ => {}
        }
    }
    // Logged in and heard: let the next one connect.
    drop(connecting);
    ready.fetch_add(1, Ordering::AcqRel);
    loop {
        tokio::select! {
            changed = go.changed() => {
                if changed.is_err() || *go.borrow() { break; }
            }
            event = recv(&mut client) => { event?; }
        }
    }
    if i % 3 == 0 {
        drop(client); // abruptly: no close handshake
    } else {
        let _ = client.close().await;
    }
    Ok(())
}

/// One wave: every client connected and logged in at once (the peak), then all gone. Returns
/// the server's RSS at the peak.
async fn run_wave(options: &Arc<Options>, wave: usize) -> Result<u64, String> {
    let ready = Arc::new(AtomicUsize::new(0));
    let (go_tx, go) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(200));
    let mut tasks = Vec::new();
    for i in 0..options.wave {
        let (options, ready, go, connecting) = (
            options.clone(),
            ready.clone(),
            go.clone(),
            connecting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.ok();
            wave_client(options, wave, i, ready, go, permit).await
        }));
    }
    // Half-open: TCP connections that never send the upgrade request.
    let addr = options
        .url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let mut half_open = Vec::new();
    for _ in 0..options.half_open {
        if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await {
            half_open.push(stream);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Acquire) < options.wave {
        if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = rss_kib(options.pid);
    let _ = go_tx.send(true);
    drop(half_open);
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(error) => failures.push(error.to_string()),
        }
    }
    if let Some(first) = failures.first() {
        return Err(format!(
            "wave {wave}: {} of {} clients failed, e.g. {first}",
            failures.len(),
            options.wave
        ));
    }
    Ok(peak)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Arc::new(Options::parse());
    let pid = options.pid;
    let (rss_start, fds_start) = (rss_kib(pid), fds(pid));
    if rss_start == 0 {
        return Err(format!("no process {pid} to watch").into());
    }
    println!(
        "start: RSS {}, {} fds, {} of them sockets ({} chatters, waves of {} clients over {} rooms, {} min)",
        mib(rss_start),
        fds_start.0,
        fds_start.1,
        options.chatters,
        options.wave,
        options.rooms,
        options.minutes
    );
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let (stop_tx, stop) = watch::channel(false);
    let everyone_in = Arc::new(Barrier::new(options.chatters));
    let chatters: Vec<_> = (0..options.chatters)
        .map(|me| {
            let everyone_in = everyone_in.clone();
            tokio::spawn(chatter(options.clone(), me, stop.clone(), everyone_in))
        })
        .collect();
    let sockets_chatting = fds_start.1 + options.chatters;
    if !settle_sockets(pid, sockets_chatting, Duration::from_secs(30)).await {
        return Err(format!("the chatters did not connect: {:?} fds", fds(pid)).into());
    }

    let started = Instant::now();
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    let mut wave = 0;
    let mut idle_after = Vec::new();
    while started.elapsed() < duration {
        let wave_peak = run_wave(&options, wave).await?;
        let settled = settle_sockets(pid, sockets_chatting, Duration::from_secs(30)).await;
        let idle = rss_kib(pid);
        let (all, sockets, store) = fds(pid);
        idle_after.push(idle);
        wave += 1;
        tokio::time::sleep(Duration::from_secs_f64(options.pause)).await;
        if (wave - 1) % options.every != 0 && settled {
            continue;
        }
        println!(
            "wave {:4} at {:5.0} s: peak RSS {}, after it RSS {}, fds {all} ({sockets} sockets, {store} store files){}",
            wave - 1,
            started.elapsed().as_secs_f64(),
            mib(wave_peak),
            mib(idle),
            if settled {
                ""
            } else {
                " (sockets NOT back to the chatters' count)"
            }
        );
    }

    let _ = stop_tx.send(true);
    let mut said = 0;
    let mut received = Vec::new();
    for chatter in chatters {
        let (s, r) = chatter.await??;
        said += s;
        received.push(r);
    }
    settle_sockets(pid, fds_start.1, Duration::from_secs(30)).await;
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));
    sampler.abort();
    let rss_peak = peak.load(Ordering::Relaxed).max(rss_end);

    println!(
        "waves: {wave} of {} clients ({} connections in all, {} half-open)",
        options.wave,
        wave * options.wave + options.chatters,
        wave * options.half_open
    );
    let complete = received.iter().all(|&r| r == said);
    println!("chatters: {said} messages said; every chatter received all of them: {complete}");
    println!(
        "RSS: start {}, peak {}, end {} (after every client left)",
        mib(rss_start),
        mib(rss_peak),
        mib(rss_end)
    );
    println!(
        "fds: start {} ({} sockets, {} store files), end {} ({} sockets, {} store files)",
        fds_start.0, fds_start.1, fds_start.2, fds_end.0, fds_end.1, fds_end.2
    );
    // Back to the start, but for the room files the store keeps open for appending (bounded).
    let fds_ok = fds_end.1 == fds_start.1 && fds_end.0 - fds_end.2 == fds_start.0 - fds_start.2;
    // The warm baseline: idle after the tenth wave (or the last, in a short run). The cold start
    // is no baseline for RSS: the bounded state (up to `--history` messages in memory per room)
    // fills during the first waves, and the allocator keeps the memory a wave's connections
    // used for the next wave rather than returning it to the system.
    let warm = idle_after
        .get(9)
        .or(idle_after.last())
        .copied()
        .unwrap_or(rss_start);
    println!(
        "RSS warm baseline (idle after wave {}): {}",
        idle_after.len().min(10).saturating_sub(1),
        mib(warm)
    );
    let rss_ok = rss_end <= warm + options.rss_slack_mib * 1024;
    println!(
        "checks: fds back to the start (but for open store files): {fds_ok}; RSS at the end within {} MiB of the warm baseline: {rss_ok}; chatters complete: {complete}",
        options.rss_slack_mib
    );
    println!(
        "RESULT rss_start_kib={rss_start} rss_warm_kib={warm} rss_peak_kib={rss_peak} rss_end_kib={rss_end} fds_start={} fds_end={} store_files_end={} waves={wave}",
        fds_start.0, fds_end.0, fds_end.2
    );
    if fds_ok && rss_ok && complete {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        std::process::exit(1);
    }
}
