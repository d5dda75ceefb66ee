//! Every request and every error code of docs/protocol.md's WebSocket transport, over a real
//! loopback server with real WebSocket clients. Server frames are compared as whole JSON values,
//! so a missing or an extra field fails as surely as a wrong one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_client::WsClient;
use chat_core::{Config, RoomName};
use chat_runtime::RuntimeConfig;
use chat_store::MemoryStore;
use chat_transport_ws::WsConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{PATIENCE, Raw, Server, check_error, check_ts, dm_frame, message_frame, without_ref};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};

// ---- helpers ------------------------------------------------------------------------------

/// Checks that `frame` is exactly a MESSAGE (plus whatever `ref` it has) and returns its id.
fn check_message(frame: &Value, room: &str, from: &str, text: &str) -> u64 {
    let id = frame["id"]
        .as_u64()
        .filter(|id| *id > 0)
        .unwrap_or_else(|| panic!("a message id is a positive integer: {frame}"));
    check_ts(&frame["ts"]);
    assert_eq!(
        without_ref(frame),
        message_frame(room, id, from, text, &frame["ts"]),
        "a MESSAGE frame has exactly the protocol's fields"
    );
    id
}

/// Checks that `frame` is exactly a DM (plus whatever `ref` and `queued` it has) and returns its
/// id.
fn check_dm(frame: &Value, from: &str, to: &str, text: &str) -> u64 {
    let id = frame["id"]
        .as_u64()
        .filter(|id| *id > 0)
        .unwrap_or_else(|| panic!("a DM id is a positive integer: {frame}"));
    check_ts(&frame["ts"]);
    let mut bare = without_ref(frame);
    bare.as_object_mut().unwrap().remove("queued");
    assert_eq!(
        bare,
        dm_frame(id, from, to, text, &frame["ts"]),
        "a DM frame has exactly the protocol's fields"
    );
    id
}

/// Says `text` in `room` with `reference` and returns the sender's copy (checked, `ref` included).
async fn say(client: &mut Raw, room: &str, from: &str, text: &str, reference: Value) -> Value {
    client
        .send_json(json!({"type": "say", "room": room, "text": text, "ref": reference}))
        .await;
    let echo = client.json().await;
    check_message(&echo, &room.to_ascii_lowercase(), from, text);
    if reference.is_null() {
        assert_eq!(echo.get("ref"), None, "\"ref\": null is no ref: {echo}");
    } else {
        assert_eq!(
            echo["ref"], reference,
            "the sender's copy carries the ref: {echo}"
        );
    }
    echo
}

/// Joins `room` and returns the `joined` reply.
async fn join(client: &mut Raw, room: &str) -> Value {
    client
        .send_json(json!({"type": "join", "room": room}))
        .await;
    let joined = client.json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    joined
}

/// The HTTP status an upgrade on `url` is refused with.
async fn refused_status(url: &str) -> u16 {
    let attempt = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("the server answered the upgrade in time");
    match attempt {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal of {url}, got {other}"),
        Ok(_) => panic!("the upgrade on {url} was accepted"),
    }
}

fn no_default_room() -> Config {
    Config {
        default_room: None,
        ..Config::default()
    }
}

fn unlimited() -> RuntimeConfig {
    RuntimeConfig {
        rate_limit: 0,
        ..RuntimeConfig::default()
    }
}

// ---- login, presence, join, leave ----------------------------------------------------------

#[tokio::test]
async fn login_is_welcomed_by_the_name_as_given_and_joins_the_default_room() {
    let server = Server::start().await;
    let mut alice = server.raw().await;
    alice
        .send_json(json!({"type": "login", "name": "Alice_1.x", "ref": "l1"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "welcome", "name": "Alice_1.x", "rooms": ["general"], "account": false, "ref": "l1"})
    );
    assert_eq!(
        alice.json().await,
        json!({"type": "joined", "room": "general", "members": ["Alice_1.x"], "history": []})
    );
    alice.quiet().await;

    let mut bob = server.raw().await;
    bob.send_json(json!({"type": "login", "name": "bob"})).await;
    assert_eq!(
        bob.json().await,
        json!({"type": "welcome", "name": "bob", "rooms": ["general"], "account": false})
    );
    assert_eq!(
        bob.json().await,
        json!({"type": "joined", "room": "general", "members": ["Alice_1.x", "bob"], "history": []})
    );
    assert_eq!(
        alice.json().await,
        json!({"type": "presence", "room": "general", "user": "bob", "event": "join"}),
        "members of the default room are told of the login"
    );
    bob.quiet().await;
    alice.quiet().await;
}

#[tokio::test]
async fn login_joins_the_configured_default_room_or_none() {
    let lobby = Config {
        default_room: Some(RoomName::parse("Lobby").unwrap()),
        ..Config::default()
    };
    let server = Server::with(lobby, RuntimeConfig::default(), WsConfig::default()).await;
    let mut alice = server.raw().await;
    alice
        .send_json(json!({"type": "login", "name": "alice"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "welcome", "name": "alice", "rooms": ["lobby"], "account": false})
    );
    assert_eq!(
        alice.json().await,
        json!({"type": "joined", "room": "lobby", "members": ["alice"], "history": []})
    );
    alice.quiet().await;

    let server = Server::with(
        no_default_room(),
        RuntimeConfig::default(),
        WsConfig::default(),
    )
    .await;
    let mut alice = server.raw().await;
    alice
        .send_json(json!({"type": "login", "name": "alice"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "welcome", "name": "alice", "rooms": [], "account": false})
    );
    alice.quiet().await;
    alice.send_json(json!({"type": "rooms"})).await;
    assert_eq!(
        alice.json().await,
        json!({"type": "rooms", "rooms": []}),
        "no room was joined"
    );
}

#[tokio::test]
async fn presence_tells_the_other_members_of_joins_and_leaves_and_nobody_else() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    let mut carol = server.raw_login("carol").await;
    alice.sync().await;
    bob.sync().await;

    // Nobody else is in #rust: nobody is told.
    bob.send_json(json!({"type": "join", "room": "rust", "ref": "j1"}))
        .await;
    assert_eq!(
        bob.json().await,
        json!({"type": "joined", "room": "rust", "members": ["bob"], "history": [], "ref": "j1"})
    );
    alice.quiet().await;
    carol.quiet().await;

    // Alice joins: bob, a member, is told; carol, who is not in #rust, is not.
    alice
        .send_json(json!({"type": "join", "room": "Rust"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "joined", "room": "rust", "members": ["alice", "bob"], "history": []})
    );
    assert_eq!(
        bob.json().await,
        json!({"type": "presence", "room": "rust", "user": "alice", "event": "join"})
    );
    carol.quiet().await;
    alice.quiet().await;

    // A join that changes nothing gets its joined reply and tells nobody.
    alice
        .send_json(json!({"type": "join", "room": "RUST", "ref": 2}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "joined", "room": "rust", "members": ["alice", "bob"], "history": [], "ref": 2})
    );
    bob.quiet().await;
    carol.quiet().await;

    // Leave: the leaver gets left, the members presence leave.
    alice
        .send_json(json!({"type": "leave", "room": "RUST", "ref": "x"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "left", "room": "rust", "ref": "x"})
    );
    assert_eq!(
        bob.json().await,
        json!({"type": "presence", "room": "rust", "user": "alice", "event": "leave"})
    );
    alice.quiet().await;
    carol.quiet().await;

    // A disconnect is leaving every room.
    join(&mut carol, "rust").await;
    assert_eq!(
        bob.json().await,
        json!({"type": "presence", "room": "rust", "user": "carol", "event": "join"})
    );
    bob.ws.close(None).await.unwrap();
    assert_eq!(
        alice.json().await,
        json!({"type": "presence", "room": "general", "user": "bob", "event": "leave"})
    );
    let mut told = vec![carol.json().await, carol.json().await];
    told.sort_by_key(|frame| frame["room"].to_string());
    assert_eq!(
        told,
        [
            json!({"type": "presence", "room": "general", "user": "bob", "event": "leave"}),
            json!({"type": "presence", "room": "rust", "user": "bob", "event": "leave"}),
        ]
    );
    alice.quiet().await;
    carol.quiet().await;
}

#[tokio::test]
async fn join_lists_the_members_sorted_case_insensitively_and_the_last_messages_oldest_first() {
    let server = Server::start().await;
    let mut carol = server.raw_login("carol").await;
    let mut bob = server.raw_login("Bob").await;
    let mut alice = server.raw_login("alice").await;
    for client in [&mut carol, &mut bob, &mut alice] {
        client.sync().await;
    }
    for client in [&mut carol, &mut bob, &mut alice] {
        join(client, "Rust").await;
    }
    bob.sync().await;
    let mut echoes = Vec::new();
    for i in 1..=7 {
        echoes.push(without_ref(
            &say(&mut bob, "rust", "Bob", &format!("m{i}"), json!(i)).await,
        ));
    }
    let mut dave = server.raw_login("Dave").await;
    dave.send_json(json!({"type": "join", "room": "RUST", "ref": "d"}))
        .await;
    assert_eq!(
        dave.json().await,
        json!({
            "type": "joined",
            "room": "rust",
            "members": ["alice", "Bob", "carol", "Dave"],
            "history": echoes[2..],
            "ref": "d",
        }),
        "the last 5 messages, oldest first, as MESSAGE frames"
    );
    dave.quiet().await;
}

// ---- say and dm ----------------------------------------------------------------------------

#[tokio::test]
async fn say_reaches_every_member_and_only_the_senders_copy_carries_the_ref() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    let mut carol = server.raw_login("carol").await;
    let mut dave = server.raw_login("dave").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
        join(client, "rust").await;
    }
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        client.sync().await;
    }

    let refs = [
        json!("s1"),
        json!(42),
        json!(null),
        json!(-3),
        json!(2.5),
        json!("r".repeat(64)),
        json!("ünï ✓"),
    ];
    let mut last_id = 0;
    for (i, reference) in refs.into_iter().enumerate() {
        let text = format!("hi {i}: héllo\nwörld\t🙂");
        let echo = say(&mut alice, "RUST", "alice", &text, reference).await;
        let id = echo["id"].as_u64().unwrap();
        assert!(id > last_id, "ids increase: {id} after {last_id}");
        last_id = id;
        assert_eq!(
            bob.json().await,
            without_ref(&echo),
            "members get the MESSAGE without a ref"
        );
        assert_eq!(carol.json().await, without_ref(&echo));
    }
    dave.quiet().await;

    // And the other way round.
    let echo = say(&mut carol, "rust", "carol", "back", json!(null)).await;
    assert_eq!(alice.json().await, echo);
    assert_eq!(bob.json().await, echo);
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        client.quiet().await;
    }
}

#[tokio::test]
async fn a_dm_to_an_online_user_reaches_them_and_the_sender_gets_it_back_with_the_ref() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("Bob").await;
    let mut carol = server.raw_login("carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }

    alice
        .send_json(json!({"type": "dm", "to": "BOB", "text": "psst", "ref": 7}))
        .await;
    let got = bob.json().await;
    let id = check_dm(&got, "alice", "BOB", "psst");
    assert_eq!(
        got,
        dm_frame(id, "alice", "BOB", "psst", &got["ts"]),
        "no ref, no queued"
    );
    let mut copy = got.clone();
    copy["ref"] = json!(7);
    assert_eq!(
        alice.json().await,
        copy,
        "the sender's copy is the same DM, with the ref"
    );
    carol.quiet().await;

    bob.send_json(json!({"type": "dm", "to": "alice", "text": "hey"}))
        .await;
    let got = alice.json().await;
    let second = check_dm(&got, "Bob", "alice", "hey");
    assert!(second > id);
    assert_eq!(bob.json().await, got, "no ref given, none echoed");
    for client in [&mut alice, &mut bob, &mut carol] {
        client.quiet().await;
    }
}

#[tokio::test]
async fn a_dm_to_an_offline_user_is_queued_and_delivered_once_at_their_next_login() {
    // An app that vouches for its users: every name is an account, so DMs to it are kept.
    let store = Arc::new(MemoryStore::new());
    let server = Server::vouching(store, Config::default(), RuntimeConfig::default()).await;
    let mut alice = server.raw_login("alice").await;

    let mut queued = Vec::new();
    for (to, text, reference) in [
        ("Bob", "one", json!("q1")),
        ("BOB", "two", json!(2)),
        ("bob", "three", json!(null)),
    ] {
        alice
            .send_json(json!({"type": "dm", "to": to, "text": text, "ref": reference}))
            .await;
        let reply = alice.json().await;
        let id = check_dm(&reply, "alice", to, text);
        let mut expected = dm_frame(id, "alice", to, text, &reply["ts"]);
        expected["queued"] = json!(true);
        if !reference.is_null() {
            expected["ref"] = reference;
        }
        assert_eq!(reply, expected, "the sender is told that the DM was queued");
        queued.push(dm_frame(id, "alice", to, text, &reply["ts"]));
    }
    let ids: Vec<u64> = queued.iter().map(|dm| dm["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let mut bob = server.raw().await;
    bob.send_json(json!({"type": "login", "name": "bob", "ref": "in"}))
        .await;
    assert_eq!(
        bob.json().await,
        json!({"type": "welcome", "name": "bob", "rooms": ["general"], "account": true, "ref": "in"})
    );
    assert_eq!(
        bob.json().await,
        json!({"type": "joined", "room": "general", "members": ["alice", "bob"], "history": []})
    );
    for dm in &queued {
        assert_eq!(
            &bob.json().await,
            dm,
            "queued DMs come in order, with their original id and ts"
        );
    }
    bob.quiet().await;
    assert_eq!(
        alice.json().await,
        json!({"type": "presence", "room": "general", "user": "bob", "event": "join"})
    );

    // Never twice: log out, wait until the server has seen it, log in again.
    bob.ws.close(None).await.unwrap();
    assert_eq!(
        alice.json().await,
        json!({"type": "presence", "room": "general", "user": "bob", "event": "leave"})
    );
    let mut bob = server.raw().await;
    bob.send_json(json!({"type": "login", "name": "BOB"})).await;
    assert_eq!(
        bob.json().await,
        json!({"type": "welcome", "name": "bob", "rooms": ["general"], "account": true}),
        "an account's name is shown as it was first spelled"
    );
    assert_eq!(bob.json().await["type"], "joined");
    bob.quiet().await;
}

// ---- history, rooms, who, ping -------------------------------------------------------------

#[tokio::test]
async fn history_pages_by_before_and_limit_oldest_first_with_the_limit_clamped() {
    let server = Server::with(Config::default(), unlimited(), WsConfig::default()).await;
    let mut alice = server.raw_login("alice").await;
    join(&mut alice, "rust").await;
    for i in 0..510 {
        alice
            .send_json(json!({"type": "say", "room": "rust", "text": format!("m{i}")}))
            .await;
    }
    let mut messages = Vec::new();
    for i in 0..510 {
        let echo = alice.json().await;
        check_message(&echo, "rust", "alice", &format!("m{i}"));
        messages.push(echo);
    }
    let id = |i: usize| messages[i]["id"].as_u64().unwrap();

    let cases = [
        (json!({}), &messages[460..]),
        (json!({"before": id(100), "limit": 10}), &messages[90..100]),
        (json!({"before": id(100)}), &messages[50..100]),
        (json!({"limit": 0}), &messages[509..]),
        (json!({"limit": -5}), &messages[509..]),
        (json!({"limit": 1}), &messages[509..]),
        (json!({"limit": 1000}), &messages[10..]),
        (json!({"limit": 500, "before": id(5)}), &messages[..5]),
        (json!({"before": id(0)}), &messages[..0]),
        (json!({"before": 1}), &messages[..0]),
        (
            json!({"before": id(509) + 1000, "limit": 2}),
            &messages[508..],
        ),
    ];
    for (n, (fields, page)) in cases.into_iter().enumerate() {
        let mut request = json!({"type": "history", "room": "RUST", "ref": n});
        request
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        alice.send_json(request.clone()).await;
        assert_eq!(
            alice.json().await,
            json!({"type": "history", "room": "rust", "messages": page, "ref": n}),
            "for {request}"
        );
    }
    alice
        .send_json(json!({"type": "history", "room": "general"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "history", "room": "general", "messages": []})
    );
}

#[tokio::test]
async fn history_older_than_memory_comes_from_the_store() {
    let chat = Config {
        history: 3,
        ..Config::default()
    };
    let server = Server::with(chat, RuntimeConfig::default(), WsConfig::default()).await;
    let mut alice = server.raw_login("alice").await;
    let mut messages = Vec::new();
    for i in 0..10 {
        messages.push(without_ref(
            &say(
                &mut alice,
                "general",
                "alice",
                &format!("m{i}"),
                json!(null),
            )
            .await,
        ));
    }
    let id = |i: usize| messages[i]["id"].as_u64().unwrap();
    let cases = [
        (json!({"limit": 5}), &messages[5..]),
        (json!({"before": id(4), "limit": 3}), &messages[1..4]),
        (json!({}), &messages[..]),
        (json!({"before": id(8), "limit": 2}), &messages[6..8]),
    ];
    for (n, (fields, page)) in cases.into_iter().enumerate() {
        let mut request = json!({"type": "history", "room": "general", "ref": format!("h{n}")});
        request
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        alice.send_json(request.clone()).await;
        assert_eq!(
            alice.json().await,
            json!({"type": "history", "room": "general", "messages": page, "ref": format!("h{n}")}),
            "for {request}"
        );
    }
}

#[tokio::test]
async fn rooms_lists_every_room_with_its_member_count() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    let mut carol = server.raw_login("carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }
    join(&mut bob, "zeta").await;
    join(&mut alice, "Alpha").await;
    // A room with history exists with nobody in it; a room without history goes with its last
    // member.
    join(&mut carol, "mid").await;
    say(&mut carol, "mid", "carol", "x", json!(null)).await;
    carol
        .send_json(json!({"type": "leave", "room": "mid"}))
        .await;
    assert_eq!(carol.json().await, json!({"type": "left", "room": "mid"}));
    join(&mut carol, "empty").await;
    carol
        .send_json(json!({"type": "leave", "room": "empty"}))
        .await;
    assert_eq!(carol.json().await, json!({"type": "left", "room": "empty"}));

    alice.sync().await;
    alice.send_json(json!({"type": "rooms", "ref": "r"})).await;
    assert_eq!(
        alice.json().await,
        json!({"type": "rooms", "rooms": [
            {"room": "alpha", "members": 1},
            {"room": "general", "members": 3},
            {"room": "mid", "members": 0},
            {"room": "zeta", "members": 1},
        ], "ref": "r"})
    );
}

#[tokio::test]
async fn who_lists_a_rooms_members_sorted_case_insensitively() {
    let server = Server::start().await;
    let mut bob = server.raw_login("bob").await;
    let mut alice = server.raw_login("Alice").await;
    let mut carol = server.raw_login("carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }
    join(&mut bob, "side").await;
    alice
        .send_json(json!({"type": "who", "room": "GENERAL", "ref": 1}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "who", "room": "general", "members": ["Alice", "bob", "carol"], "ref": 1})
    );
    carol
        .send_json(json!({"type": "who", "room": "side"}))
        .await;
    assert_eq!(
        carol.json().await,
        json!({"type": "who", "room": "side", "members": ["bob"]}),
        "who does not need membership"
    );
}

#[tokio::test]
async fn ping_is_answered_with_pong_before_and_after_login_and_unknown_fields_are_ignored() {
    let server = Server::start().await;
    let mut alice = server.raw().await;
    alice.send_json(json!({"type": "ping"})).await;
    assert_eq!(alice.json().await, json!({"type": "pong"}));
    alice.send_json(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(alice.json().await, json!({"type": "pong", "ref": "p"}));
    alice.login("alice").await;
    alice
        .send_json(json!({"type": "ping", "ref": 5, "colour": "blue", "extra": [1, {}]}))
        .await;
    assert_eq!(alice.json().await, json!({"type": "pong", "ref": 5}));
    alice
        .send_json(json!({"type": "say", "room": "general", "text": "hi", "mood": "good"}))
        .await;
    check_message(&alice.json().await, "general", "alice", "hi");
}

/// `payload` as one masked text frame, as a client sends it (RFC 6455, section 5.2).
fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() < 126,
        "a short frame: the length fits the first byte"
    );
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

#[tokio::test]
async fn frames_sent_in_the_same_write_as_the_upgrade_request_are_answered() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let server = Server::start().await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let mut sent = format!(
        "GET /chat HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .into_bytes();
    sent.extend(client_text_frame(br#"{"type":"ping","ref":"early"}"#));
    sent.extend(client_text_frame(br#"{"type":"login","name":"eve"}"#));
    socket.write_all(&sent).await.unwrap();

    // The 101 answer, and whatever came after it in the same reads.
    let mut read = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut chunk))
            .await
            .expect("the server answers the upgrade")
            .unwrap();
        assert!(n > 0, "the server closed the connection: {read:?}");
        read.extend_from_slice(&chunk[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(read.starts_with(b"HTTP/1.1 101"), "{read:?}");
    let rest = read.split_off(head_end);
    let mut ws = WebSocketStream::from_partially_read(socket, rest, Role::Client, None).await;
    let mut next = async || {
        let message = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        let text = message.unwrap().unwrap().into_text().unwrap();
        serde_json::from_str::<Value>(text.as_str()).unwrap()
    };
    assert_eq!(next().await, json!({"type": "pong", "ref": "early"}));
    assert_eq!(next().await["type"], "welcome");
    assert_eq!(next().await["type"], "joined");
}

// ---- error codes ----------------------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_are_bad_frame_with_their_ref_and_the_connection_stays() {
    let server = Server::start().await;
    let mut alice = server.raw().await;
    // Decoding comes before anything else: even before login it is bad_frame.
    alice.send_text("not json").await;
    assert_eq!(
        check_error(&alice.json().await, None, "not json"),
        "bad_frame"
    );
    alice.login("alice").await;

    let cases: Vec<(String, Option<Value>)> = vec![
        ("not json".into(), None),
        (String::new(), None),
        ("{\"type\":\"ping\"".into(), None),
        ("[1,2]".into(), None),
        ("\"ping\"".into(), None),
        ("42".into(), None),
        ("null".into(), None),
        (json!({"ref": "a"}).to_string(), Some(json!("a"))),
        (json!({"type": 7, "ref": "b"}).to_string(), Some(json!("b"))),
        (
            json!({"type": null, "ref": "b2"}).to_string(),
            Some(json!("b2")),
        ),
        (
            json!({"type": "join", "ref": "c"}).to_string(),
            Some(json!("c")),
        ),
        (
            json!({"type": "join", "room": 5, "ref": "c2"}).to_string(),
            Some(json!("c2")),
        ),
        (
            json!({"type": "say", "room": "general", "text": 5, "ref": "d"}).to_string(),
            Some(json!("d")),
        ),
        (
            json!({"type": "say", "room": "general", "ref": "d2"}).to_string(),
            Some(json!("d2")),
        ),
        (
            json!({"type": "dm", "to": "bob", "ref": "e"}).to_string(),
            Some(json!("e")),
        ),
        (
            json!({"type": "history", "room": "general", "limit": "x", "ref": "f"}).to_string(),
            Some(json!("f")),
        ),
        (
            json!({"type": "history", "room": "general", "before": -1, "ref": "g"}).to_string(),
            Some(json!("g")),
        ),
        (
            json!({"type": "login", "name": ["a"], "ref": 9}).to_string(),
            Some(json!(9)),
        ),
        (
            json!({"type": "who", "ref": "i"}).to_string(),
            Some(json!("i")),
        ),
        (
            json!({"type": "leave", "room": {}, "ref": "j"}).to_string(),
            Some(json!("j")),
        ),
    ];
    for (text, reference) in cases {
        alice.send_text(&text).await;
        let reply = alice.json().await;
        assert_eq!(
            check_error(&reply, reference.as_ref(), &text),
            "bad_frame",
            "for {text}"
        );
    }
    say(&mut alice, "general", "alice", "still here", json!("ok")).await;
}

#[tokio::test]
async fn a_binary_frame_is_bad_frame_and_the_connection_stays() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    alice
        .send_message(Message::binary(br#"{"type":"ping","ref":"b"}"#.to_vec()))
        .await;
    assert_eq!(
        check_error(&alice.json().await, None, "a binary frame"),
        "bad_frame"
    );
    alice.quiet().await;
    // The client's own WebSocket pings are protocol-level and answered, not errors.
    let mut client = WsClient::connect(&server.url).await.unwrap();
    client
        .send_message(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    client
        .send_text(r#"{"type":"ping","ref":1}"#)
        .await
        .unwrap();
    let reply = tokio::time::timeout(PATIENCE, client.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            reply,
            chat_client::Incoming::Event {
                event: chat_core::Event::Pong,
                ..
            }
        ),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_websocket_ping_gets_its_pong_while_room_traffic_flows() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    alice.json().await; // bob's presence
    for n in 0..3u8 {
        bob.send_message(Message::Ping(vec![n].into())).await;
        alice
            .send_json(json!({"type": "say", "room": "general", "text": format!("m{n}")}))
            .await;
        // Bob reads on until his pong, and his room's message, have both come.
        let [frame] = &pong_and_frames(&mut bob, n, 1).await[..] else {
            unreachable!()
        };
        assert_eq!(frame["text"], format!("m{n}"), "{frame}");
    }
}

/// Reads `client` until the pong carrying `payload` and `count` text frames have all come (in
/// any order between them); returns the frames, in order.
async fn pong_and_frames(client: &mut Raw, payload: u8, count: usize) -> Vec<Value> {
    let (mut pong, mut frames) = (false, Vec::new());
    while !(pong && frames.len() == count) {
        let next = tokio::time::timeout(PATIENCE, client.ws.next())
            .await
            .expect("the server answered in time");
        match next {
            Some(Ok(Message::Pong(got))) => {
                assert_eq!(&got[..], [payload], "the pong carries its ping's payload");
                pong = true;
            }
            Some(Ok(Message::Text(text))) => {
                frames.push(serde_json::from_str(text.as_str()).unwrap());
            }
            other => panic!("unexpected: {other:?}"),
        }
    }
    frames
}

#[tokio::test]
async fn pongs_between_broadcasts_written_by_the_runtime_leave_every_frame_whole() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    alice.json().await; // bob's presence
    let mut said = 0;
    for round in 0..5u8 {
        // Broadcasts to bob while he waits (the runtime writes them itself, on this one
        // thread), then a ping, whose pong tungstenite writes, then broadcasts again.
        for _ in 0..5 {
            let text = format!("m{said}");
            say(&mut alice, "general", "alice", &text, Value::Null).await;
            said += 1;
        }
        bob.send_message(Message::Ping(vec![round].into())).await;
        for _ in 0..5 {
            let text = format!("m{said}");
            say(&mut alice, "general", "alice", &text, Value::Null).await;
            said += 1;
        }
        for (k, frame) in pong_and_frames(&mut bob, round, 10)
            .await
            .iter()
            .enumerate()
        {
            check_message(frame, "general", "alice", &format!("m{}", said - 10 + k));
        }
    }
    assert!(
        server.handle().metrics().swept > 0,
        "on a current-thread runtime, broadcasts to a waiting client are the runtime's to write"
    );
}

#[tokio::test]
async fn a_bad_ref_is_bad_frame_without_a_ref() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    for bad in [
        json!(true),
        json!([1]),
        json!({"a": 1}),
        json!("x".repeat(65)),
        json!("é".repeat(65)),
    ] {
        let frame = json!({"type": "ping", "ref": bad});
        assert_eq!(alice.error_for(frame, None).await, "bad_frame", "ref {bad}");
        let frame = json!({"type": "say", "room": "general", "text": "hi", "ref": bad});
        assert_eq!(alice.error_for(frame, None).await, "bad_frame", "ref {bad}");
    }
    let longest = "é".repeat(64);
    alice
        .send_json(json!({"type": "ping", "ref": longest}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "pong", "ref": longest}),
        "64 characters is fine"
    );
    alice.quiet().await;
}

#[tokio::test]
async fn an_unknown_type_is_unknown_type_with_its_ref() {
    let server = Server::start().await;
    let mut alice = server.raw().await;
    let frame = json!({"type": "shout", "text": "hi", "ref": "u1"});
    assert_eq!(
        alice.error_for(frame, Some(json!("u1"))).await,
        "unknown_type"
    );
    alice.login("alice").await;
    for (frame, reference) in [
        (json!({"type": "PING", "ref": "u2"}), Some(json!("u2"))),
        (json!({"type": "", "ref": 3}), Some(json!(3))),
        (
            json!({"type": "message", "room": "general", "text": "hi"}),
            None,
        ),
    ] {
        assert_eq!(alice.error_for(frame, reference).await, "unknown_type");
    }
    alice.quiet().await;
}

#[tokio::test]
async fn every_command_but_login_and_ping_needs_a_login() {
    let server = Server::start().await;
    let _bob = server.raw_login("bob").await;
    let mut anon = server.raw().await;
    let frames = [
        json!({"type": "join", "room": "rust"}),
        json!({"type": "leave", "room": "general"}),
        json!({"type": "say", "room": "general", "text": "hi"}),
        json!({"type": "dm", "to": "bob", "text": "hi"}),
        json!({"type": "history", "room": "general"}),
        json!({"type": "rooms"}),
        json!({"type": "who", "room": "general"}),
    ];
    for (n, mut frame) in frames.into_iter().enumerate() {
        frame["ref"] = json!(format!("n{n}"));
        assert_eq!(
            anon.error_for(frame, Some(json!(format!("n{n}")))).await,
            "not_logged_in"
        );
    }
    anon.quiet().await;
    anon.login("carol").await;
}

#[tokio::test]
async fn a_second_login_is_already_logged_in() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    for name in ["alice", "other", "not a name"] {
        let frame = json!({"type": "login", "name": name, "ref": name});
        assert_eq!(
            alice.error_for(frame, Some(json!(name))).await,
            "already_logged_in"
        );
    }
    say(&mut alice, "general", "alice", "still alice", json!(1)).await;
}

#[tokio::test]
async fn invalid_names_are_refused_and_the_connection_can_try_again() {
    let server = Server::start().await;
    let mut client = server.raw().await;
    let long = "a".repeat(33);
    for name in [
        "",
        "_alice",
        "-a",
        ".a",
        "a b",
        "alice!",
        "élise",
        "a/b",
        "al\u{0}ice",
        " alice",
        long.as_str(),
    ] {
        let frame = json!({"type": "login", "name": name, "ref": 1});
        assert_eq!(
            client.error_for(frame, Some(json!(1))).await,
            "invalid_name",
            "name {name:?}"
        );
    }
    let longest = "9Lives_-.AZaz09xxxxxxxxxxxxxxxxx";
    assert_eq!(longest.len(), 32);
    client.login(longest).await;
}

#[tokio::test]
async fn a_name_online_is_taken_case_insensitively_and_free_again_after_logout() {
    let server = Server::start().await;
    let alice = server.raw_login("alice").await;
    let mut watcher = server.raw_login("watcher").await;
    let mut other = server.raw().await;
    for name in ["alice", "ALICE", "Alice"] {
        let frame = json!({"type": "login", "name": name, "ref": "t"});
        assert_eq!(
            other.error_for(frame, Some(json!("t"))).await,
            "name_taken",
            "{name}"
        );
    }
    drop(alice);
    assert_eq!(
        watcher.until("presence").await,
        json!({"type": "presence", "room": "general", "user": "alice", "event": "leave"})
    );
    other.login("ALICE").await;
}

#[tokio::test]
async fn invalid_room_names_are_refused_by_every_command_that_names_a_room() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let long = "r".repeat(65);
    for room in [
        "",
        "-rust",
        "_r",
        ".r",
        "ru st",
        "#rust",
        "rüst",
        "a/b",
        long.as_str(),
    ] {
        for kind in ["join", "leave", "say", "history", "who"] {
            let frame = json!({"type": kind, "room": room, "text": "hi", "ref": kind});
            let code = alice.error_for(frame, Some(json!(kind))).await;
            assert_eq!(code, "invalid_room", "{kind} {room:?}");
        }
    }
    let longest = "R".repeat(64);
    assert_eq!(
        join(&mut alice, &longest).await["room"],
        json!("r".repeat(64))
    );
}

#[tokio::test]
async fn say_leave_and_history_need_membership() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    alice.sync().await;
    for round in 0..2 {
        for frame in [
            json!({"type": "say", "room": "rust", "text": "hi"}),
            json!({"type": "leave", "room": "Rust"}),
            json!({"type": "history", "room": "rust"}),
        ] {
            let mut frame = frame;
            frame["ref"] = json!(round);
            assert_eq!(
                alice.error_for(frame, Some(json!(round))).await,
                "not_in_room"
            );
        }
        // The second round: #rust exists, alice is still not in it.
        join(&mut bob, "rust").await;
    }
    alice
        .send_json(json!({"type": "leave", "room": "general"}))
        .await;
    assert_eq!(
        alice.json().await,
        json!({"type": "left", "room": "general"})
    );
    let frame = json!({"type": "say", "room": "general", "text": "hi", "ref": "s"});
    assert_eq!(
        alice.error_for(frame, Some(json!("s"))).await,
        "not_in_room"
    );
}

#[tokio::test]
async fn empty_blank_or_control_character_texts_are_invalid_text() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    alice.sync().await;
    bob.sync().await;
    let texts = [
        "",
        " ",
        " \n\t ",
        "\u{a0}\u{3000}",
        "a\u{7}b",
        "\u{1b}[31mred",
        "a\u{7f}",
        "a\u{85}b",
        "a\rb",
        "a\u{0}",
    ];
    for text in texts {
        let frame = json!({"type": "say", "room": "general", "text": text, "ref": "s"});
        assert_eq!(
            alice.error_for(frame, Some(json!("s"))).await,
            "invalid_text",
            "say {text:?}"
        );
        let frame = json!({"type": "dm", "to": "bob", "text": text, "ref": "d"});
        assert_eq!(
            alice.error_for(frame, Some(json!("d"))).await,
            "invalid_text",
            "dm {text:?}"
        );
    }
    bob.quiet().await;
    let fine = "  line one\n\tline two  ";
    let echo = say(&mut alice, "general", "alice", fine, json!(null)).await;
    assert_eq!(
        bob.json().await,
        echo,
        "newlines and tabs are fine, and kept verbatim"
    );
}

#[tokio::test]
async fn texts_over_the_limit_are_too_long() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let _bob = server.raw_login("bob").await;
    alice.sync().await;
    for text in ["x".repeat(4097), "é".repeat(2049), "🙂".repeat(1025)] {
        let frame = json!({"type": "say", "room": "general", "text": text, "ref": "s"});
        assert_eq!(
            alice.error_for(frame, Some(json!("s"))).await,
            "too_long",
            "{} bytes",
            text.len()
        );
        let frame = json!({"type": "dm", "to": "bob", "text": text, "ref": "d"});
        assert_eq!(alice.error_for(frame, Some(json!("d"))).await, "too_long");
    }
    for text in ["x".repeat(4096), "é".repeat(2048), "🙂".repeat(1024)] {
        say(&mut alice, "general", "alice", &text, json!(1)).await;
    }

    let small = Config {
        max_text_bytes: 10,
        ..Config::default()
    };
    let server = Server::with(small, RuntimeConfig::default(), WsConfig::default()).await;
    let mut alice = server.raw_login("alice").await;
    let frame = json!({"type": "say", "room": "general", "text": "12345678901", "ref": 0});
    assert_eq!(alice.error_for(frame, Some(json!(0))).await, "too_long");
    say(&mut alice, "general", "alice", "1234567890", json!(null)).await;
}

#[tokio::test]
async fn a_dm_to_oneself_is_invalid_target() {
    let server = Server::start().await;
    let mut alice = server.raw_login("Alice").await;
    for to in ["Alice", "alice", "ALICE"] {
        let frame = json!({"type": "dm", "to": to, "text": "me", "ref": to});
        assert_eq!(
            alice.error_for(frame, Some(json!(to))).await,
            "invalid_target"
        );
    }
    alice.quiet().await;
}

#[tokio::test]
async fn a_full_mailbox_is_mailbox_full_and_keeps_nothing() {
    let chat = Config {
        mailbox: 2,
        ..Config::default()
    };
    let store = Arc::new(MemoryStore::new());
    let server = Server::vouching(store, chat, RuntimeConfig::default()).await;
    let mut alice = server.raw_login("alice").await;
    let mut kept = Vec::new();
    for text in ["one", "two"] {
        alice
            .send_json(json!({"type": "dm", "to": "bob", "text": text}))
            .await;
        let reply = alice.json().await;
        assert_eq!(reply["queued"], true, "{reply}");
        kept.push(without_ref(&reply));
    }
    for to in ["bob", "BOB"] {
        let frame = json!({"type": "dm", "to": to, "text": "three", "ref": "m"});
        assert_eq!(
            alice.error_for(frame, Some(json!("m"))).await,
            "mailbox_full"
        );
    }
    // Another name's mailbox is not full.
    alice
        .send_json(json!({"type": "dm", "to": "carol", "text": "hi"}))
        .await;
    assert_eq!(alice.json().await["queued"], true);

    let mut bob = server.raw_login("bob").await;
    for dm in &kept {
        let mut delivered = dm.clone();
        delivered.as_object_mut().unwrap().remove("queued");
        assert_eq!(bob.json().await, delivered);
    }
    bob.quiet().await;
}

/// A WebSocket client on an in-memory stream, attached with the transport's own session: no
/// sockets, so a test can run on tokio's paused clock and let virtual time pass.
struct InMemory {
    ws: tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
    _runtime: chat_runtime::Runtime,
}

impl InMemory {
    async fn start(limits: RuntimeConfig) -> InMemory {
        let store = Arc::new(chat_store::MemoryStore::new());
        let runtime = chat_runtime::Runtime::start(Config::default(), store, limits)
            .await
            .unwrap();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let connection = chat_transport_ws::connect(&runtime.handle()).await.unwrap();
        tokio::spawn(async move {
            chat_transport_ws::run(server, connection, &WsConfig::default()).await;
        });
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client,
            tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        InMemory {
            ws,
            _runtime: runtime,
        }
    }

    async fn send_json(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    async fn json(&mut self) -> Value {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn frames_over_the_rate_limit_are_rate_limited_and_the_connection_stays() {
    let limits = RuntimeConfig {
        rate_limit: 2,
        ..RuntimeConfig::default()
    };
    let mut alice = InMemory::start(limits).await;
    // The bucket starts full (2 × 2 = 4 frames); ten frames at once overflow it.
    for n in 0..10 {
        alice.send_json(json!({"type": "ping", "ref": n})).await;
    }
    let (mut pongs, mut limited) = (Vec::new(), 0);
    for _ in 0..10 {
        let reply = alice.json().await;
        if reply["type"] == "pong" {
            pongs.push(reply["ref"].as_u64().unwrap());
        } else {
            let reference = reply.get("ref").cloned();
            assert_eq!(
                check_error(&reply, reference.as_ref(), "a ping"),
                "rate_limited"
            );
            limited += 1;
        }
    }
    assert!(
        pongs.len() >= 4,
        "a full bucket lets 4 frames through: {pongs:?}"
    );
    assert_eq!(pongs[..4], [0, 1, 2, 3]);
    assert!(
        limited >= 1,
        "10 frames at once are over a limit of 2/s with bursts of 4"
    );
    // The limit is about time: half a second brings a token back (2 per second). The clock is
    // paused, so this passes at once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    alice
        .send_json(json!({"type": "ping", "ref": "after"}))
        .await;
    assert_eq!(alice.json().await, json!({"type": "pong", "ref": "after"}));
}

/// The protocol reference (`docs/protocol.md`): a frame's error carries the frame's `ref` — also
/// the `rate_limited` error of a frame with a valid ref.
#[tokio::test]
async fn a_rate_limited_error_carries_the_ref_of_the_refused_frame() {
    let limits = RuntimeConfig {
        rate_limit: 1,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, WsConfig::default()).await;
    let mut alice = server.raw().await;
    for n in 0..6 {
        alice
            .send_json(json!({"type": "ping", "ref": format!("r{n}")}))
            .await;
    }
    let mut refs = Vec::new();
    let mut limited = 0;
    for _ in 0..6 {
        let reply = alice.json().await;
        if reply["type"] == "error" {
            limited += 1;
            assert_eq!(reply["code"], "rate_limited", "{reply}");
        }
        refs.push(reply.get("ref").cloned().unwrap_or(Value::Null));
    }
    assert!(
        limited >= 1,
        "6 frames at once are over a limit of 1/s with bursts of 2"
    );
    let mut got: Vec<String> = refs.iter().map(Value::to_string).collect();
    got.sort();
    let expected: Vec<String> = (0..6).map(|n| json!(format!("r{n}")).to_string()).collect();
    assert_eq!(
        got, expected,
        "every reply, pong or rate_limited, carries its frame's ref"
    );
}

// ---- connection-ending rules ---------------------------------------------------------------

#[tokio::test]
async fn a_frame_over_max_frame_closes_the_connection_with_1009() {
    let server = Server::start().await;
    let mut alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    alice.sync().await;
    // Under the hard limit, a long text is an ordinary error.
    let text = "x".repeat(60_000);
    let frame = json!({"type": "say", "room": "general", "text": text, "ref": "big"});
    assert_eq!(alice.error_for(frame, Some(json!("big"))).await, "too_long");
    let frame = json!({"type": "say", "room": "general", "text": "x".repeat(70_000)});
    alice.send_json(frame).await;
    assert_eq!(alice.closed().await, Some(1009));
    assert_eq!(bob.until("presence").await["event"], "leave");
    bob.quiet().await;

    // The limit is exact: max_frame bytes pass, one more closes.
    let ws = WsConfig {
        max_frame: 1024,
        ..WsConfig::default()
    };
    let server = Server::with(Config::default(), RuntimeConfig::default(), ws).await;
    let mut carol = server.raw().await;
    let padded = |len: usize| {
        let bare = json!({"type": "ping", "ref": "p", "pad": ""}).to_string();
        json!({"type": "ping", "ref": "p", "pad": "x".repeat(len - bare.len())}).to_string()
    };
    assert_eq!(padded(1024).len(), 1024);
    carol.send_text(&padded(1024)).await;
    assert_eq!(carol.json().await, json!({"type": "pong", "ref": "p"}));
    carol.send_text(&padded(1025)).await;
    assert_eq!(carol.closed().await, Some(1009));
}

// On the paused clock: the 3 s of refusals pass in virtual time.
#[tokio::test(start_paused = true)]
async fn a_sustained_flood_is_closed_with_1008() {
    let limits = RuntimeConfig {
        rate_limit: 2,
        ..RuntimeConfig::default()
    };
    let client = InMemory::start(limits).await;
    let _runtime = client._runtime;
    let (mut sink, mut stream) = client.ws.split();
    let started = tokio::time::Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let finished = finished.clone();
        async move {
            let mut limited = 0;
            let code = loop {
                let next = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .expect("a frame or a close in time");
                match next {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                        if frame["code"] == "rate_limited" {
                            limited += 1;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break None,
                }
            };
            finished.store(true, Ordering::Release);
            (code, limited)
        }
    });
    // 100 frames a second against a limit of 2, for at most 10 s.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..1000 {
        tick.tick().await;
        if finished.load(Ordering::Acquire)
            || sink
                .send(Message::text(r#"{"type":"ping"}"#))
                .await
                .is_err()
        {
            break;
        }
    }
    let (code, limited) = reader.await.unwrap();
    let lasted = started.elapsed();
    assert_eq!(code, Some(1008), "a flood is closed with 1008");
    assert!(
        limited > 10,
        "frames over the limit were answered rate_limited first ({limited})"
    );
    assert!(
        lasted >= Duration::from_secs(3),
        "not before 3 s of refusals ({lasted:?})"
    );
}

#[tokio::test]
async fn an_upgrade_on_another_path_is_refused_with_404() {
    let server = Server::start().await;
    for path in ["/", "/chat/", "/other", "/CHAT", "/chat/x"] {
        let url = format!("ws://{}{path}", server.addr);
        assert_eq!(refused_status(&url).await, 404, "{url}");
    }
    let mut alice = Raw::connect(&format!("ws://{}/chat?v=1", server.addr)).await;
    alice.login("alice").await;
}

#[tokio::test]
async fn at_max_connections_a_new_upgrade_is_refused_with_503() {
    let limits = RuntimeConfig {
        max_connections: 2,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, WsConfig::default()).await;
    let alice = server.raw_login("alice").await;
    let mut bob = server.raw_login("bob").await;
    assert_eq!(refused_status(&server.url).await, 503);
    assert_eq!(
        refused_status(&server.url).await,
        503,
        "a refusal does not change the count"
    );
    // A connection that closes frees its place (this runtime is single-threaded, so once bob
    // hears that alice left, her connection's place is free).
    drop(alice);
    assert_eq!(bob.until("presence").await["event"], "leave");
    let mut carol = server.raw_login("carol").await;
    carol.quiet().await;
    assert_eq!(refused_status(&server.url).await, 503);
}

#[tokio::test]
async fn a_client_that_does_not_log_in_in_time_is_closed_with_1008() {
    let chat = Config {
        login_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let server = Server::with(chat, RuntimeConfig::default(), WsConfig::default()).await;
    let started = Instant::now();
    let mut lazy = server.raw().await;
    let mut punctual = server.raw_login("punctual").await;
    // A ping is not a login.
    lazy.send_json(json!({"type": "ping"})).await;
    assert_eq!(lazy.json().await, json!({"type": "pong"}));
    assert_eq!(lazy.closed().await, Some(1008));
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    // The one that logged in stays.
    punctual.quiet().await;
}

/// A TCP connection that never sends its upgrade request is not a chat connection: it takes no
/// place among `max_connections` (the one place goes to a client that logs in meanwhile), and
/// it is dropped when the handshake timeout passes.
#[tokio::test]
async fn a_connection_that_never_completes_the_handshake_takes_no_place_and_is_dropped() {
    let limits = RuntimeConfig {
        max_connections: 1,
        ..RuntimeConfig::default()
    };
    let ws = WsConfig {
        handshake_timeout: Duration::from_millis(300),
        ..WsConfig::default()
    };
    let server = Server::with(Config::default(), limits, ws).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut alice = server.raw_login("alice").await;
    let mut buffer = [0u8; 64];
    let ended = tokio::time::timeout(PATIENCE, silent.read(&mut buffer)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the server should drop a connection that sends nothing: {ended:?}"
    );
    alice.quiet().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_open_clients_with_1001() {
    let server = Server::start().await;
    let addr = server.addr;
    let url = server.url.clone();
    let mut alice = server.raw_login("alice").await;
    let mut anon = server.raw().await;
    let echo = say(&mut alice, "general", "alice", "bye", json!(null)).await;
    assert_eq!(echo["text"], "bye");
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(alice.closed().await, Some(1001));
    assert_eq!(anon.closed().await, Some(1001));
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("the shutdown finished in time")
        .unwrap();
    let refused = tokio::time::timeout(PATIENCE, WsClient::connect(&url))
        .await
        .expect("in time");
    assert!(
        refused.is_err(),
        "nothing listens on {addr} after the shutdown"
    );
}
