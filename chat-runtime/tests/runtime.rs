//! The runtime with in-process connections: what transports rely on.

mod tokens;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chat_core::{
    Account, Command, Config, DirectMessage, Event, MessageId, Record, Ref, RoomMessage, RoomName,
    SendKind, Snapshot, UserKey,
};
use chat_runtime::{
    Closing, ConnectError, Connection, Ending, Flow, Handle, Outbound, Outgoing, Pacing, Peer,
    Runtime, RuntimeConfig, WINDOW, WireFormat,
};
use chat_store::{MemoryStore, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use wire::{Json, recv};

/// A second format that shows only room messages, as text.
struct Plain;

impl WireFormat for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn encode(&self, event: &Event, _: Option<&Ref>, kind: SendKind) -> Option<Bytes> {
        match event {
            Event::Message(m) if kind != SendKind::Echo => {
                Some(Bytes::from(format!("<{}> {}\n", m.from, m.text)))
            }
            _ => None,
        }
    }
}

/// The protocol's JSON payloads, a line each: a format whose frames may be joined.
struct JsonLines;

impl WireFormat for JsonLines {
    fn name(&self) -> &'static str {
        "json-lines"
    }

    fn encode(&self, event: &Event, reference: Option<&Ref>, _kind: SendKind) -> Option<Bytes> {
        let mut line = chat_protocol::json::encode(event, reference).to_vec();
        line.push(b'\n');
        Some(Bytes::from(line))
    }

    fn joins(&self) -> bool {
        true
    }
}

/// Takes pushes from a [`JsonLines`] connection until `frames` frames have come: each push's
/// frames, decoded, in the order they came.
async fn pushes(conn: &Connection, frames: usize) -> Vec<Vec<Value>> {
    let mut pushes = Vec::new();
    let mut seen = 0;
    while seen < frames {
        let mut batch: Vec<Outbound> = Vec::new();
        let next = tokio::time::timeout(Duration::from_secs(10), conn.next(&mut batch)).await;
        assert_eq!(next.expect("frames within 10 s"), Outgoing::Frames);
        for outbound in batch {
            let push: Vec<Value> = outbound
                .bytes
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).unwrap())
                .collect();
            seen += push.len();
            pushes.push(push);
        }
    }
    pushes
}

/// Logs `name` in over [`JsonLines`] and takes the login's answers.
async fn joined_as_lines(handle: &Handle, name: &str) -> Connection {
    let conn = handle.connect(JsonLines).await.unwrap();
    conn.send(Command::login(name), None).await.unwrap();
    while !pushes(&conn, 1)
        .await
        .concat()
        .iter()
        .any(|f| f["type"] == "joined")
    {}
    conn
}

/// Takes `conn`'s pushes until the presence frame of `name`'s join has come.
async fn joins_seen(conn: &Connection, name: &str) {
    while !pushes(conn, 1)
        .await
        .concat()
        .iter()
        .any(|f| f["type"] == "presence" && f["user"] == name)
    {}
}

/// The texts of the room messages among `frames`.
fn texts(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "message")
        .map(|frame| frame["text"].as_str().unwrap())
        .collect()
}

async fn start(config: Config, runtime: RuntimeConfig) -> Runtime {
    Runtime::start(config, Arc::new(MemoryStore::new()), runtime)
        .await
        .unwrap()
}

/// Reads frames until one of type `kind` arrives; returns it.
async fn expect(conn: &mut Connection, kind: &str) -> Value {
    loop {
        for frame in recv(conn).await {
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

/// The format every test connection speaks (formats are told apart by type).
fn json() -> Json {
    Json
}

async fn login(handle: &Handle, name: &str) -> Connection {
    let mut conn = handle.connect(json()).await.unwrap();
    conn.send(Command::login(name), None).await.unwrap();
    expect(&mut conn, "joined").await;
    conn
}

fn say(text: &str) -> Command {
    Command::Say {
        room: "general".into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn two_connections_chat_through_the_runtime() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    let mut bob = login(&handle, "bob").await;
    let presence = expect(&mut alice, "presence").await;
    assert_eq!(presence["user"], "bob");

    alice
        .send(say("hi bob"), Some(Ref::number(7)))
        .await
        .unwrap();
    let mine = expect(&mut alice, "message").await;
    let theirs = expect(&mut bob, "message").await;
    assert_eq!(mine["ref"], 7);
    assert_eq!(theirs.get("ref"), None);
    assert_eq!(mine["id"], theirs["id"]);
    assert_eq!(theirs["text"], "hi bob");

    let metrics = handle.metrics();
    assert_eq!(metrics.connections_open, 2);
    assert!(metrics.commands_in >= 3);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broadcast_is_encoded_once_per_wire_format() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut json_clients = Vec::new();
    for i in 0..50 {
        json_clients.push(login(&handle, &format!("j{i}")).await);
    }
    let mut plain_clients = Vec::new();
    for i in 0..50 {
        let conn = handle.connect(Plain).await.unwrap();
        conn.send(Command::login(format!("p{i}")), None)
            .await
            .unwrap();
        plain_clients.push(conn);
    }
    // Everyone is in: the last login's presence reached the first client.
    let sender = &mut json_clients[0];
    // Inputs are handled and delivered in order: once the pong is here, so is every output of
    // the logins before it.
    sender.send(Command::Ping, None).await.unwrap();
    expect(sender, "pong").await;
    let before = handle.metrics().encodes;

    json_clients[1].send(say("once"), None).await.unwrap();
    for client in &mut json_clients {
        assert_eq!(expect(client, "message").await["text"], "once");
    }
    for client in &mut plain_clients {
        let mut batch = Vec::new();
        loop {
            batch.clear();
            assert_eq!(client.next(&mut batch).await, Outgoing::Frames);
            if batch.iter().any(|o| o.bytes.starts_with(b"<j1> once")) {
                break;
            }
        }
    }
    // One JSON encoding and one plain encoding for the 99 recipients, one for the sender's copy.
    assert_eq!(handle.metrics().encodes - before, 3);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_nobody_waits_for_it() {
    let config = RuntimeConfig {
        outbox_bytes: 4096,
        ..RuntimeConfig::default()
    };
    let runtime = start(Config::default(), config).await;
    let handle = runtime.handle();
    let stalled = login(&handle, "stalled").await;
    let mut talkers = Vec::new();
    for i in 0..5 {
        talkers.push(login(&handle, &format!("t{i}")).await);
    }
    for round in 0..100 {
        let text = format!("message number {round} with some padding to fill queues");
        talkers[round % 5].send(say(&text), None).await.unwrap();
        for talker in &mut talkers {
            let got = expect(talker, "message").await;
            assert_eq!(
                got["text"],
                text.as_str(),
                "every talker gets every message in order"
            );
        }
    }
    let mut batch = Vec::new();
    assert_eq!(
        stalled.next(&mut batch).await,
        Outgoing::Close(Closing::SlowConsumer)
    );
    assert_eq!(handle.metrics().slow_consumers, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_history_page_bigger_than_the_outbox_is_not_slowness() {
    let config = RuntimeConfig {
        outbox_bytes: 512,
        ..RuntimeConfig::default()
    };
    let runtime = start(Config::default(), config).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    for n in 0..20 {
        alice.send(say(&format!("{n:0>60}")), None).await.unwrap();
        expect(&mut alice, "message").await;
    }
    let history = Command::room_history("general", None, Some(20));
    alice.send(history, None).await.unwrap();
    let page = expect(&mut alice, "history").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 20);
    runtime.shutdown().await.unwrap();
}

/// A store that counts and keeps appends, and can hold them until the test lets them through.
struct GatedStore {
    inner: Arc<dyn Store>,
    gate: Semaphore,
    appends: AtomicUsize,
    started: mpsc::UnboundedSender<usize>,
    stored: std::sync::Mutex<Vec<Record>>,
}

impl GatedStore {
    fn new(permits: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<usize>) {
        Self::over(Arc::new(MemoryStore::new()), permits)
    }

    /// A gate in front of `inner`.
    fn over(inner: Arc<dyn Store>, permits: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<usize>) {
        let (started, calls) = mpsc::unbounded_channel();
        let store = GatedStore {
            inner,
            gate: Semaphore::new(permits),
            appends: AtomicUsize::new(0),
            started,
            stored: std::sync::Mutex::new(Vec::new()),
        };
        (Arc::new(store), calls)
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        let _ = self.started.send(records.len());
        self.gate.acquire().await.unwrap().forget();
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.stored.lock().unwrap().extend_from_slice(records);
        self.inner.append(records).await
    }
    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        self.inner.load(history).await
    }
    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        self.inner.history(room, before, limit).await
    }
    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        self.inner.dm_history(a, b, before, limit).await
    }
    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        self.inner.rooms().await
    }
    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        self.inner.mailbox(owner).await
    }
    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        self.inner.account(name).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
    async fn recover(&self) -> Result<(), StoreError> {
        self.inner.recover().await
    }
}

#[tokio::test]
async fn messages_are_delivered_only_after_the_store_has_them_and_bursts_share_a_write() {
    let (store, mut started) = GatedStore::new(0);
    let runtime = Runtime::start(Config::default(), store.clone(), RuntimeConfig::default())
        .await
        .unwrap();
    let handle = runtime.handle();
    // Logins store nothing (no ids are handed out), so they pass the closed gate.
    let mut alice = login(&handle, "alice").await;
    let mut bob = login(&handle, "bob").await;
    expect(&mut alice, "presence").await;

    alice.send(say("first"), None).await.unwrap();
    // The store has been asked (an id reservation and the message) but has not answered.
    assert_eq!(started.recv().await, Some(2));
    for n in 0..30 {
        alice.send(say(&format!("burst {n}")), None).await.unwrap();
    }
    let mut batch = Vec::new();
    assert_eq!(
        bob.try_next(&mut batch),
        0,
        "nothing is delivered before it is stored"
    );

    store.gate.add_permits(1000);
    let mut texts = Vec::new();
    while texts.len() < 31 {
        for frame in recv(&mut bob).await {
            if frame["type"] == "message" {
                texts.push(frame["text"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(texts[0], "first");
    assert_eq!(texts[30], "burst 29");
    let appends = store.appends.load(Ordering::SeqCst);
    assert!(
        appends < 31,
        "31 messages were stored in {appends} writes: the burst was group-committed"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_of_broadcasts_reaches_each_recipient_as_one_push_cut_by_anything_else_for_it() {
    let (store, mut started) = GatedStore::new(0);
    let runtime = Runtime::start(Config::default(), store.clone(), RuntimeConfig::default())
        .await
        .unwrap();
    let handle = runtime.handle();
    let bob = joined_as_lines(&handle, "bob").await;
    let mut carol = login(&handle, "carol").await;
    let alice = login(&handle, "alice").await;
    joins_seen(&bob, "alice").await;
    expect(&mut carol, "presence").await;

    // While the store holds the first message, alice's next thirty, with bob's ping among
    // them, wait for the delivery task's next round: they are delivered together.
    alice.send(say("first"), None).await.unwrap();
    assert_eq!(started.recv().await, Some(2));
    for n in 0..30 {
        if n == 10 {
            bob.send(Command::Ping, Some(Ref::number(1))).await.unwrap();
        }
        alice.send(say(&format!("m{n}")), None).await.unwrap();
    }
    store.gate.add_permits(1000);

    let got = pushes(&bob, 1 + 30 + 1).await;
    let shape: Vec<usize> = got.iter().map(Vec::len).collect();
    // Bob's pong cuts the run in two: bob sees it exactly where it came, between m9 and m10.
    assert_eq!(shape, [1, 10, 1, 20], "pushes: {got:?}");
    assert_eq!(texts(&got[0]), ["first"]);
    assert_eq!(
        texts(&got[1]),
        (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
    assert_eq!(got[2][0]["type"], "pong");
    assert_eq!(
        texts(&got[3]),
        (10..30).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );

    // A format that does not join gets a push per frame (`recv` decodes each push as one
    // frame), in the same order.
    let mut carols = Vec::new();
    while carols.len() < 31 {
        for frame in recv(&mut carol).await {
            if frame["type"] == "message" {
                carols.push(frame["text"].as_str().unwrap().to_owned());
            }
        }
    }
    let expected: Vec<String> = std::iter::once("first".to_owned())
        .chain((0..30).map(|n| format!("m{n}")))
        .collect();
    assert_eq!(carols, expected);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_burst_the_server_had_not_read_yet_reaches_each_recipient_as_one_push() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let bob = joined_as_lines(&handle, "bob").await;
    let alice = login(&handle, "alice").await;
    joins_seen(&bob, "alice").await;

    // As many frames as the window lets the driver read before the first is answered.
    let burst = (0..WINDOW).map(|n| say(&format!("b{n}"))).collect();
    let pacing = Pacing {
        write_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        ping: None,
    };
    let driver = tokio::spawn(chat_runtime::drive(Scripted::burst(burst), alice, pacing));
    let got = pushes(&bob, WINDOW).await;
    assert_eq!(got.len(), 1, "the core took the burst in one turn: {got:?}");
    let expected: Vec<String> = (0..WINDOW).map(|n| format!("b{n}")).collect();
    assert_eq!(texts(&got[0]), expected);
    driver.abort();
    runtime.shutdown().await.unwrap();
}

// On two threads the core answers on its own task, so the driver waits for it with its window
// full (on one thread it helps the core at once, and the window rarely fills).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_paced_by_its_window_is_read_again_once_its_frames_are_answered() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let bob = joined_as_lines(&handle, "bob").await;
    // Alice's format shows her nothing of her own: no frame for her wakes her driver, only the
    // runtime's word that her frames were answered and she may be read again.
    let alice = handle.connect(Plain).await.unwrap();
    let says = 20 * WINDOW;
    let burst = std::iter::once(Command::login("alice"))
        .chain((0..says).map(|n| say(&format!("w{n}"))))
        .collect();
    let pacing = Pacing {
        write_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        ping: None,
    };
    let driver = tokio::spawn(chat_runtime::drive(Scripted::burst(burst), alice, pacing));
    let mut got: Vec<String> = Vec::new();
    while got.len() < says {
        for push in pushes(&bob, 1).await {
            got.extend(texts(&push).into_iter().map(str::to_owned));
        }
    }
    let expected: Vec<String> = (0..says).map(|n| format!("w{n}")).collect();
    assert_eq!(got, expected);
    driver.abort();
    runtime.shutdown().await.unwrap();
}

/// A client that follows a script: `ready` had all arrived before the server read any (a
/// burst), `later` arrives when its sleep ends, and nothing else ever does. It notes when it is
/// pinged.
struct Scripted {
    ready: std::collections::VecDeque<Command>,
    later: Option<(Pin<Box<tokio::time::Sleep>>, Command)>,
    pinged: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl Scripted {
    /// A client whose `commands` have all arrived before the server reads any.
    fn burst(commands: std::collections::VecDeque<Command>) -> Self {
        Scripted {
            ready: commands,
            later: None,
            pinged: Arc::default(),
        }
    }

    /// A client that says `text` at `at` (if any), and nothing else.
    fn quiet(at: Option<tokio::time::Instant>, text: &str) -> Self {
        Scripted {
            ready: Default::default(),
            later: at.map(|at| (Box::pin(tokio::time::sleep_until(at)), say(text))),
            pinged: Arc::default(),
        }
    }
}

impl Peer for Scripted {
    type Item = Command;

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        if let Some(command) = self.ready.pop_front() {
            return Poll::Ready(Some(command));
        }
        let Some((sleep, _)) = &mut self.later else {
            return Poll::Pending;
        };
        std::task::ready!(sleep.as_mut().poll(cx));
        Poll::Ready(self.later.take().map(|(_, command)| command))
    }

    async fn on_item(&mut self, item: Command, connection: &mut Connection) -> Result<(), Ending> {
        Ok(connection.send(item, None).await?)
    }

    async fn write(&mut self, batch: &mut Vec<Outbound>, _: &Connection) -> std::io::Result<Flow> {
        batch.clear();
        Ok(Flow::Continue)
    }

    async fn ping(&mut self) -> std::io::Result<()> {
        self.pinged
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        Ok(())
    }

    async fn finish(&mut self, _: Ending) {}
}

// Paused time: the clock jumps to each timer, so the times below are exact to the millisecond.
#[tokio::test(start_paused = true)]
async fn a_quiet_client_is_pinged_every_period_and_closed_an_idle_timeout_after_its_last_word() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let alice = login(&runtime.handle(), "alice").await;
    let start = tokio::time::Instant::now();
    let peer = Scripted::quiet(Some(start + Duration::from_secs(20)), "anyone?");
    let pinged = peer.pinged.clone();
    let pacing = Pacing {
        write_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(35),
        ping: Some(Duration::from_secs(10)),
    };
    let ending = chat_runtime::drive(peer, alice, pacing).await;
    let ended = start.elapsed();

    assert_eq!(ending, Ending::Idle);
    // Its one line, at 20 s, moved the idle deadline from 35 s to 55 s.
    let ms = |d: Duration| d.as_millis().div_ceil(10) * 10;
    assert_eq!(ms(ended), 55_000, "ended after {ended:?}");
    // Pings went out every 10 s, talk or no talk, until the end.
    let pinged: Vec<u128> = pinged
        .lock()
        .unwrap()
        .iter()
        .map(|at| ms(*at - start))
        .collect();
    assert_eq!(pinged, [10_000, 20_000, 30_000, 40_000, 50_000]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_zero_ping_period_means_no_pings() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let alice = login(&runtime.handle(), "alice").await;
    let start = tokio::time::Instant::now();
    let peer = Scripted::quiet(None, "");
    let pinged = peer.pinged.clone();
    let pacing = Pacing {
        write_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(35),
        ping: Some(Duration::ZERO),
    };
    assert_eq!(chat_runtime::drive(peer, alice, pacing).await, Ending::Idle);
    assert_eq!(start.elapsed().as_secs(), 35);
    assert!(pinged.lock().unwrap().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_refused_at_once() {
    let config = RuntimeConfig {
        max_connections: 2,
        ..RuntimeConfig::default()
    };
    let runtime = start(Config::default(), config).await;
    let handle = runtime.handle();
    let a = handle.connect(json()).await.unwrap();
    let _b = handle.connect(json()).await.unwrap();
    assert_eq!(
        handle.connect(json()).await.err(),
        Some(ConnectError::TooManyConnections)
    );
    drop(a);
    assert!(
        handle.connect(json()).await.is_ok(),
        "a freed slot is reusable"
    );
    assert_eq!(handle.metrics().connections_refused, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_disconnect_frees_the_name_and_tells_the_room() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    let bob = login(&handle, "bob").await;
    expect(&mut alice, "presence").await;
    drop(bob);
    let left = expect(&mut alice, "presence").await;
    assert_eq!(
        left,
        json!({"type":"presence","room":"general","user":"bob","event":"leave"})
    );
    let _bob_again = login(&handle, "BOB").await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed() {
    let config = Config {
        login_timeout: Some(Duration::from_millis(50)),
        ..Config::default()
    };
    let runtime = start(config, RuntimeConfig::default()).await;
    let lurker = runtime.handle().connect(json()).await.unwrap();
    let mut batch = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), lurker.next(&mut batch)).await;
    assert_eq!(closed.unwrap(), Outgoing::Close(Closing::LoginTimeout));
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn history_past_memory_is_read_from_the_store() {
    let config = Config {
        history: 3,
        ..Config::default()
    };
    let runtime = start(config, RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    for n in 1..=8 {
        alice.send(say(&format!("m{n}")), None).await.unwrap();
        expect(&mut alice, "message").await;
    }
    let history = Command::room_history("general", None, Some(6));
    alice
        .send(history, Some(Ref::text("h").unwrap()))
        .await
        .unwrap();
    let page = expect(&mut alice, "history").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m3", "m4", "m5", "m6", "m7", "m8"]);
    assert_eq!(page["ref"], "h");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stores_everything_and_closes_connections_after_their_frames() {
    let (store, _calls) = GatedStore::new(1000);
    let runtime = Runtime::start(Config::default(), store.clone(), RuntimeConfig::default())
        .await
        .unwrap();
    let handle = runtime.handle();
    let alice = login(&handle, "alice").await;
    alice.send(say("last words"), None).await.unwrap();
    let closing = tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            let mut batch = Vec::new();
            let next = alice.next(&mut batch).await;
            frames.extend(batch);
            if let Outgoing::Close(reason) = next {
                return (frames, reason);
            }
        }
    });
    runtime.shutdown().await.unwrap();
    let (frames, reason) = closing.await.unwrap();
    assert_eq!(reason, Closing::Shutdown);
    assert!(
        frames
            .iter()
            .any(|f| f.bytes.windows(10).any(|w| w == b"last words"))
    );
    let stored = store.stored.lock().unwrap().clone();
    assert!(
        stored
            .iter()
            .any(|r| matches!(r, Record::Message(m) if m.text.as_str() == "last words"))
    );
    assert_eq!(
        handle.connect(json()).await.err(),
        Some(ConnectError::ShuttingDown)
    );
}

#[tokio::test]
async fn frames_to_one_connection_carry_their_event_and_broadcasts_only_bytes() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    let bob = login(&handle, "bob").await;
    expect(&mut alice, "presence").await;
    alice.send(say("hello"), None).await.unwrap();
    let mut echo = Vec::new();
    while echo.is_empty() {
        assert_eq!(alice.next(&mut echo).await, Outgoing::Frames);
    }
    assert!(
        matches!(echo[0].event.as_deref(), Some(Event::Message(m)) if m.text.as_str() == "hello")
    );
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|o: &chat_runtime::Outbound| o.bytes.windows(5).any(|w| w == b"hello"))
    {
        assert_eq!(bob.next(&mut seen).await, Outgoing::Frames);
    }
    let broadcast = seen
        .iter()
        .find(|o| o.bytes.windows(5).any(|w| w == b"hello"))
        .unwrap();
    assert_eq!(
        broadcast.event, None,
        "a broadcast's bytes are shared; no per-recipient event"
    );
    runtime.shutdown().await.unwrap();
}

/// A runtime over a store that fails on demand.
async fn start_failing(history: usize) -> (Runtime, chat_store::FailureSwitch) {
    let store = chat_store::FailingStore::new(Arc::new(MemoryStore::new()));
    let switch = store.switch();
    let config = Config {
        history,
        ..Config::default()
    };
    let tokens = Arc::new(tokens::Tokens::default());
    let runtime = Runtime::start_with(config, Arc::new(store), RuntimeConfig::default(), tokens)
        .await
        .unwrap();
    (runtime, switch)
}

// The paused clock lets the runtime's recovery back-off pass without waiting for it.
#[tokio::test(start_paused = true)]
async fn nothing_unstored_is_delivered_and_the_runtime_serves_again_once_the_store_recovers() {
    let (runtime, switch) = start_failing(1000).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    let mut bob = login(&handle, "bob").await;
    expect(&mut alice, "presence").await;

    // Carol's first login makes her name an account, so DMs to her are kept while she is away.
    let mut carol = handle.connect(json()).await.unwrap();
    carol
        .send(tokens::token_login("carol"), None)
        .await
        .unwrap();
    expect(&mut carol, "joined").await;
    drop(carol);

    switch.fail_appends(true);
    alice
        .send(say("lost"), Some(Ref::text("s1").unwrap()))
        .await
        .unwrap();
    let refused = expect(&mut alice, "error").await;
    assert_eq!(refused["code"], "unavailable");
    assert_eq!(refused["ref"], "s1");
    let dm = Command::Dm {
        to: "carol".into(),
        text: "kept for nobody".into(),
    };
    alice.send(dm, None).await.unwrap();
    assert_eq!(expect(&mut alice, "error").await["code"], "unavailable");
    // Bob saw none of it: the next thing he gets is what comes after the store is back.
    switch.fail_appends(false);
    let mut attempts = 0;
    let delivered = loop {
        attempts += 1;
        assert!(attempts < 200, "the runtime never served again");
        alice.send(say("kept"), None).await.unwrap();
        let answer = recv(&mut alice).await.remove(0);
        if answer["type"] == "message" {
            break answer;
        }
        assert_eq!(answer["code"], "unavailable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered["text"], "kept");
    let first = expect(&mut bob, "message").await;
    assert_eq!(first["text"], "kept", "bob never sees the unstored message");

    // A joiner's history and carol's login hold only what was stored.
    let mut carol = handle.connect(json()).await.unwrap();
    carol
        .send(tokens::token_login("carol"), None)
        .await
        .unwrap();
    let joined = expect(&mut carol, "joined").await;
    let texts: Vec<&str> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["kept"]);
    carol.send(Command::Ping, None).await.unwrap();
    let after_login: Vec<Value> = recv(&mut carol).await;
    assert!(
        after_login.iter().all(|f| f["type"] != "dm"),
        "the unstored DM was never kept: {after_login:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_history_page_the_store_cannot_read_is_unavailable_not_empty() {
    let (runtime, switch) = start_failing(2).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    for n in 0..5 {
        alice.send(say(&format!("m{n}")), None).await.unwrap();
        expect(&mut alice, "message").await;
    }
    switch.fail_history(true);
    let page = Command::room_history("general", None, Some(5));
    alice
        .send(page.clone(), Some(Ref::number(1)))
        .await
        .unwrap();
    let refused = expect(&mut alice, "error").await;
    assert_eq!(refused["code"], "unavailable");
    assert_eq!(refused["ref"], 1);
    switch.fail_history(false);
    alice.send(page, Some(Ref::number(2))).await.unwrap();
    let served = expect(&mut alice, "history").await;
    assert_eq!(served["messages"].as_array().unwrap().len(), 5);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn replies_behind_a_store_read_keep_their_order() {
    let config = Config {
        history: 2,
        ..Config::default()
    };
    let runtime = start(config, RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    for n in 0..6 {
        alice.send(say(&format!("m{n}")), None).await.unwrap();
        expect(&mut alice, "message").await;
    }
    let page = Command::room_history("general", None, Some(6));
    alice
        .send(page.clone(), Some(Ref::number(1)))
        .await
        .unwrap();
    alice
        .send(Command::Ping, Some(Ref::number(2)))
        .await
        .unwrap();
    alice.send(page, Some(Ref::number(3))).await.unwrap();
    alice
        .send(Command::Ping, Some(Ref::number(4)))
        .await
        .unwrap();
    let mut refs = Vec::new();
    while refs.len() < 4 {
        for frame in recv(&mut alice).await {
            refs.push(frame["ref"].as_u64().unwrap());
        }
    }
    assert_eq!(refs, [1, 2, 3, 4]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_asks_faster_than_it_reads_is_paced_not_dropped() {
    let config = RuntimeConfig {
        outbox_bytes: 16_384,
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    let runtime = start(Config::default(), config).await;
    let handle = runtime.handle();
    let alice = login(&handle, "alice").await;
    // DMs of 1 KB (to bob, who is offline: they wait in his mailbox) sent as fast as the
    // runtime lets the driver read, before reading anything: the driver stops at the window
    // (frames not yet answered) or, where the runtime answers at once, when the unread replies
    // reach the outbox's bound; nothing counts as slowness.
    let text = "x".repeat(1000);
    let mut sent = 0;
    while sent < 10_000 {
        if !alice.may_read() {
            break;
        }
        let dm = Command::Dm {
            to: "bob".into(),
            text: text.clone(),
        };
        alice.send(dm, Some(Ref::number(sent))).await.unwrap();
        sent += 1;
    }
    assert!(sent < 10_000, "reading stops while the replies go unread");
    // Every one of them is answered, and the client that reads the answers is never closed;
    // then it may be read again.
    let mut echoes = 0;
    let mut batch = Vec::new();
    while echoes < sent {
        batch.clear();
        let next = tokio::time::timeout(Duration::from_secs(10), alice.next(&mut batch))
            .await
            .unwrap();
        assert_eq!(next, Outgoing::Frames, "a reading client is never closed");
        echoes += batch.len() as u64;
    }
    assert_eq!(handle.metrics().slow_consumers, 0);
    tokio::time::timeout(Duration::from_secs(10), alice.readable())
        .await
        .expect("the window frees up once the replies are taken");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_in_process_client_receives_events_as_values() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let bot = handle.connect_local().await.unwrap();
    bot.send(Command::login("bot"), Some(Ref::number(1)))
        .await
        .unwrap();
    let alice = login(&handle, "alice").await;
    alice.send(say("hello bot"), None).await.unwrap();
    let mut seen = Vec::new();
    let mut events = Vec::new();
    while !seen
        .iter()
        .any(|d: &chat_runtime::Delivery| matches!(&*d.event, Event::Message(_)))
    {
        events.clear();
        let next = tokio::time::timeout(Duration::from_secs(10), bot.next(&mut events))
            .await
            .unwrap();
        assert_eq!(next, Outgoing::Frames);
        seen.append(&mut events);
    }
    assert!(matches!(&*seen[0].event, Event::Welcome { .. }));
    assert_eq!(seen[0].reference, Some(Ref::number(1)));
    assert_eq!(seen[0].kind, SendKind::Reply);
    let message = seen.last().unwrap();
    assert_eq!(message.kind, SendKind::Push);
    match &*message.event {
        Event::Message(m) => assert_eq!(m.text.as_str(), "hello bot"),
        other => panic!("not a message: {other:?}"),
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn formats_are_told_apart_by_type_not_by_value() {
    let runtime = start(Config::default(), RuntimeConfig::default()).await;
    let handle = runtime.handle();
    // Every connection brings its own value of the same format: still one encoding.
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(login(&handle, &format!("c{i}")).await);
    }
    clients[0].send(Command::Ping, None).await.unwrap();
    expect(&mut clients[0], "pong").await;
    let before = handle.metrics().encodes;
    clients[1].send(say("once"), None).await.unwrap();
    for client in &mut clients {
        expect(client, "message").await;
    }
    assert_eq!(
        handle.metrics().encodes - before,
        2,
        "one broadcast, one echo"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_message_reaches_nobody_even_through_what_the_core_built_before_it_knew() {
    let failing = chat_store::FailingStore::new(Arc::new(MemoryStore::new()));
    let switch = failing.switch();
    let (store, mut started) = GatedStore::over(Arc::new(failing), 0);
    let runtime = Runtime::start(Config::default(), store.clone(), RuntimeConfig::default())
        .await
        .unwrap();
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    alice
        .send(say("refused"), Some(Ref::number(1)))
        .await
        .unwrap();
    // The write is under way (held at the gate) when carol logs in: the core, not knowing yet,
    // puts the message in her `joined` history.
    started.recv().await.unwrap();
    let mut carol = handle.connect(json()).await.unwrap();
    let login = Command::login("carol");
    carol.send(login, None).await.unwrap();
    // Only now does the write fail.
    switch.fail_appends(true);
    store.gate.add_permits(1000);
    assert_eq!(expect(&mut alice, "error").await["code"], "unavailable");
    let joined = expect(&mut carol, "joined").await;
    assert_eq!(
        joined["history"],
        json!([]),
        "the refused message is not shown to a joiner"
    );
    runtime.shutdown().await.unwrap();
}

// On the paused clock: the recovery back-off passes without waiting for it.
#[tokio::test(start_paused = true)]
async fn queued_dms_whose_delivery_cannot_be_recorded_stay_queued_and_come_once() {
    let (runtime, switch) = start_failing(1000).await;
    let handle = runtime.handle();
    let mut dave = handle.connect(json()).await.unwrap();
    dave.send(tokens::token_login("dave"), None).await.unwrap();
    expect(&mut dave, "joined").await;
    drop(dave);
    let mut alice = login(&handle, "alice").await;
    let dm = Command::Dm {
        to: "dave".into(),
        text: "for later".into(),
    };
    alice.send(dm, None).await.unwrap();
    assert_eq!(expect(&mut alice, "dm").await["queued"], true);

    // Dave logs in while the store fails: the delivery cannot be recorded, so no DM comes.
    switch.fail_appends(true);
    let mut dave = handle.connect(json()).await.unwrap();
    let login = tokens::token_login("dave");
    dave.send(login.clone(), None).await.unwrap();
    expect(&mut dave, "joined").await;
    dave.send(Command::Ping, None).await.unwrap();
    let after: Vec<Value> = recv(&mut dave).await;
    assert!(
        after.iter().all(|f| f["type"] != "dm"),
        "a DM whose delivery is not recorded is not delivered: {after:?}"
    );
    // While the store is down, a DM to someone online is refused too.
    let online = Command::Dm {
        to: "dave".into(),
        text: "now?".into(),
    };
    alice.send(online, None).await.unwrap();
    assert_eq!(expect(&mut alice, "error").await["code"], "unavailable");

    // Once the store is back, dave's next login brings the DM, once.
    switch.fail_appends(false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(dave);
    let mut dave = handle.connect(json()).await.unwrap();
    dave.send(login.clone(), None).await.unwrap();
    let dm = expect(&mut dave, "dm").await;
    assert_eq!(dm["text"], "for later");
    drop(dave);
    let mut dave = handle.connect(json()).await.unwrap();
    dave.send(login, None).await.unwrap();
    expect(&mut dave, "joined").await;
    dave.send(Command::Ping, None).await.unwrap();
    let again: Vec<Value> = recv(&mut dave).await;
    assert!(
        again.iter().all(|f| f["type"] != "dm"),
        "delivered once: {again:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn room_messages_wait_behind_a_page_being_read_for_the_same_client() {
    let config = Config {
        history: 2,
        ..Config::default()
    };
    let runtime = start(config, RuntimeConfig::default()).await;
    let handle = runtime.handle();
    let mut alice = login(&handle, "alice").await;
    let bob = login(&handle, "bob").await;
    expect(&mut alice, "presence").await;
    for n in 0..6 {
        alice.send(say(&format!("m{n}")), None).await.unwrap();
        expect(&mut alice, "message").await;
    }
    // Alice's page (read from the store) is asked for before bob speaks: she sees it first.
    let page = Command::room_history("general", None, Some(6));
    alice.send(page, Some(Ref::number(1))).await.unwrap();
    bob.send(say("after the page"), None).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        for frame in recv(&mut alice).await {
            kinds.push(frame["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kinds, ["history", "message"]);
    runtime.shutdown().await.unwrap();
}

// On the paused clock: the recovery back-off passes without waiting for it.
#[tokio::test(start_paused = true)]
async fn an_accounts_room_sets_the_store_refused_are_stored_once_it_recovers() {
    let inner = Arc::new(MemoryStore::new());
    let store = chat_store::FailingStore::new(inner.clone());
    let switch = store.switch();
    let tokens = Arc::new(tokens::Tokens::default());
    let runtime = Runtime::start_with(
        Config::default(),
        Arc::new(store),
        RuntimeConfig::default(),
        tokens,
    )
    .await
    .unwrap();
    let handle = runtime.handle();
    let erin_key = UserKey::parse("erin").unwrap();
    let rooms = |names: &[&str]| -> Vec<RoomName> {
        names.iter().map(|n| RoomName::parse(n).unwrap()).collect()
    };
    let mut erin = handle.connect(json()).await.unwrap();
    erin.send(tokens::token_login("erin"), None).await.unwrap();
    expect(&mut erin, "joined").await;
    assert_eq!(
        inner.load(1).await.unwrap().account_rooms[&erin_key],
        rooms(&["general"])
    );

    // Joins stand while the store is down; their room sets wait for it.
    switch.fail_appends(true);
    for room in ["rust", "go"] {
        erin.send(Command::join(room), None).await.unwrap();
        assert_eq!(expect(&mut erin, "joined").await["room"], room);
    }
    assert_eq!(
        inner.load(1).await.unwrap().account_rooms[&erin_key],
        rooms(&["general"])
    );

    switch.fail_appends(false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        inner.load(1).await.unwrap().account_rooms[&erin_key],
        rooms(&["general", "go", "rust"]),
        "the latest set is stored on recovery"
    );
    runtime.shutdown().await.unwrap();
}
