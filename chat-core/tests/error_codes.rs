//! Every error code the core raises, each from the command that raises it; the connection stays
//! usable after each one, and the error carries the command's `ref`.

mod sim;

use chat_core::{ChatError, Command, Config, ErrorCode, Event, Ref, Secret};
use sim::Sim;

fn cmd_say(room: &str, text: &str) -> Command {
    Command::Say {
        room: room.into(),
        text: text.into(),
    }
}

fn cmd_dm(to: &str, text: &str) -> Command {
    Command::Dm {
        to: to.into(),
        text: text.into(),
    }
}

#[test]
fn each_rule_broken_gets_its_code_and_the_ref_back() {
    let mut sim = Sim::new(Config {
        mailbox: 1,
        max_text_bytes: 10,
        ..Config::default()
    });
    let anon = sim.connect();
    let alice = sim.login("alice");
    let _bob = sim.login("bob");
    sim.make_account("offline");
    let dora = sim.login_account("dora");
    sim.dm(alice, "offline", "fill");
    sim.quiet();
    let password = |p: &str| Secret::new(p);

    let cases: Vec<(_, Command, ErrorCode)> = vec![
        (anon, Command::join("rust"), ErrorCode::NotLoggedIn),
        (anon, cmd_say("general", "hi"), ErrorCode::NotLoggedIn),
        (anon, Command::Rooms, ErrorCode::NotLoggedIn),
        (anon, Command::login("no spaces"), ErrorCode::InvalidName),
        (anon, Command::login(""), ErrorCode::InvalidName),
        (anon, Command::login("BOB"), ErrorCode::NameTaken),
        (alice, Command::login("carol"), ErrorCode::AlreadyLoggedIn),
        (alice, Command::join("#rust"), ErrorCode::InvalidRoom),
        (
            alice,
            Command::Leave { room: "".into() },
            ErrorCode::InvalidRoom,
        ),
        (
            alice,
            Command::Who { room: "a b".into() },
            ErrorCode::InvalidRoom,
        ),
        (
            alice,
            Command::Leave {
                room: "rust".into(),
            },
            ErrorCode::NotInRoom,
        ),
        (alice, cmd_say("rust", "hi"), ErrorCode::NotInRoom),
        (alice, cmd_say("general", ""), ErrorCode::InvalidText),
        (alice, cmd_say("general", " \n\t"), ErrorCode::InvalidText),
        (
            alice,
            cmd_say("general", "bell\u{7}"),
            ErrorCode::InvalidText,
        ),
        (alice, cmd_say("general", "01234567890"), ErrorCode::TooLong),
        (alice, cmd_dm("bob", "01234567890"), ErrorCode::TooLong),
        (alice, cmd_dm("bob", "\r"), ErrorCode::InvalidText),
        (alice, cmd_dm("b o b", "hi"), ErrorCode::InvalidName),
        (alice, cmd_dm("ALICE", "hi"), ErrorCode::InvalidTarget),
        (alice, cmd_dm("Offline", "hi"), ErrorCode::MailboxFull),
        (alice, cmd_dm("nobody", "hi"), ErrorCode::UserOffline),
        (alice, cmd_dm("nobody", ""), ErrorCode::InvalidText),
        (anon, Command::login("Dora"), ErrorCode::AuthRequired),
        (
            anon,
            Command::Login {
                since: None,
                name: Some("offline".into()),
                password: Some(password("not the one")),
                token: None,
            },
            ErrorCode::AuthFailed,
        ),
        (
            anon,
            Command::Login {
                since: None,
                name: None,
                password: None,
                token: Some(password("forged")),
            },
            ErrorCode::AuthFailed,
        ),
        (
            anon,
            Command::Login {
                since: None,
                name: None,
                password: Some(password("no name at all")),
                token: None,
            },
            ErrorCode::BadFrame,
        ),
        (
            anon,
            Command::Register {
                password: password("long enough"),
            },
            ErrorCode::NotLoggedIn,
        ),
        (
            alice,
            Command::Register {
                password: password("short"),
            },
            ErrorCode::InvalidPassword,
        ),
        (
            dora,
            Command::Register {
                password: password("long enough"),
            },
            ErrorCode::AlreadyRegistered,
        ),
    ];
    for (n, (conn, command, code)) in cases.into_iter().enumerate() {
        let label = format!("{command:?}");
        sim.command_with_ref(conn, command, Ref::number(n as u64));
        let replies = sim.take(conn);
        assert_eq!(replies.len(), 1, "{label}: {replies:?}");
        match &*replies[0].event {
            Event::Error { code: got, message } => {
                assert_eq!(*got, code, "{label}");
                assert!(!message.is_empty());
            }
            other => panic!("{label}: expected {code:?}, got {other:?}"),
        }
        assert_eq!(replies[0].reference, Some(Ref::number(n as u64)), "{label}");
    }

    // Still connected and usable after all of that.
    sim.say(alice, "general", "still here");
    assert_eq!(sim.texts(alice), ["alice: still here"]);
}

#[test]
fn the_codes_raised_by_transports_exist_with_readable_messages() {
    assert_eq!(
        ChatError::BadFrame("not JSON".into()).code(),
        ErrorCode::BadFrame
    );
    assert_eq!(
        ChatError::UnknownType("shout".into()).code(),
        ErrorCode::UnknownType
    );
    assert_eq!(ChatError::RateLimited.code(), ErrorCode::RateLimited);
    assert_eq!(
        Event::error(&ChatError::UnknownType("shout".into())),
        Event::Error {
            code: ErrorCode::UnknownType,
            message: "unknown frame type \"shout\"".into()
        }
    );
}
