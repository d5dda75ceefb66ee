//! JsonFileStore's on-disk behaviour: the layout a person reads (accounts and DM conversations
//! included, and no file that says "password"), torn tails repaired at open, damage in the middle
//! reported with file and line, leftovers of interrupted replacements, and paging through files
//! much larger than one read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chat_core::{DirectMessage, Record};
use chat_store::conformance::{HASH, account, direct, direct_from, id_of, key, message, rooms_of};
use chat_store::{JsonFileStore, MemoryStore, Store, StoreError};

async fn open(dir: &Path) -> JsonFileStore {
    JsonFileStore::open(dir).await.expect("the store opens")
}

fn room_file(dir: &Path, room: &str) -> PathBuf {
    dir.join("rooms").join(format!("{room}.jsonl"))
}

fn ids(messages: &[chat_core::RoomMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id.get()).collect()
}

fn dm_ids(dms: &[DirectMessage]) -> Vec<u64> {
    dms.iter().map(|dm| dm.id.get()).collect()
}

/// A store in `dir` holding DMs 1..=n between alice and bob, in turns.
async fn conversation_with(dir: &Path, n: u64) {
    let store = open(dir).await;
    for id in 1..=n {
        let (from, to) = if id % 2 == 1 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        store
            .append(&[Record::Dm(direct_from(id, from, to, &format!("dm {id}")))])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

/// A store in `dir` holding messages 1..=n of #general.
async fn general_with(dir: &Path, n: u64) {
    let store = open(dir).await;
    for id in 1..=n {
        store
            .append(&[Record::Message(message(
                "general",
                id,
                &format!("message {id}"),
            ))])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Replaces line `number` (1-based) of the file at `path`.
/// Overwrites line `to` (1-based) with a copy of line `from`: ids out of order in the middle.
fn copy_line(path: &Path, from: usize, to: usize) {
    let line = fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(from - 1)
        .unwrap()
        .to_owned();
    replace_line(path, to, &line);
}

fn replace_line(path: &Path, number: usize, with: &str) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[number - 1] = with;
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn files_are_plain_json_lines_a_person_can_grep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[
            Record::Message(message("general", 1, "grüß dich\nzweite Zeile")),
            Record::Message(message("general", 2, "🦀")),
            Record::Queued(direct(3, "Bob", "psst")),
            Record::IdsReserved { until: id_of(1025) },
        ])
        .await
        .unwrap();
    let room = fs::read_to_string(room_file(dir, "general")).unwrap();
    assert_eq!(
        room,
        "{\"room\":\"general\",\"id\":1,\"from\":\"alice\",\"text\":\"grüß dich\\nzweite Zeile\",\"ts\":\"2025-11-24T16:00:00.001Z\"}\n\
         {\"room\":\"general\",\"id\":2,\"from\":\"alice\",\"text\":\"🦀\",\"ts\":\"2025-11-24T16:00:00.002Z\"}\n"
    );
    let mailbox = fs::read_to_string(dir.join("mailboxes/bob.jsonl")).unwrap();
    assert!(
        mailbox.contains("\"to\":\"Bob\",\"text\":\"psst\""),
        "{mailbox}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("ids.json")).unwrap(),
        "{\"next_id\":1025}\n"
    );

    // A partial delivery rewrites the mailbox; a full one removes it.
    store
        .append(&[Record::Queued(direct(4, "bob", "more"))])
        .await
        .unwrap();
    store
        .append(&[Record::Delivered {
            owner: key("bob"),
            through: id_of(3),
        }])
        .await
        .unwrap();
    let mailbox = fs::read_to_string(dir.join("mailboxes/bob.jsonl")).unwrap();
    assert_eq!(mailbox.lines().count(), 1);
    assert!(mailbox.contains("\"id\":4,"), "{mailbox}");
    store
        .append(&[Record::Delivered {
            owner: key("bob"),
            through: id_of(4),
        }])
        .await
        .unwrap();
    assert!(!dir.join("mailboxes/bob.jsonl").exists());
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_record_cut_short_is_dropped_at_open_and_ids_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    general_with(dir, 10).await;
    let path = room_file(dir, "general");
    let full = fs::metadata(&path).unwrap().len();
    // Truncate the file in the middle of its last record.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 7)
        .unwrap();

    let store = open(dir).await;
    let snapshot = store.load(100).await.unwrap();
    let general = &snapshot.rooms[&"general".parse().unwrap()];
    assert_eq!(ids(&general.messages), (1..=9).collect::<Vec<_>>());
    assert_eq!(snapshot.next_id, Some(id_of(10)));
    assert!(
        fs::read(&path).unwrap().ends_with(b"\n"),
        "the torn bytes were truncated away"
    );
    store
        .append(&[Record::Message(message("general", 10, "again"))])
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = open(dir).await;
    let page = store
        .history(&"general".parse().unwrap(), None, 3)
        .await
        .unwrap();
    assert_eq!(ids(&page), vec![8, 9, 10]);
    assert_eq!(page[2].text.as_str(), "again");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_garbage_last_line_is_dropped_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    general_with(dir, 3).await;
    let path = room_file(dir, "general");
    let good = fs::read(&path).unwrap();
    append_bytes(&path, b"\0\0\0\0garbage that is not json\n");
    let store = open(dir).await;
    assert_eq!(fs::read(&path).unwrap(), good);
    assert_eq!(store.load(10).await.unwrap().next_id, Some(id_of(4)));
    store.close().await.unwrap();

    // The same for a mailbox, and for a line with no newline at all.
    let store = open(dir).await;
    store
        .append(&[Record::Queued(direct(4, "bob", "kept"))])
        .await
        .unwrap();
    store.close().await.unwrap();
    append_bytes(&dir.join("mailboxes/bob.jsonl"), b"{\"id\":5,\"fr");
    let store = open(dir).await;
    let mailbox = store.mailbox(&key("bob")).await.unwrap();
    assert_eq!(mailbox.len(), 1);
    assert_eq!(mailbox[0].text.as_str(), "kept");
    store.close().await.unwrap();
}

#[tokio::test]
async fn damage_in_the_middle_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    general_with(dir, 10).await;
    let path = room_file(dir, "general");
    replace_line(&path, 4, "{\"room\":\"general\",\"id\":4,\"fr");

    // Opening reads only the last line, so it succeeds; reading across line 4 does not.
    let store = open(dir).await;
    let general = "general".parse().unwrap();
    assert_eq!(
        store.load(3).await.unwrap().rooms[&general].messages.len(),
        3
    );
    let err = store.load(100).await.unwrap_err();
    match &err {
        StoreError::Corrupt { path: at, line, .. } => {
            assert_eq!((at, *line), (&path, 4));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("general.jsonl:4: corrupt record"), "{text}");
    assert!(matches!(
        store.history(&general, Some(id_of(6)), 10).await,
        Err(StoreError::Corrupt { line: 4, .. })
    ));
    // A page that does not reach line 4 (read backwards from the end) is fine.
    assert_eq!(
        ids(&store.history(&general, None, 4).await.unwrap()),
        vec![7, 8, 9, 10]
    );
    store.close().await.unwrap();

    // Ids out of order in the middle are damage too.
    copy_line(&path, 9, 4);
    let store = open(dir).await;
    assert!(matches!(
        store.load(100).await,
        Err(StoreError::Corrupt { line: 5, .. })
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn two_bad_lines_at_the_end_are_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    general_with(dir, 5).await;
    let path = room_file(dir, "general");
    replace_line(&path, 5, "not json");
    append_bytes(&path, b"{\"torn");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { line: 5, path: p, .. } if *p == path),
        "{err:?}"
    );
    // A damaged mailbox is reported at open, since mailboxes are read whole.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    for id in 1..=3 {
        store
            .append(&[Record::Queued(direct(id, "bob", "x"))])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    replace_line(&dir.join("mailboxes/bob.jsonl"), 2, "{}");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { line: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn leftovers_of_interrupted_replacements_are_removed_and_strangers_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[
            Record::Queued(direct(1, "bob", "one")),
            Record::Queued(direct(2, "bob", "two")),
            Record::IdsReserved { until: id_of(50) },
        ])
        .await
        .unwrap();
    store.close().await.unwrap();
    // A crash between writing the replacement and renaming it over the original.
    fs::write(dir.join("mailboxes/bob.jsonl.tmp"), "{\"half").unwrap();
    fs::write(dir.join("ids.json.tmp"), "{\"next_id\":9").unwrap();
    fs::write(dir.join("rooms/notes.txt"), "mine").unwrap();
    fs::write(dir.join("rooms/General.jsonl"), "not the store's name").unwrap();
    fs::write(dir.join("rooms/..%2Fescape.jsonl"), "hostile").unwrap();

    let store = open(dir).await;
    assert_eq!(store.mailbox(&key("bob")).await.unwrap().len(), 2);
    assert_eq!(store.load(1).await.unwrap().next_id, Some(id_of(50)));
    assert!(store.rooms().await.unwrap().is_empty());
    assert!(!dir.join("mailboxes/bob.jsonl.tmp").exists());
    assert!(!dir.join("ids.json.tmp").exists());
    assert_eq!(
        fs::read_to_string(dir.join("rooms/notes.txt")).unwrap(),
        "mine"
    );
    assert!(dir.join("rooms/General.jsonl").exists());
    store.close().await.unwrap();
}

/// Every file under `dir`, recursively, with its contents.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            let contents = fs::read(&path).unwrap();
            files.push((path, contents));
        }
    }
    files
}

#[tokio::test]
async fn accounts_are_json_lines_and_no_file_says_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[
            Record::Message(message("general", 1, "hello")),
            Record::Queued(direct(2, "Bob", "psst")),
            Record::Account(account("Alice", Some(HASH))),
            Record::Account(account("token.user", None)),
            Record::IdsReserved { until: id_of(100) },
        ])
        .await
        .unwrap();
    // A password set later is appended, and wins.
    store
        .append(&[Record::Account(account("TOKEN.user", Some(HASH)))])
        .await
        .unwrap();
    let accounts = fs::read_to_string(dir.join("accounts.jsonl")).unwrap();
    assert_eq!(
        accounts,
        format!(
            "{{\"name\":\"Alice\",\"hash\":\"{HASH}\"}}\n\
             {{\"name\":\"token.user\"}}\n\
             {{\"name\":\"TOKEN.user\",\"hash\":\"{HASH}\"}}\n"
        )
    );
    store.close().await.unwrap();

    // `grep -ri password DIR` finds nothing: no file content, no file name.
    let files = all_files(dir);
    assert!(files.len() >= 4, "{files:?}");
    for (path, contents) in &files {
        let text = String::from_utf8_lossy(contents).to_lowercase();
        assert!(!text.contains("password"), "{}: {text}", path.display());
        let name = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .to_lowercase();
        assert!(!name.contains("password"), "{name}");
    }

    let store = open(dir).await;
    assert_eq!(
        store.account(&key("token.user")).await.unwrap(),
        Some(account("TOKEN.user", Some(HASH)))
    );
    assert_eq!(store.load(1).await.unwrap().accounts.len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_torn_account_line_is_dropped_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[Record::Account(account("Alice", Some(HASH)))])
        .await
        .unwrap();
    store.close().await.unwrap();
    let path = dir.join("accounts.jsonl");
    let good = fs::read(&path).unwrap();

    // Cut short, without a newline.
    append_bytes(&path, b"{\"name\":\"Mallory\",\"ha");
    let store = open(dir).await;
    assert_eq!(fs::read(&path).unwrap(), good);
    assert_eq!(store.account(&key("mallory")).await.unwrap(), None);
    assert_eq!(
        store.account(&key("alice")).await.unwrap(),
        Some(account("Alice", Some(HASH)))
    );
    store.close().await.unwrap();

    // Garbage with a newline (a grown size persisted before the data).
    append_bytes(&path, b"\0\0\0\0\n");
    let store = open(dir).await;
    assert_eq!(fs::read(&path).unwrap(), good);
    store
        .append(&[Record::Account(account("Mallory", None))])
        .await
        .unwrap();
    store.close().await.unwrap();
    let store = open(dir).await;
    assert_eq!(store.load(1).await.unwrap().accounts.len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_account_line_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    for name in ["alice", "bob", "carol"] {
        store
            .append(&[Record::Account(account(name, Some(HASH)))])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let path = dir.join("accounts.jsonl");
    replace_line(&path, 2, "{\"name\":\"not a valid name\"}");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    match &err {
        StoreError::Corrupt { path: at, line, .. } => assert_eq!((at, *line), (&path, 2)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("accounts.jsonl:2: corrupt record"), "{text}");

    // Two bad lines at the end are not a torn tail either.
    replace_line(&path, 2, "{\"name\":\"bob\"}");
    replace_line(&path, 3, "not json");
    append_bytes(&path, b"{\"torn");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { line: 3, path: p, .. } if *p == path),
        "{err:?}"
    );
}

#[tokio::test]
async fn account_rooms_are_json_lines_the_last_per_owner_wins_and_a_torn_one_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[rooms_of("alice", &["general"]), rooms_of("bob", &["rust"])])
        .await
        .unwrap();
    store
        .append(&[rooms_of("alice", &["general", "rust"])])
        .await
        .unwrap();
    store.close().await.unwrap();
    let path = dir.join("account_rooms.jsonl");
    let good = fs::read_to_string(&path).unwrap();
    assert_eq!(
        good,
        concat!(
            "{\"owner\":\"alice\",\"rooms\":[\"general\"]}\n",
            "{\"owner\":\"bob\",\"rooms\":[\"rust\"]}\n",
            "{\"owner\":\"alice\",\"rooms\":[\"general\",\"rust\"]}\n",
        )
    );

    // Cut short, without a newline: dropped at open, the earlier set stands.
    append_bytes(&path, b"{\"owner\":\"alice\",\"rooms\":[");
    let store = open(dir).await;
    assert_eq!(fs::read_to_string(&path).unwrap(), good);
    let rooms = store.load(1).await.unwrap().account_rooms;
    assert_eq!(rooms[&key("alice")].len(), 2);
    assert_eq!(rooms[&key("bob")].len(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_account_rooms_line_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    for owner in ["alice", "bob", "carol"] {
        store
            .append(&[rooms_of(owner, &["general"])])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let path = dir.join("account_rooms.jsonl");
    replace_line(&path, 2, "{\"owner\":\"bob\",\"rooms\":[\"not a room\"]}");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    match &err {
        StoreError::Corrupt { path: at, line, .. } => assert_eq!((at, *line), (&path, 2)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("account_rooms.jsonl:2: corrupt record"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_large_file_match_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    let reference = MemoryStore::new();
    // 3000 messages with ids 3, 6, 9, ... and texts from 1 to ~5000 bytes, so that lines
    // straddle every read chunk and the file is a few megabytes.
    let mut batch = Vec::new();
    for n in 1..=3000u64 {
        let len = 1 + (n * 7919) % 5000;
        let text = format!("{n}:{}", "é".repeat(len as usize / 2));
        batch.push(Record::Message(message("big", 3 * n, &text)));
        if batch.len() == 500 {
            store.append(&batch).await.unwrap();
            reference.append(&batch).await.unwrap();
            batch.clear();
        }
    }
    let big = "big".parse().unwrap();
    let befores = [
        None,
        Some(1),
        Some(3),
        Some(4),
        Some(1500),
        Some(4500),
        Some(8999),
        Some(9000),
        Some(9001),
        Some(10_000),
    ];
    for before in befores {
        for limit in [1, 7, 100, 500] {
            let before = before.map(id_of);
            let got = store.history(&big, before, limit).await.unwrap();
            let want = reference.history(&big, before, limit).await.unwrap();
            assert_eq!(ids(&got), ids(&want), "before {before:?}, limit {limit}");
            assert_eq!(got, want);
        }
    }
    for n in (1..9001u64).step_by(97) {
        let got = store.history(&big, Some(id_of(n)), 3).await.unwrap();
        let want = reference.history(&big, Some(id_of(n)), 3).await.unwrap();
        assert_eq!(ids(&got), ids(&want), "before {n}");
    }
    assert_eq!(
        store.load(50).await.unwrap(),
        reference.load(50).await.unwrap()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn dms_are_json_lines_in_one_file_per_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir).await;
    store
        .append(&[
            Record::Dm(direct_from(1, "alice", "Bob", "hi bob")),
            Record::Dm(direct_from(2, "BOB", "alice", "grüß dich")),
            Record::Dm(direct_from(3, "carol", "alice", "hi")),
        ])
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("dms/alice+bob.jsonl")).unwrap(),
        "{\"id\":1,\"from\":\"alice\",\"to\":\"Bob\",\"text\":\"hi bob\",\"ts\":\"2025-11-24T16:00:00.001Z\"}\n\
         {\"id\":2,\"from\":\"BOB\",\"to\":\"alice\",\"text\":\"grüß dich\",\"ts\":\"2025-11-24T16:00:00.002Z\"}\n"
    );
    let carol = fs::read_to_string(dir.join("dms/alice+carol.jsonl")).unwrap();
    assert_eq!(carol.lines().count(), 1);
    assert!(carol.contains("\"from\":\"carol\""), "{carol}");
    assert_eq!(
        fs::read_dir(dir.join("mailboxes")).unwrap().count(),
        0,
        "a DM in a conversation is not queued"
    );

    // A queued DM with its conversation's record: a delivery rewrites the mailbox only.
    let dm = direct(4, "bob", "while you were out");
    store
        .append(&[Record::Queued(dm.clone()), Record::Dm(dm)])
        .await
        .unwrap();
    let conversation = fs::read(dir.join("dms/alice+bob.jsonl")).unwrap();
    store
        .append(&[Record::Delivered {
            owner: key("bob"),
            through: id_of(4),
        }])
        .await
        .unwrap();
    assert!(!dir.join("mailboxes/bob.jsonl").exists());
    assert_eq!(
        fs::read(dir.join("dms/alice+bob.jsonl")).unwrap(),
        conversation
    );
    store.close().await.unwrap();

    let store = open(dir).await;
    let page = store
        .dm_history(&key("bob"), &key("alice"), None, 10)
        .await
        .unwrap();
    assert_eq!(dm_ids(&page), vec![1, 2, 4]);
    assert_eq!(page[1].text.as_str(), "grüß dich");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_dm_cut_short_is_dropped_at_open_and_ids_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    conversation_with(dir, 10).await;
    let path = dir.join("dms/alice+bob.jsonl");
    let full = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 7)
        .unwrap();

    let store = open(dir).await;
    let snapshot = store.load(100).await.unwrap();
    assert_eq!(
        dm_ids(&snapshot.dms[&key("alice")].messages),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(snapshot.next_id, Some(id_of(10)));
    assert!(fs::read(&path).unwrap().ends_with(b"\n"));
    store
        .append(&[Record::Dm(direct_from(10, "bob", "alice", "again"))])
        .await
        .unwrap();
    store.close().await.unwrap();

    // Garbage with a newline (a grown size persisted before the data) goes the same way.
    let good = fs::read(&path).unwrap();
    append_bytes(&path, b"\0\0\0garbage\n");
    let store = open(dir).await;
    assert_eq!(fs::read(&path).unwrap(), good);
    let page = store
        .dm_history(&key("alice"), &key("bob"), None, 2)
        .await
        .unwrap();
    assert_eq!(dm_ids(&page), vec![9, 10]);
    assert_eq!(page[1].text.as_str(), "again");
    store.close().await.unwrap();
}

#[tokio::test]
async fn damage_in_a_conversation_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    conversation_with(dir, 10).await;
    let path = dir.join("dms/alice+bob.jsonl");
    replace_line(&path, 4, "{\"id\":4,\"fr");

    // Opening and the newest DMs read only the end of the file; reading across line 4 fails.
    let store = open(dir).await;
    let (alice, bob) = (key("alice"), key("bob"));
    assert_eq!(store.load(3).await.unwrap().dms[&alice].messages.len(), 3);
    let err = store.load(100).await.unwrap_err();
    match &err {
        StoreError::Corrupt { path: at, line, .. } => assert_eq!((at, *line), (&path, 4)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("alice+bob.jsonl:4: corrupt record"),
        "{err}"
    );
    assert!(matches!(
        store.dm_history(&bob, &alice, Some(id_of(6)), 10).await,
        Err(StoreError::Corrupt { line: 4, .. })
    ));
    assert_eq!(
        dm_ids(&store.dm_history(&alice, &bob, None, 4).await.unwrap()),
        vec![7, 8, 9, 10]
    );
    store.close().await.unwrap();

    // A DM of other users in this conversation's file is damage too.
    let stranger = serde_json::to_string(&*direct_from(4, "carol", "dave", "lost")).unwrap();
    replace_line(&path, 4, &stranger);
    let store = open(dir).await;
    match store.dm_history(&alice, &bob, None, 100).await {
        Err(StoreError::Corrupt {
            line: 4, reason, ..
        }) => assert!(
            reason.contains(
                "a DM from carol to dave in the file of the conversation of alice and bob"
            ),
            "{reason}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    store.close().await.unwrap();

    // Ids out of order in the middle, and two bad lines at the end (not a torn tail).
    copy_line(&path, 9, 4);
    let store = open(dir).await;
    assert!(matches!(
        store.load(100).await,
        Err(StoreError::Corrupt { line: 5, .. })
    ));
    store.close().await.unwrap();
    replace_line(&path, 10, "not json");
    append_bytes(&path, b"{\"torn");
    let err = JsonFileStore::open(dir).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { line: 10, path: p, .. } if *p == path),
        "{err:?}"
    );
}

#[tokio::test]
async fn conversation_files_the_store_did_not_name_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    conversation_with(dir, 2).await;
    let dms = dir.join("dms");
    let strangers = [
        "bob+alice.jsonl",
        "alice.jsonl",
        "alice+bob+carol.jsonl",
        "Alice+carol.jsonl",
        "notes.txt",
    ];
    for name in strangers {
        fs::write(dms.join(name), "not the store's").unwrap();
    }
    fs::write(dms.join("alice+bob.jsonl.tmp"), "{\"half").unwrap();

    let store = open(dir).await;
    let snapshot = store.load(10).await.unwrap();
    assert_eq!(
        snapshot.dms.keys().collect::<Vec<_>>(),
        vec![&key("alice"), &key("bob")]
    );
    assert_eq!(dm_ids(&snapshot.dms[&key("bob")].messages), vec![1, 2]);
    assert!(
        !dms.join("alice+bob.jsonl.tmp").exists(),
        "a leftover is removed"
    );
    for name in strangers {
        assert_eq!(
            fs::read_to_string(dms.join(name)).unwrap(),
            "not the store's",
            "{name}"
        );
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_pages_of_a_large_conversation_match_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    let reference = MemoryStore::new();
    // 3000 DMs between alice and bob with ids 3, 6, 9, ... in both directions and texts from 1
    // to ~5000 bytes, so that lines straddle every read chunk; and DMs of alice's with carol
    // (ids 3n + 1) whose tail merges with them.
    let mut batch = Vec::new();
    for n in 1..=3000u64 {
        let len = 1 + (n * 7919) % 5000;
        let text = format!("{n}:{}", "é".repeat(len as usize / 2));
        let (from, to) = if n % 3 == 0 {
            ("bob", "alice")
        } else {
            ("alice", "bob")
        };
        batch.push(Record::Dm(direct_from(3 * n, from, to, &text)));
        if n % 10 == 0 {
            batch.push(Record::Dm(direct_from(3 * n + 1, "carol", "alice", "hi")));
        }
        if batch.len() >= 500 {
            store.append(&batch).await.unwrap();
            reference.append(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.append(&batch).await.unwrap();
    reference.append(&batch).await.unwrap();
    let (alice, bob) = (key("alice"), key("bob"));
    let befores = [
        None,
        Some(1),
        Some(3),
        Some(4),
        Some(1500),
        Some(4500),
        Some(8999),
        Some(9000),
        Some(9001),
        Some(10_000),
    ];
    for before in befores {
        for limit in [1, 7, 100, 500] {
            let before = before.map(id_of);
            let got = store.dm_history(&alice, &bob, before, limit).await.unwrap();
            let want = reference
                .dm_history(&bob, &alice, before, limit)
                .await
                .unwrap();
            assert_eq!(
                dm_ids(&got),
                dm_ids(&want),
                "before {before:?}, limit {limit}"
            );
            assert_eq!(got, want);
        }
    }
    for n in (1..9001u64).step_by(97) {
        let got = store
            .dm_history(&bob, &alice, Some(id_of(n)), 3)
            .await
            .unwrap();
        let want = reference
            .dm_history(&alice, &bob, Some(id_of(n)), 3)
            .await
            .unwrap();
        assert_eq!(dm_ids(&got), dm_ids(&want), "before {n}");
    }
    for history in [0, 1, 50, 1000] {
        assert_eq!(
            store.load(history).await.unwrap(),
            reference.load(history).await.unwrap(),
            "history {history}"
        );
    }
    store.close().await.unwrap();
}
