//! The cluster end to end: a real `redis-server` on a loopback port in a temporary directory,
//! and several servers joined to it, driven by real WebSocket clients. Servers run in this
//! process (`Server::start` with a Redis store) except where a test must kill one with SIGKILL;
//! those run the bundled binary.
//!
//! Every wait has a deadline; loads are a fixed number of messages. A test waits for frames, or
//! polls Redis's own state (the log, its checkpoint) with a deadline; none sleeps in the hope
//! that something has happened meanwhile.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_engine::cluster::ClusterOptions;
use chat_engine::cluster::redis_server::RedisServer;
use chat_engine::server::{Server, ServerConfig, ServerError, StoreChoice};
use futures_util::{SinkExt, StreamExt};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;

use support::ServerProcess;

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that keeps the frames a wait skipped, for a later wait to find.
struct Ws {
    socket: Socket,
    skipped: VecDeque<Value>,
}

impl Ws {
    async fn close(&mut self) {
        self.socket.close(None).await.unwrap();
    }
}

/// A node of the cluster on `redis`, in this process, with the WebSocket listener on a free
/// port; `node_timeout` as `--node-timeout`.
async fn node(redis: &RedisServer, node_timeout: Duration) -> Server {
    start_node(redis, |options, _| options.node_timeout = node_timeout)
        .await
        .expect("the node joins")
}

/// A node of the cluster on `redis` as [`node`] starts one (the WebSocket listener on a free
/// port, no rate limit), after `adjust` had its say on the cluster's options and the server's.
async fn start_node(
    redis: &RedisServer,
    adjust: impl FnOnce(&mut ClusterOptions, &mut ServerConfig),
) -> Result<Server, ServerError> {
    let mut options = ClusterOptions::new(redis.url());
    let mut config = ServerConfig {
        ws: Some("127.0.0.1:0".into()),
        tcp: None,
        store: StoreChoice::Memory,
        ..ServerConfig::default()
    };
    config.limits.rate_limit = 0;
    adjust(&mut options, &mut config);
    config.store = StoreChoice::Redis(options);
    Server::start(config).await
}

/// A connection of the test's own to `redis`, to look at (or tamper with) the cluster's keys.
async fn redis_client(redis: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("the test connects to Redis")
}

/// An integer key of the cluster's (0 if it is not there).
async fn counter(redis: &mut MultiplexedConnection, key: &str) -> u64 {
    let value: Option<u64> = redis::cmd("GET").arg(key).query_async(redis).await.unwrap();
    value.unwrap_or(0)
}

/// How often a test looks at Redis while it waits for the cluster to do something.
const POLL: Duration = Duration::from_millis(20);

fn url(server: &Server) -> String {
    format!(
        "ws://{}/chat",
        server.ws_addr().expect("the WebSocket listener")
    )
}

async fn connect(url: &str) -> Ws {
    let connecting = tokio_tungstenite::connect_async(url);
    let socket = tokio::time::timeout(PATIENCE, connecting)
        .await
        .expect("connected in time")
        .expect("the WebSocket handshake")
        .0;
    Ws {
        socket,
        skipped: VecDeque::new(),
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.socket
        .send(Message::text(frame.to_string()))
        .await
        .unwrap();
}

/// The next frame from the server.
async fn receive(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.socket.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// The first frame that `matches`, among those skipped before and then those still to come;
/// the others stay for later waits, in order.
async fn until(ws: &mut Ws, matches: impl Fn(&Value) -> bool) -> Value {
    if let Some(at) = ws.skipped.iter().position(&matches) {
        return ws.skipped.remove(at).expect("the position is in the queue");
    }
    loop {
        let frame = receive(ws).await;
        if matches(&frame) {
            return frame;
        }
        ws.skipped.push_back(frame);
    }
}

/// The answer to the frame sent with `reference`.
async fn answer(ws: &mut Ws, reference: &str) -> Value {
    until(ws, |f| f["ref"] == reference).await
}

/// A guest logged in as `name` (in `general`, the default room), its login's frames read.
async fn guest(url: &str, name: &str) -> Ws {
    let mut ws = connect(url).await;
    send(
        &mut ws,
        json!({"type": "login", "name": name, "ref": "login"}),
    )
    .await;
    let welcome = answer(&mut ws, "login").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    sync(&mut ws).await;
    ws
}

/// Registers `name` as an account on the node at `url`, then closes that connection.
async fn register(url: &str, name: &str) {
    let mut ws = guest(url, name).await;
    send(
        &mut ws,
        json!({"type": "register", "password": PASSWORD, "ref": "register"}),
    )
    .await;
    let registered = answer(&mut ws, "register").await;
    assert_ne!(registered["type"], "error", "{registered}");
    ws.close().await;
}

/// The account `name` logged in with its password on the node at `url`.
async fn account(url: &str, name: &str) -> Ws {
    let mut ws = connect(url).await;
    let login = json!({"type": "login", "name": name, "password": PASSWORD, "ref": "login"});
    send(&mut ws, login).await;
    let welcome = answer(&mut ws, "login").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    sync(&mut ws).await;
    ws
}

/// Reads up to the answer of a `ping`: everything sent to the client before it has arrived.
async fn sync(ws: &mut Ws) {
    send(ws, json!({"type": "ping", "ref": "sync"})).await;
    let pong = answer(ws, "sync").await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

/// Says `text` in `room` and returns the acknowledged id.
async fn say(ws: &mut Ws, room: &str, text: &str) -> u64 {
    send(
        ws,
        json!({"type": "say", "room": room, "text": text, "ref": text}),
    )
    .await;
    let ack = answer(ws, text).await;
    assert_eq!(ack["type"], "message", "{ack}");
    ack["id"].as_u64().expect("an id")
}

/// The next room message, skipping other frames.
async fn message(ws: &mut Ws) -> Value {
    until(ws, |f| f["type"] == "message").await
}

/// The names `who` lists for `room`.
async fn who(ws: &mut Ws, room: &str) -> BTreeSet<String> {
    send(ws, json!({"type": "who", "room": room, "ref": "who"})).await;
    let who = answer(ws, "who").await;
    who["members"]
        .as_array()
        .unwrap_or_else(|| panic!("a user list: {who}"))
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// Waits for the server to end the connection (a close frame, or the connection dropped),
/// skipping whatever frames come before.
async fn ended(ws: &mut Ws) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.socket.next())
            .await
            .expect("the server ends the connection in time");
        match next {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

/// The ids of `room`'s whole history, paged backwards `limit` at a time, oldest first.
async fn whole_history(ws: &mut Ws, room: &str, limit: usize) -> Vec<u64> {
    let mut ids = VecDeque::new();
    let mut before: Option<u64> = None;
    loop {
        let mut frame = json!({"type": "history", "room": room, "limit": limit, "ref": "page"});
        if let Some(before) = before {
            frame["before"] = json!(before);
        }
        send(ws, frame).await;
        let page = answer(ws, "page").await;
        let messages = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {page}"));
        let page_ids: Vec<u64> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
        for id in page_ids.iter().rev() {
            ids.push_front(*id);
        }
        if page_ids.len() < limit {
            return ids.into();
        }
        before = page_ids.first().copied();
    }
}

/// A line (TCP) client.
struct Line {
    read: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Line {
    async fn connect(addr: SocketAddr) -> Line {
        let connecting = TcpStream::connect(addr);
        let stream = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("connected in time")
            .expect("the line listener accepts");
        let (read, write) = stream.into_split();
        Line {
            read: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line that `matches`, skipping the others.
    async fn until(&mut self, matches: impl Fn(&str) -> bool) -> String {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.read.next_line())
                .await
                .expect("a line in time");
            let line = next.unwrap().expect("the connection is open");
            if matches(&line) {
                return line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_are_one_room_with_one_order_of_ids() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b, c) = (
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
    );
    let mut alice = guest(&url(&a), "alice").await;
    let mut bob = guest(&url(&b), "bob").await;
    let presence = until(&mut alice, |f| f["type"] == "presence").await;
    assert_eq!(presence["user"], "bob", "{presence}");
    assert_eq!(presence["event"], "join", "{presence}");
    let mut carol = guest(&url(&c), "carol").await;
    until(&mut bob, |f| {
        f["type"] == "presence" && f["user"] == "carol"
    })
    .await;

    assert_eq!(
        who(&mut carol, "general").await,
        names(&["alice", "bob", "carol"])
    );
    assert_eq!(
        who(&mut alice, "general").await,
        names(&["alice", "bob", "carol"])
    );

    // Messages from every node, seen by every node in one order of ids.
    let mut sent = Vec::new();
    for round in 0..5 {
        sent.push(say(&mut alice, "general", &format!("a{round}")).await);
        sent.push(say(&mut bob, "general", &format!("b{round}")).await);
        sent.push(say(&mut carol, "general", &format!("c{round}")).await);
    }
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");
    for (ws, own) in [(&mut alice, "a"), (&mut bob, "b"), (&mut carol, "c")] {
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let frame = message(ws).await;
            assert!(!frame["text"].as_str().unwrap().starts_with(own), "{frame}");
            seen.push(frame["id"].as_u64().unwrap());
        }
        let others: Vec<u64> = sent
            .iter()
            .copied()
            .filter(|id| seen.contains(id))
            .collect();
        assert_eq!(seen, others, "the others' messages in id order");
    }

    // `rooms` counts the members of every node.
    send(&mut bob, json!({"type": "rooms", "ref": "rooms"})).await;
    let rooms = answer(&mut bob, "rooms").await;
    let general = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == "general")
        .cloned()
        .unwrap_or_else(|| panic!("general in {rooms}"));
    assert_eq!(general["members"], 3, "{rooms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_name_is_held_by_one_connection_in_the_whole_cluster() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b) = (node(&redis, PATIENCE).await, node(&redis, PATIENCE).await);
    for round in 0..10 {
        let name = format!("racer{round}");
        let (mut on_a, mut on_b) = (connect(&url(&a)).await, connect(&url(&b)).await);
        let login = json!({"type": "login", "name": name, "ref": "login"});
        // Both logins are on the wire before either is answered.
        send(&mut on_a, login.clone()).await;
        send(&mut on_b, login).await;
        let answers = [
            answer(&mut on_a, "login").await,
            answer(&mut on_b, "login").await,
        ];
        let welcomed = answers.iter().filter(|f| f["type"] == "welcome").count();
        assert_eq!(welcomed, 1, "exactly one login wins: {answers:?}");
        let refused = answers.iter().find(|f| f["type"] == "error").unwrap();
        assert_eq!(refused["code"], "name_taken", "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_cross_nodes_online_offline_and_to_every_session() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b, c) = (
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
    );
    register(&url(&a), "alice").await;
    // Accounts registered on one node log in on another.
    register(&url(&b), "bob").await;
    register(&url(&c), "carol").await;
    let mut alice = account(&url(&c), "alice").await;
    let mut bob_on_a = account(&url(&a), "bob").await;
    let mut bob_on_b = account(&url(&b), "bob").await;

    // Online, to both of bob's sessions on two other nodes.
    send(
        &mut alice,
        json!({"type": "dm", "to": "bob", "text": "hi bob", "ref": "dm1"}),
    )
    .await;
    let sent = answer(&mut alice, "dm1").await;
    assert_eq!(sent["type"], "dm", "{sent}");
    for bob in [&mut bob_on_a, &mut bob_on_b] {
        let dm = until(bob, |f| f["type"] == "dm").await;
        assert_eq!(
            (dm["from"].as_str(), dm["text"].as_str()),
            (Some("alice"), Some("hi bob"))
        );
        assert_eq!(dm["id"], sent["id"]);
    }

    // Offline: carol is not logged in anywhere; her mailbox is the cluster's.
    send(
        &mut alice,
        json!({"type": "dm", "to": "carol", "text": "for later", "ref": "dm2"}),
    )
    .await;
    let queued = answer(&mut alice, "dm2").await;
    assert_eq!(queued["queued"], true, "{queued}");
    let mut carol = connect(&url(&a)).await;
    let login = json!({"type": "login", "name": "carol", "password": PASSWORD, "ref": "login"});
    send(&mut carol, login).await;
    let dm = until(&mut carol, |f| f["type"] == "dm").await;
    assert_eq!(dm["text"], "for later", "{dm}");
    assert_eq!(dm["id"], queued["id"]);

    // The DM history is the same on every node.
    for ws in [&mut bob_on_a, &mut bob_on_b] {
        send(
            ws,
            json!({"type": "history", "with": "alice", "ref": "page"}),
        )
        .await;
        let page = answer(ws, "page").await;
        let texts: Vec<&str> = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {page}"))
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["hi bob"], "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_resume_work_across_nodes() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b, c) = (
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
    );
    register(&url(&a), "dora").await;
    let mut sender = guest(&url(&a), "sender").await;
    let mut first = Vec::new();
    for i in 0..20 {
        first.push(say(&mut sender, "general", &format!("m{i}")).await);
    }
    // The whole history, paged on another node.
    let mut dora = account(&url(&b), "dora").await;
    send(
        &mut dora,
        json!({"type": "history", "room": "general", "limit": 50, "ref": "page"}),
    )
    .await;
    let page = answer(&mut dora, "page").await;
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, first, "{page}");

    // Dora drops off; five more messages; she resumes on a third node from the last id she saw.
    let last_seen = *first.last().unwrap();
    dora.close().await;
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(say(&mut sender, "general", &format!("late{i}")).await);
    }
    let mut dora = connect(&url(&c)).await;
    send(
        &mut dora,
        json!({"type": "login", "name": "dora", "password": PASSWORD, "since": last_seen, "ref": "login"}),
    )
    .await;
    let joined = until(&mut dora, |f| {
        f["type"] == "joined" && f["room"] == "general"
    })
    .await;
    let caught_up: Vec<u64> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(caught_up, missed, "{joined}");
    assert_eq!(joined["complete"], true, "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_leave_and_their_names_come_free() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let timeout = Duration::from_secs(4);
    let survivor = node(&redis, timeout).await;
    let mut doomed = ServerProcess::start(&[
        "--redis",
        &redis.url(),
        "--node-timeout",
        &timeout.as_secs().to_string(),
        "--rate-limit",
        "0",
    ]);
    let mut victim = guest(&doomed.url, "victim").await;
    let mut watcher = guest(&url(&survivor), "watcher").await;
    until(&mut victim, |f| {
        f["type"] == "presence" && f["user"] == "watcher"
    })
    .await;

    doomed.signal("KILL");
    let killed = Instant::now();
    doomed.wait();
    let leave = until(&mut watcher, |f| {
        f["type"] == "presence" && f["user"] == "victim"
    })
    .await;
    let noticed = killed.elapsed();
    assert_eq!(leave["event"], "leave", "{leave}");
    assert!(
        noticed <= timeout + Duration::from_secs(2),
        "the leave came {noticed:?} after the kill, with a node timeout of {timeout:?}"
    );
    // The name is free on the surviving node.
    let _victim_again = guest(&url(&survivor), "victim").await;
    drop(victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_message_and_reuses_no_id() {
    let mut redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b) = (node(&redis, PATIENCE).await, node(&redis, PATIENCE).await);
    let mut sender = guest(&url(&a), "sender").await;
    let mut receiver = guest(&url(&b), "receiver").await;

    let mut acknowledged = Vec::new();
    for i in 0..50 {
        acknowledged.push(say(&mut sender, "general", &format!("before{i}")).await);
    }
    redis.stop().await.expect("redis stops");
    // Redis is away: sends are refused, the connections stay, ping is answered.
    send(
        &mut sender,
        json!({"type": "say", "room": "general", "text": "lost", "ref": "away"}),
    )
    .await;
    let refused = answer(&mut sender, "away").await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    send(&mut receiver, json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(answer(&mut receiver, "p").await["type"], "pong");

    redis.start().await.expect("redis starts again");
    // Back by itself: keep sending until one is accepted (bounded), then more.
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "the cluster did not recover from a Redis restart"
        );
        send(
            &mut sender,
            json!({"type": "say", "room": "general", "text": "probe", "ref": "probe"}),
        )
        .await;
        let answer = answer(&mut sender, "probe").await;
        if answer["type"] == "message" {
            acknowledged.push(answer["id"].as_u64().unwrap());
            break;
        }
        assert_eq!(answer["code"], "unavailable", "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..50 {
        acknowledged.push(say(&mut sender, "general", &format!("after{i}")).await);
    }
    assert!(
        acknowledged.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase across the restart: {acknowledged:?}"
    );
    // The receiver on the other node got every acknowledged message, once, in order.
    let mut received = Vec::new();
    while received.len() < acknowledged.len() {
        let frame = message(&mut receiver).await;
        assert_ne!(frame["text"], "lost", "{frame}");
        received.push(frame["id"].as_u64().unwrap());
    }
    assert_eq!(received, acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_after_checkpoints_and_trimming_sees_the_same_chat() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let mut keys = redis_client(&redis).await;
    let a = start_node(&redis, |options, _| {
        options.checkpoint_interval = Duration::from_millis(300);
    })
    .await
    .expect("the node joins");
    register(&url(&a), "dora").await;
    let mut alice = guest(&url(&a), "alice").await;
    let mut bob = guest(&url(&a), "bob").await;
    send(
        &mut bob,
        json!({"type": "join", "room": "rust", "ref": "join"}),
    )
    .await;
    assert_eq!(answer(&mut bob, "join").await["type"], "joined");

    let mut said = Vec::new();
    for i in 0..220 {
        said.push(say(&mut alice, "general", &format!("m{i}")).await);
    }
    let mut queued = Vec::new();
    for i in 0..3 {
        let text = format!("for dora {i}");
        let dm = json!({"type": "dm", "to": "dora", "text": text, "ref": text});
        send(&mut alice, dm).await;
        let ack = answer(&mut alice, &text).await;
        assert_eq!(ack["queued"], true, "{ack}");
        queued.push(ack["id"].as_u64().unwrap());
    }

    // Until the leader (A) has stored a checkpoint of everything and trimmed the log behind an
    // earlier one. A checkpoint needs new entries since the one before: if the log is caught
    // up and still whole, one more message makes some.
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "the log was never trimmed");
        let appended = counter(&mut keys, "chat:log:seq").await;
        let held: u64 = redis::cmd("XLEN")
            .arg("chat:log")
            .query_async(&mut keys)
            .await
            .unwrap();
        let checkpointed = counter(&mut keys, "chat:checkpoint:seq").await;
        if held < appended && checkpointed == appended {
            break;
        }
        if checkpointed == appended {
            said.push(say(&mut alice, "general", "one more").await);
        } else {
            tokio::time::sleep(POLL).await;
        }
    }

    let b = node(&redis, PATIENCE).await;
    let mut carol = guest(&url(&b), "carol").await;
    let everyone = names(&["alice", "bob", "carol"]);
    assert_eq!(who(&mut carol, "general").await, everyone);
    assert_eq!(who(&mut carol, "rust").await, names(&["bob"]));
    let presence = until(&mut alice, |f| {
        f["type"] == "presence" && f["user"] == "carol"
    })
    .await;
    assert_eq!(presence["event"], "join", "{presence}");
    assert_eq!(whole_history(&mut carol, "general", 50).await, said);

    // Dora's DMs were queued on A, before B was; she gets them at her login on B.
    let mut dora = connect(&url(&b)).await;
    let login = json!({"type": "login", "name": "dora", "password": PASSWORD, "ref": "login"});
    send(&mut dora, login).await;
    assert_eq!(answer(&mut dora, "login").await["type"], "welcome");
    let mut delivered = Vec::new();
    while delivered.len() < queued.len() {
        let dm = until(&mut dora, |f| f["type"] == "dm").await;
        assert_eq!(dm["from"], "alice", "{dm}");
        delivered.push(dm["id"].as_u64().unwrap());
    }
    assert_eq!(delivered, queued);

    // B numbers its first message after every id A gave out.
    let last = said.iter().chain(&queued).copied().max().unwrap();
    let id = say(&mut carol, "general", "from b").await;
    assert_eq!(id, last + 1);
    let seen = until(&mut alice, |f| {
        f["type"] == "message" && f["text"] == "from b"
    })
    .await;
    assert_eq!(seen["id"], id, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_log_makes_every_node_start_over_without_losing_the_chat() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b) = (node(&redis, PATIENCE).await, node(&redis, PATIENCE).await);
    let mut alice = guest(&url(&a), "alice").await;
    let mut bob = guest(&url(&b), "bob").await;
    let mut said = Vec::new();
    for i in 0..10 {
        said.push(say(&mut alice, "general", &format!("before{i}")).await);
    }
    until(&mut bob, |f| {
        f["type"] == "message" && f["text"] == "before9"
    })
    .await;

    // Redis loses an entry: the counter that numbers the entries moved past one that is not
    // in the stream (as after a failover to a replica that had not received it yet). The next
    // entry, numbered as if nothing was lost, shows every reader the gap.
    let mut keys = redis_client(&redis).await;
    let _lost: u64 = redis::cmd("INCR")
        .arg("chat:log:seq")
        .query_async(&mut keys)
        .await
        .unwrap();
    let next: u64 = redis::cmd("INCR")
        .arg("chat:log:seq")
        .query_async(&mut keys)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("chat:log")
        .arg("*")
        .arg("n")
        .arg(next)
        .arg("node")
        .arg(999)
        .arg("in")
        .arg("[]")
        .query_async(&mut keys)
        .await
        .unwrap();

    // Every node starts over: its clients' connections end.
    ended(&mut alice).await;
    ended(&mut bob).await;

    // They come back, each on the other node: the chat is whole, and nobody is left over.
    let mut alice = guest(&url(&b), "alice").await;
    let mut bob = guest(&url(&a), "bob").await;
    // `who` is answered from B's replica: wait until it has bob's login.
    until(&mut alice, |f| {
        f["type"] == "presence" && f["user"] == "bob"
    })
    .await;
    assert_eq!(who(&mut alice, "general").await, names(&["alice", "bob"]));
    assert_eq!(whole_history(&mut bob, "general", 50).await, said);
    let from_alice = say(&mut alice, "general", "after").await;
    let seen = until(&mut bob, |f| f["type"] == "message" && f["text"] == "after").await;
    assert_eq!(seen["id"], from_alice, "{seen}");
    assert!(from_alice > *said.last().unwrap());
    let from_bob = say(&mut bob, "general", "and back").await;
    let seen = until(&mut alice, |f| {
        f["type"] == "message" && f["text"] == "and back"
    })
    .await;
    assert_eq!(seen["id"], from_bob, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_client_and_a_websocket_client_on_two_nodes_share_a_room() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let with_lines = |_: &mut ClusterOptions, config: &mut ServerConfig| {
        config.tcp = Some("127.0.0.1:0".into());
    };
    let a = start_node(&redis, with_lines)
        .await
        .expect("the node joins");
    let b = start_node(&redis, with_lines)
        .await
        .expect("the node joins");
    let mut wes = guest(&url(&b), "wes").await;

    let mut lina = Line::connect(a.tcp_addr().expect("the line listener")).await;
    lina.until(|l| l == "Enter your name:").await;
    lina.send("lina").await;
    lina.until(|l| l.starts_with("* Welcome, lina!")).await;
    let presence = until(&mut wes, |f| f["type"] == "presence").await;
    assert_eq!(
        (presence["user"].as_str(), presence["event"].as_str()),
        (Some("lina"), Some("join")),
        "{presence}"
    );

    let hi = say(&mut wes, "general", "hi from ws").await;
    lina.until(|l| l.ends_with("#general <wes> hi from ws"))
        .await;
    lina.send("hi from lines").await;
    let message = until(&mut wes, |f| f["type"] == "message" && f["from"] == "lina").await;
    assert_eq!(message["text"], "hi from lines", "{message}");
    assert!(message["id"].as_u64().unwrap() > hi, "{message}");

    // Presence the other way: a WebSocket user comes and goes on B.
    let mut wren = guest(&url(&b), "wren").await;
    lina.until(|l| l == "* wren joined #general").await;
    wren.close().await;
    lina.until(|l| l == "* wren left #general").await;
    lina.send("/quit").await;
    let left = until(&mut wes, |f| f["type"] == "presence" && f["user"] == "lina").await;
    assert_eq!(left["event"], "leave", "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_s_sessions_and_rooms_span_nodes() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let (a, b, c) = (
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
        node(&redis, PATIENCE).await,
    );
    register(&url(&a), "ann").await;
    let mut on_a = account(&url(&a), "ann").await;
    let mut on_b = account(&url(&b), "ann").await;

    // A join in one session holds for the other, on another node.
    send(
        &mut on_a,
        json!({"type": "join", "room": "rust", "ref": "join"}),
    )
    .await;
    let joined = answer(&mut on_a, "join").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let copy = until(&mut on_b, |f| f["type"] == "joined" && f["room"] == "rust").await;
    assert_eq!(copy["room"], "rust", "{copy}");
    assert!(copy.get("ref").is_none(), "{copy}");

    // A third user's message in the room reaches both sessions.
    let mut cid = guest(&url(&c), "cid").await;
    send(
        &mut cid,
        json!({"type": "join", "room": "rust", "ref": "join"}),
    )
    .await;
    let joined = answer(&mut cid, "join").await;
    assert_eq!(joined["members"], json!(["ann", "cid"]), "{joined}");
    let id = say(&mut cid, "rust", "hello rust").await;
    for session in [&mut on_a, &mut on_b] {
        let message = until(session, |f| f["type"] == "message").await;
        assert_eq!(message["room"], "rust", "{message}");
        assert_eq!(message["id"], id, "{message}");
    }

    // Ann logs out of both; her rooms are hers at her next login, on a third node.
    on_a.close().await;
    on_b.close().await;
    let left = until(&mut cid, |f| f["type"] == "presence" && f["room"] == "rust").await;
    assert_eq!(
        (left["user"].as_str(), left["event"].as_str()),
        (Some("ann"), Some("leave"))
    );
    let mut on_c = connect(&url(&c)).await;
    let login = json!({"type": "login", "name": "ann", "password": PASSWORD, "ref": "login"});
    send(&mut on_c, login).await;
    let welcome = answer(&mut on_c, "login").await;
    assert_eq!(welcome["rooms"], json!(["general", "rust"]), "{welcome}");
    let rust = until(&mut on_c, |f| f["type"] == "joined" && f["room"] == "rust").await;
    let history: Vec<&Value> = rust["history"].as_array().unwrap().iter().collect();
    assert_eq!(history.last().map(|m| &m["id"]), Some(&json!(id)), "{rust}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_prefixes_share_a_redis_without_seeing_each_other() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let prefixed = |prefix: &'static str| {
        move |options: &mut ClusterOptions, _: &mut ServerConfig| {
            options.prefix = prefix.to_owned();
        }
    };
    let one = start_node(&redis, prefixed("one:"))
        .await
        .expect("the node joins");
    let two = start_node(&redis, prefixed("two:"))
        .await
        .expect("the node joins");
    let also_two = start_node(&redis, prefixed("two:"))
        .await
        .expect("the node joins");

    // The same guest name in each cluster; each sees only its own users and messages.
    let mut first = guest(&url(&one), "sam").await;
    let mut second = guest(&url(&two), "sam").await;
    let mut other = guest(&url(&also_two), "pat").await;
    // `who` is answered from the node's replica: wait until it has pat.
    until(&mut second, |f| {
        f["type"] == "presence" && f["user"] == "pat"
    })
    .await;
    assert_eq!(who(&mut first, "general").await, names(&["sam"]));
    assert_eq!(who(&mut second, "general").await, names(&["pat", "sam"]));
    say(&mut first, "general", "in one").await;
    // Had "in one" gone to cluster two, it would be in two's log before this message, and
    // reach its members before it.
    say(&mut second, "general", "in two").await;
    let seen = message(&mut other).await;
    assert_eq!(seen["text"], "in two", "{seen}");
    assert!(
        !second.skipped.iter().any(|f| f["text"] == "in one"),
        "{:?}",
        second.skipped
    );
    let mut keys = redis_client(&redis).await;
    let default: Vec<String> = redis::cmd("KEYS")
        .arg("chat:*")
        .query_async(&mut keys)
        .await
        .unwrap();
    assert_eq!(
        default,
        Vec::<String>::new(),
        "no key under the default prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_other_chat_options_refuses_to_join() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let _first = node(&redis, PATIENCE).await;
    let other = start_node(&redis, |_, config| config.chat.mailbox = 10).await;
    match other {
        Ok(_) => panic!("a node with another mailbox size joined the cluster"),
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("chat options differ"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_makes_its_users_leave_at_once() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let node_timeout = Duration::from_secs(30);
    let (a, b) = (
        node(&redis, node_timeout).await,
        node(&redis, node_timeout).await,
    );
    let mut watcher = guest(&url(&b), "watcher").await;
    let mut leaving = guest(&url(&a), "leaving").await;
    until(&mut watcher, |f| {
        f["type"] == "presence" && f["user"] == "leaving"
    })
    .await;

    let asked = Instant::now();
    let shutdown = tokio::spawn(a.run_until(async {}));
    let left = until(&mut watcher, |f| {
        f["type"] == "presence" && f["user"] == "leaving"
    })
    .await;
    let took = asked.elapsed();
    assert_eq!(left["event"], "leave", "{left}");
    assert!(
        took < Duration::from_secs(5),
        "the leave came {took:?} after the shutdown began (node timeout {node_timeout:?})"
    );
    ended(&mut leaving).await;
    shutdown
        .await
        .expect("the shutdown's task")
        .expect("a clean shutdown");
    // The name is free on the node that stays.
    let _again = guest(&url(&b), "leaving").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_valid_on_every_node_and_its_account_is_the_cluster_s() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let secret = "a secret every node of the cluster shares, 48 byte";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt-secret");
    std::fs::write(&file, secret).unwrap();
    let with_secret = |_: &mut ClusterOptions, config: &mut ServerConfig| {
        config.jwt_secret_file = Some(file.clone());
    };
    let a = start_node(&redis, with_secret).await.expect("node a");
    let b = start_node(&redis, with_secret).await.expect("node b");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "tess", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    for server in [&a, &b] {
        let mut tess = connect(&url(server)).await;
        send(
            &mut tess,
            json!({"type": "login", "token": token, "ref": "t"}),
        )
        .await;
        let welcome = answer(&mut tess, "t").await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["name"], "tess", "{welcome}");
        assert_eq!(welcome["account"], true, "{welcome}");
    }
    // The token made `tess` an account for the whole cluster: a guest cannot take the name on
    // either node.
    for server in [&a, &b] {
        let mut impostor = connect(&url(server)).await;
        send(
            &mut impostor,
            json!({"type": "login", "name": "tess", "ref": "g"}),
        )
        .await;
        let refused = answer(&mut impostor, "g").await;
        assert_eq!(refused["type"], "error", "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_about_a_frame_itself_keeps_its_place_behind_earlier_answers() {
    let redis = RedisServer::launch().await.expect("redis-server starts");
    let a = node(&redis, PATIENCE).await;
    let mut alice = guest(&url(&a), "alice").await;
    for round in 0..20 {
        let say = json!({"type": "say", "room": "general", "text": format!("m{round}"), "ref": format!("say{round}")});
        send(&mut alice, say).await;
        // Undecodable: the transport answers it itself, without the log.
        send(
            &mut alice,
            json!({"type": "nope", "ref": format!("bad{round}")}),
        )
        .await;
        let first = until(&mut alice, |f| f["ref"].is_string()).await;
        assert_eq!(first["ref"], format!("say{round}"), "{first}");
        let second = until(&mut alice, |f| f["ref"].is_string()).await;
        assert_eq!(second["ref"], format!("bad{round}"), "{second}");
        assert_eq!(second["type"], "error", "{second}");
    }
}
