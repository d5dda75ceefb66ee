//! An offline user's mailbox: DMs kept, in order, until that name logs in.
//!
//! Bounded: when full, a new DM is refused (`mailbox_full`) rather than dropping an old one, so
//! a sender always knows whether the message was kept.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::MessageId;
use crate::message::DirectMessage;

/// The undelivered DMs of one name, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    queue: VecDeque<Arc<DirectMessage>>,
}

impl Mailbox {
    pub(crate) fn restored(messages: Vec<DirectMessage>) -> Self {
        Mailbox {
            queue: messages.into_iter().map(Arc::new).collect(),
        }
    }

    /// A mailbox holding `messages`, oldest first, as [`Mailbox::iter`] gave them.
    pub(crate) fn from_messages(messages: impl IntoIterator<Item = Arc<DirectMessage>>) -> Self {
        Mailbox {
            queue: messages.into_iter().collect(),
        }
    }

    /// The DMs, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<DirectMessage>> {
        self.queue.iter()
    }

    pub(crate) fn push(&mut self, message: Arc<DirectMessage>) {
        self.queue.push_back(message);
    }

    /// Puts back a DM that was taken but not delivered, before the others.
    pub(crate) fn push_front(&mut self, message: Arc<DirectMessage>) {
        self.queue.push_front(message);
    }

    /// Takes back a DM the store could not keep; `true` if it was here.
    pub(crate) fn remove(&mut self, id: MessageId) -> bool {
        match self.queue.iter().rposition(|m| m.id == id) {
            Some(at) => self.queue.remove(at).is_some(),
            None => false,
        }
    }

    /// Every DM, oldest first, emptying the mailbox.
    pub(crate) fn take(&mut self) -> VecDeque<Arc<DirectMessage>> {
        std::mem::take(&mut self.queue)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
