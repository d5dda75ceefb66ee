//! What a cluster of replicas relies on: the same inputs give the same outputs, an input survives
//! its trip through the shared log (JSON), and a chat restored from a checkpoint (through JSON)
//! is the chat it was taken of.
//!
//! The property tests drive a chat the way a runtime would ([`Driver`]): the model's client ops
//! (`common`) plus what only a runtime feeds: logins with passwords and registrations whose
//! checks it answers late (so commands wait for them) or refuses, records the store failed to
//! keep, mailbox deliveries it could not record, and time passing past login deadlines. Each
//! run draws its config too. A replica is restored at a few random points of the run and fed the
//! rest: every output of every later input must equal the original's (`Output`'s `==` compares
//! a broadcast's recipients in order, which both build the same way), and so must
//! `poll_timeout` and, at the end, the whole state (its checkpoint).
//!
//! The unit tests restore replicas at moments that matter (a login being checked with commands
//! waiting, a room past its history, full mailboxes, an account's sessions, a connection past
//! its login deadline) and check both go on alike. Broken checkpoints must be errors, never
//! panics: a few unit tests break one part each and check the error names it, and a property
//! test edits a real checkpoint's JSON at random, then restores it and runs on.

mod common;
mod sim;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    AuthError, Chat, Checkpoint, Command, Config, ConnectionId, DEFAULT_LARGE_ROOM, DirectMessage,
    Event, Identity, Input, InputError, Now, Output, PasswordHash, Record, Ref, RestoreError,
    Secret, Timestamp, UserName,
};
use common::{Among, NAMES, Op, Pick, command, op, pick};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use sim::{Check, FakeAuth};

// ---- the driver ---------------------------------------------------------------------------

/// The passwords tried: a valid one and one too short.
const PASSWORDS: [&str; 2] = ["correct horse", "short"];

/// One thing that happens to a chat: a client op, or something only a runtime feeds.
#[derive(Clone, Debug)]
enum Step {
    Op(Op),
    /// A login with a password: connection, name, password.
    PasswordLogin(Pick, usize, usize),
    /// A `register` with a password.
    Register(Pick, usize),
    /// The runtime answers one of the checks out (the `index`-th, cyclically): as the fake
    /// authenticator says, or with this refusal.
    Answer(usize, Option<AuthError>),
    /// The store failed to keep the records of the last input that had any.
    Unstored,
    /// The store failed to record the last mailbox delivery: its DMs come back.
    Undelivered,
    /// Time passes (milliseconds), then a tick.
    Wait(u64),
}

fn refusal() -> impl Strategy<Value = Option<AuthError>> {
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(AuthError::Failed)),
        1 => Just(Some(AuthError::Throttled)),
        1 => Just(Some(AuthError::Unavailable)),
        1 => Just(Some(AuthError::Required)),
        1 => Just(Some(AuthError::NotOffered("not here".into()))),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let password = 0..PASSWORDS.len();
    prop_oneof![
        16 => op().prop_map(Step::Op),
        2 => (pick(Among::NotLoggedIn), 0..NAMES.len(), password.clone())
            .prop_map(|(c, n, p)| Step::PasswordLogin(c, n, p)),
        1 => (pick(Among::LoggedIn), password).prop_map(|(c, p)| Step::Register(c, p)),
        8 => (0..4usize, refusal()).prop_map(|(i, r)| Step::Answer(i, r)),
        // Users come and go more than in the model's ops, so that mailboxes fill and deliver.
        1 => pick(Among::LoggedIn).prop_map(|p| Step::Op(Op::Disconnect(p))),
        1 => Just(Step::Unstored),
        1 => Just(Step::Undelivered),
        1 => (0..8_000u64).prop_map(Step::Wait),
    ]
}

/// Small limits, so that a short run crosses them: history (none at all, one, four), sessions,
/// mailboxes, id blocks, large rooms, the login timeout; guests on or off.
fn config() -> impl Strategy<Value = Config> {
    let limits = (
        prop::sample::select(vec![0usize, 1, 4]),
        prop::sample::select(vec![3usize, 9]),
        prop::sample::select(vec![1usize, 2, DEFAULT_LARGE_ROOM]),
        prop::sample::select(vec![1u64, 3]),
        prop::sample::select(vec![3usize, 100]),
    );
    let switches = (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
        prop::option::of(Just(Duration::from_secs(5))),
    );
    (limits, switches).prop_map(
        |(
            (history, resume_limit, large_room, id_block, max_queued),
            (guests, authenticate_guests, login_timeout),
        )| Config {
            history,
            join_history: 2,
            resume_limit,
            mailbox: 2,
            max_queued,
            max_text_bytes: 10,
            login_timeout,
            id_block,
            guests,
            authenticate_guests,
            max_sessions: 2,
            large_room,
            ..Config::default()
        },
    )
}

/// A runtime for the property tests: it turns [`Step`]s into the inputs a runtime would feed,
/// aimed at its open connections, and learns from the outputs what a runtime learns.
struct Driver {
    chat: Chat,
    now: Now,
    next_conn: u64,
    /// Frames sent so far: each gets the next number as its `ref`.
    frames: u64,
    /// Open connections, in the order they opened.
    open: Vec<ConnectionId>,
    /// Those welcomed.
    logged_in: BTreeSet<ConnectionId>,
    /// Checks the core asked for that are not answered yet, oldest first.
    checks: Vec<Check>,
    auth: FakeAuth,
    /// The records of the last input that had any.
    last_records: Vec<Record>,
    /// The DMs of the last mailbox delivery.
    last_delivered: Vec<Arc<DirectMessage>>,
}

impl Driver {
    fn new(config: Config) -> Self {
        Driver {
            chat: Chat::new(config),
            now: start(),
            next_conn: 1,
            frames: 0,
            open: Vec::new(),
            logged_in: BTreeSet::new(),
            checks: Vec::new(),
            auth: FakeAuth::default(),
            last_records: Vec::new(),
            last_delivered: Vec::new(),
        }
    }

    /// The open connection `pick` aims at (as in the model test), if any is open.
    fn conn_at(&self, pick: Pick) -> Option<ConnectionId> {
        let logged_in = |c: &&ConnectionId| self.logged_in.contains(c);
        let wanted: Vec<ConnectionId> = match pick.among {
            Among::LoggedIn => self.open.iter().filter(logged_in).copied().collect(),
            Among::NotLoggedIn => self
                .open
                .iter()
                .filter(|c| !logged_in(c))
                .copied()
                .collect(),
            Among::All => Vec::new(),
        };
        let among = if wanted.is_empty() {
            &self.open
        } else {
            &wanted
        };
        among.get(pick.index % among.len().max(1)).copied()
    }

    fn new_conn(&mut self) -> ConnectionId {
        self.next_conn += 1;
        ConnectionId(self.next_conn - 1)
    }

    /// The inputs `step` stands for now: none when it has nothing to aim at, two for a login
    /// when every open connection is logged in (a new one connects first).
    fn inputs(&mut self, step: &Step) -> Vec<Input> {
        let mut inputs = Vec::new();
        let (pick, command) = match step {
            Step::Op(Op::Connect) => return vec![Input::Connect(self.new_conn())],
            Step::Op(Op::Disconnect(pick)) => {
                return self
                    .conn_at(*pick)
                    .map(Input::Disconnect)
                    .into_iter()
                    .collect();
            }
            Step::Op(op) => {
                let (pick, point) = match op {
                    Op::Login(p, _, _, s) | Op::Join(p, _, s) | Op::History(p, _, s, _) => (*p, *s),
                    Op::Leave(p, _) | Op::Say(p, _, _) | Op::Dm(p, _, _) => (*p, None),
                    Op::Connect | Op::Disconnect(_) => unreachable!("handled above"),
                };
                let newest = self.chat.next_id().get() - 1;
                (pick, command(op, point.map(|p| p.resolve(newest))))
            }
            Step::PasswordLogin(pick, name, password) => {
                let login = Command::Login {
                    name: Some(NAMES[*name].into()),
                    password: Some(Secret::new(PASSWORDS[*password])),
                    token: None,
                    since: None,
                };
                (*pick, login)
            }
            Step::Register(pick, password) => {
                let password = Secret::new(PASSWORDS[*password]);
                (*pick, Command::Register { password })
            }
            Step::Answer(index, refusal) => {
                if self.checks.is_empty() {
                    return Vec::new();
                }
                let check = self.checks.remove(index % self.checks.len());
                let input = match check {
                    Check::Login { conn, attempt } => Input::Authenticated {
                        conn,
                        outcome: refusal
                            .clone()
                            .map_or_else(|| self.auth.verify(&attempt), Err),
                    },
                    Check::Hash { conn, password } => Input::PasswordHashed {
                        conn,
                        outcome: refusal
                            .clone()
                            .map_or_else(|| Ok(FakeAuth::hash(&password)), Err),
                    },
                };
                return vec![input];
            }
            Step::Unstored => {
                let records = std::mem::take(&mut self.last_records);
                return (!records.is_empty())
                    .then_some(Input::Unstored(records))
                    .into_iter()
                    .collect();
            }
            Step::Undelivered => {
                let dms = std::mem::take(&mut self.last_delivered);
                return (!dms.is_empty())
                    .then_some(Input::Undelivered(dms))
                    .into_iter()
                    .collect();
            }
            Step::Wait(millis) => {
                let by = Duration::from_millis(*millis);
                self.now = Now::new(self.now.wall.saturating_add(by), self.now.monotonic + by);
                return vec![Input::Tick];
            }
        };
        let is_login = matches!(command, Command::Login { .. });
        let conn = if is_login && self.open.iter().all(|c| self.logged_in.contains(c)) {
            let conn = self.new_conn();
            inputs.push(Input::Connect(conn));
            Some(conn)
        } else {
            self.conn_at(pick)
        };
        if let Some(conn) = conn {
            self.frames += 1;
            inputs.push(Input::Command {
                conn,
                command,
                reference: Some(Ref::number(self.frames)),
            });
        }
        inputs
    }

    /// Feeds `input` to the chat and drains it, learning what a runtime would from the outputs.
    fn feed(&mut self, input: &Input) -> (Result<(), InputError>, Vec<Output>) {
        let (result, outputs) = feed(&mut self.chat, input, self.now);
        match input {
            Input::Connect(conn) => self.open.push(*conn),
            Input::Disconnect(conn) => {
                self.open.retain(|c| c != conn);
                self.logged_in.remove(conn);
            }
            _ => {}
        }
        let mut records = Vec::new();
        let mut delivered = Vec::new();
        let mut delivering = false;
        for output in &outputs {
            match output {
                Output::Send { to, event, .. } => match &**event {
                    Event::Welcome { .. } => {
                        self.logged_in.insert(*to);
                    }
                    Event::Dm {
                        message,
                        replay: false,
                        ..
                    } if delivering => delivered.push(message.clone()),
                    _ => {}
                },
                Output::Persist(record) => {
                    self.auth.learn(record);
                    delivering |= matches!(record, Record::Delivered { .. });
                    records.push(record.clone());
                }
                Output::Authenticate { conn, attempt, .. } => self.checks.push(Check::Login {
                    conn: *conn,
                    attempt: attempt.clone(),
                }),
                Output::HashPassword { conn, password, .. } => self.checks.push(Check::Hash {
                    conn: *conn,
                    password: password.clone(),
                }),
                _ => {}
            }
        }
        if !records.is_empty() {
            self.last_records = records;
        }
        if !delivered.is_empty() {
            self.last_delivered = delivered;
        }
        (result, outputs)
    }
}

fn start() -> Now {
    let wall = Timestamp::parse("2026-11-22T10:00:00.000Z").expect("a valid timestamp");
    Now::new(wall, Duration::from_secs(1_000))
}

/// Feeds `input` at `now` and drains every output.
fn feed(chat: &mut Chat, input: &Input, now: Now) -> (Result<(), InputError>, Vec<Output>) {
    let result = chat.handle(input.clone(), now);
    let outputs = std::iter::from_fn(|| chat.poll_output()).collect();
    (result, outputs)
}

/// A replica of `chat`: its checkpoint through JSON, restored with the same config.
fn replica(chat: &Chat) -> Result<Chat, TestCaseError> {
    let checkpoint = chat.checkpoint();
    let json = serde_json::to_string(&checkpoint).expect("a checkpoint serialises");
    let decoded: Checkpoint = serde_json::from_str(&json).expect("a checkpoint deserialises");
    prop_assert_eq!(
        &decoded,
        &checkpoint,
        "the JSON round trip changed the checkpoint"
    );
    Chat::from_checkpoint(chat.config().clone(), decoded)
        .map_err(|e| TestCaseError::fail(format!("the checkpoint of a chat is refused: {e}")))
}

// ---- properties ---------------------------------------------------------------------------

/// Runs `steps`, restoring a replica before each step in `splits` and feeding it the rest.
fn replicate(config: Config, steps: &[Step], splits: &[usize]) -> Result<(), TestCaseError> {
    let mut driver = Driver::new(config);
    let mut replicas: Vec<(usize, Chat)> = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        if splits.contains(&at) {
            replicas.push((at, replica(&driver.chat)?));
        }
        for input in driver.inputs(step) {
            let now = driver.now;
            let (result, outputs) = driver.feed(&input);
            for (split, chat) in &mut replicas {
                let (their_result, their_outputs) = feed(chat, &input, now);
                prop_assert_eq!(&their_result, &result, "replica from step {}", split);
                prop_assert_eq!(
                    &their_outputs,
                    &outputs,
                    "replica from step {} after {:?}",
                    split,
                    input
                );
                prop_assert_eq!(chat.poll_timeout(), driver.chat.poll_timeout());
            }
        }
    }
    let end = driver.chat.checkpoint();
    for (split, chat) in &replicas {
        prop_assert_eq!(
            &chat.checkpoint(),
            &end,
            "state of the replica from step {}",
            split
        );
    }
    prop_assert_eq!(&replica(&driver.chat)?.checkpoint(), &end);
    Ok(())
}

/// Runs `steps` on two chats (each with its own hash maps, so with its own iteration orders).
fn twins(config: Config, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut driver = Driver::new(config.clone());
    let mut twin = Chat::new(config);
    for step in steps {
        for input in driver.inputs(step) {
            let now = driver.now;
            let (result, outputs) = driver.feed(&input);
            let (their_result, their_outputs) = feed(&mut twin, &input, now);
            prop_assert_eq!(&their_result, &result);
            prop_assert_eq!(&their_outputs, &outputs, "after {:?}", input);
            prop_assert_eq!(twin.poll_timeout(), driver.chat.poll_timeout());
        }
    }
    let (theirs, ours) = (twin.checkpoint(), driver.chat.checkpoint());
    prop_assert_eq!(&theirs, &ours);
    let json = |c: &Checkpoint| serde_json::to_string(c).expect("a checkpoint serialises");
    prop_assert_eq!(
        json(&theirs),
        json(&ours),
        "equal states write the same bytes"
    );
    Ok(())
}

/// Every input of a run goes through JSON unchanged.
fn inputs_through_json(config: Config, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut driver = Driver::new(config);
    for step in steps {
        for input in driver.inputs(step) {
            let json = serde_json::to_string(&input).expect("an input serialises");
            let decoded: Input = serde_json::from_str(&json).expect("an input deserialises");
            prop_assert_eq!(&decoded, &input, "{}", json);
            let _ = driver.feed(&input);
        }
    }
    Ok(())
}

/// Any command, with any strings: the fields hold what a client sent, unvalidated.
fn any_command() -> impl Strategy<Value = Command> {
    let s = any::<String>;
    let maybe = || prop::option::of(any::<String>());
    let secret = || prop::option::of(any::<String>().prop_map(Secret::new));
    prop_oneof![
        (maybe(), secret(), secret(), any::<Option<u64>>()).prop_map(
            |(name, password, token, since)| Command::Login {
                name,
                password,
                token,
                since
            }
        ),
        s().prop_map(|p| Command::Register {
            password: Secret::new(p)
        }),
        (s(), any::<Option<u64>>()).prop_map(|(room, since)| Command::Join { room, since }),
        s().prop_map(|room| Command::Leave { room }),
        (s(), s()).prop_map(|(room, text)| Command::Say { room, text }),
        (s(), s()).prop_map(|(to, text)| Command::Dm { to, text }),
        (maybe(), maybe(), any::<Option<u64>>(), any::<Option<i64>>()).prop_map(
            |(room, with, before, limit)| Command::History {
                room,
                with,
                before,
                limit
            }
        ),
        Just(Command::Rooms),
        s().prop_map(|room| Command::Who { room }),
        Just(Command::Ping),
    ]
}

/// Any `ref` a client can send: text, an unsigned, a negative or a float number.
fn any_ref() -> impl Strategy<Value = Option<Ref>> {
    let from_json = |value: Value| serde_json::from_value::<Ref>(value).expect("a valid ref");
    let reference = prop_oneof![
        "\\PC{0,64}".prop_map(|t| Ref::text(&t).expect("at most 64 characters")),
        any::<u64>().prop_map(Ref::number),
        (i64::MIN..0).prop_map(move |n| from_json(n.into())),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(move |f| from_json(f.into())),
    ];
    prop::option::of(reference)
}

fn any_name() -> impl Strategy<Value = UserName> {
    "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}".prop_map(|n| UserName::parse(&n).expect("a valid name"))
}

/// Inputs with any contents a runtime may carry (secrets and hashes of any text).
fn any_input() -> impl Strategy<Value = Input> {
    let conn = || any::<u64>().prop_map(ConnectionId);
    let identity = prop_oneof![
        any_name().prop_map(Identity::Guest),
        any_name().prop_map(Identity::Account),
    ];
    let refused = prop_oneof![
        refusal().prop_map(|r| r.unwrap_or(AuthError::Failed)),
        any::<String>().prop_map(AuthError::NotOffered),
    ];
    let hashed = prop_oneof![
        any::<String>().prop_map(|h| Ok(PasswordHash::new(h))),
        refused.clone().prop_map(Err),
    ];
    prop_oneof![
        conn().prop_map(Input::Connect),
        (conn(), any_command(), any_ref()).prop_map(|(conn, command, reference)| {
            Input::Command {
                conn,
                command,
                reference,
            }
        }),
        conn().prop_map(Input::Disconnect),
        (
            conn(),
            prop_oneof![identity.prop_map(Ok), refused.prop_map(Err)]
        )
            .prop_map(|(conn, outcome)| Input::Authenticated { conn, outcome }),
        (conn(), hashed).prop_map(|(conn, outcome)| Input::PasswordHashed { conn, outcome }),
        Just(Input::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_replica_from_a_checkpoint_gives_the_same_outputs_as_the_original(
        config in config(),
        steps in prop::collection::vec(step(), 1..150),
        splits in prop::collection::vec(any::<Index>(), 1..4),
    ) {
        let splits: Vec<usize> = splits.iter().map(|s| s.index(steps.len())).collect();
        replicate(config, &steps, &splits)?;
    }

    #[test]
    fn two_chats_fed_the_same_inputs_give_the_same_outputs(
        config in config(),
        steps in prop::collection::vec(step(), 1..150),
    ) {
        twins(config, &steps)?;
    }

    #[test]
    fn every_input_of_a_run_round_trips_through_json(
        config in config(),
        steps in prop::collection::vec(step(), 1..100),
    ) {
        inputs_through_json(config, &steps)?;
    }

    #[test]
    fn any_input_round_trips_through_json(input in any_input()) {
        let json = serde_json::to_string(&input).expect("an input serialises");
        let decoded: Input = serde_json::from_str(&json).expect("an input deserialises");
        prop_assert_eq!(decoded, input, "{}", json);
    }

    #[test]
    fn a_mangled_checkpoint_is_refused_or_restored_but_never_panics(
        config in config(),
        steps in prop::collection::vec(step(), 1..80),
        at in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), edit()), 1..4),
        more in prop::collection::vec(step(), 0..40),
    ) {
        let at = at.index(steps.len());
        let mut driver = Driver::new(config.clone());
        for step in &steps[..at] {
            for input in driver.inputs(step) {
                let _ = driver.feed(&input);
            }
        }
        let mut json = serde_json::to_value(driver.chat.checkpoint()).expect("serialises");
        for (place, edit) in &edits {
            mangle(&mut json, place, edit);
        }
        // Whatever it is now, it either does not parse, is refused, or runs.
        let Ok(checkpoint) = serde_json::from_value::<Checkpoint>(json) else { return Ok(()) };
        let Ok(mut chat) = Chat::from_checkpoint(config, checkpoint) else { return Ok(()) };
        for step in steps[at..].iter().chain(&more) {
            for input in driver.inputs(step) {
                let now = driver.now;
                let _ = driver.feed(&input);
                let _ = feed(&mut chat, &input, now);
            }
        }
        let _ = chat.checkpoint();
    }
}

// ---- moments that matter ------------------------------------------------------------------

/// Feeds `inputs` at `now`; returns every output.
fn run(chat: &mut Chat, inputs: impl IntoIterator<Item = Input>, now: Now) -> Vec<Output> {
    let mut outputs = Vec::new();
    for input in inputs {
        let (result, more) = feed(chat, &input, now);
        result.expect("the test feeds a consistent runtime's inputs");
        outputs.extend(more);
    }
    outputs
}

/// Restores a replica of `chat` and feeds both `inputs` at `now`: their outputs (returned) and
/// their next deadlines must be the same, and so must their states after.
fn go_on_alike(chat: &mut Chat, inputs: Vec<Input>, now: Now) -> Vec<Output> {
    let mut replica = replica(chat).expect("a checkpoint restores");
    assert_eq!(replica.poll_timeout(), chat.poll_timeout());
    let ours = run(chat, inputs.clone(), now);
    let theirs = run(&mut replica, inputs, now);
    assert_eq!(theirs, ours);
    assert_eq!(replica.poll_timeout(), chat.poll_timeout());
    assert_eq!(replica.checkpoint(), chat.checkpoint());
    ours
}

fn frame(conn: u64, command: Command) -> Input {
    Input::Command {
        conn: ConnectionId(conn),
        command,
        reference: Some(Ref::number(conn)),
    }
}

fn say(conn: u64, room: &str, text: &str) -> Input {
    let say = Command::Say {
        room: room.into(),
        text: text.into(),
    };
    frame(conn, say)
}

fn name(name: &str) -> UserName {
    UserName::parse(name).expect("a valid name")
}

/// The events of `outputs` for `conn` (sent to it or broadcast to it).
fn events_for(outputs: &[Output], conn: u64) -> Vec<Event> {
    let conn = ConnectionId(conn);
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { to, event, .. } if *to == conn => Some((**event).clone()),
            Output::Broadcast { to, except, event }
                if to.as_slice().contains(&conn) && *except != Some(conn) =>
            {
                Some((**event).clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_replica_taken_while_a_login_is_checked_answers_the_commands_that_wait_for_it() {
    let now = start();
    let mut chat = Chat::new(Config::default());
    let outputs = run(
        &mut chat,
        [
            Input::Connect(ConnectionId(1)),
            frame(1, sim::Sim::token_login("Alice")),
            frame(1, Command::join("rust")),
            say(1, "rust", "sent while checked"),
        ],
        now,
    );
    assert!(matches!(outputs.as_slice(), [Output::Authenticate { .. }]));
    let answer = Input::Authenticated {
        conn: ConnectionId(1),
        outcome: Ok(Identity::Account(name("Alice"))),
    };
    let outputs = go_on_alike(&mut chat, vec![answer], now);
    let kinds: Vec<&str> = events_for(&outputs, 1).iter().map(Event::kind).collect();
    assert_eq!(kinds, ["welcome", "joined", "joined", "message"]);
}

#[test]
fn a_replica_of_a_room_past_its_history_knows_what_it_let_go_of() {
    let now = start();
    let config = Config {
        history: 3,
        ..Config::default()
    };
    let mut chat = Chat::new(config);
    let mut inputs = vec![
        Input::Connect(ConnectionId(1)),
        frame(1, Command::login("alice")),
    ];
    inputs.extend((0..5).map(|i| say(1, "general", &format!("message {i}"))));
    run(&mut chat, inputs, now);
    let outputs = go_on_alike(
        &mut chat,
        vec![
            // Memory holds 3, 4 and 5: a page of four, or of anything before 3, is the store's.
            frame(1, Command::room_history("general", None, Some(4))),
            frame(1, Command::room_history("general", Some(4), Some(1))),
            frame(1, Command::room_history("general", Some(3), Some(1))),
            Input::Connect(ConnectionId(2)),
            frame(
                2,
                Command::Login {
                    name: Some("bob".into()),
                    password: None,
                    token: None,
                    since: Some(1),
                },
            ),
        ],
        now,
    );
    let fetches = outputs
        .iter()
        .filter(|o| matches!(o, Output::FetchHistory(_)))
        .count();
    assert_eq!(fetches, 2);
    let resumed = events_for(&outputs, 2).into_iter().find_map(|e| match e {
        Event::Joined { complete, .. } => Some(complete),
        _ => None,
    });
    assert_eq!(resumed, Some(Some(false)), "message 2 left memory");
}

#[test]
fn a_replica_delivers_the_same_mailboxes_once() {
    let now = start();
    let config = Config {
        mailbox: 2,
        ..Config::default()
    };
    let mut chat = Chat::new(config);
    let dm = |text: &str| {
        let dm = Command::Dm {
            to: "bob".into(),
            text: text.into(),
        };
        frame(2, dm)
    };
    run(
        &mut chat,
        [
            Input::Connect(ConnectionId(1)),
            frame(1, sim::Sim::token_login("Bob")),
            Input::Authenticated {
                conn: ConnectionId(1),
                outcome: Ok(Identity::Account(name("Bob"))),
            },
            Input::Disconnect(ConnectionId(1)),
            Input::Connect(ConnectionId(2)),
            frame(2, Command::login("alice")),
            dm("one"),
            dm("two"),
        ],
        now,
    );
    assert_eq!(chat.queued_total(), 2);
    let outputs = go_on_alike(
        &mut chat,
        vec![
            // The mailbox is full, then delivered, then empty.
            dm("three"),
            Input::Connect(ConnectionId(3)),
            frame(3, sim::Sim::token_login("bob")),
            Input::Authenticated {
                conn: ConnectionId(3),
                outcome: Ok(Identity::Account(name("Bob"))),
            },
        ],
        now,
    );
    let delivered: Vec<String> = events_for(&outputs, 3)
        .into_iter()
        .filter_map(|e| match e {
            Event::Dm { message, .. } => Some(message.text.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, ["one", "two"]);
    assert_eq!(chat.queued_total(), 0);
}

#[test]
fn a_replica_keeps_an_accounts_sessions_in_login_order() {
    let now = start();
    let mut chat = Chat::new(Config::default());
    let mut inputs = Vec::new();
    for conn in [3, 1, 2] {
        inputs.push(Input::Connect(ConnectionId(conn)));
        inputs.push(frame(conn, sim::Sim::token_login("alice")));
        inputs.push(Input::Authenticated {
            conn: ConnectionId(conn),
            outcome: Ok(Identity::Account(name("alice"))),
        });
    }
    inputs.push(Input::Connect(ConnectionId(4)));
    inputs.push(frame(4, Command::login("bob")));
    run(&mut chat, inputs, now);
    let key = name("alice").key();
    assert_eq!(chat.sessions(&key), [3, 1, 2].map(ConnectionId));
    let outputs = go_on_alike(
        &mut chat,
        vec![
            say(1, "general", "from the second session"),
            Input::Disconnect(ConnectionId(3)),
            say(4, "general", "to the sessions left"),
        ],
        now,
    );
    let recipients: Vec<Vec<ConnectionId>> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast { to, .. } => Some(to.as_slice().to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(
        recipients,
        [
            [3, 1, 2, 4].map(ConnectionId).to_vec(),
            [1, 2, 4].map(ConnectionId).to_vec()
        ]
    );
}

#[test]
fn a_replica_closes_a_connection_past_its_login_deadline_on_time() {
    let start = start();
    let later = |secs: u64| {
        let by = Duration::from_secs(secs);
        Now::new(start.wall.saturating_add(by), start.monotonic + by)
    };
    let mut chat = Chat::new(Config::default());
    run(&mut chat, [Input::Connect(ConnectionId(1))], start);
    run(&mut chat, [Input::Connect(ConnectionId(2))], later(30));
    // Connection 1 is past its deadline (60 s) and closing; 2 is not, yet.
    let closed = run(&mut chat, [Input::Tick], later(61));
    assert!(matches!(
        closed.as_slice(),
        [Output::Close {
            conn: ConnectionId(1),
            ..
        }]
    ));
    assert_eq!(chat.poll_timeout(), Some(later(90).monotonic));
    // A closing connection's frames are ignored, in both.
    let ignored = go_on_alike(&mut chat, vec![frame(1, Command::login("late"))], later(62));
    assert_eq!(ignored, []);
    let closed = go_on_alike(&mut chat, vec![Input::Tick], later(90));
    assert!(matches!(
        closed.as_slice(),
        [Output::Close {
            conn: ConnectionId(2),
            ..
        }]
    ));
}

// ---- broken checkpoints -------------------------------------------------------------------

/// The JSON of a checkpoint of a busy chat: three connections (1 logged in, 2 being checked with
/// a waiting frame, 3 not logged in), a room with history, a mailbox and DM logs.
fn busy_checkpoint() -> (Config, Value) {
    let now = start();
    let mut chat = Chat::new(Config::default());
    run(
        &mut chat,
        [
            Input::Connect(ConnectionId(9)),
            frame(9, sim::Sim::token_login("bob")),
            Input::Authenticated {
                conn: ConnectionId(9),
                outcome: Ok(Identity::Account(name("bob"))),
            },
            Input::Disconnect(ConnectionId(9)),
            Input::Connect(ConnectionId(1)),
            frame(1, sim::Sim::token_login("alice")),
            Input::Authenticated {
                conn: ConnectionId(1),
                outcome: Ok(Identity::Account(name("alice"))),
            },
            say(1, "general", "hello"),
            frame(
                1,
                Command::Dm {
                    to: "bob".into(),
                    text: "hi".into(),
                },
            ),
            Input::Connect(ConnectionId(2)),
            frame(2, sim::Sim::token_login("carol")),
            frame(2, Command::Rooms),
            Input::Connect(ConnectionId(3)),
        ],
        now,
    );
    let json = serde_json::to_value(chat.checkpoint()).expect("a checkpoint serialises");
    (chat.config().clone(), json)
}

fn restore(config: &Config, json: Value) -> Result<Chat, RestoreError> {
    let checkpoint: Checkpoint = serde_json::from_value(json).expect("still a checkpoint's shape");
    Chat::from_checkpoint(config.clone(), checkpoint)
}

/// The problem a broken checkpoint is refused for.
fn refused(config: &Config, json: Value) -> String {
    match restore(config, json) {
        Ok(_) => panic!("a broken checkpoint was restored"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_checkpoint_of_another_version_is_refused() {
    let (config, mut json) = busy_checkpoint();
    assert!(restore(&config, json.clone()).is_ok());
    json["version"] = 2.into();
    assert_eq!(
        restore(&config, json).err(),
        Some(RestoreError::CheckpointVersion {
            found: 2,
            supported: Checkpoint::VERSION
        })
    );
}

#[test]
fn a_checkpoint_that_contradicts_itself_is_refused_with_what_is_wrong() {
    let (config, json) = busy_checkpoint();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut json = json.clone();
        edit(&mut json);
        refused(&config, json)
    };
    let session_gone = broken(&|j| {
        let connections = j["connections"].as_array_mut().unwrap();
        connections.retain(|c| c["id"] != 1);
    });
    assert!(session_gone.contains("conn#1, a session of alice, is not a connection"));
    let twice = broken(&|j| j["users"][0]["sessions"] = serde_json::json!([1, 1]));
    assert!(
        twice.contains("conn#1 is a session of alice and of alice"),
        "{twice}"
    );
    let no_session = broken(&|j| j["users"][0]["sessions"] = serde_json::json!([]));
    assert!(no_session.contains("alice is online with no session"));
    let no_room = broken(&|j| {
        j["rooms"].as_object_mut().unwrap().remove("general");
    });
    assert!(no_room.contains("alice is in #general, which is not among the rooms"));
    let behind = broken(&|j| j["next_id"] = 2.into());
    assert!(
        behind.contains("holds message 2, but the next id to hand out is 2"),
        "{behind}"
    );
    let no_dm = broken(&|j| j["dm_logs"]["alice"]["messages"][0] = 7.into());
    assert!(
        no_dm.contains("the DM log of alice names DM number 7 of the 1"),
        "{no_dm}"
    );
    let unchecked = broken(&|j| j["checking"][0]["conn"] = 8.into());
    assert!(
        unchecked.contains("the login of conn#8 is being checked"),
        "{unchecked}"
    );
    let order = broken(&|j| {
        let messages = j["rooms"]["general"]["messages"].as_array_mut().unwrap();
        messages.push(messages[0].clone());
    });
    assert!(
        order.contains("not in strictly increasing id order"),
        "{order}"
    );
}

/// A change to one place of a checkpoint's JSON, chosen among the places of its kind.
#[derive(Clone, Debug)]
enum Edit {
    /// A number becomes this one.
    Number(u64),
    /// A boolean flips.
    Flip,
    /// A string becomes this one.
    Text(&'static str),
    /// An array loses an element.
    Remove,
    /// An array element appears twice in a row.
    Duplicate,
    /// An array element swaps with the next one.
    Swap,
    /// An object loses an entry.
    Forget,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..12u64).prop_map(Edit::Number),
        1 => Just(Edit::Number(u64::MAX)),
        1 => Just(Edit::Flip),
        2 => prop::sample::select(&NAMES[..]).prop_map(Edit::Text),
        1 => Just(Edit::Text("rust")),
        2 => Just(Edit::Remove),
        1 => Just(Edit::Duplicate),
        1 => Just(Edit::Swap),
        2 => Just(Edit::Forget),
    ]
}

/// The JSON pointers of every place in `value`, with whether each is a number, a boolean, a
/// string, a non-empty array or a non-empty object.
fn places(value: &Value, at: String, out: &mut Vec<(String, &'static str)>) {
    let kind = match value {
        Value::Null => return,
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                places(item, format!("{at}/{i}"), out);
            }
            if items.is_empty() {
                return;
            }
            "array"
        }
        Value::Object(entries) => {
            for (key, item) in entries {
                let key = key.replace('~', "~0").replace('/', "~1");
                places(item, format!("{at}/{key}"), out);
            }
            if entries.is_empty() {
                return;
            }
            "object"
        }
    };
    out.push((at, kind));
}

/// Applies `edit` at the `place`-th place of its kind in `json`, if there is one.
fn mangle(json: &mut Value, place: &Index, edit: &Edit) {
    let wanted = match edit {
        Edit::Number(_) => "number",
        Edit::Flip => "bool",
        Edit::Text(_) => "string",
        Edit::Remove | Edit::Duplicate | Edit::Swap => "array",
        Edit::Forget => "object",
    };
    let mut all = Vec::new();
    places(json, String::new(), &mut all);
    let candidates: Vec<&String> = all
        .iter()
        .filter(|(_, kind)| *kind == wanted)
        .map(|(at, _)| at)
        .collect();
    if candidates.is_empty() {
        return;
    }
    let at = candidates[place.index(candidates.len())];
    let value = json.pointer_mut(at).expect("a place just found");
    let pick = |len: usize| place.index(len);
    match (edit, value) {
        (Edit::Number(n), value) => *value = (*n).into(),
        (Edit::Flip, Value::Bool(b)) => *b = !*b,
        (Edit::Text(text), value) => *value = (*text).into(),
        (Edit::Remove, Value::Array(items)) => {
            items.remove(pick(items.len()));
        }
        (Edit::Duplicate, Value::Array(items)) => {
            let i = pick(items.len());
            items.insert(i, items[i].clone());
        }
        (Edit::Swap, Value::Array(items)) => {
            let i = pick(items.len());
            let next = (i + 1) % items.len();
            items.swap(i, next);
        }
        (Edit::Forget, Value::Object(entries)) => {
            let key = entries.keys().nth(pick(entries.len())).cloned();
            if let Some(key) = key {
                entries.remove(&key);
            }
        }
        _ => unreachable!("the place is of the edit's kind"),
    }
}
