//! The chat inside an axum app: [`router`] mounts the WebSocket endpoint (and, if you want it,
//! the browser page) on a router of your own, on your own port, with the engine's limits,
//! pings and close codes intact.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chat_transport_ws::WsConfig;
//!
//! # async fn example(handle: chat_runtime::Handle) -> std::io::Result<()> {
//! use axum::serve::ListenerExt;
//!
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .merge(chat_transport_ws::axum::router(handle, WsConfig::default()));
//! // Without TCP_NODELAY, small frames wait for delayed ACKs (40 ms on Linux).
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_nodelay(true);
//!     });
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The upgrade is answered by the same code as the bundled listener's (`handshake.rs`), so a
//! full server answers 503, and every connection is paced, pinged and closed the same way.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use chat_runtime::Handle;

use crate::handshake::PeerAddr;
use crate::server::WsConfig;

#[derive(Clone)]
struct Chat {
    handle: Handle,
    config: Arc<WsConfig>,
}

/// A router with the chat's WebSocket endpoint at [`WsConfig::path`] and the browser page at
/// `/` (with its script and style). Merge it into your app's router: the page is its fallback,
/// so your own routes take precedence, and paths the page does not know get 404.
pub fn router(handle: Handle, config: WsConfig) -> Router {
    let path = config.path.clone();
    let chat = Chat {
        handle,
        config: Arc::new(config),
    };
    Router::new()
        .route(&path, get(endpoint))
        .fallback(page)
        .with_state(chat)
}

async fn endpoint(State(chat): State<Chat>, mut request: Request) -> Response {
    // The client's address, when the app serves with `into_make_service_with_connect_info`.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| PeerAddr(info.0));
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    crate::handshake::upgrade(request, &chat.handle, chat.config)
        .await
        .map(Body::new)
}

async fn page(State(chat): State<Chat>, request: Request) -> Response {
    crate::http::respond(request, &chat.handle, chat.config)
        .await
        .map(Body::new)
}
