//! Persistence through the WebSocket transport: a server on a `JsonFileStore`, shut down
//! gracefully, and a new server on the same directory.

mod support;

use std::path::Path;
use std::sync::Arc;

use chat_core::Config;
use chat_runtime::RuntimeConfig;
use chat_store::JsonFileStore;
use serde_json::{Value, json};
use support::{PATIENCE, Raw, Server, check_ts, dm_frame, without_ref};

async fn start(dir: &Path, chat: Config) -> Server {
    let store = JsonFileStore::open(dir).await.expect("the store opens");
    // Every name is an account (the app vouches for it), so DMs to offline names are kept.
    Server::vouching(Arc::new(store), chat, RuntimeConfig::default()).await
}

/// Shuts `server` down gracefully while `clients` read their close frames (1001).
async fn stop(server: Server, clients: Vec<Raw>) {
    let shutdown = tokio::spawn(server.shutdown());
    for mut client in clients {
        assert_eq!(client.closed().await, Some(1001));
    }
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("the shutdown finished in time")
        .expect("the shutdown did not panic");
}

/// Says `text` and returns the MESSAGE (without the ref).
async fn say(client: &mut Raw, room: &str, text: &str) -> Value {
    client
        .send_json(json!({"type": "say", "room": room, "text": text}))
        .await;
    let echo = client.json().await;
    assert_eq!(echo["type"], "message", "{echo}");
    assert_eq!(echo["text"], text, "{echo}");
    check_ts(&echo["ts"]);
    echo
}

/// Logs in as `name` and returns the client and its `joined` frame for the default room.
async fn login(server: &Server, name: &str) -> (Raw, Value) {
    let mut client = server.raw().await;
    client
        .send_json(json!({"type": "login", "name": name}))
        .await;
    assert_eq!(
        client.json().await,
        json!({"type": "welcome", "name": name, "rooms": ["general"], "account": true})
    );
    let joined = client.json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    (client, joined)
}

fn id(frame: &Value) -> u64 {
    frame["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {frame}"))
}

#[tokio::test]
async fn history_ids_and_queued_dms_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();

    // First life.
    let server = start(dir.path(), Config::default()).await;
    let (mut alice, _) = login(&server, "alice").await;
    let mut general = Vec::new();
    for text in [
        "g0",
        "g1 \"quoted\"",
        "g2\nsecond line",
        "g3 ünïcödé 🙂",
        "g4",
        "g5",
        "g6\ttab",
    ] {
        general.push(say(&mut alice, "general", text).await);
    }
    alice
        .send_json(json!({"type": "join", "room": "rust"}))
        .await;
    assert_eq!(alice.json().await["type"], "joined");
    let rust = vec![
        say(&mut alice, "rust", "r0").await,
        say(&mut alice, "rust", "r1").await,
    ];
    alice
        .send_json(json!({"type": "dm", "to": "bob", "text": "while you were out"}))
        .await;
    let queued = alice.json().await;
    assert_eq!(queued["queued"], true, "{queued}");
    let mut for_bob = without_ref(&queued);
    for_bob.as_object_mut().unwrap().remove("queued");
    assert_eq!(
        for_bob,
        dm_frame(
            id(&queued),
            "alice",
            "bob",
            "while you were out",
            &queued["ts"]
        )
    );
    let newest = general
        .iter()
        .chain(&rust)
        .map(id)
        .chain([id(&queued)])
        .max()
        .unwrap();
    stop(server, vec![alice]).await;

    // Second life: the history is there, ids go on, the DM is delivered.
    let server = start(dir.path(), Config::default()).await;
    let (mut carol, joined) = login(&server, "carol").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "general", "members": ["carol"], "history": general[2..]}),
        "the last 5 messages of before the restart, exactly as they were"
    );
    carol.quiet().await;
    carol.send_json(json!({"type": "rooms"})).await;
    assert_eq!(
        carol.json().await,
        json!({"type": "rooms", "rooms": [{"room": "general", "members": 1}, {"room": "rust", "members": 0}]})
    );
    carol
        .send_json(json!({"type": "join", "room": "rust"}))
        .await;
    assert_eq!(
        carol.json().await,
        json!({"type": "joined", "room": "rust", "members": ["carol"], "history": rust})
    );
    carol
        .send_json(json!({"type": "history", "room": "general"}))
        .await;
    assert_eq!(
        carol.json().await,
        json!({"type": "history", "room": "general", "messages": general})
    );
    let after = say(&mut carol, "general", "after the restart").await;
    assert!(
        id(&after) > newest,
        "ids continue above the old ones: {} after {newest}",
        id(&after)
    );

    let (mut bob, _) = login(&server, "bob").await;
    assert_eq!(
        bob.json().await,
        for_bob,
        "the queued DM, with its original id and ts"
    );
    bob.quiet().await;
    assert_eq!(carol.json().await["event"], "join");
    bob.ws.close(None).await.unwrap();
    assert_eq!(
        carol.json().await,
        json!({"type": "presence", "room": "general", "user": "bob", "event": "leave"})
    );
    let (mut bob, _) = login(&server, "bob").await;
    bob.quiet().await;
    stop(server, vec![carol, bob]).await;

    // Third life: delivered means delivered, also across a restart.
    let server = start(dir.path(), Config::default()).await;
    let (mut bob, joined) = login(&server, "bob").await;
    bob.quiet().await;
    let history = joined["history"].as_array().unwrap();
    assert_eq!(
        history.last(),
        Some(&after),
        "the second life's message is kept too"
    );
    let later = say(&mut bob, "general", "third life").await;
    assert!(id(&later) > id(&after));
    stop(server, vec![bob]).await;
}

#[tokio::test]
async fn pages_older_than_memory_come_from_the_files_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Config::default()).await;
    let (mut alice, _) = login(&server, "alice").await;
    let mut said = Vec::new();
    for n in 0..12 {
        said.push(say(&mut alice, "general", &format!("m{n}")).await);
    }
    stop(server, vec![alice]).await;

    let small = Config {
        history: 3,
        ..Config::default()
    };
    let server = start(dir.path(), small).await;
    let (mut alice, joined) = login(&server, "alice").await;
    assert_eq!(
        joined["history"],
        json!(said[9..]),
        "memory keeps the newest 3"
    );
    for (request, page) in [
        (
            json!({"type": "history", "room": "general", "ref": 1}),
            &said[..],
        ),
        (
            json!({"type": "history", "room": "general", "limit": 4, "ref": 1}),
            &said[8..],
        ),
        (
            json!({"type": "history", "room": "general", "before": id(&said[5]), "limit": 3, "ref": 1}),
            &said[2..5],
        ),
    ] {
        alice.send_json(request.clone()).await;
        assert_eq!(
            alice.json().await,
            json!({"type": "history", "room": "general", "messages": page, "ref": 1}),
            "for {request}"
        );
    }
    stop(server, vec![alice]).await;
}

#[tokio::test]
async fn dm_ids_are_not_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Config::default()).await;
    let (mut alice, _) = login(&server, "alice").await;
    let mut ids = Vec::new();
    for to in ["bob", "carol", "dave"] {
        alice
            .send_json(json!({"type": "dm", "to": to, "text": "hi"}))
            .await;
        let reply = alice.json().await;
        assert_eq!(reply["queued"], true, "{reply}");
        ids.push(id(&reply));
    }
    stop(server, vec![alice]).await;

    let server = start(dir.path(), Config::default()).await;
    let (mut alice, _) = login(&server, "alice").await;
    let message = say(&mut alice, "general", "first message of this life").await;
    assert!(
        id(&message) > *ids.iter().max().unwrap(),
        "{} after {ids:?}",
        id(&message)
    );
    alice
        .send_json(json!({"type": "dm", "to": "erin", "text": "hi"}))
        .await;
    let dm = alice.json().await;
    assert!(id(&dm) > id(&message));
    let (mut carol, _) = login(&server, "Carol").await;
    let delivered = carol.json().await;
    assert_eq!(
        delivered["id"],
        json!(ids[1]),
        "carol's DM kept its id: {delivered}"
    );
    carol.quiet().await;
    stop(server, vec![alice, carol]).await;
}
