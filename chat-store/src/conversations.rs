//! DM conversations as every backend keeps them: the key of one, how an error names it, and how
//! [`Snapshot::dms`](chat_core::Snapshot::dms) is merged from them.
//!
//! A conversation is keyed by its two users' keys, the smaller first ([`Conversation`], what
//! [`DirectMessage::parties`] gives), so a DM and its answer share one history. A backend keeps
//! each conversation's history on its own, oldest first (a list in memory, a file on disk), and
//! can read it newest first. A user's tail in the snapshot is the newest DMs across all of that
//! user's conversations; [`tails`] merges them newest first and pulls from each conversation only
//! the DMs that make it into the tail, plus one to learn whether older ones exist. So a backend
//! that reads its conversations backwards reads about what the snapshot returns, however long
//! the histories are.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use chat_core::{DirectMessage, DmTail, MessageId, UserKey};

use crate::store::StoreError;

/// The key of a conversation: its two users' keys, the smaller first
/// ([`DirectMessage::parties`], [`chat_core::conversation`]).
pub(crate) type Conversation = (UserKey, UserKey);

/// How errors name a conversation: `the conversation of alice and bob`.
pub(crate) fn place((a, b): &Conversation) -> String {
    format!("the conversation of {a} and {b}")
}

/// The [`Snapshot::dms`](chat_core::Snapshot::dms) of a store holding `conversations`: for every
/// user that is a party to one, its newest `history` DMs across its conversations, oldest first,
/// and whether it has older ones. `newest` reads one conversation newest first.
///
/// The result does not depend on the order of `conversations`. DMs with equal ids (which the
/// core never makes) come in the order of their conversations' keys.
pub(crate) fn tails<'c, I>(
    conversations: impl IntoIterator<Item = &'c Conversation>,
    history: usize,
    mut newest: impl FnMut(&Conversation) -> I,
) -> Result<BTreeMap<UserKey, DmTail>, StoreError>
where
    I: Iterator<Item = Result<DirectMessage, StoreError>>,
{
    let mut by_user: BTreeMap<&UserKey, Vec<&Conversation>> = BTreeMap::new();
    for conversation in conversations {
        let (a, b) = conversation;
        by_user.entry(a).or_default().push(conversation);
        if b != a {
            by_user.entry(b).or_default().push(conversation);
        }
    }
    by_user
        .into_iter()
        .map(|(user, mut conversations)| {
            conversations.sort();
            let sources = conversations.into_iter().map(&mut newest).collect();
            Ok((user.clone(), merge_newest(sources, history)?))
        })
        .collect()
}

/// The newest `count` DMs of all `sources` (each newest first), oldest first, and whether the
/// sources hold more.
fn merge_newest<I>(mut sources: Vec<I>, count: usize) -> Result<DmTail, StoreError>
where
    I: Iterator<Item = Result<DirectMessage, StoreError>>,
{
    // The next DM of every source that has one; the newest on top.
    let mut heads = BinaryHeap::with_capacity(sources.len());
    for (source, dms) in sources.iter_mut().enumerate() {
        if let Some(dm) = dms.next().transpose()? {
            heads.push(Head { dm, source });
        }
    }
    let mut messages = Vec::new();
    while messages.len() < count {
        let Some(Head { dm, source }) = heads.pop() else {
            break;
        };
        messages.push(dm);
        if let Some(dm) = sources[source].next().transpose()? {
            heads.push(Head { dm, source });
        }
    }
    messages.reverse();
    Ok(DmTail {
        messages,
        has_older: !heads.is_empty(),
    })
}

/// The next DM of one source in [`merge_newest`]. The greater is the newer, the one to take
/// first: the higher id, and of equal ids the later source's (so that, oldest first, equal ids
/// come in source order).
struct Head {
    dm: DirectMessage,
    source: usize,
}

impl Head {
    fn rank(&self) -> (MessageId, usize) {
        (self.dm.id, self.source)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::direct_from;

    /// Every conversation with its DMs, oldest first, and a counter of the DMs read from each.
    struct Fake {
        histories: BTreeMap<Conversation, Vec<DirectMessage>>,
        read: std::cell::Cell<usize>,
    }

    impl Fake {
        fn new(dms: &[(u64, &str, &str)]) -> Self {
            let mut histories: BTreeMap<Conversation, Vec<DirectMessage>> = BTreeMap::new();
            for &(id, from, to) in dms {
                let dm = direct_from(id, from, to, "hi");
                histories
                    .entry(dm.parties())
                    .or_default()
                    .push((*dm).clone());
            }
            Fake {
                histories,
                read: std::cell::Cell::new(0),
            }
        }

        fn tails(&self, history: usize) -> BTreeMap<UserKey, DmTail> {
            tails(self.histories.keys(), history, |conversation| {
                self.histories[conversation].iter().rev().map(|dm| {
                    self.read.set(self.read.get() + 1);
                    Ok(dm.clone())
                })
            })
            .unwrap()
        }
    }

    fn ids(tail: &DmTail) -> Vec<u64> {
        tail.messages.iter().map(|dm| dm.id.get()).collect()
    }

    #[test]
    fn a_users_tail_merges_its_conversations_newest_last() {
        let fake = Fake::new(&[
            (1, "alice", "bob"),
            (2, "carol", "alice"),
            (3, "bob", "alice"),
            (4, "bob", "carol"),
            (5, "alice", "carol"),
        ]);
        let tails = fake.tails(10);
        let user = |name| &tails[&UserKey::parse(name).unwrap()];
        assert_eq!(ids(user("alice")), vec![1, 2, 3, 5]);
        assert_eq!(ids(user("bob")), vec![1, 3, 4]);
        assert_eq!(ids(user("carol")), vec![2, 4, 5]);
        assert!(tails.values().all(|tail| !tail.has_older));

        let tails = fake.tails(2);
        let user = |name| &tails[&UserKey::parse(name).unwrap()];
        assert_eq!(ids(user("alice")), vec![3, 5]);
        assert!(user("alice").has_older);
        assert_eq!(ids(user("bob")), vec![3, 4]);
        assert!(user("bob").has_older);
    }

    #[test]
    fn a_tail_of_nothing_still_says_whether_older_dms_exist() {
        let tails = Fake::new(&[(1, "alice", "bob")]).tails(0);
        assert_eq!(tails.len(), 2);
        assert!(
            tails
                .values()
                .all(|tail| tail.messages.is_empty() && tail.has_older)
        );
    }

    #[test]
    fn merging_reads_only_what_the_tails_need() {
        // Alice has 100 DMs with each of 10 users; a tail of 5 needs few of them.
        let mut dms = Vec::new();
        for n in 0..1000u64 {
            let peer = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"][(n % 10) as usize];
            dms.push((n + 1, "alice", peer));
        }
        let fake = Fake::new(&dms);
        let tails = fake.tails(5);
        assert_eq!(
            ids(&tails[&UserKey::parse("alice").unwrap()]),
            vec![996, 997, 998, 999, 1000]
        );
        // Alice: a head of each of her 10 conversations, then the one after each DM taken; each
        // of the others: the head of their one conversation and the one after each DM taken.
        assert_eq!(fake.read.get(), (10 + 5) + 10 * (1 + 5));
    }

    #[test]
    fn a_dm_to_oneself_is_in_one_tail_once() {
        let tails = Fake::new(&[(1, "alice", "Alice"), (2, "alice", "bob")]).tails(10);
        assert_eq!(ids(&tails[&UserKey::parse("alice").unwrap()]), vec![1, 2]);
        assert_eq!(ids(&tails[&UserKey::parse("bob").unwrap()]), vec![2]);
    }

    #[test]
    fn equal_ids_come_in_the_order_of_their_conversations() {
        let tails = Fake::new(&[(7, "alice", "carol"), (7, "alice", "bob")]).tails(10);
        let alice = &tails[&UserKey::parse("alice").unwrap()];
        let peers: Vec<&str> = alice.messages.iter().map(|dm| dm.to.as_str()).collect();
        assert_eq!(peers, vec!["bob", "carol"]);
    }
}
