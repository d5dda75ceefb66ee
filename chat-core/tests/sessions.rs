//! Several sessions of one account: rooms and presence belong to the user, every session gets
//! what the user gets, and what one session does reaches the others as a copy without `ref`.

mod sim;

use chat_core::{
    Command, Config, ConnectionId, Event, PresenceChange, Ref, RoomName, Secret, SendKind, UserName,
};
use sim::Sim;

/// One delivery in short: what it is, its kind, and its `ref` if any.
type Got = (String, SendKind, Option<Ref>);

fn summary(event: &Event) -> String {
    let names = |names: &[UserName]| {
        names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let rooms = |rooms: &[RoomName]| {
        rooms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match event {
        Event::Welcome {
            name,
            rooms: r,
            account,
        } => format!("welcome {name} [{}] account={account}", rooms(r)),
        Event::Joined {
            room,
            members,
            history,
            ..
        } => format!(
            "joined #{room} [{}] history={}",
            names(members),
            history.len()
        ),
        Event::Left { room } => format!("left #{room}"),
        Event::Presence { room, user, event } => {
            let verb = match event {
                PresenceChange::Join => "join",
                PresenceChange::Leave => "leave",
            };
            format!("{verb} #{room} {user}")
        }
        Event::Message(m) => format!("#{} <{}> {}", m.room, m.from, m.text),
        Event::Dm {
            message, queued, ..
        } => format!(
            "dm {}->{} {} queued={queued}",
            message.from, message.to, message.text
        ),
        Event::Who { room, members } => format!("who #{room} [{}]", names(members)),
        Event::Rooms { rooms } => rooms
            .iter()
            .map(|r| format!("#{}={}", r.room, r.members))
            .collect::<Vec<_>>()
            .join(" "),
        Event::Error { code, .. } => format!("error {}", code.as_str()),
        other => format!("{other:?}"),
    }
}

fn got(sim: &mut Sim, conn: ConnectionId) -> Vec<Got> {
    sim.take(conn)
        .into_iter()
        .map(|r| (summary(&r.event), r.kind, r.reference))
        .collect()
}

fn r(n: u64) -> Ref {
    Ref::number(n)
}

fn g(what: &str, kind: SendKind, reference: Option<u64>) -> Got {
    (what.to_owned(), kind, reference.map(Ref::number))
}

fn join(room: &str) -> Command {
    Command::join(room)
}

fn say(room: &str, text: &str) -> Command {
    Command::Say {
        room: room.into(),
        text: text.into(),
    }
}

fn dm(to: &str, text: &str) -> Command {
    Command::Dm {
        to: to.into(),
        text: text.into(),
    }
}

/// A later session of the account `name`, logged in with a token and `ref` 1; returns what it
/// received.
fn second_session(sim: &mut Sim, name: &str) -> (ConnectionId, Vec<Got>) {
    let conn = sim.connect();
    sim.command_with_ref(conn, Sim::token_login(name), r(1));
    let received = got(sim, conn);
    (conn, received)
}

#[test]
fn two_sessions_of_one_account_see_each_others_joins_messages_and_dms() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login_account("alice");
    let (a2, welcome) = second_session(&mut sim, "alice");
    assert_eq!(
        welcome,
        [
            g(
                "welcome alice [general] account=true",
                SendKind::Reply,
                Some(1)
            ),
            g("joined #general [alice] history=0", SendKind::Backlog, None),
        ]
    );
    assert_eq!(
        got(&mut sim, a1),
        [],
        "a later session tells nobody anything"
    );
    assert_eq!(
        sim.chat.sessions(&UserName::parse("alice").unwrap().key()),
        [a1, a2]
    );

    let bob = sim.login("bob");
    for alice in [a1, a2] {
        assert_eq!(
            got(&mut sim, alice),
            [g("join #general bob", SendKind::Push, None)]
        );
    }

    // A join in one session holds for both; the other gets a copy without ref.
    sim.command_with_ref(a1, join("rust"), r(2));
    assert_eq!(
        got(&mut sim, a1),
        [g(
            "joined #rust [alice] history=0",
            SendKind::Backlog,
            Some(2)
        )]
    );
    assert_eq!(
        got(&mut sim, a2),
        [g("joined #rust [alice] history=0", SendKind::Copy, None)]
    );
    // A join that changes nothing answers only the asking session.
    sim.command_with_ref(a2, join("RUST"), r(3));
    assert_eq!(
        got(&mut sim, a2),
        [g(
            "joined #rust [alice] history=0",
            SendKind::Backlog,
            Some(3)
        )]
    );
    assert_eq!(got(&mut sim, a1), []);
    assert_eq!(got(&mut sim, bob), []);

    sim.join(bob, "rust");
    let _ = got(&mut sim, bob);
    for alice in [a1, a2] {
        assert_eq!(
            got(&mut sim, alice),
            [g("join #rust bob", SendKind::Push, None)],
            "one presence per session, the user joined once"
        );
    }

    // A message reaches every session; only the sending one gets the ref.
    let broadcasts = sim.broadcasts;
    sim.command_with_ref(a1, say("rust", "hi"), r(4));
    assert_eq!(
        sim.broadcasts,
        broadcasts + 1,
        "one broadcast for all sessions"
    );
    assert_eq!(
        got(&mut sim, a1),
        [g("#rust <alice> hi", SendKind::Echo, Some(4))]
    );
    assert_eq!(
        got(&mut sim, a2),
        [g("#rust <alice> hi", SendKind::Push, None)]
    );
    assert_eq!(
        got(&mut sim, bob),
        [g("#rust <alice> hi", SendKind::Push, None)]
    );

    // A DM to the user reaches every session.
    sim.command_with_ref(bob, dm("ALICE", "psst"), r(5));
    assert_eq!(
        got(&mut sim, bob),
        [g(
            "dm bob->ALICE psst queued=false",
            SendKind::Echo,
            Some(5)
        )]
    );
    for alice in [a1, a2] {
        assert_eq!(
            got(&mut sim, alice),
            [g("dm bob->ALICE psst queued=false", SendKind::Push, None)]
        );
    }

    // A DM the user sends: the other session gets a copy.
    sim.command_with_ref(a2, dm("bob", "back"), r(6));
    assert_eq!(
        got(&mut sim, a2),
        [g(
            "dm alice->bob back queued=false",
            SendKind::Echo,
            Some(6)
        )]
    );
    assert_eq!(
        got(&mut sim, a1),
        [g("dm alice->bob back queued=false", SendKind::Copy, None)]
    );
    assert_eq!(
        got(&mut sim, bob),
        [g("dm alice->bob back queued=false", SendKind::Push, None)]
    );

    // Users are counted and named once.
    sim.command(
        bob,
        Command::Who {
            room: "rust".into(),
        },
    );
    assert_eq!(got(&mut sim, bob)[0].0, "who #rust [alice,bob]");
    sim.command(bob, Command::Rooms);
    assert_eq!(got(&mut sim, bob)[0].0, "#general=2 #rust=2");

    // A leave in one session holds for both; the others see one presence.
    sim.command_with_ref(
        a2,
        Command::Leave {
            room: "rust".into(),
        },
        r(7),
    );
    assert_eq!(
        got(&mut sim, a2),
        [g("left #rust", SendKind::Reply, Some(7))]
    );
    assert_eq!(got(&mut sim, a1), [g("left #rust", SendKind::Copy, None)]);
    assert_eq!(
        got(&mut sim, bob),
        [g("leave #rust alice", SendKind::Push, None)]
    );
    sim.command_with_ref(a1, say("rust", "still here?"), r(8));
    assert_eq!(
        got(&mut sim, a1),
        [g("error not_in_room", SendKind::Reply, Some(8))]
    );
}

#[test]
fn killing_one_session_leaves_presence_unchanged_and_the_last_one_emits_one_leave() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login_account("alice");
    let (a2, _) = second_session(&mut sim, "alice");
    let (a3, _) = second_session(&mut sim, "alice");
    let bob = sim.login("bob");
    sim.quiet();

    sim.disconnect(a1);
    assert_eq!(got(&mut sim, bob), []);
    assert_eq!(got(&mut sim, a2), []);
    assert_eq!(got(&mut sim, a3), []);
    assert_eq!(
        sim.chat.members(&RoomName::parse("general").unwrap()).len(),
        2
    );
    assert_eq!(sim.chat.online_count(), 2);

    sim.say(bob, "general", "still there?");
    let _ = got(&mut sim, bob);
    assert_eq!(sim.texts(a2), ["bob: still there?"]);
    assert_eq!(sim.texts(a3), ["bob: still there?"]);

    sim.disconnect(a2);
    assert_eq!(got(&mut sim, bob), []);
    sim.disconnect(a3);
    assert_eq!(
        got(&mut sim, bob),
        [g("leave #general alice", SendKind::Push, None)],
        "one leave when the last session ends"
    );
    assert_eq!(sim.chat.online_count(), 1);
    assert_eq!(
        sim.chat.sessions(&UserName::parse("alice").unwrap().key()),
        []
    );

    // The account logs in afresh: a first session again, with presence.
    let again = sim.login_account("alice");
    assert_eq!(
        got(&mut sim, bob),
        [g("join #general alice", SendKind::Push, None)]
    );
    assert_eq!(
        sim.chat.sessions(&UserName::parse("alice").unwrap().key()),
        [again]
    );
}

#[test]
fn a_later_session_gets_the_users_rooms_sorted_and_tells_nobody() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login_account("alice");
    let bob = sim.login("bob");
    sim.join(a1, "zeta");
    sim.join(a1, "ada");
    sim.say(a1, "zeta", "one");
    sim.quiet();
    let (_, welcome) = second_session(&mut sim, "ALICE");
    assert_eq!(
        welcome,
        [
            g(
                "welcome alice [ada,general,zeta] account=true",
                SendKind::Reply,
                Some(1)
            ),
            g("joined #ada [alice] history=0", SendKind::Backlog, None),
            g(
                "joined #general [alice,bob] history=0",
                SendKind::Backlog,
                None
            ),
            g("joined #zeta [alice] history=1", SendKind::Backlog, None),
        ]
    );
    assert_eq!(got(&mut sim, bob), []);
    assert_eq!(got(&mut sim, a1), []);
}

#[test]
fn too_many_sessions_past_the_limit() {
    let config = Config {
        max_sessions: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let a1 = sim.login_account("alice");
    let _a2 = sim.login_account("alice");
    let (a3, refused) = second_session(&mut sim, "alice");
    assert_eq!(
        refused,
        [g("error too_many_sessions", SendKind::Reply, Some(1))]
    );
    assert_eq!(
        sim.chat
            .sessions(&UserName::parse("alice").unwrap().key())
            .len(),
        2
    );
    // The refused connection may try again once a session ends.
    sim.disconnect(a1);
    sim.command(a3, Sim::token_login("alice"));
    assert!(matches!(
        sim.events(a3).first(),
        Some(Event::Welcome { account: true, .. })
    ));
}

#[test]
fn a_guest_name_has_one_session() {
    let mut sim = Sim::new(Config::default());
    let _guest = sim.login("alice");
    let other = sim.connect();
    sim.command(other, Command::login("Alice"));
    assert_eq!(sim.error_code(other), chat_core::ErrorCode::NameTaken);
    // A token for the name a guest holds is refused too.
    sim.command(other, Sim::token_login("alice"));
    assert_eq!(sim.error_code(other), chat_core::ErrorCode::NameTaken);
    assert!(
        !sim.chat
            .is_account(&UserName::parse("alice").unwrap().key())
    );
}

#[test]
fn a_guest_that_registers_may_add_sessions_with_its_password() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login("alice");
    sim.command(
        a1,
        Command::Register {
            password: Secret::new("correct horse"),
        },
    );
    assert!(matches!(
        sim.events(a1).as_slice(),
        [Event::Registered { .. }]
    ));
    let a2 = sim.connect();
    sim.command(
        a2,
        Command::Login {
            since: None,
            name: Some("alice".into()),
            password: Some(Secret::new("correct horse")),
            token: None,
        },
    );
    assert_eq!(
        got(&mut sim, a2),
        [
            g(
                "welcome alice [general] account=true",
                SendKind::Reply,
                None
            ),
            g("joined #general [alice] history=0", SendKind::Backlog, None),
        ]
    );
    assert_eq!(
        sim.chat.sessions(&UserName::parse("alice").unwrap().key()),
        [a1, a2]
    );
}

#[test]
fn dms_to_an_offline_account_are_copied_to_the_senders_other_sessions_and_delivered_once() {
    let mut sim = Sim::new(Config::default());
    sim.make_account("bob");
    let a1 = sim.login_account("alice");
    let a2 = sim.login_account("alice");
    sim.command_with_ref(a1, dm("bob", "later"), r(9));
    assert_eq!(
        got(&mut sim, a1),
        [g(
            "dm alice->bob later queued=true",
            SendKind::Echo,
            Some(9)
        )]
    );
    assert_eq!(
        got(&mut sim, a2),
        [g("dm alice->bob later queued=false", SendKind::Copy, None)]
    );

    // Delivered at the login of bob's first session, not again at the second.
    let b1 = sim.connect();
    sim.command(b1, Sim::token_login("bob"));
    let first = got(&mut sim, b1);
    assert_eq!(
        first.last(),
        Some(&g(
            "dm alice->bob later queued=false",
            SendKind::Backlog,
            None
        ))
    );
    let (_, second) = second_session(&mut sim, "bob");
    assert!(second.iter().all(|(what, _, _)| !what.starts_with("dm ")));
    assert_eq!(
        sim.chat.mailbox_len(&UserName::parse("bob").unwrap().key()),
        0
    );
}

#[test]
fn a_dm_to_oneself_is_invalid_from_any_session_and_spelling() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login_account("alice");
    let a2 = sim.login_account("alice");
    sim.dm(a2, "ALICE", "me?");
    assert_eq!(sim.error_code(a2), chat_core::ErrorCode::InvalidTarget);
    assert_eq!(got(&mut sim, a1), []);
}

#[test]
fn the_recipient_set_is_rebuilt_only_when_membership_or_sessions_change() {
    let mut sim = Sim::new(Config::default());
    let a1 = sim.login_account("alice");
    let bob = sim.login("bob");
    let recipients = |sim: &mut Sim| {
        let before = sim.broadcasts;
        sim.say(bob, "general", "x");
        assert_eq!(sim.broadcasts, before + 1);
        let mut heard = 0;
        for conn in sim
            .chat
            .sessions(&UserName::parse("alice").unwrap().key())
            .to_vec()
        {
            heard += sim.texts(conn).len();
        }
        heard
    };
    sim.quiet();
    assert_eq!(recipients(&mut sim), 1);
    let a2 = sim.login_account("alice");
    assert_eq!(recipients(&mut sim), 2, "a new session is a new recipient");
    sim.disconnect(a1);
    assert_eq!(recipients(&mut sim), 1, "a gone session is no longer one");
    let _ = a2;
}
