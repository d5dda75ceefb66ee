//! The chat inside an existing axum app: its own routes, its own port, and the chat mounted
//! beside them with the engine's limits, pings and close codes.
//!
//! ```sh
//! cargo run --example axum
//! curl http://127.0.0.1:3000/health          # the app's own route
//! websocat ws://127.0.0.1:3000/chat          # the chat: {"type":"login","name":"you"}
//! # or open http://127.0.0.1:3000/ in a browser for the chat page
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use chat_engine::core::Config;
use chat_engine::runtime::{Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::WsConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::start(
        Config::default(),
        Arc::new(MemoryStore::new()),
        RuntimeConfig::default(),
    )
    .await?;

    // The app's own routes, and the chat (endpoint at /chat, page at /) merged in.
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .merge(chat_engine::ws::axum::router(
            runtime.handle(),
            WsConfig::default(),
        ));

    // Without TCP_NODELAY, small frames wait for delayed ACKs (40 ms on Linux).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!(
        "listening http://{}/ (chat at /chat)",
        listener.local_addr()?
    );
    let handle = runtime.handle();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Store everything, close the chat clients (1001), and give them a moment to go.
    runtime.shutdown().await?;
    handle.wait_idle(Duration::from_secs(5)).await;
    Ok(())
}
