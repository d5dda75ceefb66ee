//! How events look on a line client: `[HH:MM:SS] #room <alice> text`, `* ` for information,
//! `! ` for errors, one output line per line of a multi-line text.
//!
//! [`render`] is called once per event, not once per recipient: what depends on the recipient is
//! decided by the event's [`SendKind`]. A sender's own room message ([`SendKind::Echo`]) shows
//! nothing (their terminal already shows what they typed), and a DM's echo becomes a delivery
//! notice. What the user did in another session ([`SendKind::Copy`]) is told in the first person:
//! `* You joined #rust` (with the room's recent messages), `* You left #rust`, and a DM it sent as
//! `[HH:MM:SS] [dm to bob] <alice> text`.

use std::fmt::Write as _;

use chat_core::{DirectMessage, Event, PresenceChange, RoomMessage, SendKind, Timestamp};

/// The lines for `event`, each ending in `\n`; `None` when a line client is shown nothing.
/// `answers_command` says the event answers a command the session sent (it has a `ref`): the
/// `joined` that answers `/join` announces the room, the one sent at login does not; the `left`
/// that answers `/leave` is announced, that of a room `/join` moved out of (sent without a `ref`)
/// is not.
pub fn render(event: &Event, answers_command: bool, kind: SendKind) -> Option<String> {
    let mut out = String::new();
    match event {
        Event::Welcome { name, rooms, .. } => match rooms.first() {
            Some(room) => info(
                &mut out,
                &format!("Welcome, {name}! You are in #{room}. Type /help for commands."),
            ),
            None => info(
                &mut out,
                &format!("Welcome, {name}! Type /join ROOM to enter a room, /help for commands."),
            ),
        },
        Event::Registered { name } => info(&mut out, &format!("{name} is now registered")),
        // Members are not shown (`/who` lists them), so neither is a large room's
        // `member_count`.
        Event::Joined { room, history, .. } if kind == SendKind::Copy => {
            info(&mut out, &format!("You joined #{room}"));
            for message in history {
                room_message(&mut out, message);
            }
        }
        Event::Joined { room, history, .. } => {
            if answers_command {
                info(&mut out, &format!("You are now in #{room}"));
            }
            for message in history {
                room_message(&mut out, message);
            }
        }
        Event::Left { room } if answers_command || kind == SendKind::Copy => {
            info(&mut out, &format!("You left #{room}"))
        }
        Event::Left { .. } => {}
        Event::Presence { room, user, event } => {
            let verb = match event {
                PresenceChange::Join => "joined",
                PresenceChange::Leave => "left",
            };
            info(&mut out, &format!("{user} {verb} #{room}"));
        }
        Event::Message(_) if kind == SendKind::Echo => {}
        Event::Message(message) => room_message(&mut out, message),
        Event::Dm {
            message, queued, ..
        } if kind == SendKind::Echo => {
            let notice = if *queued {
                format!("{} is offline; message queued", message.to)
            } else {
                format!("dm to {} delivered", message.to)
            };
            info(&mut out, &notice);
        }
        Event::Dm { message, .. } if kind == SendKind::Copy => sent_message(&mut out, message),
        Event::Dm { message, .. } => direct_message(&mut out, message),
        Event::History { room, messages } => {
            if messages.is_empty() {
                info(&mut out, &format!("no earlier messages in #{room}"));
            }
            for message in messages {
                room_message(&mut out, message);
            }
        }
        Event::DmHistory { with, messages } => {
            if messages.is_empty() {
                info(&mut out, &format!("no earlier DMs with {with}"));
            }
            for message in messages {
                match message.from.key() == with.key() {
                    true => direct_message(&mut out, message),
                    false => sent_message(&mut out, message),
                }
            }
        }
        Event::Rooms { rooms } => {
            if rooms.is_empty() {
                info(&mut out, "no rooms yet");
            }
            for summary in rooms {
                let members = match summary.members {
                    1 => "1 member".to_owned(),
                    n => format!("{n} members"),
                };
                info(&mut out, &format!("#{} ({members})", summary.room));
            }
        }
        Event::Who { room, members } => {
            if members.is_empty() {
                info(&mut out, &format!("nobody is in #{room}"));
            } else {
                let names: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
                info(&mut out, &format!("in #{room}: {}", names.join(", ")));
            }
        }
        Event::Pong => info(&mut out, "pong"),
        Event::Error { message, .. } => error(&mut out, message),
    }
    (!out.is_empty()).then_some(out)
}

/// Information, `* …`: one line per line of `text`.
pub fn info(out: &mut String, text: &str) {
    prefixed(out, "* ", text);
}

/// An error, `! …`: one line per line of `text`.
pub fn error(out: &mut String, text: &str) {
    prefixed(out, "! ", text);
}

fn prefixed(out: &mut String, prefix: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{prefix}{line}");
    }
}

fn clock(ts: Timestamp) -> String {
    let (h, m, s) = ts.time_of_day();
    format!("[{h:02}:{m:02}:{s:02}]")
}

fn room_message(out: &mut String, message: &RoomMessage) {
    let prefix = format!("{} #{} <{}>", clock(message.ts), message.room, message.from);
    for line in message.text.lines() {
        let _ = writeln!(out, "{prefix} {line}");
    }
}

fn direct_message(out: &mut String, message: &DirectMessage) {
    let prefix = format!("{} [dm] <{}>", clock(message.ts), message.from);
    for line in message.text.lines() {
        let _ = writeln!(out, "{prefix} {line}");
    }
}

/// A DM the user sent from another session.
fn sent_message(out: &mut String, message: &DirectMessage) {
    let prefix = format!(
        "{} [dm to {}] <{}>",
        clock(message.ts),
        message.to,
        message.from
    );
    for line in message.text.lines() {
        let _ = writeln!(out, "{prefix} {line}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use chat_core::{ChatError, MessageId, RoomName, RoomSummary, Text, UserName};

    fn ts() -> Timestamp {
        Timestamp::parse("2026-11-22T09:05:07.123Z").unwrap()
    }

    fn message(text: &str) -> Arc<RoomMessage> {
        Arc::new(RoomMessage {
            room: RoomName::parse("general").unwrap(),
            id: MessageId::new(1).unwrap(),
            from: UserName::parse("alice").unwrap(),
            text: Text::parse(text, 4096).unwrap(),
            ts: ts(),
        })
    }

    fn dm(queued: bool) -> Event {
        Event::Dm {
            message: Arc::new(DirectMessage {
                id: MessageId::new(2).unwrap(),
                from: UserName::parse("alice").unwrap(),
                to: UserName::parse("Bob").unwrap(),
                text: Text::parse("psst", 4096).unwrap(),
                ts: ts(),
            }),
            queued,
            replay: false,
        }
    }

    fn shown(event: &Event, kind: SendKind) -> Option<String> {
        render(event, false, kind)
    }

    #[test]
    fn room_messages_have_a_utc_clock_and_one_line_per_text_line() {
        assert_eq!(
            shown(&Event::Message(message("hi\nthere")), SendKind::Push).unwrap(),
            "[09:05:07] #general <alice> hi\n[09:05:07] #general <alice> there\n"
        );
        assert_eq!(
            shown(&Event::Message(message("hi")), SendKind::Echo),
            None,
            "no echo"
        );
    }

    #[test]
    fn dms_show_to_the_recipient_and_a_notice_to_the_sender() {
        assert_eq!(
            shown(&dm(false), SendKind::Push).unwrap(),
            "[09:05:07] [dm] <alice> psst\n"
        );
        assert_eq!(
            shown(&dm(false), SendKind::Echo).unwrap(),
            "* dm to Bob delivered\n"
        );
        assert_eq!(
            shown(&dm(true), SendKind::Echo).unwrap(),
            "* Bob is offline; message queued\n"
        );
        assert_eq!(
            shown(&dm(false), SendKind::Backlog).unwrap(),
            "[09:05:07] [dm] <alice> psst\n"
        );
    }

    #[test]
    fn what_the_user_did_in_another_session_is_told_in_the_first_person() {
        let general = RoomName::parse("general").unwrap();
        let joined = Event::Joined {
            complete: None,
            room: general.clone(),
            members: vec![UserName::parse("alice").unwrap()],
            member_count: None,
            history: vec![message("old")],
        };
        assert_eq!(
            shown(&joined, SendKind::Copy).unwrap(),
            "* You joined #general\n[09:05:07] #general <alice> old\n"
        );
        let left = Event::Left { room: general };
        assert_eq!(
            shown(&left, SendKind::Copy).unwrap(),
            "* You left #general\n"
        );
        assert_eq!(
            shown(&dm(false), SendKind::Copy).unwrap(),
            "[09:05:07] [dm to Bob] <alice> psst\n"
        );
    }

    #[test]
    fn information_and_errors() {
        let general = RoomName::parse("general").unwrap();
        let bob = UserName::parse("bob").unwrap();
        let welcome = Event::Welcome {
            name: UserName::parse("alice").unwrap(),
            rooms: vec![general.clone()],
            account: false,
        };
        assert_eq!(
            shown(&welcome, SendKind::Reply).unwrap(),
            "* Welcome, alice! You are in #general. Type /help for commands.\n"
        );
        let presence = Event::Presence {
            room: general.clone(),
            user: bob.clone(),
            event: PresenceChange::Leave,
        };
        assert_eq!(
            shown(&presence, SendKind::Push).unwrap(),
            "* bob left #general\n"
        );
        let joined = Event::Joined {
            complete: None,
            room: general.clone(),
            members: vec![bob.clone()],
            member_count: None,
            history: vec![message("old")],
        };
        assert_eq!(
            render(&joined, true, SendKind::Backlog).unwrap(),
            "* You are now in #general\n[09:05:07] #general <alice> old\n"
        );
        assert_eq!(
            render(&joined, false, SendKind::Backlog).unwrap(),
            "[09:05:07] #general <alice> old\n"
        );
        // `joined` never lists members on a line client (`/who` does), so a large room's
        // bounded list and `member_count` show the same.
        let large = Event::Joined {
            complete: None,
            room: general.clone(),
            members: vec![bob.clone()],
            member_count: Some(10_000),
            history: vec![message("old")],
        };
        for answers_command in [true, false] {
            assert_eq!(
                render(&large, answers_command, SendKind::Backlog),
                render(&joined, answers_command, SendKind::Backlog)
            );
        }
        let left = Event::Left {
            room: general.clone(),
        };
        assert_eq!(
            render(&left, true, SendKind::Reply).unwrap(),
            "* You left #general\n"
        );
        assert_eq!(render(&left, false, SendKind::Reply), None);
        let rooms = Event::Rooms {
            rooms: vec![RoomSummary {
                room: general.clone(),
                members: 1,
            }],
        };
        assert_eq!(
            shown(&rooms, SendKind::Reply).unwrap(),
            "* #general (1 member)\n"
        );
        let who = Event::Who {
            room: general,
            members: vec![bob, UserName::parse("carol").unwrap()],
        };
        assert_eq!(
            shown(&who, SendKind::Reply).unwrap(),
            "* in #general: bob, carol\n"
        );
        assert_eq!(
            shown(&Event::error(&ChatError::InvalidTarget), SendKind::Reply).unwrap(),
            "! you cannot send a direct message to yourself\n"
        );
    }

    #[test]
    fn a_text_of_several_lines_is_one_prefixed_line_each() {
        let mut out = String::new();
        info(&mut out, "one\ntwo");
        error(&mut out, "three\n");
        assert_eq!(out, "* one\n* two\n! three\n");
    }
}
