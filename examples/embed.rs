//! Embedding the engine in your own program: a WebSocket chat with a bot that lives in-process.
//!
//! ```sh
//! cargo run --example embed
//! websocat ws://127.0.0.1:8765/chat   # then: {"type":"login","name":"you"}
//! ```
//!
//! The bot attaches through the same public `Handle` the WebSocket transport uses, with a wire
//! format of its own that keeps events as values instead of bytes.

use std::sync::Arc;

use bytes::Bytes;
use chat_engine::core::{Command, Config, Event, Ref, SendKind};
use chat_engine::runtime::{Outgoing, Runtime, RuntimeConfig, WireFormat};
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
    let mut bot = runtime.handle().connect(Arc::new(BotFormat)).await?;
    bot.send(
        Command::Login {
            name: "clockbot".into(),
        },
        None,
    )
    .await?;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            next = bot.next(&mut batch) => {
                if let Outgoing::Close(_) = next { break }
                for frame in batch.drain(..) {
                    // BotFormat only lets "!time" messages through, as "room\ttimestamp".
                    let line = String::from_utf8_lossy(&frame.bytes);
                    if let Some((room, ts)) = line.split_once('\t') {
                        let text = format!("it is {ts}");
                        bot.send(Command::Say { room: room.into(), text }, None).await?;
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(bot);
    runtime.shutdown().await?;
    Ok(())
}

/// The bot's "wire format": room messages that ask for the time, as `room<TAB>timestamp`.
struct BotFormat;

impl WireFormat for BotFormat {
    fn name(&self) -> &'static str {
        "bot"
    }

    fn encode(&self, event: &Event, _: Option<&Ref>, kind: SendKind) -> Option<Bytes> {
        match event {
            Event::Message(m) if kind == SendKind::Push && m.text.as_str().trim() == "!time" => {
                Some(Bytes::from(format!("{}\t{}", m.room, m.ts)))
            }
            _ => None,
        }
    }
}
