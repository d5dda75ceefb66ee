//! Isolation: a stalled client, many clients, and clients that vanish never disturb the others.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chat_core::{Config, Event};
use chat_runtime::RuntimeConfig;
use chat_store::MemoryStore;
use chat_transport_ws::WsConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{Client, Frame, PATIENCE, Raw, Server, say};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

/// The next room message `client` receives, skipping other events (at most `skip` of them).
async fn next_message(client: &mut Client, skip: usize) -> (u64, String, String) {
    for _ in 0..=skip {
        if let Event::Message(message) = client.event().await {
            return (
                message.id.get(),
                message.from.to_string(),
                message.text.as_str().to_owned(),
            );
        }
    }
    panic!("no room message among {skip} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_closed_with_1008_and_never_slows_the_others() {
    const OTHERS: usize = 50;
    /// Rounds the others go on chatting after the server gave up on the stalled client.
    const AFTER: usize = 20;
    const MAX_ROUNDS: usize = 3000;
    let chat = Config {
        max_text_bytes: 12 * 1024,
        ..Config::default()
    };
    let limits = RuntimeConfig {
        outbox_bytes: 16 * 1024,
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    // Only the outbox bound may close the stalled client here, not a write timeout.
    let ws = WsConfig {
        write_timeout: Duration::from_secs(120),
        ..WsConfig::default()
    };
    let server = Server::with(chat, limits, ws).await;

    // Logged in, then never read again (until the end of the test).
    let mut stalled = Raw::connect_with_receive_buffer(&server.url, server.addr, 4096).await;
    stalled.login("stalled").await;

    let mut others = Vec::new();
    for i in 0..OTHERS {
        others.push(server.login(&format!("user{i:02}")).await);
    }
    // Each round one of the others says an 8 KiB text and every other receives it before the
    // next round begins, so a reading client never has more than one such frame queued.
    let barrier = Arc::new(Barrier::new(OTHERS));
    let overflow_round = Arc::new(AtomicUsize::new(usize::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (me, mut client) in others.into_iter().enumerate() {
        let (barrier, overflow_round, done) =
            (barrier.clone(), overflow_round.clone(), done.clone());
        let handle = server.handle();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..MAX_ROUNDS {
                let sender = round % OTHERS;
                let prefix = format!("r{round} ");
                if sender == me {
                    let text = format!("{prefix}{}", "x".repeat(8 * 1024));
                    client.send(say("general", &text)).await;
                }
                let (id, from, text) = next_message(&mut client, OTHERS).await;
                assert_eq!(from, format!("user{sender:02}"), "round {round}");
                assert!(
                    text.starts_with(&prefix),
                    "round {round}: every message, in order"
                );
                ids.push(id);
                if barrier.wait().await.is_leader() {
                    let first = overflow_round.load(Ordering::Acquire);
                    if first == usize::MAX && handle.metrics().slow_consumers > 0 {
                        overflow_round.store(round, Ordering::Release);
                    } else if first != usize::MAX && round >= first + AFTER {
                        done.store(true, Ordering::Release);
                    }
                }
                barrier.wait().await;
                if done.load(Ordering::Acquire) {
                    break;
                }
            }
            // Still connected and answered.
            client.sync().await;
            ids
        }));
    }
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.push(task.await.expect("a chatting client did not fail"));
    }
    let overflow = overflow_round.load(Ordering::Acquire);
    assert_ne!(
        overflow,
        usize::MAX,
        "the stalled client's outbox never overflowed in {MAX_ROUNDS} rounds"
    );
    let ids = &sequences[0];
    assert!(
        ids.len() > overflow + AFTER,
        "the others went on after the overflow"
    );
    assert!(
        sequences.iter().all(|s| s == ids),
        "every client saw the same messages"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Now the stalled client reads: what the server wrote before it gave up, in order, then the
    // close frame with 1008.
    let mut seen = Vec::new();
    let code = loop {
        match stalled.recv().await {
            Frame::Json(frame) if frame["type"] == "message" => {
                seen.push(frame["id"].as_u64().unwrap())
            }
            Frame::Json(_) => {}
            Frame::Closed(code) => break code,
        }
        assert!(
            seen.len() <= ids.len(),
            "the stalled client got more messages than were said"
        );
    };
    // With 1008 when the close frame could still be sent; a write that was blocked when the
    // queue overflowed is abandoned, so then the connection just ends.
    assert!(
        matches!(code, Some(1008) | None),
        "a slow consumer is closed with 1008 or cut off: {code:?}"
    );
    assert!(
        seen.len() < ids.len(),
        "the stalled client did not get everything"
    );
    assert_eq!(
        seen[..],
        ids[..seen.len()],
        "what it got came in order, without gaps"
    );
    eprintln!(
        "the outbox overflowed in round {overflow}; the stalled client had received {} messages",
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_in_one_room_all_receive_every_message_in_one_order() {
    const CLIENTS: usize = 200;
    const SENDERS: usize = 5;
    const EACH: usize = 4;
    let server = Server::start().await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(server.login(&format!("u{i:03}")).await);
    }
    let mut tasks = Vec::new();
    for (me, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            if me < SENDERS {
                for k in 0..EACH {
                    client.send(say("general", &format!("s{me}-{k}"))).await;
                }
            }
            let mut got = Vec::new();
            for _ in 0..SENDERS * EACH {
                got.push(next_message(&mut client, CLIENTS).await);
            }
            client.sync().await;
            got
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.push(task.await.expect("a client did not fail"));
    }
    let order = &orders[0];
    for (n, other) in orders.iter().enumerate() {
        assert_eq!(other, order, "client {n} saw another order");
    }
    assert!(
        order.windows(2).all(|w| w[0].0 < w[1].0),
        "the order is the order of the ids"
    );
    for sender in 0..SENDERS {
        let texts: Vec<&str> = order
            .iter()
            .filter(|(_, from, _)| *from == format!("u{sender:03}"))
            .map(|(_, _, text)| text.as_str())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|k| format!("s{sender}-{k}")).collect();
        assert_eq!(texts, expected, "each sender's messages, in the order sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_without_a_close_handshake_leave_and_free_their_names() {
    const GONE: usize = 10;
    const SAID: usize = 30;
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    let mut gone = Vec::new();
    for i in 0..GONE {
        gone.push(server.raw_login(&format!("gone{i}")).await);
    }
    alice.sync().await;
    bob.sync().await;
    // One that gives up in the middle of its handshake.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    drop(half);

    // Mid-conversation: bob's messages are on their way to everyone while the clients vanish,
    // some simply dropped (unread frames pending), some after half a frame of their own.
    for n in 0..SAID {
        bob.send_json(json!({"type": "say", "room": "general", "text": format!("m{n}")}))
            .await;
    }
    for (i, mut client) in gone.into_iter().enumerate() {
        if i % 2 == 1 {
            if let MaybeTlsStream::Plain(stream) = client.ws.get_mut() {
                stream.write_all(&[0x81, 0xFE, 0x10]).await.unwrap();
            }
        }
        drop(client);
    }

    let mut texts = Vec::new();
    let mut left = BTreeSet::new();
    for _ in 0..10 * (SAID + GONE) {
        if texts.len() == SAID && left.len() == GONE {
            break;
        }
        let frame = alice.json().await;
        match frame["type"].as_str() {
            Some("message") => texts.push(frame["text"].as_str().unwrap().to_owned()),
            Some("presence") => {
                assert_eq!(frame["event"], "leave", "{frame}");
                left.insert(frame["user"].as_str().unwrap().to_owned());
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    let expected: Vec<String> = (0..SAID).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected, "alice got every message, in order");
    let names: BTreeSet<String> = (0..GONE).map(|i| format!("gone{i}")).collect();
    assert_eq!(left, names, "everyone who vanished left");
    alice.quiet().await;

    // Their names are free again, and the server goes on serving.
    let mut back = Vec::new();
    for i in 0..GONE {
        let mut again = server.raw_login(&format!("GONE{i}")).await;
        again.quiet().await;
        back.push(again);
    }
    alice.sync().await;
    bob.sync().await;
    alice
        .send_json(json!({"type": "say", "room": "general", "text": "still here?"}))
        .await;
    assert_eq!(bob.json().await["text"], "still here?");
    assert_eq!(alice.json().await["text"], "still here?");
}

/// Errors for undecodable or rate-limited frames are replies: they never make a client slow, but
/// they pace its reading like any reply. A client that keeps sending bad frames and never reads
/// must still be disconnected (by the write timeout, once its socket is full), rather than
/// holding its connection (and its place among `max_connections`) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_bad_frames_and_never_reads_is_still_disconnected() {
    let ws = WsConfig {
        write_timeout: Duration::from_secs(1),
        ..WsConfig::default()
    };
    let limits = RuntimeConfig {
        outbox_bytes: 16 * 1024,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, ws).await;
    let raw = Raw::connect_with_receive_buffer(&server.url, server.addr, 4096).await;
    let (mut sink, unread) = raw.ws.split();
    // Sends until the server stops reading (or closes); the answers are never read.
    let flooding = tokio::spawn(async move {
        for _ in 0..200_000 {
            if sink.send(Message::text("x")).await.is_err() {
                break;
            }
        }
    });
    let handle = server.handle();
    handle.wait_idle(PATIENCE).await;
    let open = handle.metrics().connections_open;
    flooding.abort();
    drop(unread);
    assert_eq!(
        open, 0,
        "the connection that never reads its errors was not closed in {PATIENCE:?}"
    );
}

/// The most bytes the kernel may buffer on the server's side of one loopback connection
/// (`tcp_wmem`'s maximum), or 4 MiB where it cannot be read.
fn kernel_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_when_its_queue_overflows_not_at_the_write_timeout() {
    const OUTBOX: usize = 65_536;
    const TEXT: usize = 4000;
    const MAX_MESSAGES: usize = 20_000;
    let limits = RuntimeConfig {
        outbox_bytes: OUTBOX,
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    // The default write timeout (10 s): a busy room says far more than the bound below in it.
    let server = Server::with(Config::default(), limits, WsConfig::default()).await;
    let mut stalled = Raw::connect_with_receive_buffer(&server.url, server.addr, 4096).await;
    stalled.login("stalled").await;
    let mut talker = server.login("talker").await;
    let text = "x".repeat(TEXT);
    let mut said = 0;
    let cut_off = 'talk: loop {
        assert!(
            said < MAX_MESSAGES,
            "the stalled client was still in the room after {said} messages"
        );
        talker.send(say("general", &text)).await;
        said += 1;
        // Until the talker's own copy is back, watch for the stalled client's leave.
        loop {
            match talker.event().await {
                Event::Message(m) if m.from.as_str() == "talker" => break,
                Event::Presence { user, .. } if user.as_str() == "stalled" => break 'talk said,
                _ => {}
            }
        }
    };
    // What the server can have taken from the room before the cut-off: what the kernel
    // buffers on both sides, the outbox, and slack for frame headers.
    let bound = (kernel_send_buffer() + 64 * 1024 + OUTBOX) / TEXT * 3 / 2 + 64;
    eprintln!("the stalled client was cut off after {cut_off} messages (bound {bound})");
    assert!(
        cut_off <= bound,
        "cut off after {cut_off} messages of {TEXT} bytes; the outbox ({OUTBOX}) and kernel \
         buffers allow at most {bound}"
    );
    // Its name is free again at once.
    let again = server.login("stalled").await;
    drop(again);
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_pipelines_big_frames_and_reads_is_never_a_slow_consumer() {
    let limits = RuntimeConfig {
        outbox_bytes: 16_384,
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    let store = Arc::new(MemoryStore::new());
    let server = Server::vouching(store, Config::default(), limits).await;
    let mut alice = server.raw_login("alice").await;
    // 20 DMs of 1 KB (to bob, offline: they are queued for him) and 10 says of 3 KB, all sent
    // before reading anything.
    let kilobyte = "d".repeat(1000);
    for n in 0..20 {
        let frame = json!({"type": "dm", "to": "bob", "text": kilobyte, "ref": n});
        alice.send_json(frame).await;
    }
    let three = "s".repeat(3000);
    for n in 20..30 {
        let frame = json!({"type": "say", "room": "general", "text": three, "ref": n});
        alice.send_json(frame).await;
    }
    let mut answered = Vec::new();
    while answered.len() < 30 {
        match alice.recv().await {
            Frame::Json(frame) => {
                if let Some(n) = frame.get("ref").and_then(|r| r.as_u64()) {
                    assert_ne!(frame["type"], "error", "{frame}");
                    answered.push(n);
                }
            }
            Frame::Closed(code) => panic!("a reading client was closed ({code:?})"),
        }
    }
    assert_eq!(
        answered,
        (0..30).collect::<Vec<u64>>(),
        "every echo, in order"
    );
    alice.sync().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_gets_every_frame_whole_once_it_reads_again() {
    // Big enough an outbox that the reader is never a slow consumer; small enough a receive
    // buffer that the server's writes to it stop short, with the rest waiting its turn.
    let limits = RuntimeConfig {
        outbox_bytes: 16 << 20,
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, WsConfig::default()).await;
    let mut reader = Raw::connect_with_receive_buffer(&server.url, server.addr, 4096).await;
    reader.login("reader").await;
    let mut alice = server.raw_login("alice").await;
    // 4.5 MB: more than the kernel buffers between the server and the reader hold.
    let text = "t".repeat(3000);
    for n in 0..1500 {
        let frame = json!({"type": "say", "room": "general", "text": format!("{n} {text}")});
        alice.send_json(frame).await;
    }
    // Every echo is back: everything for the reader is written or queued.
    for _ in 0..1500 {
        alice.until("message").await;
    }
    reader.until("presence").await; // alice's
    for n in 0..1500 {
        let frame = reader.json().await;
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["text"], format!("{n} {text}"), "in order and whole");
    }
    reader.sync().await;
    server.shutdown().await;
}
