//! Property test: random sessions of connects, logins, joins, leaves, says, DMs, history pages
//! and disconnects, run on the real core and on a small reference model written straight from
//! the protocol's rules. After every step each connection must have received exactly what the
//! model says, and the invariants hold: room messages reach exactly the members of that moment,
//! ids strictly increase, nothing goes to a closed connection (the harness checks), online names
//! are unique case-insensitively, mailboxes are FIFO and bounded, history is bounded. Logins
//! are as guests or with a token (the simulated authenticator's); a token makes its name an
//! account, which guests can no longer take and whose offline DMs are kept. A token login of an
//! online account adds a session (up to `MAX_SESSIONS`): rooms and presence belong to the user,
//! and every delivery is checked with its kind and whether it carries the frame's `ref`. An
//! account's rooms are its own: kept when its last session ends, rejoined at its next login (the
//! default room only at its first), and stored (the last [`Record::Rooms`] of each account is
//! its set).
//!
//! Resume: a login or join may carry `since` (0, an id at or a little below the newest handed
//! out, or `u64::MAX`). Its `joined` frames then hold the room's messages after that id that
//! memory still has, the newest `resume_limit` of them, with `complete` saying whether that is
//! everything the client missed (`HISTORY` is 4: a resume limit of 3 cuts, and one of 9 is
//! capped at 4, so that eviction alone makes a resume incomplete); the user's other sessions get
//! a plain copy. An account that logs in with `since` (a first or a later session) then gets its
//! missed DMs, both directions, as `dm` frames with `replay`, after those its mailbox delivered
//! (which the replay leaves out). Every account keeps its last `HISTORY` DMs, and `history` with
//! `with` pages them; a guest, a peer that is no account or oneself, and a frame that names a
//! room and a user, or neither, are refused with their codes. Every
//! [`Output::FetchHistory`](chat_core::Output::FetchHistory), of a room or of DMs, is predicted
//! exactly. The store gets exactly the model's records, in order: room messages, a
//! [`Record::Dm`] for every DM between two accounts, [`Record::Queued`] and
//! [`Record::Delivered`] for mailboxes.
//!
//! Large rooms: each run has a `large_room` limit of 1, 2 or the default. A join is announced
//! (presence) only if the room has at most that many members with the joiner, a leave only if
//! it had at most that many before; a larger room's `joined` lists only its first `large_room`
//! members, sorted, with `member_count`.
//!
//! Ops mostly go where they can do something (a login to a connection not logged in, the rest to
//! one that is), sometimes to any connection, so that most of a run is past the errors.

mod common;
mod sim;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chat_core::{
    Config, ConnectionId, DEFAULT_LARGE_ROOM, ErrorCode, Event, HistoryOf, PresenceChange, Record,
    Ref, RoomName, SendKind, UserName,
};
use common::{Among, NAMES, Op, Pick, Point, ROOMS, TEXTS, Target, command, op};
use proptest::prelude::*;
use sim::Sim;

const HISTORY: usize = 4;
const JOIN_HISTORY: usize = 2;
/// The resume limits tried: 3 cuts what memory (`HISTORY`) holds; 9 is capped at `HISTORY`, so
/// that only eviction makes a resume incomplete (with 3 a resume past evicted messages is cut
/// anyway).
const RESUME_LIMITS: [usize; 2] = [3, 9];
const MAILBOX: usize = 2;
const MAX_TEXT: usize = 10;
const MAX_SESSIONS: usize = 2;
/// The large-room limits tried: with at most three users online (alice, bob, carol), 1 and 2
/// cross the limit both ways; the default never does, so the rooms behave as small ones.
const LARGE_ROOMS: [usize; 3] = [1, 2, DEFAULT_LARGE_ROOM];

/// What a connection is expected to see, reduced to what the rules decide.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Welcome(String, Vec<String>),
    Joined {
        room: String,
        members: Vec<String>,
        member_count: Option<usize>,
        history: Vec<u64>,
        complete: Option<bool>,
    },
    Left(String),
    Presence {
        room: String,
        user: String,
        join: bool,
    },
    Message {
        room: String,
        id: u64,
        from: String,
    },
    Dm {
        id: u64,
        from: String,
        to: String,
        queued: bool,
        replay: bool,
    },
    History(Vec<u64>),
    DmHistory {
        with: String,
        ids: Vec<u64>,
    },
    Error(ErrorCode),
}

fn seen(event: &Event) -> Seen {
    match event {
        Event::Welcome { name, rooms, .. } => Seen::Welcome(
            name.to_string(),
            rooms.iter().map(ToString::to_string).collect(),
        ),
        Event::Joined {
            room,
            members,
            member_count,
            history,
            complete,
        } => Seen::Joined {
            room: room.to_string(),
            members: members.iter().map(ToString::to_string).collect(),
            member_count: *member_count,
            history: history.iter().map(|m| m.id.get()).collect(),
            complete: *complete,
        },
        Event::Left { room } => Seen::Left(room.to_string()),
        Event::Presence { room, user, event } => Seen::Presence {
            room: room.to_string(),
            user: user.to_string(),
            join: *event == PresenceChange::Join,
        },
        Event::Message(m) => Seen::Message {
            room: m.room.to_string(),
            id: m.id.get(),
            from: m.from.to_string(),
        },
        Event::Dm {
            message,
            queued,
            replay,
        } => Seen::Dm {
            id: message.id.get(),
            from: message.from.to_string(),
            to: message.to.to_string(),
            queued: *queued,
            replay: *replay,
        },
        Event::History { messages, .. } => {
            Seen::History(messages.iter().map(|m| m.id.get()).collect())
        }
        Event::DmHistory { with, messages } => Seen::DmHistory {
            with: with.to_string(),
            ids: messages.iter().map(|m| m.id.get()).collect(),
        },
        Event::Error { code, .. } => Seen::Error(*code),
        other => panic!("the model does not send {other:?}"),
    }
}

/// How a connection is expected to get something: its kind, and whether it carries the `ref` of
/// the frame (only the answer to the session that sent the frame does).
type Delivery = (Seen, SendKind, bool);

/// A record the store is expected to get (the others, reservations and accounts and room sets,
/// are checked elsewhere or not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stored {
    Message(u64),
    Dm(u64),
    Queued(u64),
    /// Owner (lower-case) and the last id delivered.
    Delivered(String, u64),
}

/// A history page the store is expected to be asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fetch {
    conn: u64,
    /// `room NAME`, or `dms of KEY with NAME`.
    of: String,
    before: Option<u64>,
    limit: usize,
}

/// A DM as sent: the sender's shown name and the recipient's name as the sender spelled it.
#[derive(Clone, Debug)]
struct SentDm {
    from: String,
    to: String,
}

/// The reference model: plain collections, the protocol's rules written out one by one.
#[derive(Default)]
struct Model {
    /// Open connections and the name each logged in with, in connection (and so login) order
    /// per user.
    conns: BTreeMap<u64, Option<String>>,
    /// Room → member users (lower-case names).
    members: BTreeMap<String, BTreeSet<String>>,
    /// Room → every message id ever said there.
    said: BTreeMap<String, Vec<u64>>,
    /// Lower-case name → the account's name as registered.
    accounts: BTreeMap<String, String>,
    /// Lower-case name → the account's rooms, kept while it is offline (no entry: it never
    /// logged in).
    account_rooms: BTreeMap<String, BTreeSet<String>>,
    /// Lower-case name → queued DM ids, oldest first.
    mailboxes: BTreeMap<String, VecDeque<u64>>,
    /// Every DM ever sent, by id.
    dms: BTreeMap<u64, SentDm>,
    /// Lower-case account name → every DM id the account was a party to while it was an
    /// account (either direction), oldest first.
    dm_logs: BTreeMap<String, Vec<u64>>,
    /// The most messages a resume sends per room, and DMs it replays: the configured limit,
    /// but never more than memory holds.
    resume_limit: usize,
    /// Past this many members a room is large: no presence, a bounded `joined`.
    large_room: usize,
    /// The newest id handed out (0: none yet).
    next_id: u64,
    expected: BTreeMap<u64, Vec<Delivery>>,
    stored: Vec<Stored>,
    fetches: Vec<Fetch>,
}

fn valid_name(name: &str) -> bool {
    UserName::parse(name).is_ok()
}

fn room_of(index: usize) -> Result<String, ErrorCode> {
    RoomName::parse(ROOMS[index])
        .map(|r| r.to_string())
        .map_err(|_| ErrorCode::InvalidRoom)
}

fn text_problem(text: &str) -> Option<ErrorCode> {
    if text.len() > MAX_TEXT {
        Some(ErrorCode::TooLong)
    } else if text.trim().is_empty()
        || text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        Some(ErrorCode::InvalidText)
    } else {
        None
    }
}

/// The newest `n` of `ids`.
fn newest(ids: Vec<u64>, n: usize) -> Vec<u64> {
    ids[ids.len().saturating_sub(n)..].to_vec()
}

/// Memory holds the newest `HISTORY` ids of a log (every id ever kept there, oldest first).
fn in_memory(log: &[u64]) -> &[u64] {
    &log[log.len().saturating_sub(HISTORY)..]
}

/// A resume from `since` over `log`: the ids after it that pass `keep` and that memory still
/// has, the newest `limit` of them; and whether that is every id after it that passes `keep`
/// (nothing cut by the limit, nothing evicted).
fn resume(log: &[u64], since: u64, limit: usize, keep: impl Fn(u64) -> bool) -> (Vec<u64>, bool) {
    let missed = |ids: &[u64]| -> Vec<u64> {
        ids.iter()
            .copied()
            .filter(|&id| id > since && keep(id))
            .collect()
    };
    let sent = newest(missed(in_memory(log)), limit);
    let complete = sent == missed(log);
    (sent, complete)
}

/// A history page of `log`: the newest `limit` ids below `before` that pass `keep`, from memory;
/// `None` when memory may be short of it (it is short and something was evicted, and ids below
/// `before` can exist), so the store must answer.
fn page(
    log: &[u64],
    keep: impl Fn(u64) -> bool,
    before: Option<u64>,
    limit: usize,
) -> Option<Vec<u64>> {
    let wanted = |ids: &[u64]| -> Vec<u64> {
        let ids = ids
            .iter()
            .copied()
            .filter(|&id| before.is_none_or(|b| id < b) && keep(id))
            .collect();
        newest(ids, limit)
    };
    let page = wanted(in_memory(log));
    let evicted = log.len() > HISTORY;
    // Ids start at 1: below `before` 1 there is nothing, evicted or not.
    let older_can_exist = before.is_none_or(|b| b > 1);
    if page.len() < limit && evicted && older_can_exist {
        return None;
    }
    assert_eq!(
        page,
        wanted(log),
        "a page from memory is never short by mistake"
    );
    Some(page)
}

impl Model {
    fn tell(&mut self, conn: u64, seen: Seen, kind: SendKind, reference: bool) {
        self.expected
            .entry(conn)
            .or_default()
            .push((seen, kind, reference));
    }

    fn name(&self, conn: u64) -> Option<String> {
        self.conns.get(&conn).cloned().flatten()
    }

    /// The id `point` stands for now.
    fn resolve(&self, point: Point) -> u64 {
        point.resolve(self.next_id)
    }

    /// Every session of the user `key` (empty when offline).
    fn sessions(&self, key: &str) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, name)| name.as_deref().is_some_and(|n| n.to_lowercase() == key))
            .map(|(c, _)| *c)
            .collect()
    }

    /// The user's shown name, if online.
    fn shown(&self, key: &str) -> Option<String> {
        self.sessions(key).first().and_then(|c| self.name(*c))
    }

    /// Every session of every member of `room`.
    fn room_sessions(&self, room: &str) -> Vec<u64> {
        let members = self.members.get(room).cloned().unwrap_or_default();
        members.iter().flat_map(|key| self.sessions(key)).collect()
    }

    fn is_member(&self, key: &str, room: &str) -> bool {
        self.members.get(room).is_some_and(|m| m.contains(key))
    }

    fn sorted_members(&self, room: &str) -> Vec<String> {
        let mut names: Vec<String> = self.members[room]
            .iter()
            .filter_map(|key| self.shown(key))
            .collect();
        names.sort_by_key(|n| n.to_lowercase());
        names
    }

    /// The `joined` frame of `room`: its last `JOIN_HISTORY` messages, or for a resume what
    /// came after `since`.
    fn joined(&self, room: &str, since: Option<u64>) -> Seen {
        let said = self.said.get(room).cloned().unwrap_or_default();
        let (history, complete) = match since {
            None => (newest(said, JOIN_HISTORY), None),
            Some(since) => {
                let (history, complete) = resume(&said, since, self.resume_limit, |_| true);
                (history, Some(complete))
            }
        };
        let mut members = self.sorted_members(room);
        let member_count = (members.len() > self.large_room).then_some(members.len());
        members.truncate(self.large_room);
        Seen::Joined {
            room: room.into(),
            members,
            member_count,
            history,
            complete,
        }
    }

    /// A join from `conn`; `reference` says whether it answers a `join` frame (not at login).
    fn join(&mut self, conn: u64, room: &str, reference: bool, since: Option<u64>) {
        let name = self.name(conn).expect("joins are by logged-in users");
        let key = name.to_lowercase();
        let others = self.room_sessions(room);
        let members = self.members.entry(room.to_owned()).or_default();
        let new = members.insert(key.clone());
        let announced = members.len() <= self.large_room;
        if new && announced {
            for other in others {
                let presence = Seen::Presence {
                    room: room.into(),
                    user: name.clone(),
                    join: true,
                };
                self.tell(other, presence, SendKind::Push, false);
            }
        }
        let joined = self.joined(room, since);
        self.tell(conn, joined, SendKind::Backlog, reference);
        if new {
            // The other sessions did not resume anything: they get the plain frame.
            let copy = self.joined(room, None);
            for session in self.sessions(&key) {
                if session != conn {
                    self.tell(session, copy.clone(), SendKind::Copy, false);
                }
            }
        }
    }

    /// The rooms the user `key` is in, sorted.
    fn rooms_of(&self, key: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.contains(key))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// An account's rooms follow its joins and leaves; a guest's are not kept.
    fn keep_rooms(&mut self, key: &str) {
        if self.accounts.contains_key(key) {
            let rooms = self.rooms_of(key).into_iter().collect();
            self.account_rooms.insert(key.to_owned(), rooms);
        }
    }

    /// The user `key` leaves `room`: the remaining members' sessions are told, unless the room
    /// was large.
    fn leave(&mut self, key: &str, room: &str, name: &str) {
        let members = self.members.get_mut(room).expect("leaving a known room");
        let announced = members.len() <= self.large_room;
        members.remove(key);
        if !announced {
            return;
        }
        for other in self.room_sessions(room) {
            let presence = Seen::Presence {
                room: room.into(),
                user: name.into(),
                join: false,
            };
            self.tell(other, presence, SendKind::Push, false);
        }
    }

    fn dm(&self, id: u64, queued: bool, replay: bool) -> Seen {
        let SentDm { from, to } = self.dms[&id].clone();
        Seen::Dm {
            id,
            from,
            to,
            queued,
            replay,
        }
    }

    /// Whether DM `id` is between `peer` and someone else (`peer` lower-case).
    fn dm_with(&self, id: u64, peer: &str) -> bool {
        let dm = &self.dms[&id];
        dm.from.to_lowercase() == peer || dm.to.to_lowercase() == peer
    }

    /// A resume's DMs for the account `key`: those after `since` it still has, but for the ones
    /// its mailbox just `delivered`, replayed.
    fn replay(&mut self, conn: u64, key: &str, since: u64, delivered: &[u64]) {
        let log = self.dm_logs.get(key).cloned().unwrap_or_default();
        let (ids, _) = resume(&log, since, self.resume_limit, |id| {
            !delivered.contains(&id)
        });
        for id in ids {
            self.tell(conn, self.dm(id, false, true), SendKind::Backlog, false);
        }
    }

    /// Applies a command `op`; `point` is its `since` (a login, a join) or `before` (a history
    /// page), resolved.
    fn apply(&mut self, conn: u64, op: &Op, point: Option<u64>) -> Result<(), ErrorCode> {
        let (since, before) = (point, point);
        let me = self.name(conn);
        match (op, me) {
            (Op::Login(_, n, token, _), None) => {
                let name = NAMES[*n];
                let key = name.to_lowercase();
                if !valid_name(name) {
                    // The token of an invalid name proves nothing.
                    return Err(match token {
                        true => ErrorCode::AuthFailed,
                        false => ErrorCode::InvalidName,
                    });
                }
                if !token && self.accounts.contains_key(&key) {
                    return Err(ErrorCode::AuthRequired);
                }
                let sessions = self.sessions(&key);
                if !sessions.is_empty() {
                    // A guest name has one session; a token for a guest's name is refused too.
                    if !token || !self.accounts.contains_key(&key) {
                        return Err(ErrorCode::NameTaken);
                    }
                    if sessions.len() >= MAX_SESSIONS {
                        return Err(ErrorCode::TooManySessions);
                    }
                    let shown = self.accounts[&key].clone();
                    self.conns.insert(conn, Some(shown.clone()));
                    let rooms = self.rooms_of(&key);
                    self.tell(
                        conn,
                        Seen::Welcome(shown, rooms.clone()),
                        SendKind::Reply,
                        true,
                    );
                    for room in rooms {
                        let joined = self.joined(&room, since);
                        self.tell(conn, joined, SendKind::Backlog, false);
                    }
                    // No mailbox while online: every DM after `since` is replayed.
                    if let Some(since) = since {
                        self.replay(conn, &key, since, &[]);
                    }
                    return Ok(());
                }
                let shown = match token {
                    true => self
                        .accounts
                        .entry(key.clone())
                        .or_insert(name.into())
                        .clone(),
                    false => name.into(),
                };
                self.conns.insert(conn, Some(shown.clone()));
                // An account rejoins its rooms; the default room is for guests and an account's
                // first login.
                let rooms: Vec<String> = match self.account_rooms.get(&key).filter(|_| *token) {
                    Some(rooms) => rooms.iter().cloned().collect(),
                    None => vec!["general".into()],
                };
                self.tell(
                    conn,
                    Seen::Welcome(shown, rooms.clone()),
                    SendKind::Reply,
                    true,
                );
                for room in rooms {
                    self.join(conn, &room, false, since);
                }
                if !token {
                    return Ok(());
                }
                self.keep_rooms(&key);
                let delivered: Vec<u64> = self.mailboxes.remove(&key).unwrap_or_default().into();
                if let Some(&through) = delivered.last() {
                    self.stored.push(Stored::Delivered(key.clone(), through));
                }
                for &id in &delivered {
                    self.tell(conn, self.dm(id, false, false), SendKind::Backlog, false);
                }
                if let Some(since) = since {
                    self.replay(conn, &key, since, &delivered);
                }
                Ok(())
            }
            (Op::Login(..), Some(_)) => Err(ErrorCode::AlreadyLoggedIn),
            (_, None) => Err(ErrorCode::NotLoggedIn),
            (Op::Join(_, r, _), Some(name)) => {
                let room = room_of(*r)?;
                self.join(conn, &room, true, since);
                self.keep_rooms(&name.to_lowercase());
                Ok(())
            }
            (Op::Leave(_, r), Some(name)) => {
                let room = room_of(*r)?;
                let key = name.to_lowercase();
                if !self.is_member(&key, &room) {
                    return Err(ErrorCode::NotInRoom);
                }
                self.tell(conn, Seen::Left(room.clone()), SendKind::Reply, true);
                for session in self.sessions(&key) {
                    if session != conn {
                        self.tell(session, Seen::Left(room.clone()), SendKind::Copy, false);
                    }
                }
                self.leave(&key, &room, &name);
                self.keep_rooms(&key);
                Ok(())
            }
            (Op::Say(_, r, t), Some(name)) => {
                let room = room_of(*r)?;
                if !self.is_member(&name.to_lowercase(), &room) {
                    return Err(ErrorCode::NotInRoom);
                }
                if let Some(code) = text_problem(TEXTS[*t]) {
                    return Err(code);
                }
                self.next_id += 1;
                let id = self.next_id;
                self.said.entry(room.clone()).or_default().push(id);
                self.stored.push(Stored::Message(id));
                for session in self.room_sessions(&room) {
                    let message = Seen::Message {
                        room: room.clone(),
                        id,
                        from: name.clone(),
                    };
                    match session == conn {
                        true => self.tell(session, message, SendKind::Echo, true),
                        false => self.tell(session, message, SendKind::Push, false),
                    }
                }
                Ok(())
            }
            (Op::Dm(_, n, t), Some(name)) => {
                let to = NAMES[*n];
                if !valid_name(to) {
                    return Err(ErrorCode::InvalidName);
                }
                if let Some(code) = text_problem(TEXTS[*t]) {
                    return Err(code);
                }
                let key = to.to_lowercase();
                let me = name.to_lowercase();
                if key == me {
                    return Err(ErrorCode::InvalidTarget);
                }
                let targets = self.sessions(&key);
                let queued = targets.is_empty();
                if queued {
                    if !self.accounts.contains_key(&key) {
                        return Err(ErrorCode::UserOffline);
                    }
                    if self.mailboxes.get(&key).is_some_and(|m| m.len() >= MAILBOX) {
                        return Err(ErrorCode::MailboxFull);
                    }
                }
                self.next_id += 1;
                let id = self.next_id;
                let sent = SentDm {
                    from: name.clone(),
                    to: to.into(),
                };
                self.dms.insert(id, sent);
                // Each account party keeps it in its DM history; between two accounts, it is
                // stored.
                let parties: Vec<String> = [me.clone(), key.clone()]
                    .into_iter()
                    .filter(|party| self.accounts.contains_key(party))
                    .collect();
                for party in &parties {
                    self.dm_logs.entry(party.clone()).or_default().push(id);
                }
                if parties.len() == 2 {
                    self.stored.push(Stored::Dm(id));
                }
                if queued {
                    self.mailboxes.entry(key).or_default().push_back(id);
                    self.stored.push(Stored::Queued(id));
                } else {
                    for target in targets {
                        self.tell(target, self.dm(id, false, false), SendKind::Push, false);
                    }
                }
                self.tell(conn, self.dm(id, queued, false), SendKind::Echo, true);
                for session in self.sessions(&me) {
                    if session != conn {
                        self.tell(session, self.dm(id, false, false), SendKind::Copy, false);
                    }
                }
                Ok(())
            }
            (Op::History(_, target, _, limit), Some(name)) => {
                let limit = (*limit).clamp(1, 500) as usize;
                let me = name.to_lowercase();
                match *target {
                    Target::Room(r) => {
                        let room = room_of(r)?;
                        if !self.is_member(&me, &room) {
                            return Err(ErrorCode::NotInRoom);
                        }
                        let said = self.said.get(&room).cloned().unwrap_or_default();
                        match page(&said, |_| true, before, limit) {
                            Some(ids) => {
                                self.tell(conn, Seen::History(ids), SendKind::Backlog, true);
                            }
                            None => self.fetches.push(Fetch {
                                conn,
                                of: format!("room {room}"),
                                before: before.filter(|&b| b > 0),
                                limit,
                            }),
                        }
                    }
                    Target::With(n) => {
                        if !self.accounts.contains_key(&me) {
                            return Err(ErrorCode::AuthRequired);
                        }
                        let with = NAMES[n];
                        if !valid_name(with) {
                            return Err(ErrorCode::InvalidName);
                        }
                        let peer = with.to_lowercase();
                        let Some(registered) = self.accounts.get(&peer).filter(|_| peer != me)
                        else {
                            return Err(ErrorCode::InvalidTarget);
                        };
                        let registered = registered.clone();
                        let log = self.dm_logs.get(&me).cloned().unwrap_or_default();
                        match page(&log, |id| self.dm_with(id, &peer), before, limit) {
                            Some(ids) => {
                                let page = Seen::DmHistory {
                                    with: registered,
                                    ids,
                                };
                                self.tell(conn, page, SendKind::Backlog, true);
                            }
                            None => self.fetches.push(Fetch {
                                conn,
                                of: format!("dms of {me} with {registered}"),
                                before: before.filter(|&b| b > 0),
                                limit,
                            }),
                        }
                    }
                    Target::Both(..) | Target::Neither => return Err(ErrorCode::BadFrame),
                }
                Ok(())
            }
            (Op::Connect | Op::Disconnect(_), _) => unreachable!("handled by the driver"),
        }
    }

    fn disconnect(&mut self, conn: u64) {
        if let Some(Some(name)) = self.conns.remove(&conn) {
            let key = name.to_lowercase();
            if !self.sessions(&key).is_empty() {
                // Another session stays: nobody is told anything.
                return;
            }
            for room in self.rooms_of(&key) {
                self.leave(&key, &room, &name);
            }
        }
    }
}

fn config(resume_limit: usize, large_room: usize) -> Config {
    Config {
        history: HISTORY,
        join_history: JOIN_HISTORY,
        resume_limit,
        mailbox: MAILBOX,
        max_text_bytes: MAX_TEXT,
        login_timeout: None,
        id_block: 3,
        max_sessions: MAX_SESSIONS,
        large_room,
        ..Config::default()
    }
}

fn run(ops: Vec<Op>, resume_limit: usize, large_room: usize) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(config(resume_limit, large_room));
    let mut model = Model {
        resume_limit: resume_limit.min(HISTORY),
        large_room,
        ..Model::default()
    };
    let mut open: Vec<ConnectionId> = Vec::new();
    let mut last_id = 0;
    for (step, op) in ops.iter().enumerate() {
        let fetched = sim.fetches.len();
        let waiting = open.iter().any(|c| model.name(c.0).is_none());
        let fresh = matches!(op, Op::Login(p, ..) if p.among == Among::NotLoggedIn && !waiting);
        if matches!(op, Op::Connect) || fresh {
            let conn = sim.connect();
            open.push(conn);
            model.conns.insert(conn.0, None);
        }
        let conn_at = |pick: Pick| {
            let logged_in = |c: &&ConnectionId| model.name(c.0).is_some();
            let wanted: Vec<ConnectionId> = match pick.among {
                Among::LoggedIn => open.iter().filter(logged_in).copied().collect(),
                Among::NotLoggedIn => open.iter().filter(|c| !logged_in(c)).copied().collect(),
                Among::All => Vec::new(),
            };
            let among = if wanted.is_empty() { &open } else { &wanted };
            among.get(pick.index % among.len().max(1)).copied()
        };
        match op {
            Op::Connect => {}
            Op::Disconnect(pick) => {
                let Some(conn) = conn_at(*pick) else { continue };
                open.retain(|c| *c != conn);
                sim.disconnect(conn);
                model.disconnect(conn.0);
                model.expected.remove(&conn.0);
            }
            _ => {
                let (pick, point) = match op {
                    Op::Login(p, _, _, s) | Op::Join(p, _, s) | Op::History(p, _, s, _) => (*p, *s),
                    Op::Leave(p, _) | Op::Say(p, _, _) | Op::Dm(p, _, _) => (*p, None),
                    Op::Connect | Op::Disconnect(_) => unreachable!(),
                };
                let Some(conn) = conn_at(pick) else { continue };
                let point = point.map(|p| model.resolve(p));
                if let Err(code) = model.apply(conn.0, op, point) {
                    model.tell(conn.0, Seen::Error(code), SendKind::Reply, true);
                }
                sim.command_with_ref(conn, command(op, point), Ref::number(step as u64));
            }
        }
        for &conn in &open {
            let got: Vec<Delivery> = sim
                .take(conn)
                .iter()
                .map(|r| {
                    if let Some(reference) = &r.reference {
                        assert_eq!(reference, &Ref::number(step as u64), "the frame's own ref");
                    }
                    (seen(&r.event), r.kind, r.reference.is_some())
                })
                .collect();
            let want = model.expected.remove(&conn.0).unwrap_or_default();
            prop_assert_eq!(&got, &want, "{} after {:?}", conn, op);
            for (s, _, _) in &got {
                if let Seen::Message { id, .. } | Seen::Dm { id, .. } = s {
                    prop_assert!(*id <= model.next_id);
                }
            }
        }
        // The store is asked for exactly the pages memory may be short of.
        for request in &sim.fetches[fetched..] {
            prop_assert_eq!(&request.reference, &Some(Ref::number(step as u64)));
        }
        let fetches: Vec<Fetch> = sim
            .fetches
            .iter()
            .map(|request| Fetch {
                conn: request.conn.0,
                of: match &request.of {
                    HistoryOf::Room(room) => format!("room {room}"),
                    HistoryOf::Dms { user, with } => format!("dms of {user} with {with}"),
                },
                before: request.before.map(|b| b.get()),
                limit: request.limit,
            })
            .collect();
        prop_assert_eq!(&fetches, &model.fetches, "history fetches after {:?}", op);
        // Invariants on the core's own state.
        for room in model.said.keys() {
            let room = RoomName::parse(room).unwrap();
            prop_assert!(sim.chat.history_len(&room) <= HISTORY);
        }
        let online: BTreeSet<String> = model
            .conns
            .values()
            .flatten()
            .map(|n| n.to_lowercase())
            .collect();
        prop_assert_eq!(sim.chat.online_count(), online.len());
        for (key, queue) in &model.mailboxes {
            prop_assert!(queue.len() <= MAILBOX);
            let key = UserName::parse(key).unwrap().key();
            prop_assert_eq!(sim.chat.mailbox_len(&key), queue.len());
        }
        // The store got the model's messages, DMs and mailbox changes, in order.
        let stored: Vec<Stored> = sim
            .records
            .iter()
            .filter_map(|record| match record {
                Record::Message(m) => Some(Stored::Message(m.id.get())),
                Record::Dm(d) => Some(Stored::Dm(d.id.get())),
                Record::Queued(d) => Some(Stored::Queued(d.id.get())),
                Record::Delivered { owner, through } => {
                    Some(Stored::Delivered(owner.to_string(), through.get()))
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(&stored, &model.stored, "stored after {:?}", op);
        // Ids of stored messages strictly increase (a queued DM is stored as a DM too).
        let mut ids: Vec<u64> = sim
            .records
            .iter()
            .filter_map(|r| r.message_id().map(|id| id.get()))
            .collect();
        ids.dedup();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // The last stored room set of each account is its set; guests store none.
        let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for record in &sim.records {
            if let Record::Rooms { owner, rooms: set } = record {
                let set = set.iter().map(ToString::to_string).collect();
                rooms.insert(owner.to_string(), set);
            }
        }
        prop_assert_eq!(&rooms, &model.account_rooms, "stored rooms after {:?}", op);
        if let Some(&newest) = ids.last() {
            prop_assert!(newest >= last_id);
            last_id = newest;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_core_behaves_like_the_reference_model(
        ops in proptest::collection::vec(op(), 1..150),
        resume_limit in proptest::sample::select(&RESUME_LIMITS[..]),
        large_room in proptest::sample::select(&LARGE_ROOMS[..]),
    ) {
        run(ops, resume_limit, large_room)?;
    }
}
