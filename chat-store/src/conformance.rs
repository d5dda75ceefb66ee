//! The conformance suite every [`Store`] backend must pass (test support).
//!
//! [`check_store`] runs every behavioural check of the [`Store`] contract, each on a fresh,
//! empty store from the constructor it is given; [`check_restart`] checks that a persistent
//! backend gives back after a reopen exactly what it held before. A backend's tests call them
//! from a `#[tokio::test]`:
//!
//! ```no_run
//! # async fn demo() {
//! use chat_store::{MemoryStore, conformance};
//! conformance::check_store(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! The checks panic, naming what differs, on the first violation. The [fixture](message)
//! constructors are public so that backend-specific tests can build records the same way.

use std::future::Future;
use std::sync::Arc;

use chat_core::{
    Account, DirectMessage, MessageId, PasswordHash, Record, RoomMessage, RoomName, Snapshot, Text,
    Timestamp, UserKey, UserName,
};

use crate::store::{Store, StoreError};

/// Fixture: message `id` in `room` from `alice`, saying `text` (a valid room name and text).
pub fn message(room: &str, id: u64, text: &str) -> Arc<RoomMessage> {
    Arc::new(RoomMessage {
        room: RoomName::parse(room).expect("fixture room names are valid"),
        id: id_of(id),
        from: "alice".parse().expect("a valid name"),
        text: Text::parse(text, usize::MAX).expect("fixture texts are valid"),
        ts: Timestamp::from_unix_millis(1_764_000_000_000 + id),
    })
}

/// Fixture: DM `id` from `alice` to `to` (as spelled), saying `text`.
pub fn direct(id: u64, to: &str, text: &str) -> Arc<DirectMessage> {
    direct_from(id, "alice", to, text)
}

/// Fixture: DM `id` from `from` to `to` (both as spelled), saying `text`.
pub fn direct_from(id: u64, from: &str, to: &str, text: &str) -> Arc<DirectMessage> {
    Arc::new(DirectMessage {
        id: id_of(id),
        from: from.parse().expect("fixture user names are valid"),
        to: to.parse().expect("fixture user names are valid"),
        text: Text::parse(text, usize::MAX).expect("fixture texts are valid"),
        ts: Timestamp::from_unix_millis(1_764_000_000_000 + id),
    })
}

/// Fixture: an argon2id PHC string, shaped like the bundled authenticator's hashes.
pub const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g";

/// Fixture: the account `name` (as spelled) with the password hash `hash`, if any.
pub fn account(name: &str, hash: Option<&str>) -> Account {
    Account {
        name: UserName::parse(name).expect("fixture user names are valid"),
        hash: hash.map(PasswordHash::new),
    }
}

/// Fixture: the id `n` (positive).
pub fn id_of(n: u64) -> MessageId {
    MessageId::new(n).expect("fixture ids are positive")
}

/// Fixture: the mailbox key of `name`.
pub fn key(name: &str) -> UserKey {
    UserKey::parse(name).expect("fixture user names are valid")
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("fixture room names are valid")
}

/// Fixture: the [`Record::Rooms`] of `owner` with `rooms` (valid names, as given).
pub fn rooms_of(owner: &str, rooms: &[&str]) -> Record {
    Record::Rooms {
        owner: key(owner),
        rooms: rooms.iter().map(|r| room(r)).collect(),
    }
}

fn room_list(rooms: &[&str]) -> Vec<RoomName> {
    rooms.iter().map(|r| room(r)).collect()
}

fn ids(messages: &[RoomMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id.get()).collect()
}

fn dm_ids(dms: &[DirectMessage]) -> Vec<u64> {
    dms.iter().map(|m| m.id.get()).collect()
}

async fn append<S: Store + ?Sized>(store: &S, records: &[Record]) {
    if let Err(e) = store.append(records).await {
        panic!("append failed: {e}");
    }
}

/// Runs every behavioural check, each on a store from `fresh` (which must be empty).
pub async fn check_store<S, F, Fut>(mut fresh: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    empty_store(&fresh().await).await;
    load_returns_bounded_tails(&fresh().await).await;
    history_pages_are_exact(&fresh().await).await;
    out_of_order_calls_store_nothing(&fresh().await).await;
    mailboxes_queue_and_deliver(&fresh().await).await;
    records_apply_in_order_within_a_call(&fresh().await).await;
    take_mailbox_delivers_once(&fresh().await).await;
    accounts_are_found_by_key_as_stored(&fresh().await).await;
    a_later_account_record_replaces_the_stored_one(&fresh().await).await;
    an_account_in_a_refused_call_is_not_stored(&fresh().await).await;
    account_rooms_are_stored_and_replaced(&fresh().await).await;
    account_rooms_in_a_refused_call_are_not_stored(&fresh().await).await;
    id_counter_covers_everything(&fresh().await).await;
    texts_are_kept_verbatim(&fresh().await).await;
    dm_history_keeps_both_directions_in_one_conversation(&fresh().await).await;
    dm_history_pages_are_exact(&fresh().await).await;
    out_of_order_dms_are_refused_whole(&fresh().await).await;
    dms_in_a_refused_call_are_not_stored(&fresh().await).await;
    load_gives_each_party_its_newest_dms(&fresh().await).await;
    concurrent_appends_all_land(Arc::new(fresh().await)).await;
    recover_keeps_a_healthy_store(&fresh().await).await;
    closed_store_refuses(&fresh().await).await;
}

/// A new store is empty.
pub async fn empty_store<S: Store + ?Sized>(store: &S) {
    assert_eq!(store.load(10).await.unwrap(), Snapshot::default());
    assert!(store.rooms().await.unwrap().is_empty());
    assert!(
        store
            .history(&room("general"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.mailbox(&key("bob")).await.unwrap().is_empty());
    assert!(
        store
            .dm_history(&key("alice"), &key("bob"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.account(&key("bob")).await.unwrap(), None);
    store.flush().await.unwrap();
    store.close().await.unwrap();
}

/// `load` gives each room's newest messages, oldest first, and says whether older ones exist.
pub async fn load_returns_bounded_tails<S: Store + ?Sized>(store: &S) {
    let mut records = Vec::new();
    for id in 1..=7 {
        let name = if id % 2 == 0 { "even" } else { "odd" };
        records.push(Record::Message(message(name, id, &format!("m{id}"))));
    }
    append(store, &records).await;
    assert_eq!(
        store.rooms().await.unwrap(),
        vec![room("even"), room("odd")]
    );

    let snapshot = store.load(2).await.unwrap();
    assert_eq!(snapshot.next_id, Some(id_of(8)));
    assert_eq!(ids(&snapshot.rooms[&room("odd")].messages), vec![5, 7]);
    assert!(snapshot.rooms[&room("odd")].has_older);
    assert_eq!(ids(&snapshot.rooms[&room("even")].messages), vec![4, 6]);
    assert!(snapshot.rooms[&room("even")].has_older);
    assert_eq!(
        snapshot.rooms[&room("even")].messages[1],
        *message("even", 6, "m6")
    );

    let all = store.load(3).await.unwrap();
    assert_eq!(ids(&all.rooms[&room("even")].messages), vec![2, 4, 6]);
    assert!(
        !all.rooms[&room("even")].has_older,
        "3 of 3 leaves nothing older"
    );
    assert_eq!(ids(&all.rooms[&room("odd")].messages), vec![3, 5, 7]);
    assert!(all.rooms[&room("odd")].has_older);

    let none = store.load(0).await.unwrap();
    assert!(none.rooms[&room("odd")].messages.is_empty());
    assert!(none.rooms[&room("odd")].has_older);
    store.close().await.unwrap();
}

/// `history` pages are the messages just below `before`, oldest first, never short while more
/// exist.
pub async fn history_pages_are_exact<S: Store + ?Sized>(store: &S) {
    let general = room("general");
    // Ids 2, 4, ..., 200, with another room interleaved (odd ids).
    let mut records = Vec::new();
    for n in 1..=100u64 {
        records.push(Record::Message(message("general", 2 * n, "x")));
        records.push(Record::Message(message("other", 2 * n + 1, "y")));
    }
    append(store, &records).await;
    let page = |before: Option<u64>, limit| {
        let general = general.clone();
        async move {
            ids(&store
                .history(&general, before.map(id_of), limit)
                .await
                .unwrap())
        }
    };
    assert_eq!(page(None, 3).await, vec![196, 198, 200]);
    assert_eq!(page(Some(10), 3).await, vec![4, 6, 8]);
    assert_eq!(page(Some(9), 3).await, vec![4, 6, 8]);
    assert_eq!(page(Some(5), 10).await, vec![2, 4]);
    assert_eq!(page(Some(2), 10).await, Vec::<u64>::new());
    assert_eq!(page(Some(1), 10).await, Vec::<u64>::new());
    assert_eq!(page(None, 0).await, Vec::<u64>::new());
    assert_eq!(page(Some(1000), 2).await, vec![198, 200]);
    assert_eq!(
        page(None, 1000).await,
        (1..=100).map(|n| 2 * n).collect::<Vec<_>>()
    );
    // Walking back page by page visits every message once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let chunk = page(before, 7).await;
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() == 7 || chunk[0] == 2, "short page {chunk:?}");
        before = Some(chunk[0]);
        seen.splice(0..0, chunk);
    }
    assert_eq!(seen, (1..=100).map(|n| 2 * n).collect::<Vec<_>>());
    assert!(
        store
            .history(&room("nowhere"), None, 5)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}

/// A call that would break the id order of a room or a mailbox stores none of its records.
pub async fn out_of_order_calls_store_nothing<S: Store + ?Sized>(store: &S) {
    append(store, &[Record::Message(message("general", 5, "five"))]).await;
    let stale = store
        .append(&[
            Record::Message(message("general", 6, "six")),
            Record::Queued(direct(7, "bob", "hi")),
            Record::Message(message("general", 6, "six again")),
        ])
        .await;
    assert!(
        matches!(stale, Err(StoreError::OutOfOrder { id, .. }) if id == id_of(6)),
        "{stale:?}"
    );
    assert_eq!(
        ids(&store.history(&room("general"), None, 10).await.unwrap()),
        vec![5]
    );
    assert!(store.mailbox(&key("bob")).await.unwrap().is_empty());
    assert_eq!(store.load(10).await.unwrap().next_id, Some(id_of(6)));

    append(store, &[Record::Queued(direct(8, "bob", "hi"))]).await;
    let stale_dm = store
        .append(&[Record::Queued(direct(8, "Bob", "again"))])
        .await;
    assert!(
        matches!(stale_dm, Err(StoreError::OutOfOrder { .. })),
        "{stale_dm:?}"
    );
    // Other rooms and the rest of the store carry on.
    append(
        store,
        &[
            Record::Message(message("general", 9, "nine")),
            Record::Message(message("elsewhere", 1, "one")),
        ],
    )
    .await;
    assert_eq!(
        ids(&store.history(&room("general"), None, 10).await.unwrap()),
        vec![5, 9]
    );
    assert_eq!(dm_ids(&store.mailbox(&key("bob")).await.unwrap()), vec![8]);
    store.close().await.unwrap();
}

/// DMs queue per case-insensitive owner and a delivery drops exactly those up to `through`.
pub async fn mailboxes_queue_and_deliver<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Queued(direct(1, "Bob", "one")),
            Record::Queued(direct(2, "carol", "for carol")),
            Record::Queued(direct(3, "BOB", "three")),
        ],
    )
    .await;
    append(store, &[Record::Queued(direct(4, "bob", "four"))]).await;
    let bob = key("bob");
    let queued = store.mailbox(&bob).await.unwrap();
    assert_eq!(dm_ids(&queued), vec![1, 3, 4]);
    assert_eq!(
        queued[1],
        *direct(3, "BOB", "three"),
        "the spelling is kept"
    );

    append(
        store,
        &[Record::Delivered {
            owner: bob.clone(),
            through: id_of(3),
        }],
    )
    .await;
    assert_eq!(dm_ids(&store.mailbox(&bob).await.unwrap()), vec![4]);
    let snapshot = store.load(10).await.unwrap();
    assert_eq!(dm_ids(&snapshot.mailboxes[&bob]), vec![4]);
    assert_eq!(dm_ids(&snapshot.mailboxes[&key("carol")]), vec![2]);

    append(
        store,
        &[Record::Delivered {
            owner: bob.clone(),
            through: id_of(4),
        }],
    )
    .await;
    assert!(store.mailbox(&bob).await.unwrap().is_empty());
    let snapshot = store.load(10).await.unwrap();
    assert!(
        !snapshot.mailboxes.contains_key(&bob),
        "empty mailboxes are left out"
    );
    assert_eq!(snapshot.next_id, Some(id_of(5)));

    // Delivering an empty or unknown mailbox changes nothing but the counter.
    append(
        store,
        &[Record::Delivered {
            owner: key("nobody"),
            through: id_of(9),
        }],
    )
    .await;
    assert_eq!(store.load(10).await.unwrap().next_id, Some(id_of(10)));
    append(store, &[Record::Queued(direct(10, "bob", "later"))]).await;
    assert_eq!(dm_ids(&store.mailbox(&bob).await.unwrap()), vec![10]);
    store.close().await.unwrap();
}

/// One call may hold any mix of records; they apply in order.
pub async fn records_apply_in_order_within_a_call<S: Store + ?Sized>(store: &S) {
    let bob = key("bob");
    append(
        store,
        &[
            Record::IdsReserved { until: id_of(100) },
            Record::Queued(direct(1, "bob", "first")),
            Record::Message(message("general", 2, "between")),
            Record::Delivered {
                owner: bob.clone(),
                through: id_of(1),
            },
            Record::Queued(direct(3, "bob", "after the delivery")),
        ],
    )
    .await;
    assert_eq!(dm_ids(&store.mailbox(&bob).await.unwrap()), vec![3]);
    let snapshot = store.load(5).await.unwrap();
    assert_eq!(snapshot.next_id, Some(id_of(100)));
    assert_eq!(ids(&snapshot.rooms[&room("general")].messages), vec![2]);
    // An empty call is fine.
    append(store, &[]).await;
    store.close().await.unwrap();
}

/// [`Store::take_mailbox`] returns the DMs and stores their delivery.
pub async fn take_mailbox_delivers_once<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Queued(direct(1, "dave", "a")),
            Record::Queued(direct(2, "Dave", "b")),
        ],
    )
    .await;
    let taken = store.take_mailbox(&key("dave")).await.unwrap();
    assert_eq!(dm_ids(&taken), vec![1, 2]);
    assert!(store.take_mailbox(&key("dave")).await.unwrap().is_empty());
    assert!(store.load(1).await.unwrap().mailboxes.is_empty());
    store.close().await.unwrap();
}

/// An account is found by the key of its name (`ALICE` finds `Alice`), with its spelling and
/// its hash exactly as stored, and `load` lists it; accounts touch no id.
pub async fn accounts_are_found_by_key_as_stored<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Account(account("Alice", Some(HASH))),
            Record::Account(account("token.user", None)),
        ],
    )
    .await;
    let alice = Some(account("Alice", Some(HASH)));
    assert_eq!(store.account(&key("alice")).await.unwrap(), alice);
    assert_eq!(store.account(&key("ALICE")).await.unwrap(), alice);
    assert_eq!(store.account(&key("aLiCe")).await.unwrap(), alice);
    let found = store.account(&key("Alice")).await.unwrap().unwrap();
    assert_eq!(found.name.as_str(), "Alice", "the spelling is kept");
    assert_eq!(found.hash.as_ref().map(PasswordHash::as_str), Some(HASH));
    assert_eq!(
        store.account(&key("TOKEN.user")).await.unwrap(),
        Some(account("token.user", None))
    );
    assert_eq!(store.account(&key("bob")).await.unwrap(), None);

    let snapshot = store.load(10).await.unwrap();
    assert_eq!(
        snapshot.accounts.into_iter().collect::<Vec<_>>(),
        vec![
            (key("alice"), UserName::parse("Alice").unwrap()),
            (key("token.user"), UserName::parse("token.user").unwrap()),
        ]
    );
    assert_eq!(snapshot.next_id, None, "accounts touch no id");
    store.close().await.unwrap();
}

/// A second record for an account (its key, whatever the spelling) replaces the stored one
/// whole, across calls and within one call; there is still one account.
pub async fn a_later_account_record_replaces_the_stored_one<S: Store + ?Sized>(store: &S) {
    append(store, &[Record::Account(account("Alice", None))]).await;
    // A password set later.
    append(store, &[Record::Account(account("alice", Some(HASH)))]).await;
    assert_eq!(
        store.account(&key("alice")).await.unwrap(),
        Some(account("alice", Some(HASH)))
    );
    let snapshot = store.load(1).await.unwrap();
    assert_eq!(snapshot.accounts.len(), 1);
    assert_eq!(snapshot.accounts[&key("alice")].as_str(), "alice");

    // Within one call, the last record wins.
    append(
        store,
        &[
            Record::Account(account("ALICE", Some("$argon2id$first"))),
            Record::Account(account("bob", None)),
            Record::Account(account("Alice", Some("$argon2id$second"))),
        ],
    )
    .await;
    assert_eq!(
        store.account(&key("alice")).await.unwrap(),
        Some(account("Alice", Some("$argon2id$second")))
    );
    assert_eq!(
        store.account(&key("bob")).await.unwrap(),
        Some(account("bob", None))
    );
    let snapshot = store.load(1).await.unwrap();
    assert_eq!(snapshot.accounts.len(), 2);
    assert_eq!(snapshot.accounts[&key("alice")].as_str(), "Alice");
    store.close().await.unwrap();
}

/// An account in a call refused for [`StoreError::OutOfOrder`] is not stored, and neither is
/// the replacement of an existing one.
pub async fn an_account_in_a_refused_call_is_not_stored<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Message(message("general", 5, "five")),
            Record::Account(account("carol", None)),
        ],
    )
    .await;
    let before = store.load(10).await.unwrap();
    let refused = store
        .append(&[
            Record::Account(account("Dave", Some(HASH))),
            Record::Account(account("Carol", Some(HASH))),
            Record::Message(message("general", 4, "stale")),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::OutOfOrder { id, .. }) if id == id_of(4)),
        "{refused:?}"
    );
    assert_eq!(store.account(&key("dave")).await.unwrap(), None);
    assert_eq!(
        store.account(&key("carol")).await.unwrap(),
        Some(account("carol", None)),
        "the stored account is not replaced"
    );
    assert_eq!(store.load(10).await.unwrap(), before);
    // The store carries on.
    append(store, &[Record::Account(account("Dave", Some(HASH)))]).await;
    assert_eq!(
        store.account(&key("dave")).await.unwrap(),
        Some(account("Dave", Some(HASH)))
    );
    store.close().await.unwrap();
}

/// An account's room set is stored as given and listed by `load`; a later record for the same
/// owner replaces it whole (across calls and within one call, the last wins), an empty set
/// included; room sets touch no id and no room's history.
pub async fn account_rooms_are_stored_and_replaced<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            rooms_of("alice", &["lobby"]),
            rooms_of("bob", &["rust", "lobby"]),
        ],
    )
    .await;
    let snapshot = store.load(10).await.unwrap();
    assert_eq!(snapshot.account_rooms.len(), 2);
    assert_eq!(snapshot.account_rooms[&key("alice")], room_list(&["lobby"]));
    assert_eq!(
        snapshot.account_rooms[&key("bob")],
        room_list(&["rust", "lobby"]),
        "the set is kept as given"
    );
    assert_eq!(snapshot.next_id, None, "room sets touch no id");
    assert!(snapshot.rooms.is_empty(), "room sets are not history");
    assert!(store.rooms().await.unwrap().is_empty());

    append(store, &[rooms_of("alice", &["lobby", "rust"])]).await;
    append(
        store,
        &[
            rooms_of("bob", &["go"]),
            rooms_of("carol", &["lobby"]),
            rooms_of("bob", &[]),
        ],
    )
    .await;
    let snapshot = store.load(10).await.unwrap();
    assert_eq!(
        snapshot.account_rooms[&key("alice")],
        room_list(&["lobby", "rust"])
    );
    assert_eq!(
        snapshot.account_rooms[&key("bob")],
        room_list(&[]),
        "the last record of a call wins, an empty set too"
    );
    assert_eq!(snapshot.account_rooms[&key("carol")], room_list(&["lobby"]));
    assert_eq!(snapshot.account_rooms.len(), 3);
    store.close().await.unwrap();
}

/// Room sets in a call refused for [`StoreError::OutOfOrder`] are not stored: neither a new one
/// nor the replacement of a stored one.
pub async fn account_rooms_in_a_refused_call_are_not_stored<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Message(message("general", 5, "five")),
            rooms_of("carol", &["general"]),
        ],
    )
    .await;
    let before = store.load(10).await.unwrap();
    let refused = store
        .append(&[
            rooms_of("dave", &["general"]),
            rooms_of("carol", &[]),
            Record::Message(message("general", 4, "stale")),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::OutOfOrder { id, .. }) if id == id_of(4)),
        "{refused:?}"
    );
    assert_eq!(store.load(10).await.unwrap(), before);
    assert_eq!(
        before.account_rooms.into_iter().collect::<Vec<_>>(),
        vec![(key("carol"), room_list(&["general"]))]
    );
    // The store carries on.
    append(store, &[rooms_of("dave", &["general"])]).await;
    assert_eq!(
        store.load(1).await.unwrap().account_rooms[&key("dave")],
        room_list(&["general"])
    );
    store.close().await.unwrap();
}

/// `next_id` covers reservations, messages, queued, delivered and conversation DMs, and never
/// goes down.
pub async fn id_counter_covers_everything<S: Store + ?Sized>(store: &S) {
    append(store, &[Record::IdsReserved { until: id_of(50) }]).await;
    assert_eq!(next_id(store).await, Some(id_of(50)));
    append(store, &[Record::IdsReserved { until: id_of(20) }]).await;
    assert_eq!(
        next_id(store).await,
        Some(id_of(50)),
        "the counter never goes down"
    );
    append(store, &[Record::Message(message("general", 70, "x"))]).await;
    assert_eq!(next_id(store).await, Some(id_of(71)));
    append(store, &[Record::Queued(direct(90, "bob", "y"))]).await;
    assert_eq!(next_id(store).await, Some(id_of(91)));
    append(store, &[Record::Dm(direct(93, "carol", "z"))]).await;
    assert_eq!(next_id(store).await, Some(id_of(94)));
    append(
        store,
        &[Record::Delivered {
            owner: key("bob"),
            through: id_of(95),
        }],
    )
    .await;
    assert_eq!(next_id(store).await, Some(id_of(96)));
    store.close().await.unwrap();
}

/// Texts come back byte for byte: non-ASCII, newlines, tabs, quotes, backslashes.
pub async fn texts_are_kept_verbatim<S: Store + ?Sized>(store: &S) {
    let text = "grüß dich 🦀\n\t\"quoted\" \\ back\\slash </script>";
    append(
        store,
        &[
            Record::Message(message("general", 1, text)),
            Record::Queued(direct(2, "bob", text)),
            Record::Dm(direct(2, "bob", text)),
        ],
    )
    .await;
    let page = store.history(&room("general"), None, 1).await.unwrap();
    assert_eq!(page[0].text.as_str(), text);
    assert_eq!(
        store.mailbox(&key("bob")).await.unwrap()[0].text.as_str(),
        text
    );
    let dms = store
        .dm_history(&key("bob"), &key("alice"), None, 1)
        .await
        .unwrap();
    assert_eq!(dms[0].text.as_str(), text);
    store.close().await.unwrap();
}

/// Many tasks appending at once (group commit) lose nothing and keep each room's and each
/// conversation's order.
pub async fn concurrent_appends_all_land<S: Store + ?Sized>(store: Arc<S>) {
    const WRITERS: u64 = 16;
    const EACH: u64 = 20;
    let user = |w: u64| format!("user{w}");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    // Writer w owns the ids w+1, w+1+WRITERS, ... and uses them in turn for its
                    // own room and for its own conversation with alice.
                    let id = 1 + w + n * WRITERS;
                    let record = if n % 2 == 0 {
                        Record::Message(message(&format!("room{w}"), id, "hi"))
                    } else {
                        Record::Dm(direct_from(id, &user(w), "alice", "hi"))
                    };
                    store.append(&[record]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let snapshot = store.load(usize::MAX).await.unwrap();
    assert_eq!(snapshot.rooms.len(), WRITERS as usize);
    let ids_of = |w: u64, parity: u64| -> Vec<u64> {
        (0..EACH)
            .filter(|n| n % 2 == parity)
            .map(|n| 1 + w + n * WRITERS)
            .collect()
    };
    for w in 0..WRITERS {
        assert_eq!(
            ids(&snapshot.rooms[&room(&format!("room{w}"))].messages),
            ids_of(w, 0)
        );
        assert_eq!(dm_ids(&snapshot.dms[&key(&user(w))].messages), ids_of(w, 1));
    }
    let mut alice: Vec<u64> = (0..WRITERS).flat_map(|w| ids_of(w, 1)).collect();
    alice.sort();
    assert_eq!(dm_ids(&snapshot.dms[&key("alice")].messages), alice);
    assert_eq!(snapshot.next_id, Some(id_of(WRITERS * EACH + 1)));
    store.close().await.unwrap();
}

/// [`Store::recover`] on a store whose appends never failed returns `Ok` and changes nothing.
pub async fn recover_keeps_a_healthy_store<S: Store + ?Sized>(store: &S) {
    store.recover().await.unwrap();
    append(
        store,
        &[
            Record::Message(message("general", 1, "before")),
            Record::Queued(direct(2, "bob", "psst")),
            Record::Dm(direct(2, "bob", "psst")),
            Record::Account(account("Bob", Some(HASH))),
            Record::IdsReserved { until: id_of(10) },
        ],
    )
    .await;
    let before = store.load(10).await.unwrap();
    store.recover().await.unwrap();
    store.recover().await.unwrap();
    assert_eq!(store.load(10).await.unwrap(), before);
    append(
        store,
        &[
            Record::Message(message("general", 10, "after")),
            Record::Dm(direct_from(11, "bob", "alice", "after")),
        ],
    )
    .await;
    assert_eq!(
        ids(&store.history(&room("general"), None, 10).await.unwrap()),
        vec![1, 10]
    );
    assert_eq!(
        dm_ids(
            &store
                .dm_history(&key("alice"), &key("bob"), None, 10)
                .await
                .unwrap()
        ),
        vec![2, 11]
    );
    assert_eq!(
        store.account(&key("bob")).await.unwrap(),
        Some(account("Bob", Some(HASH)))
    );
    store.close().await.unwrap();
}

/// After `close`, everything fails with [`StoreError::Closed`]; closing again is fine.
pub async fn closed_store_refuses<S: Store + ?Sized>(store: &S) {
    append(store, &[Record::Message(message("general", 1, "x"))]).await;
    store.close().await.unwrap();
    let refused = store
        .append(&[Record::Message(message("general", 2, "y"))])
        .await;
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
    assert!(matches!(store.load(1).await, Err(StoreError::Closed)));
    assert!(matches!(
        store.history(&room("general"), None, 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.rooms().await, Err(StoreError::Closed)));
    assert!(matches!(
        store.mailbox(&key("bob")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.dm_history(&key("alice"), &key("bob"), None, 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.account(&key("bob")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.flush().await, Err(StoreError::Closed)));
    store.close().await.unwrap();
}

/// The DMs of a conversation, `a` and `b` in either order, as [`Store::dm_history`] pages them.
async fn conversation_ids<S: Store + ?Sized>(
    store: &S,
    a: &str,
    b: &str,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    let page = store
        .dm_history(&key(a), &key(b), before.map(id_of), limit)
        .await
        .unwrap();
    let swapped = store
        .dm_history(&key(b), &key(a), before.map(id_of), limit)
        .await
        .unwrap();
    assert_eq!(page, swapped, "the order of the two keys does not matter");
    dm_ids(&page)
}

/// A DM and its answer are one conversation, whoever sent which and however the names are
/// spelled; other pairs of users are other conversations; and the history is independent of
/// the mailboxes.
pub async fn dm_history_keeps_both_directions_in_one_conversation<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Dm(direct_from(1, "alice", "Bob", "hi bob")),
            Record::Dm(direct_from(2, "BOB", "alice", "hi alice")),
            Record::Dm(direct_from(3, "alice", "carol", "hi carol")),
            Record::Dm(direct_from(4, "carol", "bob", "hi bob, from carol")),
        ],
    )
    .await;
    append(
        store,
        &[Record::Dm(direct_from(5, "Alice", "bob", "again"))],
    )
    .await;
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![1, 2, 5]
    );
    assert_eq!(
        conversation_ids(store, "alice", "carol", None, 10).await,
        vec![3]
    );
    assert_eq!(
        conversation_ids(store, "bob", "carol", None, 10).await,
        vec![4]
    );
    assert!(
        conversation_ids(store, "alice", "dave", None, 10)
            .await
            .is_empty()
    );
    assert!(
        conversation_ids(store, "dave", "erin", None, 10)
            .await
            .is_empty()
    );
    let page = store
        .dm_history(&key("bob"), &key("alice"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        page,
        vec![
            DirectMessage::clone(&direct_from(1, "alice", "Bob", "hi bob")),
            DirectMessage::clone(&direct_from(2, "BOB", "alice", "hi alice")),
            DirectMessage::clone(&direct_from(5, "Alice", "bob", "again")),
        ],
        "each DM comes back as stored, its spelling kept"
    );
    assert!(
        store.mailbox(&key("bob")).await.unwrap().is_empty(),
        "a DM is not queued"
    );
    assert!(
        store.rooms().await.unwrap().is_empty(),
        "DMs are no room's history"
    );

    // A queued DM shares its id with its conversation's record; delivering it leaves the
    // conversation alone, and a DM only queued is in no conversation.
    append(
        store,
        &[
            Record::Queued(direct(6, "bob", "while you were out")),
            Record::Dm(direct(6, "bob", "while you were out")),
            Record::Queued(direct(7, "dave", "mailbox only")),
        ],
    )
    .await;
    append(
        store,
        &[Record::Delivered {
            owner: key("bob"),
            through: id_of(6),
        }],
    )
    .await;
    assert!(store.mailbox(&key("bob")).await.unwrap().is_empty());
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![1, 2, 5, 6]
    );
    assert!(
        conversation_ids(store, "alice", "dave", None, 10)
            .await
            .is_empty()
    );
    assert!(!store.load(10).await.unwrap().dms.contains_key(&key("dave")));
    store.close().await.unwrap();
}

/// `dm_history` pages are the DMs just below `before`, oldest first, never short while more
/// exist.
pub async fn dm_history_pages_are_exact<S: Store + ?Sized>(store: &S) {
    // Ids 2, 4, ..., 200 between alice and bob in turns, with another conversation of alice's
    // interleaved (odd ids).
    let mut records = Vec::new();
    for n in 1..=100u64 {
        let (from, to) = if n % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        records.push(Record::Dm(direct_from(2 * n, from, to, "x")));
        records.push(Record::Dm(direct_from(2 * n + 1, "alice", "carol", "y")));
    }
    append(store, &records).await;
    let page = |before: Option<u64>, limit| conversation_ids(store, "alice", "bob", before, limit);
    assert_eq!(page(None, 3).await, vec![196, 198, 200]);
    assert_eq!(page(Some(10), 3).await, vec![4, 6, 8]);
    assert_eq!(page(Some(9), 3).await, vec![4, 6, 8]);
    assert_eq!(page(Some(5), 10).await, vec![2, 4]);
    assert_eq!(page(Some(2), 10).await, Vec::<u64>::new());
    assert_eq!(page(Some(1), 10).await, Vec::<u64>::new());
    assert_eq!(page(None, 0).await, Vec::<u64>::new());
    assert_eq!(page(Some(1000), 2).await, vec![198, 200]);
    let all: Vec<u64> = (1..=100).map(|n| 2 * n).collect();
    assert_eq!(page(None, 1000).await, all);
    // Walking back page by page visits every DM once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let chunk = page(before, 7).await;
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() == 7 || chunk[0] == 2, "short page {chunk:?}");
        before = Some(chunk[0]);
        seen.splice(0..0, chunk);
    }
    assert_eq!(seen, all);
    store.close().await.unwrap();
}

/// A call with a DM whose id is not above its conversation's last one (stored, or earlier in
/// the call) is refused whole with [`StoreError::OutOfOrder`] naming the conversation; other
/// conversations, and the mailboxes, keep their own order.
pub async fn out_of_order_dms_are_refused_whole<S: Store + ?Sized>(store: &S) {
    append(store, &[Record::Dm(direct_from(5, "alice", "bob", "five"))]).await;
    let before = store.load(10).await.unwrap();
    let stale = store
        .append(&[
            Record::Dm(direct_from(6, "bob", "alice", "six")),
            Record::Message(message("general", 7, "seven")),
            Record::Queued(direct(8, "carol", "eight")),
            Record::Dm(direct_from(6, "Alice", "BOB", "six again")),
        ])
        .await;
    match &stale {
        Err(StoreError::OutOfOrder { place, id, last }) => {
            assert_eq!(place, "the conversation of alice and bob");
            assert_eq!((*id, *last), (id_of(6), id_of(6)));
        }
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    assert_eq!(
        store.load(10).await.unwrap(),
        before,
        "nothing of the call is stored"
    );
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![5]
    );

    // Below or at the stored last id, in either direction.
    for id in [4, 5] {
        let stale = store
            .append(&[Record::Dm(direct_from(id, "bob", "alice", "stale"))])
            .await;
        assert!(
            matches!(stale, Err(StoreError::OutOfOrder { last, .. }) if last == id_of(5)),
            "{stale:?}"
        );
    }
    // Another conversation has its own order; a mailbox and a conversation are independent.
    append(
        store,
        &[
            Record::Dm(direct_from(3, "alice", "carol", "three")),
            Record::Queued(direct(4, "bob", "queued")),
            Record::Dm(direct_from(9, "alice", "bob", "nine")),
        ],
    )
    .await;
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![5, 9]
    );
    assert_eq!(
        conversation_ids(store, "alice", "carol", None, 10).await,
        vec![3]
    );
    assert_eq!(dm_ids(&store.mailbox(&key("bob")).await.unwrap()), vec![4]);
    assert_eq!(next_id(store).await, Some(id_of(10)));
    store.close().await.unwrap();
}

/// The DMs of a call refused for another record's order are not stored, in a new conversation
/// or an old one, and leave the id counter as it was.
pub async fn dms_in_a_refused_call_are_not_stored<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Message(message("general", 5, "five")),
            Record::Dm(direct_from(6, "alice", "bob", "kept")),
        ],
    )
    .await;
    let before = store.load(10).await.unwrap();
    let refused = store
        .append(&[
            Record::Dm(direct_from(7, "bob", "alice", "lost")),
            Record::Dm(direct_from(8, "carol", "dave", "lost")),
            Record::Message(message("general", 4, "stale")),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::OutOfOrder { id, .. }) if id == id_of(4)),
        "{refused:?}"
    );
    assert_eq!(store.load(10).await.unwrap(), before);
    assert_eq!(before.next_id, Some(id_of(7)));
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![6]
    );
    assert!(
        conversation_ids(store, "carol", "dave", None, 10)
            .await
            .is_empty()
    );
    // The store carries on, and the refused ids are free.
    append(
        store,
        &[
            Record::Dm(direct_from(7, "bob", "alice", "stored")),
            Record::Dm(direct_from(8, "carol", "dave", "stored")),
        ],
    )
    .await;
    assert_eq!(
        conversation_ids(store, "alice", "bob", None, 10).await,
        vec![6, 7]
    );
    assert_eq!(
        conversation_ids(store, "carol", "dave", None, 10).await,
        vec![8]
    );
    store.close().await.unwrap();
}

/// `load` gives every party to a stored conversation its newest DMs across all its
/// conversations, both directions, oldest first, and says whether older ones exist; a DM is in
/// the tail of both its users.
pub async fn load_gives_each_party_its_newest_dms<S: Store + ?Sized>(store: &S) {
    append(
        store,
        &[
            Record::Dm(direct_from(1, "alice", "bob", "a>b")),
            Record::Dm(direct_from(2, "Bob", "alice", "b>a")),
            Record::Dm(direct_from(3, "carol", "alice", "c>a")),
            Record::Dm(direct_from(4, "bob", "carol", "b>c")),
            Record::Queued(direct(5, "erin", "queued only")),
        ],
    )
    .await;
    append(
        store,
        &[
            Record::Dm(direct_from(6, "alice", "BOB", "a>b")),
            Record::Dm(direct_from(7, "alice", "carol", "a>c")),
            Record::Dm(direct_from(8, "dave", "erin", "d>e")),
        ],
    )
    .await;
    let tail_ids = |snapshot: &Snapshot, user: &str| -> (Vec<u64>, bool) {
        let tail = &snapshot.dms[&key(user)];
        (dm_ids(&tail.messages), tail.has_older)
    };

    let all = store.load(10).await.unwrap();
    assert_eq!(tail_ids(&all, "alice"), (vec![1, 2, 3, 6, 7], false));
    assert_eq!(tail_ids(&all, "bob"), (vec![1, 2, 4, 6], false));
    assert_eq!(tail_ids(&all, "carol"), (vec![3, 4, 7], false));
    assert_eq!(tail_ids(&all, "dave"), (vec![8], false));
    assert_eq!(
        tail_ids(&all, "erin"),
        (vec![8], false),
        "a queued DM is not history"
    );
    assert_eq!(all.dms.len(), 5);
    assert_eq!(
        all.dms[&key("bob")].messages[1],
        *direct_from(2, "Bob", "alice", "b>a"),
        "each DM comes back as stored"
    );
    assert_eq!(all.next_id, Some(id_of(9)));
    assert!(all.rooms.is_empty());

    let newest = store.load(2).await.unwrap();
    assert_eq!(tail_ids(&newest, "alice"), (vec![6, 7], true));
    assert_eq!(tail_ids(&newest, "bob"), (vec![4, 6], true));
    assert_eq!(tail_ids(&newest, "carol"), (vec![4, 7], true));
    assert_eq!(tail_ids(&newest, "dave"), (vec![8], false));

    let exact = store.load(4).await.unwrap();
    assert_eq!(
        tail_ids(&exact, "bob"),
        (vec![1, 2, 4, 6], false),
        "4 of 4 leaves nothing older"
    );
    assert_eq!(tail_ids(&exact, "alice"), (vec![2, 3, 6, 7], true));

    let none = store.load(0).await.unwrap();
    assert_eq!(none.dms.len(), 5);
    assert!(
        none.dms
            .values()
            .all(|tail| tail.messages.is_empty() && tail.has_older)
    );
    store.close().await.unwrap();
}

async fn next_id<S: Store + ?Sized>(store: &S) -> Option<MessageId> {
    store.load(1).await.unwrap().next_id
}

/// Checks that a persistent backend keeps everything across a reopen. Every call of `open` must
/// open the same (initially empty) storage; the previous store is closed, or just dropped,
/// before the next call.
pub async fn check_restart<S, F, Fut>(mut open: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let bob = key("bob");
    let store = open().await;
    let mut records = vec![Record::IdsReserved { until: id_of(64) }];
    for id in 1..=40 {
        records.push(Record::Message(message(
            ["general", "rust"][id as usize % 2],
            id,
            &format!("message {id}"),
        )));
    }
    records.push(Record::Queued(direct(41, "Bob", "one")));
    records.push(Record::Queued(direct(42, "carol", "two")));
    records.push(Record::Queued(direct(43, "bob", "three")));
    records.push(Record::Dm(direct(43, "bob", "three")));
    records.push(Record::Dm(direct_from(44, "Bob", "alice", "four")));
    records.push(Record::Dm(direct_from(45, "alice", "bob", "five")));
    records.push(Record::Dm(direct_from(46, "carol", "Alice", "six")));
    records.push(Record::Account(account("Alice", None)));
    records.push(Record::Account(account("token.user", None)));
    records.push(rooms_of("alice", &["general"]));
    records.push(rooms_of("token.user", &["rust"]));
    append(&store, &records).await;
    // A later room set replaces the first.
    append(&store, &[rooms_of("alice", &["general", "rust"])]).await;
    // A password set later replaces the first record.
    append(&store, &[Record::Account(account("alice", Some(HASH)))]).await;
    append(
        &store,
        &[Record::Delivered {
            owner: bob.clone(),
            through: id_of(41),
        }],
    )
    .await;
    let before = store.load(5).await.unwrap();
    let page_before = store
        .history(&room("general"), Some(id_of(30)), 4)
        .await
        .unwrap();
    let dm_page_before = store
        .dm_history(&bob, &key("alice"), Some(id_of(45)), 5)
        .await
        .unwrap();
    assert_eq!(dm_ids(&dm_page_before), vec![43, 44]);
    store.close().await.unwrap();

    let store = open().await;
    assert_eq!(
        store.load(5).await.unwrap(),
        before,
        "a reopen changes nothing"
    );
    assert_eq!(
        store
            .history(&room("general"), Some(id_of(30)), 4)
            .await
            .unwrap(),
        page_before
    );
    assert_eq!(
        store
            .dm_history(&key("alice"), &bob, Some(id_of(45)), 5)
            .await
            .unwrap(),
        dm_page_before
    );
    assert_eq!(
        dm_ids(&before.dms[&key("alice")].messages),
        vec![43, 44, 45, 46]
    );
    assert_eq!(
        store.rooms().await.unwrap(),
        vec![room("general"), room("rust")]
    );
    assert_eq!(dm_ids(&store.mailbox(&bob).await.unwrap()), vec![43]);
    assert_eq!(before.next_id, Some(id_of(64)), "the reservation survives");
    assert_eq!(
        store.account(&key("ALICE")).await.unwrap(),
        Some(account("alice", Some(HASH))),
        "the account survives, replaced"
    );
    assert_eq!(
        store.account(&key("token.user")).await.unwrap(),
        Some(account("token.user", None))
    );
    assert_eq!(before.accounts.len(), 2);
    assert_eq!(
        before.account_rooms.clone().into_iter().collect::<Vec<_>>(),
        vec![
            (key("alice"), room_list(&["general", "rust"])),
            (key("token.user"), room_list(&["rust"])),
        ],
        "room sets survive, replaced"
    );

    // Ids continue; then a drop without close still keeps what was acknowledged.
    append(
        &store,
        &[
            Record::Message(message("general", 64, "after the restart")),
            Record::Dm(direct_from(65, "bob", "alice", "after the restart")),
            Record::Delivered {
                owner: bob.clone(),
                through: id_of(43),
            },
            Record::IdsReserved { until: id_of(200) },
            Record::Account(account("Bob", Some(HASH))),
            rooms_of("bob", &["general"]),
            rooms_of("alice", &[]),
        ],
    )
    .await;
    drop(store);

    let store = open().await;
    let snapshot = store.load(2).await.unwrap();
    assert_eq!(snapshot.next_id, Some(id_of(200)));
    assert_eq!(
        ids(&snapshot.rooms[&room("general")].messages),
        vec![40, 64]
    );
    assert!(snapshot.rooms[&room("general")].has_older);
    let dm_tail = |user: &str| {
        let tail = &snapshot.dms[&key(user)];
        (dm_ids(&tail.messages), tail.has_older)
    };
    assert_eq!(dm_tail("alice"), (vec![46, 65], true));
    assert_eq!(dm_tail("bob"), (vec![45, 65], true));
    assert_eq!(dm_tail("carol"), (vec![46], false));
    assert_eq!(dm_ids(&snapshot.mailboxes[&key("carol")]), vec![42]);
    assert!(
        !snapshot.mailboxes.contains_key(&bob),
        "delivered DMs stay delivered"
    );
    assert_eq!(
        snapshot.accounts.keys().collect::<Vec<_>>(),
        vec![&key("alice"), &bob, &key("token.user")]
    );
    assert_eq!(
        store.account(&bob).await.unwrap(),
        Some(account("Bob", Some(HASH)))
    );
    assert_eq!(
        snapshot.account_rooms.into_iter().collect::<Vec<_>>(),
        vec![
            (key("alice"), room_list(&[])),
            (bob.clone(), room_list(&["general"])),
            (key("token.user"), room_list(&["rust"])),
        ]
    );
    store.close().await.unwrap();
}
