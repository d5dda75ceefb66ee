//! Crash safety and graceful shutdown end to end, under load: the bundled server binary with the
//! JSON-file store, several WebSocket clients chatting in two rooms as fast as the server
//! acknowledges, and the process killed (SIGKILL) or stopped (SIGTERM) in the middle of it.
//! After a restart on the same data directory, the history (read back with `history` pages)
//! must hold every message any client received before the stop, exactly as received, nothing
//! twice, and new ids must continue above all of them.
//!
//! `tests/chat_server.rs` covers the same signals for one quiet client; this file adds the
//! concurrent load, the paging and the id checks. Both start the server with `tests/support`.
//! Everything is bounded: a fixed number of clients, at most `MAX_SENDS` messages each, and
//! every wait has a deadline. The stop is triggered by counting acknowledged messages, not by
//! sleeping.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{Event, RoomMessage};
use serde_json::json;
use tokio::sync::watch;

use support::{PATIENCE, ServerProcess};
/// Chatting clients.
const CLIENTS: usize = 4;
/// The rooms they chat in, alternately.
const ROOMS: [&str; 2] = ["general", "ops"];
/// Messages acknowledged (echoed to their senders) before the server is stopped: more than one
/// block of ids (1024), so the load crosses an id reservation.
const BEFORE_STOP: usize = 1_500;
/// The most messages one client sends: the load is bounded even if the stop never comes.
const MAX_SENDS: usize = 5_000;

/// The server binary on the JSON store in `data`, with no rate limit: the load is as fast as the
/// server acknowledges.
fn start_server(data: &Path) -> ServerProcess {
    let data = data.to_str().expect("a UTF-8 temporary path");
    ServerProcess::start(&["--rate-limit", "0", "--data", data])
}

// --- the load ---

/// What one chatting client saw until its connection ended.
#[derive(Debug)]
struct ClientLog {
    name: String,
    /// Every room message received, in order.
    received: Vec<RoomMessage>,
    /// How many of its own messages came back to it (acknowledged).
    acknowledged: usize,
    /// How the connection ended: `Some(code)` for a close frame, `None` for a broken socket.
    close: Option<Option<u16>>,
    /// It stopped because it had sent `MAX_SENDS`, not because the server went away.
    ran_out: bool,
}

async fn recv(client: &mut WsClient) -> Result<Incoming, String> {
    match tokio::time::timeout(PATIENCE, client.recv()).await {
        Ok(Ok(incoming)) => Ok(incoming),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => panic!("the server neither answered nor closed in {PATIENCE:?}"),
    }
}

async fn expect_event(client: &mut WsClient) -> Event {
    match recv(client).await {
        Ok(Incoming::Event { event, .. }) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Connects, logs in (joining `general`) and joins every other room of `ROOMS`.
async fn join(url: &str, name: &str) -> WsClient {
    let mut client = WsClient::connect(url).await.expect("the client connects");
    client
        .send_text(&json!({"type": "login", "name": name}).to_string())
        .await
        .unwrap();
    assert_eq!(expect_event(&mut client).await.kind(), "welcome");
    assert_eq!(expect_event(&mut client).await.kind(), "joined");
    for room in &ROOMS[1..] {
        client
            .send_text(&json!({"type": "join", "room": room}).to_string())
            .await
            .unwrap();
        loop {
            match expect_event(&mut client).await {
                Event::Joined { .. } => break,
                Event::Presence { .. } | Event::Message(_) => {}
                other => panic!("expected joined, got {other:?}"),
            }
        }
    }
    client
}

/// One client of the load: says a numbered text, alternating rooms, and reads (recording every
/// room message) until its own copy comes back; again, until the connection ends.
async fn chat(mut client: WsClient, name: String, acks: watch::Sender<usize>) -> ClientLog {
    let mut log = ClientLog {
        name,
        received: Vec::new(),
        acknowledged: 0,
        close: None,
        ran_out: false,
    };
    for n in 0..MAX_SENDS {
        let text = format!("{}-{n}", log.name);
        let frame = json!({"type": "say", "room": ROOMS[n % ROOMS.len()], "text": text});
        if client.send_text(&frame.to_string()).await.is_err() {
            // The server went away; read whatever it still sent.
        }
        loop {
            match recv(&mut client).await {
                Ok(Incoming::Event {
                    event: Event::Message(message),
                    ..
                }) => {
                    let mine = message.text.as_str() == text;
                    log.received.push((*message).clone());
                    if mine {
                        log.acknowledged += 1;
                        acks.send_modify(|count| *count += 1);
                        break;
                    }
                }
                Ok(Incoming::Event { .. } | Incoming::Unknown(_)) => {}
                Ok(Incoming::Closed { code, .. }) => {
                    log.close = Some(code);
                    return log;
                }
                Err(_) => return log,
            }
        }
    }
    log.ran_out = true;
    log
}

/// Starts `CLIENTS` chatting clients; returns their tasks and a count of acknowledged messages.
async fn start_load(
    url: &str,
) -> (
    Vec<tokio::task::JoinHandle<ClientLog>>,
    watch::Receiver<usize>,
) {
    let (acks, acked) = watch::channel(0);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("chatter{i}");
        clients.push((join(url, &name).await, name));
    }
    let tasks = clients
        .into_iter()
        .map(|(client, name)| tokio::spawn(chat(client, name, acks.clone())))
        .collect();
    (tasks, acked)
}

/// Waits until `BEFORE_STOP` messages were acknowledged (the load is under way).
async fn until_acknowledged(acked: &mut watch::Receiver<usize>) {
    tokio::time::timeout(PATIENCE, acked.wait_for(|&n| n >= BEFORE_STOP))
        .await
        .expect("the load reached its count in time")
        .expect("the clients are still running");
}

/// Collects every client's log (each ends when the server goes away).
async fn finish_load(tasks: Vec<tokio::task::JoinHandle<ClientLog>>) -> Vec<ClientLog> {
    let mut logs = Vec::new();
    for task in tasks {
        let log = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("a client noticed the server was gone")
            .expect("a client task did not panic");
        assert!(
            !log.ran_out,
            "{} sent all {MAX_SENDS} messages before the stop: the stop was not under load",
            log.name
        );
        logs.push(log);
    }
    logs
}

// --- the check after the restart ---

/// A room's whole history, read with `history` pages from the newest backwards, oldest first.
async fn whole_history(client: &mut WsClient, room: &str) -> Vec<RoomMessage> {
    let mut pages: Vec<Vec<RoomMessage>> = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..(CLIENTS * MAX_SENDS / 500 + 2) {
        let mut frame = json!({"type": "history", "room": room, "limit": 500});
        if let Some(before) = before {
            frame["before"] = json!(before);
        }
        client.send_text(&frame.to_string()).await.unwrap();
        let page = loop {
            match expect_event(client).await {
                Event::History { messages, .. } => break messages,
                Event::Presence { .. } => {}
                other => panic!("expected a history page, got {other:?}"),
            }
        };
        let Some(first) = page.first() else {
            pages.reverse();
            return pages.concat();
        };
        before = Some(first.id.get());
        pages.push(page.iter().map(|m| (**m).clone()).collect());
    }
    panic!("the history of #{room} did not end");
}

/// Restarts on `data` and checks the history against what the clients received.
async fn check_after_restart(data: &Path, logs: &[ClientLog]) {
    let server = start_server(data);
    let mut checker = join(&server.url, "checker").await;

    let mut stored: HashMap<u64, RoomMessage> = HashMap::new();
    let mut texts = HashSet::new();
    for room in ROOMS {
        let history = whole_history(&mut checker, room).await;
        assert!(
            history.windows(2).all(|w| w[0].id < w[1].id),
            "#{room}: the history is in strictly increasing id order, without duplicates"
        );
        for message in history {
            assert_eq!(
                message.room.as_str(),
                room,
                "a page holds its own room only"
            );
            assert!(
                texts.insert(message.text.as_str().to_owned()),
                "{:?} is stored twice",
                message.text.as_str()
            );
            assert!(
                stored.insert(message.id.get(), message).is_none(),
                "an id is in two rooms"
            );
        }
    }

    let mut received = 0;
    let mut highest = 0;
    for log in logs {
        let mut last_per_room: BTreeMap<&str, u64> = BTreeMap::new();
        for message in &log.received {
            received += 1;
            highest = highest.max(message.id.get());
            let last = last_per_room.entry(message.room.as_str()).or_default();
            assert!(*last < message.id.get(), "{}: one order per room", log.name);
            *last = message.id.get();
            match stored.get(&message.id.get()) {
                Some(kept) => assert_eq!(kept, message, "stored as it was received"),
                None => panic!(
                    "{} received {message:?} before the stop, but it is not in the history \
                     after the restart",
                    log.name
                ),
            }
        }
    }
    assert!(received >= BEFORE_STOP, "the clients received the load");
    highest = highest.max(stored.keys().copied().max().unwrap_or(0));

    // New ids continue above everything received and stored.
    checker
        .send_text(
            &json!({"type": "say", "room": "general", "text": "after the restart"}).to_string(),
        )
        .await
        .unwrap();
    let id = loop {
        if let Event::Message(message) = expect_event(&mut checker).await {
            break message.id.get();
        }
    };
    assert!(
        id > highest,
        "the first id after the restart ({id}) is above every earlier one ({highest})"
    );
    eprintln!(
        "{} messages stored, {received} deliveries checked, ids up to {highest}, next id {id}",
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_received_message_and_ids_continue() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server(data.path());
    let (tasks, mut acked) = start_load(&server.url).await;
    until_acknowledged(&mut acked).await;

    server.signal("KILL");
    let status = server.wait();
    assert!(!status.success(), "SIGKILL is not a clean exit: {status}");
    let logs = finish_load(tasks).await;

    check_after_restart(data.path(), &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_closes_with_1001_and_keeps_every_acknowledged_message() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server(data.path());
    let (tasks, mut acked) = start_load(&server.url).await;
    until_acknowledged(&mut acked).await;

    server.signal("TERM");
    let logs = finish_load(tasks).await;
    let status = server.wait();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
    for log in &logs {
        assert_eq!(
            log.close,
            Some(Some(1001)),
            "{} is closed with 1001 (going away)",
            log.name
        );
        assert!(log.acknowledged > 0, "{} chatted", log.name);
    }

    check_after_restart(data.path(), &logs).await;
}
