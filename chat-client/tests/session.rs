//! The terminal client's session layer (`ClientSession`) against a real server on a loopback
//! port: two users talk, a refused name and a lost connection are said clearly, and a session
//! comes back by itself after the server restarts, logging in with the same password or token,
//! or with the password its name was registered with meanwhile. A session cut off (through a
//! relay that drops its connection) while others talk shows, once it is back, every message and
//! DM it missed exactly once and in order, paging back when more were missed than the server's
//! resume limit.

#[path = "../../chat-runtime/tests/tokens/mod.rs"]
mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_client::{Backoff, ClientSession, Notice, SessionConfig, Update};
use chat_core::{Config, ErrorCode, Event, PresenceChange, Secret, SendKind};
use chat_protocol::line::render::render;
use chat_runtime::{Authenticator, Runtime, RuntimeConfig};
use chat_store::{JsonFileStore, MemoryStore, Store};
use chat_transport_ws::{WsConfig, serve};
use tokens::Tokens;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a test waits for something it expects before failing.
const PATIENCE: Duration = Duration::from_secs(10);

struct TestServer {
    addr: SocketAddr,
    runtime: Runtime,
    serving: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// A server on `addr` (port 0 for a free one).
    async fn start(addr: &str, store: Arc<dyn Store>) -> TestServer {
        Self::configured(addr, Config::default(), store).await
    }

    /// A server on `addr` with the chat settings `chat`.
    async fn configured(addr: &str, chat: Config, store: Arc<dyn Store>) -> TestServer {
        let runtime = Runtime::start(chat, store, RuntimeConfig::default())
            .await
            .expect("the runtime starts");
        Self::serving(addr, runtime).await
    }

    /// A server on `addr` whose logins with credentials `authenticator` checks.
    async fn start_with(
        addr: &str,
        store: Arc<dyn Store>,
        authenticator: Arc<dyn Authenticator>,
    ) -> TestServer {
        let runtime = Runtime::start_with(
            Config::default(),
            store,
            RuntimeConfig::default(),
            authenticator,
        )
        .await
        .expect("the runtime starts");
        Self::serving(addr, runtime).await
    }

    async fn serving(addr: &str, runtime: Runtime) -> TestServer {
        let listener = TcpListener::bind(addr).await.expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(serve(listener, runtime.handle(), WsConfig::default()));
        TestServer {
            addr,
            runtime,
            serving,
        }
    }

    async fn in_memory() -> TestServer {
        Self::start("127.0.0.1:0", Arc::new(MemoryStore::new())).await
    }

    async fn on_disk(addr: &str, dir: &Path) -> TestServer {
        let store = JsonFileStore::open(dir).await.expect("the store opens");
        Self::start(addr, Arc::new(store)).await
    }

    /// A server on disk with accounts: the test authenticator (password `pw:NAME`, token
    /// `token:NAME`), registering anyone.
    async fn with_accounts(addr: &str, dir: &Path, tokens: Arc<Tokens>) -> TestServer {
        let store = JsonFileStore::open(dir).await.expect("the store opens");
        Self::start_with(addr, Arc::new(store), tokens).await
    }

    fn url(&self) -> String {
        format!("ws://{}/chat", self.addr)
    }

    /// Graceful shutdown (clients are closed with 1001), listener closed.
    async fn stop(self) {
        self.runtime.shutdown().await.expect("a clean shutdown");
        self.serving.await.unwrap().unwrap();
    }
}

/// Fast retries, so a restart is noticed quickly.
fn config(url: &str, name: &str) -> SessionConfig {
    SessionConfig {
        backoff: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        ..SessionConfig::new(url, name)
    }
}

/// Reads updates until one matches, failing (with what came instead) after [`PATIENCE`].
async fn until(
    session: &mut ClientSession,
    what: &str,
    mut wanted: impl FnMut(&Update) -> bool,
) -> Update {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, session.next()).await {
            Ok(Some(update)) if wanted(&update) => return update,
            Ok(Some(update)) => seen.push(update),
            Ok(None) => panic!("the session ended before {what}; it said {seen:#?}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; it said {seen:#?}"),
        }
    }
}

fn server_event(update: &Update) -> Option<(&Event, bool, SendKind)> {
    match update {
        Update::Server {
            event,
            answers_command,
            kind,
        } => Some((event, *answers_command, *kind)),
        _ => None,
    }
}

fn is_text(update: &Update, text: &str) -> bool {
    matches!(server_event(update), Some((Event::Message(m), _, _)) if m.text.as_str() == text)
}

/// A session logged in as `name`, its welcome and the login's `joined` consumed.
async fn logged_in(url: &str, name: &str) -> ClientSession {
    let mut session = ClientSession::start(config(url, name));
    until(&mut session, "the welcome", |u| {
        matches!(server_event(u), Some((Event::Welcome { .. }, _, _)))
    })
    .await;
    until(&mut session, "the login's joined", |u| {
        matches!(server_event(u), Some((Event::Joined { .. }, false, _)))
    })
    .await;
    session
}

#[tokio::test]
async fn two_clients_talk_through_a_real_server() {
    let server = TestServer::in_memory().await;
    let mut alice = logged_in(&server.url(), "alice").await;
    let mut bob = logged_in(&server.url(), "bob").await;
    until(&mut alice, "bob's arrival", |u| {
        matches!(server_event(u), Some((Event::Presence { user, event: PresenceChange::Join, .. }, _, _)) if user.as_str() == "bob")
    })
    .await;

    // A plain line is said in the room: bob gets it as someone else's message, alice as her echo.
    alice.type_line("hello bob").await.unwrap();
    let heard = until(&mut bob, "alice's message", |u| is_text(u, "hello bob")).await;
    let (Event::Message(message), false, SendKind::Push) = server_event(&heard).unwrap() else {
        panic!("not pushed: {heard:?}")
    };
    assert_eq!(
        (message.from.as_str(), message.room.as_str()),
        ("alice", "general")
    );
    let echo = until(&mut alice, "her echo", |u| is_text(u, "hello bob")).await;
    assert!(matches!(
        server_event(&echo),
        Some((Event::Message(_), true, SendKind::Echo))
    ));

    // A DM both ways round: bob's copy is an echo, alice's a push.
    bob.type_line("/dm ALICE psst, a secret").await.unwrap();
    let dm = until(&mut alice, "bob's dm", |u| {
        matches!(server_event(u), Some((Event::Dm { .. }, _, _)))
    })
    .await;
    let (
        Event::Dm {
            message, queued, ..
        },
        false,
        SendKind::Push,
    ) = server_event(&dm).unwrap()
    else {
        panic!("not pushed: {dm:?}")
    };
    assert_eq!(
        (message.from.as_str(), message.text.as_str(), *queued),
        ("bob", "psst, a secret", false)
    );
    let dm_echo = until(&mut bob, "his dm's echo", |u| {
        matches!(server_event(u), Some((Event::Dm { .. }, _, _)))
    })
    .await;
    assert!(matches!(
        server_event(&dm_echo),
        Some((Event::Dm { .. }, true, SendKind::Echo))
    ));

    // /join moves alice: she is in #rust, and no longer in #general.
    alice.type_line("/join Rust").await.unwrap();
    let joined = until(&mut alice, "the joined for /join", |u| {
        matches!(server_event(u), Some((Event::Joined { .. }, true, _)))
    })
    .await;
    assert!(
        matches!(server_event(&joined), Some((Event::Joined { room, .. }, _, SendKind::Backlog)) if room.as_str() == "rust")
    );
    until(&mut bob, "alice leaving #general", |u| {
        matches!(server_event(u), Some((Event::Presence { user, event: PresenceChange::Leave, .. }, _, _)) if user.as_str() == "alice")
    })
    .await;
    alice.type_line("only rust hears this").await.unwrap();
    alice.type_line("/who").await.unwrap();
    let who = until(&mut alice, "who", |u| {
        matches!(server_event(u), Some((Event::Who { .. }, _, _)))
    })
    .await;
    let Some((Event::Who { room, members }, true, SendKind::Reply)) = server_event(&who) else {
        panic!("{who:?}")
    };
    assert_eq!(room.as_str(), "rust", "/who asks about the current room");
    assert_eq!(members.len(), 1);
    alice.type_line("/history 10").await.unwrap();
    let page = until(&mut alice, "a history page", |u| {
        matches!(server_event(u), Some((Event::History { .. }, _, _)))
    })
    .await;
    let Some((Event::History { messages, .. }, true, _)) = server_event(&page) else {
        panic!("{page:?}")
    };
    assert_eq!(
        messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["only rust hears this"]
    );
    alice.type_line("/rooms").await.unwrap();
    let rooms = until(&mut alice, "the room list", |u| {
        matches!(server_event(u), Some((Event::Rooms { .. }, _, _)))
    })
    .await;
    let Some((Event::Rooms { rooms }, ..)) = server_event(&rooms) else {
        panic!("{rooms:?}")
    };
    let counts: Vec<(&str, usize)> = rooms.iter().map(|r| (r.room.as_str(), r.members)).collect();
    assert_eq!(counts, [("general", 1), ("rust", 1)]);

    // Lines the client answers itself.
    alice.type_line("/frobnicate").await.unwrap();
    let unknown = until(&mut alice, "the unknown-command notice", |u| {
        matches!(u, Update::Notice(_))
    })
    .await;
    assert_eq!(
        unknown.render().unwrap(),
        "! unknown command /frobnicate (try /help)\n"
    );
    alice.type_line("/leave").await.unwrap();
    let left = until(&mut alice, "the left for /leave", |u| {
        matches!(server_event(u), Some((Event::Left { .. }, true, _)))
    })
    .await;
    let Some((event, true, kind)) = server_event(&left) else {
        unreachable!()
    };
    assert_eq!(
        render(event, true, kind).as_deref(),
        Some("* You left #rust\n")
    );
    alice.type_line("said in no room").await.unwrap();
    let no_room = until(&mut alice, "the notice of no room", |u| {
        matches!(u, Update::Notice(_))
    })
    .await;
    assert_eq!(
        no_room.render().unwrap(),
        "! you are in no room; /join ROOM first\n"
    );

    // The line bob typed before the message in #rust never reaches him: he is not in #rust.
    bob.type_line("/quit").await.unwrap();
    let bye = until(&mut bob, "the end", Update::is_final).await;
    assert_eq!(
        bye,
        Update::Ended {
            reason: "Bye!".into()
        }
    );
    assert_eq!(bob.next().await, None, "nothing after the last update");
    assert!(bob.type_line("anyone?").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_refused_name_ends_the_session_with_the_servers_reason() {
    let server = TestServer::in_memory().await;
    let _alice = logged_in(&server.url(), "alice").await;

    let mut copycat = ClientSession::start(config(&server.url(), "ALICE"));
    let refused = until(&mut copycat, "a refusal", Update::is_final).await;
    let Update::Refused { code, message } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*code, ErrorCode::NameTaken);
    assert!(message.contains("taken"), "{message}");
    let shown = refused.render().unwrap();
    assert!(
        shown.starts_with("! login refused: ") && shown.contains("taken"),
        "{shown}"
    );
    assert_eq!(copycat.next().await, None);

    let mut invalid = ClientSession::start(config(&server.url(), "no spaces allowed"));
    let refused = until(&mut invalid, "a refusal", Update::is_final).await;
    assert!(
        matches!(
            refused,
            Update::Refused {
                code: ErrorCode::InvalidName,
                ..
            }
        ),
        "{refused:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_reconnects_after_a_server_restart_and_goes_back_to_its_room() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::on_disk("127.0.0.1:0", dir.path()).await;
    let (addr, url) = (first.addr, first.url());
    let mut alice = logged_in(&url, "alice").await;
    alice.type_line("/join rust").await.unwrap();
    alice.type_line("said before the restart").await.unwrap();
    until(&mut alice, "her echo", |u| {
        is_text(u, "said before the restart")
    })
    .await;

    first.stop().await;
    let lost = until(&mut alice, "the loss", |u| matches!(u, Update::Lost { .. })).await;
    assert_eq!(
        lost.render().unwrap(),
        "! connection lost: the server is shutting down\n"
    );
    until(&mut alice, "a retry", |u| {
        matches!(u, Update::Retrying { why: None, .. })
    })
    .await;
    // While the server is down, a retry says why it failed, and typed lines are refused.
    let failed = until(&mut alice, "a failed attempt", |u| {
        matches!(u, Update::Retrying { why: Some(_), .. })
    })
    .await;
    let shown = failed.render().unwrap();
    assert!(
        shown.contains("connection refused") && shown.contains("retrying in"),
        "{shown}"
    );
    alice.type_line("anyone there?").await.unwrap();
    let refused = until(&mut alice, "the refusal of a line", |u| {
        matches!(u, Update::Notice(Notice::Problem(_)))
    })
    .await;
    assert!(
        refused.render().unwrap().contains("not connected"),
        "{refused:?}"
    );

    let second = TestServer::on_disk(&addr.to_string(), dir.path()).await;
    until(&mut alice, "the new welcome", |u| {
        matches!(server_event(u), Some((Event::Welcome { .. }, _, _)))
    })
    .await;
    // Back in #rust, without the history lines she saw before.
    let back = until(&mut alice, "the rejoin", |u| {
        matches!(server_event(u), Some((Event::Joined { room, .. }, true, _)) if room.as_str() == "rust")
    })
    .await;
    let Some((Event::Joined { history, .. }, ..)) = server_event(&back) else {
        unreachable!()
    };
    assert!(
        history.is_empty(),
        "history already shown is not repeated: {history:?}"
    );
    until(&mut alice, "leaving the default room", |u| {
        matches!(server_event(u), Some((Event::Left { room }, _, _)) if room.as_str() == "general")
    })
    .await;

    let mut bob = logged_in(&second.url(), "bob").await;
    bob.type_line("/join rust").await.unwrap();
    let joined = until(&mut bob, "bob's joined", |u| {
        matches!(server_event(u), Some((Event::Joined { .. }, true, _)))
    })
    .await;
    let Some((Event::Joined { history, .. }, ..)) = server_event(&joined) else {
        unreachable!()
    };
    assert_eq!(
        history.last().map(|m| m.text.as_str()),
        Some("said before the restart"),
        "the store kept it"
    );
    bob.type_line("welcome back").await.unwrap();
    let heard = until(&mut alice, "bob's message", |u| is_text(u, "welcome back")).await;
    assert!(matches!(
        server_event(&heard),
        Some((_, false, SendKind::Push))
    ));
    second.stop().await;
}

#[tokio::test]
async fn a_server_that_is_not_there_is_retried_and_a_wrong_path_is_not() {
    // A port nobody listens on: bind one, then close it.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut nobody = ClientSession::start(config(&format!("ws://{addr}/chat"), "alice"));
    let first = until(&mut nobody, "the first attempt", |u| {
        matches!(u, Update::Connecting { .. })
    })
    .await;
    assert!(
        first
            .render()
            .unwrap()
            .starts_with("* connecting to ws://127.0.0.1:")
    );
    for attempt in 1..=3 {
        let retry = until(&mut nobody, "a retry", |u| {
            matches!(u, Update::Retrying { .. })
        })
        .await;
        let Update::Retrying {
            why: Some(why),
            attempt: n,
            ..
        } = &retry
        else {
            panic!("{retry:?}")
        };
        assert_eq!(*n, attempt);
        assert!(why.contains("connection refused"), "{why}");
    }
    drop(nobody);

    let server = TestServer::in_memory().await;
    let mut lost = ClientSession::start(config(&format!("ws://{}/nowhere", server.addr), "alice"));
    let ended = until(&mut lost, "the end", Update::is_final).await;
    let shown = ended.render().unwrap();
    assert!(shown.contains("HTTP 404"), "{shown}");
    server.stop().await;
}

fn welcome(update: &Update) -> Option<(&str, bool)> {
    match server_event(update) {
        Some((Event::Welcome { name, account, .. }, _, _)) => Some((name.as_str(), *account)),
        _ => None,
    }
}

/// The authenticator of the accounts tests: `pw:NAME` and `token:NAME`, registering anyone.
fn accounts() -> Arc<Tokens> {
    Arc::new(Tokens {
        registers: true,
        ..Tokens::default()
    })
}

#[tokio::test]
async fn a_password_or_a_token_logs_in_and_again_after_a_reconnection() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = accounts();
    let first = TestServer::with_accounts("127.0.0.1:0", dir.path(), tokens.clone()).await;
    let (addr, url) = (first.addr, first.url());

    let mut alice =
        ClientSession::start(config(&url, "alice").with_password(Secret::new("pw:alice")));
    let welcomed = until(&mut alice, "alice's welcome", |u| welcome(u).is_some()).await;
    assert_eq!(
        welcome(&welcomed),
        Some(("alice", true)),
        "an account's login"
    );
    let mut erin = ClientSession::start(config(&url, "").with_token(Secret::new("token:erin")));
    let welcomed = until(&mut erin, "erin's welcome", |u| welcome(u).is_some()).await;
    assert_eq!(
        welcome(&welcomed),
        Some(("erin", true)),
        "the token names her"
    );
    assert_eq!(tokens.calls(), 2, "both logins were checked");

    // Without the password, or with a wrong one, the account's name is refused: the session
    // ends, so that the program can ask for the password.
    let mut bare = ClientSession::start(config(&url, "ALICE"));
    let refused = until(&mut bare, "a refusal", Update::is_final).await;
    assert!(
        matches!(
            refused,
            Update::Refused {
                code: ErrorCode::AuthRequired,
                ..
            }
        ),
        "{refused:?}"
    );
    let mut wrong =
        ClientSession::start(config(&url, "alice").with_password(Secret::new("pw:mallory")));
    let refused = until(&mut wrong, "a refusal", Update::is_final).await;
    let Update::Refused {
        code: ErrorCode::AuthFailed,
        ..
    } = &refused
    else {
        panic!("{refused:?}")
    };
    assert!(refused.render().unwrap().starts_with("! login refused: "));

    // The server restarts: both log in again with what they were started with.
    first.stop().await;
    for session in [&mut alice, &mut erin] {
        until(session, "the loss", |u| matches!(u, Update::Lost { .. })).await;
    }
    let calls = tokens.calls();
    let second = TestServer::with_accounts(&addr.to_string(), dir.path(), tokens.clone()).await;
    for (session, name) in [(&mut alice, "alice"), (&mut erin, "erin")] {
        until(
            session,
            "the reconnection notice",
            |u| matches!(u, Update::Notice(Notice::Info(text)) if text.starts_with("reconnected")),
        )
        .await;
        let back = until(session, "the new welcome", |u| welcome(u).is_some()).await;
        assert_eq!(welcome(&back), Some((name, true)));
    }
    assert_eq!(
        tokens.calls(),
        calls + 2,
        "each login sent its credentials again"
    );
    second.stop().await;
}

#[tokio::test]
async fn a_guest_who_registers_logs_in_with_that_password_after_a_reconnection() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = accounts();
    let first = TestServer::with_accounts("127.0.0.1:0", dir.path(), tokens.clone()).await;
    let (addr, url) = (first.addr, first.url());
    let mut carol = logged_in(&url, "carol").await;
    let mut david = logged_in(&url, "david").await;
    assert_eq!(tokens.calls(), 0, "guest logins are not checked");

    // Inline, as typed (the client discourages it: it shows the password).
    carol.type_line("/register pw:carol").await.unwrap();
    let registered = until(&mut carol, "registered", |u| {
        matches!(server_event(u), Some((Event::Registered { .. }, _, _)))
    })
    .await;
    let Some((event, true, kind)) = server_event(&registered) else {
        panic!("{registered:?}")
    };
    assert_eq!(
        render(event, true, kind).as_deref(),
        Some("* carol is now registered\n")
    );
    // Handed over by the program, which asked for it without echo; a refused password first.
    let typist = david.typist();
    typist.register(Secret::new("short")).await.unwrap();
    until(&mut david, "the refusal of a short password", |u| {
        matches!(
            server_event(u),
            Some((
                Event::Error {
                    code: ErrorCode::InvalidPassword,
                    ..
                },
                true,
                _
            ))
        )
    })
    .await;
    typist.register(Secret::new("pw:david")).await.unwrap();
    until(&mut david, "registered", |u| {
        matches!(server_event(u), Some((Event::Registered { .. }, _, _)))
    })
    .await;

    first.stop().await;
    for session in [&mut carol, &mut david] {
        until(session, "the loss", |u| matches!(u, Update::Lost { .. })).await;
    }
    // Both names are accounts now: a login without the password would be refused.
    let second = TestServer::with_accounts(&addr.to_string(), dir.path(), tokens.clone()).await;
    for (session, name) in [(&mut carol, "carol"), (&mut david, "david")] {
        let back = until(session, "the new welcome", |u| welcome(u).is_some()).await;
        assert_eq!(welcome(&back), Some((name, true)));
    }
    assert_eq!(tokens.calls(), 2, "both logged in with their new password");
    let mut bare = ClientSession::start(config(&url, "carol"));
    let refused = until(&mut bare, "a refusal", Update::is_final).await;
    assert!(
        matches!(
            refused,
            Update::Refused {
                code: ErrorCode::AuthRequired,
                ..
            }
        ),
        "{refused:?}"
    );
    second.stop().await;
}

/// A loopback TCP relay in front of a server. A test cuts the connections through it as a
/// network failure would (no close frame: both sockets are just gone), and keeps new ones out
/// until it opens again, so that a session misses what is said meanwhile.
struct Relay {
    addr: SocketAddr,
    links: Arc<Mutex<Links>>,
    accepting: JoinHandle<()>,
}

struct Links {
    /// Whether new connections get through (refused ones are closed at once).
    open: bool,
    /// The connections through the relay, one task each.
    relaying: Vec<JoinHandle<()>>,
}

impl Relay {
    async fn to(server: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Links {
            open: true,
            relaying: Vec::new(),
        }));
        let shared = links.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut links = shared.lock().unwrap();
                if !links.open {
                    continue;
                }
                links.relaying.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(server).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            links,
            accepting,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/chat", self.addr)
    }

    /// Drops every connection through the relay, and refuses new ones until [`open`](Self::open).
    fn cut(&self) {
        let mut links = self.links.lock().unwrap();
        links.open = false;
        for link in links.relaying.drain(..) {
            link.abort();
        }
    }

    fn open(&self) {
        self.links.lock().unwrap().open = true;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

/// What a session showed of the conversation, in order: the texts of room messages (those of
/// `joined` frames included) and of DMs.
#[derive(Debug, Default)]
struct Transcript {
    said: Vec<String>,
    dms: Vec<String>,
    /// The history of each `joined` after the first login, by its size.
    resumed: Vec<usize>,
}

impl Transcript {
    /// Notes what `update` shows; returns whether it is the connection's loss.
    fn take(&mut self, update: &Update) -> bool {
        match server_event(update) {
            Some((Event::Joined { history, .. }, ..)) => {
                self.resumed.push(history.len());
                let texts = history.iter().map(|m| m.text.as_str().to_owned());
                self.said.extend(texts);
            }
            Some((Event::Message(message), ..)) => self.said.push(message.text.to_string()),
            Some((Event::Dm { message, .. }, ..)) => self.dms.push(message.text.to_string()),
            Some((Event::History { .. }, ..)) => panic!("the catch-up's pages are not shown"),
            _ => {}
        }
        matches!(update, Update::Lost { .. })
    }

    fn has_said(&self, text: &str) -> bool {
        self.said.iter().any(|said| said == text)
    }

    /// Has `sender` say a last line, "the end", and notes what `listener` shows up to it:
    /// anything shown twice would have come before it.
    async fn until_the_end(&mut self, sender: &ClientSession, listener: &mut ClientSession) {
        sender.type_line("the end").await.unwrap();
        until(listener, "the end", |u| {
            self.take(u);
            self.has_said("the end")
        })
        .await;
    }
}

/// `prefix1` to `prefixN`.
fn numbered(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// Types each of `lines` in turn.
async fn type_all(session: &ClientSession, lines: &[String]) {
    for line in lines {
        session.type_line(line).await.unwrap();
    }
}

#[tokio::test]
async fn a_session_cut_off_while_messages_flow_shows_every_message_and_dm_once_in_order() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let server = TestServer::start_with("127.0.0.1:0", store, accounts()).await;
    let relay = Relay::to(server.addr).await;
    // An account, so that DMs sent while it is away wait for it or are replayed.
    let alice_config = config(&relay.url(), "alice").with_password(Secret::new("pw:alice"));
    let mut alice = ClientSession::start(alice_config);
    let mut heard = Transcript::default();
    until(&mut alice, "alice's login", |u| {
        heard.take(u);
        matches!(server_event(u), Some((Event::Joined { .. }, false, _)))
    })
    .await;
    heard.resumed.clear();
    let mut bob = logged_in(&server.url(), "bob").await;

    // Bob talks, with a DM to alice now and then; her connection is cut in the middle of it,
    // and he goes on while she cannot get back.
    let talk = |range: std::ops::RangeInclusive<u32>| {
        let mut lines = Vec::new();
        for i in range {
            lines.push(format!("m{i}"));
            if i % 8 == 0 {
                lines.push(format!("/dm alice d{i}"));
            }
        }
        lines
    };
    let typist = bob.typist();
    let flowing = talk(1..=20);
    let typing = tokio::spawn(async move {
        for line in flowing {
            typist.line(&line).await.unwrap();
        }
    });
    until(&mut alice, "m10", |u| {
        heard.take(u);
        heard.has_said("m10")
    })
    .await;
    relay.cut();
    until(&mut alice, "the loss", |u| heard.take(u)).await;
    typing.await.unwrap();
    type_all(&bob, &talk(21..=40)).await;
    until(&mut bob, "his last DM's echo", |u| {
        matches!(server_event(u), Some((Event::Dm { message, .. }, true, _)) if message.text.as_str() == "d40")
    })
    .await;

    // She comes back by herself while bob goes on.
    relay.open();
    let mut more = numbered("m", 41..=50);
    more.push("/dm alice d50".into());
    type_all(&bob, &more).await;
    until(&mut alice, "everything", |u| {
        heard.take(u);
        heard.has_said("m50") && heard.dms.iter().any(|dm| dm == "d50")
    })
    .await;
    heard.until_the_end(&bob, &mut alice).await;

    let mut everything = numbered("m", 1..=50);
    everything.push("the end".into());
    assert_eq!(heard.said, everything, "every message once, in order");
    let dms: Vec<String> = [8, 16, 24, 32, 40, 50].map(|i| format!("d{i}")).into();
    assert_eq!(heard.dms, dms, "every DM once, in order");
    assert!(
        heard.resumed.iter().any(|&n| n > 5),
        "the rejoin carried what was missed, not just the last few: {:?}",
        heard.resumed
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_that_missed_more_than_the_resume_limit_pages_back_for_the_rest() {
    let chat = Config {
        resume_limit: 10,
        ..Config::default()
    };
    let server = TestServer::configured("127.0.0.1:0", chat, Arc::new(MemoryStore::new())).await;
    let relay = Relay::to(server.addr).await;
    // A guest in #rust: after the reconnection it is welcomed into #general, and goes back to
    // #rust with the login's since.
    let mut alice = logged_in(&relay.url(), "alice").await;
    alice.type_line("/join rust").await.unwrap();
    until(&mut alice, "alice's joined", |u| {
        matches!(server_event(u), Some((Event::Joined { .. }, true, _)))
    })
    .await;
    let mut bob = logged_in(&server.url(), "bob").await;
    bob.type_line("/join rust").await.unwrap();
    let mut heard = Transcript::default();
    type_all(&bob, &numbered("m", 1..=5)).await;
    until(&mut alice, "m5", |u| {
        heard.take(u);
        heard.has_said("m5")
    })
    .await;

    relay.cut();
    until(&mut alice, "the loss", |u| heard.take(u)).await;
    type_all(&bob, &numbered("m", 6..=40)).await;
    until(&mut bob, "his echo of m40", |u| is_text(u, "m40")).await;
    relay.open();
    type_all(&bob, &numbered("m", 41..=45)).await;
    until(&mut alice, "m45", |u| {
        heard.take(u);
        heard.has_said("m45")
    })
    .await;
    heard.until_the_end(&bob, &mut alice).await;

    let mut everything = numbered("m", 1..=45);
    everything.push("the end".into());
    assert_eq!(heard.said, everything, "every message once, in order");
    let back = heard.resumed.iter().max().copied().unwrap_or(0);
    assert!(
        back > 10,
        "more than the resume limit came back, in one joined: {:?}",
        heard.resumed
    );
    server.stop().await;
}
