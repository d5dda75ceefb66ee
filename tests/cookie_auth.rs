//! The cookie example's authenticator against real WebSocket clients: the handshake's cookie,
//! through both the bundled listener and axum, decides who a client is.

#[path = "../examples/cookie_auth/sessions.rs"]
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_engine::core::{Config, UserName};
use chat_engine::runtime::{Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::WsConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sessions::{COOKIE, CookieAuth, Sessions};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PATIENCE: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn runtime(sessions: Arc<Sessions>) -> Runtime {
    let chat = Config {
        guests: false,
        authenticate_guests: true,
        ..Config::default()
    };
    let auth = Arc::new(CookieAuth { sessions });
    Runtime::start_with(
        chat,
        Arc::new(MemoryStore::new()),
        RuntimeConfig::default(),
        auth,
    )
    .await
    .unwrap()
}

async fn connect(addr: SocketAddr, cookie: Option<&str>) -> Ws {
    let mut request = format!("ws://{addr}/chat").into_client_request().unwrap();
    if let Some(cookie) = cookie {
        let value = HeaderValue::from_str(&format!("theme=dark; {COOKIE}={cookie}")).unwrap();
        request.headers_mut().insert("cookie", value);
    }
    let connecting = tokio_tungstenite::connect_async(request);
    tokio::time::timeout(PATIENCE, connecting)
        .await
        .unwrap()
        .unwrap()
        .0
}

async fn first_answer(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(text))) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn check(addr: SocketAddr, sessions: &Sessions) {
    let token = sessions.issue(UserName::parse("Alice").unwrap());
    let mut alice = connect(addr, Some(&token)).await;
    let welcome = first_answer(&mut alice, json!({"type": "login", "name": "mallory"})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        welcome["name"], "Alice",
        "the cookie decides, not the name asked for"
    );
    assert_eq!(welcome["account"], true);

    let mut stranger = connect(addr, None).await;
    let refused = first_answer(&mut stranger, json!({"type": "login", "name": "alice"})).await;
    assert_eq!(refused["code"], "auth_required", "{refused}");
    let mut forger = connect(addr, Some("0123456789abcdef")).await;
    let refused = first_answer(&mut forger, json!({"type": "login", "name": "alice"})).await;
    assert_eq!(refused["code"], "auth_required", "{refused}");
}

#[tokio::test]
async fn the_bundled_listener_hands_the_cookie_to_the_authenticator() {
    let sessions = Arc::new(Sessions::default());
    let runtime = runtime(sessions.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chat_engine::ws::serve(
        listener,
        runtime.handle(),
        WsConfig::default(),
    ));
    check(addr, &sessions).await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_axum_app_hands_the_cookie_to_the_authenticator() {
    let sessions = Arc::new(Sessions::default());
    let runtime = runtime(sessions.clone()).await;
    let app = chat_engine::ws::axum::router(runtime.handle(), WsConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    check(addr, &sessions).await;
    runtime.shutdown().await.unwrap();
}
