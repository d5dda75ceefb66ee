//! The chat inside an axum app: [`router`] mounts the WebSocket endpoint (and, if you want it,
//! the browser page) on a router of your own, on your own port, with the engine's limits,
//! pings and close codes intact.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chat_transport_ws::WsConfig;
//!
//! # async fn example(handle: chat_runtime::Handle) -> std::io::Result<()> {
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .merge(chat_transport_ws::axum::router(handle, WsConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The upgrade is answered by the same code as the bundled listener's (`handshake.rs`), so a
//! full server answers 503, and every connection is paced, pinged and closed the same way.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use chat_runtime::Handle;

use crate::server::WsConfig;

#[derive(Clone)]
struct Chat {
    handle: Handle,
    config: Arc<WsConfig>,
}

/// A router with the chat's WebSocket endpoint at [`WsConfig::path`] and the browser page at
/// `/` (its script and style beside it). Merge it into your app's router, or nest it under a
/// prefix (the page finds the endpoint by the configured path, so set `path` to the full path
/// when nesting).
pub fn router(handle: Handle, config: WsConfig) -> Router {
    let chat = Chat {
        handle,
        config: Arc::new(config),
    };
    Router::new()
        .route(&chat.config.path.clone(), get(endpoint))
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/app.js", get(page))
        .route("/app.css", get(page))
        .with_state(chat)
}

/// A router with only the WebSocket endpoint, at [`WsConfig::path`].
pub fn endpoint_router(handle: Handle, config: WsConfig) -> Router {
    let chat = Chat {
        handle,
        config: Arc::new(config),
    };
    Router::new()
        .route(&chat.config.path.clone(), get(endpoint))
        .with_state(chat)
}

async fn endpoint(State(chat): State<Chat>, request: Request) -> Response {
    crate::handshake::upgrade(request, &chat.handle, chat.config)
        .await
        .map(Body::new)
}

async fn page(State(chat): State<Chat>, request: Request) -> Response {
    crate::http::respond(request, &chat.handle, chat.config)
        .await
        .map(Body::new)
}
