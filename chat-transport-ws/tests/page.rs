//! The browser client's page, served by the WebSocket listener's HTTP stack on plain GETs,
//! while upgrades on `/chat` keep working on the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_client::{Incoming, WsClient};
use chat_core::{Command, Config, Event};
use chat_runtime::{Runtime, RuntimeConfig};
use chat_store::MemoryStore;
use chat_transport_ws::{WsConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(10);

async fn server(ws: WsConfig) -> (SocketAddr, Runtime) {
    server_with(ws, RuntimeConfig::default()).await
}

async fn server_with(ws: WsConfig, limits: RuntimeConfig) -> (SocketAddr, Runtime) {
    let store = Arc::new(MemoryStore::new());
    let runtime = Runtime::start(Config::default(), store, limits)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, runtime.handle(), ws));
    (addr, runtime)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `parts` (the request, in pieces) and reads the answer until the server closes.
async fn ask(addr: SocketAddr, parts: &[&[u8]]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // Not synchronisation: it only makes it likely that the server sees a partial head.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stream.write_all(part).await.unwrap();
    }
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes in time")
        .expect("a clean close, not a reset");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A GET that asks the server to close the connection after its answer.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_on_the_websocket_port() {
    let (addr, _runtime) = server(WsConfig::default()).await;
    let index = ask(addr, &[&get("/")]).await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        index.header("content-length"),
        Some(index.body.len().to_string().as_str())
    );
    assert!(
        index
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("script-src 'self'")),
        "no inline script may run"
    );
    assert!(index.body.contains(r#"<form id="login-form""#));
    assert!(
        index
            .body
            .contains(r#"<meta name="chat-path" content="/chat">"#)
    );
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let file = ask(addr, &[&get(path)]).await;
        assert_eq!(file.status, 200, "{path}");
        assert!(file.header("content-type").unwrap().starts_with(kind));
        assert!(!file.body.is_empty());
    }
    let missing = ask(addr, &[&get("/nothing-here")]).await;
    assert_eq!(missing.status, 404);
    let head = ask(
        addr,
        &[b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "", "HEAD has no body");
    assert_eq!(
        head.header("content-length"),
        index.header("content-length")
    );
}

/// The tag of the element with `id` in `html`, from `<` to `>`.
fn tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element #{id}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

#[tokio::test]
async fn the_login_form_takes_a_password_and_the_page_keeps_none() {
    let (addr, _runtime) = server(WsConfig::default()).await;
    let index = ask(addr, &[&get("/")]).await.body;
    // Password fields are masked; the two login actions are there.
    for id in ["password", "register-password"] {
        let input = tag(&index, id);
        assert!(input.starts_with("<input"), "{input}");
        assert!(input.contains(r#"type="password""#), "{input}");
    }
    assert!(tag(&index, "login-button").contains(r#"type="submit""#));
    assert!(tag(&index, "register-button").contains(r#"type="button""#));
    assert!(tag(&index, "login-hint").contains("hidden"));
    // Still nothing inline for the CSP to refuse.
    assert!(!index.contains(" style="), "no inline style");
    assert!(!index.contains("<style"), "no style element");
    assert!(
        index.matches("<script").count() == 1 && index.contains(r#"<script src="app.js""#),
        "one script, from a file"
    );
    assert!(
        !index.contains(" onclick=") && !index.contains(" onsubmit="),
        "no inline handlers"
    );
    // The script stores only the name and a handed-over token, in the tab's sessionStorage.
    let script = ask(addr, &[&get("/app.js")]).await.body;
    assert!(!script.contains("localStorage."), "nothing in localStorage");
    assert!(!script.contains("document.cookie"), "no cookies");
    let stored: Vec<&str> = script
        .match_indices("sessionStorage.setItem(")
        .map(|(at, call)| script[at + call.len()..].split(',').next().unwrap())
        .collect();
    assert_eq!(stored, ["'chat-name'", "'chat-token'"], "{stored:?}");
}

#[tokio::test]
async fn a_head_in_pieces_is_still_a_page_and_upgrades_still_work() {
    let (addr, _runtime) = server(WsConfig::default()).await;
    let request = get("/app.js");
    let split = ask(addr, &[&request[..7], &request[7..20], &request[20..]]).await;
    assert_eq!(split.status, 200);

    let mut client = WsClient::connect(&format!("ws://{addr}/chat"))
        .await
        .unwrap();
    client.send(&Command::login("alice"), None).await.unwrap();
    let welcome = tokio::time::timeout(PATIENCE, client.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            welcome,
            Incoming::Event {
                event: Event::Welcome { .. },
                ..
            }
        ),
        "{welcome:?}"
    );
}

#[tokio::test]
async fn a_plain_get_on_the_chat_path_is_told_to_upgrade_and_a_huge_head_is_refused() {
    let (addr, _runtime) = server(WsConfig::default()).await;
    let plain = ask(addr, &[&get("/chat")]).await;
    assert_eq!(plain.status, 426, "Upgrade Required");
    assert_eq!(plain.header("upgrade"), Some("websocket"));
    // A head larger than the HTTP stack reads is refused, never served.
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while huge.len() <= 1 << 20 {
        huge.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    huge.extend_from_slice(b"\r\n");
    assert_not_a_page(addr, &huge).await;
}

#[tokio::test]
async fn a_page_request_takes_no_connection_slot() {
    let limits = RuntimeConfig {
        max_connections: 1,
        ..RuntimeConfig::default()
    };
    let (addr, _runtime) = server_with(WsConfig::default(), limits).await;
    // The one slot is taken by a chat client...
    let mut client = WsClient::connect(&format!("ws://{addr}/chat"))
        .await
        .unwrap();
    let login = Command::login("alice");
    client.send(&login, None).await.unwrap();
    tokio::time::timeout(PATIENCE, client.recv())
        .await
        .unwrap()
        .unwrap();
    // ...and the page is still served, while a second chat client is refused with 503.
    let index = ask(addr, &[&get("/")]).await;
    assert_eq!(index.status, 200);
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/chat")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("a second chat client got in: {other:?}"),
    }
}

/// The server does not answer `request` with a page (it refuses or closes), in time.
async fn assert_not_a_page(addr: SocketAddr, request: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers or closes in time");
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(100)])
    );
}

#[tokio::test]
async fn a_client_that_sends_no_request_is_closed_after_the_handshake_timeout() {
    let ws = WsConfig {
        handshake_timeout: Duration::from_millis(300),
        ..WsConfig::default()
    };
    let (addr, _runtime) = server(ws).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
    for stream in [&mut silent, &mut partial] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
