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

mod sim;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chat_core::{
    Command, Config, ConnectionId, ErrorCode, Event, PresenceChange, Record, Ref, RoomName,
    SendKind, UserName,
};
use proptest::prelude::*;
use sim::Sim;

const NAMES: [&str; 6] = ["alice", "ALICE", "bob", "Bob", "carol", "no good"];
const ROOMS: [&str; 4] = ["general", "rust", "RUST", "not a room"];
const TEXTS: [&str; 5] = ["hi", "two\nlines", "   ", "bell\u{7}", "much too long"];
const HISTORY: usize = 4;
const JOIN_HISTORY: usize = 2;
const MAILBOX: usize = 2;
const MAX_TEXT: usize = 10;
const MAX_SESSIONS: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    Connect,
    /// Connection, name, and whether with a token.
    Login(usize, usize, bool),
    Join(usize, usize),
    Leave(usize, usize),
    Say(usize, usize, usize),
    Dm(usize, usize, usize),
    History(usize, usize, Option<u64>, i64),
    Disconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0..6usize;
    prop_oneof![
        2 => Just(Op::Connect),
        3 => (conn.clone(), 0..NAMES.len(), proptest::bool::weighted(0.3))
            .prop_map(|(c, n, t)| Op::Login(c, n, t)),
        2 => (conn.clone(), 0..ROOMS.len()).prop_map(|(c, r)| Op::Join(c, r)),
        1 => (conn.clone(), 0..ROOMS.len()).prop_map(|(c, r)| Op::Leave(c, r)),
        4 => (conn.clone(), 0..ROOMS.len(), 0..TEXTS.len()).prop_map(|(c, r, t)| Op::Say(c, r, t)),
        3 => (conn.clone(), 0..NAMES.len(), 0..TEXTS.len()).prop_map(|(c, n, t)| Op::Dm(c, n, t)),
        1 => (conn.clone(), 0..ROOMS.len(), proptest::option::of(0..30u64), -1..6i64)
            .prop_map(|(c, r, b, l)| Op::History(c, r, b, l)),
        1 => conn.prop_map(Op::Disconnect),
    ]
}

/// What a connection is expected to see, reduced to what the rules decide.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Welcome(String, Vec<String>),
    Joined {
        room: String,
        members: Vec<String>,
        history: Vec<u64>,
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
        queued: bool,
    },
    History(Vec<u64>),
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
            history,
            ..
        } => Seen::Joined {
            room: room.to_string(),
            members: members.iter().map(ToString::to_string).collect(),
            history: history.iter().map(|m| m.id.get()).collect(),
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
            message, queued, ..
        } => Seen::Dm {
            id: message.id.get(),
            from: message.from.to_string(),
            queued: *queued,
        },
        Event::History { messages, .. } => {
            Seen::History(messages.iter().map(|m| m.id.get()).collect())
        }
        Event::Error { code, .. } => Seen::Error(*code),
        other => panic!("the model does not send {other:?}"),
    }
}

/// How a connection is expected to get something: its kind, and whether it carries the `ref` of
/// the frame (only the answer to the session that sent the frame does).
type Delivery = (Seen, SendKind, bool);

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
    /// Lower-case name → queued DMs (id, sender), oldest first.
    mailboxes: BTreeMap<String, VecDeque<(u64, String)>>,
    next_id: u64,
    expected: BTreeMap<u64, Vec<Delivery>>,
    fetches: usize,
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

    fn joined(&self, room: &str) -> Seen {
        let said = self.said.get(room).cloned().unwrap_or_default();
        let history = said[said.len().saturating_sub(JOIN_HISTORY)..].to_vec();
        Seen::Joined {
            room: room.into(),
            members: self.sorted_members(room),
            history,
        }
    }

    /// A join from `conn`; `reference` says whether it answers a `join` frame (not at login).
    fn join(&mut self, conn: u64, room: &str, reference: bool) {
        let name = self.name(conn).expect("joins are by logged-in users");
        let key = name.to_lowercase();
        let others = self.room_sessions(room);
        let members = self.members.entry(room.to_owned()).or_default();
        let new = members.insert(key.clone());
        if new {
            for other in others {
                let presence = Seen::Presence {
                    room: room.into(),
                    user: name.clone(),
                    join: true,
                };
                self.tell(other, presence, SendKind::Push, false);
            }
        }
        let joined = self.joined(room);
        self.tell(conn, joined.clone(), SendKind::Backlog, reference);
        if new {
            for session in self.sessions(&key) {
                if session != conn {
                    self.tell(session, joined.clone(), SendKind::Copy, false);
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

    /// The user `key` leaves `room`: the remaining members' sessions are told.
    fn leave(&mut self, key: &str, room: &str, name: &str) {
        let members = self.members.get_mut(room).expect("leaving a known room");
        members.remove(key);
        for other in self.room_sessions(room) {
            let presence = Seen::Presence {
                room: room.into(),
                user: name.into(),
                join: false,
            };
            self.tell(other, presence, SendKind::Push, false);
        }
    }

    fn apply(&mut self, conn: u64, op: &Op) -> Result<(), ErrorCode> {
        let me = self.name(conn);
        match (op, me) {
            (Op::Login(_, n, token), None) => {
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
                    let rooms: Vec<String> = self
                        .members
                        .iter()
                        .filter(|(_, m)| m.contains(&key))
                        .map(|(r, _)| r.clone())
                        .collect();
                    self.tell(
                        conn,
                        Seen::Welcome(shown, rooms.clone()),
                        SendKind::Reply,
                        true,
                    );
                    for room in rooms {
                        let joined = self.joined(&room);
                        self.tell(conn, joined, SendKind::Backlog, false);
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
                    self.join(conn, &room, false);
                }
                if !token {
                    return Ok(());
                }
                self.keep_rooms(&key);
                for (id, from) in self.mailboxes.remove(&key).unwrap_or_default() {
                    let dm = Seen::Dm {
                        id,
                        from,
                        queued: false,
                    };
                    self.tell(conn, dm, SendKind::Backlog, false);
                }
                Ok(())
            }
            (Op::Login(..), Some(_)) => Err(ErrorCode::AlreadyLoggedIn),
            (_, None) => Err(ErrorCode::NotLoggedIn),
            (Op::Join(_, r), Some(name)) => {
                let room = room_of(*r)?;
                self.join(conn, &room, true);
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
                let dm = |id, queued| Seen::Dm {
                    id,
                    from: name.clone(),
                    queued,
                };
                let id = if targets.is_empty() {
                    if !self.accounts.contains_key(&key) {
                        return Err(ErrorCode::UserOffline);
                    }
                    let mailbox = self.mailboxes.entry(key).or_default();
                    if mailbox.len() >= MAILBOX {
                        return Err(ErrorCode::MailboxFull);
                    }
                    self.next_id += 1;
                    mailbox.push_back((self.next_id, name.clone()));
                    let id = self.next_id;
                    self.tell(conn, dm(id, true), SendKind::Echo, true);
                    id
                } else {
                    self.next_id += 1;
                    let id = self.next_id;
                    for target in targets {
                        self.tell(target, dm(id, false), SendKind::Push, false);
                    }
                    self.tell(conn, dm(id, false), SendKind::Echo, true);
                    id
                };
                for session in self.sessions(&me) {
                    if session != conn {
                        self.tell(session, dm(id, false), SendKind::Copy, false);
                    }
                }
                Ok(())
            }
            (Op::History(_, r, before, limit), Some(name)) => {
                let room = room_of(*r)?;
                if !self.is_member(&name.to_lowercase(), &room) {
                    return Err(ErrorCode::NotInRoom);
                }
                let limit = (*limit).clamp(1, 500) as usize;
                let said = self.said.get(&room).cloned().unwrap_or_default();
                let below = |id: &&u64| before.is_none_or(|b| **id < b);
                let last = |ids: Vec<u64>| ids[ids.len().saturating_sub(limit)..].to_vec();
                let whole = last(said.iter().filter(below).copied().collect());
                // Memory holds the room's last HISTORY messages. A short page from memory may be
                // short only because older messages were evicted: then the store answers.
                let in_memory = &said[said.len().saturating_sub(HISTORY)..];
                let page = last(in_memory.iter().filter(below).copied().collect());
                let evicted = said.len() > HISTORY;
                if page.len() < limit && evicted && !before.is_some_and(|b| b <= 1) {
                    self.fetches += 1;
                } else {
                    assert_eq!(page, whole, "a page from memory is never short by mistake");
                    self.tell(conn, Seen::History(page), SendKind::Backlog, true);
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
            let rooms: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| m.contains(&key))
                .map(|(r, _)| r.clone())
                .collect();
            for room in rooms {
                self.leave(&key, &room, &name);
            }
        }
    }
}

fn config() -> Config {
    Config {
        history: HISTORY,
        join_history: JOIN_HISTORY,
        mailbox: MAILBOX,
        max_text_bytes: MAX_TEXT,
        login_timeout: None,
        id_block: 3,
        max_sessions: MAX_SESSIONS,
        ..Config::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(config());
    let mut model = Model::default();
    let mut open: Vec<ConnectionId> = Vec::new();
    let mut last_id = 0;
    for (step, op) in ops.iter().enumerate() {
        let conn_at = |i: usize| open.get(i % open.len().max(1)).copied();
        match op {
            Op::Connect => {
                let conn = sim.connect();
                open.push(conn);
                model.conns.insert(conn.0, None);
            }
            Op::Disconnect(i) => {
                let Some(conn) = conn_at(*i) else { continue };
                open.retain(|c| *c != conn);
                sim.disconnect(conn);
                model.disconnect(conn.0);
                model.expected.remove(&conn.0);
            }
            _ => {
                let index = match op {
                    Op::Login(i, _, _) | Op::Join(i, _) | Op::Leave(i, _) | Op::Say(i, _, _) => *i,
                    Op::Dm(i, _, _) | Op::History(i, _, _, _) => *i,
                    Op::Connect | Op::Disconnect(_) => unreachable!(),
                };
                let Some(conn) = conn_at(index) else { continue };
                if let Err(code) = model.apply(conn.0, op) {
                    model.tell(conn.0, Seen::Error(code), SendKind::Reply, true);
                }
                let command = match op {
                    Op::Login(_, n, false) => Command::login(NAMES[*n]),
                    Op::Login(_, n, true) => Sim::token_login(NAMES[*n]),
                    Op::Join(_, r) => Command::join(ROOMS[*r]),
                    Op::Leave(_, r) => Command::Leave {
                        room: ROOMS[*r].into(),
                    },
                    Op::Say(_, r, t) => Command::Say {
                        room: ROOMS[*r].into(),
                        text: TEXTS[*t].into(),
                    },
                    Op::Dm(_, n, t) => Command::Dm {
                        to: NAMES[*n].into(),
                        text: TEXTS[*t].into(),
                    },
                    Op::History(_, r, before, limit) => {
                        Command::room_history(ROOMS[*r], *before, Some(*limit))
                    }
                    Op::Connect | Op::Disconnect(_) => unreachable!(),
                };
                sim.command_with_ref(conn, command, Ref::number(step as u64));
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
        prop_assert_eq!(
            sim.fetches.len(),
            model.fetches,
            "history fetches after {:?}",
            op
        );
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
        // Ids of stored messages strictly increase.
        let ids: Vec<u64> = sim
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Message(m) => Some(m.id.get()),
                Record::Queued(d) => Some(d.id.get()),
                _ => None,
            })
            .collect();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // The last stored room set of each account is its set; guests store none.
        let mut stored: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for record in &sim.records {
            if let Record::Rooms { owner, rooms } = record {
                let rooms = rooms.iter().map(ToString::to_string).collect();
                stored.insert(owner.to_string(), rooms);
            }
        }
        prop_assert_eq!(&stored, &model.account_rooms, "stored rooms after {:?}", op);
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
    fn the_core_behaves_like_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
