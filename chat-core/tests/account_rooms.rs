//! An account's rooms are the account's: kept when its last session ends, rejoined at its next
//! login and after a restart, stored with one [`Record::Rooms`] per change. The default room is
//! joined only at an account's first login; guests store nothing; a guest who registers makes
//! its rooms the account's.

mod sim;

use std::collections::BTreeMap;

use chat_core::{
    Chat, Command, Config, ConnectionId, Event, Input, PresenceChange, Record, RoomName, Secret,
    Snapshot, UserKey, UserName,
};
use sim::Sim;

fn key(name: &str) -> UserKey {
    UserName::parse(name).unwrap().key()
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn rooms(names: &[&str]) -> Vec<RoomName> {
    names.iter().map(|r| room(r)).collect()
}

/// The room sets stored so far, in order, as `(owner, rooms)`.
fn room_records(sim: &Sim) -> Vec<(String, Vec<String>)> {
    sim.records
        .iter()
        .filter_map(|r| match r {
            Record::Rooms { owner, rooms } => Some((
                owner.to_string(),
                rooms.iter().map(ToString::to_string).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn set(owner: &str, rooms: &[&str]) -> (String, Vec<String>) {
    (
        owner.to_owned(),
        rooms.iter().map(|r| (*r).to_owned()).collect(),
    )
}

/// What a login answered, in short: the welcome's rooms, then the room of each `joined`.
fn login_answer(events: &[Event]) -> (Vec<RoomName>, Vec<RoomName>) {
    let mut welcome = None;
    let mut joined = Vec::new();
    for event in events {
        match event {
            Event::Welcome { rooms, .. } => welcome = Some(rooms.clone()),
            Event::Joined { room, .. } => joined.push(room.clone()),
            _ => {}
        }
    }
    (welcome.expect("a welcome"), joined)
}

/// Logs in the account `name` by token and returns everything its session got.
fn account_login(sim: &mut Sim, name: &str) -> (ConnectionId, Vec<Event>) {
    let conn = sim.connect();
    sim.command(conn, Sim::token_login(name));
    let events = sim.events(conn);
    (conn, events)
}

/// What a store would give back from `records`: the accounts and their latest room sets.
fn snapshot_of(records: &[Record]) -> Snapshot {
    let mut accounts = BTreeMap::new();
    let mut account_rooms = BTreeMap::new();
    for record in records {
        match record {
            Record::Account(account) => {
                accounts.insert(account.name.key(), account.name.clone());
            }
            Record::Rooms { owner, rooms } => {
                account_rooms.insert(owner.clone(), rooms.clone());
            }
            _ => {}
        }
    }
    Snapshot {
        accounts,
        account_rooms,
        ..Snapshot::default()
    }
}

#[test]
fn an_accounts_rooms_come_back_at_its_next_login() {
    let mut sim = Sim::new(Config::default());
    let (alice, events) = account_login(&mut sim, "alice");
    assert_eq!(
        login_answer(&events),
        (rooms(&["general"]), rooms(&["general"]))
    );
    assert_eq!(room_records(&sim), [set("alice", &["general"])]);
    sim.join(alice, "zeta");
    sim.join(alice, "alpha");
    sim.leave(alice, "general");
    assert_eq!(
        room_records(&sim),
        [
            set("alice", &["general"]),
            set("alice", &["general", "zeta"]),
            set("alice", &["alpha", "general", "zeta"]),
            set("alice", &["alpha", "zeta"]),
        ],
        "one whole set per change"
    );
    let bob = sim.login("bob");
    sim.join(bob, "zeta");
    sim.quiet();

    let stored = sim.records.len();
    sim.disconnect(alice);
    assert_eq!(
        sim.records.len(),
        stored,
        "the last session's end stores nothing"
    );
    assert!(sim.chat.user_rooms(&key("alice")).is_empty());
    assert_eq!(
        sim.chat.members(&room("zeta")),
        [UserName::parse("bob").unwrap()]
    );
    sim.quiet();

    let (_, events) = account_login(&mut sim, "alice");
    assert_eq!(
        login_answer(&events),
        (rooms(&["alpha", "zeta"]), rooms(&["alpha", "zeta"])),
        "the stored rooms, sorted, and no default room"
    );
    assert_eq!(sim.records.len(), stored, "a rejoin changes no set");
    let presence: Vec<Event> = sim.events(bob);
    assert!(
        presence.iter().any(|e| matches!(
            e,
            Event::Presence { room: r, user, event: PresenceChange::Join }
                if *r == room("zeta") && user.as_str() == "alice"
        )),
        "the members are told: {presence:?}"
    );
    assert_eq!(
        sim.chat.user_rooms(&key("alice")),
        rooms(&["alpha", "zeta"])
    );
}

#[test]
fn the_default_room_is_joined_only_at_an_accounts_first_login() {
    let mut sim = Sim::new(Config::default());
    let (alice, _) = account_login(&mut sim, "alice");
    sim.leave(alice, "general");
    sim.disconnect(alice);
    let (_, events) = account_login(&mut sim, "alice");
    assert_eq!(login_answer(&events), (vec![], vec![]));
    assert!(sim.chat.user_rooms(&key("alice")).is_empty());
    assert_eq!(
        room_records(&sim),
        [set("alice", &["general"]), set("alice", &[])]
    );
}

#[test]
fn rooms_survive_a_restart() {
    let mut sim = Sim::new(Config::default());
    let (alice, _) = account_login(&mut sim, "alice");
    sim.join(alice, "rust");
    sim.disconnect(alice);
    let (carol, _) = account_login(&mut sim, "carol");
    sim.leave(carol, "general");
    // Online at the "restart": its rooms are stored all the same.
    let snapshot = snapshot_of(&sim.records);
    assert_eq!(
        snapshot.account_rooms[&key("alice")],
        rooms(&["general", "rust"])
    );

    let mut snapshot = snapshot;
    // A set stored for a name whose registration was not: nobody's.
    snapshot
        .account_rooms
        .insert(key("mallory"), rooms(&["secret"]));
    let chat = Chat::restore(Config::default(), snapshot).unwrap();
    let mut sim = Sim::with_chat(chat);
    let (_, events) = account_login(&mut sim, "alice");
    assert_eq!(
        login_answer(&events),
        (rooms(&["general", "rust"]), rooms(&["general", "rust"]))
    );
    let (_, events) = account_login(&mut sim, "carol");
    assert_eq!(login_answer(&events), (vec![], vec![]));
    // An account that never logged in before the restart gets the default room.
    let (_, events) = account_login(&mut sim, "dave");
    assert_eq!(
        login_answer(&events),
        (rooms(&["general"]), rooms(&["general"]))
    );
    assert_eq!(room_records(&sim), [set("dave", &["general"])]);
    let mallory = sim.connect();
    sim.command(mallory, Command::login("mallory"));
    let events = sim.events(mallory);
    assert_eq!(
        login_answer(&events),
        (rooms(&["general"]), rooms(&["general"]))
    );
}

#[test]
fn a_guests_rooms_are_never_stored() {
    let mut sim = Sim::new(Config::default());
    let bob = sim.login("bob");
    sim.join(bob, "rust");
    sim.leave(bob, "general");
    sim.disconnect(bob);
    assert_eq!(room_records(&sim), []);
    let bob = sim.connect();
    sim.command(bob, Command::login("bob"));
    let events = sim.events(bob);
    assert_eq!(
        login_answer(&events),
        (rooms(&["general"]), rooms(&["general"])),
        "a guest starts from the default room every time"
    );
    assert_eq!(room_records(&sim), []);
}

#[test]
fn a_guest_who_registers_keeps_its_rooms_as_the_accounts() {
    let mut sim = Sim::new(Config::default());
    let erin = sim.login("Erin");
    sim.join(erin, "rust");
    assert_eq!(room_records(&sim), []);
    sim.command(
        erin,
        Command::Register {
            password: Secret::new("correct horse"),
        },
    );
    let tail: Vec<&Record> = sim.records.iter().rev().take(2).collect();
    assert!(
        matches!(tail[1], Record::Account(a) if a.name.as_str() == "Erin"),
        "{tail:?}"
    );
    assert_eq!(
        tail[0],
        &Record::Rooms {
            owner: key("erin"),
            rooms: rooms(&["general", "rust"]),
        },
        "the rooms are stored with the registration"
    );
    // From now on its changes are stored.
    sim.leave(erin, "general");
    assert_eq!(
        room_records(&sim),
        [set("erin", &["general", "rust"]), set("erin", &["rust"])]
    );
    sim.disconnect(erin);
    let conn = sim.connect();
    sim.command(
        conn,
        Command::Login {
            since: None,
            name: Some("erin".into()),
            password: Some(Secret::new("correct horse")),
            token: None,
        },
    );
    let events = sim.events(conn);
    assert_eq!(login_answer(&events), (rooms(&["rust"]), rooms(&["rust"])));
}

#[test]
fn a_join_or_leave_that_changes_nothing_stores_nothing() {
    let mut sim = Sim::new(Config::default());
    let (a1, _) = account_login(&mut sim, "alice");
    let (a2, _) = account_login(&mut sim, "alice");
    let stored = sim.records.len();
    sim.join(a2, "general");
    sim.leave(a1, "rust");
    assert_eq!(sim.records.len(), stored);
    // A second session's join holds for the account, and is stored once.
    sim.join(a2, "rust");
    assert_eq!(
        room_records(&sim),
        [
            set("alice", &["general"]),
            set("alice", &["general", "rust"])
        ]
    );
    // Ending one of two sessions keeps everything, and stores nothing.
    sim.disconnect(a1);
    assert_eq!(sim.records.len(), stored + 1);
    assert_eq!(
        sim.chat.user_rooms(&key("alice")),
        rooms(&["general", "rust"])
    );
}

#[test]
fn an_unstored_room_set_is_kept_in_memory() {
    let mut sim = Sim::new(Config::default());
    let (alice, _) = account_login(&mut sim, "alice");
    sim.join(alice, "rust");
    let last = sim.records.last().cloned().unwrap();
    assert!(matches!(last, Record::Rooms { .. }));
    sim.input(Input::Unstored(vec![last]));
    assert_eq!(
        sim.chat.user_rooms(&key("alice")),
        rooms(&["general", "rust"])
    );
    sim.disconnect(alice);
    let (_, events) = account_login(&mut sim, "alice");
    assert_eq!(
        login_answer(&events),
        (rooms(&["general", "rust"]), rooms(&["general", "rust"]))
    );
}

#[test]
fn an_unstored_registration_takes_the_room_set_with_it() {
    let mut sim = Sim::new(Config::default());
    let erin = sim.login("erin");
    sim.join(erin, "rust");
    sim.command(
        erin,
        Command::Register {
            password: Secret::new("correct horse"),
        },
    );
    let registration: Vec<Record> = sim.records.iter().rev().take(2).cloned().collect();
    sim.input(Input::Unstored(registration));
    assert!(!sim.chat.is_account(&key("erin")));
    // A guest again: its changes are not stored, and its next login is a guest's.
    let stored = sim.records.len();
    sim.leave(erin, "rust");
    assert_eq!(sim.records.len(), stored);
    sim.disconnect(erin);
    let conn = sim.connect();
    sim.command(conn, Command::login("erin"));
    let events = sim.events(conn);
    assert_eq!(
        login_answer(&events),
        (rooms(&["general"]), rooms(&["general"]))
    );
}
