//! Several sessions of one account against the bundled server (in-process, port 0): two
//! WebSocket sessions and a line session see each other's joins, messages and DMs, presence is
//! per user, and the account's session limit holds.

use std::net::SocketAddr;
use std::time::Duration;

use chat_engine::server::{Server, ServerConfig, StoreChoice};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(max_sessions: usize) -> Server {
    let mut config = ServerConfig {
        ws: Some("127.0.0.1:0".into()),
        tcp: Some("127.0.0.1:0".into()),
        store: StoreChoice::Memory,
        ..ServerConfig::default()
    };
    config.chat.max_sessions = max_sessions;
    Server::start(config).await.unwrap()
}

async fn ws(server: &Server) -> Ws {
    let url = format!("ws://{}/chat", server.ws_addr().unwrap());
    let connecting = tokio_tungstenite::connect_async(url);
    tokio::time::timeout(PATIENCE, connecting)
        .await
        .unwrap()
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(text))) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next frame of type `kind`, skipping others.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// A WebSocket session of `name` (an account with [`PASSWORD`]), past its `joined` frames.
async fn session(server: &Server, name: &str) -> Ws {
    let mut client = ws(server).await;
    send(
        &mut client,
        json!({"type": "login", "name": name, "password": PASSWORD}),
    )
    .await;
    let welcome = next(&mut client).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    for _ in welcome["rooms"].as_array().unwrap() {
        assert_eq!(next(&mut client).await["type"], "joined");
    }
    client
}

/// Registers `name` with [`PASSWORD`] and stays logged in.
async fn register(server: &Server, name: &str) -> Ws {
    let mut client = ws(server).await;
    send(&mut client, json!({"type": "login", "name": name})).await;
    until(&mut client, "joined").await;
    send(
        &mut client,
        json!({"type": "register", "password": PASSWORD}),
    )
    .await;
    until(&mut client, "registered").await;
    client
}

struct Line {
    read: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Line {
    async fn connect(addr: SocketAddr) -> Line {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Line {
            read: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn until(&mut self, part: &str) -> String {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.read.next_line()).await;
            let line = next.unwrap().unwrap().expect("a line");
            if line.contains(part) {
                return line;
            }
        }
    }
}

#[tokio::test]
async fn the_sessions_of_one_account_share_rooms_messages_and_dms() {
    let server = start(10).await;
    let mut one = register(&server, "alice").await;
    let mut bob = register(&server, "bob").await;
    until(&mut one, "presence").await; // bob joined #general

    let mut two = session(&server, "alice").await;
    let mut line = Line::connect(server.tcp_addr().unwrap()).await;
    line.send("alice").await;
    line.until("Password:").await;
    line.send(PASSWORD).await;
    line.until("* Welcome, alice!").await;

    // A join in one session holds for all: one presence for bob, a copy for the others.
    send(&mut one, json!({"type": "join", "room": "rust", "ref": 1})).await;
    let joined = until(&mut one, "joined").await;
    assert_eq!(joined["ref"], 1);
    assert_eq!(joined["members"], json!(["alice"]));
    let copy = until(&mut two, "joined").await;
    assert_eq!(copy["room"], "rust");
    assert!(
        copy.get("ref").is_none(),
        "only the asking session's copy has the ref"
    );
    line.until("* You joined #rust").await;

    // A message from one session reaches the others like any member's.
    send(
        &mut two,
        json!({"type": "say", "room": "general", "text": "from two", "ref": 2}),
    )
    .await;
    let echo = until(&mut two, "message").await;
    assert_eq!(echo["ref"], 2);
    let seen = until(&mut one, "message").await;
    assert_eq!(
        (seen["text"].clone(), seen.get("ref")),
        (json!("from two"), None)
    );
    assert_eq!(until(&mut bob, "message").await["text"], "from two");
    line.until("#general <alice> from two").await;

    // A DM reaches every session of its recipient, and the sender's other sessions get a copy.
    send(
        &mut bob,
        json!({"type": "dm", "to": "alice", "text": "hi all of you"}),
    )
    .await;
    assert_eq!(until(&mut bob, "dm").await["from"], "bob", "bob's own copy");
    assert_eq!(until(&mut one, "dm").await["text"], "hi all of you");
    assert_eq!(until(&mut two, "dm").await["text"], "hi all of you");
    line.until("[dm] <bob> hi all of you").await;
    send(
        &mut one,
        json!({"type": "dm", "to": "bob", "text": "answered", "ref": 3}),
    )
    .await;
    assert_eq!(until(&mut one, "dm").await["ref"], 3);
    let copy = until(&mut two, "dm").await;
    assert_eq!(
        (copy["from"].clone(), copy.get("ref")),
        (json!("alice"), None)
    );
    line.until("[dm to bob] <alice> answered").await;
    assert_eq!(until(&mut bob, "dm").await["text"], "answered");

    // Presence is per user: one session leaving changes nothing, the last one leaves once.
    send(&mut bob, json!({"type": "who", "room": "general"})).await;
    assert_eq!(
        until(&mut bob, "who").await["members"],
        json!(["alice", "bob"])
    );
    one.close(None).await.unwrap();
    two.close(None).await.unwrap();
    send(
        &mut bob,
        json!({"type": "who", "room": "general", "ref": "w"}),
    )
    .await;
    let who = until(&mut bob, "who").await;
    assert_eq!(
        who["members"],
        json!(["alice", "bob"]),
        "the line session is still there"
    );
    line.send("/quit").await;
    let leave = until(&mut bob, "presence").await;
    assert_eq!(
        (leave["user"].clone(), leave["event"].clone()),
        (json!("alice"), json!("leave"))
    );
    send(&mut bob, json!({"type": "ping", "ref": "p"})).await;
    let pong = next(&mut bob).await;
    assert_eq!(
        pong["type"], "pong",
        "exactly one leave came before: {pong}"
    );
    server.run_until(async {}).await.unwrap();
}

#[tokio::test]
async fn an_account_has_at_most_max_sessions_and_a_guest_one() {
    let server = start(2).await;
    let _first = register(&server, "alice").await;
    let _second = session(&server, "alice").await;
    let mut third = ws(&server).await;
    let login = json!({"type": "login", "name": "alice", "password": PASSWORD});
    send(&mut third, login).await;
    assert_eq!(next(&mut third).await["code"], "too_many_sessions");

    let _guest = {
        let mut guest = ws(&server).await;
        send(&mut guest, json!({"type": "login", "name": "carol"})).await;
        until(&mut guest, "joined").await;
        guest
    };
    let mut again = ws(&server).await;
    send(&mut again, json!({"type": "login", "name": "carol"})).await;
    assert_eq!(next(&mut again).await["code"], "name_taken");
    server.run_until(async {}).await.unwrap();
}
