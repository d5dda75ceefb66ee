//! A room: its members, its cached recipient set and its history.
//!
//! Members are kept sorted by their case-insensitive key, so member lists come out in the
//! protocol's order without sorting. The recipient set handed to broadcasts is built once per
//! membership change and shared by every message until the next change: a burst of messages in
//! a 10,000-member room costs the core one `Arc` clone each. A member is a user, with every
//! session it is logged in from: the recipient set is every session of every member, rebuilt
//! when membership or a member's sessions change.
//!
//! A large room (more members than [`Config::large_room`](crate::Config::large_room)) tells
//! nobody of joins and leaves, so nothing asks for its recipient set at a membership change: it
//! is built at the next message, once, however many members came and went before it. Its
//! `joined` frames list only the first members in order ([`Room::first_member_names`]), which
//! the sorted map hands out without looking at the rest.

use std::collections::BTreeMap;

use crate::history::History;
use crate::ids::ConnectionId;
use crate::output::Recipients;
use crate::user_name::{UserKey, UserName};

/// One room's state.
#[derive(Debug)]
pub(crate) struct Room {
    members: BTreeMap<UserKey, (UserName, Vec<ConnectionId>)>,
    recipients: Option<Recipients>,
    pub(crate) history: History,
}

impl Room {
    pub(crate) fn new(history: History) -> Self {
        Room {
            members: BTreeMap::new(),
            recipients: None,
            history,
        }
    }

    /// Adds a member with its sessions.
    pub(crate) fn add(&mut self, name: UserName, sessions: Vec<ConnectionId>) {
        self.members.insert(name.key(), (name, sessions));
        self.recipients = None;
    }

    /// A member's sessions changed (one logged in or out).
    pub(crate) fn set_sessions(&mut self, key: &UserKey, sessions: &[ConnectionId]) {
        if let Some((_, conns)) = self.members.get_mut(key) {
            conns.clear();
            conns.extend_from_slice(sessions);
            self.recipients = None;
        }
    }

    pub(crate) fn remove(&mut self, key: &UserKey) {
        if self.members.remove(key).is_some() {
            self.recipients = None;
        }
    }

    /// Every session of every member, from the cache or built (and cached) now.
    pub(crate) fn recipients(&mut self) -> Recipients {
        self.recipients
            .get_or_insert_with(|| {
                Recipients::new(
                    self.members
                        .values()
                        .flat_map(|(_, conns)| conns.iter().copied()),
                )
            })
            .clone()
    }

    /// Member names, sorted case-insensitively.
    pub(crate) fn member_names(&self) -> Vec<UserName> {
        self.first_member_names(usize::MAX)
    }

    /// The first `limit` member names, sorted case-insensitively: O(`limit`), whatever the
    /// room's size.
    pub(crate) fn first_member_names(&self, limit: usize) -> Vec<UserName> {
        self.members
            .values()
            .take(limit)
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    /// A room with no members and no history can be forgotten.
    pub(crate) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.history.is_empty()
    }
}
