//! The JSON-file store's loader on damaged directories: fuzzed bytes are written as a room file
//! (`rooms/general.jsonl`), a mailbox file (`mailboxes/bob.jsonl`) and `ids.json`, then
//! `JsonFileStore::open`, `load`, `history` pages, `mailbox`, one `append` and `close` run on
//! them. Each must succeed or return a `StoreError`; none may panic, and what loads must keep the
//! store's invariants (ids strictly increasing, pages no longer than asked).
//!
//! Input layout: byte 0's low three bits say which of the three files exist; the rest is split
//! at `0xFF` bytes (which never occur in UTF-8) into the room file, the mailbox file and
//! `ids.json`, in that order.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chat_core::{MessageId, Record, RoomMessage, RoomName, Text, Timestamp, UserKey, UserName};
use chat_store::{JsonFileStore, Store};
use libfuzzer_sys::fuzz_target;

/// Where the scratch directories go: tmpfs when there is one, so fsyncs cost nothing.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fn ascending(ids: impl IntoIterator<Item = MessageId>) -> bool {
    let ids: Vec<MessageId> = ids.into_iter().collect();
    ids.windows(2).all(|w| w[0] < w[1])
}

async fn exercise(dir: &Path) {
    let Ok(store) = JsonFileStore::open(dir).await else {
        return;
    };
    let general = RoomName::parse("general").expect("a valid room");
    let bob = UserKey::parse("bob").expect("a valid name");
    let mut next_id = MessageId::FIRST;
    if let Ok(snapshot) = store.load(5).await {
        for tail in snapshot.rooms.values() {
            assert!(tail.messages.len() <= 5, "load keeps at most `history`");
            assert!(ascending(tail.messages.iter().map(|m| m.id)));
        }
        for dms in snapshot.mailboxes.values() {
            assert!(ascending(dms.iter().map(|m| m.id)));
        }
        if let Some(id) = snapshot.next_id {
            next_id = id;
        }
    }
    // Page backwards through the room, a bounded number of times.
    let mut before = None;
    for _ in 0..8 {
        let Ok(page) = store.history(&general, before, 3).await else {
            break;
        };
        assert!(page.len() <= 3, "a page is at most `limit` long");
        assert!(ascending(page.iter().map(|m| m.id)));
        if let (Some(first), Some(before)) = (page.first(), before) {
            assert!(page.last().expect("non-empty").id < before && first.id < before);
        }
        match page.first() {
            Some(first) => before = Some(first.id),
            None => break,
        }
    }
    let _ = store.mailbox(&bob).await;
    // The writer must cope with whatever open repaired: append one message above everything.
    let message = RoomMessage {
        room: general,
        id: next_id,
        from: UserName::parse("fuzz").expect("a valid name"),
        text: Text::parse("after the fuzzed files", 4096).expect("a valid text"),
        ts: Timestamp::from_unix_millis(1_800_000_000_000),
    };
    let _ = store.append(&[Record::Message(Arc::new(message))]).await;
    let _ = store
        .append(&[Record::Delivered {
            owner: bob,
            through: next_id,
        }])
        .await;
    let _ = store.close().await;
}

fuzz_target!(|data: &[u8]| {
    let [present, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xFF);
    let dir = tempfile::Builder::new()
        .prefix("chat-fuzz-")
        .tempdir_in(scratch_root())
        .expect("a scratch directory");
    let files = [
        ("rooms", Some("general.jsonl")),
        ("mailboxes", Some("bob.jsonl")),
        ("ids.json", None),
    ];
    for (bit, (first, second)) in files.into_iter().enumerate() {
        let contents = parts.next().unwrap_or_default();
        if present & (1 << bit) == 0 {
            continue;
        }
        let path = match second {
            Some(file) => {
                let sub = dir.path().join(first);
                std::fs::create_dir_all(&sub).expect("a scratch subdirectory");
                sub.join(file)
            }
            None => dir.path().join(first),
        };
        std::fs::write(&path, contents).expect("a scratch file");
    }
    runtime().block_on(exercise(dir.path()));
});
