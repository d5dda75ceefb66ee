//! [`RoomSet`]: the rooms one user is in, or an account keeps, in name order.
//!
//! A user is in a handful of rooms (at most [`Config::max_rooms`](crate::Config::max_rooms)),
//! and every connected user has such a set. A `BTreeSet` allocates a node for eleven names even
//! for one, about 280 bytes for a user in just the default room; a sorted vector of exactly the
//! names it holds costs 24 bytes per name, and finding a name among a handful is as fast.

use crate::RoomName;

/// A set of room names, iterated in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoomSet {
    /// Sorted, without duplicates.
    names: Vec<RoomName>,
}

impl RoomSet {
    /// An empty set (no allocation).
    pub(crate) fn new() -> Self {
        RoomSet { names: Vec::new() }
    }

    /// Adds `room`; `false` if it was there already.
    pub(crate) fn insert(&mut self, room: RoomName) -> bool {
        match self.names.binary_search(&room) {
            Ok(_) => false,
            Err(at) => {
                // One more slot, not a doubling: the set stays the size of what it holds.
                self.names.reserve_exact(1);
                self.names.insert(at, room);
                true
            }
        }
    }

    /// Removes `room`; `false` if it was not there.
    pub(crate) fn remove(&mut self, room: &RoomName) -> bool {
        match self.names.binary_search(room) {
            Ok(at) => {
                self.names.remove(at);
                if self.names.is_empty() {
                    self.names = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `room` is in the set.
    pub(crate) fn contains(&self, room: &RoomName) -> bool {
        self.names.binary_search(room).is_ok()
    }

    /// How many rooms.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The rooms in name order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, RoomName> {
        self.names.iter()
    }
}

impl FromIterator<RoomName> for RoomSet {
    fn from_iter<I: IntoIterator<Item = RoomName>>(rooms: I) -> Self {
        let mut names: Vec<RoomName> = rooms.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        names.shrink_to_fit();
        RoomSet { names }
    }
}

impl IntoIterator for RoomSet {
    type Item = RoomName;
    type IntoIter = std::vec::IntoIter<RoomName>;

    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter()
    }
}

impl<'a> IntoIterator for &'a RoomSet {
    type Item = &'a RoomName;
    type IntoIter = std::slice::Iter<'a, RoomName>;

    fn into_iter(self) -> Self::IntoIter {
        self.names.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("a valid room name")
    }

    #[test]
    fn holds_exactly_its_rooms_in_order() {
        let mut set = RoomSet::new();
        assert!(set.insert(room("lobby")));
        assert!(set.insert(room("general")));
        assert!(!set.insert(room("lobby")), "a room is in a set once");
        assert_eq!(set.len(), 2);
        assert_eq!(set.names.capacity(), 2, "no room to spare");
        let names: Vec<_> = set.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["general", "lobby"]);
        assert!(set.remove(&room("general")));
        assert!(!set.remove(&room("general")));
        assert!(set.contains(&room("lobby")));
        assert!(!set.contains(&room("general")));
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same rooms, in the same order, as a
        /// BTreeSet given the same sequence, and the same answers on the way.
        #[test]
        fn behaves_as_a_btree_set(ops in proptest::collection::vec((any::<bool>(), 0u8..12), 0..64)) {
            let mut set = RoomSet::new();
            let mut model = BTreeSet::new();
            for (add, n) in ops {
                let name = room(&format!("r{n}"));
                if add {
                    prop_assert_eq!(set.insert(name.clone()), model.insert(name));
                } else {
                    prop_assert_eq!(set.remove(&name), model.remove(&name));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            prop_assert!(set.iter().eq(model.iter()));
            let collected: RoomSet = model.iter().rev().cloned().chain(model.iter().cloned()).collect();
            prop_assert_eq!(collected, set);
        }
    }
}
