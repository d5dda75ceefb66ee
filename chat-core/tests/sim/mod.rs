//! A simulated server for scenario tests: fake connections, a fake clock, and a loop that feeds
//! inputs to a [`Chat`] and drains its outputs, as a runtime would.
//!
//! Every delivery lands in the recipient's inbox; records, history fetches and closes are kept
//! for inspection. Logins with a password or token and registrations are answered by a fake
//! authenticator ([`FakeAuth`]), at once unless `hold_checks` is set (then they wait in `checks`
//! until [`Sim::answer_checks`]). The harness also checks the core's delivery promises as it
//! goes: nothing is ever addressed to a connection that is not open, and every id the core hands
//! out was reserved by an earlier record.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use chat_core::{
    AuthError, Chat, CloseReason, Command, Config, ConnectionId, ErrorCode, Event, HistoryRequest,
    Identity, Input, MessageId, Output, PasswordHash, Record, Ref, Secret, SendKind, Timestamp,
    UserKey, UserName,
};

/// A check the core asked of the runtime.
#[derive(Clone, Debug)]
pub enum Check {
    Login {
        conn: ConnectionId,
        attempt: chat_core::LoginAttempt,
    },
    Hash {
        conn: ConnectionId,
        password: Secret,
    },
}

/// One delivered event as a connection sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub event: Arc<Event>,
    pub reference: Option<Ref>,
    pub kind: SendKind,
}

pub struct Sim {
    pub chat: Chat,
    pub now: Timestamp,
    next_conn: u64,
    open: BTreeSet<ConnectionId>,
    inboxes: HashMap<ConnectionId, Vec<Received>>,
    pub records: Vec<Record>,
    pub fetches: Vec<HistoryRequest>,
    pub closed: Vec<(ConnectionId, CloseReason)>,
    /// Outputs drained, by kind, to check the core's fan-out cost.
    pub broadcasts: usize,
    pub sends: usize,
    reserved_until: u64,
    /// Checks asked for and not answered yet (only while `hold_checks`).
    pub checks: VecDeque<Check>,
    pub hold_checks: bool,
    /// The fake authenticator, which learns the accounts from the records.
    pub auth: FakeAuth,
}

/// The fake authenticator: a token `token:NAME` proves NAME, a password is right when it is the
/// one the name was registered with (the fake hash is `fake:PASSWORD`), and a login with neither
/// is a guest's.
#[derive(Clone, Debug, Default)]
pub struct FakeAuth {
    /// The hash stored for each account, from the records (empty for one without a password).
    hashes: HashMap<UserKey, String>,
}

impl FakeAuth {
    /// Its verdict on a login.
    pub fn verify(&self, attempt: &chat_core::LoginAttempt) -> Result<Identity, AuthError> {
        if let Some(token) = &attempt.token {
            let name = token
                .expose()
                .strip_prefix("token:")
                .ok_or(AuthError::Failed)?;
            return UserName::parse(name)
                .map(Identity::Account)
                .map_err(|_| AuthError::Failed);
        }
        let name = attempt.name.clone().ok_or(AuthError::Failed)?;
        match &attempt.password {
            None => Ok(Identity::Guest(name)),
            Some(password) => {
                let stored = self.hashes.get(&name.key()).ok_or(AuthError::Failed)?;
                if *stored == format!("fake:{}", password.expose()) {
                    Ok(Identity::Account(name))
                } else {
                    Err(AuthError::Failed)
                }
            }
        }
    }

    /// The fake hash of a password.
    pub fn hash(password: &Secret) -> PasswordHash {
        PasswordHash::new(format!("fake:{}", password.expose()))
    }

    /// Learns the account a record stores, if it stores one.
    pub fn learn(&mut self, record: &Record) {
        if let Record::Account(account) = record {
            let hash = account.hash.as_ref().map(|h| h.as_str().to_owned());
            self.hashes
                .insert(account.name.key(), hash.unwrap_or_default());
        }
    }
}

impl Sim {
    pub fn new(config: Config) -> Self {
        Self::with_chat(Chat::new(config))
    }

    pub fn with_chat(chat: Chat) -> Self {
        // Ids below a restored counter were handed out (and reserved) in an earlier life.
        let reserved_until = chat.next_id().get();
        Sim {
            chat,
            now: Timestamp::parse("2026-11-22T10:00:00.000Z").unwrap(),
            next_conn: 1,
            open: BTreeSet::new(),
            inboxes: HashMap::new(),
            records: Vec::new(),
            fetches: Vec::new(),
            closed: Vec::new(),
            broadcasts: 0,
            sends: 0,
            reserved_until,
            checks: VecDeque::new(),
            hold_checks: false,
            auth: FakeAuth::default(),
        }
    }

    pub fn input(&mut self, input: Input) {
        self.chat
            .handle(input, self.now)
            .expect("the simulated runtime is consistent");
        self.drain();
        if !self.hold_checks {
            self.answer_checks();
        }
    }

    /// Answers every check asked for so far (and those the answers lead to), in order.
    pub fn answer_checks(&mut self) {
        while let Some(check) = self.checks.pop_front() {
            let input = match check {
                Check::Hash { conn, password } => Input::PasswordHashed {
                    conn,
                    outcome: Ok(FakeAuth::hash(&password)),
                },
                Check::Login { conn, attempt } => Input::Authenticated {
                    conn,
                    outcome: self.auth.verify(&attempt),
                },
            };
            self.chat
                .handle(input, self.now)
                .expect("the simulated runtime is consistent");
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.chat.poll_output() {
            match output {
                Output::Send {
                    to,
                    event,
                    reference,
                    kind,
                } => {
                    self.sends += 1;
                    self.check_ids(&event);
                    self.deliver(
                        to,
                        Received {
                            event,
                            reference,
                            kind,
                        },
                    );
                }
                Output::Broadcast { to, except, event } => {
                    self.broadcasts += 1;
                    self.check_ids(&event);
                    for &conn in to.as_slice() {
                        if Some(conn) != except {
                            let received = Received {
                                event: event.clone(),
                                reference: None,
                                kind: SendKind::Push,
                            };
                            self.deliver(conn, received);
                        }
                    }
                }
                Output::Persist(record) => {
                    if let Record::IdsReserved { until } = &record {
                        assert!(until.get() > self.reserved_until, "reservations only grow");
                        self.reserved_until = until.get();
                    }
                    self.auth.learn(&record);
                    self.records.push(record);
                }
                Output::FetchHistory(request) => self.fetches.push(request),
                Output::Authenticate { conn, attempt, .. } => {
                    self.checks.push_back(Check::Login { conn, attempt });
                }
                Output::HashPassword { conn, password, .. } => {
                    self.checks.push_back(Check::Hash { conn, password });
                }
                Output::Close { conn, reason } => {
                    assert!(
                        self.open.contains(&conn),
                        "close of {conn}, which is not open"
                    );
                    self.closed.push((conn, reason));
                }
            }
        }
    }

    fn deliver(&mut self, to: ConnectionId, received: Received) {
        assert!(
            self.open.contains(&to),
            "{:?} delivered to {to}, which is not open",
            received.event
        );
        self.inboxes.entry(to).or_default().push(received);
    }

    /// Every id a client sees was reserved durably before it was handed out.
    fn check_ids(&self, event: &Event) {
        let id = match event {
            Event::Message(m) => m.id,
            Event::Dm { message, .. } => message.id,
            _ => return,
        };
        assert!(
            id.get() < self.reserved_until,
            "id {id} was not reserved (until {})",
            self.reserved_until
        );
    }

    pub fn connect(&mut self) -> ConnectionId {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.open.insert(conn);
        self.input(Input::Connect(conn));
        conn
    }

    pub fn disconnect(&mut self, conn: ConnectionId) {
        self.open.remove(&conn);
        self.inboxes.remove(&conn);
        self.input(Input::Disconnect(conn));
    }

    pub fn command(&mut self, conn: ConnectionId, command: Command) {
        self.input(Input::Command {
            conn,
            command,
            reference: None,
        });
    }

    pub fn command_with_ref(&mut self, conn: ConnectionId, command: Command, reference: Ref) {
        self.input(Input::Command {
            conn,
            command,
            reference: Some(reference),
        });
    }

    /// Connects and logs in; panics unless the login succeeded. Clears the inbox.
    pub fn login(&mut self, name: &str) -> ConnectionId {
        self.logged_in(Command::login(name), name, false)
    }

    /// The fake authenticator's token login for `name`.
    pub fn token_login(name: &str) -> Command {
        Command::Login {
            since: None,
            name: None,
            password: None,
            token: Some(Secret::new(format!("token:{name}"))),
        }
    }

    /// Connects and logs in as the owner of account `name` (by the fake token), making it an
    /// account if it was not one; panics unless the login succeeded. Clears the inbox.
    pub fn login_account(&mut self, name: &str) -> ConnectionId {
        self.logged_in(Self::token_login(name), name, true)
    }

    /// Connects and sends `login`; panics unless it was welcomed (as an account, if `account`).
    fn logged_in(&mut self, login: Command, name: &str, account: bool) -> ConnectionId {
        let conn = self.connect();
        self.command(conn, login);
        let first = self
            .take(conn)
            .into_iter()
            .next()
            .expect("a reply to login");
        let welcomed = match &*first.event {
            Event::Welcome { account: is, .. } => !account || *is,
            _ => false,
        };
        assert!(welcomed, "login of {name} failed: {first:?}");
        conn
    }

    /// Makes `name` an account (with a token login that ends at once), so DMs to it are kept
    /// while it is offline.
    pub fn make_account(&mut self, name: &str) {
        let conn = self.login_account(name);
        self.disconnect(conn);
    }

    pub fn join(&mut self, conn: ConnectionId, room: &str) {
        self.command(conn, Command::join(room));
    }

    pub fn leave(&mut self, conn: ConnectionId, room: &str) {
        self.command(conn, Command::Leave { room: room.into() });
    }

    pub fn say(&mut self, conn: ConnectionId, room: &str, text: &str) {
        self.command(
            conn,
            Command::Say {
                room: room.into(),
                text: text.into(),
            },
        );
    }

    pub fn dm(&mut self, conn: ConnectionId, to: &str, text: &str) {
        self.command(
            conn,
            Command::Dm {
                to: to.into(),
                text: text.into(),
            },
        );
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        self.input(Input::Tick);
    }

    /// Everything `conn` received since the last take, in order.
    pub fn take(&mut self, conn: ConnectionId) -> Vec<Received> {
        self.inboxes.remove(&conn).unwrap_or_default()
    }

    /// The events `conn` received since the last take.
    pub fn events(&mut self, conn: ConnectionId) -> Vec<Event> {
        self.take(conn)
            .into_iter()
            .map(|r| (*r.event).clone())
            .collect()
    }

    /// Clears every inbox.
    pub fn quiet(&mut self) {
        self.inboxes.clear();
    }

    /// The code of the one error `conn` received; panics if it received anything else.
    pub fn error_code(&mut self, conn: ConnectionId) -> ErrorCode {
        match self.events(conn).as_slice() {
            [Event::Error { code, .. }] => *code,
            other => panic!("expected exactly one error, got {other:?}"),
        }
    }

    /// Texts of the room messages `conn` received since the last take.
    pub fn texts(&mut self, conn: ConnectionId) -> Vec<String> {
        self.events(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(format!("{}: {}", m.from, m.text)),
                _ => None,
            })
            .collect()
    }
}

/// A message id for assertions.
pub fn id(n: u64) -> MessageId {
    MessageId::new(n).unwrap()
}
