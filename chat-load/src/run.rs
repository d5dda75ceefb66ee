//! A load run: set up every connection, send for the duration, drain, and report.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::RoomName;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::Options;
use crate::client::{self, Reader, Stamp, Target, Writer};
use crate::idle;
use crate::meter::Meter;
use crate::pager::Pager;
use crate::redis_stats::{self, RedisStats};
use crate::report::{LoadReport, NodeLoad};

pub(crate) type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Connections per source address: well inside one address's ephemeral port range.
const PER_SOURCE: usize = 20_000;
/// How long to wait for the last messages once sending stops.
const DRAIN: Duration = Duration::from_secs(5);
/// Logins in flight at once while setting up.
const SETUP_PARALLELISM: usize = 32;

/// The source address for the `i`-th connection: the kernel's choice (127.0.0.1) for the first
/// 20,000, then 127.0.0.2, 127.0.0.3, … every 20,000.
///
/// The first block is not bound explicitly: `bind` to an address with port 0 makes the kernel
/// search for a free port at `bind` time, which grows with the sockets already open (it made a
/// 10,000-login storm spend 8 s of chat-load's CPU in the kernel), while `connect` on an unbound
/// socket picks its port by the connection's addresses, cheaply.
fn source(i: usize) -> Option<Ipv4Addr> {
    let n = u8::try_from(1 + i / PER_SOURCE).ok()?;
    (n > 1).then(|| Ipv4Addr::new(127, 0, 0, n))
}

/// The endpoints to drive: every `--tcp` address, or else every `--ws` URL (loopback only).
pub(crate) fn targets(options: &Options) -> Result<Vec<Target>> {
    let targets = if options.tcp.is_empty() {
        options
            .ws
            .iter()
            .map(|url| {
                let rest = url.strip_prefix("ws://").ok_or("--ws takes a ws:// URL")?;
                let host = rest.split('/').next().unwrap_or(rest);
                let addr = host
                    .to_socket_addrs()?
                    .next()
                    .ok_or("--ws names no address")?;
                Ok(Target::Ws {
                    addr,
                    url: url.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        options.tcp.iter().copied().map(Target::Tcp).collect()
    };
    for target in &targets {
        let addr: SocketAddr = match target {
            Target::Ws { addr, .. } | Target::Tcp(addr) => *addr,
        };
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address; chat-load only drives loopback"
            )
            .into());
        }
    }
    if targets.is_empty() {
        return Err("no endpoint to drive".into());
    }
    Ok(targets)
}

/// An endpoint as the report names it.
pub(crate) fn endpoint(target: &Target) -> String {
    match target {
        Target::Ws { url, .. } => url.clone(),
        Target::Tcp(addr) => format!("tcp://{addr}"),
    }
}

/// `name` as the server writes it (lower case), or why it is no room name.
fn room_name(option: &str, name: &str) -> Result<String> {
    match RoomName::parse(name) {
        Ok(room) => Ok(room.as_str().to_owned()),
        Err(error) => Err(format!("{option} {name}: {error}").into()),
    }
}

pub(crate) async fn run(mut options: Options) -> Result<()> {
    // Replies name rooms the way the server writes them; waiting for another spelling hangs.
    options.room = room_name("--room", &options.room)?;
    options.pager = match &options.pager {
        Some(room) => Some(room_name("--pager", room)?),
        None => None,
    };
    let targets = targets(&options)?;
    if let Some(n) = options.idle {
        return idle::run(&options, &targets, n).await;
    }
    load(&options, &targets).await
}

/// Connects `count` clients named `prefix{first_name + i}` in parallel (bounded), in order. The
/// `i`-th connects to `targets[(first_name + i) % targets.len()]`, from the `first_index + i`-th
/// [`source`].
pub(crate) async fn connect_all(
    targets: &[Target],
    room: Option<&str>,
    prefix: &str,
    count: usize,
    first_index: usize,
    first_name: usize,
) -> Result<Vec<(Writer, Reader)>> {
    let mut connected = Vec::with_capacity(count);
    let mut set = JoinSet::new();
    let mut next = 0;
    let mut results: Vec<Option<(Writer, Reader)>> = (0..count).map(|_| None).collect();
    while next < count || !set.is_empty() {
        while next < count && set.len() < SETUP_PARALLELISM {
            let target = targets[(first_name + next) % targets.len()].clone();
            let room = room.map(str::to_owned);
            let name = format!("{prefix}{}", first_name + next);
            let source = source(first_index + next);
            let i = next;
            set.spawn(async move {
                (
                    i,
                    client::connect(&target, source, &name, room.as_deref()).await,
                )
            });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (i, result) = done?;
            results[i] = Some(result?);
        }
    }
    connected.extend(results.into_iter().flatten());
    Ok(connected)
}

/// A token that differs between runs: the process id and the clock's nanoseconds.
fn run_token() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::process::id().rotate_left(16) ^ nanos
}

/// One receiver's counts, read by the main task while the receiver runs.
#[derive(Default)]
struct ReceiverStats {
    deliveries: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    closed: AtomicBool,
}

/// The latencies of a share of one endpoint's receivers: one histogram per endpoint and runtime
/// thread's worth of receivers (dealt out in turn), so several threads seldom wait for the same
/// lock. One histogram for many receivers stays in the cache; one per receiver (hundreds of KiB
/// each at this precision) made recording a latency a cache miss, the receivers' largest cost.
type LatencyShard = Arc<Mutex<Histogram<u64>>>;

fn latency_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000_000, 3)?)
}

/// What every task shares.
struct Shared {
    /// This run's token in every stamp; stamps with another one are an earlier run's.
    run: u32,
    start: Instant,
    receivers: u32,
    /// Per message (by global sequence, modulo the ring's size): receivers that have it.
    ring: Box<[AtomicU32]>,
    /// Closed loop: one permit per message that may be in flight.
    window: Semaphore,
    closed_loop: bool,
}

impl Shared {
    fn nanos(&self) -> u64 {
        self.nanos_at(std::time::Instant::now())
    }

    /// `at` in nanoseconds since the run's start.
    fn nanos_at(&self, at: std::time::Instant) -> u64 {
        let since = at.saturating_duration_since(self.start.into_std());
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts one delivery of message `global`; the last receiver frees its window slot.
    fn delivered(&self, global: u32) {
        if !self.closed_loop {
            return;
        }
        let slot = &self.ring[(global as usize) & (self.ring.len() - 1)];
        if slot.fetch_add(1, Ordering::AcqRel) + 1 == self.receivers {
            slot.store(0, Ordering::Release);
            self.window.add_permits(1);
        }
    }
}

async fn receive(
    mut reader: Reader,
    shared: Arc<Shared>,
    stats: Arc<ReceiverStats>,
    latency: LatencyShard,
    senders: usize,
) {
    // The last sequence number seen from each sender (0: none yet).
    let mut last = vec![0; senders];
    let (mut deliveries, mut duplicated, mut reordered) = (0, 0, 0);
    let mut stamps = Vec::new();
    while reader.next_stamps(&mut stamps).await {
        // Everything in `stamps` came in the read that just returned.
        let arrived = shared.nanos_at(reader.arrived());
        let mut latency = latency
            .lock()
            .expect("a latency shard is only locked briefly");
        for stamp in stamps.drain(..) {
            if stamp.run != shared.run {
                continue;
            }
            let _ = latency.record(arrived.saturating_sub(stamp.nanos).max(1));
            deliveries += 1;
            if let Some(last) = last.get_mut(stamp.sender as usize) {
                if stamp.seq == *last {
                    duplicated += 1;
                    continue;
                }
                if stamp.seq < *last {
                    reordered += 1;
                }
                *last = stamp.seq;
            }
            shared.delivered(stamp.global);
        }
        drop(latency);
        // Only this task writes its counts: a store, not a read-modify-write.
        stats.deliveries.store(deliveries, Ordering::Relaxed);
        stats.duplicated.store(duplicated, Ordering::Relaxed);
        stats.reordered.store(reordered, Ordering::Relaxed);
    }
    stats.closed.store(true, Ordering::Release);
}

async fn load(options: &Options, targets: &[Target]) -> Result<()> {
    let transport = match &targets[0] {
        Target::Ws { .. } => "ws",
        Target::Tcp(_) => "tcp",
    };
    if options.receivers == 0 || options.senders == 0 {
        return Err("a load needs at least one receiver and one sender".into());
    }
    if options.senders > usize::from(u16::MAX) + 1 {
        return Err("a load has at most 65,536 senders (a stamp numbers them in 16 bits)".into());
    }
    if let Some(room) = &options.pager {
        if transport != "ws" {
            return Err("--pager speaks WebSocket only".into());
        }
        if *room == options.room {
            return Err("--pager needs a room other than --room".into());
        }
    }
    let mut redis = match &options.redis {
        Some(url) => Some(RedisStats::connect(url).await?),
        None => None,
    };
    // Names carry the run's token too: a run that starts while the server still holds the last
    // run's names (their disconnects not yet handled) would otherwise find them taken.
    let run = run_token();
    let receivers = connect_all(
        targets,
        Some(&options.room),
        &format!("r{run:x}-"),
        options.receivers,
        0,
        0,
    )
    .await?;
    let stalled = connect_all(
        targets,
        Some(&options.room),
        &format!("z{run:x}-"),
        options.stalled,
        options.receivers,
        0,
    )
    .await?;
    // Every sender on the first endpoint: with several nodes, every delivery on another node
    // went through Redis.
    let senders = connect_all(
        &targets[..1],
        Some(&options.room),
        &format!("s{run:x}-"),
        options.senders,
        options.receivers + options.stalled,
        0,
    )
    .await?;
    let pager = match &options.pager {
        Some(room) => {
            let index = options.receivers + options.stalled + options.senders;
            let name = format!("pager{run:x}");
            Some(Pager::connect(&targets[0], source(index), &name, room, &options.room).await?)
        }
        None => None,
    };

    let closed_loop = options.rate == 0;
    let ring_len = (options.window.max(1) * 4).next_power_of_two().max(1 << 16);
    let shared = Arc::new(Shared {
        run,
        start: Instant::now(),
        receivers: u32::try_from(options.receivers)?,
        ring: (0..ring_len).map(|_| AtomicU32::new(0)).collect(),
        window: Semaphore::new(if closed_loop {
            options.window.max(1)
        } else {
            0
        }),
        closed_loop,
    });

    let mut tasks = JoinSet::new();
    let mut all_stats = Vec::with_capacity(options.receivers);
    // shards[endpoint][k], k < --threads
    let shards = (0..targets.len())
        .map(|_| {
            (0..options.threads.max(1))
                .map(|_| Ok(Arc::new(Mutex::new(latency_histogram()?))))
                .collect::<Result<Vec<LatencyShard>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    // Receivers send nothing, but their write halves must live: dropping a TCP write half
    // shuts the connection's sending side, and the server takes that for a goodbye.
    let mut receiver_writers = Vec::with_capacity(options.receivers);
    for (i, (writer, reader)) in receivers.into_iter().enumerate() {
        receiver_writers.push(writer);
        let stats = Arc::new(ReceiverStats::default());
        let endpoint = i % targets.len();
        all_stats.push((endpoint, stats.clone()));
        let shard = &shards[endpoint];
        let latency = shard[(i / targets.len()) % shard.len()].clone();
        tasks.spawn(receive(
            reader,
            shared.clone(),
            stats,
            latency,
            options.senders,
        ));
    }

    // Receivers never speak; a ping every 20 s keeps the server's idle timeout (75 s) away in
    // long runs. The writers live in this task until the end of the run.
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(20));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            for writer in &mut receiver_writers {
                let _ = writer.keepalive().await;
            }
        }
    });

    let redis_before = match &mut redis {
        Some(redis) => Some(redis.calls().await?),
        None => None,
    };
    let meter = Meter::start(&options.pid, options.redis_pid, options.threads)?;
    let sending_started = Instant::now();
    let deadline = sending_started + Duration::from_secs_f64(options.duration.max(0.0));
    let sent = Arc::new(AtomicU64::new(0));
    let global = Arc::new(AtomicU32::new(0));
    let writers_done = Arc::new(AtomicUsize::new(0));
    // The pager runs for the sending period and stops on its own at its end.
    let pager = pager.map(|pager| tokio::spawn(pager.run(deadline, options.pager_rate)));
    for (index, (writer, mut reader)) in senders.into_iter().enumerate() {
        // A sender's own connection receives the room too; read it so it is never slow.
        tasks.spawn(async move {
            let mut stamps = Vec::new();
            while reader.next_stamps(&mut stamps).await {
                stamps.clear();
            }
        });
        let period = (!closed_loop)
            .then(|| Duration::from_secs_f64(options.senders as f64 / options.rate.max(1) as f64));
        let job = Sender {
            index,
            writer,
            shared: shared.clone(),
            sent: sent.clone(),
            global: global.clone(),
            room: options.room.clone(),
            size: options.size,
            started: sending_started,
            senders: options.senders,
            in_phase: options.in_phase,
            deadline,
            period,
        };
        let done = writers_done.clone();
        tasks.spawn(async move {
            if let Err(error) = job.run().await {
                eprintln!("chat-load: sender {index}: {error}");
            }
            done.fetch_add(1, Ordering::Release);
        });
    }

    // Wait for the senders, then for the last deliveries (bounded).
    while writers_done.load(Ordering::Acquire) < options.senders {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sending = sending_started.elapsed();
    let pager = match pager {
        Some(task) => Some(task.await??),
        None => None,
    };
    let drain_deadline = Instant::now() + DRAIN;
    let total = |stats: &[(usize, Arc<ReceiverStats>)]| -> u64 {
        stats
            .iter()
            .map(|(_, s)| {
                s.deliveries.load(Ordering::Relaxed) - s.duplicated.load(Ordering::Relaxed)
            })
            .sum()
    };
    let expected = sent.load(Ordering::Acquire) * options.receivers as u64;
    while total(&all_stats) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = sending_started.elapsed();
    let figures = meter.finish(elapsed)?;
    let redis_calls = match (&mut redis, &redis_before) {
        (Some(redis), Some(before)) => Some(redis_stats::delta(before, &redis.calls().await?)),
        _ => None,
    };
    tasks.abort_all();

    // Stalled connections: read what is buffered until the server's close, or give up.
    let mut stalled_closed = 0;
    for (_writer, mut reader) in stalled {
        let closed = tokio::time::timeout(Duration::from_millis(500), async {
            while reader.next().await.is_some() {}
        })
        .await;
        stalled_closed += usize::from(closed.is_ok());
    }

    let mut latency = latency_histogram()?;
    let sent = sent.load(Ordering::Acquire);
    let mut report = LoadReport {
        label: options.label.clone(),
        transport,
        receivers: options.receivers,
        senders: options.senders,
        stalled: options.stalled,
        size: options.size,
        rate: options.rate,
        window: options.window,
        in_phase: options.in_phase && options.rate > 0,
        seconds: sending.as_secs_f64(),
        sent,
        stalled_closed,
        server_rss_kib: figures.server_rss_kib,
        server: options.server_kind.clone(),
        server_cpu_percent: figures.server_cpu_percent,
        server_cores: figures.server_cores,
        server_cpu_share_percent: figures.server_cpu_share_percent,
        load_cpu_percent: figures.load_cpu_percent,
        load_threads: options.threads,
        load_cores: figures.load_cores,
        load_cpu_share_percent: figures.load_cpu_share_percent,
        load_tool_bound: figures.load_tool_bound,
        others_cpu_percent: figures.others_cpu_percent,
        contended: figures.contended,
        server_cores_busy_percent: figures.server_cores_busy_percent,
        load_cores_busy_percent: figures.load_cores_busy_percent,
        pager_room: options.pager.clone(),
        pager_pages: pager.map(|p| p.pages),
        pager_messages: pager.map(|p| p.messages),
        pager_refused: pager.map(|p| p.refused),
        ..LoadReport::default()
    };
    let mut per_endpoint = Vec::with_capacity(targets.len());
    for shard in &shards {
        let mut endpoint = latency_histogram()?;
        for histogram in shard {
            endpoint.add(&*histogram.lock().expect("the receivers have stopped"))?;
        }
        latency.add(&endpoint)?;
        per_endpoint.push(endpoint);
    }
    let mut nodes: Vec<NodeLoad> = targets
        .iter()
        .map(|target| NodeLoad {
            endpoint: endpoint(target),
            ..NodeLoad::default()
        })
        .collect();
    for (endpoint, stats) in &all_stats {
        let deliveries = stats.deliveries.load(Ordering::Acquire);
        let duplicated = stats.duplicated.load(Ordering::Acquire);
        let node = &mut nodes[*endpoint];
        node.receivers += 1;
        node.deliveries += deliveries - duplicated;
        report.deliveries += deliveries;
        report.duplicated += duplicated;
        report.reordered += stats.reordered.load(Ordering::Acquire);
        report.receivers_closed += usize::from(stats.closed.load(Ordering::Acquire));
    }
    let unique = report.deliveries - report.duplicated;
    report.lost = expected.saturating_sub(unique);
    let seconds = elapsed.as_secs_f64().max(1e-9);
    report.deliveries_per_s = unique as f64 / seconds;
    report.messages_per_s = report.sent as f64 / sending.as_secs_f64().max(1e-9);
    let ms = |latency: &Histogram<u64>, q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    report.p50_ms = ms(&latency, 0.5);
    report.p90_ms = ms(&latency, 0.9);
    report.p99_ms = ms(&latency, 0.99);
    report.max_ms = latency.max() as f64 / 1e6;
    if targets.len() > 1 || figures.servers.len() > 1 {
        for (i, node) in nodes.iter_mut().enumerate() {
            node.p50_ms = ms(&per_endpoint[i], 0.5);
            node.p99_ms = ms(&per_endpoint[i], 0.99);
            if let Some(process) = figures.servers.get(i) {
                node.pid = Some(process.pid);
                node.cpu_percent = Some(process.cpu_percent);
                node.cpu_share_percent = process.cpu_share_percent;
                node.rss_kib = Some(process.rss_kib);
            }
        }
        // Servers beyond the endpoints (a pid without one) are reported too.
        for process in figures.servers.iter().skip(nodes.len()) {
            nodes.push(NodeLoad {
                pid: Some(process.pid),
                cpu_percent: Some(process.cpu_percent),
                cpu_share_percent: process.cpu_share_percent,
                rss_kib: Some(process.rss_kib),
                ..NodeLoad::default()
            });
        }
        report.nodes = nodes;
    }
    if let Some(redis) = &figures.redis {
        report.redis_cpu_percent = Some(redis.cpu_percent);
        report.redis_cores = redis.cores;
        report.redis_cpu_share_percent = redis.cpu_share_percent;
    }
    if let Some(calls) = redis_calls {
        let total: u64 = calls.values().sum();
        report.redis_commands = Some(total);
        report.redis_commands_per_message = Some(total as f64 / sent.max(1) as f64);
        report.redis_commands_per_delivery = Some(total as f64 / unique.max(1) as f64);
        report.redis_calls = Some(calls);
    }
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// One sender: stamped messages until the deadline, closed-loop or at a fixed period.
struct Sender {
    index: usize,
    writer: Writer,
    shared: Arc<Shared>,
    sent: Arc<AtomicU64>,
    global: Arc<AtomicU32>,
    room: String,
    size: usize,
    /// When sending starts, and how many senders share the rate.
    started: Instant,
    senders: usize,
    /// Send at the same instants as every other sender.
    in_phase: bool,
    deadline: Instant,
    period: Option<Duration>,
}

impl Sender {
    async fn run(mut self) -> Result<()> {
        // At a fixed rate, the senders take turns: sender i sends i/senders of a period after
        // sender 0, so the room gets one message every period/senders, not bursts of `senders`
        // messages every period (a burst's fan-out queues behind itself, in the server and here,
        // but is written and read in fewer, larger writes and reads), unless --in-phase.
        let mut ticks = self.period.map(|p| {
            let turn = if self.in_phase { 0 } else { self.index };
            let phase = p.mul_f64(turn as f64 / self.senders.max(1) as f64);
            // A late sender catches up rather than skipping: the offered load stays the rate.
            let mut interval = tokio::time::interval_at(self.started + phase, p);
            interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
            interval
        });
        let mut seq: u32 = 0;
        while Instant::now() < self.deadline {
            // When the message is due: at a fixed rate its tick, not when this task got to it,
            // so time a saturated server (or chat-load) keeps a message waiting counts as latency.
            let due = match &mut ticks {
                Some(interval) => {
                    match tokio::time::timeout_at(self.deadline, interval.tick()).await {
                        Ok(tick) => self.shared.nanos_at(tick.into_std()),
                        Err(_) => break,
                    }
                }
                None => {
                    let permit =
                        tokio::time::timeout_at(self.deadline, self.shared.window.acquire()).await;
                    match permit {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => break,
                    }
                    self.shared.nanos()
                }
            };
            seq = seq.wrapping_add(1);
            let stamp = Stamp {
                run: self.shared.run,
                sender: u16::try_from(self.index)?,
                seq,
                global: self.global.fetch_add(1, Ordering::AcqRel),
                nanos: due,
            };
            let text = client::stamped_text(stamp, self.size);
            self.writer.say(&self.room, &text).await?;
            self.sent.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}
