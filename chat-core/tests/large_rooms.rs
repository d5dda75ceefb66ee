//! Large rooms: past `Config::large_room` members a room tells nobody of joins and leaves, and
//! its `joined` frame lists only the first `large_room` members with the total in
//! `member_count`. A join is announced only if the room has at most `large_room` members with
//! the joiner; a leave only if it had at most `large_room` before it. Rooms up to the limit behave
//! as they always did. The limit here is tiny (3) so that the boundaries are easy to cross.

mod sim;

use chat_core::{Command, Config, ConnectionId, Event, PresenceChange, RoomName, UserName};
use sim::Sim;

const LIMIT: usize = 3;

fn config(large_room: usize) -> Config {
    Config {
        default_room: None,
        large_room,
        ..Config::default()
    }
}

fn names(names: &[&str]) -> Vec<UserName> {
    names.iter().map(|n| UserName::parse(n).unwrap()).collect()
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// The presence frames `conn` received since the last take, as `join NAME` / `leave NAME`.
fn presence(sim: &mut Sim, conn: ConnectionId) -> Vec<String> {
    sim.events(conn)
        .into_iter()
        .filter_map(|e| match e {
            Event::Presence { user, event, .. } => Some(match event {
                PresenceChange::Join => format!("join {user}"),
                PresenceChange::Leave => format!("leave {user}"),
            }),
            _ => None,
        })
        .collect()
}

/// The members and member count of the one `joined` frame among `events`.
fn joined(events: &[Event]) -> (Vec<UserName>, Option<usize>) {
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Joined {
                members,
                member_count,
                ..
            } => Some((members.clone(), *member_count)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one joined frame in {events:?}");
    found.into_iter().next().unwrap()
}

/// Logs `name` in as a guest and joins `big`; returns the connection and its `joined` frame.
fn enter(sim: &mut Sim, name: &str) -> (ConnectionId, (Vec<UserName>, Option<usize>)) {
    let conn = sim.login(name);
    sim.join(conn, "big");
    let events = sim.events(conn);
    (conn, joined(&events))
}

#[test]
fn presence_stops_above_the_limit_and_resumes_at_it() {
    let mut sim = Sim::new(config(LIMIT));
    let (amy, _) = enter(&mut sim, "amy");
    let (bob, _) = enter(&mut sim, "bob");
    assert_eq!(presence(&mut sim, amy), ["join bob"]);
    // The third member: the room has exactly the limit with the joiner, so it is announced.
    let (cat, cat_joined) = enter(&mut sim, "cat");
    assert_eq!(cat_joined, (names(&["amy", "bob", "cat"]), None));
    assert_eq!(presence(&mut sim, amy), ["join cat"]);
    assert_eq!(presence(&mut sim, bob), ["join cat"]);
    // The fourth makes the room large: nobody is told, and its list is cut to the limit.
    let (dan, dan_joined) = enter(&mut sim, "dan");
    assert_eq!(dan_joined, (names(&["amy", "bob", "cat"]), Some(4)));
    let (eve, eve_joined) = enter(&mut sim, "eve");
    assert_eq!(eve_joined, (names(&["amy", "bob", "cat"]), Some(5)));
    for conn in [amy, bob, cat, dan] {
        assert_eq!(presence(&mut sim, conn), Vec::<String>::new(), "{conn}");
    }
    // Leaving a room of 5, then of 4: more than the limit before the leave, so silent.
    sim.leave(eve, "big");
    sim.disconnect(dan);
    for conn in [amy, bob, cat] {
        assert_eq!(presence(&mut sim, conn), Vec::<String>::new(), "{conn}");
    }
    // A room of exactly the limit announces a leave again (here a disconnect).
    sim.disconnect(cat);
    assert_eq!(presence(&mut sim, amy), ["leave cat"]);
    assert_eq!(presence(&mut sim, bob), ["leave cat"]);
    // And a join that brings it back to the limit, though the room was large before.
    sim.join(eve, "big");
    let eve_joined = joined(&sim.events(eve));
    assert_eq!(eve_joined, (names(&["amy", "bob", "eve"]), None));
    assert_eq!(presence(&mut sim, amy), ["join eve"]);
    assert_eq!(presence(&mut sim, bob), ["join eve"]);
}

#[test]
fn joined_lists_the_first_members_in_order_and_who_lists_all() {
    let mut sim = Sim::new(config(LIMIT));
    // Joined out of order, with mixed case: the list is the sorted one, cut.
    let mut conns = Vec::new();
    for name in ["Zed", "bob", "Amy", "yan", "Cat"] {
        conns.push(enter(&mut sim, name).0);
    }
    let last = *conns.last().unwrap();
    sim.join(last, "big");
    assert_eq!(
        joined(&sim.events(last)),
        (names(&["Amy", "bob", "Cat"]), Some(5))
    );
    sim.command(last, Command::Who { room: "big".into() });
    assert_eq!(
        sim.events(last),
        [Event::Who {
            room: room("big"),
            members: names(&["Amy", "bob", "Cat", "yan", "Zed"]),
        }]
    );
    sim.command(last, Command::Rooms);
    let Event::Rooms { rooms } = &sim.events(last)[0] else {
        panic!("a rooms frame");
    };
    assert_eq!(rooms[0].members, 5);
    assert_eq!(sim.chat.members(&room("big")).len(), 5);
}

#[test]
fn a_small_room_is_unchanged() {
    let mut sim = Sim::new(Config {
        large_room: LIMIT,
        ..Config::default()
    });
    let amy = sim.login("amy");
    sim.command(amy, Command::join("small"));
    let events = sim.events(amy);
    assert_eq!(joined(&events), (names(&["amy"]), None));
    // The frame is byte for byte what it was before large rooms: no `member_count` at all.
    let frame = serde_json::to_string(&events[0]).unwrap();
    assert_eq!(
        frame,
        r#"{"type":"joined","room":"small","members":["amy"],"history":[]}"#
    );
}

#[test]
fn messages_reach_every_member_of_a_large_room() {
    let mut sim = Sim::new(config(LIMIT));
    let conns: Vec<ConnectionId> = ["amy", "bob", "cat", "dan", "eve", "fay"]
        .iter()
        .map(|n| enter(&mut sim, n).0)
        .collect();
    sim.quiet();
    sim.say(conns[0], "big", "hello");
    for &conn in &conns[1..] {
        assert_eq!(sim.texts(conn), ["amy: hello"], "{conn}");
    }
    // Silent leaves and joins change who gets the next message all the same.
    sim.leave(conns[1], "big");
    sim.disconnect(conns[2]);
    let gus = enter(&mut sim, "gus").0;
    sim.quiet();
    sim.say(conns[3], "big", "again");
    for conn in [conns[0], conns[4], conns[5], gus] {
        assert_eq!(sim.texts(conn), ["dan: again"], "{conn}");
    }
    assert_eq!(sim.texts(conns[1]), Vec::<String>::new());
}

#[test]
fn the_sessions_of_one_account_are_one_member() {
    let mut sim = Sim::new(config(2));
    let a1 = sim.login_account("alice");
    sim.join(a1, "big");
    let a2 = sim.login_account("alice");
    assert_eq!(sim.chat.members(&room("big")).len(), 1);
    // The second member: two members with the joiner, so both of alice's sessions are told.
    let (bob, _) = enter(&mut sim, "bob");
    assert_eq!(presence(&mut sim, a1), ["join bob"]);
    assert_eq!(presence(&mut sim, a2), ["join bob"]);
    // The third makes it large, however many sessions the others have.
    let (carol, carol_joined) = enter(&mut sim, "carol");
    assert_eq!(carol_joined, (names(&["alice", "bob"]), Some(3)));
    for conn in [a1, a2, bob] {
        assert_eq!(presence(&mut sim, conn), Vec::<String>::new(), "{conn}");
    }
    // A third session of alice gets the bounded frame too, and tells nobody.
    let a3 = sim.connect();
    sim.command(a3, Sim::token_login("alice"));
    assert_eq!(joined(&sim.events(a3)), (names(&["alice", "bob"]), Some(3)));
    // A session that ends while others stay is no leave; the last one is, silent here.
    sim.disconnect(a3);
    sim.disconnect(a2);
    sim.disconnect(a1);
    assert_eq!(sim.chat.members(&room("big")).len(), 2);
    assert_eq!(presence(&mut sim, bob), Vec::<String>::new());
    assert_eq!(presence(&mut sim, carol), Vec::<String>::new());
    // At the limit the room is small again: carol's leave is announced, then alice's next
    // login, once however many sessions follow it.
    sim.leave(carol, "big");
    assert_eq!(presence(&mut sim, bob), ["leave carol"]);
    let a4 = sim.login_account("alice");
    assert_eq!(presence(&mut sim, bob), ["join alice"]);
    let _a5 = sim.login_account("alice");
    assert_eq!(presence(&mut sim, bob), Vec::<String>::new());
    sim.leave(a4, "big");
    assert_eq!(presence(&mut sim, bob), ["leave alice"]);
}

#[test]
fn a_join_into_a_large_room_costs_the_core_o1_outputs() {
    // The motivating case: everyone logs in to the default room.
    let mut sim = Sim::new(Config {
        large_room: LIMIT,
        ..Config::default()
    });
    let mut conns = Vec::new();
    let mut costs = Vec::new();
    for i in 0..200 {
        if i == LIMIT {
            // What the joins up to the limit told the first members.
            sim.quiet();
        }
        let (broadcasts, sends) = (sim.broadcasts, sim.sends);
        conns.push(sim.login(&format!("user{i:03}")));
        costs.push((sim.broadcasts - broadcasts, sim.sends - sends));
    }
    // Up to the limit a join is one broadcast to the members before it (none for the first).
    assert_eq!(costs[0], (0, 2), "welcome and joined");
    assert!(costs[1..LIMIT].iter().all(|&c| c == (1, 2)), "{costs:?}");
    // Past it, the joiner's own two frames and nothing else, whatever the room's size.
    assert!(costs[LIMIT..].iter().all(|&c| c == (0, 2)), "{costs:?}");
    // Nobody received anything for the joins past the limit.
    for &conn in &conns {
        assert!(sim.take(conn).is_empty(), "{conn}");
    }
    // The newest `joined` is bounded, whatever the room's size.
    let late = sim.connect();
    sim.command(late, Command::login("zed"));
    assert_eq!(
        joined(&sim.events(late)),
        (names(&["user000", "user001", "user002"]), Some(201))
    );
    // Leaves are free too.
    let (broadcasts, sends) = (sim.broadcasts, sim.sends);
    for conn in conns.drain(..100) {
        sim.disconnect(conn);
    }
    assert_eq!((sim.broadcasts - broadcasts, sim.sends - sends), (0, 0));
}

#[test]
fn a_limit_of_zero_turns_presence_and_member_lists_off() {
    let mut sim = Sim::new(config(0));
    let (amy, amy_joined) = enter(&mut sim, "amy");
    assert_eq!(amy_joined, (Vec::new(), Some(1)));
    let (bob, bob_joined) = enter(&mut sim, "bob");
    assert_eq!(bob_joined, (Vec::new(), Some(2)));
    sim.disconnect(bob);
    assert_eq!(presence(&mut sim, amy), Vec::<String>::new());
    sim.command(amy, Command::Who { room: "big".into() });
    assert_eq!(
        sim.events(amy),
        [Event::Who {
            room: room("big"),
            members: names(&["amy"]),
        }]
    );
}

#[test]
fn a_resume_into_a_large_room_is_bounded_too() {
    let mut sim = Sim::new(config(LIMIT));
    let conns: Vec<ConnectionId> = ["amy", "bob", "cat", "dan"]
        .iter()
        .map(|n| enter(&mut sim, n).0)
        .collect();
    sim.say(conns[0], "big", "one");
    let eve = sim.login("eve");
    sim.command(
        eve,
        Command::Join {
            room: "big".into(),
            since: Some(0),
        },
    );
    let events = sim.events(eve);
    assert_eq!(joined(&events), (names(&["amy", "bob", "cat"]), Some(5)));
    let Event::Joined {
        history, complete, ..
    } = &events[0]
    else {
        panic!("a joined frame");
    };
    assert_eq!((history.len(), *complete), (1, Some(true)));
}
