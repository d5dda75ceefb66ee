//! Slow consumers, the short version for CI: 200 WebSocket clients in one room, 5 of which stop
//! reading right after they log in. The stalled ones must be disconnected as slow consumers
//! (close code 1008 where it can still be sent, after what the server had already written, in
//! order), and every other client must receive every message, in the one order. Speed is not
//! asserted here; the latency figures come from `scripts/slow-consumers.sh` (1,000 clients, 10
//! stalled).
//!
//! The runtime runs in this process, so the test can see the moment the server gives up on the
//! stalled clients (its `slow_consumers` counter) without sleeping. The outbox is small (32 KiB),
//! the stalled clients' receive buffers are 4 KiB, and the write timeout is long, so that only the
//! outbox bound can close them. The kernel still buffers up to `net.ipv4.tcp_wmem`'s maximum
//! (4 MiB here) on the server's side of each stalled socket before the outbox fills at all, so
//! to keep this test to a few seconds in a debug build, the traffic that fills the stalled
//! clients is mostly 4 KiB DMs, which five of the readers send them while the room chats,
//! rather than 4 MiB of 200-fold room traffic; the room messages still go to them too.

use std::sync::Arc;
use std::time::Duration;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{Config, Event};
use chat_engine::runtime::{Handle, Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::{WsConfig, serve};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 200;
const STALLED: usize = 5;
/// Messages said after the last stalled client was closed.
const AFTER: usize = 20;
/// The most messages the test says: the outbox bound must be reached well before.
const MAX_MESSAGES: usize = 20_000;
/// The most events one reader reads.
const MAX_EVENTS: usize = 100_000;
const PATIENCE: Duration = Duration::from_secs(30);
const OUTBOX: usize = 32 * 1024;

type RawWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn start() -> (Runtime, String) {
    let limits = RuntimeConfig {
        outbox_bytes: OUTBOX,
        rate_limit: 0,
        max_connections: CLIENTS + 10,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::start(Config::default(), Arc::new(MemoryStore::new()), limits)
        .await
        .expect("the runtime starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    let ws = WsConfig {
        write_timeout: Duration::from_secs(300),
        ..WsConfig::default()
    };
    tokio::spawn(serve(listener, runtime.handle(), ws));
    (runtime, url)
}

async fn next(client: &mut WsClient) -> Incoming {
    tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("the server answered in time")
        .expect("the connection works")
}

async fn login(url: &str, name: &str) -> WsClient {
    let mut client = WsClient::connect(url).await.expect("the client connects");
    client
        .send_text(&json!({"type": "login", "name": name}).to_string())
        .await
        .unwrap();
    for kind in ["welcome", "joined"] {
        match next(&mut client).await {
            Incoming::Event { event, .. } => assert_eq!(event.kind(), kind),
            other => panic!("expected {kind}, got {other:?}"),
        }
    }
    client
}

/// A client with a 4 KiB receive buffer that logs in and then reads nothing more.
async fn stalled_login(url: &str, name: &str) -> RawWs {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.strip_suffix("/chat"))
        .unwrap()
        .parse()
        .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the stalled client connects");
    ws.send(Message::text(
        json!({"type": "login", "name": name}).to_string(),
    ))
    .await
    .unwrap();
    for kind in ["welcome", "joined"] {
        assert_eq!(
            raw_next(&mut ws).await.map(|f| f["type"].clone()),
            Some(json!(kind))
        );
    }
    ws
}

/// The next JSON frame of a raw client, or `None` once it is closed.
async fn raw_next(ws: &mut RawWs) -> Option<Value> {
    raw_next_or_close(ws).await.ok()
}

/// The next JSON frame of a raw client, or the close code once it is closed.
async fn raw_next_or_close(ws: &mut RawWs) -> Result<Value, Option<u16>> {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the server wrote or closed in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Reads until the message `end`; returns the ids of every room message received. With a
/// `target`, also keeps `WINDOW` 4 KiB DMs to it in flight until one comes back `queued` (the
/// target is no longer online: the server closed it).
async fn read_all(mut client: WsClient, me: String, target: Option<String>) -> Vec<u64> {
    const WINDOW: usize = 4;
    let filler = "x".repeat(4000);
    let mut flooding = target.is_some();
    if let Some(target) = &target {
        for _ in 0..WINDOW {
            let dm = json!({"type": "dm", "to": target, "text": filler});
            client.send_text(&dm.to_string()).await.unwrap();
        }
    }
    let mut ids = Vec::new();
    for _ in 0..MAX_EVENTS {
        match next(&mut client).await {
            Incoming::Event {
                event: Event::Message(message),
                ..
            } => {
                ids.push(message.id.get());
                if message.text.as_str() == "end" {
                    return ids;
                }
            }
            Incoming::Event {
                event: Event::Dm { queued, .. },
                ..
            } => {
                flooding &= !queued;
                if let (true, Some(target)) = (flooding, &target) {
                    let dm = json!({"type": "dm", "to": target, "text": filler});
                    client.send_text(&dm.to_string()).await.unwrap();
                }
            }
            Incoming::Event { .. } => {}
            other => panic!("{me} was disconnected: {other:?}"),
        }
    }
    panic!("{me}: no end in {MAX_EVENTS} events");
}

/// Says numbered room messages one after the other (each once its own copy is back) until the
/// server has closed every stalled client and `AFTER` more were said; then says `end`. Returns
/// the ids of the room messages and the number of the one after which every stalled client was
/// closed.
async fn say_until_stalled_are_closed(mut sender: WsClient, handle: Handle) -> (Vec<u64>, usize) {
    let mut ids = Vec::new();
    let mut closed_at = None;
    for n in 0..MAX_MESSAGES {
        let last = closed_at.is_some_and(|at| n >= at + AFTER);
        let text = if last {
            "end".to_owned()
        } else {
            format!("m{n}")
        };
        sender
            .send_text(&json!({"type": "say", "room": "general", "text": text}).to_string())
            .await
            .unwrap();
        loop {
            match next(&mut sender).await {
                Incoming::Event {
                    event: Event::Message(message),
                    ..
                } => {
                    ids.push(message.id.get());
                    if message.text.as_str() == text {
                        break;
                    }
                }
                Incoming::Event { .. } => {}
                other => panic!("the sender was disconnected: {other:?}"),
            }
        }
        if last {
            return (ids, closed_at.expect("set before the end"));
        }
        if closed_at.is_none() && handle.metrics().slow_consumers >= STALLED as u64 {
            closed_at = Some(n);
        }
    }
    panic!(
        "after {MAX_MESSAGES} messages only {} of {STALLED} stalled clients were closed",
        handle.metrics().slow_consumers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_closed_and_everyone_else_gets_every_message() {
    let (runtime, url) = start().await;
    let handle = runtime.handle();

    let sender = login(&url, "sender").await;
    let mut readers = Vec::new();
    for i in 1..CLIENTS - STALLED {
        let name = format!("reader{i:03}");
        let client = login(&url, &name).await;
        let target = (i <= STALLED).then(|| format!("stalled{}", i - 1));
        readers.push((name.clone(), client, target));
    }
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        stalled.push(stalled_login(&url, &format!("stalled{i}")).await);
    }
    assert_eq!(handle.metrics().connections_open, CLIENTS as u64);
    let readers: Vec<_> = readers
        .into_iter()
        .map(|(name, client, target)| tokio::spawn(read_all(client, name, target)))
        .collect();

    let (said, closed_at) = say_until_stalled_are_closed(sender, handle.clone()).await;
    assert_eq!(handle.metrics().slow_consumers, STALLED as u64);
    for reader in readers {
        let got = tokio::time::timeout(PATIENCE, reader)
            .await
            .expect("a reader finished")
            .expect("a reader did not panic");
        assert_eq!(
            got, said,
            "every reader got every message, in the one order"
        );
    }

    // The stalled clients now read: what the server wrote before it gave up, in order and
    // without gaps, then the close frame with 1008, or, where the server gave up on a write that
    // was blocked (part of a frame may have gone out, so no close frame can follow), the end of
    // the connection. A client is usually closed before its socket is full, so most get 1008.
    let mut with_1008 = 0;
    for (i, mut ws) in stalled.into_iter().enumerate() {
        let mut seen = Vec::new();
        let code = loop {
            match raw_next_or_close(&mut ws).await {
                Ok(frame) if frame["type"] == "message" => seen.push(frame["id"].as_u64().unwrap()),
                Ok(_) => {}
                Err(code) => break code,
            }
            assert!(seen.len() <= said.len(), "more messages than were said");
        };
        assert!(
            matches!(code, Some(1008) | None),
            "stalled{i} is closed with 1008 or simply ends, not with {code:?}"
        );
        with_1008 += usize::from(code.is_some());
        assert!(seen.len() < said.len(), "stalled{i} did not get everything");
        assert_eq!(
            seen[..],
            said[..seen.len()],
            "stalled{i}: in order, no gaps"
        );
    }
    assert!(with_1008 > 0, "no stalled client got its close frame");
    eprintln!(
        "{} messages said; the {STALLED} stalled clients were all closed by message \
         {closed_at}, {with_1008} with 1008",
        said.len()
    );
    drop(handle);
    runtime.shutdown().await.expect("a clean shutdown");
}
