//! The bundled server's identity rules, attacked end to end: the `chat_server` binary with both
//! listeners on loopback ports, real WebSocket (`WsClient`) and line (TCP) clients, HS256 tokens
//! signed (and forged) by the `jsonwebtoken` crate, the password-guessing throttle under a loop,
//! and the data directory and log read back for secrets. Nothing here waits for time to pass:
//! each step waits for the server's answer (a `ping` after a frame marks the end of what the
//! frame caused; a `presence` leave marks a name free again), and timeouts only bound the waits.

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{AUTH_FAILED, ErrorCode, Event, PresenceChange, Ref};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{PATIENCE, server_binary};

// ---- the server --------------------------------------------------------------------------

/// The bundled binary with both listeners on loopback ports (`--ws 127.0.0.1:0 --tcp
/// 127.0.0.1:0`), its two `listening …` lines read back, its stderr in a file. Killed if a test
/// fails while it runs.
struct Server {
    child: Option<Child>,
    pid: u32,
    /// `ws://127.0.0.1:PORT/chat`.
    url: String,
    /// `127.0.0.1:PORT` of the line listener.
    line: String,
    /// Standard output after the `listening` lines.
    stdout: mpsc::Receiver<String>,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server with `args`, logging at `info`.
    fn start(args: &[&str]) -> Server {
        Server::start_logging(args, "info")
    }

    /// Starts the server with `args` and `RUST_LOG=level`.
    fn start_logging(args: &[&str], level: &str) -> Server {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("stderr.log");
        let mut child = Command::new(server_binary())
            .args(["--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", level)
            .env_remove("RUST_LOG_STYLE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("the server starts");
        let pid = child.id();
        let stdout = lines(child.stdout.take().unwrap());
        let mut server = Server {
            child: Some(child),
            pid,
            url: String::new(),
            line: String::new(),
            stdout,
            log,
            _log_dir: log_dir,
        };
        let mut announced = Vec::new();
        for _ in 0..2 {
            match server.stdout.recv_timeout(PATIENCE) {
                Ok(line) => announced.push(line),
                Err(error) => panic!(
                    "no `listening` lines ({error}): {announced:?}; stderr:\n{}",
                    server.stderr()
                ),
            }
        }
        let url = announced[0]
            .strip_prefix("listening ")
            .filter(|url| url.starts_with("ws://127.0.0.1:") && url.ends_with("/chat"))
            .unwrap_or_else(|| panic!("`listening ws://127.0.0.1:PORT/chat`: {announced:?}"));
        let line = announced[1]
            .strip_prefix("listening tcp://")
            .filter(|addr| addr.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("`listening tcp://127.0.0.1:PORT`: {announced:?}"));
        server.url = url.to_owned();
        server.line = line.to_owned();
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most [`PATIENCE`]) for the process to exit.
    fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.pid);
        let mut child = self.child.take().expect("the server runs");
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        match exited.recv_timeout(PATIENCE) {
            Ok(status) => status.expect("waiting for the server"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("the server did not stop; stderr:\n{}", self.stderr());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a server's two listeners are.
trait Endpoints {
    /// `ws://127.0.0.1:PORT/chat`.
    fn url(&self) -> &str;
    /// `127.0.0.1:PORT` of the line listener.
    fn line(&self) -> &str;
}

impl Endpoints for Server {
    fn url(&self) -> &str {
        &self.url
    }
    fn line(&self) -> &str {
        &self.line
    }
}

/// The lines of a child's pipe, read by a thread that keeps draining it.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let _ = send.send(line);
        }
    });
    receive
}

// ---- WebSocket clients -------------------------------------------------------------------

async fn connect(server: &impl Endpoints) -> WsClient {
    tokio::time::timeout(PATIENCE, WsClient::connect(server.url()))
        .await
        .expect("the client connects in time")
        .expect("the client connects")
}

async fn send(client: &mut WsClient, frame: &Value) {
    client.send_text(&frame.to_string()).await.unwrap();
}

/// The next event and its `ref`.
async fn next(client: &mut WsClient) -> (Event, Option<Ref>) {
    let incoming = tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("the server answered in time")
        .expect("the connection works");
    match incoming {
        Incoming::Event { event, reference } => (event, reference),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn text_ref(text: &str) -> Option<Ref> {
    Some(Ref::text(text).unwrap())
}

/// Sends `frame` (with the `ref` "f"), then a `ping` (ref "sync"); returns every event that
/// came before the `pong`: all that the frame caused, since the server answers a connection's
/// frames in order (a login's later frames wait for its check). Other people's doings in the
/// client's rooms (`presence`, and `message`s without a `ref`) are left out.
async fn exchange(client: &mut WsClient, frame: Value) -> Vec<Event> {
    let mut frame = frame;
    frame["ref"] = json!("f");
    send(client, &frame).await;
    send(client, &json!({"type": "ping", "ref": "sync"})).await;
    let mut events = Vec::new();
    for _ in 0..1000 {
        match next(client).await {
            (Event::Pong, reference) if reference == text_ref("sync") => return events,
            (Event::Presence { .. }, _) | (Event::Message(_), None) => {}
            (event, _) => events.push(event),
        }
    }
    panic!("no pong in 1,000 events: {events:?}");
}

/// The one event of `events`, an error: its code and message.
fn refused(events: Vec<Event>) -> (ErrorCode, String) {
    match <[Event; 1]>::try_from(events) {
        Ok([Event::Error { code, message }]) => (code, message),
        Ok([other]) => panic!("expected an error, got {other:?}"),
        Err(events) => panic!("expected one error, got {events:?}"),
    }
}

/// Asserts that `events` begin with a welcome for `name` (spelled so) with `account`.
fn assert_welcome(events: &[Event], name: &str, account: bool) {
    match events.first() {
        Some(Event::Welcome {
            name: welcomed,
            account: is_account,
            ..
        }) => {
            assert_eq!(welcomed.as_str(), name, "{events:?}");
            assert_eq!(*is_account, account, "account: {events:?}");
        }
        _ => panic!("expected a welcome for {name}: {events:?}"),
    }
}

fn login_frame(name: &str) -> Value {
    json!({"type": "login", "name": name})
}

fn password_frame(name: &str, password: &str) -> Value {
    json!({"type": "login", "name": name, "password": password})
}

fn token_frame(token: &str) -> Value {
    json!({"type": "login", "token": token})
}

/// A new connection that logs in with `frame`; returns it and what the login brought.
async fn login(server: &impl Endpoints, frame: Value) -> (WsClient, Vec<Event>) {
    let mut client = connect(server).await;
    let events = exchange(&mut client, frame.clone()).await;
    assert!(
        matches!(events.first(), Some(Event::Welcome { .. })),
        "{frame} was refused: {events:?}"
    );
    (client, events)
}

/// A guest logged in as `name` (in #general).
async fn guest(server: &impl Endpoints, name: &str) -> WsClient {
    let (client, events) = login(server, login_frame(name)).await;
    assert_welcome(&events, name, false);
    client
}

/// Makes `name` an account with `password` (a guest login, then `register`), then leaves; once
/// `watcher` (in #general) sees it go, the name is free again.
async fn register(server: &impl Endpoints, watcher: &mut WsClient, name: &str, password: &str) {
    let mut client = guest(server, name).await;
    let events = exchange(
        &mut client,
        json!({"type": "register", "password": password}),
    )
    .await;
    match events.as_slice() {
        [Event::Registered { name: registered }] => assert_eq!(registered.as_str(), name),
        other => panic!("{name} was not registered: {other:?}"),
    }
    leave(client, watcher, name).await;
}

/// Closes `client` (logged in as `name`, in #general) and waits until `watcher` sees it leave:
/// the server has then forgotten the connection, and the name is offline.
async fn leave(client: WsClient, watcher: &mut WsClient, name: &str) {
    client.close().await.unwrap();
    gone(watcher, name).await;
}

/// Waits (at most 1,000 events) for the `presence` leave of `name` in #general.
async fn gone(watcher: &mut WsClient, name: &str) {
    for _ in 0..1000 {
        if let (
            Event::Presence {
                user,
                event: PresenceChange::Leave,
                ..
            },
            _,
        ) = next(watcher).await
        {
            if user.as_str().eq_ignore_ascii_case(name) {
                return;
            }
        }
    }
    panic!("{name} did not leave");
}

/// The texts of the DMs among `events`.
fn dms(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Dm { message, .. } => Some(message.text.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

// ---- line clients ------------------------------------------------------------------------

/// A line (TCP) client.
struct LineClient {
    io: tokio::io::BufReader<TcpStream>,
}

impl LineClient {
    /// Connects and reads the name prompt.
    async fn connect(server: &impl Endpoints) -> LineClient {
        let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(server.line()))
            .await
            .expect("the line listener accepts in time")
            .expect("the line listener accepts");
        let mut client = LineClient {
            io: tokio::io::BufReader::new(stream),
        };
        client.expect("Enter your name:").await;
        client
    }

    async fn type_line(&mut self, line: &str) {
        self.io
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line, without its line end.
    async fn read(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(PATIENCE, self.io.read_line(&mut line))
            .await
            .expect("a line in time")
            .expect("the connection works");
        assert!(read > 0, "the server closed the line connection");
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    async fn expect(&mut self, want: &str) {
        assert_eq!(self.read().await, want);
    }

    /// Skips lines (at most 100) until one starts with `prefix`; returns it.
    async fn line_starting(&mut self, prefix: &str) -> String {
        let mut seen = Vec::new();
        for _ in 0..100 {
            let line = self.read().await;
            if line.starts_with(prefix) {
                return line;
            }
            seen.push(line);
        }
        panic!("no line starting with {prefix:?}: {seen:?}");
    }

    /// Logs in as the account `name` with `password`; returns the welcome line.
    async fn log_in(&mut self, name: &str, password: &str) -> String {
        self.type_line(name).await;
        self.expect("Password:").await;
        self.type_line(password).await;
        self.read().await
    }

    /// Asserts that the name logged in with is an account: `/register` says so.
    async fn assert_account(&mut self, name: &str) {
        self.type_line("/register another-password").await;
        assert_eq!(
            self.line_starting("! ").await,
            format!("! {name} is registered already")
        );
    }
}

// ---- tokens ------------------------------------------------------------------------------

const JWT_SECRET: &str = "a shared secret for the token tests, 48 bytes ok";

fn unix_now() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

/// An HS256 token for `claims`, signed with `secret`.
fn token(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub` (10 minutes left).
fn valid_token(sub: &str) -> String {
    token(JWT_SECRET, json!({"sub": sub, "exp": unix_now() + 600}))
}

/// Base64url without padding, for a token built by hand.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A token with `"alg": "none"` and no signature, otherwise valid.
fn unsigned_token(sub: &str) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    let claims = json!({"sub": sub, "exp": unix_now() + 600});
    format!(
        "{}.{}.",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

/// A file holding [`JWT_SECRET`] and a newline, as `echo` writes it.
fn secret_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt.secret");
    std::fs::write(&path, format!("{JWT_SECRET}\n")).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

// ---- 1. impersonation --------------------------------------------------------------------

const ALICE_PASSWORD: &str = "alice's correct horse";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_name_needs_its_password_over_websocket_and_lines() {
    let server = Server::start(&["--memory"]);
    let mut watcher = guest(&server, "watcher").await;
    register(&server, &mut watcher, "alice", ALICE_PASSWORD).await;

    // WebSocket: the name in another case, without a password, then with a wrong one; the
    // connection stays and may try again.
    let mut ws = connect(&server).await;
    let (code, _) = refused(exchange(&mut ws, login_frame("ALICE")).await);
    assert_eq!(code, ErrorCode::AuthRequired);
    let wrong = password_frame("ALICE", "not alice's password");
    let (code, message) = refused(exchange(&mut ws, wrong).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(message, AUTH_FAILED);

    // Lines: the name brings the password prompt; a wrong password a `! ` line and the name
    // prompt again; the right one logs in, spelled as registered.
    let mut line = LineClient::connect(&server).await;
    line.type_line("alice").await;
    line.expect("Password:").await;
    line.type_line("not alice's password").await;
    line.expect(&format!("! {AUTH_FAILED}")).await;
    line.expect("Enter your name:").await;
    let welcome = line.log_in("ALICE", ALICE_PASSWORD).await;
    assert!(welcome.starts_with("* Welcome, alice!"), "{welcome:?}");
    line.assert_account("alice").await;
    line.type_line("/quit").await;
    gone(&mut watcher, "alice").await;

    // The WebSocket connection that failed twice logs in with the right password.
    let events = exchange(&mut ws, password_frame("ALICE", ALICE_PASSWORD)).await;
    assert_welcome(&events, "alice", true);
}

// ---- 2. tokens ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_the_secret_log_in_and_every_bad_token_fails_alike() {
    let (_dir, secret) = secret_file();
    let server = Server::start(&["--memory", "--jwt-secret-file", &secret]);
    let mut watcher = guest(&server, "watcher").await;

    // A valid token logs in as its `sub`, an account; the frame's name and password are
    // ignored.
    let frame = json!({"type": "login", "token": valid_token("Tina"), "name": "mallory",
                       "password": "mallory's password"});
    let (tina, events) = login(&server, frame).await;
    assert_welcome(&events, "Tina", true);
    // The name is an account now: a guest cannot have it, even in another case.
    let mut other = connect(&server).await;
    let (code, _) = refused(exchange(&mut other, login_frame("TINA")).await);
    assert_eq!(code, ErrorCode::AuthRequired);
    // A token login for a later `TINA` is the account as it was made.
    leave(tina, &mut watcher, "Tina").await;
    let (_tina, events) = login(&server, token_frame(&valid_token("TINA"))).await;
    assert_welcome(&events, "Tina", true);

    // A token for a name a guest holds: name_taken (the guest keeps it).
    let _gus = guest(&server, "gus").await;
    let (code, _) = refused(exchange(&mut other, token_frame(&valid_token("Gus"))).await);
    assert_eq!(code, ErrorCode::NameTaken);

    // Lines: `/token JWT` at the name prompt.
    let mut line = LineClient::connect(&server).await;
    line.type_line(&format!("/token {}", valid_token("Lina")))
        .await;
    let welcome = line.read().await;
    assert!(welcome.starts_with("* Welcome, Lina!"), "{welcome:?}");
    line.assert_account("Lina").await;

    // Forged, expired, unsigned, garbage: four failures (a fifth would lock the address), one
    // message for all.
    let bad = [
        (
            "forged",
            token(
                "not the server's secret",
                json!({"sub": "zoe", "exp": unix_now() + 600}),
            ),
        ),
        (
            "expired",
            token(JWT_SECRET, json!({"sub": "zoe", "exp": unix_now() - 10})),
        ),
        ("alg none", unsigned_token("zoe")),
        ("garbage", "garbage.not-a.token".to_owned()),
    ];
    let mut failing = connect(&server).await;
    for (what, bad_token) in &bad {
        let (code, message) = refused(exchange(&mut failing, token_frame(bad_token)).await);
        assert_eq!(code, ErrorCode::AuthFailed, "{what}");
        assert_eq!(message, AUTH_FAILED, "{what}");
    }
    // The connection stays, and a good token then logs it in.
    let events = exchange(&mut failing, token_frame(&valid_token("zoe"))).await;
    assert_welcome(&events, "zoe", true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_bad_tokens_fail_and_the_fifth_failure_locks_token_logins_from_the_address() {
    let (_dir, secret) = secret_file();
    let server = Server::start(&["--memory", "--jwt-secret-file", &secret]);
    let exp = unix_now() + 600;
    let bad = [
        ("no exp", token(JWT_SECRET, json!({"sub": "zoe"}))),
        ("no sub", token(JWT_SECRET, json!({"exp": exp}))),
        (
            "a sub that is no name",
            token(JWT_SECRET, json!({"sub": "two words", "exp": exp})),
        ),
        (
            "not valid before later",
            token(
                JWT_SECRET,
                json!({"sub": "zoe", "exp": exp, "nbf": exp - 60}),
            ),
        ),
        (
            "HS512",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS512),
                &json!({"sub": "zoe", "exp": exp}),
                &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
            )
            .unwrap(),
        ),
    ];
    let mut client = connect(&server).await;
    for (what, bad_token) in &bad {
        let (code, message) = refused(exchange(&mut client, token_frame(bad_token)).await);
        assert_eq!(code, ErrorCode::AuthFailed, "{what}");
        assert_eq!(message, AUTH_FAILED, "{what}");
    }
    // Five failures from 127.0.0.1: a valid token from it is now refused unchecked.
    let (code, _) = refused(exchange(&mut client, token_frame(&valid_token("zoe"))).await);
    assert_eq!(code, ErrorCode::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_jwt_secret_file_a_token_login_fails() {
    let server = Server::start(&["--memory"]);
    let mut client = connect(&server).await;
    let (code, message) = refused(exchange(&mut client, token_frame(&valid_token("tina"))).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(message, AUTH_FAILED);
    let mut line = LineClient::connect(&server).await;
    line.type_line(&format!("/token {}", valid_token("tina")))
        .await;
    line.expect(&format!("! {AUTH_FAILED}")).await;
    line.expect("Enter your name:").await;
}

// ---- 3. offline DMs ----------------------------------------------------------------------

const BOB_PASSWORD: &str = "bob's own password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_read_an_accounts_queued_dms_and_nothing_is_kept_for_names_without_owner() {
    let server = Server::start(&["--memory"]);
    let mut alice = guest(&server, "alice").await;
    register(&server, &mut alice, "bob", BOB_PASSWORD).await;

    let events = exchange(
        &mut alice,
        json!({"type": "dm", "to": "bob", "text": "for bob only"}),
    )
    .await;
    assert!(
        matches!(events.as_slice(), [Event::Dm { queued: true, .. }]),
        "{events:?}"
    );

    // A guest asking for bob's name gets auth_required and nothing else.
    let mut impostor = connect(&server).await;
    let (code, _) = refused(exchange(&mut impostor, login_frame("bob")).await);
    assert_eq!(code, ErrorCode::AuthRequired);
    let (code, _) = refused(exchange(&mut impostor, login_frame("BOB")).await);
    assert_eq!(code, ErrorCode::AuthRequired);

    // Bob with his password gets it, once.
    let (bob, events) = login(&server, password_frame("bob", BOB_PASSWORD)).await;
    assert_welcome(&events, "bob", true);
    assert_eq!(dms(&events), ["for bob only"]);
    leave(bob, &mut alice, "bob").await;
    let (_bob, events) = login(&server, password_frame("bob", BOB_PASSWORD)).await;
    assert!(dms(&events).is_empty(), "delivered once: {events:?}");

    // A DM to a name nobody owns and nobody uses: user_offline, and nothing is kept.
    let (code, _) = refused(
        exchange(
            &mut alice,
            json!({"type": "dm", "to": "dave", "text": "for whoever is dave"}),
        )
        .await,
    );
    assert_eq!(code, ErrorCode::UserOffline);
    // Not for a guest who takes the name, nor for it once it is registered, nor at its next
    // login with the password.
    let (mut dave, events) = login(&server, login_frame("dave")).await;
    assert!(dms(&events).is_empty(), "{events:?}");
    let events = exchange(
        &mut dave,
        json!({"type": "register", "password": "dave's password"}),
    )
    .await;
    assert!(
        matches!(events.as_slice(), [Event::Registered { .. }]),
        "{events:?}"
    );
    leave(dave, &mut alice, "dave").await;
    let (_dave, events) = login(&server, password_frame("dave", "dave's password")).await;
    assert_welcome(&events, "dave", true);
    assert!(dms(&events).is_empty(), "{events:?}");
}

// ---- 4. guests off -----------------------------------------------------------------------

/// The bundled server's parts as `chat_engine::server::run` puts them together (a JSON-file
/// store, `chat_auth::Accounts` on it, the runtime, both transports), in this process, on
/// listeners bound here so that they accept at once. The binary cannot be started with
/// `--guests off` (see [`the_binary_starts_with_guests_off`]), and `server::run` does not say
/// which port it bound, so guests-off is tested on these parts.
struct InProcess {
    runtime: chat_engine::runtime::Runtime,
    url: String,
    line: String,
}

impl InProcess {
    async fn start(data_dir: &Path, chat: chat_engine::core::Config) -> InProcess {
        use chat_engine::store::{JsonFileStore, Store};
        let store: Arc<dyn Store> = Arc::new(JsonFileStore::open(data_dir).await.unwrap());
        let accounts = chat_auth::Accounts::new(store.clone());
        let runtime = chat_engine::runtime::Runtime::start_with(
            chat,
            store,
            chat_engine::runtime::RuntimeConfig::default(),
            Arc::new(accounts),
        )
        .await
        .expect("the runtime starts");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let line = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/chat", ws.local_addr().unwrap());
        let line_addr = line.local_addr().unwrap().to_string();
        let handle = runtime.handle();
        tokio::spawn(chat_engine::ws::serve(
            ws,
            handle.clone(),
            chat_engine::ws::WsConfig::default(),
        ));
        tokio::spawn(chat_engine::tcp::serve(
            line,
            handle,
            chat_engine::tcp::TcpConfig::default(),
        ));
        InProcess {
            runtime,
            url,
            line: line_addr,
        }
    }
}

impl Endpoints for InProcess {
    fn url(&self) -> &str {
        &self.url
    }
    fn line(&self) -> &str {
        &self.line
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_guests_off_every_name_needs_a_password() {
    // Accounts are made by the binary (guests on), then the same data is served without guests.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut server = Server::start(&["--data", data_dir]);
    let mut watcher = guest(&server, "watcher").await;
    register(&server, &mut watcher, "alice", ALICE_PASSWORD).await;
    register(&server, &mut watcher, "bob", BOB_PASSWORD).await;
    drop(watcher);
    assert!(server.stop().success(), "{}", server.stderr());

    let chat = chat_engine::core::Config {
        guests: false,
        ..chat_engine::core::Config::default()
    };
    let server = InProcess::start(data.path(), chat).await;
    let mut client = connect(&server).await;
    for name in ["nobody", "alice", "Alice"] {
        let (code, _) = refused(exchange(&mut client, login_frame(name)).await);
        assert_eq!(code, ErrorCode::AuthRequired, "{name}");
    }
    // A password for a name without an account fails like a wrong one.
    let (code, message) =
        refused(exchange(&mut client, password_frame("nobody", "any password at all")).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(message, AUTH_FAILED);
    let events = exchange(&mut client, password_frame("Alice", ALICE_PASSWORD)).await;
    assert_welcome(&events, "alice", true);
    // With guests off, a DM to any offline name is kept (someone may own it later).
    let events = exchange(
        &mut client,
        json!({"type": "dm", "to": "carol", "text": "kept for carol"}),
    )
    .await;
    assert!(
        matches!(events.as_slice(), [Event::Dm { queued: true, .. }]),
        "{events:?}"
    );

    // Lines: every name gets the password prompt.
    let mut line = LineClient::connect(&server).await;
    line.type_line("nobody").await;
    line.expect("Password:").await;
    line.type_line("any password at all").await;
    line.expect(&format!("! {AUTH_FAILED}")).await;
    line.expect("Enter your name:").await;
    let welcome = line.log_in("bob", BOB_PASSWORD).await;
    assert!(welcome.starts_with("* Welcome, bob!"), "{welcome:?}");
    server.runtime.shutdown().await.expect("a clean shutdown");
}

/// `chat_server --guests off` should start a server without guests. It does not start: the
/// option's field is a `bool`, which clap's derive makes a switch that takes no value
/// (`--help` shows `--guests` alone), and the switch's implicit `true` then fails the `on|off`
/// parser. `--guests off`, `--guests=off` and a bare `--guests` all exit with status 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_with_guests_off() {
    let server = Server::start(&["--memory", "--guests", "off"]);
    let mut client = connect(&server).await;
    let (code, _) = refused(exchange(&mut client, login_frame("nobody")).await);
    assert_eq!(code, ErrorCode::AuthRequired);
}

// ---- 5. the throttle under a guessing loop -----------------------------------------------

/// How many guesses the loop sends at most, and for how long.
const GUESSES: u64 = 200;
const GUESSING_FOR: Duration = Duration::from_secs(20);

const BEFORE: u8 = 0;
const GUESSING: u8 = 1;
const DONE: u8 = 2;

/// One round of the chatter: a `ping` and a `say`, each answered, in order, with its `ref`
/// (presence events from others are skipped).
async fn chat_round(client: &mut WsClient, round: u64) {
    let (ping, say) = (format!("p{round}"), format!("s{round}"));
    send(client, &json!({"type": "ping", "ref": ping})).await;
    let text = format!("round {round}");
    send(
        client,
        &json!({"type": "say", "room": "general", "text": text, "ref": say}),
    )
    .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match next(client).await {
            (_, None) => {}
            (event, Some(reference)) => answers.push((event, reference)),
        }
    }
    match answers.as_slice() {
        [(Event::Pong, first), (Event::Message(message), second)]
            if *first == Ref::text(&ping).unwrap()
                && *second == Ref::text(&say).unwrap()
                && message.text.as_str() == text => {}
        other => panic!("round {round}: expected the pong, then the message: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_checks_five_guesses_and_refuses_the_rest_while_others_chat_on() {
    // The per-connection frame limit is off, so that every `rate_limited` the guesser gets comes
    // from the login throttle, and the chatter may send as fast as it is answered.
    let server = Server::start(&["--memory", "--rate-limit", "0"]);
    let mut watcher = guest(&server, "watcher").await;
    register(
        &server,
        &mut watcher,
        "victim",
        "the victim's real password",
    )
    .await;
    register(&server, &mut watcher, "other", "the other's real password").await;

    // The chatter: a guest already in, pinging and saying for as long as the guessing lasts.
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let (ready, started) = tokio::sync::oneshot::channel();
    let mut carol = guest(&server, "carol").await;
    let chatter = tokio::spawn({
        let phase = phase.clone();
        async move {
            let mut ready = Some(ready);
            let (mut rounds, mut during) = (0u64, 0u64);
            loop {
                let at_start = phase.load(Ordering::SeqCst);
                chat_round(&mut carol, rounds).await;
                rounds += 1;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                let at_end = phase.load(Ordering::SeqCst);
                if at_start == GUESSING && at_end == GUESSING {
                    during += 1;
                }
                if at_start == DONE {
                    return (carol, rounds, during);
                }
            }
        }
    });
    started.await.expect("the chatter runs");

    let mut guesser = connect(&server).await;
    let (mut failed, mut limited, mut sent) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + GUESSING_FOR;
    phase.store(GUESSING, Ordering::SeqCst);
    while sent < GUESSES && Instant::now() < deadline {
        let guess = format!("guess number {sent}");
        send(
            &mut guesser,
            &json!({"type": "login", "name": "victim", "password": guess, "ref": sent}),
        )
        .await;
        let (event, reference) = next(&mut guesser).await;
        assert_eq!(reference, Some(Ref::number(sent)), "{event:?}");
        match event {
            Event::Error {
                code: ErrorCode::AuthFailed,
                message,
            } => {
                assert_eq!(message, AUTH_FAILED);
                assert_eq!(limited, 0, "a guess was checked after one was refused");
                failed += 1;
            }
            Event::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("guess {sent}: {other:?}"),
        }
        sent += 1;
    }
    phase.store(DONE, Ordering::SeqCst);
    let (mut carol, rounds, during) = chatter
        .await
        .expect("the chatter's frames were all answered");

    assert!(sent >= 20, "only {sent} guesses in {GUESSING_FOR:?}");
    assert_eq!(failed, 5, "passwords checked, of {sent} guesses");
    assert_eq!(limited, sent - 5, "guesses refused unchecked");
    assert!(
        during >= 1,
        "the chatter's rounds ran while the guessing did ({rounds} rounds)"
    );

    // During the lock: the right password for the name is refused unchecked...
    let mut owner = connect(&server).await;
    let right = password_frame("victim", "the victim's real password");
    let (code, _) = refused(exchange(&mut owner, right).await);
    assert_eq!(code, ErrorCode::RateLimited);
    // ... and so is every password login from the guesser's address, 127.0.0.1, which every
    // client of this test shares: the address lock holds another account's owner off too.
    let other = password_frame("other", "the other's real password");
    let (code, _) = refused(exchange(&mut owner, other).await);
    assert_eq!(code, ErrorCode::RateLimited);
    // Guests are never throttled.
    let events = exchange(&mut owner, login_frame("dave")).await;
    assert_welcome(&events, "dave", false);
    // The chatter is still answered, and so is the new guest.
    chat_round(&mut carol, rounds).await;
    let mut dave = owner;
    chat_round(&mut dave, 0).await;
}

// ---- 6. no password at rest or in the log ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_in_the_data_directory_or_the_log() {
    // Debug logging: the most the server itself says about logins.
    no_password_at_rest_or_in_a_log_at("debug").await;
}

/// With `RUST_LOG=trace` (which the server honours), tungstenite logs every frame it receives,
/// `Received message {"name":"cat","password":"…",…}`: passwords and tokens reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_in_a_trace_log() {
    no_password_at_rest_or_in_a_log_at("trace").await;
}

/// Registers accounts with distinctive passwords, logs in with them, chats, DMs (online and
/// offline), guesses wrong, logs in over lines; stops the server; then no file of the data
/// directory and no line of the server's output (logging at `level`) holds a password, and the
/// data holds one argon2id hash per account and never the word "password".
async fn no_password_at_rest_or_in_a_log_at(level: &str) {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut server = Server::start_logging(&["--data", data_dir], level);
    let names = ["amy", "ben", "cat"];
    let passwords: Vec<String> = (0..names.len())
        .map(|n| format!("Sup3r-s3cret-horse-{n}"))
        .collect();
    let wrong = "Sup3r-s3cret-horse-wrong";
    let mut watcher = guest(&server, "watcher").await;
    for (name, password) in names.iter().zip(&passwords) {
        register(&server, &mut watcher, name, password).await;
    }
    let mut clients = Vec::new();
    for (name, password) in names.iter().zip(&passwords) {
        let (mut client, events) = login(&server, password_frame(name, password)).await;
        assert_welcome(&events, name, true);
        let events = exchange(
            &mut client,
            json!({"type": "say", "room": "general", "text": format!("hello from {name}")}),
        )
        .await;
        assert!(
            matches!(events.last(), Some(Event::Message(_))),
            "{events:?}"
        );
        clients.push(client);
    }
    // DMs online and offline, and a wrong guess.
    let events = exchange(
        &mut clients[0],
        json!({"type": "dm", "to": "ben", "text": "a direct message"}),
    )
    .await;
    assert!(
        matches!(events.as_slice(), [Event::Dm { queued: false, .. }]),
        "{events:?}"
    );
    let cat = clients.pop().unwrap();
    leave(cat, &mut watcher, "cat").await;
    let events = exchange(
        &mut clients[0],
        json!({"type": "dm", "to": "cat", "text": "kept for later"}),
    )
    .await;
    assert!(
        matches!(events.as_slice(), [Event::Dm { queued: true, .. }]),
        "{events:?}"
    );
    let mut guesser = connect(&server).await;
    let (code, _) = refused(exchange(&mut guesser, password_frame("cat", wrong)).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    // A line login with a password too.
    let mut line = LineClient::connect(&server).await;
    let welcome = line.log_in("cat", &passwords[2]).await;
    assert!(welcome.starts_with("* Welcome, cat!"), "{welcome:?}");

    let status = server.stop();
    assert!(status.success(), "{status}; stderr:\n{}", server.stderr());

    let mut secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    secrets.push(wrong);
    let files = files_under(data.path());
    assert!(!files.is_empty(), "the store wrote files");
    let mut hashes = 0;
    for file in &files {
        let content = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&content);
        for secret in &secrets {
            assert!(
                !text.contains(secret),
                "{secret} is in {}:\n{text}",
                file.display()
            );
        }
        assert!(
            !text.to_lowercase().contains("password")
                && !file.to_string_lossy().to_lowercase().contains("password"),
            "the word password is in {}:\n{text}",
            file.display()
        );
        hashes += text.matches("$argon2id$").count();
    }
    assert_eq!(
        hashes,
        names.len(),
        "one argon2id hash per account in {files:?}"
    );

    let log = server.stderr();
    assert!(
        log.contains("password login refused"),
        "the log is at debug level:\n{log}"
    );
    let mut shown: Vec<String> = server.stdout.try_iter().collect();
    shown.push(log);
    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret), "{secret} is in the output:\n{text}");
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

// ---- 7. register -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rules_and_registration_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut server = Server::start(&["--data", data_dir]);
    let mut watcher = guest(&server, "watcher").await;

    let mut client = connect(&server).await;
    let register_frame = |password: &str| json!({"type": "register", "password": password});
    let (code, _) = refused(exchange(&mut client, register_frame("long enough")).await);
    assert_eq!(code, ErrorCode::NotLoggedIn);
    let events = exchange(&mut client, login_frame("Ruth")).await;
    assert_welcome(&events, "Ruth", false);
    let (code, _) = refused(exchange(&mut client, register_frame("7 bytes")).await);
    assert_eq!(code, ErrorCode::InvalidPassword);
    let (code, _) = refused(exchange(&mut client, register_frame(&"x".repeat(257))).await);
    assert_eq!(code, ErrorCode::InvalidPassword);
    let events = exchange(&mut client, register_frame("8 bytes!")).await;
    match events.as_slice() {
        [Event::Registered { name }] => assert_eq!(name.as_str(), "Ruth"),
        other => panic!("{other:?}"),
    }
    let (code, _) = refused(exchange(&mut client, register_frame("once more, again")).await);
    assert_eq!(code, ErrorCode::AlreadyRegistered);
    leave(client, &mut watcher, "Ruth").await;
    // An account logged in with its password cannot register either.
    let (mut client, events) = login(&server, password_frame("ruth", "8 bytes!")).await;
    assert_welcome(&events, "Ruth", true);
    let (code, _) = refused(exchange(&mut client, register_frame("once more, again")).await);
    assert_eq!(code, ErrorCode::AlreadyRegistered);
    drop(client);
    drop(watcher);

    let status = server.stop();
    assert!(status.success(), "{status}; stderr:\n{}", server.stderr());
    let server = Server::start(&["--data", data_dir]);
    let mut client = connect(&server).await;
    let (code, _) = refused(exchange(&mut client, login_frame("ruth")).await);
    assert_eq!(code, ErrorCode::AuthRequired, "still an account");
    let (code, _) = refused(exchange(&mut client, password_frame("ruth", "8 bytes?")).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    let events = exchange(&mut client, password_frame("RUTH", "8 bytes!")).await;
    assert_welcome(&events, "Ruth", true);
}
