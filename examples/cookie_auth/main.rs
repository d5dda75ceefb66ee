//! The chat in an app that already knows its users: WebSocket clients are logged in as the
//! user of the app's own session cookie (`sessions.rs`), and nobody chats without one.
//!
//! ```sh
//! cargo run --example cookie_auth
//! # In a browser: http://127.0.0.1:3000/login?name=alice sets the app's cookie and opens the
//! # chat page; whatever name the page then logs in with, the chat knows you as alice.
//! curl -i 'http://127.0.0.1:3000/login?name=alice'   # shows the Set-Cookie
//! ```
//!
//! The chat is told to ask the app about every login (`authenticate_guests`) and to admit no
//! guests, so the cookie is the only way in; the app's users are accounts, so DMs to them wait
//! while they are away.

mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use chat_engine::core::{Config, UserName};
use chat_engine::runtime::{Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::WsConfig;
use sessions::{COOKIE, CookieAuth, Sessions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = Arc::new(Sessions::default());
    let chat = Config {
        guests: false,
        authenticate_guests: true,
        ..Config::default()
    };
    let auth = Arc::new(CookieAuth {
        sessions: sessions.clone(),
    });
    let store = Arc::new(MemoryStore::new());
    let runtime = Runtime::start_with(chat, store, RuntimeConfig::default(), auth).await?;

    let app = Router::new()
        .route("/login", get(login).with_state(sessions))
        .merge(chat_engine::ws::axum::router(
            runtime.handle(),
            WsConfig::default(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("listening http://127.0.0.1:3000/ (log in at /login?name=NAME)");
    let handle = runtime.handle();
    // With the client's address, which the chat's login throttle counts failures by.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown().await?;
    handle.wait_idle(Duration::from_secs(5)).await;
    Ok(())
}

/// `GET /login?name=NAME`: the app's own login (here: no password at all, it is a demo), which
/// sets the session cookie and sends the browser to the chat page.
async fn login(State(sessions): State<Arc<Sessions>>, request: Request) -> Response {
    let name = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("name="));
    let Some(user) = name.and_then(|name| UserName::parse(name).ok()) else {
        return (StatusCode::BAD_REQUEST, "usage: /login?name=NAME\n").into_response();
    };
    let token = sessions.issue(user);
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}
