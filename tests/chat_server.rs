//! The bundled server binary (`examples/chat_server.rs`), run as a user runs it: options on the
//! command line, the `listening …` line on standard output, signals to stop it.
//!
//! `cargo test` builds the examples next to this test binary (`target/debug/examples/`). The
//! test still asks the same cargo to build the example first (a no-op when it is up to date), so
//! that `cargo test --test chat_server`, which builds no examples, never runs a stale binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use chat_engine::core::{ErrorCode, Event};
use chat_engine::ws::{Incoming, WsClient};
use serde_json::json;

/// How long the test waits for something it expects before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// The path of the example binary, built (or found up to date) once per test run.
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/chat_server-HASH → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let binary = profile_dir
            .join("examples")
            .join(format!("chat_server{}", std::env::consts::EXE_SUFFIX));
        build_example(profile_dir);
        assert!(binary.exists(), "no server binary at {}", binary.display());
        binary
    })
}

fn build_example(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "--example",
            "chat_server",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => {}
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the example failed: {status}");
}

/// A running server process; killed (SIGKILL) if a test fails while it runs.
struct ServerProcess {
    child: Option<Child>,
    pid: u32,
    url: String,
    addr: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `--ws 127.0.0.1:0 --tcp off`) and waits for its
    /// `listening ws://…/chat` line.
    fn start(args: &[&str]) -> ServerProcess {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("stderr.log");
        let mut child = Command::new(server_binary())
            .args(["--ws", "127.0.0.1:0", "--tcp", "off"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the server starts");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if lines.send(line).is_err() {
                            // Nobody listens any more; keep draining so the server never blocks.
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut process = ServerProcess {
            child: Some(child),
            pid,
            url: String::new(),
            addr: String::new(),
            log,
            _log_dir: log_dir,
        };
        let line = match received.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(error) => panic!(
                "no `listening` line ({error}); stderr:\n{}",
                process.stderr()
            ),
        };
        let url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the first line is `listening …`: {line:?}"));
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.strip_suffix("/chat"))
            .unwrap_or_else(|| panic!("a ws://HOST:PORT/chat URL: {url:?}"));
        assert!(
            addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
            "the real port: {addr}"
        );
        process.url = url.to_owned();
        process.addr = addr.to_owned();
        process
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    /// Waits for the process to exit; returns its status.
    fn wait(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("the process was not waited for yet");
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        match exited.recv_timeout(PATIENCE) {
            Ok(status) => status.expect("waiting for the server"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(self.pid.to_string())
                    .status();
                panic!(
                    "the server did not exit in time; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
    let mut client = WsClient::connect(url).await.expect("the client connects");
    client
        .send_text(&json!({"type": "login", "name": name}).to_string())
        .await
        .unwrap();
    match event(&mut client).await {
        Event::Welcome { name: welcomed, .. } => assert_eq!(welcomed.as_str(), name),
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
    let (mut bob, joined) = login(&server.url, "bob").await;
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
