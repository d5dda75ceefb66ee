//! A real server on a loopback port and real WebSocket clients, for the integration tests.

#![allow(dead_code, unreachable_pub)]

// The runtime's test authenticator: the password `pw:NAME` and the token `token:NAME` prove NAME.
#[path = "../../../chat-runtime/tests/tokens/mod.rs"]
pub mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_client::{Incoming, WsClient};
use chat_core::{Command, Config, ErrorCode, Event, Ref};
use chat_runtime::{Handle, Runtime, RuntimeConfig};
use chat_store::{MemoryStore, Store};
use chat_transport_ws::{WsConfig, serve};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something it expects before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Server {
    pub url: String,
    pub addr: std::net::SocketAddr,
    runtime: Runtime,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// A server with the protocol's defaults and an in-memory store.
    pub async fn start() -> Server {
        Self::with(
            Config::default(),
            RuntimeConfig::default(),
            WsConfig::default(),
        )
        .await
    }

    pub async fn with(chat: Config, limits: RuntimeConfig, ws: WsConfig) -> Server {
        Self::with_store(Arc::new(MemoryStore::new()), chat, limits, ws).await
    }

    /// A server whose app vouches for every name (every login is an account's, so DMs to any
    /// offline name are kept), as an app that knows its users does.
    pub async fn vouching(store: Arc<dyn Store>, chat: Config, limits: RuntimeConfig) -> Server {
        let (chat, tokens) = tokens::vouching(chat);
        Self::with_auth(store, chat, limits, WsConfig::default(), Arc::new(tokens)).await
    }

    pub async fn with_store(
        store: Arc<dyn Store>,
        chat: Config,
        limits: RuntimeConfig,
        ws: WsConfig,
    ) -> Server {
        let tokens = Arc::new(tokens::Tokens {
            registers: true,
            ..tokens::Tokens::default()
        });
        Self::with_auth(store, chat, limits, ws, tokens).await
    }

    pub async fn with_auth(
        store: Arc<dyn Store>,
        chat: Config,
        limits: RuntimeConfig,
        ws: WsConfig,
        authenticator: Arc<dyn chat_runtime::Authenticator>,
    ) -> Server {
        let runtime = Runtime::start_with(chat, store, limits, authenticator)
            .await
            .expect("the runtime starts");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(serve(listener, runtime.handle(), ws));
        Server {
            url: format!("ws://{addr}/chat"),
            addr,
            runtime,
            serving,
        }
    }

    pub fn handle(&self) -> Handle {
        self.runtime.handle()
    }

    pub async fn client(&self) -> Client {
        Client {
            ws: WsClient::connect(&self.url)
                .await
                .expect("the client connects"),
        }
    }

    /// A client logged in as `name`, its welcome and joined frames consumed.
    pub async fn login(&self, name: &str) -> Client {
        let mut client = self.client().await;
        client.send(Command::login(name)).await;
        assert!(matches!(client.event().await, Event::Welcome { .. }));
        assert!(matches!(client.event().await, Event::Joined { .. }));
        client
    }

    /// A connected [`Raw`] client (not logged in).
    pub async fn raw(&self) -> Raw {
        Raw::connect(&self.url).await
    }

    /// A [`Raw`] client logged in as `name` on a server with a default room, its welcome and
    /// joined frames consumed.
    pub async fn raw_login(&self, name: &str) -> Raw {
        let mut raw = self.raw().await;
        raw.login(name).await;
        raw
    }

    /// Graceful shutdown, as SIGTERM does it.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await.expect("a clean shutdown");
        self.serving.await.unwrap().unwrap();
    }
}

pub struct Client {
    pub ws: WsClient,
}

impl Client {
    pub async fn send(&mut self, command: Command) {
        self.ws
            .send(&command, None)
            .await
            .expect("the frame is sent");
    }

    pub async fn send_ref(&mut self, command: Command, reference: Ref) {
        self.ws
            .send(&command, Some(&reference))
            .await
            .expect("the frame is sent");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send_text(text).await.expect("the frame is sent");
    }

    /// The next thing the server sends.
    pub async fn next(&mut self) -> Incoming {
        tokio::time::timeout(PATIENCE, self.ws.recv())
            .await
            .expect("the server answered in time")
            .expect("the connection works")
    }

    /// The next event and its ref; panics on a close.
    pub async fn event_with_ref(&mut self) -> (Event, Option<Ref>) {
        match self.next().await {
            Incoming::Event { event, reference } => (event, reference),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    pub async fn event(&mut self) -> Event {
        self.event_with_ref().await.0
    }

    /// Skips events until one of `kind` arrives.
    pub async fn until(&mut self, kind: &str) -> Event {
        loop {
            let event = self.event().await;
            if event.kind() == kind {
                return event;
            }
        }
    }

    /// The code of the next event, which must be an error.
    pub async fn error_code(&mut self) -> ErrorCode {
        match self.event().await {
            Event::Error { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Incoming::Closed { code, .. } => return code,
                Incoming::Event { .. } | Incoming::Unknown(_) => {}
            }
        }
    }

    /// Round trip: once the pong is here, every earlier frame of this client was handled.
    pub async fn sync(&mut self) {
        self.send_ref(Command::Ping, Ref::text("sync").unwrap())
            .await;
        loop {
            if let (Event::Pong, Some(r)) = self.event_with_ref().await {
                if r == Ref::text("sync").unwrap() {
                    return;
                }
            }
        }
    }
}

pub fn say(room: &str, text: &str) -> Command {
    Command::Say {
        room: room.into(),
        text: text.into(),
    }
}

pub fn dm(to: &str, text: &str) -> Command {
    Command::Dm {
        to: to.into(),
        text: text.into(),
    }
}

/// The WebSocket stream a [`Raw`] client speaks over.
pub type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a [`Raw`] client received.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A text frame, parsed as JSON (whole: `ref` and any unknown field included).
    Json(Value),
    /// The connection ended: the close code, or `None` when it ended without a close frame.
    Closed(Option<u16>),
}

/// A client that shows the server's frames exactly as they were sent, as JSON values, so tests
/// can compare whole frames (every field, `ref` included) with the protocol's.
pub struct Raw {
    pub ws: RawWs,
}

/// Makes refs that no other frame of the test uses.
static NEXT_PROBE: AtomicU64 = AtomicU64::new(1);

impl Raw {
    pub async fn connect(url: &str) -> Raw {
        let connecting = tokio_tungstenite::connect_async(url);
        let (ws, _) = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("the handshake finished in time")
            .expect("the client connects");
        Raw { ws }
    }

    /// Connects with a receive buffer of about `bytes` on the client's socket, so that the kernel
    /// holds little for a client that stops reading (a stalled client fills up sooner).
    pub async fn connect_with_receive_buffer(
        url: &str,
        addr: std::net::SocketAddr,
        bytes: u32,
    ) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .set_recv_buffer_size(bytes)
            .expect("a receive buffer size");
        let stream = socket.connect(addr).await.expect("the client connects");
        let connecting = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream));
        let (ws, _) = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("the handshake finished in time")
            .expect("the handshake succeeds");
        Raw { ws }
    }

    /// Sends `{"type":"login","name":name}` and checks the welcome and the default room's joined.
    pub async fn login(&mut self, name: &str) {
        self.send_json(json!({"type": "login", "name": name})).await;
        let welcome = self.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["name"], name, "{welcome}");
        let joined = self.json().await;
        assert_eq!(joined["type"], "joined", "{joined}");
    }

    pub async fn send_json(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    pub async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(PATIENCE, self.ws.send(message))
            .await
            .expect("the frame was sent in time")
            .expect("the frame is sent");
    }

    /// The next text frame or the end of the connection (pings are answered and skipped).
    pub async fn recv(&mut self) -> Frame {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the server answered in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("the server sent invalid JSON ({e}): {text}"));
                    return Frame::Json(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Frame::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("the server sent a binary frame of {} bytes", bytes.len())
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Frame::Closed(None);
                }
                Some(Err(error)) => {
                    eprintln!("the connection ended without a close frame: {error}");
                    return Frame::Closed(None);
                }
            }
        }
    }

    /// The next server frame, as JSON; panics if the connection ends instead.
    pub async fn json(&mut self) -> Value {
        match self.recv().await {
            Frame::Json(value) => value,
            Frame::Closed(code) => panic!("expected a frame, the connection closed ({code:?})"),
        }
    }

    /// Skips frames until one whose `type` is `kind` arrives (at most 10,000 frames).
    pub async fn until(&mut self, kind: &str) -> Value {
        for _ in 0..10_000 {
            let frame = self.json().await;
            if frame["type"] == kind {
                return frame;
            }
        }
        panic!("no {kind} frame in 10,000 frames");
    }

    /// Waits for the server to close the connection (skipping frames, at most 100,000 of them);
    /// returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        for _ in 0..100_000 {
            if let Frame::Closed(code) = self.recv().await {
                return code;
            }
        }
        panic!("the connection did not close within 100,000 frames");
    }

    /// Round trip: once the pong is here, every earlier frame of this client was handled and
    /// everything the server queued for it before has been received (and skipped).
    pub async fn sync(&mut self) {
        let probe = NEXT_PROBE.fetch_add(1, Ordering::Relaxed);
        let reference = format!("sync-{probe}");
        self.send_json(json!({"type": "ping", "ref": reference}))
            .await;
        for _ in 0..100_000 {
            let frame = self.json().await;
            if frame == json!({"type": "pong", "ref": reference}) {
                return;
            }
        }
        panic!("no pong within 100,000 frames");
    }

    /// Asserts that the server has nothing queued for this client: a ping's pong is the very
    /// next frame. (The server handles frames in order, so anything caused by an earlier
    /// command of any client that this one saw the effect of would come first.)
    pub async fn quiet(&mut self) {
        let probe = NEXT_PROBE.fetch_add(1, Ordering::Relaxed);
        let reference = format!("quiet-{probe}");
        self.send_json(json!({"type": "ping", "ref": reference}))
            .await;
        let frame = self.json().await;
        assert_eq!(
            frame,
            json!({"type": "pong", "ref": reference}),
            "expected nothing before the pong"
        );
    }

    /// Sends `frame` and returns the next frame, which must be an error: checks its shape
    /// (`type`, `code`, a non-empty `message`, and `ref` only if `reference` is given) and
    /// returns its code.
    pub async fn error_for(&mut self, frame: Value, reference: Option<Value>) -> String {
        let sent = frame.to_string();
        self.send_json(frame).await;
        let reply = self.json().await;
        check_error(&reply, reference.as_ref(), &sent)
    }
}

/// Checks that `reply` is an error frame with exactly the protocol's fields, carrying
/// `reference` (or no `ref`), and returns its code.
pub fn check_error(reply: &Value, reference: Option<&Value>, context: &str) -> String {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {reply}"));
    assert_eq!(reply["type"], "error", "for {context}: {reply}");
    let code = reply["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {reply}"))
        .to_owned();
    let message = reply["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {reply}"));
    assert!(
        !message.trim().is_empty(),
        "an error's message is a sentence: {reply}"
    );
    assert_eq!(
        object.get("ref"),
        reference,
        "the ref of the error for {context}: {reply}"
    );
    let expected_len = 3 + usize::from(reference.is_some());
    assert_eq!(
        object.len(),
        expected_len,
        "an error has type, code, message (and ref): {reply}"
    );
    code
}

/// Checks that `ts` is RFC 3339, UTC, with milliseconds: `2026-11-22T01:02:03.456Z`.
pub fn check_ts(ts: &Value) {
    let text = ts
        .as_str()
        .unwrap_or_else(|| panic!("ts is a string: {ts}"));
    let shape = text.len() == 24
        && text.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "ts is RFC 3339 UTC with milliseconds: {text}");
    chat_core::Timestamp::parse(text).unwrap_or_else(|e| panic!("ts {text} is a real time: {e}"));
}

/// The MESSAGE frame the protocol defines, from its parts.
pub fn message_frame(room: &str, id: u64, from: &str, text: &str, ts: &Value) -> Value {
    json!({"type": "message", "room": room, "id": id, "from": from, "text": text, "ts": ts})
}

/// The DM frame the protocol defines, from its parts.
pub fn dm_frame(id: u64, from: &str, to: &str, text: &str, ts: &Value) -> Value {
    json!({"type": "dm", "id": id, "from": from, "to": to, "text": text, "ts": ts})
}

/// A frame without its `ref` (to compare a sender's copy with what the others got).
pub fn without_ref(frame: &Value) -> Value {
    let mut frame = frame.clone();
    if let Some(object) = frame.as_object_mut() {
        object.remove("ref");
    }
    frame
}
