//! Scenario tests: each reads as a short conversation on a simulated server.

mod sim;

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    Chat, CloseReason, Command, Config, ConnectionId, DirectMessage, ErrorCode, Event, HistoryOf,
    Input, MessageId, Now, Output, PresenceChange, Record, Ref, RoomMessage, RoomName, RoomSummary,
    RoomTail, SendKind, Snapshot, Text, Timestamp, UserName,
};
use sim::{Sim, id};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn user(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

fn names(list: &[&str]) -> Vec<UserName> {
    list.iter().map(|n| user(n)).collect()
}

#[test]
fn login_welcomes_joins_the_default_room_and_tells_its_members() {
    let mut sim = Sim::new(Config::default());
    let bob = sim.login("bob");
    let alice = sim.connect();
    sim.command_with_ref(alice, Command::login("Alice"), Ref::number(1));

    let replies = sim.take(alice);
    assert_eq!(
        *replies[0].event,
        Event::Welcome {
            name: user("Alice"),
            rooms: vec![room("general")],
            account: false,
        }
    );
    assert_eq!(replies[0].reference, Some(Ref::number(1)));
    assert_eq!(
        *replies[1].event,
        Event::Joined {
            complete: None,
            room: room("general"),
            members: names(&["Alice", "bob"]),
            member_count: None,
            history: vec![]
        }
    );
    assert_eq!(replies.len(), 2);
    assert_eq!(
        sim.events(bob),
        [Event::Presence {
            room: room("general"),
            user: user("Alice"),
            event: PresenceChange::Join
        }]
    );
}

#[test]
fn without_a_default_room_login_joins_nothing() {
    let mut sim = Sim::new(Config {
        default_room: None,
        ..Config::default()
    });
    let alice = sim.connect();
    sim.command(alice, Command::login("alice"));
    assert_eq!(
        sim.events(alice),
        [Event::Welcome {
            name: user("alice"),
            rooms: vec![],
            account: false,
        }]
    );
    assert_eq!(sim.chat.rooms().count(), 0);
}

#[test]
fn names_are_unique_case_insensitively_and_freed_on_disconnect() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let imposter = sim.connect();
    sim.command(imposter, Command::login("ALICE"));
    assert_eq!(sim.error_code(imposter), ErrorCode::NameTaken);
    assert_eq!(sim.chat.online_count(), 1);

    sim.disconnect(alice);
    sim.command(imposter, Command::login("ALICE"));
    assert!(matches!(sim.events(imposter)[0], Event::Welcome { .. }));
    assert_eq!(sim.chat.online(&user("alice").key()), Some(imposter));
}

#[test]
fn a_room_message_reaches_every_member_once_with_one_id_and_timestamp() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let bob = sim.login("bob");
    let carol = sim.login("carol");
    sim.join(alice, "rust");
    sim.join(bob, "Rust");
    sim.quiet();

    sim.command_with_ref(
        alice,
        Command::Say {
            room: "RUST".into(),
            text: "hi".into(),
        },
        Ref::text("m1").unwrap(),
    );

    let mine = sim.take(alice);
    let theirs = sim.take(bob);
    assert_eq!(mine.len(), 1);
    assert_eq!(theirs.len(), 1);
    assert_eq!(mine[0].reference, Some(Ref::text("m1").unwrap()));
    assert_eq!(
        mine[0].kind,
        SendKind::Echo,
        "the sender's copy is marked as its own"
    );
    assert_eq!(theirs[0].reference, None);
    // The sender's copy and the broadcast are one shared event.
    assert!(Arc::ptr_eq(&mine[0].event, &theirs[0].event));
    let Event::Message(message) = &*mine[0].event else {
        panic!("{mine:?}")
    };
    assert_eq!(message.room, room("rust"));
    assert_eq!(message.from, user("alice"));
    assert_eq!(message.text.as_str(), "hi");
    assert_eq!(message.ts, sim.now);
    assert!(sim.take(carol).is_empty(), "carol is not in #rust");
    assert_eq!(sim.records.last(), Some(&Record::Message(message.clone())));
}

#[test]
fn ids_strictly_increase_across_rooms_and_dms() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let _bob = sim.login("bob");
    sim.make_account("zed");
    sim.say(alice, "general", "one");
    sim.dm(alice, "bob", "two");
    sim.dm(alice, "zed", "three");
    sim.say(alice, "general", "four");
    let ids: Vec<u64> = sim
        .events(alice)
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.id.get()),
            Event::Dm { message, .. } => Some(message.id.get()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
}

#[test]
fn a_burst_in_a_big_room_reuses_one_recipient_set_and_one_output_per_message() {
    let mut sim = Sim::new(Config::default());
    let members: Vec<ConnectionId> = (0..1000).map(|i| sim.login(&format!("u{i}"))).collect();
    sim.quiet();
    let (sends, broadcasts) = (sim.sends, sim.broadcasts);

    let mut shared = Vec::new();
    for n in 0..10 {
        sim.chat
            .handle(
                chat_core::Input::Command {
                    conn: members[0],
                    command: Command::Say {
                        room: "general".into(),
                        text: format!("m{n}"),
                    },
                    reference: None,
                },
                sim.now,
            )
            .unwrap();
        while let Some(output) = sim.chat.poll_output() {
            if let chat_core::Output::Broadcast { to, .. } = output {
                shared.push(to);
            }
        }
    }
    assert_eq!(shared.len(), 10, "one broadcast per message");
    assert_eq!(shared[0].len(), 1000);
    assert!(
        shared.windows(2).all(|w| w[0].ptr_eq(&w[1])),
        "the cached set is reused"
    );
    assert_eq!((sim.sends, sim.broadcasts), (sends, broadcasts));
}

#[test]
fn joining_and_leaving_tell_the_room_and_a_repeated_join_tells_nobody() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let bob = sim.login("bob");
    sim.join(alice, "rust");
    sim.quiet();

    sim.join(bob, "rust");
    assert_eq!(
        sim.events(alice),
        [Event::Presence {
            room: room("rust"),
            user: user("bob"),
            event: PresenceChange::Join
        }]
    );
    assert!(
        matches!(&sim.events(bob)[..], [Event::Joined { members, .. }] if *members == names(&["alice", "bob"]))
    );

    sim.join(bob, "rust");
    assert!(
        sim.events(alice).is_empty(),
        "a join that changes nothing tells nobody"
    );
    assert!(
        matches!(&sim.events(bob)[..], [Event::Joined { .. }]),
        "but the joiner is answered"
    );

    sim.leave(bob, "rust");
    assert_eq!(sim.events(bob), [Event::Left { room: room("rust") }]);
    assert_eq!(
        sim.events(alice),
        [Event::Presence {
            room: room("rust"),
            user: user("bob"),
            event: PresenceChange::Leave
        }]
    );
    sim.say(bob, "rust", "still here?");
    assert_eq!(sim.error_code(bob), ErrorCode::NotInRoom);
}

#[test]
fn a_disconnect_leaves_every_room() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let bob = sim.login("bob");
    sim.join(alice, "rust");
    sim.join(bob, "rust");
    sim.quiet();

    sim.disconnect(bob);
    let leaves: Vec<_> = sim
        .events(alice)
        .into_iter()
        .map(|e| match e {
            Event::Presence {
                room,
                user,
                event: PresenceChange::Leave,
            } => (room, user),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        leaves,
        [(room("general"), user("bob")), (room("rust"), user("bob"))]
    );
    assert_eq!(sim.chat.members(&room("rust")), names(&["alice"]));
}

#[test]
fn a_user_may_be_in_at_most_max_rooms() {
    let mut sim = Sim::new(Config {
        max_rooms: 3,
        ..Config::default()
    });
    let alice = sim.login("alice");
    sim.join(alice, "a");
    sim.join(alice, "b");
    sim.quiet();
    sim.join(alice, "c");
    assert_eq!(
        sim.error_code(alice),
        ErrorCode::InvalidRoom,
        "general, a and b are three"
    );
    sim.join(alice, "A");
    assert!(
        matches!(&sim.events(alice)[..], [Event::Joined { .. }]),
        "a room one is in is fine"
    );
    sim.leave(alice, "a");
    sim.join(alice, "c");
    assert!(matches!(
        &sim.events(alice)[..],
        [Event::Left { .. }, Event::Joined { .. }]
    ));
}

#[test]
fn members_are_listed_case_insensitively_sorted() {
    let mut sim = Sim::new(Config::default());
    for name in ["carol", "Bob", "alice", "Dave"] {
        sim.login(name);
    }
    let eve = sim.login("eve");
    sim.command(
        eve,
        Command::Who {
            room: "GENERAL".into(),
        },
    );
    assert_eq!(
        sim.events(eve),
        [Event::Who {
            room: room("general"),
            members: names(&["alice", "Bob", "carol", "Dave", "eve"])
        }]
    );
}

#[test]
fn rooms_lists_rooms_with_members_or_history_and_forgets_idle_ones() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    sim.join(alice, "quiet");
    sim.join(alice, "busy");
    sim.say(alice, "busy", "something to remember");
    sim.leave(alice, "quiet");
    sim.leave(alice, "busy");
    sim.quiet();
    sim.command(alice, Command::Rooms);
    assert_eq!(
        sim.events(alice),
        [Event::Rooms {
            rooms: vec![
                RoomSummary {
                    room: room("busy"),
                    members: 0
                },
                RoomSummary {
                    room: room("general"),
                    members: 1
                },
            ]
        }]
    );
}

#[test]
fn joiners_get_the_last_n_messages_oldest_first() {
    let mut sim = Sim::new(Config {
        join_history: 3,
        ..Config::default()
    });
    let alice = sim.login("alice");
    for n in 1..=5 {
        sim.say(alice, "general", &format!("m{n}"));
    }
    let bob = sim.connect();
    sim.command(bob, Command::login("bob"));
    let replies = sim.take(bob);
    let Event::Joined { history, .. } = &*replies[1].event else {
        panic!("{replies:?}")
    };
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m3", "m4", "m5"]);
    assert!(
        replies[1].kind.is_backlog(),
        "a joined frame's history never counts as slowness"
    );
}

#[test]
fn join_history_is_capped_at_what_memory_holds() {
    let mut sim = Sim::new(Config {
        history: 3,
        join_history: 10,
        ..Config::default()
    });
    assert_eq!(sim.chat.config().join_history, 3);
    let alice = sim.login("alice");
    for n in 1..=6 {
        sim.say(alice, "general", &format!("m{n}"));
    }
    let bob = sim.connect();
    sim.command(bob, Command::login("bob"));
    let events = sim.events(bob);
    let Event::Joined { history, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(history.len(), 3);
}

#[test]
fn history_pages_backwards_with_before_and_clamps_limit() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    for n in 1..=10 {
        sim.say(alice, "general", &format!("m{n}"));
    }
    sim.quiet();
    let page = |sim: &mut Sim, before: Option<u64>, limit: Option<i64>| -> Vec<u64> {
        sim.command(alice, Command::room_history("general", before, limit));
        match &sim.events(alice)[..] {
            [Event::History { messages, .. }] => messages.iter().map(|m| m.id.get()).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(page(&mut sim, None, Some(3)), [8, 9, 10]);
    assert_eq!(page(&mut sim, Some(8), Some(3)), [5, 6, 7]);
    assert_eq!(page(&mut sim, Some(3), None), [1, 2]);
    assert_eq!(page(&mut sim, Some(1), None), Vec::<u64>::new());
    assert_eq!(page(&mut sim, None, Some(0)), [10], "limit below 1 is 1");
    assert_eq!(page(&mut sim, None, Some(-7)), [10]);
    assert_eq!(
        page(&mut sim, None, Some(100_000)).len(),
        10,
        "limit above 500 is 500"
    );
}

#[test]
fn history_past_memory_is_fetched_from_the_store() {
    let mut sim = Sim::new(Config {
        history: 4,
        ..Config::default()
    });
    let alice = sim.login("alice");
    for n in 1..=6 {
        sim.say(alice, "general", &format!("m{n}"));
    }
    assert_eq!(
        sim.chat.history_len(&room("general")),
        4,
        "history is bounded"
    );
    sim.quiet();
    sim.command_with_ref(
        alice,
        Command::room_history("general", Some(5), Some(3)),
        Ref::number(9),
    );
    assert!(sim.events(alice).is_empty());
    let fetch = sim.fetches.pop().expect("a fetch");
    assert_eq!(
        (fetch.conn, fetch.of, fetch.before, fetch.limit),
        (alice, HistoryOf::Room(room("general")), Some(id(5)), 3)
    );
    assert_eq!(fetch.reference, Some(Ref::number(9)));
    // A page memory can answer whole stays in memory.
    sim.command(alice, Command::room_history("general", None, Some(4)));
    assert!(
        matches!(&sim.events(alice)[..], [Event::History { messages, .. }] if messages.len() == 4)
    );
}

#[test]
fn history_needs_membership() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    sim.command(alice, Command::room_history("elsewhere", None, None));
    assert_eq!(sim.error_code(alice), ErrorCode::NotInRoom);
}

#[test]
fn a_dm_to_an_online_user_is_delivered_with_a_copy_for_the_sender() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    let bob = sim.login("Bob");
    sim.quiet();
    sim.command_with_ref(
        alice,
        Command::Dm {
            to: "BOB".into(),
            text: "psst".into(),
        },
        Ref::number(4),
    );
    let mine = sim.take(alice);
    let theirs_received = sim.take(bob);
    let theirs: Vec<Event> = theirs_received.iter().map(|r| (*r.event).clone()).collect();
    let Event::Dm {
        message,
        queued: false,
        ..
    } = &theirs[0]
    else {
        panic!("{theirs:?}")
    };
    assert_eq!(
        (
            message.from.as_str(),
            message.to.as_str(),
            message.text.as_str()
        ),
        ("alice", "BOB", "psst")
    );
    assert_eq!(*mine[0].event, theirs[0]);
    assert_eq!(mine[0].reference, Some(Ref::number(4)));
    assert_eq!(
        (mine[0].kind, theirs_received[0].kind),
        (SendKind::Echo, SendKind::Push)
    );
    assert!(
        !sim.records.iter().any(|r| matches!(r, Record::Queued(_))),
        "an online DM is not queued"
    );
}

#[test]
fn a_dm_to_an_offline_user_waits_in_order_and_is_delivered_once_at_login() {
    let mut sim = Sim::new(Config::default());
    sim.make_account("bob");
    let alice = sim.login("alice");
    sim.dm(alice, "bob", "first");
    sim.dm(alice, "BOB", "second");
    let copies = sim.events(alice);
    assert!(
        copies
            .iter()
            .all(|e| matches!(e, Event::Dm { queued: true, .. })),
        "{copies:?}"
    );
    assert_eq!(sim.chat.mailbox_len(&user("bob").key()), 2);
    let queued_at = sim.now;
    sim.advance(Duration::from_secs(30));

    let bob = sim.connect();
    sim.command(bob, Sim::token_login("Bob"));
    let replies = sim.take(bob);
    let kinds: Vec<&str> = replies.iter().map(|r| r.event.kind()).collect();
    assert_eq!(kinds, ["welcome", "joined", "dm", "dm"]);
    let dms: Vec<(u64, String, Timestamp, bool)> = replies[2..]
        .iter()
        .map(|r| match &*r.event {
            Event::Dm {
                message,
                queued: false,
                ..
            } => (
                message.id.get(),
                message.text.to_string(),
                message.ts,
                r.kind.is_backlog(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        dms,
        [
            (1, "first".into(), queued_at, true),
            (2, "second".into(), queued_at, true)
        ],
        "original ids and timestamps, oldest first, exempt from the outbox bound"
    );
    assert!(sim.records.contains(&Record::Delivered {
        owner: user("bob").key(),
        through: id(2)
    }));
    assert_eq!(sim.chat.mailbox_len(&user("bob").key()), 0);

    sim.disconnect(bob);
    let again = sim.connect();
    sim.command(again, Sim::token_login("bob"));
    assert!(
        sim.events(again).iter().all(|e| e.kind() != "dm"),
        "never delivered twice"
    );
}

#[test]
fn a_full_mailbox_refuses_and_keeps_nothing() {
    let mut sim = Sim::new(Config {
        mailbox: 2,
        ..Config::default()
    });
    sim.make_account("bob");
    let alice = sim.login("alice");
    sim.dm(alice, "bob", "1");
    sim.dm(alice, "bob", "2");
    sim.quiet();
    let records = sim.records.len();
    sim.dm(alice, "Bob", "3");
    assert_eq!(sim.error_code(alice), ErrorCode::MailboxFull);
    assert_eq!(sim.records.len(), records, "nothing was stored");
    assert_eq!(sim.chat.mailbox_len(&user("bob").key()), 2);
}

#[test]
fn all_mailboxes_together_are_bounded_too() {
    let mut sim = Sim::new(Config {
        max_queued: 3,
        ..Config::default()
    });
    for name in ["b1", "b2", "b3", "b4"] {
        sim.make_account(name);
    }
    let alice = sim.login("alice");
    for name in ["b1", "b2", "b3"] {
        sim.dm(alice, name, "hi");
    }
    sim.quiet();
    sim.dm(alice, "b4", "hi");
    assert_eq!(sim.error_code(alice), ErrorCode::MailboxFull);
    assert_eq!(sim.chat.queued_total(), 3);
    let b1 = sim.login_account("b1");
    let _ = sim.take(b1);
    assert_eq!(sim.chat.queued_total(), 2, "a delivered mailbox makes room");
    sim.quiet();
    sim.dm(alice, "b4", "hi");
    assert!(matches!(
        &sim.events(alice)[..],
        [Event::Dm { queued: true, .. }]
    ));
}

#[test]
fn a_dm_to_oneself_is_an_invalid_target() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("Alice");
    sim.dm(alice, "aLiCe", "hello me");
    assert_eq!(sim.error_code(alice), ErrorCode::InvalidTarget);
}

#[test]
fn ids_are_reserved_in_blocks_before_they_are_handed_out() {
    let mut sim = Sim::new(Config {
        id_block: 3,
        ..Config::default()
    });
    let alice = sim.login("alice");
    for n in 0..7 {
        sim.say(alice, "general", &format!("m{n}"));
    }
    let reservations: Vec<u64> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::IdsReserved { until } => Some(until.get()),
            _ => None,
        })
        .collect();
    assert_eq!(reservations, [4, 7, 10]);
    // The reservation comes before the message that needs it.
    let first_message = sim
        .records
        .iter()
        .position(|r| matches!(r, Record::Message(_)))
        .unwrap();
    assert!(matches!(
        sim.records[first_message - 1],
        Record::IdsReserved { .. }
    ));
}

fn stored_message(room_name: &str, n: u64) -> RoomMessage {
    RoomMessage {
        room: room(room_name),
        id: id(n),
        from: user("old"),
        text: Text::parse(&format!("old {n}"), 4096).unwrap(),
        ts: Timestamp::from_unix_millis(n),
    }
}

#[test]
fn a_restored_chat_continues_history_mailboxes_and_ids() {
    let mut snapshot = Snapshot {
        next_id: Some(id(40)),
        ..Snapshot::default()
    };
    snapshot.rooms.insert(
        room("general"),
        RoomTail {
            messages: (10..=14).map(|n| stored_message("general", n)).collect(),
            has_older: true,
        },
    );
    snapshot.rooms.insert(
        room("archive"),
        RoomTail {
            messages: vec![stored_message("archive", 50)],
            has_older: false,
        },
    );
    snapshot.mailboxes.insert(
        user("bob").key(),
        vec![DirectMessage {
            id: id(20),
            from: user("alice"),
            to: user("BOB"),
            text: Text::parse("while you were out", 4096).unwrap(),
            ts: Timestamp::from_unix_millis(20),
        }],
    );
    snapshot.accounts.insert(user("bob").key(), user("bob"));
    let chat = Chat::restore(
        Config {
            join_history: 2,
            ..Config::default()
        },
        snapshot,
    )
    .unwrap();
    assert_eq!(
        chat.next_id(),
        id(51),
        "above the snapshot's counter and every stored id"
    );
    let mut sim = Sim::with_chat(chat);

    let bob = sim.connect();
    sim.command(bob, Sim::token_login("bob"));
    let events = sim.events(bob);
    let Event::Joined { history, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        history.iter().map(|m| m.id.get()).collect::<Vec<_>>(),
        [13, 14]
    );
    assert!(matches!(&events[2], Event::Dm { message, .. } if message.id == id(20)));

    sim.command(bob, Command::Rooms);
    assert!(matches!(&sim.events(bob)[..], [Event::Rooms { rooms }] if rooms.len() == 2));
    sim.say(bob, "general", "new");
    assert!(matches!(&sim.events(bob)[..], [Event::Message(m)] if m.id == id(51)));
    // The store said older messages exist, so a page past the tail is fetched.
    sim.command(bob, Command::room_history("general", Some(11), None));
    assert_eq!(sim.fetches.len(), 1);
}

#[test]
fn an_inconsistent_snapshot_is_refused() {
    let mut snapshot = Snapshot::default();
    snapshot.rooms.insert(
        room("general"),
        RoomTail {
            messages: vec![stored_message("general", 5), stored_message("general", 5)],
            has_older: false,
        },
    );
    assert!(matches!(
        Chat::restore(Config::default(), snapshot),
        Err(chat_core::RestoreError::HistoryOrder { .. })
    ));
    let mut snapshot = Snapshot::default();
    snapshot.rooms.insert(
        room("general"),
        RoomTail {
            messages: vec![stored_message("elsewhere", 5)],
            has_older: false,
        },
    );
    assert!(Chat::restore(Config::default(), snapshot).is_err());
}

#[test]
fn ids_that_run_out_are_refused_not_handed_out_twice() {
    // Only a corrupt store puts the counter here; the last id, u64::MAX, is never handed out.
    let snapshot = Snapshot {
        next_id: MessageId::new(u64::MAX - 1),
        ..Snapshot::default()
    };
    let mut sim = Sim::with_chat(Chat::restore(Config::default(), snapshot).unwrap());
    let alice = sim.login("alice");
    sim.say(alice, "general", "the last one");
    assert!(matches!(&sim.events(alice)[..], [Event::Message(m)] if m.id.get() == u64::MAX - 1));
    sim.say(alice, "general", "one too many");
    assert_eq!(sim.error_code(alice), ErrorCode::Unavailable);
    assert_eq!(sim.chat.history_len(&room("general")), 1);
}

#[test]
fn login_deadlines_follow_the_monotonic_clock_not_the_wall_clock() {
    let mut chat = Chat::new(Config {
        login_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    });
    let wall = Timestamp::parse("2026-11-22T10:00:00.000Z").unwrap();
    let at = |wall: Timestamp, secs: u64| Now::new(wall, Duration::from_secs(secs));
    let lurker = ConnectionId(1);
    chat.handle(Input::Connect(lurker), at(wall, 100)).unwrap();
    assert_eq!(chat.poll_timeout(), Some(Duration::from_secs(110)));
    // The wall clock jumps a day ahead, but only 5 s have passed: nobody is closed.
    let next_day = wall.saturating_add(Duration::from_secs(86_400));
    chat.handle(Input::Tick, at(next_day, 105)).unwrap();
    assert_eq!(chat.poll_output(), None);
    // The wall clock steps back an hour, and the 10 s are up: the lurker is closed on time.
    let hour_ago = Timestamp::from_unix_millis(wall.unix_millis() - 3_600_000);
    chat.handle(Input::Tick, at(hour_ago, 110)).unwrap();
    assert_eq!(
        chat.poll_output(),
        Some(Output::Close {
            conn: lurker,
            reason: CloseReason::LoginTimeout
        })
    );
}

#[test]
fn a_connection_that_never_logs_in_is_closed_after_the_login_timeout() {
    let mut sim = Sim::new(Config {
        login_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    });
    let lurker = sim.connect();
    let quick = sim.connect();
    sim.command(quick, Command::login("quick"));
    assert_eq!(
        sim.chat.poll_timeout(),
        Some(Now::from(sim.now).monotonic + Duration::from_secs(10))
    );

    sim.advance(Duration::from_secs(9));
    assert!(sim.closed.is_empty());
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.closed, [(lurker, CloseReason::LoginTimeout)]);

    // Once closing, the connection is ignored until the runtime reports the disconnect.
    sim.command(lurker, Command::login("late"));
    assert!(sim.events(lurker).is_empty());
    sim.disconnect(lurker);
    assert_eq!(sim.chat.connection_count(), 1);
}

#[test]
fn a_reused_connection_id_gets_its_own_login_deadline() {
    let config = Config {
        login_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let mut chat = Chat::new(config);
    let t0 = Timestamp::from_unix_millis(1_000_000);
    let conn = ConnectionId(7);
    chat.handle(chat_core::Input::Connect(conn), t0).unwrap();
    chat.handle(chat_core::Input::Disconnect(conn), t0).unwrap();
    chat.handle(
        chat_core::Input::Connect(conn),
        t0.saturating_add(Duration::from_secs(5)),
    )
    .unwrap();
    chat.handle(
        chat_core::Input::Tick,
        t0.saturating_add(Duration::from_secs(10)),
    )
    .unwrap();
    assert_eq!(
        chat.poll_output(),
        None,
        "the first connection's deadline is not the second's"
    );
    chat.handle(
        chat_core::Input::Tick,
        t0.saturating_add(Duration::from_secs(15)),
    )
    .unwrap();
    assert!(
        matches!(chat.poll_output(), Some(chat_core::Output::Close { conn: c, .. }) if c == conn)
    );
}

#[test]
fn the_runtime_is_told_when_it_contradicts_itself() {
    let mut chat = Chat::new(Config::default());
    let now = Timestamp::EPOCH;
    let conn = ConnectionId(1);
    assert_eq!(
        chat.handle(chat_core::Input::Disconnect(conn), now),
        Err(chat_core::InputError::UnknownConnection(conn))
    );
    chat.handle(chat_core::Input::Connect(conn), now).unwrap();
    assert_eq!(
        chat.handle(chat_core::Input::Connect(conn), now),
        Err(chat_core::InputError::DuplicateConnection(conn))
    );
}

#[test]
fn ping_is_answered_before_and_after_login() {
    let mut sim = Sim::new(Config::default());
    let anon = sim.connect();
    sim.command_with_ref(anon, Command::Ping, Ref::text("p").unwrap());
    let replies = sim.take(anon);
    assert_eq!(*replies[0].event, Event::Pong);
    assert_eq!(replies[0].reference, Some(Ref::text("p").unwrap()));
}

#[test]
fn what_the_store_could_not_keep_is_forgotten() {
    let mut sim = Sim::new(Config::default());
    sim.make_account("bob");
    let alice = sim.login("alice");
    sim.say(alice, "general", "kept");
    sim.say(alice, "general", "lost");
    sim.dm(alice, "bob", "lost too");
    let unstored: Vec<Record> = sim
        .records
        .iter()
        .filter(|r| match r {
            Record::Message(m) => m.text.as_str() == "lost",
            Record::Queued(_) => true,
            _ => false,
        })
        .cloned()
        .collect();
    assert_eq!(unstored.len(), 2);
    sim.input(Input::Unstored(unstored));
    assert_eq!(sim.chat.history_len(&room("general")), 1);
    assert_eq!(sim.chat.mailbox_len(&user("bob").key()), 0);
    assert_eq!(sim.chat.queued_total(), 0);
    sim.quiet();
    // A later joiner sees only what was kept, and bob's login brings no DM.
    let bob = sim.connect();
    sim.command(bob, Sim::token_login("bob"));
    let history: Vec<String> = sim
        .events(bob)
        .into_iter()
        .filter_map(|e| match e {
            Event::Joined { history, .. } => Some(
                history
                    .iter()
                    .map(|m| m.text.as_str().to_owned())
                    .collect::<Vec<_>>(),
            ),
            Event::Dm { .. } => panic!("a forgotten DM was delivered"),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(history, ["kept"]);
}
