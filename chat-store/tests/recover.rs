//! A failed append followed by `recover` leaves exactly the acknowledged records, accounts,
//! account room sets and DM conversations included: through a [`FailingStore`] over both
//! backends, through a JSON store whose mailbox replacement fails in the middle of a batch, and
//! for real, on a full file system.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chat_core::{DirectMessage, Record, RoomMessage, RoomName, Snapshot};
use chat_store::conformance::{HASH, account, direct, direct_from, id_of, key, message, rooms_of};
use chat_store::{FailingStore, JsonFileStore, MemoryStore, Store, StoreError};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn ids(messages: &[RoomMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id.get()).collect()
}

async fn history_ids(store: &dyn Store, name: &str) -> Vec<u64> {
    ids(&store.history(&room(name), None, usize::MAX).await.unwrap())
}

fn dm_ids(dms: &[DirectMessage]) -> Vec<u64> {
    dms.iter().map(|dm| dm.id.get()).collect()
}

/// The ids of the whole conversation of `a` and `b`.
async fn conversation_ids(store: &dyn Store, a: &str, b: &str) -> Vec<u64> {
    let dms = store.dm_history(&key(a), &key(b), None, usize::MAX).await;
    dm_ids(&dms.unwrap())
}

/// Runs a failed append and a recovery through `store`, returning the snapshot it holds at the
/// end, which is exactly what was acknowledged.
async fn fail_and_recover(store: &FailingStore) -> Snapshot {
    let switch = store.switch();
    store
        .append(&[
            Record::Message(message("general", 1, "one")),
            Record::Queued(direct(2, "bob", "psst")),
            Record::Dm(direct(2, "bob", "psst")),
            Record::Account(account("Bob", None)),
            rooms_of("bob", &["general"]),
        ])
        .await
        .unwrap();
    let acknowledged = store.load(100).await.unwrap();

    switch.fail_appends(true);
    for _ in 0..2 {
        let failed = store
            .append(&[
                Record::Message(message("general", 3, "never stored")),
                Record::Message(message("fresh", 4, "never stored")),
                Record::Delivered {
                    owner: key("bob"),
                    through: id_of(2),
                },
                Record::Account(account("carol", Some(HASH))),
                Record::Account(account("bob", Some(HASH))),
                rooms_of("bob", &[]),
                rooms_of("carol", &["fresh"]),
                Record::Dm(direct_from(5, "bob", "alice", "never stored")),
                Record::Dm(direct_from(6, "carol", "dave", "never stored")),
            ])
            .await;
        assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
    }
    assert!(
        store.recover().await.is_err(),
        "recover fails while failing"
    );
    assert_eq!(store.load(100).await.unwrap(), acknowledged);

    switch.fail_appends(false);
    store.recover().await.unwrap();
    assert_eq!(store.load(100).await.unwrap(), acknowledged);
    assert_eq!(store.rooms().await.unwrap(), vec![room("general")]);
    assert_eq!(store.account(&key("carol")).await.unwrap(), None);
    assert_eq!(
        store.account(&key("bob")).await.unwrap(),
        Some(account("Bob", None)),
        "the failed replacement is not stored"
    );
    let rooms = store.load(1).await.unwrap().account_rooms;
    assert_eq!(
        rooms.into_iter().collect::<Vec<_>>(),
        vec![(key("bob"), vec![room("general")])],
        "the failed room sets are not stored"
    );
    assert_eq!(conversation_ids(store, "alice", "bob").await, vec![2]);
    assert!(conversation_ids(store, "carol", "dave").await.is_empty());
    // The failed call's ids were never stored, so they can be used now.
    store
        .append(&[
            Record::Message(message("general", 3, "three")),
            Record::Dm(direct_from(4, "bob", "alice", "four")),
        ])
        .await
        .unwrap();
    assert_eq!(history_ids(store, "general").await, vec![1, 3]);
    assert_eq!(conversation_ids(store, "alice", "bob").await, vec![2, 4]);
    let snapshot = store.load(100).await.unwrap();
    assert_eq!(snapshot.next_id, Some(id_of(5)));
    assert_eq!(snapshot.mailboxes[&key("bob")].len(), 1);
    assert_eq!(dm_ids(&snapshot.dms[&key("alice")].messages), vec![2, 4]);
    assert!(!snapshot.dms.contains_key(&key("carol")));
    snapshot
}

#[tokio::test]
async fn a_failed_append_then_recover_keeps_exactly_the_acknowledged_records_in_memory() {
    let store = FailingStore::new(Arc::new(MemoryStore::new()));
    fail_and_recover(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_then_recover_keeps_exactly_the_acknowledged_records_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FailingStore::new(Arc::new(JsonFileStore::open(tmp.path()).await.unwrap()));
    let at_end = fail_and_recover(&store).await;
    store.close().await.unwrap();

    let reopened = JsonFileStore::open(tmp.path()).await.unwrap();
    assert_eq!(reopened.load(100).await.unwrap(), at_end);
    reopened.close().await.unwrap();
}

/// Makes every replacement of `path` fail: a directory where its temporary file goes.
fn block_replacement(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::create_dir(&tmp).unwrap();
    tmp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_half_way_is_rolled_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = JsonFileStore::open(dir).await.unwrap();
    store
        .append(&[
            // Above every id used below, so the delivery does not rewrite ids.json first.
            Record::IdsReserved { until: id_of(100) },
            Record::Message(message("general", 1, "one")),
            Record::Queued(direct(2, "bob", "first")),
            Record::Queued(direct(3, "bob", "second")),
            Record::Queued(direct(4, "carol", "for carol")),
            Record::Dm(direct(4, "carol", "for carol")),
        ])
        .await
        .unwrap();
    let general = dir.join("rooms/general.jsonl");
    let alice_carol = dir.join("dms/alice+carol.jsonl");
    let new_conversation = dir.join("dms/bob+dave.jsonl");
    let bob = dir.join("mailboxes/bob.jsonl");
    let carol = dir.join("mailboxes/carol.jsonl");
    let accounts = dir.join("accounts.jsonl");
    let account_rooms = dir.join("account_rooms.jsonl");
    let files_before: Vec<Vec<u8>> = [&general, &bob, &carol, &alice_carol]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    let acknowledged = store.load(100).await.unwrap();

    // The room and conversation appends (each to an old file and a new one) and carol's are
    // written and fsynced before bob's partial delivery fails to replace his mailbox.
    let blocker = block_replacement(&bob);
    let batch = [
        Record::Message(message("general", 5, "rolled back")),
        Record::Message(message("fresh", 6, "rolled back")),
        Record::Queued(direct(7, "carol", "rolled back")),
        Record::Dm(direct_from(8, "carol", "alice", "rolled back")),
        Record::Dm(direct_from(9, "dave", "bob", "rolled back")),
        Record::Account(account("Dave", Some(HASH))),
        rooms_of("dave", &["fresh", "general"]),
        Record::Delivered {
            owner: key("bob"),
            through: id_of(2),
        },
    ];
    let failed = store.append(&batch).await;
    assert!(
        matches!(&failed, Err(StoreError::Io { path, .. }) if path.starts_with(&blocker)),
        "{failed:?}"
    );
    let files_after: Vec<Vec<u8>> = [&general, &bob, &carol, &alice_carol]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert!(files_after == files_before, "the batch left no trace");
    assert!(!dir.join("rooms/fresh.jsonl").exists());
    assert!(
        !new_conversation.exists(),
        "the conversation file the batch created is removed"
    );
    assert!(
        !accounts.exists(),
        "the accounts file the batch created is removed"
    );
    assert!(
        !account_rooms.exists(),
        "the account rooms file the batch created is removed"
    );
    assert_eq!(store.account(&key("dave")).await.unwrap(), None);
    assert_eq!(store.load(100).await.unwrap(), acknowledged);

    // Until a recovery, appends are refused without trying.
    let refused = store
        .append(&[Record::Message(message("general", 8, "refused"))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Halted { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        store.flush().await,
        Err(StoreError::Halted { .. })
    ));

    // The disk takes writes, so recovery succeeds; the blocked replacement fails again, and
    // this time the accounts file it appended to is cut back to its acknowledged line.
    store.recover().await.unwrap();
    store
        .append(&[
            Record::Account(account("Erin", None)),
            rooms_of("erin", &["general"]),
        ])
        .await
        .unwrap();
    let acknowledged = store.load(100).await.unwrap();
    let accounts_before = fs::read(&accounts).unwrap();
    let account_rooms_before = fs::read(&account_rooms).unwrap();
    assert!(matches!(
        store.append(&batch).await,
        Err(StoreError::Io { .. })
    ));
    assert_eq!(fs::read(&accounts).unwrap(), accounts_before);
    assert_eq!(fs::read(&account_rooms).unwrap(), account_rooms_before);
    assert_eq!(store.account(&key("dave")).await.unwrap(), None);
    fs::remove_dir(&blocker).unwrap();
    store.recover().await.unwrap();
    store.recover().await.unwrap();
    assert_eq!(store.load(100).await.unwrap(), acknowledged);
    assert_eq!(fs::read(&accounts).unwrap(), accounts_before);
    assert_eq!(fs::read(&account_rooms).unwrap(), account_rooms_before);
    store.append(&batch).await.unwrap();
    let at_end = store.load(100).await.unwrap();
    assert_eq!(history_ids(&store, "general").await, vec![1, 5]);
    assert_eq!(history_ids(&store, "fresh").await, vec![6]);
    assert_eq!(conversation_ids(&store, "carol", "alice").await, vec![4, 8]);
    assert_eq!(conversation_ids(&store, "bob", "dave").await, vec![9]);
    assert_eq!(
        store.account(&key("dave")).await.unwrap(),
        Some(account("Dave", Some(HASH)))
    );
    assert_eq!(
        at_end.account_rooms[&key("dave")],
        vec![room("fresh"), room("general")]
    );
    store.close().await.unwrap();

    let reopened = JsonFileStore::open(dir).await.unwrap();
    assert_eq!(reopened.load(100).await.unwrap(), at_end);
    let dm_ids = |owner| {
        at_end.mailboxes[&key(owner)]
            .iter()
            .map(|dm| dm.id.get())
            .collect::<Vec<_>>()
    };
    assert_eq!(dm_ids("bob"), vec![3]);
    assert_eq!(dm_ids("carol"), vec![4, 7]);
    reopened.close().await.unwrap();
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`, or says why not.
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        if !running_as_root() {
            return Err("not running as root".into());
        }
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // A file may still be open (a store dropped by a panic): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes zeros to a new file at `path` until the file system is full.
fn fill_up(path: &Path) {
    let mut file = fs::File::create(path).unwrap();
    let block = [0u8; 4096];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::StorageFull => return,
            Err(e) => panic!("filling up {}: {e}", path.display()),
        }
    }
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            // Real, effective, saved, file system.
            Some(uids.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_rolls_back_the_failed_append_and_recovers_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mount_point = tmp.path().join("mnt");
    fs::create_dir(&mount_point).unwrap();
    let _tmpfs = match Tmpfs::mount(&mount_point, "256k") {
        Ok(mounted) => mounted,
        Err(why) => {
            println!("skipped: cannot mount a small tmpfs to fill ({why})");
            return;
        }
    };
    let dir = mount_point.join("data");
    let store = JsonFileStore::open(&dir).await.unwrap();
    store
        .append(&[Record::Queued(direct(1, "bob", "waiting"))])
        .await
        .unwrap();
    // Space to free later.
    let filler = mount_point.join("filler");
    fs::write(&filler, vec![0u8; 64 * 1024]).unwrap();

    // Fill the disk with appends of about 4 KiB each, each with a DM and an account.
    let text = "x".repeat(2000);
    let user = |id: u64| format!("user{id}");
    let mut acknowledged = Vec::new();
    let mut failed_id = None;
    for id in 2..1000 {
        match store
            .append(&[
                Record::Message(message("general", id, &text)),
                Record::Dm(direct_from(id, "bob", "alice", &text)),
                Record::Account(account(&user(id), Some(HASH))),
            ])
            .await
        {
            Ok(()) => acknowledged.push(id),
            Err(StoreError::Io { source, .. }) => {
                assert_eq!(source.kind(), ErrorKind::StorageFull, "{source}");
                failed_id = Some(id);
                break;
            }
            Err(other) => panic!("expected a full disk, got {other}"),
        }
    }
    let failed_id = failed_id.expect("256 KiB fill up within 1000 appends of 4 KiB");
    assert!(!acknowledged.is_empty());

    // The failed record is not there; everything acknowledged is.
    assert_eq!(history_ids(&store, "general").await, acknowledged);
    let snapshot = store.load(usize::MAX).await.unwrap();
    assert_eq!(
        ids(&snapshot.rooms[&room("general")].messages),
        acknowledged
    );
    assert_eq!(snapshot.next_id, Some(id_of(failed_id)));
    let room_file = fs::read_to_string(dir.join("rooms/general.jsonl")).unwrap();
    assert_eq!(room_file.lines().count(), acknowledged.len());
    assert!(room_file.ends_with('\n'), "no torn line left behind");
    assert_eq!(conversation_ids(&store, "alice", "bob").await, acknowledged);
    assert_eq!(dm_ids(&snapshot.dms[&key("bob")].messages), acknowledged);
    let conversation_file = fs::read_to_string(dir.join("dms/alice+bob.jsonl")).unwrap();
    assert_eq!(conversation_file.lines().count(), acknowledged.len());
    assert!(
        conversation_file.ends_with('\n'),
        "no torn line left behind"
    );
    let acknowledged_users: Vec<String> = acknowledged.iter().map(|&id| user(id)).collect();
    let stored_users = |snapshot: &Snapshot| -> Vec<String> {
        let mut users: Vec<String> = snapshot
            .accounts
            .values()
            .map(|name| name.to_string())
            .collect();
        users.sort_by_key(|name| name[4..].parse::<u64>().unwrap());
        users
    };
    assert_eq!(stored_users(&snapshot), acknowledged_users);
    assert_eq!(store.account(&key(&user(failed_id))).await.unwrap(), None);
    let accounts_file = fs::read_to_string(dir.join("accounts.jsonl")).unwrap();
    assert_eq!(accounts_file.lines().count(), acknowledged.len());
    assert!(accounts_file.ends_with('\n'), "no torn line left behind");

    // Refused at once while halted; recovery fails while the disk is full. (Rolling the batch
    // back may have freed a page one of its files had taken, so fill the disk up again.)
    let top_up = mount_point.join("top-up");
    fill_up(&top_up);
    let refused = store
        .append(&[Record::Message(message("general", failed_id, "x"))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Halted { .. })),
        "{refused:?}"
    );
    let still_full = store.recover().await;
    assert!(
        matches!(&still_full, Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::StorageFull),
        "{still_full:?}"
    );
    assert!(!dir.join("write-probe.tmp").exists());

    // Free space; recovery succeeds and appends work again.
    fs::remove_file(&filler).unwrap();
    fs::remove_file(&top_up).unwrap();
    let mut recovered = store.recover().await;
    for _ in 0..3 {
        if recovered.is_ok() {
            break;
        }
        recovered = store.recover().await;
    }
    recovered.expect("the store recovers once space is free");
    store
        .append(&[
            Record::Message(message("general", failed_id, "after")),
            Record::Dm(direct_from(failed_id, "bob", "alice", "after")),
        ])
        .await
        .unwrap();
    acknowledged.push(failed_id);
    assert_eq!(history_ids(&store, "general").await, acknowledged);
    assert_eq!(conversation_ids(&store, "alice", "bob").await, acknowledged);
    store.close().await.unwrap();

    // From disk: exactly the acknowledged records, and ids continue after them.
    let reopened = JsonFileStore::open(&dir).await.unwrap();
    assert_eq!(history_ids(&reopened, "general").await, acknowledged);
    assert_eq!(
        conversation_ids(&reopened, "bob", "alice").await,
        acknowledged
    );
    let snapshot = reopened.load(1).await.unwrap();
    assert_eq!(snapshot.next_id, Some(id_of(failed_id + 1)));
    assert_eq!(snapshot.mailboxes[&key("bob")].len(), 1);
    assert_eq!(stored_users(&snapshot), acknowledged_users);
    assert_eq!(
        reopened.account(&key(&user(2))).await.unwrap(),
        Some(account(&user(2), Some(HASH)))
    );
    reopened
        .append(&[Record::Message(message("general", failed_id + 1, "more"))])
        .await
        .unwrap();
    reopened.close().await.unwrap();
}
