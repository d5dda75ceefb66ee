//! The line transport over loopback, with raw `TcpStream` clients doing what `nc` does.

// The runtime's test authenticator: the password `pw:NAME` and the token `token:NAME` prove NAME.
#[path = "../../chat-runtime/tests/tokens/mod.rs"]
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use chat_client::{Incoming, WsClient};
use chat_core::{Command, Config, Event};
use chat_runtime::{Runtime, RuntimeConfig};
use chat_store::MemoryStore;
use chat_transport_tcp::TcpConfig;
use chat_transport_ws::WsConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(10);

/// How a test server takes its line clients.
enum Lines {
    /// The bundled listener, `chat_transport_tcp::serve`.
    Serve,
    /// An accept loop of the test's own, as an app that accepts line clients itself runs one:
    /// each stream to `chat_transport_tcp::run_tcp`.
    OwnAcceptLoop,
}

/// A runtime with both transports on loopback ports.
struct Server {
    runtime: Runtime,
    tcp: std::net::SocketAddr,
    ws: String,
}

impl Server {
    async fn start() -> Server {
        Self::with(
            Config::default(),
            RuntimeConfig::default(),
            TcpConfig::default(),
        )
        .await
    }

    async fn with(chat: Config, limits: RuntimeConfig, tcp: TcpConfig) -> Server {
        Self::build(chat, limits, tcp, Lines::Serve).await
    }

    async fn build(chat: Config, limits: RuntimeConfig, tcp: TcpConfig, lines: Lines) -> Server {
        let tokens = Arc::new(tokens::Tokens {
            registers: true,
            ..tokens::Tokens::default()
        });
        let runtime = Runtime::start_with(chat, Arc::new(MemoryStore::new()), limits, tokens)
            .await
            .unwrap();
        let line_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = line_listener.local_addr().unwrap();
        let ws = format!("ws://{}/chat", ws_listener.local_addr().unwrap());
        match lines {
            Lines::Serve => {
                tokio::spawn(chat_transport_tcp::serve(
                    line_listener,
                    runtime.handle(),
                    tcp,
                ));
            }
            Lines::OwnAcceptLoop => {
                let handle = runtime.handle();
                let tcp = Arc::new(tcp);
                tokio::spawn(async move {
                    while let Ok((stream, peer)) = line_listener.accept().await {
                        let client =
                            chat_transport_tcp::run_tcp(stream, &handle, tcp.clone(), Some(peer));
                        tokio::spawn(client);
                    }
                });
            }
        }
        tokio::spawn(chat_transport_ws::serve(
            ws_listener,
            runtime.handle(),
            WsConfig::default(),
        ));
        Server {
            runtime,
            tcp: tcp_addr,
            ws,
        }
    }

    async fn nc(&self) -> Nc {
        let stream = TcpStream::connect(self.tcp).await.unwrap();
        let (read, write) = stream.into_split();
        let mut nc = Nc {
            read: BufReader::new(read),
            write,
        };
        assert_eq!(nc.line().await, "Enter your name:");
        nc
    }

    /// A line client logged in as `name`, its welcome read.
    async fn login(&self, name: &str) -> Nc {
        let mut nc = self.nc().await;
        nc.send(name).await;
        let welcome = nc.line().await;
        assert!(
            welcome.starts_with(&format!("* Welcome, {name}!")),
            "{welcome}"
        );
        nc
    }

    async fn ws_login(&self, name: &str) -> WsClient {
        let mut ws = WsClient::connect(&self.ws).await.unwrap();
        ws.send(&Command::login(name), None).await.unwrap();
        assert!(matches!(ws_event(&mut ws).await, Event::Welcome { .. }));
        assert!(matches!(ws_event(&mut ws).await, Event::Joined { .. }));
        ws
    }
}

async fn ws_event(ws: &mut WsClient) -> Event {
    match tokio::time::timeout(PATIENCE, ws.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Incoming::Event { event, .. } => event,
        other => panic!("{other:?}"),
    }
}

async fn ws_until(ws: &mut WsClient, kind: &str) -> Event {
    loop {
        let event = ws_event(ws).await;
        if event.kind() == kind {
            return event;
        }
    }
}

/// What `nc` is: lines in, lines out.
struct Nc {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Nc {
    async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next line, without its `\n`.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(PATIENCE, self.read.read_line(&mut line))
            .await
            .expect("a line within the patience")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        line.pop();
        line
    }

    /// Reads lines until one starts with `prefix`; returns it.
    async fn until(&mut self, prefix: &str) -> String {
        for _ in 0..1000 {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("no line starting with {prefix:?}");
    }

    /// Everything until the server closes the connection.
    async fn rest(&mut self) -> String {
        let mut rest = String::new();
        tokio::time::timeout(PATIENCE, self.read.read_to_string(&mut rest))
            .await
            .unwrap()
            .unwrap();
        rest
    }

    /// Round trip: `/who` is answered after everything typed before it.
    async fn sync(&mut self) {
        self.send("/who").await;
        self.until("* in #").await;
    }
}

/// `[HH:MM:SS] ` stripped, so lines can be compared.
fn unstamped(line: &str) -> &str {
    let bytes = line.as_bytes();
    assert!(
        bytes.len() > 11
            && bytes[0] == b'['
            && bytes[3] == b':'
            && bytes[6] == b':'
            && bytes[9] == b']',
        "no [HH:MM:SS] stamp: {line:?}"
    );
    &line[11..]
}

#[tokio::test]
async fn the_prompt_a_bad_name_and_a_taken_name_prompt_again() {
    let server = Server::start().await;
    let _alice = server.login("alice").await;
    let mut nc = server.nc().await;
    nc.send("not a name!").await;
    assert!(nc.line().await.starts_with("! invalid name"));
    assert_eq!(nc.line().await, "Enter your name:");
    nc.send("ALICE").await;
    assert_eq!(nc.line().await, "! the name ALICE is taken");
    assert_eq!(nc.line().await, "Enter your name:");
    nc.send("").await;
    assert_eq!(
        nc.line().await,
        "! invalid name: a name needs at least one character",
        "an empty line is told why"
    );
    assert_eq!(nc.line().await, "Enter your name:");
    nc.send("  bob  ").await;
    assert_eq!(
        nc.line().await,
        "* Welcome, bob! You are in #general. Type /help for commands."
    );
}

#[tokio::test]
async fn lines_are_said_in_the_room_and_not_echoed_to_their_sender() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    assert_eq!(alice.line().await, "* bob joined #general");
    alice.send("hello bob").await;
    assert_eq!(unstamped(&bob.line().await), "#general <alice> hello bob");
    bob.send_raw(b"hi alice\r\n").await;
    assert_eq!(
        unstamped(&alice.line().await),
        "#general <bob> hi alice",
        "\\r\\n is accepted"
    );
    // Alice saw nothing of her own line: the next thing she gets is bob's.
    alice.sync().await;
}

/// Alice says 30 lines to three line clients and `web` WebSocket clients, who wait; each gets
/// every line, whole and in order. Returns how many writes the runtime made itself.
async fn everyone_waiting_hears_every_line(server: &Server, web: usize) -> u64 {
    let mut alice = server.login("alice").await;
    let mut lines = Vec::new();
    for n in 0..3 {
        let mut nc = server.login(&format!("nc{n}")).await;
        nc.sync().await;
        lines.push(nc);
    }
    let mut webs = Vec::new();
    for n in 0..web {
        webs.push(server.ws_login(&format!("web{n}")).await);
    }
    alice.sync().await;
    for nc in &mut lines {
        nc.sync().await;
    }
    for n in 0..30 {
        alice.send(&format!("line {n}")).await;
    }
    for nc in &mut lines {
        for n in 0..30 {
            let line = nc.until("[").await;
            assert_eq!(unstamped(&line), format!("#general <alice> line {n}"));
        }
    }
    for ws in &mut webs {
        for n in 0..30 {
            let Event::Message(m) = ws_until(ws, "message").await else {
                unreachable!()
            };
            assert_eq!(m.text.as_str(), format!("line {n}"));
        }
    }
    server.runtime.handle().metrics().swept
}

#[tokio::test]
async fn on_one_thread_the_runtime_writes_broadcasts_to_waiting_clients_itself() {
    let server = Server::start().await;
    let swept = everyone_waiting_hears_every_line(&server, 2).await;
    assert!(swept > 0, "the runtime wrote no broadcast itself");
}

#[tokio::test]
async fn line_clients_an_app_accepts_itself_get_the_runtimes_writes_too() {
    let server = Server::build(
        Config::default(),
        RuntimeConfig::default(),
        TcpConfig::default(),
        Lines::OwnAcceptLoop,
    )
    .await;
    // Line clients only: every write the runtime made was to one of them.
    let swept = everyone_waiting_hears_every_line(&server, 0).await;
    assert!(swept > 0, "the runtime wrote no broadcast itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_several_threads_every_client_task_writes_its_own_broadcasts() {
    let server = Server::start().await;
    let swept = everyone_waiting_hears_every_line(&server, 2).await;
    assert_eq!(swept, 0, "the connections' tasks write in parallel");
}

#[tokio::test]
async fn joining_another_room_leaves_the_old_one_and_shows_its_history() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.until("* bob joined").await;
    bob.send("/join rust").await;
    assert_eq!(bob.line().await, "* You are now in #rust");
    assert_eq!(alice.line().await, "* bob left #general");
    bob.send("first in rust").await;
    alice.send("/join RUST").await;
    assert_eq!(alice.line().await, "* You are now in #rust");
    assert_eq!(
        unstamped(&alice.line().await),
        "#rust <bob> first in rust",
        "recent history"
    );
    assert_eq!(bob.line().await, "* alice joined #rust");
    alice.send("/join #bad").await;
    assert!(alice.line().await.starts_with("! invalid room name"));
    alice.send("still in rust").await;
    assert_eq!(unstamped(&bob.line().await), "#rust <alice> still in rust");
}

#[tokio::test]
async fn leave_leaves_the_current_room_and_says_so() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.until("* bob joined").await;
    bob.send("/leave").await;
    assert_eq!(bob.line().await, "* You left #general");
    assert_eq!(alice.line().await, "* bob left #general");
    bob.send("anyone?").await;
    assert_eq!(bob.line().await, "! you are in no room; /join ROOM first");
    bob.send("/join general").await;
    assert_eq!(bob.line().await, "* You are now in #general");
    assert_eq!(alice.line().await, "* bob joined #general");
    bob.send("/leave nowhere").await;
    assert_eq!(bob.line().await, "! you are not in #nowhere");
    bob.send("still here").await;
    assert_eq!(unstamped(&alice.line().await), "#general <bob> still here");
}

#[tokio::test]
async fn dms_online_and_offline() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.until("* bob joined").await;
    alice.send("/dm BOB psst\nsecond").await;
    assert_eq!(alice.line().await, "* dm to BOB delivered");
    assert_eq!(unstamped(&bob.line().await), "[dm] <alice> psst");
    assert_eq!(
        unstamped(&bob.line().await),
        "#general <alice> second",
        "the next line is said"
    );
    bob.send("/msg carol see you\tlater").await;
    assert_eq!(
        bob.line().await,
        "! carol is not online and has no account; the message was not kept"
    );
    // Carol's token makes her name an account: from then on DMs wait for her.
    let mut carol = server.nc().await;
    carol.send("/token token:Carol").await;
    assert!(carol.line().await.starts_with("* Welcome, Carol!"));
    bob.until("* Carol joined").await;
    carol.send("/quit").await;
    bob.until("* Carol left").await;
    bob.send("/msg carol see you\tlater").await;
    assert_eq!(bob.line().await, "* carol is offline; message queued");
    bob.send("/dm alice").await;
    assert_eq!(bob.line().await, "! usage: /dm USER TEXT");
    bob.send("/dm bob me").await;
    assert_eq!(
        bob.line().await,
        "! you cannot send a direct message to yourself"
    );

    let mut carol = server.nc().await;
    carol.send("carol").await;
    assert_eq!(
        carol.line().await,
        "Password:",
        "an account's name needs its password"
    );
    carol.send("pw:carol").await;
    assert!(
        carol.line().await.starts_with("* Welcome, Carol!"),
        "as registered"
    );
    // After the welcome: the room's recent history, then the queued DMs.
    assert_eq!(unstamped(&carol.line().await), "#general <alice> second");
    assert_eq!(unstamped(&carol.line().await), "[dm] <bob> see you\tlater");
}

#[tokio::test]
async fn a_registered_name_asks_for_its_password_and_a_wrong_one_asks_for_the_name_again() {
    let server = Server::start().await;
    let mut dave = server.login("dave").await;
    dave.send("/register correct horse").await;
    assert_eq!(dave.until("* dave is").await, "* dave is now registered");
    dave.send("/quit").await;

    let mut again = server.nc().await;
    again.send("Dave").await;
    assert_eq!(again.line().await, "Password:");
    again.send("wrong horse").await;
    assert_eq!(
        again.line().await,
        "! login failed: wrong name, password or token"
    );
    assert_eq!(again.line().await, "Enter your name:");
    again.send("dave").await;
    assert_eq!(again.line().await, "Password:");
    again.send("pw:dave").await;
    assert!(again.line().await.starts_with("* Welcome, dave!"));
}

#[tokio::test]
async fn lines_sent_with_the_name_in_one_write_are_read_after_the_login() {
    let server = Server::start().await;
    let mut bob = server.login("bob").await;
    let mut alice = server.nc().await;
    alice.send_raw(b"alice\nhello from a script\n").await;
    assert!(alice.line().await.starts_with("* Welcome, alice!"));
    assert_eq!(bob.until("* alice joined").await, "* alice joined #general");
    assert_eq!(
        unstamped(&bob.line().await),
        "#general <alice> hello from a script"
    );

    // The same with a password typed ahead.
    bob.send("/register correct horse").await;
    assert_eq!(bob.until("* bob is").await, "* bob is now registered");
    bob.send("/quit").await;
    let mut again = server.nc().await;
    again.send_raw(b"bob\npw:bob\n/who\n").await;
    assert_eq!(again.line().await, "Password:");
    assert!(again.line().await.starts_with("* Welcome, bob!"));
    assert!(again.until("* in #general:").await.contains("bob"));
}

#[tokio::test]
async fn pasted_lines_are_answered_in_the_order_they_were_typed() {
    let server = Server::start().await;
    let mut bob = server.login("bob").await;
    let mut alice = server.login("alice").await;
    bob.until("* alice joined").await;
    // Chat lines, a command the server answers, and one this connection answers itself
    // (`/help`), in one write: each answer comes where its line was.
    alice.send_raw(b"one\ntwo\n/rooms\n/help\nthree\n").await;
    assert_eq!(alice.line().await, "* #general (2 members)");
    assert!(alice.line().await.starts_with("* /join ROOM"));
    for expected in ["one", "two", "three"] {
        assert_eq!(
            unstamped(&bob.line().await),
            format!("#general <alice> {expected}")
        );
    }
}

#[tokio::test]
async fn every_command_answers() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    alice.send("/help").await;
    let help = alice.line().await;
    assert!(help.starts_with("* /join ROOM"), "{help}");
    for _ in 1..chat_protocol::line::HELP.len() {
        assert!(alice.line().await.starts_with("* "));
    }
    alice.send("/rooms").await;
    assert_eq!(alice.line().await, "* #general (1 member)");
    alice.send("/who").await;
    assert_eq!(alice.line().await, "* in #general: alice");
    alice.send("/who nowhere").await;
    assert_eq!(alice.line().await, "* nobody is in #nowhere");
    alice.send("/history").await;
    assert_eq!(alice.line().await, "* no earlier messages in #general");
    for n in 1..=3 {
        alice.send(&format!("message {n}")).await;
    }
    alice.send("/history 2").await;
    assert_eq!(unstamped(&alice.line().await), "#general <alice> message 2");
    assert_eq!(unstamped(&alice.line().await), "#general <alice> message 3");
    alice.send("/frobnicate now").await;
    assert_eq!(
        alice.line().await,
        "! unknown command /frobnicate (try /help)"
    );
    alice.send("//me waves").await;
    alice.send("/quit").await;
    assert_eq!(
        alice.rest().await,
        "* Bye!\n",
        "answers to earlier lines, then bye, then close"
    );
}

#[tokio::test]
async fn multi_line_texts_from_websocket_show_one_line_each() {
    let server = Server::start().await;
    let mut nc = server.login("nc").await;
    let mut ws = server.ws_login("web").await;
    nc.until("* web joined").await;
    let say = Command::Say {
        room: "general".into(),
        text: "one\ntwo".into(),
    };
    ws.send(&say, None).await.unwrap();
    assert_eq!(unstamped(&nc.line().await), "#general <web> one");
    assert_eq!(unstamped(&nc.line().await), "#general <web> two");
}

#[tokio::test]
async fn an_overlong_line_and_invalid_utf8_get_errors_and_the_connection_stays() {
    let limits = TcpConfig {
        max_line: 100,
        ..TcpConfig::default()
    };
    let server = Server::with(Config::default(), RuntimeConfig::default(), limits).await;
    let mut alice = server.login("alice").await;
    alice.send(&"x".repeat(5000)).await;
    assert_eq!(
        alice.line().await,
        "! line too long (the limit is 100 bytes); dropped"
    );
    alice.send_raw(b"caf\xe9\n").await;
    assert_eq!(
        alice.line().await,
        "! that line is not valid UTF-8; dropped"
    );
    alice.send("/who").await;
    assert_eq!(alice.line().await, "* in #general: alice");
}

#[tokio::test]
async fn a_burst_of_a_thousand_garbage_lines_then_normal_chat() {
    let limits = RuntimeConfig {
        rate_limit: 0,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, TcpConfig::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.until("* bob joined").await;
    let mut garbage = Vec::new();
    for n in 0..1000u32 {
        match n % 4 {
            0 => garbage.extend_from_slice(b"\xff\xfe\xfd\n"),
            1 => garbage.extend_from_slice(b"/nonsense\n"),
            2 => garbage.extend_from_slice(b"/dm\n"),
            _ => garbage.extend_from_slice(b"/join ../../etc\n"),
        }
    }
    // Read the errors while writing, as a terminal would.
    let writer = async {
        alice.write.write_all(&garbage).await.unwrap();
    };
    let mut errors = 0;
    let reader = async {
        while errors < 1000 {
            let mut line = String::new();
            alice.read.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("! "), "{line:?}");
            errors += 1;
        }
    };
    tokio::time::timeout(PATIENCE, async { tokio::join!(writer, reader) })
        .await
        .unwrap();
    assert_eq!(errors, 1000);
    alice.send("back to normal").await;
    assert_eq!(
        unstamped(&bob.line().await),
        "#general <alice> back to normal"
    );
}

#[tokio::test]
async fn a_flood_over_the_rate_limit_is_refused_then_disconnected() {
    let limits = RuntimeConfig {
        rate_limit: 5,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, TcpConfig::default()).await;
    let mut alice = server.login("alice").await;
    let mut limited = 0;
    let mut disconnected = false;
    let started = tokio::time::Instant::now();
    // At most 20 s of lines, 100 a second; the server closes after 3 s of refusals.
    while started.elapsed() < Duration::from_secs(20) {
        if alice.write.write_all(b"/who\n").await.is_err() {
            disconnected = true;
            break;
        }
        loop {
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_millis(10), alice.read.read_line(&mut line))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    disconnected = true;
                    break;
                }
                Ok(Ok(_)) if line.starts_with("! too many messages") => limited += 1,
                Ok(Ok(_)) if line.starts_with("! disconnected: too many lines") => {}
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
        if disconnected {
            break;
        }
    }
    assert!(limited > 0, "frames over the limit were refused first");
    assert!(disconnected, "a sustained flood ends the connection");
    assert!(started.elapsed() >= chat_runtime::FLOOD_GRACE);
}

#[tokio::test]
async fn websocket_and_line_users_share_rooms_and_dms() {
    let server = Server::start().await;
    let mut nc = server.login("liner").await;
    let mut ws = server.ws_login("webber").await;
    assert_eq!(nc.line().await, "* webber joined #general");

    nc.send("hello web").await;
    let Event::Message(m) = ws_until(&mut ws, "message").await else {
        unreachable!()
    };
    assert_eq!((m.from.as_str(), m.text.as_str()), ("liner", "hello web"));

    let say = Command::Say {
        room: "general".into(),
        text: "hello line".into(),
    };
    ws.send(&say, None).await.unwrap();
    assert_eq!(unstamped(&nc.line().await), "#general <webber> hello line");

    nc.send("/dm webber private").await;
    assert_eq!(nc.line().await, "* dm to webber delivered");
    let Event::Dm { message, .. } = ws_until(&mut ws, "dm").await else {
        unreachable!()
    };
    assert_eq!(
        (message.from.as_str(), message.text.as_str()),
        ("liner", "private")
    );

    ws.send(
        &Command::Dm {
            to: "LINER".into(),
            text: "back".into(),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(unstamped(&nc.line().await), "[dm] <webber> back");

    nc.send("/join rust").await;
    nc.line().await;
    let Event::Presence { user, room, .. } = ws_until(&mut ws, "presence").await else {
        unreachable!()
    };
    assert_eq!((user.as_str(), room.as_str()), ("liner", "general"));
}

#[tokio::test]
async fn full_server_refuses_a_line_client_with_a_line() {
    let limits = RuntimeConfig {
        max_connections: 1,
        ..RuntimeConfig::default()
    };
    let server = Server::with(Config::default(), limits, TcpConfig::default()).await;
    let _first = server.nc().await;
    let stream = TcpStream::connect(server.tcp).await.unwrap();
    let mut read = BufReader::new(stream);
    let mut all = String::new();
    tokio::time::timeout(PATIENCE, read.read_to_string(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, "! the server is full\n");
}

#[tokio::test]
async fn shutdown_says_goodbye_to_line_clients() {
    let server = Server::start().await;
    let mut alice = server.login("alice").await;
    server.runtime.shutdown().await.unwrap();
    assert_eq!(alice.rest().await, "* server shutting down; bye\n");
}
