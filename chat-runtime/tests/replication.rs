//! Several runtimes as one chat (the replica mode): nodes in one process over an in-process
//! log, and in-process clients on each node. Every test asserts on what the clients receive.

mod tokens;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chat_core::{
    Chat, Command, Config, ErrorCode, Event, Input, MessageId, PresenceChange, Ref, Secret,
    SendKind, Timestamp,
};
use chat_runtime::{
    Authenticator, Closing, Delivery, GuestsOnly, Handle, InputLog, LocalConnection, LogError,
    NodeId, Outgoing, Replay, Replication, Runtime, RuntimeConfig,
};
use chat_store::MemoryStore;
use tokens::{Tokens, password_login, token_login};
use tokio::sync::{Mutex, mpsc, watch};

/// How long a test waits for what it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// The cluster's log, in process. An append takes the next entry (stamped with the wall clock,
/// never earlier than the entry before) and hands it to every node, all under one lock, so every
/// node replays every entry in one order. It can be told to refuse appends, as a log that cannot
/// be reached does, and to declare a node gone.
struct TestLog {
    state: Mutex<LogState>,
    /// How many appends were refused so far.
    refused: watch::Sender<usize>,
}

struct LogState {
    /// The time of the last entry.
    last: Timestamp,
    /// Every node's replay channel, in the order the nodes subscribed.
    nodes: Vec<mpsc::Sender<Replay>>,
    refusing: bool,
    /// Every input appended, as JSON (what a real log would hold).
    held: Vec<String>,
}

impl TestLog {
    fn new() -> Arc<TestLog> {
        Arc::new(TestLog {
            state: Mutex::new(LogState {
                last: Timestamp::EPOCH,
                nodes: Vec::new(),
                refusing: false,
                held: Vec::new(),
            }),
            refused: watch::Sender::new(0),
        })
    }

    /// A new node's replay channel: it receives every entry appended from now on.
    async fn subscribe(&self) -> mpsc::Receiver<Replay> {
        let (sender, receiver) = mpsc::channel(1024);
        self.state.lock().await.nodes.push(sender);
        receiver
    }

    /// Makes appends fail with [`LogError::Unreachable`] (`true`) or succeed again (`false`).
    async fn refuse(&self, refusing: bool) {
        self.state.lock().await.refusing = refusing;
    }

    /// How many appends were refused so far.
    fn refusals(&self) -> usize {
        *self.refused.borrow()
    }

    /// Waits until at least `count` appends were refused.
    async fn refused_at_least(&self, count: usize) {
        let mut refused = self.refused.subscribe();
        tokio::time::timeout(PATIENCE, refused.wait_for(|n| *n >= count))
            .await
            .expect("the log was not asked to append")
            .unwrap();
    }

    /// Declares `node` gone to every node (as the cluster does with a node that stopped).
    async fn node_gone(&self, node: NodeId) {
        self.publish(|at| Replay::NodeGone { node, at }).await;
    }

    /// Stamps the next entry and hands it to every node, all under the lock.
    async fn publish(&self, entry: impl Fn(Timestamp) -> Replay) {
        let mut state = self.state.lock().await;
        Self::deliver(&mut state, entry).await;
    }

    async fn deliver(state: &mut LogState, entry: impl Fn(Timestamp) -> Replay) {
        let now = Timestamp::from_system_time(SystemTime::now());
        let at = now.max(state.last);
        state.last = at;
        for node in &state.nodes {
            // A node that stopped has dropped its receiver: it misses nothing it could use.
            let _ = node.send(entry(at)).await;
        }
    }
}

#[async_trait]
impl InputLog for TestLog {
    async fn append(&self, node: NodeId, inputs: &[Input]) -> Result<(), LogError> {
        let mut state = self.state.lock().await;
        if state.refusing {
            self.refused.send_modify(|n| *n += 1);
            return Err(LogError::Unreachable("the test log refuses appends".into()));
        }
        for input in inputs {
            let json = serde_json::to_string(input).expect("inputs serialise");
            state.held.push(json);
        }
        let entry = |at| Replay::Inputs {
            node,
            at,
            inputs: inputs.to_vec(),
        };
        Self::deliver(&mut state, entry).await;
        Ok(())
    }
}

/// Nodes 1..=n of one chat, each with its own store (every node stores every record).
struct Cluster {
    log: Arc<TestLog>,
    nodes: Vec<Option<Runtime>>,
}

async fn cluster(n: u32, chat: Config, authenticator: Arc<dyn Authenticator>) -> Cluster {
    let log = TestLog::new();
    let mut nodes = Vec::new();
    for node in 1..=n {
        let replication = Replication {
            node: NodeId(node),
            log: log.clone(),
            replay: log.subscribe().await,
        };
        nodes.push(Some(Runtime::replica(
            Chat::new(chat.clone()),
            Arc::new(MemoryStore::new()),
            RuntimeConfig::default(),
            authenticator.clone(),
            replication,
        )));
    }
    Cluster { log, nodes }
}

/// A cluster of guests.
async fn guests(n: u32) -> Cluster {
    cluster(n, Config::default(), Arc::new(GuestsOnly)).await
}

impl Cluster {
    /// The handle of the `i`-th node (from 0; its [`NodeId`] is `i + 1`).
    fn handle(&self, i: usize) -> Handle {
        self.nodes[i]
            .as_ref()
            .expect("the node was stopped")
            .handle()
    }

    /// Stops the `i`-th node (its connections stay open on the client side: nothing of their
    /// end reaches the log, as when a node dies).
    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("the node was stopped");
        node.shutdown().await.unwrap();
    }

    async fn shutdown(self) {
        for node in self.nodes.into_iter().flatten() {
            node.shutdown().await.unwrap();
        }
    }
}

/// An in-process client, and what it received but did not look at yet.
struct Client {
    conn: LocalConnection,
    unread: VecDeque<Delivery>,
}

impl Client {
    async fn connect(handle: &Handle) -> Client {
        Client {
            conn: handle.connect_local().await.unwrap(),
            unread: VecDeque::new(),
        }
    }

    /// Sends `command` with the `ref` `reference`.
    async fn send(&self, command: Command, reference: u64) {
        let reference = Some(Ref::number(reference));
        self.conn.send(command, reference).await.unwrap();
    }

    /// The next delivery; fails the test after [`PATIENCE`] without one, or if the connection
    /// is closed.
    async fn next(&mut self) -> Delivery {
        while self.unread.is_empty() {
            let mut batch = Vec::new();
            let next = tokio::time::timeout(PATIENCE, self.conn.next(&mut batch)).await;
            match next.expect("nothing arrived in time") {
                Outgoing::Frames => self.unread.extend(batch),
                Outgoing::Close(reason) => panic!("the connection was closed: {reason:?}"),
            }
        }
        self.unread.pop_front().unwrap()
    }

    /// Skips deliveries until one matches; fails the test if none does within [`PATIENCE`].
    async fn until(&mut self, what: &str, matches: impl Fn(&Delivery) -> bool) -> Delivery {
        let wanted = async {
            loop {
                let delivery = self.next().await;
                if matches(&delivery) {
                    return delivery;
                }
            }
        };
        match tokio::time::timeout(PATIENCE, wanted).await {
            Ok(delivery) => delivery,
            Err(_) => panic!("no {what} arrived in time"),
        }
    }

    /// The answer to the frame with `ref` `reference`.
    async fn reply(&mut self, reference: u64) -> Delivery {
        let reference = Some(Ref::number(reference));
        self.until("reply", |d| d.reference == reference).await
    }

    /// The next `n` deliveries that answer this client's frames (they carry a `ref`).
    async fn replies(&mut self, n: usize) -> Vec<Delivery> {
        let mut replies = Vec::new();
        while replies.len() < n {
            replies.push(self.until("reply", |d| d.reference.is_some()).await);
        }
        replies
    }

    /// Waits until the runtime closes the connection; returns why.
    async fn closed(&mut self) -> Closing {
        let closed = async {
            loop {
                let mut batch = Vec::new();
                if let Outgoing::Close(reason) = self.conn.next(&mut batch).await {
                    return reason;
                }
            }
        };
        tokio::time::timeout(PATIENCE, closed)
            .await
            .expect("the connection was not closed in time")
    }
}

/// Connects to `handle` and logs in as `name` (with `ref` 0); returns once welcomed.
async fn login(handle: &Handle, name: &str) -> Client {
    let mut client = Client::connect(handle).await;
    client.send(Command::login(name), 0).await;
    let welcome = client.reply(0).await;
    assert!(
        matches!(&*welcome.event, Event::Welcome { .. }),
        "{name} was not welcomed: {welcome:?}"
    );
    client
}

fn say(room: &str, text: &str) -> Command {
    Command::Say {
        room: room.into(),
        text: text.into(),
    }
}

fn join(room: &str) -> Command {
    Command::Join {
        room: room.into(),
        since: None,
    }
}

fn who(room: &str) -> Command {
    Command::Who { room: room.into() }
}

fn dm(to: &str, text: &str) -> Command {
    Command::Dm {
        to: to.into(),
        text: text.into(),
    }
}

/// Whether `delivery` tells that `user` joined or left `room`.
fn presence(delivery: &Delivery, room: &str, user: &str, change: PresenceChange) -> bool {
    matches!(
        &*delivery.event,
        Event::Presence { room: r, user: u, event }
            if r.as_str() == room && u.as_str() == user && *event == change
    )
}

/// The id, sender and text of a room message.
fn message(delivery: &Delivery) -> Option<(MessageId, String, String)> {
    match &*delivery.event {
        Event::Message(m) => Some((m.id, m.from.to_string(), m.text.as_str().to_owned())),
        _ => None,
    }
}

/// The error code of an `error` event.
fn error(delivery: &Delivery) -> Option<ErrorCode> {
    match &*delivery.event {
        Event::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// The members listed by a `who` or `joined` event.
fn members(delivery: &Delivery) -> Vec<String> {
    match &*delivery.event {
        Event::Who { members, .. } | Event::Joined { members, .. } => {
            members.iter().map(|m| m.as_str().to_owned()).collect()
        }
        other => panic!("not a member list: {other:?}"),
    }
}

/// The next `n` room messages `client` sees.
async fn messages(client: &mut Client, n: usize) -> Vec<(MessageId, String, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let delivery = client.until("message", |d| message(d).is_some()).await;
        seen.push(message(&delivery).unwrap());
    }
    seen
}

#[tokio::test]
async fn users_on_two_nodes_see_each_others_presence_and_the_same_messages() {
    let cluster = guests(2).await;
    let mut alice = login(&cluster.handle(0), "alice").await;
    let mut bob = login(&cluster.handle(1), "bob").await;
    alice
        .until("bob's join", |d| {
            presence(d, "general", "bob", PresenceChange::Join)
        })
        .await;

    // Bob joins `rust` first, so it is his turn to see Alice come in.
    bob.send(join("rust"), 1).await;
    assert_eq!(members(&bob.reply(1).await), ["bob"]);
    alice.send(join("rust"), 1).await;
    assert_eq!(members(&alice.reply(1).await), ["alice", "bob"]);
    bob.until("alice's join", |d| {
        presence(d, "rust", "alice", PresenceChange::Join)
    })
    .await;

    // Both speak at once: whatever order the log picks, both see that one.
    alice.send(say("rust", "one"), 2).await;
    bob.send(say("rust", "two"), 2).await;
    alice.send(say("rust", "three"), 3).await;
    let seen_by_alice = messages(&mut alice, 3).await;
    let seen_by_bob = messages(&mut bob, 3).await;
    assert_eq!(seen_by_alice, seen_by_bob);
    let ids: Vec<u64> = seen_by_alice.iter().map(|(id, ..)| id.get()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    let alices: Vec<&str> = seen_by_alice
        .iter()
        .filter(|(_, from, _)| from == "alice")
        .map(|(.., text)| text.as_str())
        .collect();
    assert_eq!(alices, ["one", "three"]);

    // Each node answers `who` from its own replica: both list both.
    alice.send(who("rust"), 4).await;
    bob.send(who("rust"), 4).await;
    assert_eq!(members(&alice.reply(4).await), ["alice", "bob"]);
    assert_eq!(members(&bob.reply(4).await), ["alice", "bob"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_a_guest_name_give_it_to_exactly_one() {
    let cluster = guests(2).await;
    let mut watchers = [
        login(&cluster.handle(0), "watcher1").await,
        login(&cluster.handle(1), "watcher2").await,
    ];
    for round in 1..=5u64 {
        let mut first = Client::connect(&cluster.handle(0)).await;
        let mut second = Client::connect(&cluster.handle(1)).await;
        let (lower, upper) = (format!("sam{round}"), format!("SAM{round}"));
        tokio::join!(
            first.send(Command::login(&lower), 1),
            second.send(Command::login(&upper), 1),
        );
        let outcomes = [first.reply(1).await, second.reply(1).await];
        let welcomed: Vec<usize> = (0..2)
            .filter(|i| matches!(&*outcomes[*i].event, Event::Welcome { .. }))
            .collect();
        let refused: Vec<usize> = (0..2)
            .filter(|i| error(&outcomes[*i]) == Some(ErrorCode::NameTaken))
            .collect();
        assert_eq!(welcomed.len(), 1, "round {round}: {outcomes:?}");
        assert_eq!(refused.len(), 1, "round {round}: {outcomes:?}");

        // Both replicas gave the name to the same connection.
        let winner = [&lower, &upper][welcomed[0]];
        for watcher in &mut watchers {
            watcher.send(who("general"), round).await;
            let listed = members(&watcher.reply(round).await);
            let sams: Vec<&String> = listed
                .iter()
                .filter(|m| m.eq_ignore_ascii_case(winner))
                .collect();
            assert_eq!(sams, [winner], "round {round}");
        }
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn dms_cross_nodes_online_and_wait_in_the_mailbox_for_a_login_on_a_third_node() {
    // Every login is an account's, so a DM to a name that is offline is kept.
    let (chat, tokens) = tokens::vouching(Config::default());
    let cluster = cluster(3, chat, Arc::new(tokens)).await;
    let mut alice = login(&cluster.handle(0), "alice").await;
    let mut bob = login(&cluster.handle(1), "bob").await;

    alice.send(dm("bob", "hello bob"), 1).await;
    let echo = alice.reply(1).await;
    let received = bob
        .until("a dm", |d| matches!(&*d.event, Event::Dm { .. }))
        .await;
    assert_eq!(echo.kind, SendKind::Echo);
    assert_eq!(received.kind, SendKind::Push);
    match (&*echo.event, &*received.event) {
        (Event::Dm { message: sent, .. }, Event::Dm { message: got, .. }) => {
            assert_eq!(sent, got);
            assert_eq!(got.from.as_str(), "alice");
            assert_eq!(got.text.as_str(), "hello bob");
        }
        other => panic!("not two dms: {other:?}"),
    }

    bob.send(dm("alice", "hello alice"), 1).await;
    let got = alice.until("a dm", |d| d.kind == SendKind::Push).await;
    match &*got.event {
        Event::Dm { message, .. } => assert_eq!(message.text.as_str(), "hello alice"),
        other => panic!("not a dm: {other:?}"),
    }

    // Carol has never logged in anywhere: the DM waits for her.
    alice.send(dm("carol", "for later"), 2).await;
    let queued = alice.reply(2).await;
    let Event::Dm {
        message: kept,
        queued: true,
        ..
    } = &*queued.event
    else {
        panic!("not queued: {queued:?}");
    };
    let mut carol = login(&cluster.handle(2), "carol").await;
    let delivered = carol
        .until("the queued dm", |d| matches!(&*d.event, Event::Dm { .. }))
        .await;
    match &*delivered.event {
        Event::Dm { message, .. } => assert_eq!(message, kept),
        other => panic!("not a dm: {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_guest_leaving_one_node_is_seen_leaving_on_another() {
    let cluster = guests(2).await;
    let alice = login(&cluster.handle(0), "alice").await;
    let mut bob = Client::connect(&cluster.handle(1)).await;
    bob.send(Command::login("bob"), 1).await;
    let joined = bob
        .until("joined", |d| matches!(&*d.event, Event::Joined { .. }))
        .await;
    assert_eq!(members(&joined), ["alice", "bob"]);

    drop(alice);
    bob.until("alice's leave", |d| {
        presence(d, "general", "alice", PresenceChange::Leave)
    })
    .await;
    bob.send(who("general"), 2).await;
    assert_eq!(members(&bob.reply(2).await), ["bob"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_node_declared_gone_takes_its_users_with_it_and_frees_their_names() {
    let mut cluster = guests(2).await;
    let alice = login(&cluster.handle(0), "alice").await;
    let carol = login(&cluster.handle(0), "carol").await;
    let mut bob = login(&cluster.handle(1), "bob").await;

    let mut another_alice = Client::connect(&cluster.handle(1)).await;
    another_alice.send(Command::login("alice"), 1).await;
    let refused = another_alice.reply(1).await;
    assert_eq!(error(&refused), Some(ErrorCode::NameTaken));

    // Node 1 dies: nothing of its connections' end reaches the log, until the cluster says so.
    cluster.stop(0).await;
    cluster.log.node_gone(NodeId(1)).await;
    bob.until("alice's leave", |d| {
        presence(d, "general", "alice", PresenceChange::Leave)
    })
    .await;
    bob.until("carol's leave", |d| {
        presence(d, "general", "carol", PresenceChange::Leave)
    })
    .await;
    another_alice.send(Command::login("alice"), 2).await;
    let welcome = another_alice.reply(2).await;
    assert!(
        matches!(&*welcome.event, Event::Welcome { .. }),
        "{welcome:?}"
    );
    drop((alice, carol));
    cluster.shutdown().await;
}

#[tokio::test]
async fn while_the_log_refuses_commands_are_unavailable_reads_are_local_and_leaves_wait() {
    let cluster = guests(2).await;
    let mut alice = login(&cluster.handle(0), "alice").await;
    let mut bob = login(&cluster.handle(1), "bob").await;
    let dave = login(&cluster.handle(0), "dave").await;
    bob.until("dave's join", |d| {
        presence(d, "general", "dave", PresenceChange::Join)
    })
    .await;

    cluster.log.refuse(true).await;
    alice.send(say("general", "lost"), 1).await;
    let refused = alice.reply(1).await;
    assert_eq!(error(&refused), Some(ErrorCode::Unavailable));
    assert_eq!(refused.kind, SendKind::Reply);
    alice.send(Command::Ping, 2).await;
    assert_eq!(*alice.reply(2).await.event, Event::Pong);
    alice.send(who("general"), 3).await;
    assert_eq!(members(&alice.reply(3).await), ["alice", "bob", "dave"]);

    // Dave goes while the log cannot hear of it: his leave is kept for later.
    let refusals = cluster.log.refusals();
    drop(dave);
    cluster.log.refused_at_least(refusals + 1).await;

    cluster.log.refuse(false).await;
    alice.send(say("general", "back"), 4).await;
    let echo = alice.reply(4).await;
    assert_eq!(message(&echo).unwrap().2, "back");
    let mut dave_left = false;
    loop {
        let delivery = bob.next().await;
        dave_left |= presence(&delivery, "general", "dave", PresenceChange::Leave);
        if let Some((_, _, text)) = message(&delivery) {
            assert_eq!(text, "back", "a refused message reached bob");
            break;
        }
    }
    assert!(dave_left, "bob saw alice's message before dave's leave");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_clients_answers_keep_the_order_of_its_frames() {
    let cluster = guests(2).await;
    let mut alice = login(&cluster.handle(0), "alice").await;
    let _bob = login(&cluster.handle(1), "bob").await;

    // A write goes through the log, a read is answered here: the read still waits its turn.
    for round in 0..20 {
        let (said, pinged) = (2 * round + 1, 2 * round + 2);
        alice.send(say("general", &format!("{round}")), said).await;
        alice.send(Command::Ping, pinged).await;
        let replies = alice.replies(2).await;
        assert_eq!(replies[0].reference, Some(Ref::number(said)));
        assert!(message(&replies[0]).is_some(), "{:?}", replies[0]);
        assert_eq!(replies[1].reference, Some(Ref::number(pinged)));
        assert_eq!(*replies[1].event, Event::Pong);
    }

    // And a client reads its own writes.
    alice.send(join("rust"), 100).await;
    alice.send(who("rust"), 101).await;
    let replies = alice.replies(2).await;
    assert!(matches!(&*replies[0].event, Event::Joined { .. }));
    assert_eq!(members(&replies[1]), ["alice"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn frames_sent_right_after_connecting_are_answered() {
    let cluster = guests(2).await;
    for round in 0..10 {
        // The connect is still on its way through the log when these arrive.
        let mut client = Client::connect(&cluster.handle(round % 2)).await;
        client.send(Command::Ping, 1).await;
        client.send(who("general"), 2).await;
        let replies = client.replies(2).await;
        assert_eq!(*replies[0].event, Event::Pong, "round {round}");
        assert_eq!(error(&replies[1]), Some(ErrorCode::NotLoggedIn));
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_read_behind_a_checked_login_is_answered_after_it() {
    let tokens = Arc::new(Tokens::gated());
    let cluster = cluster(2, Config::default(), tokens.clone()).await;
    let mut erin = Client::connect(&cluster.handle(0)).await;
    erin.send(token_login("erin"), 1).await;
    // The login is back from the log and with the authenticator; the next frames wait for it.
    let checking = async {
        while tokens.calls() == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(PATIENCE, checking).await.unwrap();
    erin.send(Command::Ping, 2).await;
    erin.send(who("general"), 3).await;
    tokens.gate.as_ref().unwrap().add_permits(1);
    let replies = erin.replies(3).await;
    assert!(
        matches!(&*replies[0].event, Event::Welcome { account: true, .. }),
        "{:?}",
        replies[0]
    );
    assert_eq!(*replies[1].event, Event::Pong);
    assert_eq!(members(&replies[2]), ["erin"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed_by_the_cluster() {
    let chat = Config {
        login_timeout: Some(Duration::from_millis(50)),
        ..Config::default()
    };
    let cluster = cluster(2, chat, Arc::new(GuestsOnly)).await;
    let mut lurker = Client::connect(&cluster.handle(1)).await;
    assert_eq!(lurker.closed().await, Closing::LoginTimeout);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_login_deadline_that_passed_while_the_log_refused_is_kept_once_it_is_back() {
    let chat = Config {
        login_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let cluster = cluster(2, chat, Arc::new(GuestsOnly)).await;
    let mut lurker = Client::connect(&cluster.handle(1)).await;
    // Its pong went through the log after its connect: every node knows its deadline.
    lurker.send(Command::Ping, 1).await;
    assert_eq!(*lurker.reply(1).await.event, Event::Pong);

    // Each node asks the log for a tick when the deadline passes, and is refused.
    let refusals = cluster.log.refusals();
    cluster.log.refuse(true).await;
    cluster.log.refused_at_least(refusals + 2).await;
    cluster.log.refuse(false).await;
    assert_eq!(lurker.closed().await, Closing::LoginTimeout);
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_log_holds_no_password_and_no_token() {
    let tokens = Tokens {
        registers: true,
        ..Tokens::default()
    };
    let cluster = cluster(2, Config::default(), Arc::new(tokens)).await;
    let mut dana = Client::connect(&cluster.handle(0)).await;
    dana.send(password_login("dana", "pw:dana"), 1).await;
    assert!(matches!(&*dana.reply(1).await.event, Event::Welcome { .. }));
    let mut eve = Client::connect(&cluster.handle(1)).await;
    eve.send(token_login("eve"), 1).await;
    assert!(matches!(&*eve.reply(1).await.event, Event::Welcome { .. }));
    let mut guest = login(&cluster.handle(1), "frank").await;
    let register = Command::Register {
        password: Secret::new("a secret of frank's"),
    };
    guest.send(register, 7).await;
    assert!(matches!(
        &*guest.reply(7).await.event,
        Event::Registered { .. }
    ));

    let held = cluster.log.state.lock().await.held.join("\n");
    for secret in ["pw:dana", "token:eve", "a secret of frank's"] {
        assert!(!held.contains(secret), "{secret:?} is in the log:\n{held}");
    }
    assert!(held.contains("dana") && held.contains("frank"), "{held}");
    cluster.shutdown().await;
}
