//! [`Checkpoint`]: a chat's whole state as data, to start a replica where another one is.
//!
//! A cluster runs one deterministic [`Chat`] per node and feeds every node the same inputs in the
//! same order. A node that joins (or restarts) cannot replay every input since the cluster began:
//! it loads a checkpoint another node wrote at some position of the input log, then feeds the
//! inputs after that position, and is then a replica like the others. This module writes a chat
//! down ([`Chat::checkpoint`]) and reads it back ([`Chat::from_checkpoint`]), checking everything
//! it reads, since a checkpoint comes from disk or the network. The trade-off: what a chat
//! derives (room members, recipient sets, counts) is rebuilt on restore rather than stored, so
//! the format holds each fact once and cannot disagree with itself about them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chat::{Chat, Checking, Connection, User};
use crate::command::{Command, Ref};
use crate::config::Config;
use crate::error::RestoreError;
use crate::history::History;
use crate::ids::{ConnectionId, MessageId};
use crate::mailbox::Mailbox;
use crate::message::{DirectMessage, RoomMessage};
use crate::room::Room;
use crate::room_name::RoomName;
use crate::user_name::{UserKey, UserName};

/// Everything a [`Chat`] will decide by, between two inputs: made by [`Chat::checkpoint`], turned
/// back into a chat by [`Chat::from_checkpoint`], carried in between with serde. Fed the same
/// inputs afterwards, the original and the restored chat give the same outputs.
///
/// It holds connections with their login deadlines, online users with their sessions (in login
/// order) and rooms, each room's history ring with what it remembers of the messages it let go
/// of, mailboxes, DM logs, accounts and their rooms, the logins out for checking with the
/// commands waiting for them, and the id counter with its reservation. What follows from those
/// is rebuilt instead: a room's members are the online users whose rooms name it (with their
/// sessions), a connection's user is the user it is a session of, recipient sets and the count
/// of queued DMs are recomputed. A DM held in several places (two logs, a mailbox) is written
/// once. The [`Config`] is not part of it: each node passes its own, and a cluster checks they
/// are equal.
///
/// Its fields are the core's business. The serde form is plain data in a fixed order (sorted by
/// name or id, never in hash order), so two chats in the same state give equal checkpoints and
/// write the same bytes; a `version` field ([`Checkpoint::VERSION`]) is checked first on restore.
/// It holds the commands waiting for a login check as the clients sent them, passwords included,
/// like the input log it is cut from: keep it where that log is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`Checkpoint::VERSION`] when written; checked first on restore.
    version: u32,
    next_id: MessageId,
    reserved_until: MessageId,
    /// Sorted by id.
    connections: Vec<ConnectionState>,
    /// In the chat's order (the order they were set in).
    login_deadlines: Vec<(Duration, ConnectionId)>,
    /// Sorted by key.
    users: Vec<UserState>,
    rooms: BTreeMap<RoomName, Ring<RoomMessage>>,
    accounts: BTreeMap<UserKey, UserName>,
    account_rooms: BTreeMap<UserKey, BTreeSet<RoomName>>,
    /// Every DM in a log or a mailbox, once: the logs and mailboxes name them by position.
    dms: Vec<DirectMessage>,
    dm_logs: BTreeMap<UserKey, Ring<usize>>,
    mailboxes: BTreeMap<UserKey, Vec<usize>>,
    /// Sorted by connection.
    checking: Vec<CheckState>,
}

/// An open connection; its user, if it is logged in, is the one it is a session of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ConnectionState {
    id: ConnectionId,
    login_deadline: Option<Duration>,
    closing: bool,
}

/// A logged-in user: the rooms it is in are the rooms it is a member of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserState {
    name: UserName,
    account: bool,
    /// In login order.
    sessions: Vec<ConnectionId>,
    rooms: BTreeSet<RoomName>,
}

/// A history ring: its messages, oldest first, and the newest id it let go of (0 if none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ring<M> {
    messages: Vec<M>,
    older_up_to: u64,
}

/// A login or registration out for checking, with the commands waiting for its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CheckState {
    conn: ConnectionId,
    reference: Option<Ref>,
    since: Option<u64>,
    waiting: Vec<(Command, Option<Ref>)>,
}

impl Checkpoint {
    /// The format version this build writes, and the only one it reads. It changes whenever the
    /// serde form does, so that a node never continues from a checkpoint it misreads.
    pub const VERSION: u32 = 1;
}

impl Chat {
    /// This chat's whole state, for another node (or a later run) to continue from with
    /// [`Chat::from_checkpoint`]: fed the same inputs afterwards, both give the same outputs.
    ///
    /// Take it between inputs, once every output was drained with [`Chat::poll_output`]:
    /// undrained outputs are not part of it (debug builds assert there are none), so a chat
    /// restored from it would never emit them.
    pub fn checkpoint(&self) -> Checkpoint {
        debug_assert!(
            self.outputs.is_empty(),
            "a checkpoint is taken once every output was drained"
        );
        // Every field by name: a field added to `Chat` must be decided on here.
        let Chat {
            config: _,
            connections,
            online,
            rooms,
            mailboxes,
            dm_logs,
            accounts,
            account_rooms,
            checking,
            queued: _,
            next_id,
            reserved_until,
            login_deadlines,
            outputs: _,
        } = self;
        let connections = sorted(connections)
            .map(|(&id, connection)| ConnectionState {
                id,
                login_deadline: connection.login_deadline,
                closing: connection.closing,
            })
            .collect();
        let users = sorted(online)
            .map(|(_, user)| UserState {
                name: user.name.clone(),
                account: user.account,
                sessions: user.sessions.clone(),
                rooms: user.rooms.iter().cloned().collect(),
            })
            .collect();
        let rooms = rooms
            .iter()
            .map(|(name, room)| {
                let (messages, older_up_to) = room.history.parts();
                let messages = messages
                    .map(|message| RoomMessage::clone(message))
                    .collect();
                let ring = Ring {
                    messages,
                    older_up_to,
                };
                (name.clone(), ring)
            })
            .collect();
        let mut dms = DmTable::default();
        let dm_logs = sorted(dm_logs)
            .map(|(user, log)| {
                let (messages, older_up_to) = log.parts();
                let messages = messages.map(|dm| dms.position(dm)).collect();
                let ring = Ring {
                    messages,
                    older_up_to,
                };
                (user.clone(), ring)
            })
            .collect();
        let mailboxes = sorted(mailboxes)
            .map(|(owner, mailbox)| {
                (
                    owner.clone(),
                    mailbox.iter().map(|dm| dms.position(dm)).collect(),
                )
            })
            .collect();
        let checking = sorted(checking)
            .map(|(&conn, check)| CheckState {
                conn,
                reference: check.reference.clone(),
                since: check.since,
                waiting: check.waiting.iter().cloned().collect(),
            })
            .collect();
        Checkpoint {
            version: Checkpoint::VERSION,
            next_id: *next_id,
            reserved_until: *reserved_until,
            connections,
            login_deadlines: login_deadlines.iter().copied().collect(),
            users,
            rooms,
            accounts: accounts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            account_rooms: account_rooms
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
            dms: dms.dms,
            dm_logs,
            mailboxes,
            checking,
        }
    }

    /// The chat a [`Checkpoint`] was taken of, running with `config`: fed the inputs that
    /// followed the checkpoint, it gives exactly the outputs the original gave.
    ///
    /// That holds for the `config` the original ran with; a cluster checks its nodes share one.
    /// Another one is allowed (a restart with new limits), and then applies from here on: a
    /// smaller [`Config::history`] lets go of the oldest messages of each ring as new messages
    /// would have.
    ///
    /// Fails, without panicking, on a checkpoint of another [`Checkpoint::VERSION`] and on one
    /// that contradicts itself (a session that is no connection, a user in a room the checkpoint
    /// does not hold, messages out of order or ids not below the counter, a DM that is not in the
    /// checkpoint), since it came from disk or the network.
    pub fn from_checkpoint(config: Config, checkpoint: Checkpoint) -> Result<Chat, RestoreError> {
        let Checkpoint {
            version,
            next_id,
            reserved_until,
            connections: connection_states,
            login_deadlines,
            users,
            rooms: room_states,
            accounts,
            account_rooms,
            dms,
            dm_logs: log_states,
            mailboxes: mailbox_states,
            checking: check_states,
        } = checkpoint;
        if version != Checkpoint::VERSION {
            return Err(RestoreError::CheckpointVersion {
                found: version,
                supported: Checkpoint::VERSION,
            });
        }
        let config = config.capped();
        let below_next = |id: MessageId, holder: &dyn std::fmt::Display| {
            if id < next_id {
                Ok(())
            } else {
                Err(inconsistent(format!(
                    "{holder} holds message {id}, but the next id to hand out is {next_id}"
                )))
            }
        };

        let mut connections = HashMap::new();
        for state in connection_states {
            let connection = Connection {
                user: None,
                login_deadline: state.login_deadline,
                closing: state.closing,
            };
            if connections.insert(state.id, connection).is_some() {
                return Err(inconsistent(format!("{} is listed twice", state.id)));
            }
        }

        let mut rooms = BTreeMap::new();
        for (name, ring) in room_states {
            let mut previous: Option<MessageId> = None;
            for message in &ring.messages {
                if message.room != name || previous.is_some_and(|p| p >= message.id) {
                    return Err(RestoreError::HistoryOrder {
                        room: name,
                        id: message.id,
                    });
                }
                below_next(message.id, &format_args!("#{name}"))?;
                previous = Some(message.id);
            }
            let messages = ring.messages.into_iter().map(Arc::new);
            let history = History::from_parts(config.history, messages, ring.older_up_to);
            rooms.insert(name, Room::new(history));
        }

        let mut online = HashMap::new();
        for user in users {
            let key = user.name.key();
            if user.sessions.is_empty() {
                return Err(inconsistent(format!(
                    "{} is online with no session",
                    user.name
                )));
            }
            for session in &user.sessions {
                let Some(connection) = connections.get_mut(session) else {
                    return Err(inconsistent(format!(
                        "{session}, a session of {}, is not a connection",
                        user.name
                    )));
                };
                if let Some(other) = connection.user.replace(user.name.clone()) {
                    return Err(inconsistent(format!(
                        "{session} is a session of {other} and of {}",
                        user.name
                    )));
                }
            }
            for name in &user.rooms {
                let Some(room) = rooms.get_mut(name) else {
                    return Err(inconsistent(format!(
                        "{} is in #{name}, which is not among the rooms",
                        user.name
                    )));
                };
                room.add(user.name.clone(), user.sessions.clone());
            }
            let state = User {
                name: user.name,
                account: user.account,
                sessions: user.sessions,
                rooms: user.rooms.into_iter().collect(),
            };
            if let Some(twice) = online.insert(key, state) {
                return Err(inconsistent(format!("{} is online twice", twice.name)));
            }
        }
        // The chat forgets a room with neither members nor history; so does its replica.
        rooms.retain(|_, room| !room.is_idle());

        let mut shared = Vec::with_capacity(dms.len());
        for dm in dms {
            below_next(dm.id, &"a DM")?;
            shared.push(Arc::new(dm));
        }
        let dm_at = |position: usize, holder: &str| {
            shared.get(position).cloned().ok_or_else(|| {
                inconsistent(format!(
                    "{holder} names DM number {position} of the {}",
                    shared.len()
                ))
            })
        };
        let mut dm_logs = HashMap::new();
        for (user, ring) in log_states {
            let holder = format!("the DM log of {user}");
            let mut messages = Vec::with_capacity(ring.messages.len());
            for position in ring.messages {
                let dm = dm_at(position, &holder)?;
                let party = dm.from.key() == user || dm.to.key() == user;
                let previous = messages.last().map(|p: &Arc<DirectMessage>| p.id);
                if !party || previous.is_some_and(|p| p >= dm.id) {
                    return Err(RestoreError::DmOrder { user, id: dm.id });
                }
                messages.push(dm);
            }
            let log = History::from_parts(config.history, messages, ring.older_up_to);
            dm_logs.insert(user, log);
        }
        let mut mailboxes = HashMap::new();
        for (owner, positions) in mailbox_states {
            let holder = format!("the mailbox of {owner}");
            let messages = positions
                .into_iter()
                .map(|position| dm_at(position, &holder))
                .collect::<Result<Vec<_>, _>>()?;
            if !messages.is_empty() {
                mailboxes.insert(owner, Mailbox::from_messages(messages));
            }
        }

        let mut checking = HashMap::new();
        for state in check_states {
            if !connections.contains_key(&state.conn) {
                return Err(inconsistent(format!(
                    "the login of {} is being checked, but it is not a connection",
                    state.conn
                )));
            }
            let check = Checking {
                reference: state.reference,
                since: state.since,
                waiting: state.waiting.into(),
            };
            if checking.insert(state.conn, check).is_some() {
                return Err(inconsistent(format!(
                    "the login of {} is being checked twice",
                    state.conn
                )));
            }
        }

        Ok(Chat {
            config,
            connections,
            online,
            rooms,
            queued: mailboxes.values().map(Mailbox::len).sum(),
            mailboxes,
            dm_logs,
            accounts: accounts.into_iter().collect(),
            account_rooms: account_rooms
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            checking,
            next_id,
            reserved_until,
            login_deadlines: VecDeque::from(login_deadlines),
            outputs: VecDeque::new(),
        })
    }
}

fn inconsistent(problem: String) -> RestoreError {
    RestoreError::InconsistentCheckpoint(problem)
}

/// The entries of a hash map in key order: what a checkpoint writes must not depend on the
/// map's (per-process, random) iteration order.
fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> impl Iterator<Item = (&K, &V)> {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries.into_iter()
}

/// The DMs of a checkpoint, each once: a DM held in several places (both parties' logs, a
/// mailbox) is written once and named by its position. Equal DMs are one, whether or not they
/// share memory, so what a replica writes does not depend on which of its values are shared.
#[derive(Default)]
struct DmTable {
    positions: HashMap<MessageId, usize>,
    dms: Vec<DirectMessage>,
}

impl DmTable {
    fn position(&mut self, dm: &DirectMessage) -> usize {
        if let Some(&position) = self.positions.get(&dm.id) {
            if self.dms[position] == *dm {
                return position;
            }
        }
        // A new id; or (from a runtime that fed the core something else under a known id) a
        // different DM under one, kept as it is.
        self.dms.push(dm.clone());
        let position = self.dms.len() - 1;
        self.positions.entry(dm.id).or_insert(position);
        position
    }
}
