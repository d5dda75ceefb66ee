//! Fills a room's stored history, for measuring history reads against a store of realistic size
//! (`scripts/paging-under-load.sh` runs it before it starts the server on the same directory).
//!
//! ```sh
//! cargo run --release --example fill_history -- --data DIR --room archive --messages 100000
//! ```
//!
//! It opens the JSON-file store in `DIR` (no server may have it open), appends `--messages` room
//! messages through the [`Store`] trait in batches of `--batch`, with ids continuing from the
//! store's `next_id`, texts of 64 to 200 bytes made of words, a handful of senders and the
//! current time as `ts`, and closes the store. The texts depend only on the id, so two fills of
//! empty directories give the same history apart from `ts`.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chat_engine::core::{
    DEFAULT_MAX_TEXT_BYTES, MessageId, Record, RoomMessage, RoomName, Text, Timestamp, UserName,
};
use chat_engine::store::{JsonFileStore, Store};
use clap::Parser;

/// Append generated messages to one room of a JSON-file store.
#[derive(Debug, Parser)]
struct Options {
    /// The store's directory (the server's `--data`); created if missing.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The room to fill.
    #[arg(long, default_value = "archive")]
    room: String,
    /// How many messages to append.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Records per `append` call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

const SENDERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

const WORDS: [&str; 24] = [
    "the", "build", "is", "green", "again", "after", "we", "moved", "store", "reads", "off",
    "core", "task", "so", "fan-out", "never", "waits", "on", "disk", "let's", "ship", "it",
    "tomorrow", "morning",
];

/// A text of 64 to 200 bytes, a function of `id` alone (xorshift64 seeded by it).
fn text(id: u64) -> String {
    let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let len = 64 + (next() % 137) as usize;
    let mut text = format!("#{id}:");
    while text.len() < len {
        text.push(' ');
        text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
    }
    text.truncate(len);
    text
}

async fn fill(options: &Options) -> Result<(), Box<dyn Error>> {
    let room = RoomName::parse(&options.room)?;
    let senders = SENDERS
        .iter()
        .map(|name| UserName::parse(name))
        .collect::<Result<Vec<_>, _>>()?;
    let store = JsonFileStore::open(&options.data).await?;
    let first = store.load(0).await?.next_id.unwrap_or(MessageId::FIRST);
    let started = Instant::now();
    let mut id = first;
    let mut left = options.messages;
    let mut batch = Vec::with_capacity(options.batch.max(1));
    while left > 0 {
        let ts = Timestamp::from_system_time(SystemTime::now());
        batch.clear();
        while left > 0 && batch.len() < options.batch.max(1) {
            let n = id.get();
            batch.push(Record::Message(Arc::new(RoomMessage {
                room: room.clone(),
                id,
                from: senders[(n % senders.len() as u64) as usize].clone(),
                text: Text::parse(&text(n), DEFAULT_MAX_TEXT_BYTES)?,
                ts,
            })));
            id = id.next();
            left -= 1;
        }
        store.append(&batch).await?;
    }
    store.close().await?;
    println!(
        "appended {} messages to #{room} (ids {} to {}) in {:.1} s",
        options.messages,
        first,
        id.get().saturating_sub(1),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fill_history: cannot start tokio: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fill(&options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fill_history: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_valid_and_sized() {
        for id in 1..2000 {
            let text = text(id);
            assert!((64..=200).contains(&text.len()), "{id}: {text:?}");
            Text::parse(&text, DEFAULT_MAX_TEXT_BYTES).unwrap();
        }
        assert_eq!(text(7), text(7));
    }
}
