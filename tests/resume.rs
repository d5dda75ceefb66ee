//! Resume end to end: a WebSocket client that loses its connection while messages flow comes
//! back with `since` and ends up with every message exactly once, in order, paging when the
//! `joined` frame says `"complete": false`; also across a clean restart and a SIGKILL of the
//! bundled server on the JSON store, where the account's rooms and DM history must survive too.
//!
//! Every wait has a deadline, and the load is a fixed number of messages; a stop is triggered by
//! counting acknowledged messages, never by sleeping.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chat_engine::server::{Server, ServerConfig, StoreChoice};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use support::ServerProcess;

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let connecting = tokio_tungstenite::connect_async(url);
    tokio::time::timeout(PATIENCE, connecting)
        .await
        .expect("connected in time")
        .expect("the WebSocket handshake")
        .0
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// The next frame of type `kind`, skipping others.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next(ws).await;
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == kind {
            return frame;
        }
    }
}

fn id(frame: &Value) -> u64 {
    frame["id"].as_u64().expect("an id")
}

/// What a client shows: every room message and DM by id, each exactly once (a second sighting
/// of an id fails the test).
#[derive(Default, Debug)]
struct Shown {
    /// Room messages per room, in the order shown.
    rooms: BTreeMap<String, Vec<u64>>,
    dms: Vec<u64>,
    /// The newest id seen live: what `since` says at a reconnect.
    newest: u64,
    seen: BTreeSet<u64>,
}

impl Shown {
    fn message(&mut self, frame: &Value) {
        let id = id(frame);
        assert!(self.seen.insert(id), "message {id} shown twice: {frame}");
        let room = frame["room"].as_str().unwrap().to_owned();
        let shown = self.rooms.entry(room).or_default();
        assert!(
            shown.last().is_none_or(|&last| last < id),
            "out of order: {id} after {shown:?}"
        );
        shown.push(id);
        self.newest = self.newest.max(id);
    }

    fn dm(&mut self, frame: &Value) {
        let id = id(frame);
        assert!(self.seen.insert(id), "DM {id} shown twice: {frame}");
        self.dms.push(id);
        self.newest = self.newest.max(id);
    }

    /// Takes one live frame into account; `false` for frames that show nothing.
    fn live(&mut self, frame: &Value) -> bool {
        match frame["type"].as_str() {
            Some("message") => self.message(frame),
            Some("dm") => self.dm(frame),
            _ => return false,
        }
        true
    }
}

/// Logs in (`since` for a resume) and reads the login's frames into `shown`, up to the answer
/// of a `ping` sent right after the login: the `joined` frames (paging back, once the login's
/// frames are in, for a room whose `joined` is incomplete), then the queued and replayed DMs.
/// Returns the `welcome` frame.
async fn login(ws: &mut Ws, name: &str, since: Option<u64>, shown: &mut Shown) -> Value {
    let mut frame = json!({"type": "login", "name": name, "password": PASSWORD});
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    send(ws, frame).await;
    send(ws, json!({"type": "ping", "ref": "after-login"})).await;
    let welcome = next(ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut frames = Vec::new();
    loop {
        let frame = next(ws).await;
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["ref"] == "after-login" {
            break;
        }
        frames.push(frame);
    }
    for frame in frames {
        if frame["type"] != "joined" {
            assert!(shown.live(&frame), "unexpected after login: {frame}");
            continue;
        }
        let history = frame["history"].as_array().unwrap();
        let older = match (since, &frame["complete"]) {
            (None, complete) => {
                assert!(complete.is_null(), "no complete without since: {frame}");
                Vec::new()
            }
            (Some(_), Value::Bool(true)) => Vec::new(),
            (Some(since), Value::Bool(false)) => {
                let oldest = history.first().map_or(u64::MAX, id);
                older_than(ws, &frame["room"], oldest, since).await
            }
            (Some(_), other) => panic!("complete is a boolean after since, not {other}"),
        };
        for message in older.iter().chain(history) {
            shown.message(message);
        }
    }
    welcome
}

/// Pages `room` back from `before` to just above `since`, as a client does when a resume was
/// incomplete; returns those messages oldest first.
async fn older_than(ws: &mut Ws, room: &Value, mut before: u64, since: u64) -> Vec<Value> {
    let mut older = Vec::new();
    loop {
        send(
            ws,
            json!({"type": "history", "room": room, "before": before, "limit": 500}),
        )
        .await;
        let page = until(ws, "history").await;
        let messages = page["messages"].as_array().unwrap();
        let wanted: Vec<Value> = messages.iter().filter(|m| id(m) > since).cloned().collect();
        let reached = wanted.len() < messages.len() || messages.is_empty();
        older.splice(0..0, wanted);
        match messages.first() {
            Some(first) if !reached => before = id(first),
            _ => return older,
        }
    }
}

/// The room the `i`th message of a [`say`] goes to.
fn room_of(i: usize) -> &'static str {
    if i % 3 == 0 { "rust" } else { "general" }
}

/// Sends `count` messages, alternating between #general and #rust (see [`room_of`]), waiting
/// for each echo; returns each one's room and id, in order.
async fn say(ws: &mut Ws, count: usize, tag: &str) -> Vec<(&'static str, u64)> {
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let text = format!("{tag} {i}");
        send(
            ws,
            json!({"type": "say", "room": room_of(i), "text": text, "ref": i}),
        )
        .await;
        loop {
            let frame = next(ws).await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "message" && frame["ref"] == i {
                sent.push((room_of(i), id(&frame)));
                break;
            }
        }
    }
    sent
}

/// Sends `count` DMs to `to`, each acknowledged; returns their ids.
async fn dm(ws: &mut Ws, to: &str, count: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let text = format!("dm {i}");
        send(ws, json!({"type": "dm", "to": to, "text": text, "ref": i})).await;
        loop {
            let frame = next(ws).await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "dm" && frame["ref"] == i {
                ids.push(id(&frame));
                break;
            }
        }
    }
    ids
}

/// Registers `name` with [`PASSWORD`] over a fresh connection and joins #rust too.
async fn register(url: &str, name: &str) -> Ws {
    let mut ws = connect(url).await;
    send(&mut ws, json!({"type": "login", "name": name})).await;
    until(&mut ws, "joined").await;
    send(&mut ws, json!({"type": "register", "password": PASSWORD})).await;
    until(&mut ws, "registered").await;
    send(&mut ws, json!({"type": "join", "room": "rust"})).await;
    until(&mut ws, "joined").await;
    ws
}

/// The ids of `sent` by room, in order.
fn by_room(sent: &[(&str, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut rooms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for &(room, id) in sent {
        rooms.entry(room.into()).or_default().push(id);
    }
    rooms
}

/// The bundled server in this process on the memory store, WebSocket only, no rate limit.
fn in_process_config() -> ServerConfig {
    let mut config = ServerConfig {
        ws: Some("127.0.0.1:0".into()),
        tcp: None,
        store: StoreChoice::Memory,
        ..ServerConfig::default()
    };
    config.limits.rate_limit = 0;
    config
}

async fn in_process() -> Server {
    Server::start(in_process_config()).await.unwrap()
}

#[tokio::test]
async fn a_client_cut_off_while_a_thousand_messages_flow_shows_each_once_in_order() {
    let server = in_process().await;
    let url = format!("ws://{}/chat", server.ws_addr().unwrap());
    let mut bob = register(&url, "bob").await;
    register(&url, "alice").await.close(None).await.unwrap();

    // Alice is online for the first 200, away for the next 700 (more than the resume limit in
    // #general, fewer in #rust), and back for the last 100.
    let mut alice = connect(&url).await;
    let mut shown = Shown::default();
    login(&mut alice, "alice", None, &mut shown).await;
    let mut sent = say(&mut bob, 200, "first").await;
    let mut dms = dm(&mut bob, "alice", 5).await;
    while shown.seen.len() < 205 {
        let frame = next(&mut alice).await;
        shown.live(&frame);
    }
    alice.close(None).await.unwrap();
    drop(alice);
    sent.extend(say(&mut bob, 700, "away").await);
    dms.extend(dm(&mut bob, "alice", 5).await);

    let mut alice = connect(&url).await;
    let since = shown.newest;
    let welcome = login(&mut alice, "alice", Some(since), &mut shown).await;
    assert_eq!(
        welcome["rooms"],
        json!(["general", "rust"]),
        "the rooms stay"
    );
    let last = say(&mut bob, 100, "back").await;
    sent.extend(&last);
    while !shown.seen.contains(&last.last().unwrap().1) {
        let frame = next(&mut alice).await;
        shown.live(&frame);
    }
    assert_eq!(shown.rooms, by_room(&sent), "every message once, in order");
    assert_eq!(shown.dms, dms, "every DM once, in order");
}

#[tokio::test]
async fn a_since_older_than_the_history_says_incomplete_and_paging_finds_the_rest() {
    let mut config = in_process_config();
    config.chat.history = 10;
    config.chat.join_history = 5;
    let server = Server::start(config).await.unwrap();
    let url = format!("ws://{}/chat", server.ws_addr().unwrap());
    let mut bob = register(&url, "bob").await;
    register(&url, "dave").await.close(None).await.unwrap();
    let sent = say(&mut bob, 30, "old").await;

    // A guest resuming from the first id: #general (20 messages since) no longer fits in memory.
    let mut guest = connect(&url).await;
    send(
        &mut guest,
        json!({"type": "login", "name": "carol", "since": sent[0].1}),
    )
    .await;
    until(&mut guest, "welcome").await;
    let joined = until(&mut guest, "joined").await;
    assert_eq!(joined["complete"], false, "{joined}");
    let history = joined["history"].as_array().unwrap();
    let general = by_room(&sent)["general"].clone();
    let newest_ten: Vec<u64> = general[general.len() - 10..].to_vec();
    assert_eq!(history.iter().map(id).collect::<Vec<_>>(), newest_ten);

    // An account in both rooms: #rust (9 since) is complete, #general is paged from the store.
    let mut dave = connect(&url).await;
    let mut shown = Shown::default();
    login(&mut dave, "dave", Some(sent[0].1), &mut shown).await;
    let expected = by_room(&sent[1..]);
    assert_eq!(shown.rooms, expected);
}

#[tokio::test]
async fn dm_history_pages_both_directions_for_accounts_only() {
    let server = in_process().await;
    let url = format!("ws://{}/chat", server.ws_addr().unwrap());
    let mut alice = register(&url, "alice").await;
    let mut bob = register(&url, "Bob").await;
    let mut ids = dm(&mut alice, "bob", 3).await;
    ids.extend(dm(&mut bob, "alice", 2).await);
    send(
        &mut alice,
        json!({"type": "history", "with": "BOB", "limit": 4, "ref": "h"}),
    )
    .await;
    let page = until(&mut alice, "history").await;
    assert_eq!(page["ref"], "h");
    assert_eq!(page["with"], "Bob");
    let got: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(got, ids[1..]);
    assert!(page["messages"][0]["type"] == "dm");

    let mut guest = connect(&url).await;
    send(&mut guest, json!({"type": "login", "name": "gus"})).await;
    until(&mut guest, "joined").await;
    send(&mut guest, json!({"type": "history", "with": "alice"})).await;
    assert_eq!(next_error(&mut guest).await["code"], "auth_required");
    send(&mut alice, json!({"type": "history", "with": "gus"})).await;
    let refused = next_error(&mut alice).await;
    assert_eq!(refused["code"], "invalid_target");
}

async fn next_error(ws: &mut Ws) -> Value {
    loop {
        let frame = next(ws).await;
        if frame["type"] == "error" {
            return frame;
        }
    }
}

/// What a restart must keep, checked after a clean stop and after a SIGKILL: the account's
/// rooms, every acknowledged message and DM (resumed exactly once), and the DM history.
async fn survives(stop: &str) {
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let args = ["--rate-limit", "0", "--data", &data_arg];
    let server = ServerProcess::start(&args);
    let mut bob = register(&server.url, "bob").await;
    register(&server.url, "alice")
        .await
        .close(None)
        .await
        .unwrap();
    let mut alice = connect(&server.url).await;
    let mut shown = Shown::default();
    login(&mut alice, "alice", None, &mut shown).await;
    let first = say(&mut bob, 10, "seen").await;
    while !shown.seen.contains(&first.last().unwrap().1) {
        let frame = next(&mut alice).await;
        shown.live(&frame);
    }
    alice.close(None).await.unwrap();
    // Acknowledged (echoed) means stored: all of it must be there after the stop.
    let mut sent = first;
    sent.extend(say(&mut bob, 1000, "missed").await);
    let dms = dm(&mut bob, "alice", 20).await;
    drop(bob);
    server.signal(stop);
    let mut server = server;
    server.wait();

    let server = ServerProcess::start(&args);
    let mut alice = connect(&server.url).await;
    let since = shown.newest;
    let welcome = login(&mut alice, "alice", Some(since), &mut shown).await;
    assert_eq!(welcome["rooms"], json!(["general", "rust"]), "rooms kept");
    assert_eq!(shown.rooms, by_room(&sent), "every message once, in order");
    assert_eq!(shown.dms, dms, "queued DMs delivered once, not replayed");

    send(
        &mut alice,
        json!({"type": "history", "with": "bob", "limit": 500}),
    )
    .await;
    let page = until(&mut alice, "history").await;
    let paged: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(paged, dms, "the DM history survives");
}

#[tokio::test]
async fn a_resume_after_a_clean_restart_misses_nothing() {
    survives("TERM").await;
}

#[tokio::test]
async fn a_resume_after_sigkill_misses_nothing_acknowledged() {
    survives("KILL").await;
}
