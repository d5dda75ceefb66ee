//! Accounts: registering, logins checked off the core, names that stay with their owner, and
//! offline DMs kept only where a name has an owner.

mod sim;

use chat_core::{
    Command, Config, DirectMessage, ErrorCode, Event, Input, MessageId, Record, Secret, Snapshot,
    Text, Timestamp, UserName,
};
use sim::{Check, Sim};

fn password_login(name: &str, password: &str) -> Command {
    Command::Login {
        since: None,
        name: Some(name.into()),
        password: Some(Secret::new(password)),
        token: None,
    }
}

fn register(password: &str) -> Command {
    Command::Register {
        password: Secret::new(password),
    }
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

#[test]
fn a_registered_name_needs_its_password_and_keeps_its_spelling() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("Alice");
    sim.command(alice, register("correct horse"));
    assert_eq!(
        sim.events(alice),
        [Event::Registered {
            name: UserName::parse("Alice").unwrap()
        }]
    );
    let stored = sim.records.iter().find_map(|r| match r {
        Record::Account(account) => Some(account.clone()),
        _ => None,
    });
    let stored = stored.expect("the account is stored");
    assert_eq!(stored.name.as_str(), "Alice");
    assert_eq!(
        stored.hash.as_ref().map(|h| h.as_str()),
        Some("fake:correct horse"),
        "the store gets what the authenticator made of the password, never the password"
    );
    sim.disconnect(alice);

    let other = sim.connect();
    sim.command(other, Command::login("alice"));
    assert_eq!(sim.error_code(other), ErrorCode::AuthRequired);
    sim.command(other, password_login("alice", "wrong horse"));
    assert_eq!(sim.error_code(other), ErrorCode::AuthFailed);
    sim.command(other, password_login("ALICE", "correct horse"));
    let events = sim.events(other);
    assert_eq!(
        events[0],
        Event::Welcome {
            name: UserName::parse("Alice").unwrap(),
            rooms: vec!["general".parse().unwrap()],
            account: true,
        },
        "shown as registered, whatever the case of the login"
    );
}

#[test]
fn commands_sent_while_a_login_is_checked_are_answered_after_it_in_order() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    sim.command(alice, register("correct horse"));
    sim.disconnect(alice);
    sim.hold_checks = true;

    let again = sim.connect();
    sim.command(again, password_login("alice", "correct horse"));
    sim.join(again, "rust");
    sim.say(again, "rust", "first words");
    assert!(
        sim.events(again).is_empty(),
        "nothing is answered before the login"
    );
    assert!(matches!(sim.checks.front(), Some(Check::Login { .. })));

    sim.answer_checks();
    let events = sim.events(again);
    assert_eq!(kinds(&events), ["welcome", "joined", "joined", "message"]);
}

#[test]
fn a_failed_check_answers_the_login_and_then_the_waiting_commands() {
    let mut sim = Sim::new(Config::default());
    sim.hold_checks = true;
    let conn = sim.connect();
    sim.command(conn, password_login("nobody", "whatever it is"));
    sim.command(conn, Command::Rooms);
    sim.answer_checks();
    let events = sim.events(conn);
    assert!(
        matches!(
            &events[..],
            [
                Event::Error {
                    code: ErrorCode::AuthFailed,
                    ..
                },
                Event::Error {
                    code: ErrorCode::NotLoggedIn,
                    ..
                }
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn an_answer_for_a_connection_that_left_is_dropped() {
    let mut sim = Sim::new(Config::default());
    sim.hold_checks = true;
    let conn = sim.connect();
    sim.command(conn, Sim::token_login("bob"));
    sim.disconnect(conn);
    // The sim panics if anything is addressed to a closed connection.
    sim.answer_checks();
    assert_eq!(sim.chat.online_count(), 0);
    assert!(!sim.chat.is_account(&UserName::parse("bob").unwrap().key()));
}

#[test]
fn a_token_makes_its_name_an_account_unless_a_guest_holds_it() {
    let mut sim = Sim::new(Config::default());
    let guest = sim.login("bob");
    let owner = sim.connect();
    sim.command(owner, Sim::token_login("Bob"));
    assert_eq!(sim.error_code(owner), ErrorCode::NameTaken);
    sim.disconnect(guest);

    sim.command(owner, Sim::token_login("Bob"));
    assert!(matches!(
        &sim.events(owner)[0],
        Event::Welcome { account: true, name, .. } if name.as_str() == "Bob"
    ));
    assert!(
        sim.records.iter().any(
            |r| matches!(r, Record::Account(a) if a.name.as_str() == "Bob" && a.hash.is_none())
        )
    );
    sim.disconnect(owner);
    let guest = sim.connect();
    sim.command(guest, Command::login("bob"));
    assert_eq!(sim.error_code(guest), ErrorCode::AuthRequired);
}

#[test]
fn offline_dms_are_kept_only_for_names_with_an_owner() {
    let mut sim = Sim::new(Config::default());
    sim.make_account("owned");
    let alice = sim.login("alice");
    sim.dm(alice, "owned", "kept");
    sim.dm(alice, "drifter", "not kept");
    let events = sim.events(alice);
    assert!(matches!(&events[0], Event::Dm { queued: true, .. }));
    assert!(matches!(
        &events[1],
        Event::Error {
            code: ErrorCode::UserOffline,
            ..
        }
    ));
    assert_eq!(sim.chat.queued_total(), 1);

    // A guest of the same name gets nothing of the account's mailbox: it cannot log in.
    let guest = sim.connect();
    sim.command(guest, Command::login("owned"));
    assert_eq!(sim.error_code(guest), ErrorCode::AuthRequired);
    let owner = sim.connect();
    sim.command(owner, Sim::token_login("owned"));
    assert_eq!(kinds(&sim.events(owner)), ["welcome", "joined", "dm"]);
}

#[test]
fn with_guests_off_only_accounts_log_in_and_any_offline_name_gets_mail() {
    let mut sim = Sim::new(Config {
        guests: false,
        ..Config::default()
    });
    let conn = sim.connect();
    sim.command(conn, Command::login("alice"));
    assert_eq!(sim.error_code(conn), ErrorCode::AuthRequired);
    let alice = sim.login_account("alice");
    sim.dm(alice, "newcomer", "welcome aboard");
    assert!(matches!(
        &sim.events(alice)[..],
        [Event::Dm { queued: true, .. }]
    ));
}

#[test]
fn dms_an_older_server_kept_for_a_guest_name_wait_for_its_owner() {
    let mut snapshot = Snapshot::default();
    let dm = DirectMessage {
        id: MessageId::new(7).unwrap(),
        from: UserName::parse("alice").unwrap(),
        to: UserName::parse("carol").unwrap(),
        text: Text::parse("from before accounts", 4096).unwrap(),
        ts: Timestamp::from_unix_millis(7),
    };
    snapshot.mailboxes.insert(dm.owner(), vec![dm.clone()]);
    let mut sim = Sim::with_chat(chat_core::Chat::restore(Config::default(), snapshot).unwrap());

    let carol = sim.connect();
    sim.command(carol, Command::login("carol"));
    assert_eq!(
        kinds(&sim.events(carol)),
        ["welcome", "joined"],
        "a guest is not the name's owner"
    );
    assert_eq!(sim.chat.mailbox_len(&dm.owner()), 1, "still kept");

    sim.command(carol, register("carol's secret"));
    let events = sim.events(carol);
    assert_eq!(kinds(&events), ["registered", "dm"]);
    assert!(matches!(&events[1], Event::Dm { message, .. } if message.id == dm.id));
    assert_eq!(sim.chat.mailbox_len(&dm.owner()), 0);
}

#[test]
fn a_registration_the_store_did_not_keep_is_forgotten() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    sim.command(alice, register("correct horse"));
    let account = sim
        .records
        .iter()
        .find(|r| matches!(r, Record::Account(_)))
        .cloned()
        .expect("an account record");
    sim.input(Input::Unstored(vec![account]));
    let second = sim.connect();
    sim.command(second, Sim::token_login("alice"));
    assert_eq!(
        sim.error_code(second),
        ErrorCode::NameTaken,
        "no second session for a name that is not an account after all"
    );
    assert!(
        !sim.chat
            .is_account(&UserName::parse("alice").unwrap().key())
    );
    sim.quiet();
    sim.command(alice, register("correct horse"));
    assert_eq!(
        kinds(&sim.events(alice)),
        ["registered"],
        "it may try again"
    );
}

#[test]
fn an_account_registers_nothing_twice() {
    let mut sim = Sim::new(Config::default());
    let alice = sim.login("alice");
    sim.command(alice, register("correct horse"));
    sim.quiet();
    sim.command(alice, register("another horse"));
    assert_eq!(sim.error_code(alice), ErrorCode::AlreadyRegistered);
    let accounts = sim
        .records
        .iter()
        .filter(|r| matches!(r, Record::Account(_)))
        .count();
    assert_eq!(accounts, 1);
}
