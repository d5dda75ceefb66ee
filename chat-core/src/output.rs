//! The core's inputs and outputs: everything that crosses between it and a runtime is data.
//!
//! An [`Input`] also has a serde form, so that a cluster can append it to a shared log and have
//! every node feed the same one to its core: `{"connect":7}`, `{"command":{"conn":7,"command":
//! {"type":"say",…},"reference":"a1"}}`, `"tick"`. Its parts keep the serde forms they have
//! elsewhere (a [`Command`] is its client frame, a [`Record`] its store line), and secrets and
//! password hashes are carried verbatim: the log is as sensitive as the store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Ref};
use crate::event::Event;
use crate::identity::{AuthError, Identity, LoginAttempt, PasswordHash, Secret};
use crate::ids::{ConnectionId, MessageId};
use crate::message::DirectMessage;
use crate::persistence::Record;
use crate::room_name::RoomName;
use crate::user_name::{UserKey, UserName};

/// Something that happened, fed to [`Chat::handle`](crate::Chat::handle) with the current time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// The runtime accepted a connection and named it.
    Connect(ConnectionId),
    /// A connection sent a command.
    Command {
        /// Who sent it.
        conn: ConnectionId,
        /// What it asks.
        command: Command,
        /// The client's `ref`, echoed on the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
    },
    /// The connection is gone (closed by either side). If it was its user's last session, the
    /// user leaves every room (an account keeps them as its rooms, for its next login);
    /// otherwise it just stops receiving.
    Disconnect(ConnectionId),
    /// The store failed to keep these records (the runtime told their senders `unavailable` and
    /// delivered nothing of what followed them): the core forgets the messages and queued DMs
    /// among them, so nobody is later shown what was never stored. Reservations and deliveries
    /// are the runtime's to retry once the store recovers. An unstored [`Record::Rooms`] is
    /// ignored: the account keeps its rooms in memory (until a restart), and chat-runtime stores
    /// the set again once the store recovers (as every later change does, whole).
    Unstored(Vec<Record>),
    /// These DMs were taken from their mailboxes at a login, but the store could not record
    /// the delivery, so the runtime did not deliver them: the core puts them back at the front
    /// of their owners' mailboxes, for the next login to deliver (once).
    Undelivered(Vec<Arc<DirectMessage>>),
    /// The runtime's answer to [`Output::Authenticate`]: who the login is, or why not. The
    /// connection's commands sent after the login waited in the core, and are handled now.
    Authenticated {
        /// The connection that asked to log in.
        conn: ConnectionId,
        /// The verified identity, or the refusal.
        outcome: Result<Identity, AuthError>,
    },
    /// The runtime's answer to [`Output::HashPassword`]: the hash to keep for the account, or
    /// why not.
    PasswordHashed {
        /// The connection that asked to register.
        conn: ConnectionId,
        /// The hash, or the refusal.
        outcome: Result<PasswordHash, AuthError>,
    },
    /// Time passed: the runtime calls this when [`Chat::poll_timeout`](crate::Chat::poll_timeout)'s
    /// instant arrives.
    Tick,
}

/// Something the runtime must do, drained with [`Chat::poll_output`](crate::Chat::poll_output)
/// in order.
///
/// Ordering rule: an event that follows a [`Output::Persist`] must not reach any client before
/// that record is durable, so that whatever a client saw survives a crash. A runtime may store a
/// whole burst of records in one write (group commit) and then deliver.
#[must_use = "the runtime must carry out every output"]
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send one event to one connection.
    Send {
        /// The recipient.
        to: ConnectionId,
        /// The event, shared with other outputs where it is the same.
        event: Arc<Event>,
        /// The `ref` of the command this answers, to add to the frame.
        reference: Option<Ref>,
        /// What the event is to its recipient.
        kind: SendKind,
    },
    /// Send one event to many connections: the core's whole fan-out is this one value.
    Broadcast {
        /// The recipients, shared with the room's cache.
        to: Recipients,
        /// One of them not to send it to (the sender, who gets its own copy with its `ref`).
        except: Option<ConnectionId>,
        /// The event, built once.
        event: Arc<Event>,
    },
    /// Make a record durable in the store.
    Persist(Record),
    /// A history page reaches past what the core keeps in memory: answer it from the store
    /// with `Event::History` or `Event::DmHistory` (once every record before this output is
    /// stored).
    FetchHistory(HistoryRequest),
    /// Verify a login off the core's task (a password hash is slow, a token needs keys) and
    /// answer with [`Input::Authenticated`]. Until then the core holds the connection's later
    /// commands, so they are answered in order, after the login. (A runtime may hold them
    /// itself instead, and feed them after the answer.)
    Authenticate {
        /// Who asks.
        conn: ConnectionId,
        /// What the client sent.
        attempt: LoginAttempt,
        /// The `ref` of the `login` frame: the core puts it on its answer; a runtime that must
        /// answer the frame itself (its store failed) uses it too.
        reference: Option<Ref>,
    },
    /// Hash the password a guest registers its name with, off the core's task, and answer with
    /// [`Input::PasswordHashed`]. The connection's later commands wait as for a login.
    HashPassword {
        /// Who asks.
        conn: ConnectionId,
        /// The name being registered.
        name: UserName,
        /// The password (already checked against the password rules).
        password: Secret,
        /// The `ref` of the `register` frame (see [`Output::Authenticate`]).
        reference: Option<Ref>,
    },
    /// Close the connection; a [`Input::Disconnect`] for it follows once it is closed.
    Close {
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: CloseReason,
    },
}

/// What a [`Output::Send`] is to its recipient. Transports render some kinds differently (a line
/// client does not see its own room messages echoed), and a runtime exempts backlogs from the
/// outbound queue bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendKind {
    /// The answer to the recipient's own command (`welcome`, `left`, `who`, `rooms`, `pong`,
    /// `error`).
    Reply,
    /// The recipient's own copy of a message it sent (`say`, `dm`), carrying its `ref`.
    Echo,
    /// Something the client asked for in one go that may be large: a `joined` frame with its
    /// history, a history page, or the queued DMs delivered at login. It never counts as the
    /// client being slow to read.
    Backlog,
    /// Something another user caused: a DM arriving. (Room traffic comes as
    /// [`Output::Broadcast`].)
    Push,
    /// A copy, for one of this user's other sessions, of something the user did in another
    /// session: the `joined` or `left` of a join or leave, or the sender's copy of a DM. It
    /// carries no `ref` (only the session that sent the frame gets that) and, for a DM,
    /// `queued: false`. The session did not ask for it, so it counts like a [`SendKind::Push`]
    /// towards the outbound bound.
    Copy,
}

impl SendKind {
    /// Whether the runtime must accept this event into a full outbound queue.
    pub fn is_backlog(self) -> bool {
        self == SendKind::Backlog
    }
}

/// A history page for the runtime to read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRequest {
    /// Who asked.
    pub conn: ConnectionId,
    /// Whose history: a room's, or one conversation's.
    pub of: HistoryOf,
    /// Only messages with an id below this one; `None` means from the newest.
    pub before: Option<MessageId>,
    /// The most messages to return, already clamped to 1–500.
    pub limit: usize,
    /// The asker's `ref`.
    pub reference: Option<Ref>,
}

/// What a [`HistoryRequest`] pages through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryOf {
    /// A room's messages (the asker is a member): answered with [`Event::History`].
    Room(RoomName),
    /// The DMs between `user` (the asker's account) and `with`, both directions: answered with
    /// [`Event::DmHistory`] (from the store's `dm_history`).
    Dms {
        /// The asker's account.
        user: UserKey,
        /// The other account, as registered.
        with: UserName,
    },
}

/// Why the core closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection did not log in within [`Config::login_timeout`](crate::Config::login_timeout).
    LoginTimeout,
}

/// A shared, immutable set of connections: a room's members at the moment of a broadcast. The
/// room caches it until its membership changes, so a burst of messages hands out the same `Arc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipients(Arc<[ConnectionId]>);

impl Recipients {
    pub(crate) fn new(conns: impl IntoIterator<Item = ConnectionId>) -> Self {
        Recipients(conns.into_iter().collect())
    }

    /// The connections.
    pub fn as_slice(&self) -> &[ConnectionId] {
        &self.0
    }

    /// How many connections.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether two sets are one shared allocation (the cache was reused).
    pub fn ptr_eq(&self, other: &Recipients) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A set built by hand (a test's, an embedder's own outputs); the core shares its rooms' sets.
impl FromIterator<ConnectionId> for Recipients {
    fn from_iter<I: IntoIterator<Item = ConnectionId>>(conns: I) -> Self {
        Recipients::new(conns)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::AuthError;

    #[test]
    fn inputs_serialise_as_a_shared_log_holds_them() {
        let conn = ConnectionId(7);
        let alice = UserName::parse("Alice").unwrap();
        let cases = [
            (Input::Connect(conn), json!({"connect": 7})),
            (
                Input::Command {
                    conn,
                    command: Command::join("rust"),
                    reference: Some(Ref::number(1)),
                },
                json!({"command": {"conn": 7, "command": {"type": "join", "room": "rust"}, "reference": 1}}),
            ),
            (
                Input::Command {
                    conn,
                    command: Command::Register {
                        password: Secret::new("correct horse"),
                    },
                    reference: None,
                },
                json!({"command": {"conn": 7, "command": {"type": "register", "password": "correct horse"}}}),
            ),
            (
                Input::Authenticated {
                    conn,
                    outcome: Ok(Identity::Account(alice)),
                },
                json!({"authenticated": {"conn": 7, "outcome": {"Ok": {"account": "Alice"}}}}),
            ),
            (
                Input::PasswordHashed {
                    conn,
                    outcome: Ok(PasswordHash::new("$argon2id$v=19$x")),
                },
                json!({"password_hashed": {"conn": 7, "outcome": {"Ok": "$argon2id$v=19$x"}}}),
            ),
            (
                Input::PasswordHashed {
                    conn,
                    outcome: Err(AuthError::NotOffered("no".into())),
                },
                json!({"password_hashed": {"conn": 7, "outcome": {"Err": {"not_offered": "no"}}}}),
            ),
            (Input::Disconnect(conn), json!({"disconnect": 7})),
            (Input::Tick, json!("tick")),
        ];
        for (input, expected) in cases {
            assert_eq!(serde_json::to_value(&input).unwrap(), expected);
            assert_eq!(serde_json::from_value::<Input>(expected).unwrap(), input);
        }
    }
}
