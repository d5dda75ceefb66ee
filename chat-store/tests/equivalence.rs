//! Property test: random operation sequences give the same observable results on
//! [`MemoryStore`] (the reference) and [`JsonFileStore`] (in a fresh directory per case, and
//! reopened at random points).

use chat_core::{Account, DirectMessage, Record, RoomMessage, RoomName, Snapshot, UserKey};
use chat_store::conformance::{account, direct, direct_from, id_of, key, message};
use chat_store::{JsonFileStore, MemoryStore, Store, StoreError};
use proptest::prelude::*;

const ROOMS: [&str; 3] = ["general", "rust", "off-topic"];
const USERS: [&str; 3] = ["bob", "carol", "dave"];

/// One record of an append, resolved against the id counter when it runs.
#[derive(Clone, Debug)]
enum Rec {
    /// A message with the next id, or (stale) an id `back` below it.
    Say { room: usize, stale: Option<u64> },
    /// A queued DM with the next id; `shout` spells the name in upper case; `history`: its
    /// conversation's record too (as the core stores a DM to an offline account).
    Queue {
        to: usize,
        shout: bool,
        history: bool,
    },
    /// A DM for its conversation's history with the next id, or (stale) an id `back` below it;
    /// `shout` spells the sender in upper case. `from` and `to` may be one user.
    Dm {
        from: usize,
        to: usize,
        shout: bool,
        stale: Option<u64>,
    },
    /// A delivery through the id `back` below the next one.
    Deliver { owner: usize, back: u64 },
    /// A reservation `ahead` ids past the next one.
    Reserve { ahead: u64 },
    /// An account for a user (`shout`: spelled in upper case), with hash number `hash` if any;
    /// a second one for the same user replaces the first.
    Register {
        user: usize,
        shout: bool,
        hash: Option<u8>,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Rec>),
    Page {
        room: usize,
        before: Option<u64>,
        limit: usize,
    },
    Load {
        history: usize,
    },
    Mailbox {
        owner: usize,
    },
    DmPage {
        a: usize,
        b: usize,
        before: Option<u64>,
        limit: usize,
    },
    Take {
        owner: usize,
    },
    Account {
        user: usize,
    },
    /// Close and reopen the file store (the memory store carries on).
    Reopen,
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        4 => (0..ROOMS.len(), prop::option::weighted(0.15, 0..5u64))
            .prop_map(|(room, stale)| Rec::Say { room, stale }),
        3 => (0..USERS.len(), any::<bool>(), any::<bool>())
            .prop_map(|(to, shout, history)| Rec::Queue { to, shout, history }),
        3 => (0..USERS.len(), 0..USERS.len(), any::<bool>(), prop::option::weighted(0.15, 0..5u64))
            .prop_map(|(from, to, shout, stale)| Rec::Dm { from, to, shout, stale }),
        1 => (0..USERS.len(), 0..6u64).prop_map(|(owner, back)| Rec::Deliver { owner, back }),
        1 => (0..40u64).prop_map(|ahead| Rec::Reserve { ahead }),
        1 => (0..USERS.len(), any::<bool>(), prop::option::of(0..3u8))
            .prop_map(|(user, shout, hash)| Rec::Register { user, shout, hash }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(rec(), 0..5).prop_map(Op::Append),
        3 => (0..ROOMS.len(), prop::option::of(0..60u64), 0..8usize)
            .prop_map(|(room, before, limit)| Op::Page { room, before, limit }),
        2 => (0..USERS.len(), 0..USERS.len(), prop::option::of(0..60u64), 0..8usize)
            .prop_map(|(a, b, before, limit)| Op::DmPage { a, b, before, limit }),
        1 => (0..6usize).prop_map(|history| Op::Load { history }),
        1 => (0..USERS.len()).prop_map(|owner| Op::Mailbox { owner }),
        1 => (0..USERS.len()).prop_map(|owner| Op::Take { owner }),
        1 => (0..USERS.len()).prop_map(|user| Op::Account { user }),
        1 => Just(Op::Reopen),
    ]
}

/// Everything a caller can observe from one operation.
#[derive(Debug, PartialEq)]
enum Seen {
    Appended(Result<(), String>),
    Page(Result<Vec<RoomMessage>, String>),
    Snapshot(Result<Snapshot, String>),
    Mailbox(Result<Vec<DirectMessage>, String>),
    DmPage(Result<Vec<DirectMessage>, String>),
    Account(Result<Option<Account>, String>),
}

fn text(e: StoreError) -> String {
    e.to_string()
}

fn room(i: usize) -> RoomName {
    ROOMS[i].parse().unwrap()
}

fn user(i: usize) -> UserKey {
    key(USERS[i])
}

async fn observe<S: Store>(store: &S, op: &Op, records: &[Record]) -> Seen {
    match op {
        Op::Append(_) => Seen::Appended(store.append(records).await.map_err(text)),
        Op::Page {
            room: r,
            before,
            limit,
        } => Seen::Page(
            store
                .history(&room(*r), before.map(|b| id_of(b + 1)), *limit)
                .await
                .map_err(text),
        ),
        Op::Load { history } => Seen::Snapshot(store.load(*history).await.map_err(text)),
        Op::Mailbox { owner } => Seen::Mailbox(store.mailbox(&user(*owner)).await.map_err(text)),
        Op::DmPage {
            a,
            b,
            before,
            limit,
        } => Seen::DmPage(
            store
                .dm_history(&user(*a), &user(*b), before.map(|b| id_of(b + 1)), *limit)
                .await
                .map_err(text),
        ),
        Op::Take { owner } => Seen::Mailbox(store.take_mailbox(&user(*owner)).await.map_err(text)),
        Op::Account { user: u } => Seen::Account(store.account(&user(*u)).await.map_err(text)),
        Op::Reopen => Seen::Appended(Ok(())),
    }
}

/// The records of an append, allocating ids from `next` as the core would.
fn resolve(recs: &[Rec], next: &mut u64) -> Vec<Record> {
    fn take(next: &mut u64) -> chat_core::MessageId {
        *next += 1;
        id_of(*next - 1)
    }
    fn stale_or_take(stale: Option<u64>, next: &mut u64) -> chat_core::MessageId {
        match stale {
            Some(back) => id_of(next.saturating_sub(1 + back).max(1)),
            None => take(next),
        }
    }
    fn spelled(i: usize, shout: bool) -> String {
        if shout {
            USERS[i].to_ascii_uppercase()
        } else {
            USERS[i].to_owned()
        }
    }
    recs.iter()
        .flat_map(|rec| match *rec {
            Rec::Say { room, stale } => {
                let id = stale_or_take(stale, next);
                vec![Record::Message(message(ROOMS[room], id.get(), "hi there"))]
            }
            Rec::Queue { to, shout, history } => {
                let dm = direct(take(next).get(), &spelled(to, shout), "psst");
                let mut records = vec![Record::Queued(dm.clone())];
                if history {
                    records.push(Record::Dm(dm));
                }
                records
            }
            Rec::Dm {
                from,
                to,
                shout,
                stale,
            } => {
                let id = stale_or_take(stale, next);
                vec![Record::Dm(direct_from(
                    id.get(),
                    &spelled(from, shout),
                    USERS[to],
                    "hello",
                ))]
            }
            Rec::Deliver { owner, back } => vec![Record::Delivered {
                owner: user(owner),
                through: id_of(next.saturating_sub(1 + back).max(1)),
            }],
            Rec::Reserve { ahead } => vec![Record::IdsReserved {
                until: id_of(*next + ahead),
            }],
            Rec::Register { user, shout, hash } => {
                let hash = hash.map(|n| format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${n}"));
                vec![Record::Account(account(
                    &spelled(user, shout),
                    hash.as_deref(),
                ))]
            }
        })
        .collect()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let reference = MemoryStore::new();
    let mut file = JsonFileStore::open(&dir).await.unwrap();
    let mut next = 1u64;
    for (step, op) in ops.iter().enumerate() {
        let records = match op {
            Op::Append(recs) => resolve(recs, &mut next),
            Op::Reopen => {
                file.close().await.unwrap();
                file = JsonFileStore::open(&dir).await.unwrap();
                Vec::new()
            }
            _ => Vec::new(),
        };
        let want = observe(&reference, op, &records).await;
        let got = observe(&file, op, &records).await;
        prop_assert_eq!(got, want, "step {}: {:?}", step, op);
    }
    // The whole state agrees at the end, and after one more reopen.
    for _ in 0..2 {
        prop_assert_eq!(
            file.load(usize::MAX).await.unwrap(),
            reference.load(usize::MAX).await.unwrap()
        );
        prop_assert_eq!(
            file.rooms().await.unwrap(),
            reference.rooms().await.unwrap()
        );
        file.close().await.unwrap();
        file = JsonFileStore::open(&dir).await.unwrap();
    }
    file.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn file_store_behaves_like_the_reference(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}
