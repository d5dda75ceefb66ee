//! A room's recent messages: a bounded ring in id order.
//!
//! The ring keeps the newest `capacity` messages. Join history and most history pages are served
//! from it; a page that reaches past its oldest message while older ones exist in the store is
//! reported as incomplete, so the runtime reads it from the store instead of returning a short
//! page by mistake.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::MessageId;
use crate::message::RoomMessage;

/// The newest messages of one room, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    ring: VecDeque<Arc<RoomMessage>>,
    capacity: usize,
    /// Older messages than the ring's oldest exist (evicted, or left in the store at restore).
    has_older: bool,
}

/// A page served from memory, or the news that memory does not have all of it.
#[derive(Debug, PartialEq)]
pub(crate) enum Page {
    /// The page, oldest first.
    Complete(Vec<Arc<RoomMessage>>),
    /// Memory holds only part of the page; the store has the rest.
    Partial,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            ring: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            has_older: false,
        }
    }

    /// A ring holding the newest `capacity` of `messages` (in strictly increasing id order).
    pub(crate) fn restored(
        capacity: usize,
        messages: impl ExactSizeIterator<Item = RoomMessage>,
        has_older: bool,
    ) -> Self {
        let skip = messages.len().saturating_sub(capacity);
        let mut history = History::new(capacity);
        history.has_older = has_older || skip > 0;
        history.ring.extend(messages.skip(skip).map(Arc::new));
        history
    }

    /// Appends the newest message, dropping the oldest when full.
    pub(crate) fn push(&mut self, message: Arc<RoomMessage>) {
        debug_assert!(self.ring.back().is_none_or(|last| last.id < message.id));
        if self.capacity == 0 {
            self.has_older = true;
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
            self.has_older = true;
        }
        self.ring.push_back(message);
    }

    /// Takes back a message the store could not keep (one of the newest, so the search is from
    /// the back).
    pub(crate) fn remove(&mut self, id: MessageId) {
        if let Some(at) = self.ring.iter().rposition(|m| m.id == id) {
            self.ring.remove(at);
        }
    }

    /// The newest `n` messages, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<Arc<RoomMessage>> {
        let skip = self.ring.len().saturating_sub(n);
        self.ring.iter().skip(skip).cloned().collect()
    }

    /// Up to `limit` messages with an id below `before` (all, if `None`), oldest first.
    pub(crate) fn page(&self, before: Option<u64>, limit: usize) -> Page {
        let end = match before {
            Some(before) => self.ring.partition_point(|m| m.id.get() < before),
            None => self.ring.len(),
        };
        let start = end.saturating_sub(limit);
        let reaches_the_oldest = start == 0 && end - start < limit;
        // Nothing older than `before` can exist when `before` is at or below the first id.
        let nothing_older_can_exist = before.is_some_and(|b| b <= 1);
        if reaches_the_oldest && self.has_older && !nothing_older_can_exist {
            return Page::Partial;
        }
        Page::Complete(self.ring.range(start..end).cloned().collect())
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && !self.has_older
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageId, RoomName, Text, Timestamp, UserName};

    fn msg(id: u64) -> RoomMessage {
        RoomMessage {
            room: RoomName::parse("r").unwrap(),
            id: MessageId::new(id).unwrap(),
            from: UserName::parse("u").unwrap(),
            text: Text::parse("t", 10).unwrap(),
            ts: Timestamp::EPOCH,
        }
    }

    fn ids(page: Page) -> Vec<u64> {
        match page {
            Page::Complete(messages) => messages.iter().map(|m| m.id.get()).collect(),
            Page::Partial => panic!("expected a complete page"),
        }
    }

    #[test]
    fn a_removed_message_is_gone_and_the_rest_stay_in_order() {
        let mut history = History::new(10);
        for id in 1..=4 {
            history.push(Arc::new(msg(id)));
        }
        history.remove(MessageId::new(3).unwrap());
        assert_eq!(ids(history.page(None, 10)), [1, 2, 4]);
        history.remove(MessageId::new(9).unwrap());
        assert_eq!(history.len(), 3, "an unknown id changes nothing");
    }

    #[test]
    fn keeps_only_the_newest_capacity_messages() {
        let mut h = History::new(3);
        for id in 1..=5 {
            h.push(Arc::new(msg(id)));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.last(2).iter().map(|m| m.id.get()).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(h.last(10).len(), 3);
    }

    #[test]
    fn pages_are_served_from_memory_while_memory_has_everything() {
        let mut h = History::new(10);
        for id in [2, 4, 6, 8] {
            h.push(Arc::new(msg(id)));
        }
        assert_eq!(ids(h.page(None, 2)), [6, 8]);
        assert_eq!(ids(h.page(Some(6), 50)), [2, 4]);
        assert_eq!(ids(h.page(Some(7), 1)), [6]);
        assert_eq!(ids(h.page(Some(2), 5)), Vec::<u64>::new());
    }

    #[test]
    fn a_page_past_evicted_messages_goes_to_the_store() {
        let mut h = History::new(2);
        for id in 1..=4 {
            h.push(Arc::new(msg(id)));
        }
        // Memory holds 3 and 4; asking for three, or for anything older, needs the store.
        assert_eq!(ids(h.page(None, 2)), [3, 4]);
        assert_eq!(h.page(None, 3), Page::Partial);
        assert_eq!(h.page(Some(3), 1), Page::Partial);
        assert_eq!(ids(h.page(Some(4), 1)), [3]);
        assert_eq!(ids(h.page(Some(1), 5)), Vec::<u64>::new());
    }

    #[test]
    fn a_restored_tail_that_was_cut_says_so() {
        let h = History::restored(2, (1..=5).map(msg).collect::<Vec<_>>().into_iter(), false);
        assert_eq!(
            h.last(5).iter().map(|m| m.id.get()).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(h.page(None, 3), Page::Partial);
        let whole = History::restored(9, (1..=5).map(msg).collect::<Vec<_>>().into_iter(), false);
        assert_eq!(ids(whole.page(None, 9)), [1, 2, 3, 4, 5]);
    }
}
