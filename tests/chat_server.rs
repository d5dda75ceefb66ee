//! The bundled server binary (`examples/chat_server.rs`), run as a user runs it: options on the
//! command line, the `listening …` line on standard output, signals to stop it.
//!
//! `cargo test` builds the examples next to this test binary (`target/debug/examples/`). The
//! test still asks the same cargo to build the example first (a no-op when it is up to date), so
//! that `cargo test --test chat_server`, which builds no examples, never runs a stale binary.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{ErrorCode, Event};
use serde_json::{Value, json};

use support::{PATIENCE, ServerProcess, server_binary};

async fn next(client: &mut WsClient) -> Incoming {
    tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("the server answered in time")
        .expect("the connection works")
}

async fn event(client: &mut WsClient) -> Event {
    match next(client).await {
        Incoming::Event { event, .. } => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Skips events (at most 1,000) until the connection closes; returns the close code.
async fn closed(client: &mut WsClient) -> Option<u16> {
    for _ in 0..1000 {
        if let Incoming::Closed { code, .. } = next(client).await {
            return code;
        }
    }
    panic!("the connection did not close");
}

/// Connects and logs in; returns the client and the welcome's rooms and the joined frame.
async fn login(url: &str, name: &str) -> (WsClient, Event) {
    login_with(url, json!({"type": "login", "name": name})).await
}

/// Makes `name` an account with `password`: logs in as a guest, registers, leaves.
async fn register(url: &str, name: &str, password: &str) {
    let (mut client, _) = login(url, name).await;
    let frame = json!({"type": "register", "password": password});
    client.send_text(&frame.to_string()).await.unwrap();
    loop {
        match event(&mut client).await {
            Event::Registered { .. } => break,
            Event::Error { code, message } => panic!("{name} not registered: {code:?} {message}"),
            _ => {}
        }
    }
    // Waits for the server's side of the close, so the connection no longer counts.
    client.close().await.unwrap();
}

/// Logs in as `name` with `password` (an account's).
async fn login_password(url: &str, name: &str, password: &str) -> (WsClient, Event) {
    login_with(
        url,
        json!({"type": "login", "name": name, "password": password}),
    )
    .await
}

async fn login_with(url: &str, frame: Value) -> (WsClient, Event) {
    let name = frame["name"].as_str().unwrap().to_owned();
    let mut client = WsClient::connect(url).await.expect("the client connects");
    client.send_text(&frame.to_string()).await.unwrap();
    match event(&mut client).await {
        Event::Welcome { name: welcomed, .. } => assert_eq!(welcomed.as_str(), name),
        Event::Error { code, message } => panic!("{name} was refused: {code:?} {message}"),
        other => panic!("expected a welcome, got {other:?}"),
    }
    let joined = event(&mut client).await;
    assert_eq!(joined.kind(), "joined", "{joined:?}");
    (client, joined)
}

async fn say(client: &mut WsClient, room: &str, text: &str) {
    client
        .send_text(&json!({"type": "say", "room": room, "text": text}).to_string())
        .await
        .unwrap();
}

/// Skips events until a room message arrives (at most 100 events); returns its text.
async fn message(client: &mut WsClient) -> String {
    for _ in 0..100 {
        if let Event::Message(message) = event(client).await {
            return message.text.as_str().to_owned();
        }
    }
    panic!("no message in 100 events");
}

fn history_texts(joined: &Event) -> Vec<String> {
    match joined {
        Event::Joined { history, .. } => {
            history.iter().map(|m| m.text.as_str().to_owned()).collect()
        }
        other => panic!("expected joined, got {other:?}"),
    }
}

/// The status line of a WebSocket upgrade request sent by hand.
fn upgrade_status(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts TCP");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n") && response.len() < 200 {
        match stream.read(&mut byte) {
            Ok(1) => response.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&response).trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_chats_stops_on_sigterm_with_1001_and_exit_0_and_keeps_its_history() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut server = ServerProcess::start(&["--data", data_dir]);
    let (mut alice, _) = login(&server.url, "alice").await;
    let (mut bob, _) = login(&server.url, "bob").await;
    for text in ["one", "two", "three"] {
        say(&mut alice, "general", text).await;
        assert_eq!(message(&mut alice).await, text);
        assert_eq!(message(&mut bob).await, text);
    }
    say(&mut bob, "general", "four").await;
    assert_eq!(message(&mut alice).await, "four");
    assert_eq!(message(&mut bob).await, "four");

    server.signal("TERM");
    assert_eq!(
        closed(&mut alice).await,
        Some(1001),
        "clients are closed with 1001"
    );
    assert_eq!(closed(&mut bob).await, Some(1001));
    let status = server.wait();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );

    let server = ServerProcess::start(&["--data", data_dir]);
    let (_carol, joined) = login(&server.url, "carol").await;
    assert_eq!(
        history_texts(&joined),
        ["one", "two", "three", "four"],
        "the history survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_sigint_stops_it_cleanly_and_nothing_survives() {
    let mut server = ServerProcess::start(&["--memory"]);
    let (mut alice, _) = login(&server.url, "alice").await;
    say(&mut alice, "general", "gone soon").await;
    assert_eq!(message(&mut alice).await, "gone soon");
    server.signal("INT");
    assert_eq!(closed(&mut alice).await, Some(1001));
    let status = server.wait();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );

    let server = ServerProcess::start(&["--memory"]);
    let (_alice, joined) = login(&server.url, "alice").await;
    assert!(history_texts(&joined).is_empty(), "{joined:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_everything_it_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut server = ServerProcess::start(&["--data", data_dir]);
    register(&server.url, "bob", "bob's password").await;
    let (mut alice, _) = login(&server.url, "alice").await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let text = format!("m{n}");
        say(&mut alice, "general", &text).await;
        assert_eq!(message(&mut alice).await, text);
        acknowledged.push(text);
    }
    alice
        .send_text(&json!({"type": "dm", "to": "bob", "text": "kept?"}).to_string())
        .await
        .unwrap();
    match event(&mut alice).await {
        Event::Dm { queued: true, .. } => {}
        other => panic!("expected the queued DM, got {other:?}"),
    }
    server.signal("KILL");
    let status = server.wait();
    assert!(!status.success(), "SIGKILL is not a clean exit: {status}");

    let server = ServerProcess::start(&["--data", data_dir, "--join-history", "50"]);
    let (mut bob, joined) = login_password(&server.url, "bob", "bob's password").await;
    assert_eq!(
        history_texts(&joined),
        acknowledged,
        "what was acknowledged survived the crash"
    );
    match event(&mut bob).await {
        Event::Dm { message, .. } => assert_eq!(message.text.as_str(), "kept?"),
        other => panic!("expected the queued DM, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_options_reach_the_server() {
    let server = ServerProcess::start(&[
        "--memory",
        "--default-room",
        "Lobby",
        "--join-history",
        "2",
        "--mailbox",
        "1",
        "--max-frame",
        "2048",
        "--rate-limit",
        "0",
        "--max-connections",
        "2",
    ]);
    // Carol's name is an account, so DMs wait for her (and fill her mailbox of one).
    register(&server.url, "carol", "carol's password").await;
    let mut alice = WsClient::connect(&server.url).await.unwrap();
    alice
        .send_text(r#"{"type":"login","name":"alice"}"#)
        .await
        .unwrap();
    match event(&mut alice).await {
        Event::Welcome { rooms, .. } => {
            let rooms: Vec<&str> = rooms.iter().map(|r| r.as_str()).collect();
            assert_eq!(rooms, ["lobby"], "--default-room");
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    assert_eq!(event(&mut alice).await.kind(), "joined");
    for text in ["a", "b", "c"] {
        say(&mut alice, "lobby", text).await;
        assert_eq!(message(&mut alice).await, text);
    }
    let mut bob = WsClient::connect(&server.url).await.unwrap();
    bob.send_text(r#"{"type":"login","name":"bob"}"#)
        .await
        .unwrap();
    assert_eq!(event(&mut bob).await.kind(), "welcome");
    assert_eq!(
        history_texts(&event(&mut bob).await),
        ["b", "c"],
        "--join-history"
    );

    for (text, expected) in [("1", None), ("2", Some(ErrorCode::MailboxFull))] {
        alice
            .send_text(&json!({"type": "dm", "to": "carol", "text": text}).to_string())
            .await
            .unwrap();
        let reply = loop {
            match event(&mut alice).await {
                Event::Presence { .. } => {}
                other => break other,
            }
        };
        match (reply, expected) {
            (Event::Dm { queued: true, .. }, None) => {}
            (Event::Error { code, .. }, Some(expected)) => assert_eq!(code, expected, "--mailbox"),
            (other, _) => panic!("unexpected {other:?}"),
        }
    }

    let status = upgrade_status(&server.addr, "/chat");
    assert!(
        status.starts_with("HTTP/1.1 503"),
        "--max-connections: {status}"
    );
    let status = upgrade_status(&server.addr, "/elsewhere");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    bob.send_text(&"x".repeat(2049)).await.unwrap();
    assert_eq!(closed(&mut bob).await, Some(1009), "--max-frame");
}

#[test]
fn help_lists_every_option_of_the_bundled_server() {
    let output = Command::new(server_binary())
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "--help exits 0");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for option in [
        "--ws",
        "--tcp",
        "--data",
        "--memory",
        "--history",
        "--join-history",
        "--default-room",
        "--mailbox",
        "--outbox",
        "--max-frame",
        "--rate-limit",
        "--max-connections",
        "--guests",
        "--max-sessions",
        "--resume-limit",
        "--large-room",
        "--jwt-secret-file",
        "--tls-cert",
        "--tls-key",
    ] {
        assert!(
            help.contains(&format!("{option} ")) || help.contains(&format!("{option}\n")),
            "{option} is missing from --help:\n{help}"
        );
    }
    for default in [
        "127.0.0.1:8765",
        "127.0.0.1:9999",
        "./chat-data",
        "1000",
        "5",
        "general",
        "1048576",
        "65536",
        "50",
        "10000",
    ] {
        assert!(
            help.contains(&format!("[default: {default}]")),
            "the default {default} is missing from --help:\n{help}"
        );
    }
}
