//! The cluster end to end: a real `redis-server` on a loopback port in a temporary directory,
//! and several servers joined to it, driven by real WebSocket clients. Servers run in this
//! process (`Server::start` with a Redis store) except where a test must kill one with SIGKILL;
//! those run the bundled binary.
//!
//! Every wait has a deadline; loads are a fixed number of messages; nothing waits by sleeping
//! for a condition to become true.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use chat_engine::cluster::ClusterOptions;
use chat_engine::cluster::redis_server::RedisServer;
use chat_engine::server::{Server, ServerConfig, StoreChoice};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
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
    let mut options = ClusterOptions::new(redis.url());
    options.node_timeout = node_timeout;
    let config = ServerConfig {
        ws: Some("127.0.0.1:0".into()),
        tcp: None,
        store: StoreChoice::Redis(options),
        ..ServerConfig::default()
    };
    let mut config = config;
    config.limits.rate_limit = 0;
    Server::start(config).await.expect("the node joins")
}

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
