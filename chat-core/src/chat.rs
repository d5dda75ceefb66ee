//! [`Chat`]: the state machine itself.
//!
//! It owns every piece of state (connections, online users with their sessions and rooms, rooms,
//! mailboxes, the id counter) and changes it only in [`Chat::handle`]. Each rule of the protocol's "Shared semantics" is
//! one method below, named for the command it serves.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::command::{Command, Ref};
use crate::config::{Config, DEFAULT_PAGE, MAX_PAGE};
use crate::error::{ChatError, InputError, RestoreError};
use crate::event::{Event, PresenceChange, RoomSummary};
use crate::history::{History, Missed, Page};
use crate::identity::{Account, AuthError, Identity, LoginAttempt, PasswordHash, Secret};
use crate::ids::{ConnectionId, MessageId};
use crate::mailbox::Mailbox;
use crate::message::{DirectMessage, RoomMessage};
use crate::now::Now;
use crate::output::{CloseReason, HistoryOf, HistoryRequest, Input, Output, SendKind};
use crate::persistence::{Record, Snapshot};
use crate::room::Room;
use crate::room_name::RoomName;
use crate::room_set::RoomSet;
use crate::text::Text;
use crate::timestamp::Timestamp;
use crate::user_name::{UserKey, UserName};

/// The chat server's state machine. See the [crate documentation](crate) for the run loop.
///
/// Every field that decides a later output is in a [`Checkpoint`](crate::Checkpoint) (or is
/// rebuilt from one): a new field belongs there too (`Chat::checkpoint` lists them all, so the
/// compiler points at it).
#[derive(Debug)]
pub struct Chat {
    pub(crate) config: Config,
    pub(crate) connections: HashMap<ConnectionId, Connection>,
    /// Logged-in users, each with its sessions and its rooms.
    pub(crate) online: HashMap<UserKey, User>,
    pub(crate) rooms: BTreeMap<RoomName, Room>,
    pub(crate) mailboxes: HashMap<UserKey, Mailbox>,
    /// Each account's recent DMs, both directions (a DM between two accounts is shared by
    /// both): served to `history` with `with`, and replayed at a resume.
    pub(crate) dm_logs: HashMap<UserKey, History<DirectMessage>>,
    /// Every account's name, as registered.
    pub(crate) accounts: HashMap<UserKey, UserName>,
    /// The room set of every account that has one, online or not, as last stored (an account
    /// without one has never logged in). An online account's entry follows its `User::rooms`.
    pub(crate) account_rooms: HashMap<UserKey, RoomSet>,
    /// Connections whose login or registration the runtime is checking, with the commands they
    /// sent since (answered once the check is back, in order).
    pub(crate) checking: HashMap<ConnectionId, Checking>,
    /// DMs waiting in all mailboxes together.
    pub(crate) queued: usize,
    pub(crate) next_id: MessageId,
    /// Ids below this are durably reserved; handing out this one needs a new reservation.
    pub(crate) reserved_until: MessageId,
    /// Connections waiting to log in, by deadline on the monotonic clock (pushed in time order,
    /// so sorted).
    pub(crate) login_deadlines: VecDeque<(Duration, ConnectionId)>,
    pub(crate) outputs: VecDeque<Output>,
}

/// A login or registration out for checking.
#[derive(Debug)]
pub(crate) struct Checking {
    /// The `ref` of the `login` or `register` frame.
    pub(crate) reference: Option<Ref>,
    /// The login's `since` (a resume), for when it is admitted.
    pub(crate) since: Option<u64>,
    /// Commands the connection sent since, in order.
    pub(crate) waiting: VecDeque<(Command, Option<Ref>)>,
}

/// The most commands a connection may send while its login is checked (a runtime that paces
/// reads, as chat-runtime does, never gets near it); past it they are refused as a flood.
const MAX_WAITING: usize = 256;

/// A logged-in user: the rooms belong to it (not to a connection); an account's are also kept
/// in `Chat::account_rooms` for its next login.
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) name: UserName,
    /// Whether the name is an account's (then it may have several sessions).
    pub(crate) account: bool,
    /// Its connections, in login order (never empty).
    pub(crate) sessions: Vec<ConnectionId>,
    pub(crate) rooms: RoomSet,
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) user: Option<UserName>,
    /// When the connection must have logged in by, on the monotonic clock (if a login timeout
    /// is configured).
    pub(crate) login_deadline: Option<Duration>,
    /// A `Close` was emitted; commands are ignored until the runtime reports the disconnect.
    pub(crate) closing: bool,
}

impl Chat {
    /// A chat with no history, no mailboxes, and ids starting at 1.
    pub fn new(config: Config) -> Self {
        Self::restore(config, Snapshot::default())
            .expect("an empty snapshot is consistent by construction")
    }

    /// A chat that continues from what a store kept: room history tails, offline mailboxes and
    /// the id counter. Fails if the snapshot contradicts itself (ids out of order, a message filed
    /// under the wrong room or mailbox), since continuing would break the id guarantees.
    pub fn restore(config: Config, snapshot: Snapshot) -> Result<Self, RestoreError> {
        let config = config.capped();
        let mut next_id = snapshot.next_id.unwrap_or(MessageId::FIRST);
        let mut rooms = BTreeMap::new();
        for (room, tail) in snapshot.rooms {
            let mut previous: Option<MessageId> = None;
            for message in &tail.messages {
                if message.room != room || previous.is_some_and(|p| p >= message.id) {
                    return Err(RestoreError::HistoryOrder {
                        room,
                        id: message.id,
                    });
                }
                previous = Some(message.id);
            }
            if let Some(last) = previous {
                next_id = next_id.max(last.next());
            }
            let messages = tail.messages.into_iter().map(Arc::new);
            let history = History::restored(config.history, messages, tail.has_older);
            rooms.insert(room, Room::new(history));
        }
        let mut mailboxes = HashMap::new();
        for (owner, messages) in snapshot.mailboxes {
            let mut previous: Option<MessageId> = None;
            for dm in &messages {
                if dm.owner() != owner || previous.is_some_and(|p| p >= dm.id) {
                    return Err(RestoreError::MailboxOrder { owner, id: dm.id });
                }
                previous = Some(dm.id);
            }
            if let Some(last) = previous {
                next_id = next_id.max(last.next());
            }
            if !messages.is_empty() {
                mailboxes.insert(owner, Mailbox::restored(messages));
            }
        }
        rooms.retain(|_, room: &mut Room| !room.is_idle());
        let accounts: HashMap<UserKey, UserName> = snapshot.accounts.into_iter().collect();
        // A room set stored for a name that is no account (its registration was not stored)
        // is nobody's.
        let account_rooms = snapshot
            .account_rooms
            .into_iter()
            .filter(|(owner, _)| accounts.contains_key(owner))
            .map(|(owner, rooms)| (owner, rooms.into_iter().collect()))
            .collect();
        // A DM between two accounts is in both tails: one `Arc` serves both logs.
        let mut shared: HashMap<MessageId, Arc<DirectMessage>> = HashMap::new();
        let mut dm_logs = HashMap::new();
        for (user, tail) in snapshot.dms {
            let mut previous: Option<MessageId> = None;
            for dm in &tail.messages {
                let party = dm.from.key() == user || dm.to.key() == user;
                if !party || previous.is_some_and(|p| p >= dm.id) {
                    return Err(RestoreError::DmOrder { user, id: dm.id });
                }
                previous = Some(dm.id);
            }
            if let Some(last) = previous {
                next_id = next_id.max(last.next());
            }
            if !accounts.contains_key(&user) {
                continue;
            }
            let messages: Vec<Arc<DirectMessage>> = tail
                .messages
                .into_iter()
                .map(|dm| shared.entry(dm.id).or_insert_with(|| Arc::new(dm)).clone())
                .collect();
            let log = History::restored(config.history, messages.into_iter(), tail.has_older);
            dm_logs.insert(user, log);
        }
        Ok(Chat {
            config,
            connections: HashMap::new(),
            online: HashMap::new(),
            accounts,
            account_rooms,
            dm_logs,
            checking: HashMap::new(),
            rooms,
            queued: mailboxes.values().map(Mailbox::len).sum(),
            mailboxes,
            next_id,
            reserved_until: next_id,
            login_deadlines: VecDeque::new(),
            outputs: VecDeque::new(),
        })
    }

    /// Feeds one input at time `now` (a [`Now`], or a bare [`Timestamp`] for a clock that never
    /// steps). Afterwards, drain [`Chat::poll_output`] until it returns `None`. An error means the
    /// runtime contradicted itself (see [`InputError`]); the state is unchanged by the faulty
    /// input.
    pub fn handle(&mut self, input: Input, now: impl Into<Now>) -> Result<(), InputError> {
        let now = now.into();
        self.expire_logins(now.monotonic);
        match input {
            Input::Connect(conn) => self.connect(conn, now),
            Input::Command {
                conn,
                command,
                reference,
            } => {
                let connection = self
                    .connections
                    .get(&conn)
                    .ok_or(InputError::UnknownConnection(conn))?;
                if connection.closing {
                    return Ok(());
                }
                self.dispatch(conn, command, reference, now.wall);
                Ok(())
            }
            Input::Authenticated { conn, outcome } => {
                self.authenticated(conn, outcome, now.wall);
                Ok(())
            }
            Input::PasswordHashed { conn, outcome } => {
                self.password_hashed(conn, outcome, now.wall);
                Ok(())
            }
            Input::Disconnect(conn) => self.disconnect(conn),
            Input::Unstored(records) => {
                self.forget(&records);
                Ok(())
            }
            Input::Undelivered(messages) => {
                self.requeue(messages);
                Ok(())
            }
            Input::Tick => Ok(()),
        }
    }

    /// The next thing the runtime must do, in order; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the core next needs an [`Input::Tick`], if ever, on the monotonic clock of
    /// [`Now::monotonic`]. It may be early (a connection that has logged in since); an early tick
    /// is harmless.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.login_deadlines.front().map(|(deadline, _)| *deadline)
    }

    /// The configuration this chat runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The id the next accepted message will get.
    pub fn next_id(&self) -> MessageId {
        self.next_id
    }

    /// Open connections, logged in or not.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Every open connection, logged in or not, in id order: what a runtime that lost a
    /// group of connections at once (a cluster node that died) disconnects, one by one.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Logged-in users.
    pub fn online_count(&self) -> usize {
        self.online.len()
    }

    /// Whether `name` is an account's (case-insensitively).
    pub fn is_account(&self, name: &UserKey) -> bool {
        self.accounts.contains_key(name)
    }

    /// How many accounts there are.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The first session of the user logged in under `name` (case-insensitively), if any.
    pub fn online(&self, name: &UserKey) -> Option<ConnectionId> {
        self.online
            .get(name)
            .and_then(|u| u.sessions.first().copied())
    }

    /// Every session of the user logged in under `name`, in login order (empty if offline).
    pub fn sessions(&self, name: &UserKey) -> &[ConnectionId] {
        self.online.get(name).map_or(&[], |u| u.sessions.as_slice())
    }

    /// The rooms the user logged in under `name` is in, sorted (empty if offline).
    pub fn user_rooms(&self, name: &UserKey) -> Vec<RoomName> {
        self.online
            .get(name)
            .map(|u| u.rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The members of `room`, sorted case-insensitively (empty if the room does not exist):
    /// all of them, even of a large room.
    pub fn members(&self, room: &RoomName) -> Vec<UserName> {
        self.rooms
            .get(room)
            .map(Room::member_names)
            .unwrap_or_default()
    }

    /// The rooms that exist: those with members or history, sorted.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    /// How many messages of `room` are held in memory.
    pub fn history_len(&self, room: &RoomName) -> usize {
        self.rooms.get(room).map_or(0, |r| r.history.len())
    }

    /// How many DMs wait in all mailboxes together.
    pub fn queued_total(&self) -> usize {
        self.queued
    }

    /// How many DMs wait in `owner`'s mailbox.
    pub fn mailbox_len(&self, owner: &UserKey) -> usize {
        self.mailboxes.get(owner).map_or(0, Mailbox::len)
    }

    // ---- inputs -------------------------------------------------------------------------

    fn connect(&mut self, conn: ConnectionId, now: Now) -> Result<(), InputError> {
        if self.connections.contains_key(&conn) {
            return Err(InputError::DuplicateConnection(conn));
        }
        let login_deadline = self
            .config
            .login_timeout
            .map(|t| now.monotonic.saturating_add(t));
        self.connections.insert(
            conn,
            Connection {
                user: None,
                login_deadline,
                closing: false,
            },
        );
        if let Some(deadline) = login_deadline {
            self.login_deadlines.push_back((deadline, conn));
        }
        Ok(())
    }

    fn disconnect(&mut self, conn: ConnectionId) -> Result<(), InputError> {
        let connection = self
            .connections
            .remove(&conn)
            .ok_or(InputError::UnknownConnection(conn))?;
        self.checking.remove(&conn);
        if let Some(user) = connection.user {
            let key = user.key();
            let Some(online) = self.online.get_mut(&key) else {
                return Ok(());
            };
            online.sessions.retain(|&c| c != conn);
            if online.sessions.is_empty() {
                // The user's last session: the user leaves every room.
                let online = self.online.remove(&key).expect("looked up above");
                for room in online.rooms {
                    self.remove_member(&user, &key, room);
                }
            } else {
                // The others stay: this session just stops receiving.
                for room in &online.rooms {
                    if let Some(state) = self.rooms.get_mut(room) {
                        state.set_sessions(&key, &online.sessions);
                    }
                }
            }
        }
        Ok(())
    }

    fn expire_logins(&mut self, now: Duration) {
        while let Some(&(deadline, conn)) = self.login_deadlines.front() {
            if deadline > now {
                break;
            }
            self.login_deadlines.pop_front();
            if let Some(connection) = self.connections.get_mut(&conn) {
                // The id may have been reused by a later connection with a later deadline.
                let this_connection = connection.login_deadline == Some(deadline);
                if this_connection && connection.user.is_none() && !connection.closing {
                    connection.closing = true;
                    self.outputs.push_back(Output::Close {
                        conn,
                        reason: CloseReason::LoginTimeout,
                    });
                }
            }
        }
    }

    /// One command of a connection: handled now, or held while its login is checked.
    fn dispatch(
        &mut self,
        conn: ConnectionId,
        command: Command,
        reference: Option<Ref>,
        now: Timestamp,
    ) {
        if let Some(checking) = self.checking.get_mut(&conn) {
            if checking.waiting.len() < MAX_WAITING {
                checking.waiting.push_back((command, reference));
            } else {
                let error = Event::error(&ChatError::RateLimited);
                self.send(conn, error, reference, SendKind::Reply);
            }
            return;
        }
        if let Err(error) = self.command(conn, command, reference.clone(), now) {
            self.send(conn, Event::error(&error), reference, SendKind::Reply);
        }
    }

    fn command(
        &mut self,
        conn: ConnectionId,
        command: Command,
        reference: Option<Ref>,
        now: Timestamp,
    ) -> Result<(), ChatError> {
        let user = self.connections.get(&conn).and_then(|c| c.user.clone());
        let user = match (command, user) {
            (Command::Ping, _) => {
                self.send(conn, Event::Pong, reference, SendKind::Reply);
                return Ok(());
            }
            (
                Command::Login {
                    name,
                    password,
                    token,
                    since,
                },
                None,
            ) => {
                let attempt = (name, password, token);
                return self.login_attempt(conn, attempt, since, reference);
            }
            (Command::Login { .. }, Some(user)) => return Err(ChatError::AlreadyLoggedIn(user)),
            (_, None) => return Err(ChatError::NotLoggedIn),
            (Command::Register { password }, Some(user)) => {
                return self.register(conn, user, password, reference);
            }
            (command, Some(user)) => (command, user),
        };
        let (command, user) = user;
        match command {
            Command::Join { room, since } => {
                let room = RoomName::parse(&room)?;
                let rooms = self.online.get(&user.key()).map(|u| &u.rooms);
                let full = rooms.is_some_and(|r| r.len() >= self.config.max_rooms);
                if full && !rooms.is_some_and(|r| r.contains(&room)) {
                    return Err(ChatError::InvalidRoom(format!(
                        "you are in {} rooms, the most one user may be in; leave one first",
                        self.config.max_rooms
                    )));
                }
                self.join(conn, &user, room, reference, since);
                self.store_rooms(&user.key());
                Ok(())
            }
            Command::Leave { room } => self.leave(conn, &user, &room, reference),
            Command::Say { room, text } => self.say(conn, user, &room, &text, reference, now),
            Command::Dm { to, text } => self.dm(conn, user, &to, &text, reference, now),
            Command::History {
                room,
                with,
                before,
                limit,
            } => {
                let limit = match limit {
                    None => DEFAULT_PAGE,
                    Some(n) => usize::try_from(n.clamp(1, MAX_PAGE as i64)).unwrap_or(DEFAULT_PAGE),
                };
                match (room, with) {
                    (Some(room), None) => self.history(conn, &room, before, limit, reference),
                    (None, Some(with)) => {
                        self.dm_history(conn, &user, &with, before, limit, reference)
                    }
                    _ => Err(ChatError::BadFrame(
                        "a history frame names a \"room\" or a user it is \"with\", one of the two"
                            .into(),
                    )),
                }
            }
            Command::Rooms => {
                self.rooms_command(conn, reference);
                Ok(())
            }
            Command::Who { room } => self.who(conn, &room, reference),
            // Answered above, whatever the connection's state.
            Command::Login { .. } | Command::Register { .. } | Command::Ping => Ok(()),
        }
    }

    /// Takes back what the store could not keep: the runtime answered the senders with
    /// `unavailable` and delivered nothing of it, so no later joiner, page or login may see it.
    /// Other records (reservations, deliveries) are the runtime's to retry.
    fn forget(&mut self, records: &[Record]) {
        for record in records {
            match record {
                Record::Message(message) => {
                    if let Some(room) = self.rooms.get_mut(&message.room) {
                        room.history.remove(message.id);
                        if room.is_idle() {
                            self.rooms.remove(&message.room);
                        }
                    }
                }
                Record::Queued(dm) => {
                    let owner = dm.owner();
                    if let Some(mailbox) = self.mailboxes.get_mut(&owner) {
                        if mailbox.remove(dm.id) {
                            self.queued -= 1;
                        }
                        if mailbox.len() == 0 {
                            self.mailboxes.remove(&owner);
                        }
                    }
                }
                Record::Account(account) => {
                    let key = account.name.key();
                    self.accounts.remove(&key);
                    self.account_rooms.remove(&key);
                    // Whoever holds the name now holds it as a guest would (one session).
                    if let Some(user) = self.online.get_mut(&key) {
                        user.account = false;
                    }
                }
                // An unstored room set stays in memory: the account keeps its rooms until a
                // restart, and the next change stores the whole set again.
                Record::Dm(dm) => {
                    for party in [dm.from.key(), dm.to.key()] {
                        if let Some(log) = self.dm_logs.get_mut(&party) {
                            log.remove(dm.id);
                        }
                    }
                }
                Record::Delivered { .. } | Record::IdsReserved { .. } | Record::Rooms { .. } => {}
            }
        }
    }

    /// Puts DMs whose delivery was not recorded back at the front of their owners' mailboxes,
    /// in their order, before anything queued since. (The store still holds them: only the
    /// record of their delivery failed.)
    fn requeue(&mut self, messages: Vec<Arc<DirectMessage>>) {
        for message in messages.into_iter().rev() {
            self.mailboxes
                .entry(message.owner())
                .or_default()
                .push_front(message);
            self.queued += 1;
        }
    }

    // ---- commands -----------------------------------------------------------------------

    /// A `login` frame: a guest login is decided here; one with a password or a token (or any,
    /// with [`Config::authenticate_guests`]) goes to the runtime to check, and the connection's
    /// later commands wait for the answer.
    fn login_attempt(
        &mut self,
        conn: ConnectionId,
        (name, password, token): (Option<String>, Option<Secret>, Option<Secret>),
        since: Option<u64>,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        let name = match (&token, name) {
            // A token names its user; whatever else the frame says is ignored.
            (Some(_), _) => None,
            (None, Some(name)) => Some(UserName::parse(&name)?),
            (None, None) => {
                return Err(ChatError::BadFrame(
                    "a login needs a \"name\" (or a \"token\")".into(),
                ));
            }
        };
        let attempt = LoginAttempt {
            name,
            password,
            token,
        };
        if !attempt.has_credentials() && !self.config.authenticate_guests {
            let name = attempt
                .name
                .expect("a login without a token has a name, checked above");
            return self.login(conn, Identity::Guest(name), reference, since);
        }
        self.check(conn, reference.clone(), since);
        self.outputs.push_back(Output::Authenticate {
            conn,
            attempt,
            reference,
        });
        Ok(())
    }

    /// Holds the connection's next commands until the runtime answers a check.
    fn check(&mut self, conn: ConnectionId, reference: Option<Ref>, since: Option<u64>) {
        self.checking.insert(
            conn,
            Checking {
                reference,
                since,
                waiting: VecDeque::new(),
            },
        );
    }

    /// Ends a check: the answer first (`answer` runs with the frame's `ref`), then the commands
    /// that waited for it, in order (one of them may start a check of its own: the rest then
    /// wait for that one).
    fn checked(
        &mut self,
        conn: ConnectionId,
        now: Timestamp,
        answer: impl FnOnce(&mut Self, Option<Ref>, Option<u64>) -> Result<(), ChatError>,
    ) {
        let Some(checking) = self.checking.remove(&conn) else {
            // The connection left (or was never checked): nothing to answer.
            return;
        };
        if self.connections.get(&conn).is_none_or(|c| c.closing) {
            return;
        }
        if let Err(error) = answer(self, checking.reference.clone(), checking.since) {
            self.send(
                conn,
                Event::error(&error),
                checking.reference,
                SendKind::Reply,
            );
        }
        let mut waiting = checking.waiting;
        while let Some((command, reference)) = waiting.pop_front() {
            self.dispatch(conn, command, reference, now);
            if let Some(next) = self.checking.get_mut(&conn) {
                next.waiting.extend(waiting);
                return;
            }
        }
    }

    fn authenticated(
        &mut self,
        conn: ConnectionId,
        outcome: Result<Identity, AuthError>,
        now: Timestamp,
    ) {
        self.checked(conn, now, |chat, reference, since| {
            chat.login(conn, outcome?, reference, since)
        });
    }

    /// Logs `conn` in as `identity`, verified: a guest may not take an account's name (nor log
    /// in at all with guests off); an account's first login makes its name one.
    fn login(
        &mut self,
        conn: ConnectionId,
        identity: Identity,
        reference: Option<Ref>,
        since: Option<u64>,
    ) -> Result<(), ChatError> {
        // A login that waited for another one's check finds the connection logged in.
        if let Some(user) = self.connections.get(&conn).and_then(|c| c.user.clone()) {
            return Err(ChatError::AlreadyLoggedIn(user));
        }
        let (user, account) = match identity {
            Identity::Guest(name) => {
                if !self.config.guests {
                    return Err(ChatError::AuthRequired(
                        "this server admits registered users only: log in with a password or a \
                         token"
                            .into(),
                    ));
                }
                if self.accounts.contains_key(&name.key()) {
                    return Err(ChatError::AuthRequired(format!(
                        "{name} is registered: log in with its password or a token"
                    )));
                }
                (name, false)
            }
            Identity::Account(name) => match self.accounts.get(&name.key()) {
                Some(registered) => (registered.clone(), true),
                None => (name, true),
            },
        };
        let key = user.key();
        if let Some(online) = self.online.get(&key) {
            if !account || !online.account {
                return Err(ChatError::NameTaken(user));
            }
            if online.sessions.len() >= self.config.max_sessions {
                return Err(ChatError::TooManySessions(
                    online.name.clone(),
                    self.config.max_sessions,
                ));
            }
            return self.add_session(conn, key, reference, since);
        }
        if account && !self.accounts.contains_key(&key) {
            self.accounts.insert(key.clone(), user.clone());
            self.outputs
                .push_back(Output::Persist(Record::Account(Account {
                    name: user.clone(),
                    hash: None,
                })));
        }
        self.online.insert(
            key.clone(),
            User {
                name: user.clone(),
                account,
                sessions: vec![conn],
                rooms: RoomSet::new(),
            },
        );
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.user = Some(user.clone());
        }
        // An account rejoins its stored rooms; the default room is for guests and for an
        // account's first login ever.
        let rooms: Vec<RoomName> = match self.account_rooms.get(&key).filter(|_| account) {
            Some(stored) => stored.iter().cloned().collect(),
            None => self.config.default_room.iter().cloned().collect(),
        };
        self.send(
            conn,
            Event::Welcome {
                name: user.clone(),
                rooms: rooms.clone(),
                account,
            },
            reference,
            SendKind::Reply,
        );
        for room in rooms {
            self.join(conn, &user, room, None, since);
        }
        self.store_rooms(&key);
        // A guest never gets a mailbox: what an older server queued for its name waits for the
        // name's owner.
        if account {
            let delivered = self.deliver_mailbox(conn, key.clone());
            if let Some(since) = since {
                self.replay_dms(conn, &key, since, delivered);
            }
        }
        Ok(())
    }

    /// A resume's DMs: `key`'s DMs with an id above `since`, leaving out those the mailbox just
    /// delivered, and of the rest the newest [`Config::resume_limit`], as `dm` frames with
    /// `replay`.
    fn replay_dms(
        &mut self,
        conn: ConnectionId,
        key: &UserKey,
        since: u64,
        delivered: Vec<MessageId>,
    ) {
        let Some(log) = self.dm_logs.get(key) else {
            return;
        };
        let missed = log.since(since, self.config.resume_limit, |dm| {
            delivered.binary_search(&dm.id).is_err()
        });
        for message in missed.messages {
            let event = Event::Dm {
                message,
                queued: false,
                replay: true,
            };
            self.send(conn, event, None, SendKind::Backlog);
        }
    }

    /// A later session of an online account: it gets the user's rooms (`welcome`, then one
    /// `joined` each), and nobody else is told anything.
    fn add_session(
        &mut self,
        conn: ConnectionId,
        key: UserKey,
        reference: Option<Ref>,
        since: Option<u64>,
    ) -> Result<(), ChatError> {
        let online = self
            .online
            .get_mut(&key)
            .expect("the caller found the user online");
        online.sessions.push(conn);
        let name = online.name.clone();
        let rooms: Vec<RoomName> = online.rooms.iter().cloned().collect();
        for room in &rooms {
            if let Some(state) = self.rooms.get_mut(room) {
                state.set_sessions(&key, &online.sessions);
            }
        }
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.user = Some(name.clone());
        }
        self.send(
            conn,
            Event::Welcome {
                name,
                rooms: rooms.clone(),
                account: true,
            },
            reference,
            SendKind::Reply,
        );
        for room_name in rooms {
            let Some(room) = self.rooms.get(&room_name) else {
                continue;
            };
            let event = self.joined(room_name, room, since);
            self.send(conn, event, None, SendKind::Backlog);
        }
        if let Some(since) = since {
            self.replay_dms(conn, &key, since, Vec::new());
        }
        Ok(())
    }

    /// The `joined` frame of `room`: its members (of a large room the first
    /// [`Config::large_room`] and the total), its last few messages, or after a resume (`since`)
    /// what came after that id, with whether that is all of it.
    fn joined(&self, name: RoomName, room: &Room, since: Option<u64>) -> Event {
        let total = room.member_count();
        let (members, member_count) = if total > self.config.large_room {
            (room.first_member_names(self.config.large_room), Some(total))
        } else {
            (room.member_names(), None)
        };
        let (history, complete) = match since {
            None => (room.history.last(self.config.join_history), None),
            Some(since) => {
                let Missed { messages, complete } =
                    room.history
                        .since(since, self.config.resume_limit, |_| true);
                (messages, Some(complete))
            }
        };
        Event::Joined {
            room: name,
            members,
            member_count,
            history,
            complete,
        }
    }

    /// Hands `owner`'s queued DMs to `conn`, once; returns their ids, in order.
    fn deliver_mailbox(&mut self, conn: ConnectionId, owner: UserKey) -> Vec<MessageId> {
        let Some(mut mailbox) = self.mailboxes.remove(&owner) else {
            return Vec::new();
        };
        let queued = mailbox.take();
        self.queued -= queued.len();
        if let Some(last) = queued.back() {
            // Durable before delivery: a crash may lose this login's burst, but a DM is never
            // delivered twice.
            self.outputs.push_back(Output::Persist(Record::Delivered {
                owner,
                through: last.id,
            }));
        }
        let ids = queued.iter().map(|dm| dm.id).collect();
        for message in queued {
            self.send(conn, Event::dm(message), None, SendKind::Backlog);
        }
        ids
    }

    /// A `register` frame from a guest: checks the password's rules, then has the runtime hash
    /// it; the later commands wait.
    fn register(
        &mut self,
        conn: ConnectionId,
        user: UserName,
        password: Secret,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        if self.accounts.contains_key(&user.key()) {
            return Err(ChatError::AlreadyRegistered(user));
        }
        password.check_password()?;
        self.check(conn, reference.clone(), None);
        self.outputs.push_back(Output::HashPassword {
            conn,
            name: user,
            password,
            reference,
        });
        Ok(())
    }

    fn password_hashed(
        &mut self,
        conn: ConnectionId,
        outcome: Result<PasswordHash, AuthError>,
        now: Timestamp,
    ) {
        self.checked(conn, now, |chat, reference, _| {
            let hash = outcome?;
            let user = chat
                .connections
                .get(&conn)
                .and_then(|c| c.user.clone())
                .ok_or(ChatError::NotLoggedIn)?;
            let key = user.key();
            if chat.accounts.contains_key(&key) {
                return Err(ChatError::AlreadyRegistered(user));
            }
            chat.accounts.insert(key.clone(), user.clone());
            if let Some(online) = chat.online.get_mut(&key) {
                // Its later sessions may log in with the password.
                online.account = true;
            }
            chat.outputs
                .push_back(Output::Persist(Record::Account(Account {
                    name: user.clone(),
                    hash: Some(hash),
                })));
            // The guest's rooms become the account's.
            chat.store_rooms(&key);
            chat.send(
                conn,
                Event::Registered { name: user },
                reference,
                SendKind::Reply,
            );
            // What waited for this name (from an older server that kept DMs for anyone) is the
            // new owner's.
            chat.deliver_mailbox(conn, key);
            Ok(())
        });
    }

    /// `user` joins `room_name` from `conn`: the room gets the user once (presence only if it
    /// was not a member, and the room is not large with it); `conn` gets `joined` with
    /// `reference` (with what it missed after `since`, for a resume), the user's other sessions
    /// a plain copy (only when the join changed something).
    fn join(
        &mut self,
        conn: ConnectionId,
        user: &UserName,
        room_name: RoomName,
        reference: Option<Ref>,
        since: Option<u64>,
    ) {
        let key = user.key();
        let Some(online) = self.online.get_mut(&key) else {
            return;
        };
        let history_capacity = self.config.history;
        let large_room = self.config.large_room;
        let room = self
            .rooms
            .entry(room_name.clone())
            .or_insert_with(|| Room::new(History::new(history_capacity)));
        let mut others = Vec::new();
        if online.rooms.insert(room_name.clone()) {
            // Presence only while the room, with the joiner, is not large. A large room's
            // recipient set is not even asked for: it is built at its next message.
            if room.member_count() < large_room {
                let before_join = room.recipients();
                room.add(user.clone(), online.sessions.clone());
                if !before_join.is_empty() {
                    self.outputs.push_back(Output::Broadcast {
                        to: before_join,
                        except: None,
                        event: Arc::new(Event::Presence {
                            room: room_name.clone(),
                            user: user.clone(),
                            event: PresenceChange::Join,
                        }),
                    });
                }
            } else {
                room.add(user.clone(), online.sessions.clone());
            }
            others.extend(online.sessions.iter().copied().filter(|&c| c != conn));
        }
        let room = &self.rooms[&room_name];
        let event = Arc::new(self.joined(room_name.clone(), room, since));
        // The other sessions get the plain frame: the asking session's resume is its own.
        let copy = match since {
            Some(_) if !others.is_empty() => Arc::new(self.joined(room_name, room, None)),
            _ => event.clone(),
        };
        self.outputs.push_back(Output::Send {
            to: conn,
            event,
            reference,
            kind: SendKind::Backlog,
        });
        self.copy_to(others, &copy);
    }

    /// Sends `event` to each of `sessions` as [`SendKind::Copy`].
    fn copy_to(&mut self, sessions: Vec<ConnectionId>, event: &Arc<Event>) {
        for session in sessions {
            self.outputs.push_back(Output::Send {
                to: session,
                event: event.clone(),
                reference: None,
                kind: SendKind::Copy,
            });
        }
    }

    /// The sessions of `key` other than `conn`.
    fn other_sessions(&self, key: &UserKey, conn: ConnectionId) -> Vec<ConnectionId> {
        self.online.get(key).map_or_else(Vec::new, |u| {
            u.sessions.iter().copied().filter(|&c| c != conn).collect()
        })
    }

    fn leave(
        &mut self,
        conn: ConnectionId,
        user: &UserName,
        room: &str,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        let room = RoomName::parse(room)?;
        let key = user.key();
        let in_room = self
            .online
            .get_mut(&key)
            .is_some_and(|u| u.rooms.remove(&room));
        if !in_room {
            return Err(ChatError::NotInRoom(room));
        }
        let event = Arc::new(Event::Left { room: room.clone() });
        self.outputs.push_back(Output::Send {
            to: conn,
            event: event.clone(),
            reference,
            kind: SendKind::Reply,
        });
        let others = self.other_sessions(&key, conn);
        self.copy_to(others, &event);
        self.remove_member(user, &key, room);
        self.store_rooms(&key);
        Ok(())
    }

    /// Makes an online account's rooms its stored ones: a [`Record::Rooms`] if they differ from
    /// the last stored set (or none was). Guests store nothing.
    fn store_rooms(&mut self, key: &UserKey) {
        let Some(online) = self.online.get(key).filter(|u| u.account) else {
            return;
        };
        if self.account_rooms.get(key) == Some(&online.rooms) {
            return;
        }
        let rooms = online.rooms.clone();
        self.outputs.push_back(Output::Persist(Record::Rooms {
            owner: key.clone(),
            rooms: rooms.iter().cloned().collect(),
        }));
        self.account_rooms.insert(key.clone(), rooms);
    }

    /// Takes `user` (every session of it) out of `room_name`, tells the remaining members
    /// (unless the room was large before the leave), and forgets the room if it is idle.
    fn remove_member(&mut self, user: &UserName, key: &UserKey, room_name: RoomName) {
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let was_large = room.member_count() > self.config.large_room;
        room.remove(key);
        if room.is_idle() {
            self.rooms.remove(&room_name);
            return;
        }
        if was_large {
            // Nobody is told; the recipient set is built at the room's next message.
            return;
        }
        // Built now, the set is the room's cache for the next message too.
        let remaining = room.recipients();
        if !remaining.is_empty() {
            self.outputs.push_back(Output::Broadcast {
                to: remaining,
                except: None,
                event: Arc::new(Event::Presence {
                    room: room_name,
                    user: user.clone(),
                    event: PresenceChange::Leave,
                }),
            });
        }
    }

    fn say(
        &mut self,
        conn: ConnectionId,
        user: UserName,
        room: &str,
        text: &str,
        reference: Option<Ref>,
        now: Timestamp,
    ) -> Result<(), ChatError> {
        let room_name = RoomName::parse(room)?;
        if !self.is_member(&user, &room_name) {
            return Err(ChatError::NotInRoom(room_name));
        }
        let text = Text::parse(text, self.config.max_text_bytes)?;
        let id = self.allocate_id().ok_or(ChatError::Unavailable)?;
        let message = Arc::new(RoomMessage {
            room: room_name.clone(),
            id,
            from: user,
            text,
            ts: now,
        });
        let room = self
            .rooms
            .get_mut(&room_name)
            .expect("membership was checked above and nothing removed the room since");
        room.history.push(message.clone());
        let recipients = room.recipients();
        self.outputs
            .push_back(Output::Persist(Record::Message(message.clone())));
        let event = Arc::new(Event::Message(message));
        if recipients.len() > 1 {
            // Every session of every member but the sending one: the sender's other sessions
            // get it like any member.
            self.outputs.push_back(Output::Broadcast {
                to: recipients,
                except: Some(conn),
                event: event.clone(),
            });
        }
        self.outputs.push_back(Output::Send {
            to: conn,
            event,
            reference,
            kind: SendKind::Echo,
        });
        Ok(())
    }

    fn dm(
        &mut self,
        conn: ConnectionId,
        from: UserName,
        to: &str,
        text: &str,
        reference: Option<Ref>,
        now: Timestamp,
    ) -> Result<(), ChatError> {
        let to = UserName::parse(to)?;
        let text = Text::parse(text, self.config.max_text_bytes)?;
        let owner = to.key();
        let sender = from.key();
        if owner == sender {
            return Err(ChatError::InvalidTarget);
        }
        let online: Option<Vec<ConnectionId>> = self.online.get(&owner).map(|u| u.sessions.clone());
        if online.is_none() && self.config.guests && !self.accounts.contains_key(&owner) {
            return Err(ChatError::UserOffline(to));
        }
        let server_full = self.queued >= self.config.max_queued;
        if online.is_none() && (self.mailbox_len(&owner) >= self.config.mailbox || server_full) {
            return Err(ChatError::MailboxFull(to));
        }
        let id = self.allocate_id().ok_or(ChatError::Unavailable)?;
        let message = Arc::new(DirectMessage {
            id,
            from,
            to,
            text,
            ts: now,
        });
        self.keep_dm(&message, [&sender, &owner]);
        let delivered = Arc::new(Event::dm(message.clone()));
        match online {
            Some(recipients) => {
                for recipient in recipients {
                    self.outputs.push_back(Output::Send {
                        to: recipient,
                        event: delivered.clone(),
                        reference: None,
                        kind: SendKind::Push,
                    });
                }
                self.outputs.push_back(Output::Send {
                    to: conn,
                    event: delivered.clone(),
                    reference,
                    kind: SendKind::Echo,
                });
            }
            None => {
                self.mailboxes
                    .entry(owner)
                    .or_default()
                    .push(message.clone());
                self.queued += 1;
                self.outputs
                    .push_back(Output::Persist(Record::Queued(message.clone())));
                let event = Event::Dm {
                    message,
                    queued: true,
                    replay: false,
                };
                self.send(conn, event, reference, SendKind::Echo);
            }
        }
        // The sender's other sessions see what it sent (never `queued`: that is the answer to
        // the sending frame).
        let others = self.other_sessions(&sender, conn);
        self.copy_to(others, &delivered);
        Ok(())
    }

    /// Keeps a DM in the DM history of each account it is between (so a resume replays it),
    /// and has it stored when both are accounts.
    ///
    /// A DM with a guest is not stored: a guest name is anyone's, and whoever registers it
    /// later must not find the DMs of the guest who had it before in its stored history. So an
    /// account's stored DM history holds exactly its DMs with other accounts, which are the
    /// only ones it can page (`history` with a guest is `invalid_target`).
    fn keep_dm(&mut self, message: &Arc<DirectMessage>, parties: [&UserKey; 2]) {
        let mut accounts = 0;
        for party in parties {
            if !self.accounts.contains_key(party) {
                continue;
            }
            match self.dm_logs.get_mut(party) {
                Some(log) => log.push(message.clone()),
                None => {
                    let mut log = History::new(self.config.history);
                    log.push(message.clone());
                    self.dm_logs.insert(party.clone(), log);
                }
            }
            accounts += 1;
        }
        if accounts == 2 {
            self.outputs
                .push_back(Output::Persist(Record::Dm(message.clone())));
        }
    }

    /// A page of the asking account's DMs with `with`, both directions.
    fn dm_history(
        &mut self,
        conn: ConnectionId,
        user: &UserName,
        with: &str,
        before: Option<u64>,
        limit: usize,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        let key = user.key();
        if !self.accounts.contains_key(&key) {
            return Err(ChatError::AuthRequired(
                "DM history is kept for accounts only: register your name first".into(),
            ));
        }
        let with = UserName::parse(with)?;
        let peer = with.key();
        let Some(with) = self.accounts.get(&peer).filter(|_| peer != key).cloned() else {
            return Err(ChatError::InvalidTarget);
        };
        let page = match self.dm_logs.get(&key) {
            Some(log) => log.page_of(before, limit, |dm| {
                let is_peer = |name: &UserName| name.as_str().eq_ignore_ascii_case(peer.as_str());
                is_peer(&dm.from) || is_peer(&dm.to)
            }),
            None => Page::Complete(Vec::new()),
        };
        match page {
            Page::Complete(messages) => {
                let event = Event::DmHistory { with, messages };
                self.send(conn, event, reference, SendKind::Backlog);
            }
            Page::Partial => {
                self.outputs.push_back(Output::FetchHistory(HistoryRequest {
                    conn,
                    of: HistoryOf::Dms { user: key, with },
                    before: before.and_then(MessageId::new),
                    limit,
                    reference,
                }));
            }
        }
        Ok(())
    }

    fn history(
        &mut self,
        conn: ConnectionId,
        room: &str,
        before: Option<u64>,
        limit: usize,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        let room_name = RoomName::parse(room)?;
        let member = self
            .connections
            .get(&conn)
            .and_then(|c| c.user.as_ref())
            .is_some_and(|user| self.is_member(user, &room_name));
        let Some(room) = self.rooms.get(&room_name).filter(|_| member) else {
            return Err(ChatError::NotInRoom(room_name));
        };
        match room.history.page(before, limit) {
            Page::Complete(messages) => {
                let event = Event::History {
                    room: room_name,
                    messages,
                };
                self.send(conn, event, reference, SendKind::Backlog);
            }
            Page::Partial => {
                self.outputs.push_back(Output::FetchHistory(HistoryRequest {
                    conn,
                    of: HistoryOf::Room(room_name),
                    before: before.and_then(MessageId::new),
                    limit,
                    reference,
                }));
            }
        }
        Ok(())
    }

    fn rooms_command(&mut self, conn: ConnectionId, reference: Option<Ref>) {
        let rooms = self
            .rooms
            .iter()
            .map(|(room, state)| RoomSummary {
                room: room.clone(),
                members: state.member_count(),
            })
            .collect();
        self.send(conn, Event::Rooms { rooms }, reference, SendKind::Reply);
    }

    fn who(
        &mut self,
        conn: ConnectionId,
        room: &str,
        reference: Option<Ref>,
    ) -> Result<(), ChatError> {
        let room = RoomName::parse(room)?;
        let members = self.members(&room);
        self.send(
            conn,
            Event::Who { room, members },
            reference,
            SendKind::Reply,
        );
        Ok(())
    }

    // ---- helpers ------------------------------------------------------------------------

    /// Whether the user `key` is in `room` (no allocation: the user keeps its own room set).
    fn is_member(&self, user: &UserName, room: &RoomName) -> bool {
        user.with_key(|key| self.online.get(key).is_some_and(|u| u.rooms.contains(room)))
    }

    fn send(&mut self, to: ConnectionId, event: Event, reference: Option<Ref>, kind: SendKind) {
        self.outputs.push_back(Output::Send {
            to,
            event: Arc::new(event),
            reference,
            kind,
        });
    }

    /// The next message id, reserving a new block first when the current one is used up; `None`
    /// when the ids have run out. The last id, `u64::MAX`, is never handed out: a counter that
    /// reached it has run out (only a corrupt snapshot or checkpoint puts it anywhere near), and
    /// handing it out twice would break the promise that ids strictly increase.
    fn allocate_id(&mut self) -> Option<MessageId> {
        let id = self.next_id;
        if id.get() == u64::MAX {
            return None;
        }
        if id >= self.reserved_until {
            let until = MessageId::new(id.get().saturating_add(self.config.id_block.max(1)))
                .expect("a successor of a positive id is positive");
            self.reserved_until = until;
            self.outputs
                .push_back(Output::Persist(Record::IdsReserved { until }));
        }
        self.next_id = id.next();
        Some(id)
    }
}
