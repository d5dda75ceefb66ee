//! [`RedisStore`] against a real `redis-server` (one per test, see [`RedisServer`]): the
//! conformance suite and the restart checks in exclusive mode, across reopens and Redis
//! restarts; the shared mode of a cluster's nodes; appends while Redis is down, or whose answer
//! is lost; and malformed values in Redis.

use std::sync::Arc;
use std::time::Duration;

use chat_cluster::redis_server::RedisServer;
use chat_cluster::{RedisStore, StoreMode};
use chat_core::{DirectMessage, Record, RoomMessage, RoomName};
use chat_store::conformance::{
    self, HASH, account, direct, direct_from, id_of, key, message, rooms_of,
};
use chat_store::{MemoryStore, Store, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn ids(messages: &[RoomMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id.get()).collect()
}

fn dm_ids(dms: &[DirectMessage]) -> Vec<u64> {
    dms.iter().map(|dm| dm.id.get()).collect()
}

async fn history_ids(store: &dyn Store, name: &str) -> Vec<u64> {
    ids(&store.history(&room(name), None, usize::MAX).await.unwrap())
}

async fn conversation_ids(store: &dyn Store, a: &str, b: &str) -> Vec<u64> {
    let dms = store.dm_history(&key(a), &key(b), None, usize::MAX).await;
    dm_ids(&dms.unwrap())
}

/// A plain connection to `redis`, to look at or damage what a store wrote.
async fn admin(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Runs the command `words` on `admin`.
async fn command(admin: &mut MultiplexedConnection, words: &[&str]) {
    let () = redis::cmd(words[0])
        .arg(&words[1..])
        .query_async(admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let redis = RedisServer::launch().await.unwrap();
    let mut n = 0;
    conformance::check_store(|| {
        // Each check gets an empty store: a prefix of its own.
        n += 1;
        let (url, prefix) = (redis.url(), format!("conformance{n}:"));
        async move { RedisStore::connect(&url, &prefix).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_everything_across_reopens() {
    let redis = RedisServer::launch().await.unwrap();
    conformance::check_restart(|| {
        let url = redis.url();
        async move { RedisStore::connect(&url, "chat:").await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_everything_across_redis_restarts() {
    let redis = Arc::new(tokio::sync::Mutex::new(
        RedisServer::launch().await.unwrap(),
    ));
    let mut opened = 0;
    conformance::check_restart(|| {
        // Every reopen but the first comes after a clean Redis shutdown and start.
        opened += 1;
        let (redis, restart) = (redis.clone(), opened > 1);
        async move {
            let mut redis = redis.lock().await;
            if restart {
                redis.stop().await.unwrap();
                redis.start().await.unwrap();
            }
            RedisStore::connect(&redis.url(), "chat:").await.unwrap()
        }
    })
    .await;
}

/// The batches of records a cluster's cores emit, the same on every node: messages in two
/// rooms, DMs (queued too), registrations, and the records a shared store ignores.
fn cluster_batches() -> Vec<Vec<Record>> {
    (0..60u64)
        .map(|n| {
            let id = 2 * n + 1;
            let (from, to) =
                [("alice", "bob"), ("Bob", "alice"), ("carol", "alice")][n as usize % 3];
            let mut batch = vec![
                Record::IdsReserved {
                    until: id_of(1000 + id),
                },
                Record::Message(message(["general", "rust"][n as usize % 2], id, "hi")),
                Record::Queued(direct_from(id + 1, from, to, "psst")),
                Record::Dm(direct_from(id + 1, from, to, "psst")),
                rooms_of(from, &["general"]),
            ];
            if n < 3 {
                batch.push(Record::Account(account(from, Some(HASH))));
            }
            if n % 10 == 9 {
                batch.push(Record::Delivered {
                    owner: key(to),
                    through: id_of(id + 1),
                });
            }
            batch
        })
        .collect()
}

async fn append_all(store: Arc<RedisStore>, batches: Vec<Vec<Record>>) {
    for batch in batches {
        store.append(&batch).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_nodes_keep_one_copy_of_each_record() {
    let redis = RedisServer::launch().await.unwrap();
    let node_a = Arc::new(RedisStore::shared(&redis.url(), "cluster:").await.unwrap());
    let node_b = Arc::new(RedisStore::shared(&redis.url(), "cluster:").await.unwrap());
    let batches = cluster_batches();
    // Both nodes replay the log at once, interleaving; then node b, lagging, replays the first
    // half again and node a the rest.
    let a = tokio::spawn(append_all(node_a.clone(), batches.clone()));
    let b = tokio::spawn(append_all(node_b.clone(), batches.clone()));
    a.await.unwrap();
    b.await.unwrap();
    append_all(node_b.clone(), batches[..30].to_vec()).await;
    append_all(node_a.clone(), batches[30..].to_vec()).await;

    // What the store holds is what a store that got each message, DM and account once holds.
    let once = MemoryStore::new();
    for batch in &batches {
        let kept: Vec<Record> = batch
            .iter()
            .filter(|r| matches!(r, Record::Message(_) | Record::Dm(_) | Record::Account(_)))
            .cloned()
            .collect();
        once.append(&kept).await.unwrap();
    }
    for node in [&node_a, &node_b] {
        let node: &dyn Store = &**node;
        for history in [0, 1, 7, 1000] {
            assert_eq!(
                node.load(history).await.unwrap(),
                once.load(history).await.unwrap()
            );
        }
        assert_eq!(
            history_ids(node, "general").await.len(),
            30,
            "one copy of each"
        );
        assert_eq!(
            history_ids(node, "general").await,
            history_ids(&once, "general").await
        );
        assert_eq!(
            conversation_ids(node, "alice", "bob").await,
            conversation_ids(&once, "alice", "bob").await
        );
        for before in [None, Some(1), Some(50), Some(51), Some(200)] {
            let before = before.map(id_of);
            assert_eq!(
                node.history(&room("rust"), before, 4).await.unwrap(),
                once.history(&room("rust"), before, 4).await.unwrap()
            );
            assert_eq!(
                node.dm_history(&key("alice"), &key("carol"), before, 3)
                    .await
                    .unwrap(),
                once.dm_history(&key("carol"), &key("alice"), before, 3)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(
            node.rooms().await.unwrap(),
            vec![room("general"), room("rust")]
        );
    }
    let snapshot = node_a.load(10).await.unwrap();
    assert_eq!(
        snapshot.next_id,
        Some(id_of(121)),
        "the counter covers messages and DMs, not reservations"
    );
    assert!(snapshot.mailboxes.is_empty(), "mailboxes are the cluster's");
    assert!(
        snapshot.account_rooms.is_empty(),
        "room sets are the cluster's"
    );
    assert_eq!(snapshot.accounts.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_message_or_dm_lands_in_its_place() {
    let redis = RedisServer::launch().await.unwrap();
    let node_a = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    let node_b = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    node_a
        .append(&[
            Record::Message(message("general", 5, "five")),
            Record::Dm(direct_from(6, "alice", "bob", "six")),
        ])
        .await
        .unwrap();
    // Node b got further back in the log: it stores what node a never did, skips the rest.
    node_b
        .append(&[
            Record::Message(message("general", 3, "three")),
            Record::Dm(direct_from(4, "bob", "alice", "four")),
            Record::Message(message("general", 5, "five")),
            Record::Dm(direct_from(6, "alice", "bob", "six")),
            Record::Message(message("general", 7, "seven")),
        ])
        .await
        .unwrap();
    assert_eq!(history_ids(&node_a, "general").await, vec![3, 5, 7]);
    assert_eq!(conversation_ids(&node_b, "bob", "alice").await, vec![4, 6]);
    let page = node_a.history(&room("general"), Some(id_of(7)), 1).await;
    assert_eq!(
        page.unwrap(),
        vec![(*message("general", 5, "five")).clone()]
    );
    assert_eq!(node_b.load(1).await.unwrap().next_id, Some(id_of(8)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_account_record_never_downgrades_an_account() {
    let redis = RedisServer::launch().await.unwrap();
    let node_a = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    let node_b = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    // A token login made the account, then its owner set a password.
    node_a
        .append(&[Record::Account(account("alice", None))])
        .await
        .unwrap();
    node_a
        .append(&[Record::Account(account("Alice", Some(HASH)))])
        .await
        .unwrap();
    // Node b replays both records late: the hashless one changes nothing.
    node_b
        .append(&[Record::Account(account("alice", None))])
        .await
        .unwrap();
    node_b
        .append(&[Record::Account(account("Alice", Some(HASH)))])
        .await
        .unwrap();
    let alice = Some(account("Alice", Some(HASH)));
    assert_eq!(node_a.account(&key("alice")).await.unwrap(), alice);
    assert_eq!(node_b.account(&key("ALICE")).await.unwrap(), alice);
    // Neither does another record for a name with a hash, nor a second hashless one.
    node_b
        .append(&[
            Record::Account(account("alice", Some("$argon2id$other"))),
            Record::Account(account("bob", None)),
            Record::Account(account("BOB", None)),
        ])
        .await
        .unwrap();
    assert_eq!(node_a.account(&key("alice")).await.unwrap(), alice);
    assert_eq!(
        node_a.account(&key("bob")).await.unwrap(),
        Some(account("bob", None))
    );
    let accounts = node_b.load(1).await.unwrap().accounts;
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[&key("alice")].as_str(), "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_ignores_mailboxes_room_sets_and_reservations() {
    let redis = RedisServer::launch().await.unwrap();
    let node = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    node.append(&[
        Record::IdsReserved { until: id_of(100) },
        Record::Queued(direct(1, "bob", "psst")),
        rooms_of("bob", &["general"]),
        Record::Delivered {
            owner: key("bob"),
            through: id_of(1),
        },
    ])
    .await
    .unwrap();
    assert!(node.mailbox(&key("bob")).await.unwrap().is_empty());
    assert_eq!(node.load(10).await.unwrap(), Default::default());
    // Out of order for an exclusive store; a shared one skips or places, never refuses.
    node.append(&[
        Record::Queued(direct(3, "bob", "psst")),
        Record::Queued(direct(2, "bob", "psst")),
    ])
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_while_redis_is_down_and_work_again_after_recover() {
    let mut redis = RedisServer::launch().await.unwrap();
    let exclusive = RedisStore::connect(&redis.url(), "chat:").await.unwrap();
    let shared = RedisStore::shared(&redis.url(), "cluster:").await.unwrap();
    for store in [&exclusive, &shared] {
        store
            .append(&[Record::Message(message("general", 1, "stored"))])
            .await
            .unwrap();
    }

    redis.stop().await.unwrap();
    for store in [&exclusive, &shared] {
        let failed = store
            .append(&[Record::Message(message("general", 2, "not stored"))])
            .await;
        assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
        let halted = store
            .append(&[Record::Message(message("general", 3, "not tried"))])
            .await;
        assert!(
            matches!(halted, Err(StoreError::Halted { .. })),
            "{halted:?}"
        );
        let read = store.history(&room("general"), None, 10).await;
        assert!(matches!(read, Err(StoreError::Io { .. })), "{read:?}");
        let recovered = store.recover().await;
        assert!(
            matches!(recovered, Err(StoreError::Io { .. })),
            "{recovered:?}"
        );
    }

    redis.start().await.unwrap();
    for store in [&exclusive, &shared] {
        let halted = store
            .append(&[Record::Message(message("general", 4, "not tried"))])
            .await;
        assert!(
            matches!(halted, Err(StoreError::Halted { .. })),
            "refused until it recovers: {halted:?}"
        );
        store.recover().await.unwrap();
        assert_eq!(history_ids(store, "general").await, vec![1]);
        store
            .append(&[Record::Message(message("general", 2, "stored now"))])
            .await
            .unwrap();
        assert_eq!(history_ids(store, "general").await, vec![1, 2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_answer_is_lost_leaves_nothing_after_recover() {
    let redis = RedisServer::launch().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_response_timeout(Some(Duration::from_millis(200)));
    let manager = ConnectionManager::new_with_config(client, config)
        .await
        .unwrap();
    let store = RedisStore::from_manager(manager, "chat:", StoreMode::Exclusive)
        .await
        .unwrap();
    store
        .append(&[
            Record::Message(message("general", 1, "stored")),
            Record::Queued(direct(2, "bob", "psst")),
            Record::Account(account("bob", None)),
            rooms_of("bob", &["general"]),
        ])
        .await
        .unwrap();
    let acknowledged = store.load(10).await.unwrap();

    // Redis holds every write command until unpaused, so the append's answer times out; Redis
    // runs it once unpaused (unless the store's recover fenced it first).
    let mut admin = admin(&redis).await;
    command(&mut admin, &["CLIENT", "PAUSE", "20000", "WRITE"]).await;
    let lost = store
        .append(&[
            Record::Message(message("general", 3, "answer lost")),
            Record::Message(message("fresh", 4, "answer lost")),
            Record::Dm(direct_from(5, "bob", "alice", "answer lost")),
            Record::Delivered {
                owner: key("bob"),
                through: id_of(2),
            },
            Record::Account(account("Bob", Some(HASH))),
            rooms_of("bob", &[]),
        ])
        .await;
    assert!(matches!(lost, Err(StoreError::Io { .. })), "{lost:?}");
    command(&mut admin, &["CLIENT", "UNPAUSE"]).await;
    let halted = store
        .append(&[Record::Message(message("general", 6, "x"))])
        .await;
    assert!(
        matches!(halted, Err(StoreError::Halted { .. })),
        "{halted:?}"
    );

    store.recover().await.unwrap();
    let mut after = store.load(10).await.unwrap();
    assert!(after.next_id >= acknowledged.next_id);
    after.next_id = acknowledged.next_id;
    assert_eq!(after, acknowledged, "nothing of the lost call is left");
    assert!(conversation_ids(&store, "alice", "bob").await.is_empty());
    assert_eq!(
        store.account(&key("bob")).await.unwrap(),
        Some(account("bob", None))
    );
    store
        .append(&[Record::Message(message("general", 7, "after"))])
        .await
        .unwrap();
    assert_eq!(history_ids(&store, "general").await, vec![1, 7]);
}

/// Asserts that `result` is a [`StoreError::Corrupt`] naming `key`.
#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, key: &str) {
    match result {
        Err(StoreError::Corrupt { path, .. }) => {
            assert!(
                path.to_string_lossy().ends_with(key),
                "{path:?} names {key}"
            );
        }
        other => panic!("expected Corrupt for {key}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_values_in_redis_are_corrupt_errors() {
    let redis = RedisServer::launch().await.unwrap();
    let mut admin = admin(&redis).await;
    let open = |prefix: &str| {
        let (url, prefix) = (redis.url(), prefix.to_owned());
        async move { RedisStore::connect(&url, &prefix).await.unwrap() }
    };
    let id = |n: u64| format!("{n:020}");

    // Entries that are not entries: no id, another id than their JSON's, not JSON.
    let store = open("a:").await;
    let json6 = serde_json::to_string(&*message("general", 6, "six")).unwrap();
    command(&mut admin, &["SADD", "a:rooms", "general"]).await;
    for entry in [
        "garbage".to_owned(),
        format!("{}:{json6}", id(5)),
        format!("{}:{{", id(7)),
    ] {
        command(&mut admin, &["DEL", "a:room:general"]).await;
        command(&mut admin, &["ZADD", "a:room:general", "0", &entry]).await;
        assert_corrupt(
            store.history(&room("general"), None, 5).await,
            "a:room:general",
        );
        assert_corrupt(store.load(5).await, "a:room:general");
    }
    // An append on a log whose last entry has no id.
    command(&mut admin, &["ZADD", "a:room:general", "0", "zzz"]).await;
    let refused = store
        .append(&[Record::Message(message("general", 9, "x"))])
        .await;
    assert_corrupt(refused, "a:room:general");

    // A key of another type: reads fail, and an append touching it stores nothing at all.
    let store = open("b:").await;
    command(&mut admin, &["SET", "b:room:general", "x"]).await;
    assert_corrupt(
        store.history(&room("general"), None, 5).await,
        "b:room:general",
    );
    let refused = store
        .append(&[
            Record::Message(message("elsewhere", 1, "x")),
            Record::Account(account("dave", None)),
            Record::Message(message("general", 2, "x")),
        ])
        .await;
    assert_corrupt(refused, "b:room:general");
    assert!(history_ids(&store, "elsewhere").await.is_empty());
    assert_eq!(store.account(&key("dave")).await.unwrap(), None);
    assert_eq!(store.load(5).await.unwrap().next_id, None);
    // The store goes on.
    store
        .append(&[Record::Message(message("elsewhere", 3, "x"))])
        .await
        .unwrap();

    // Accounts that are not JSON, or are another name's.
    let store = open("c:").await;
    command(&mut admin, &["HSET", "c:accounts", "alice", "{not json"]).await;
    assert_corrupt(store.account(&key("alice")).await, "c:accounts");
    assert_corrupt(store.load(5).await, "c:accounts");
    let shared = RedisStore::shared(&redis.url(), "c:").await.unwrap();
    let refused = shared
        .append(&[Record::Account(account("alice", Some(HASH)))])
        .await;
    assert_corrupt(refused, "c:accounts");
    command(
        &mut admin,
        &["HSET", "c:accounts", "bob", r#"{"name":"carol"}"#],
    )
    .await;
    assert_corrupt(store.account(&key("bob")).await, "c:accounts");

    // A counter that is no id.
    let store = open("d:").await;
    command(&mut admin, &["SET", "d:next-id", "abc"]).await;
    assert_corrupt(store.load(5).await, "d:next-id");
    let refused = store
        .append(&[Record::IdsReserved { until: id_of(5) }])
        .await;
    assert_corrupt(refused, "d:next-id");

    // Bytes that are not UTF-8.
    let store = open("e:").await;
    let () = redis::cmd("ZADD")
        .arg("e:mailbox:bob")
        .arg(0)
        .arg(&b"\xff\xfe"[..])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_corrupt(store.mailbox(&key("bob")).await, "e:mailbox:bob");

    // A DM index entry whose DM is missing.
    let store = open("f:").await;
    command(&mut admin, &["SADD", "f:conversations", "alice:bob"]).await;
    let pointer = format!("{}:alice:bob", id(9));
    command(&mut admin, &["ZADD", "f:dms-of:alice", "0", &pointer]).await;
    assert_corrupt(store.load(5).await, "f:dms-of:alice");
}
