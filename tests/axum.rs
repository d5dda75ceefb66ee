//! The chat mounted in an axum app: real WebSocket clients against an axum server on port 0,
//! with the app's own routes beside the chat, and the engine's limits, pings and close codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use chat_engine::core::Config;
use chat_engine::runtime::{Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::WsConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An axum app with a route of its own and the chat, served on a free loopback port.
async fn app(limits: RuntimeConfig, ws: WsConfig) -> (SocketAddr, Runtime) {
    let runtime = Runtime::start(Config::default(), Arc::new(MemoryStore::new()), limits)
        .await
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(chat_engine::ws::axum::router(runtime.handle(), ws));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, runtime)
}

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("ws://{addr}/chat")),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame of type `kind`, skipping others.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let next = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == kind {
                    return frame;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("waiting for {kind}: {other:?}"),
        }
    }
}

/// The close code the server ends the connection with.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            _ => return None,
        }
    }
}

async fn login(addr: SocketAddr, name: &str) -> Ws {
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type": "login", "name": name})).await;
    until(&mut ws, "joined").await;
    ws
}

#[tokio::test]
async fn clients_chat_through_an_axum_app_beside_its_own_routes() {
    let (addr, runtime) = app(RuntimeConfig::default(), WsConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let mut alice = login(addr, "alice").await;
    let mut bob = login(addr, "bob").await;
    assert_eq!(until(&mut alice, "presence").await["user"], "bob");
    send(
        &mut alice,
        json!({"type": "say", "room": "general", "text": "hi from axum", "ref": 1}),
    )
    .await;
    let mine = until(&mut alice, "message").await;
    assert_eq!(mine["ref"], 1);
    let theirs = until(&mut bob, "message").await;
    assert_eq!(theirs["text"], "hi from axum");
    assert_eq!(theirs.get("ref"), None);

    // Shutting the runtime down closes the chat clients with 1001.
    runtime.shutdown().await.unwrap();
    assert_eq!(close_code(&mut alice).await, Some(1001));
}

#[tokio::test]
async fn the_engine_limits_hold_in_an_axum_app() {
    let limits = RuntimeConfig {
        max_connections: 1,
        ..RuntimeConfig::default()
    };
    let ws = WsConfig {
        max_frame: 1024,
        ping_interval: Duration::from_millis(200),
        ..WsConfig::default()
    };
    let (addr, _runtime) = app(limits, ws).await;
    let mut alice = login(addr, "alice").await;
    // The one connection slot is taken: the next upgrade is refused with 503.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/chat")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("a second client got in: {other:?}"),
    }
    // A quiet client is pinged.
    loop {
        match tokio::time::timeout(PATIENCE, alice.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => break,
            Some(Ok(_)) => {}
            other => panic!("no ping: {other:?}"),
        }
    }
    // A frame over the limit closes with 1009.
    let big = json!({"type": "ping", "pad": "x".repeat(2000)});
    send(&mut alice, big).await;
    assert_eq!(close_code(&mut alice).await, Some(1009));
}
