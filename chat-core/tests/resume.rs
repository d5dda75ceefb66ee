//! Resume and DM history: a client that says the last id it saw (`since` on `login` or `join`)
//! gets exactly what it missed, with `complete` saying whether that is all of it; an account's
//! DMs are kept (both directions), paged with `history` and `with`, and replayed at a resume.

mod sim;

use chat_core::{
    Chat, Command, Config, DirectMessage, DmTail, ErrorCode, Event, HistoryOf, Record, Ref,
    SendKind, Snapshot, Text, Timestamp, UserName,
};
use sim::{Sim, id};

fn config() -> Config {
    Config {
        history: 8,
        resume_limit: 5,
        ..Config::default()
    }
}

/// The ids and `complete` of every `joined` frame `events` holds, by room.
fn joined(events: &[Event]) -> Vec<(String, Vec<u64>, Option<bool>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Joined {
                room,
                history,
                complete,
                ..
            } => Some((
                room.to_string(),
                history.iter().map(|m| m.id.get()).collect(),
                *complete,
            )),
            _ => None,
        })
        .collect()
}

/// The DMs in `events`: id, whether replayed.
fn dms(events: &[Event]) -> Vec<(u64, bool)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Dm {
                message, replay, ..
            } => Some((message.id.get(), *replay)),
            _ => None,
        })
        .collect()
}

fn login_since(name: &str, since: u64) -> Command {
    Command::Login {
        name: None,
        password: None,
        token: Some(chat_core::Secret::new(format!("token:{name}"))),
        since: Some(since),
    }
}

/// Says `n` messages in `room` from `conn`; returns their ids.
fn say_n(sim: &mut Sim, conn: chat_core::ConnectionId, room: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            sim.say(conn, room, &format!("m{i}"));
            let echo = sim.events(conn);
            match echo.last() {
                Some(Event::Message(m)) => m.id.get(),
                other => panic!("expected the echo, got {other:?}"),
            }
        })
        .collect()
}

#[test]
fn a_login_with_since_gets_exactly_what_was_missed_in_each_room() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    sim.join(alice, "rust");
    sim.quiet();
    let bob = sim.login("bob");
    sim.join(bob, "rust");
    let before = say_n(&mut sim, bob, "general", 2);
    sim.disconnect(alice);
    let missed_general = say_n(&mut sim, bob, "general", 2);
    let missed_rust = say_n(&mut sim, bob, "rust", 1);

    let conn = sim.connect();
    sim.command(conn, login_since("alice", before[1]));
    let events = sim.events(conn);
    assert!(matches!(events[0], Event::Welcome { .. }), "{events:?}");
    assert_eq!(
        joined(&events),
        [
            ("general".to_owned(), missed_general, Some(true)),
            ("rust".to_owned(), missed_rust, Some(true)),
        ]
    );
}

#[test]
fn more_missed_than_the_limit_gives_the_newest_and_complete_false() {
    let mut sim = Sim::new(config());
    let bob = sim.login("bob");
    let seen = say_n(&mut sim, bob, "general", 1)[0];
    let missed = say_n(&mut sim, bob, "general", 6);
    let conn = sim.connect();
    sim.command(conn, login_since("alice", seen));
    assert_eq!(
        joined(&sim.events(conn)),
        [("general".to_owned(), missed[1..].to_vec(), Some(false))],
        "the newest 5 of 6"
    );
    // Exactly the limit is complete.
    let again = sim.connect();
    sim.command(again, login_since("carol", missed[0]));
    assert_eq!(
        joined(&sim.events(again)),
        [("general".to_owned(), missed[1..].to_vec(), Some(true))]
    );
}

#[test]
fn a_since_older_than_memory_is_incomplete_even_under_the_limit() {
    let mut sim = Sim::new(Config {
        history: 3,
        resume_limit: 3,
        ..Config::default()
    });
    let bob = sim.login("bob");
    let ids = say_n(&mut sim, bob, "general", 5);
    // Memory holds the last 3; the client saw the first, so the second is gone from memory.
    let conn = sim.connect();
    sim.command(conn, login_since("alice", ids[0]));
    assert_eq!(
        joined(&sim.events(conn)),
        [("general".to_owned(), ids[2..].to_vec(), Some(false))]
    );
    let conn = sim.connect();
    sim.command(conn, login_since("carol", ids[1]));
    assert_eq!(
        joined(&sim.events(conn)),
        [("general".to_owned(), ids[2..].to_vec(), Some(true))]
    );
}

#[test]
fn a_join_with_since_resumes_that_room_and_the_other_sessions_get_a_plain_copy() {
    let mut sim = Sim::new(config());
    let bob = sim.login("bob");
    sim.join(bob, "rust");
    let ids = say_n(&mut sim, bob, "rust", 3);
    let phone = sim.login_account("alice");
    let laptop = sim.login_account("alice");
    sim.quiet();
    sim.command_with_ref(
        phone,
        Command::Join {
            room: "rust".into(),
            since: Some(ids[0]),
        },
        Ref::number(1),
    );
    let asked = sim.take(phone);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].reference, Some(Ref::number(1)));
    assert_eq!(
        joined(&[(*asked[0].event).clone()]),
        [("rust".to_owned(), ids[1..].to_vec(), Some(true))]
    );
    let copy = sim.take(laptop);
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_eq!(copy[0].kind, SendKind::Copy);
    assert!(
        matches!(&*copy[0].event, Event::Joined { complete: None, .. }),
        "{copy:?}"
    );
}

#[test]
fn without_since_nothing_changes() {
    let mut sim = Sim::new(config());
    let bob = sim.login("bob");
    let ids = say_n(&mut sim, bob, "general", 7);
    let conn = sim.connect();
    sim.command(conn, Command::login("alice"));
    let join_history = Config::default().join_history;
    assert_eq!(
        joined(&sim.events(conn)),
        [("general".to_owned(), ids[7 - join_history..].to_vec(), None)]
    );
}

#[test]
fn an_accounts_missed_dms_follow_its_rooms_and_the_mailbox_is_not_replayed() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    let bob = sim.login_account("bob");
    sim.dm(bob, "alice", "seen");
    let seen = dms(&sim.events(alice))[0].0;
    sim.dm(alice, "bob", "mine, from another device");
    sim.disconnect(alice);
    sim.dm(bob, "alice", "queued while away");
    sim.quiet();

    let conn = sim.connect();
    sim.command(conn, login_since("alice", seen));
    let received = sim.take(conn);
    let events: Vec<Event> = received.iter().map(|r| (*r.event).clone()).collect();
    let got = dms(&events);
    assert_eq!(got.len(), 2, "{events:?}");
    // The mailbox first, as a plain delivery; then the replay, without the queued one again.
    assert!(!got[0].1, "the queued DM is delivered, not replayed");
    assert_eq!(got[1], (seen + 1, true), "alice's own DM is replayed");
    let last_joined = events
        .iter()
        .rposition(|e| matches!(e, Event::Joined { .. }));
    let first_dm = events.iter().position(|e| matches!(e, Event::Dm { .. }));
    assert!(last_joined < first_dm, "DMs follow the joined frames");
    assert!(received.iter().all(|r| r.reference.is_none()));
}

#[test]
fn a_later_session_resuming_gets_the_dms_it_missed() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    let bob = sim.login_account("bob");
    sim.dm(bob, "alice", "one");
    sim.dm(alice, "bob", "two");
    let got = dms(&sim.events(alice));
    sim.quiet();
    let second = sim.connect();
    sim.command(second, login_since("alice", got[0].0));
    assert_eq!(dms(&sim.events(second)), [(got[0].0 + 1, true)]);
}

#[test]
fn dm_history_pages_an_accounts_conversation_both_ways() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    let bob = sim.login_account("Bob");
    sim.make_account("carol");
    sim.dm(alice, "bob", "a1");
    sim.dm(bob, "alice", "b1");
    sim.dm(alice, "carol", "elsewhere");
    sim.dm(alice, "bob", "a2");
    sim.quiet();
    let page = |sim: &mut Sim, before: Option<u64>, limit: Option<i64>| {
        sim.command_with_ref(
            alice,
            Command::History {
                room: None,
                with: Some("BOB".into()),
                before,
                limit,
            },
            Ref::number(7),
        );
        let received = sim.take(alice);
        assert_eq!(received.len(), 1, "{received:?}");
        assert_eq!(received[0].reference, Some(Ref::number(7)));
        match &*received[0].event {
            Event::DmHistory { with, messages } => {
                assert_eq!(with.as_str(), "Bob", "the registered spelling");
                messages
                    .iter()
                    .map(|m| m.text.as_str().to_owned())
                    .collect::<Vec<_>>()
            }
            other => panic!("expected a DM page, got {other:?}"),
        }
    };
    assert_eq!(page(&mut sim, None, None), ["a1", "b1", "a2"]);
    assert_eq!(page(&mut sim, None, Some(2)), ["b1", "a2"]);
    let first = sim.chat.next_id().get() - 4;
    assert_eq!(page(&mut sim, Some(first + 1), None), ["a1"]);
    assert!(page(&mut sim, Some(first), None).is_empty());
}

#[test]
fn dm_history_is_for_accounts_about_accounts() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    let guest = sim.login("gus");
    sim.quiet();
    let with = |name: &str| Command::History {
        room: None,
        with: Some(name.into()),
        before: None,
        limit: None,
    };
    sim.command(guest, with("alice"));
    assert_eq!(sim.error_code(guest), ErrorCode::AuthRequired);
    sim.command(alice, with("gus"));
    assert_eq!(sim.error_code(alice), ErrorCode::InvalidTarget, "a guest");
    sim.command(alice, with("Alice"));
    assert_eq!(sim.error_code(alice), ErrorCode::InvalidTarget, "oneself");
    sim.command(alice, with("no good"));
    assert_eq!(sim.error_code(alice), ErrorCode::InvalidName);
    for (room, with) in [(None, None), (Some("general"), Some("bob"))] {
        sim.command(
            alice,
            Command::History {
                room: room.map(Into::into),
                with: with.map(Into::into),
                before: None,
                limit: None,
            },
        );
        assert_eq!(sim.error_code(alice), ErrorCode::BadFrame);
    }
}

#[test]
fn only_dms_between_two_accounts_are_stored() {
    let mut sim = Sim::new(config());
    let alice = sim.login_account("alice");
    sim.make_account("bob");
    let gus = sim.login("gus");
    sim.login("hal");
    sim.dm(gus, "hal", "between guests");
    sim.dm(gus, "alice", "to an account");
    sim.dm(alice, "gus", "from an account");
    sim.dm(alice, "bob", "between accounts");
    let stored: Vec<&str> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Dm(dm) => Some(dm.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, ["between accounts"]);
}

#[test]
fn a_name_registered_after_a_guest_had_it_finds_none_of_that_guests_dms() {
    let mut sim = Sim::new(config());
    let bob = sim.login_account("bob");
    let guest = sim.login("mallory");
    sim.dm(guest, "bob", "from the guest who had the name first");
    sim.dm(bob, "mallory", "to that guest");
    sim.disconnect(guest);
    sim.quiet();
    // Someone else takes the name as an account and resumes from the start.
    let conn = sim.connect();
    sim.command(conn, login_since("mallory", 0));
    assert!(dms(&sim.events(conn)).is_empty());
    sim.command(
        conn,
        Command::History {
            room: None,
            with: Some("bob".into()),
            before: None,
            limit: None,
        },
    );
    assert!(matches!(
        &sim.events(conn)[..],
        [Event::DmHistory { messages, .. }] if messages.is_empty()
    ));
    // Bob, who was a party, still gets his side replayed from memory.
    let again = sim.connect();
    sim.command(again, login_since("bob", 0));
    assert_eq!(dms(&sim.events(again)).len(), 2);
}

#[test]
fn a_page_past_memory_is_read_from_the_store() {
    let mut sim = Sim::new(Config {
        history: 2,
        resume_limit: 2,
        ..Config::default()
    });
    let alice = sim.login_account("alice");
    let bob = sim.login_account("bob");
    for text in ["1", "2", "3"] {
        sim.dm(bob, "alice", text);
    }
    sim.quiet();
    sim.command(
        alice,
        Command::History {
            room: None,
            with: Some("bob".into()),
            before: None,
            limit: Some(3),
        },
    );
    assert!(sim.events(alice).is_empty());
    let fetch = sim.fetches.pop().expect("a fetch from the store");
    assert_eq!((fetch.conn, fetch.before, fetch.limit), (alice, None, 3));
    assert!(matches!(
        fetch.of,
        HistoryOf::Dms { ref user, ref with } if user.as_str() == "alice" && with.as_str() == "bob"
    ));
}

#[test]
fn a_restored_chat_replays_stored_dms() {
    let dm = |n: u64, from: &str, to: &str| DirectMessage {
        id: id(n),
        from: UserName::parse(from).unwrap(),
        to: UserName::parse(to).unwrap(),
        text: Text::parse(&format!("t{n}"), 100).unwrap(),
        ts: Timestamp::EPOCH,
    };
    let alice = UserName::parse("alice").unwrap();
    let bob = UserName::parse("bob").unwrap();
    let mut snapshot = Snapshot::default();
    for name in [&alice, &bob] {
        snapshot.accounts.insert(name.key(), name.clone());
    }
    let both = vec![dm(3, "alice", "bob"), dm(9, "bob", "alice")];
    for name in [&alice, &bob] {
        snapshot.dms.insert(
            name.key(),
            DmTail {
                messages: both.clone(),
                has_older: false,
            },
        );
    }
    let chat = Chat::restore(config(), snapshot.clone()).unwrap();
    assert!(chat.next_id() > id(9), "ids continue after the stored DMs");
    let mut sim = Sim::with_chat(chat);
    let conn = sim.connect();
    sim.command(conn, login_since("alice", 3));
    assert_eq!(dms(&sim.events(conn)), [(9, true)]);

    // A tail holding another conversation's DM is refused.
    snapshot.dms.get_mut(&alice.key()).unwrap().messages = vec![dm(4, "bob", "carol")];
    assert!(Chat::restore(config(), snapshot).is_err());
}
