//! Embedding the engine in your own program: a WebSocket chat with a bot that lives in-process.
//!
//! ```sh
//! cargo run --example embed
//! websocat ws://127.0.0.1:8765/chat   # then: {"type":"login","name":"you"}
//!                                     # and:  {"type":"say","room":"general","text":"!time"}
//! ```
//!
//! The bot attaches with `Handle::connect_local`: it sends commands like any client and receives
//! events as values, with an outbound queue bounded like every other connection's.

use std::sync::Arc;

use chat_engine::core::{Command, Config, Event, SendKind};
use chat_engine::runtime::{Outgoing, Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::ws::{WsConfig, serve};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::start(
        Config::default(),
        Arc::new(MemoryStore::new()),
        RuntimeConfig::default(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8765").await?;
    println!("listening ws://{}/chat", listener.local_addr()?);
    tokio::spawn(serve(listener, runtime.handle(), WsConfig::default()));

    // A bot: it answers "!time" in any room it shares with you.
    let bot = runtime.handle().connect_local().await?;
    let login = Command::login("clockbot");
    bot.send(login, None).await?;
    let mut events = Vec::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            next = bot.next(&mut events) => {
                if let Outgoing::Close(_) = next { break }
                for delivery in events.drain(..) {
                    // Others' room messages come as pushes; the bot's own come back as echoes.
                    let Event::Message(message) = &*delivery.event else { continue };
                    if delivery.kind == SendKind::Push && message.text.as_str().trim() == "!time" {
                        let text = format!("it is {}", message.ts);
                        let reply = Command::Say { room: message.room.to_string(), text };
                        bot.send(reply, None).await?;
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    drop(bot);
    let handle = runtime.handle();
    // Store everything, close every client (1001), and give them a moment to go.
    runtime.shutdown().await?;
    handle.wait_idle(std::time::Duration::from_secs(5)).await;
    Ok(())
}
