//! The bundled server started in-process on port 0: it says which addresses it bound, real
//! clients on both listeners chat through it (with accounts on), and it stops gracefully.

use std::time::Duration;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::Event;
use chat_engine::server::{Server, ServerConfig, StoreChoice};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(10);

async fn event(client: &mut WsClient) -> Event {
    loop {
        let incoming = tokio::time::timeout(PATIENCE, client.recv())
            .await
            .unwrap()
            .unwrap();
        if let Incoming::Event { event, .. } = incoming {
            return event;
        }
    }
}

#[tokio::test]
async fn a_server_started_on_port_0_says_where_and_serves_both_transports() {
    let config = ServerConfig {
        ws: Some("127.0.0.1:0".into()),
        tcp: Some("127.0.0.1:0".into()),
        store: StoreChoice::Memory,
        ..ServerConfig::default()
    };
    let server = Server::start(config).await.unwrap();
    let ws = server.ws_addr().expect("the WebSocket listener is on");
    let tcp = server.tcp_addr().expect("the line listener is on");
    assert_ne!(ws.port(), 0);
    assert_ne!(tcp.port(), 0);

    // Alice registers over WebSocket; a line client then needs her password.
    let mut alice = WsClient::connect(&format!("ws://{ws}/chat")).await.unwrap();
    alice
        .send_text(&json!({"type": "login", "name": "alice"}).to_string())
        .await
        .unwrap();
    assert!(matches!(
        event(&mut alice).await,
        Event::Welcome { account: false, .. }
    ));
    let register = json!({"type": "register", "password": "correct horse"});
    alice.send_text(&register.to_string()).await.unwrap();
    while !matches!(event(&mut alice).await, Event::Registered { .. }) {}
    alice.close().await.unwrap();

    let stream = TcpStream::connect(tcp).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut line = async || {
        let next = tokio::time::timeout(PATIENCE, lines.next_line()).await;
        next.unwrap().unwrap().expect("a line")
    };
    assert_eq!(line().await, "Enter your name:");
    write.write_all(b"alice\ncorrect horse\n").await.unwrap();
    assert_eq!(line().await, "Password:");
    assert!(line().await.starts_with("* Welcome, alice!"));

    let stop = async {};
    server.run_until(stop).await.unwrap();
    assert_eq!(line().await, "* server shutting down; bye");
}
