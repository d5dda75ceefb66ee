//! Recent messages, of a room or of one user's DMs: a bounded ring in id order.
//!
//! The ring keeps the newest `capacity` messages. Join history, resume and most history pages
//! are served from it; a page that reaches past its oldest message while older ones exist in the
//! store is reported as incomplete, so the runtime reads it from the store instead of returning a
//! short page by mistake. The ring remembers the newest id it let go of, so a resume from a
//! last-seen id knows whether everything after that id is still here.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::MessageId;
use crate::message::{DirectMessage, RoomMessage};

/// A message a [`History`] can hold: anything with an id.
pub(crate) trait Kept {
    fn id(&self) -> MessageId;
}

impl Kept for RoomMessage {
    fn id(&self) -> MessageId {
        self.id
    }
}

impl Kept for DirectMessage {
    fn id(&self) -> MessageId {
        self.id
    }
}

/// The newest messages of one room (or one user's DMs), oldest first.
#[derive(Debug)]
pub(crate) struct History<M = RoomMessage> {
    ring: VecDeque<Arc<M>>,
    capacity: usize,
    /// Messages older than the ring's oldest may exist (evicted, or left in the store at
    /// restore), with ids up to this one; 0 when none do.
    older_up_to: u64,
}

/// A page served from memory, or the news that memory does not have all of it.
#[derive(Debug, PartialEq)]
pub(crate) enum Page<M = RoomMessage> {
    /// The page, oldest first.
    Complete(Vec<Arc<M>>),
    /// Memory holds only part of the page; the store has the rest.
    Partial,
}

/// What a client that saw every message up to an id missed since.
#[derive(Debug, PartialEq)]
pub(crate) struct Missed<M> {
    /// The newest of them (at most the limit asked for), oldest first.
    pub(crate) messages: Vec<Arc<M>>,
    /// Whether these are all of them: none was cut by the limit, and none had left memory.
    pub(crate) complete: bool,
}

impl<M: Kept> History<M> {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            ring: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            older_up_to: 0,
        }
    }

    /// A ring holding the newest `capacity` of `messages` (in strictly increasing id order).
    pub(crate) fn restored(
        capacity: usize,
        messages: impl ExactSizeIterator<Item = Arc<M>>,
        has_older: bool,
    ) -> Self {
        let skip = messages.len().saturating_sub(capacity);
        let mut history = History::new(capacity);
        let mut messages = messages.peekable();
        for _ in 0..skip {
            if let Some(skipped) = messages.next() {
                history.older_up_to = skipped.id().get();
            }
        }
        history.ring.extend(messages);
        if has_older && skip == 0 {
            // The store has older ones; all we know of their ids is that they are below ours.
            history.older_up_to = history
                .ring
                .front()
                .map_or(u64::MAX, |first| first.id().get() - 1)
                .max(1);
        }
        history
    }

    /// A ring as [`History::parts`] gave it, with room for `capacity` messages: if it holds
    /// more (a checkpoint taken with a larger [`Config::history`](crate::Config::history)), the
    /// oldest are let go of as [`History::push`] would have. `messages` are in strictly
    /// increasing id order (the caller checks).
    pub(crate) fn from_parts(
        capacity: usize,
        messages: impl IntoIterator<Item = Arc<M>>,
        older_up_to: u64,
    ) -> Self {
        let mut history = History {
            ring: messages.into_iter().collect(),
            capacity,
            older_up_to,
        };
        let excess = history.ring.len().saturating_sub(capacity);
        if let Some(evicted) = history.ring.drain(..excess).next_back() {
            history.older_up_to = evicted.id().get();
        }
        history
    }

    /// The messages held, oldest first, and the newest id let go of (0 if none): with the
    /// capacity, which the configuration gives, everything that decides what the ring answers.
    pub(crate) fn parts(&self) -> (impl Iterator<Item = &Arc<M>>, u64) {
        (self.ring.iter(), self.older_up_to)
    }

    /// Appends the newest message, dropping the oldest when full.
    pub(crate) fn push(&mut self, message: Arc<M>) {
        debug_assert!(self.ring.back().is_none_or(|last| last.id() < message.id()));
        if self.capacity == 0 {
            self.older_up_to = message.id().get();
            return;
        }
        if self.ring.len() == self.capacity
            && let Some(evicted) = self.ring.pop_front()
        {
            self.older_up_to = evicted.id().get();
        }
        self.ring.push_back(message);
    }

    /// Takes back a message the store could not keep (one of the newest, so the search is from
    /// the back).
    pub(crate) fn remove(&mut self, id: MessageId) {
        if let Some(at) = self.ring.iter().rposition(|m| m.id() == id) {
            self.ring.remove(at);
        }
    }

    /// The newest `n` messages, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<Arc<M>> {
        let skip = self.ring.len().saturating_sub(n);
        self.ring.iter().skip(skip).cloned().collect()
    }

    /// The messages with an id above `since` that pass `keep`: the newest `limit` of them,
    /// oldest first, and whether that is all of them.
    pub(crate) fn since(&self, since: u64, limit: usize, keep: impl Fn(&M) -> bool) -> Missed<M> {
        let start = self.ring.partition_point(|m| m.id().get() <= since);
        let mut messages: Vec<Arc<M>> = self
            .ring
            .range(start..)
            .filter(|m| keep(m))
            .cloned()
            .collect();
        let cut = messages.len().saturating_sub(limit);
        messages.drain(..cut);
        Missed {
            messages,
            complete: cut == 0 && self.older_up_to <= since,
        }
    }

    /// Up to `limit` messages with an id below `before` (all, if `None`), oldest first.
    pub(crate) fn page(&self, before: Option<u64>, limit: usize) -> Page<M> {
        self.page_of(before, limit, |_| true)
    }

    /// Up to `limit` messages that pass `keep`, with an id below `before` (all, if `None`),
    /// oldest first.
    pub(crate) fn page_of(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&M) -> bool,
    ) -> Page<M> {
        let end = match before {
            Some(before) => self.ring.partition_point(|m| m.id().get() < before),
            None => self.ring.len(),
        };
        let mut page: Vec<Arc<M>> = self
            .ring
            .range(..end)
            .rev()
            .filter(|m| keep(m))
            .take(limit)
            .cloned()
            .collect();
        // Nothing older than `before` can exist when `before` is at or below the first id.
        let nothing_older_can_exist = before.is_some_and(|b| b <= 1);
        if page.len() < limit && self.older_up_to > 0 && !nothing_older_can_exist {
            return Page::Partial;
        }
        page.reverse();
        Page::Complete(page)
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.older_up_to == 0
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
        let mut history: History = History::new(10);
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
        let mut h: History = History::new(3);
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
        let mut h: History = History::new(10);
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
        let mut h: History = History::new(2);
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
        let h: History = History::restored(
            2,
            (1..=5)
                .map(|id| Arc::new(msg(id)))
                .collect::<Vec<_>>()
                .into_iter(),
            false,
        );
        assert_eq!(
            h.last(5).iter().map(|m| m.id.get()).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(h.page(None, 3), Page::Partial);
        let whole: History = History::restored(
            9,
            (1..=5)
                .map(|id| Arc::new(msg(id)))
                .collect::<Vec<_>>()
                .into_iter(),
            false,
        );
        assert_eq!(ids(whole.page(None, 9)), [1, 2, 3, 4, 5]);
    }

    fn missed(history: &History, since: u64, limit: usize) -> (Vec<u64>, bool) {
        let missed = history.since(since, limit, |_| true);
        (
            missed.messages.iter().map(|m| m.id.get()).collect(),
            missed.complete,
        )
    }

    #[test]
    fn a_resume_gets_what_came_after_the_last_seen_id() {
        let mut h: History = History::new(10);
        for id in [3, 5, 7, 9] {
            h.push(Arc::new(msg(id)));
        }
        assert_eq!(missed(&h, 5, 10), (vec![7, 9], true));
        assert_eq!(missed(&h, 0, 10), (vec![3, 5, 7, 9], true));
        assert_eq!(missed(&h, 9, 10), (vec![], true));
        assert_eq!(missed(&h, 4, 2), (vec![7, 9], false), "cut by the limit");
        assert_eq!(missed(&h, 4, 3), (vec![5, 7, 9], true), "exactly the limit");
    }

    #[test]
    fn a_resume_from_before_what_memory_holds_is_incomplete() {
        let mut h: History = History::new(3);
        for id in 1..=6 {
            h.push(Arc::new(msg(id)));
        }
        // Memory holds 4..=6; 3 was evicted.
        assert_eq!(missed(&h, 3, 10), (vec![4, 5, 6], true));
        assert_eq!(missed(&h, 2, 10), (vec![4, 5, 6], false));
        let restored: History =
            History::restored(5, [10, 20].map(|id| Arc::new(msg(id))).into_iter(), true);
        assert_eq!(missed(&restored, 9, 10), (vec![10, 20], true));
        assert_eq!(missed(&restored, 8, 10), (vec![10, 20], false));
    }

    #[test]
    fn a_filtered_page_reaches_back_past_other_messages() {
        let mut h: History = History::new(10);
        for id in 1..=8 {
            h.push(Arc::new(msg(id)));
        }
        let even = |m: &RoomMessage| m.id.get() % 2 == 0;
        match h.page_of(Some(8), 2, even) {
            Page::Complete(page) => {
                assert_eq!(page.iter().map(|m| m.id.get()).collect::<Vec<_>>(), [4, 6])
            }
            Page::Partial => panic!("memory has it all"),
        }
    }
}
