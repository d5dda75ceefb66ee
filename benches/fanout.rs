//! Fan-out throughput, per delivery, from the core alone to loopback end to end.
//!
//! - `core_fanout`: one message into a room of 10, 1,000 and 10,000 members through `chat-core`
//!   alone (handle the `say`, drain the outputs). The core's work per message does not grow
//!   with the room, so deliveries per second grow with it.
//! - `core_fanout_sessions`: the same with as many connections, each account logged in twice
//!   (half as many users): sessions of one user are just more recipients.
//! - `runtime_fanout`: the runtime with N in-process connections, JSON encoding included, until
//!   every connection has taken the message from its outbox.
//! - `ws_fanout` and `tcp_fanout`: a real server on loopback and N real clients in the same
//!   process, until every client has read the message.
//!
//! `cargo bench --bench fanout`; criterion's HTML report is in `target/criterion/`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_core::{
    Chat, Command, Config, ConnectionId, Identity, Input, Secret, Timestamp, UserName,
};
use chat_runtime::{Outgoing, Runtime, RuntimeConfig};
use chat_store::MemoryStore;
use chat_transport_ws::JsonFormat;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

fn say(text: &str) -> Command {
    Command::Say {
        room: "general".into(),
        text: text.into(),
    }
}

/// A chat with `members` logged-in users in `general`.
fn chat_with(members: u64) -> Chat {
    let mut chat = Chat::new(Config {
        login_timeout: None,
        ..Config::default()
    });
    let now = Timestamp::from_unix_millis(1_764_000_000_000);
    for i in 0..members {
        let conn = ConnectionId(i);
        chat.handle(Input::Connect(conn), now)
            .expect("a new connection");
        let login = Command::login(format!("u{i}"));
        chat.handle(
            Input::Command {
                conn,
                command: login,
                reference: None,
            },
            now,
        )
        .expect("a known connection");
        while chat.poll_output().is_some() {}
    }
    chat
}

/// A chat with `connections` logged-in connections in `general`: accounts, two sessions each.
fn chat_with_sessions(connections: u64) -> Chat {
    let mut chat = Chat::new(Config {
        login_timeout: None,
        ..Config::default()
    });
    let now = Timestamp::from_unix_millis(1_764_000_000_000);
    for i in 0..connections {
        let conn = ConnectionId(i);
        chat.handle(Input::Connect(conn), now)
            .expect("a new connection");
        let name = UserName::parse(&format!("u{}", i / 2)).expect("a valid name");
        let login = Command::Login {
            name: None,
            password: None,
            token: Some(Secret::new("checked below")),
            since: None,
        };
        let command = Input::Command {
            conn,
            command: login,
            reference: None,
        };
        chat.handle(command, now).expect("a known connection");
        let verdict = Input::Authenticated {
            conn,
            outcome: Ok(Identity::Account(name)),
        };
        chat.handle(verdict, now).expect("a known connection");
        while chat.poll_output().is_some() {}
    }
    chat
}

/// Connection 0 says one message; drains the outputs and returns how many there were.
fn say_once(chat: &mut Chat, now: Timestamp) -> usize {
    let input = Input::Command {
        conn: ConnectionId(0),
        command: say("the quick brown fox jumps over the lazy dog, twice over"),
        reference: None,
    };
    chat.handle(input, now).expect("a known connection");
    let mut outputs = 0;
    while let Some(output) = chat.poll_output() {
        std::hint::black_box(&output);
        outputs += 1;
    }
    outputs
}

fn core_fanout(c: &mut Criterion) {
    for (name, build) in [
        ("core_fanout", chat_with as fn(u64) -> Chat),
        ("core_fanout_sessions", chat_with_sessions),
    ] {
        let mut group = c.benchmark_group(name);
        for connections in [10u64, 1_000, 10_000] {
            let mut chat = build(connections);
            let now = Timestamp::from_unix_millis(1_764_000_000_000);
            group.throughput(Throughput::Elements(connections));
            group.bench_with_input(
                BenchmarkId::from_parameter(connections),
                &connections,
                |b, _| b.iter(|| say_once(&mut chat, now)),
            );
        }
        group.finish();
    }
}

/// A chat runtime with the defaults and no rate limit, on the in-memory store.
async fn start_runtime() -> Runtime {
    let limits = RuntimeConfig {
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    Runtime::start(Config::default(), Arc::new(MemoryStore::new()), limits)
        .await
        .expect("the runtime starts")
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Counts frames received by all connections and wakes the bench when a target is reached.
struct Tally {
    received: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Tally {
    fn new() -> Arc<Self> {
        Arc::new(Tally {
            received: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        })
    }

    fn add(&self, n: u64) {
        let total = self.received.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// How many frames have arrived so far.
    fn mark(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Waits until `more` frames have arrived since `mark`.
    async fn wait_for(&self, mark: u64, more: u64) {
        let target = mark + more;
        self.target.store(target, Ordering::Release);
        while self.received.load(Ordering::Acquire) < target {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.reached.notified()).await;
        }
    }
}

fn runtime_fanout(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("runtime_fanout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for members in [100u64, 1_000] {
        let (runtime, mut sender, tally) = rt.block_on(async {
            let runtime = start_runtime().await;
            let handle = runtime.handle();
            let tally = Tally::new();
            let mut sender = None;
            for i in 0..members {
                let conn = handle.connect(JsonFormat).await.expect("room for it");
                let login = Command::login(format!("u{i}"));
                conn.send(login, None).await.expect("the runtime runs");
                if i == 0 {
                    sender = Some(conn);
                    continue;
                }
                let tally = tally.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::new();
                    while let Outgoing::Frames = conn.next(&mut batch).await {
                        let messages = batch
                            .iter()
                            .filter(|o| {
                                chat_transport_ws::frame::frame_payload(&o.bytes)
                                    .starts_with(br#"{"type":"message""#)
                            })
                            .count();
                        tally.add(messages as u64);
                        batch.clear();
                    }
                });
            }
            (runtime, sender.expect("one sender"), tally)
        });
        group.throughput(Throughput::Elements(members - 1));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter_custom(|iters| {
                let sender = &mut sender;
                let tally = tally.clone();
                rt.block_on(async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mark = tally.mark();
                        sender
                            .send(say("the quick brown fox jumps over the lazy dog"), None)
                            .await
                            .expect("the runtime runs");
                        tally.wait_for(mark, members - 1).await;
                        let mut batch = Vec::new();
                        sender.try_next(&mut batch);
                    }
                    started.elapsed()
                })
            });
        });
        rt.block_on(async {
            drop(sender);
            runtime.shutdown().await.expect("a clean shutdown");
        });
    }
    group.finish();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until a text frame starting with `prefix`.
async fn until_text(ws: &mut Ws, prefix: &str) {
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message.expect("the connection works") {
            if text.starts_with(prefix) {
                return;
            }
        }
    }
    panic!("the server closed a connection while the bench waited for {prefix}");
}

fn ws_fanout(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("ws_fanout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for members in [100u64, 1_000] {
        let (runtime, mut sender, tally) = rt.block_on(async {
            let runtime = start_runtime().await;
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let url = format!("ws://{}/chat", listener.local_addr().expect("bound"));
            tokio::spawn(chat_transport_ws::serve(
                listener,
                runtime.handle(),
                chat_transport_ws::WsConfig::default(),
            ));
            let tally = Tally::new();
            let mut sender = None;
            for i in 0..members {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("a connection");
                let login = format!(r#"{{"type":"login","name":"u{i}"}}"#);
                ws.send(Message::text(login)).await.expect("sent");
                // Logged in before anyone speaks, so every receiver is in the room.
                until_text(&mut ws, r#"{"type":"welcome""#).await;
                if i == 0 {
                    sender = Some(ws);
                    continue;
                }
                let tally = tally.clone();
                tokio::spawn(async move {
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(text) = message {
                            if text.starts_with(r#"{"type":"message""#) {
                                tally.add(1);
                            }
                        }
                    }
                });
            }
            (runtime, sender.expect("one sender"), tally)
        });
        group.throughput(Throughput::Elements(members - 1));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter_custom(|iters| {
                let sender = &mut sender;
                let tally = tally.clone();
                rt.block_on(async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let say = r#"{"type":"say","room":"general","text":"the quick brown fox jumps over the lazy dog"}"#;
                        let mark = tally.mark();
                        sender.send(Message::text(say)).await.expect("sent");
                        tally.wait_for(mark, members - 1).await;
                        // Read the sender's own copy, so its connection never falls behind.
                        until_text(sender, r#"{"type":"message""#).await;
                    }
                    started.elapsed()
                })
            });
        });
        rt.block_on(async {
            drop(sender);
            runtime.shutdown().await.expect("a clean shutdown");
        });
    }
    group.finish();
}

fn tcp_fanout(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("tcp_fanout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for members in [100u64, 1_000] {
        let (runtime, mut sender, tally) = rt.block_on(async {
            let runtime = start_runtime().await;
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let addr = listener.local_addr().expect("bound");
            tokio::spawn(chat_transport_tcp::serve(
                listener,
                runtime.handle(),
                chat_transport_tcp::TcpConfig::default(),
            ));
            let tally = Tally::new();
            let mut sender = None;
            for i in 0..members {
                let stream = TcpStream::connect(addr).await.expect("a connection");
                stream.set_nodelay(true).expect("nodelay");
                let (read, mut write) = stream.into_split();
                write
                    .write_all(format!("u{i}\n").as_bytes())
                    .await
                    .expect("sent");
                // Logged in before anyone speaks, so every receiver is in the room.
                let mut read = BufReader::new(read);
                let mut line = String::new();
                while !line.starts_with("* Welcome") {
                    line.clear();
                    if read.read_line(&mut line).await.expect("a line") == 0 {
                        panic!("the server closed a line connection during setup");
                    }
                }
                if i == 0 {
                    // The sender reads nothing it needs; drain it so it is never slow.
                    tokio::spawn(async move {
                        let mut lines = read.lines();
                        while let Ok(Some(_)) = lines.next_line().await {}
                    });
                    sender = Some(write);
                    continue;
                }
                let tally = tally.clone();
                tokio::spawn(async move {
                    // Dropping the write half would shut the connection's sending side: keep it.
                    let _write = write;
                    let mut lines = read.lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.contains("#general <u0>") {
                            tally.add(1);
                        }
                    }
                });
            }
            (runtime, sender.expect("one sender"), tally)
        });
        group.throughput(Throughput::Elements(members - 1));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter_custom(|iters| {
                let sender = &mut sender;
                let tally = tally.clone();
                rt.block_on(async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mark = tally.mark();
                        sender
                            .write_all(b"the quick brown fox jumps over the lazy dog\n")
                            .await
                            .expect("sent");
                        tally.wait_for(mark, members - 1).await;
                    }
                    started.elapsed()
                })
            });
        });
        rt.block_on(async {
            drop(sender);
            runtime.shutdown().await.expect("a clean shutdown");
        });
    }
    group.finish();
}

criterion_group!(benches, core_fanout, runtime_fanout, ws_fanout, tcp_fanout);
criterion_main!(benches);
