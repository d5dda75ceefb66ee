//! A crash test: a child process appends with several concurrent writers and reports every
//! acknowledged record on stdout; the parent kills it (SIGKILL) mid-stream, reopens the store and
//! checks that everything acknowledged is there (accounts and DM conversations included), that a
//! delivery was all or nothing, and that ids continue above everything acknowledged.
//!
//! The child is this test binary itself, re-invoked with `--exact crash_child` and an environment
//! variable naming the store directory. Synchronisation is by reading the child's output; there
//! are no sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chat_core::{MessageId, Record};
use chat_store::conformance::{HASH, account, direct, direct_from, id_of, key, message};
use chat_store::{JsonFileStore, Store};
use tokio::sync::Mutex;

/// Set in the child: the store directory.
const CHILD_ENV: &str = "CHAT_STORE_CRASH_CHILD_DIR";
/// Every report line starts with this (the test harness may print on the same stdout).
const MARK: &str = "ACK ";
const ROOMS: [&str; 3] = ["general", "rust", "random"];
/// The conversations the DM writer takes turns in, both directions each (the queue writer has
/// alice and bob's).
const CONVERSATIONS: [(&str, &str); 2] = [("alice", "carol"), ("carol", "erin")];
/// How many acknowledgements the parent waits for before it kills the child.
const KILL_AFTER: usize = 400;
/// A bound on the child's work, in case it is never killed.
const MAX_ROUNDS: u64 = 20_000;

/// Hands out ids, reserving blocks durably first, like the core.
struct Ids {
    next: u64,
    reserved: u64,
}

async fn allocate(ids: &Mutex<Ids>, store: &JsonFileStore) -> MessageId {
    let mut ids = ids.lock().await;
    if ids.next >= ids.reserved {
        let until = ids.next + 50;
        store
            .append(&[Record::IdsReserved {
                until: id_of(until),
            }])
            .await
            .expect("reserving ids");
        ids.reserved = until;
        println!("{MARK}reserved {until}");
    }
    ids.next += 1;
    id_of(ids.next - 1)
}

/// The child's role: append forever (bounded), reporting each acknowledged record.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // An ordinary test run: nothing to do.
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(JsonFileStore::open(dir).await.unwrap());
        let ids = Arc::new(Mutex::new(Ids {
            next: 1,
            reserved: 1,
        }));
        let mut tasks = Vec::new();
        for room in ROOMS {
            let (store, ids) = (store.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..MAX_ROUNDS {
                    let id = allocate(&ids, &store).await;
                    let record = Record::Message(message(room, id.get(), "hello"));
                    store.append(&[record]).await.expect("appending a message");
                    println!("{MARK}message {room} {id}");
                }
            }));
        }
        let (dm_store, dm_ids) = (store.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..MAX_ROUNDS {
                let (a, b) = CONVERSATIONS[round as usize % 2];
                let (from, to) = if round % 4 < 2 { (a, b) } else { (b, a) };
                let id = allocate(&dm_ids, &dm_store).await;
                let record = Record::Dm(direct_from(id.get(), from, to, "hello"));
                dm_store.append(&[record]).await.expect("appending a DM");
                println!("{MARK}dm {a}+{b} {id}");
            }
        }));
        tasks.push(tokio::spawn(async move {
            for round in 0..MAX_ROUNDS {
                let mut queued = Vec::new();
                for _ in 0..3 {
                    // Queued for an offline account, and so in the conversation too.
                    let id = allocate(&ids, &store).await;
                    let dm = direct(id.get(), "Bob", "psst");
                    let records = [Record::Queued(dm.clone()), Record::Dm(dm)];
                    store.append(&records).await.expect("queueing a DM");
                    println!("{MARK}queued {id}");
                    queued.push(id);
                }
                // Alternate a partial delivery (a rewrite) and a full one (an unlink).
                let through = queued[if round % 2 == 0 { 1 } else { 2 }];
                println!("{MARK}delivering {through}");
                let record = Record::Delivered {
                    owner: key("bob"),
                    through,
                };
                store.append(&[record]).await.expect("delivering");
                println!("{MARK}delivered {through}");
                let record = Record::Account(account(&format!("User{round}"), Some(HASH)));
                store.append(&[record]).await.expect("storing an account");
                println!("{MARK}account {round}");
            }
        }));
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// What the child reported.
#[derive(Default, Debug)]
struct Reports {
    messages: BTreeMap<String, BTreeSet<u64>>,
    /// By conversation, `a+b`.
    dms: BTreeMap<String, BTreeSet<u64>>,
    queued: BTreeSet<u64>,
    delivered: u64,
    delivering: u64,
    reserved: u64,
    accounts: BTreeSet<u64>,
    count: usize,
}

impl Reports {
    fn read(&mut self, line: &str) {
        let Some(at) = line.find(MARK) else {
            return;
        };
        let words: Vec<&str> = line[at + MARK.len()..].split_whitespace().collect();
        let number = |s: &str| s.parse::<u64>().expect("the child prints numbers");
        match words.as_slice() {
            ["message", room, id] => {
                self.messages
                    .entry(room.to_string())
                    .or_default()
                    .insert(number(id));
            }
            ["dm", conversation, id] => {
                self.dms
                    .entry(conversation.to_string())
                    .or_default()
                    .insert(number(id));
            }
            ["queued", id] => {
                self.queued.insert(number(id));
            }
            ["delivering", id] => self.delivering = self.delivering.max(number(id)),
            ["delivered", id] => self.delivered = self.delivered.max(number(id)),
            ["reserved", until] => self.reserved = self.reserved.max(number(until)),
            ["account", round] => {
                self.accounts.insert(number(round));
            }
            other => panic!("unexpected report {other:?}"),
        }
        self.count += 1;
    }

    fn max_id(&self) -> u64 {
        let rooms = self.messages.values().flatten();
        rooms
            .chain(self.dms.values().flatten())
            .chain(&self.queued)
            .copied()
            .chain([self.delivered])
            .max()
            .unwrap_or(0)
    }
}

#[test]
fn a_killed_writer_loses_nothing_it_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut reports = Reports::default();
    let mut line = String::new();
    while reports.count < KILL_AFTER {
        line.clear();
        let read = output.read_line(&mut line).unwrap();
        assert!(
            read > 0,
            "the child stopped after {} reports",
            reports.count
        );
        reports.read(&line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What the child printed before it died was acknowledged too.
    for line in output.lines() {
        reports.read(&line.unwrap());
    }
    assert!(reports.count >= KILL_AFTER);
    assert_eq!(
        reports.messages.len(),
        ROOMS.len(),
        "every writer got going"
    );
    assert!(
        reports.delivered > 0,
        "deliveries were exercised: {reports:?}"
    );
    assert!(
        !reports.accounts.is_empty(),
        "accounts were exercised: {reports:?}"
    );
    assert_eq!(
        reports.dms.len(),
        CONVERSATIONS.len(),
        "DMs were exercised: {reports:?}"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = JsonFileStore::open(&dir).await.unwrap();
        let snapshot = store.load(usize::MAX).await.unwrap();

        for (room, acked) in &reports.messages {
            let tail = snapshot
                .rooms
                .get(&room.parse().unwrap())
                .unwrap_or_else(|| panic!("#{room} is gone"));
            let stored: BTreeSet<u64> = tail.messages.iter().map(|m| m.id.get()).collect();
            let missing: Vec<_> = acked.difference(&stored).collect();
            assert!(missing.is_empty(), "#{room} lost {missing:?}");
            // Anything extra is the one append in flight when the child died.
            let extra: Vec<_> = stored.difference(acked).collect();
            assert!(extra.len() <= 1, "#{room} has unreported {extra:?}");
            assert!(extra.iter().all(|&&id| id > *acked.last().unwrap()));
        }

        // Every acknowledged DM is in its conversation; anything extra is the one DM in flight
        // when the child died (one writer takes turns in these conversations).
        let mut unreported = Vec::new();
        for (conversation, acked) in &reports.dms {
            let (a, b) = conversation.split_once('+').unwrap();
            let stored: BTreeSet<u64> = store
                .dm_history(&key(a), &key(b), None, usize::MAX)
                .await
                .unwrap()
                .iter()
                .map(|dm| dm.id.get())
                .collect();
            let missing: Vec<_> = acked.difference(&stored).collect();
            assert!(missing.is_empty(), "{conversation} lost {missing:?}");
            unreported.extend(stored.difference(acked).copied());
        }
        let last_dm = reports.dms.values().flatten().max().copied().unwrap_or(0);
        assert!(
            unreported.len() <= 1 && unreported.iter().all(|&id| id > last_dm),
            "unreported DMs {unreported:?}"
        );
        // Carol's tail merges both her conversations.
        let carol: Vec<u64> = snapshot.dms[&key("carol")]
            .messages
            .iter()
            .map(|dm| dm.id.get())
            .collect();
        let mut expected: Vec<u64> = reports.dms.values().flatten().copied().collect();
        expected.extend(&unreported);
        expected.sort();
        assert_eq!(carol, expected);

        // Every acknowledged queued DM is in alice and bob's conversation, delivered or not.
        let conversation: BTreeSet<u64> = store
            .dm_history(&key("bob"), &key("alice"), None, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|dm| dm.id.get())
            .collect();
        let missing: Vec<_> = reports.queued.difference(&conversation).collect();
        assert!(missing.is_empty(), "the conversation lost {missing:?}");

        let bob: BTreeSet<u64> = snapshot
            .mailboxes
            .get(&key("bob"))
            .map(|dms| dms.iter().map(|dm| dm.id.get()).collect())
            .unwrap_or_default();
        let (done, maybe) = (reports.delivered, reports.delivering);
        for &id in &reports.queued {
            if id > maybe {
                assert!(bob.contains(&id), "queued DM {id} was lost");
            }
        }
        assert!(
            bob.iter().all(|&id| id > done),
            "a delivered DM came back: {bob:?}, delivered through {done}"
        );
        let in_doubt: Vec<bool> = reports
            .queued
            .iter()
            .filter(|&&id| done < id && id <= maybe)
            .map(|id| bob.contains(id))
            .collect();
        assert!(
            in_doubt.iter().all(|&b| b) || in_doubt.iter().all(|&b| !b),
            "a delivery was applied in part: {in_doubt:?}"
        );

        // Every acknowledged account is there, spelled and hashed as stored; at most the one in
        // flight is there unreported.
        for round in &reports.accounts {
            let name = format!("User{round}");
            assert_eq!(
                store.account(&key(&name)).await.unwrap(),
                Some(account(&name, Some(HASH))),
                "account {name} was lost"
            );
        }
        let stored: Vec<&str> = snapshot.accounts.values().map(|n| n.as_str()).collect();
        let next_round = reports.accounts.last().map_or(0, |last| last + 1);
        assert!(
            stored.len() == reports.accounts.len()
                || (stored.len() == reports.accounts.len() + 1
                    && stored.contains(&format!("User{next_round}").as_str())),
            "accounts {stored:?}, acknowledged {:?}",
            reports.accounts
        );

        let next_id = snapshot.next_id.expect("ids were stored").get();
        assert!(
            next_id >= reports.reserved,
            "{next_id} < {}",
            reports.reserved
        );
        assert!(next_id > reports.max_id());
        store
            .append(&[Record::Message(message(
                "general",
                next_id,
                "after the crash",
            ))])
            .await
            .expect("ids continue after the crash");
        store.close().await.unwrap();
    });
}
