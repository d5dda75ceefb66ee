//! What the server tells clients: [`Event`], one value per server frame.
//!
//! An event's serde form is exactly the protocol's server frame, `type` included, so the WebSocket
//! transport encodes it with one `serde_json` call and the line transport renders it from the same
//! value. Events are shared (`Arc<Event>`): a broadcast is built once and handed to every
//! recipient. The client's `ref` is not part of the event; it travels beside it in
//! [`Output::Send`](crate::Output::Send), because the same event goes to members who sent no ref.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ChatError, ErrorCode};
use crate::message::{DirectMessage, RoomMessage};
use crate::room_name::RoomName;
use crate::user_name::UserName;

/// A server frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The login succeeded; `rooms` are the rooms joined at login.
    Welcome {
        /// The name: as the user gave it for a guest, as it was registered for an account.
        name: UserName,
        /// The rooms joined at login, sorted: the default room (if any) for a guest and an
        /// account's first login, the account's kept rooms after that.
        rooms: Vec<RoomName>,
        /// Whether the name is an account's (`false`: a guest's).
        account: bool,
    },
    /// The guest name of this connection is now an account.
    Registered {
        /// The name, as it was registered.
        name: UserName,
    },
    /// The user is in `room`: its members (sorted case-insensitively) and recent history.
    Joined {
        /// The room joined.
        room: RoomName,
        /// Every member, the joiner included, sorted by name case-insensitively; of a large
        /// room (more than [`Config::large_room`](crate::Config::large_room) members) only the
        /// first `large_room` of them, and `member_count` says how many there are.
        members: Vec<UserName>,
        /// Only for a large room: how many members it has, the joiner included (`members` then
        /// lists only the first of them; `who` lists all). Absent otherwise, so the frame of a
        /// room at or under the limit is unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member_count: Option<usize>,
        /// The room's last messages, oldest first; after a resume (`since`), the messages the
        /// client missed (the newest of them, up to the resume limit).
        #[serde(serialize_with = "as_message_frames")]
        history: Vec<Arc<RoomMessage>>,
        /// Only after a resume: whether `history` holds every message the client missed
        /// (`false`: the limit cut it, or memory no longer reaches back; the client pages).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        complete: Option<bool>,
    },
    /// The user left `room`.
    Left {
        /// The room left.
        room: RoomName,
    },
    /// Someone joined or left a room the recipient is in.
    Presence {
        /// The room.
        room: RoomName,
        /// Who joined or left.
        user: UserName,
        /// Which of the two.
        event: PresenceChange,
    },
    /// A room message (MESSAGE in the protocol).
    Message(Arc<RoomMessage>),
    /// A direct message (DM in the protocol).
    Dm {
        /// The message.
        #[serde(flatten)]
        message: Arc<DirectMessage>,
        /// On the sender's copy only: the recipient was offline and the DM waits in a mailbox.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        queued: bool,
        /// Sent again at a resume (`since`): the client may have seen it before this
        /// connection.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replay: bool,
    },
    /// A page of a room's history, oldest first.
    History {
        /// The room.
        room: RoomName,
        /// The page.
        #[serde(serialize_with = "as_message_frames")]
        messages: Vec<Arc<RoomMessage>>,
    },
    /// A page of an account's DMs with another user, both directions, oldest first. Its frame's
    /// `type` is `history` too (with `with` where a room page has `room`), so the derived
    /// `Deserialize` cannot tell it from a room page: a client reads it with chat-protocol's
    /// `decode_server_frame`, which can.
    #[serde(rename = "history", skip_deserializing)]
    DmHistory {
        /// The other user.
        with: UserName,
        /// The page.
        #[serde(serialize_with = "as_dm_frames")]
        messages: Vec<Arc<DirectMessage>>,
    },
    /// Every room and its member count, sorted by room name.
    Rooms {
        /// The rooms.
        rooms: Vec<RoomSummary>,
    },
    /// A room's members, sorted case-insensitively.
    Who {
        /// The room.
        room: RoomName,
        /// Its members.
        members: Vec<UserName>,
    },
    /// The answer to `ping`.
    Pong,
    /// The frame broke a rule; the connection stays open.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// A sentence for a person.
        message: String,
    },
}

impl Event {
    /// The `error` event for `error`.
    pub fn error(error: &ChatError) -> Self {
        Event::Error {
            code: error.code(),
            message: error.to_string(),
        }
    }

    /// A DM as it is delivered live: neither queued nor replayed.
    pub fn dm(message: Arc<DirectMessage>) -> Self {
        Event::Dm {
            message,
            queued: false,
            replay: false,
        }
    }

    /// The protocol `type` of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Welcome { .. } => "welcome",
            Event::Registered { .. } => "registered",
            Event::Joined { .. } => "joined",
            Event::Left { .. } => "left",
            Event::Presence { .. } => "presence",
            Event::Message(_) => "message",
            Event::Dm { .. } => "dm",
            Event::History { .. } | Event::DmHistory { .. } => "history",
            Event::Rooms { .. } => "rooms",
            Event::Who { .. } => "who",
            Event::Pong => "pong",
            Event::Error { .. } => "error",
        }
    }
}

/// Whether a presence event is a join or a leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    /// The user joined the room.
    Join,
    /// The user left the room (or disconnected).
    Leave,
}

/// One row of the `rooms` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room.
    pub room: RoomName,
    /// How many users are in it now.
    pub members: usize,
}

/// Messages inside `joined` and `history` are full MESSAGE frames, `"type":"message"` included.
fn as_message_frames<S: Serializer>(
    messages: &[Arc<RoomMessage>],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Frame<'a> {
        Message(&'a RoomMessage),
    }
    serializer.collect_seq(messages.iter().map(|m| Frame::Message(m)))
}

/// DMs inside a DM history page are full DM frames, `"type":"dm"` included.
fn as_dm_frames<S: Serializer>(
    messages: &[Arc<DirectMessage>],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Frame<'a> {
        Dm(&'a DirectMessage),
    }
    serializer.collect_seq(messages.iter().map(|m| Frame::Dm(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageId, Text, Timestamp};
    use serde_json::json;

    fn message() -> Arc<RoomMessage> {
        Arc::new(RoomMessage {
            room: RoomName::parse("rust").unwrap(),
            id: MessageId::new(42).unwrap(),
            from: UserName::parse("alice").unwrap(),
            text: Text::parse("hi", 4096).unwrap(),
            ts: Timestamp::parse("2026-11-22T01:02:03.456Z").unwrap(),
        })
    }

    fn message_json() -> serde_json::Value {
        json!({"type":"message","room":"rust","id":42,"from":"alice","text":"hi",
               "ts":"2026-11-22T01:02:03.456Z"})
    }

    fn round_trip(event: Event, expected: serde_json::Value) {
        let encoded = serde_json::to_value(&event).unwrap();
        assert_eq!(encoded, expected);
        assert_eq!(serde_json::from_value::<Event>(encoded).unwrap(), event);
    }

    #[test]
    fn every_server_frame_has_the_protocol_shape() {
        let rust = RoomName::parse("rust").unwrap();
        let alice = UserName::parse("alice").unwrap();
        let bob = UserName::parse("bob").unwrap();
        round_trip(
            Event::Welcome {
                name: alice.clone(),
                rooms: vec![RoomName::parse("general").unwrap()],
                account: false,
            },
            json!({"type":"welcome","name":"alice","rooms":["general"],"account":false}),
        );
        round_trip(
            Event::Registered {
                name: alice.clone(),
            },
            json!({"type":"registered","name":"alice"}),
        );
        round_trip(
            Event::Joined {
                room: rust.clone(),
                members: vec![alice.clone(), bob.clone()],
                member_count: None,
                history: vec![message()],
                complete: None,
            },
            json!({"type":"joined","room":"rust","members":["alice","bob"],
                   "history":[message_json()]}),
        );
        round_trip(
            Event::Joined {
                room: rust.clone(),
                members: vec![alice.clone()],
                member_count: None,
                history: vec![],
                complete: Some(false),
            },
            json!({"type":"joined","room":"rust","members":["alice"],"history":[],
                   "complete":false}),
        );
        round_trip(
            Event::Left { room: rust.clone() },
            json!({"type":"left","room":"rust"}),
        );
        round_trip(
            Event::Presence {
                room: rust.clone(),
                user: alice.clone(),
                event: PresenceChange::Join,
            },
            json!({"type":"presence","room":"rust","user":"alice","event":"join"}),
        );
        round_trip(Event::Message(message()), message_json());
        let dm = Arc::new(DirectMessage {
            id: MessageId::new(43).unwrap(),
            from: alice.clone(),
            to: bob.clone(),
            text: Text::parse("hi", 4096).unwrap(),
            ts: Timestamp::parse("2026-11-22T01:02:03.456Z").unwrap(),
        });
        let dm_json = json!({"type":"dm","id":43,"from":"alice","to":"bob","text":"hi",
                             "ts":"2026-11-22T01:02:03.456Z"});
        round_trip(Event::dm(dm.clone()), dm_json.clone());
        let mut queued = dm_json.clone();
        queued["queued"] = json!(true);
        round_trip(
            Event::Dm {
                message: dm.clone(),
                queued: true,
                replay: false,
            },
            queued,
        );
        let mut replayed = dm_json.clone();
        replayed["replay"] = json!(true);
        round_trip(
            Event::Dm {
                message: dm.clone(),
                queued: false,
                replay: true,
            },
            replayed,
        );
        let page = Event::DmHistory {
            with: bob.clone(),
            messages: vec![dm],
        };
        let page_json = json!({"type":"history","with":"bob","messages":[dm_json]});
        assert_eq!(serde_json::to_value(&page).unwrap(), page_json);

        round_trip(
            Event::History {
                room: rust.clone(),
                messages: vec![message()],
            },
            json!({"type":"history","room":"rust","messages":[message_json()]}),
        );
        round_trip(
            Event::Rooms {
                rooms: vec![RoomSummary {
                    room: rust.clone(),
                    members: 3,
                }],
            },
            json!({"type":"rooms","rooms":[{"room":"rust","members":3}]}),
        );
        round_trip(
            Event::Who {
                room: rust,
                members: vec![alice, bob],
            },
            json!({"type":"who","room":"rust","members":["alice","bob"]}),
        );
        round_trip(Event::Pong, json!({"type":"pong"}));
        round_trip(
            Event::error(&ChatError::NotLoggedIn),
            json!({"type":"error","code":"not_logged_in","message":"log in first"}),
        );
    }

    #[test]
    fn a_large_rooms_joined_carries_its_member_count() {
        let general = RoomName::parse("general").unwrap();
        let names = ["alice", "bob"].map(|n| UserName::parse(n).unwrap());
        round_trip(
            Event::Joined {
                room: general.clone(),
                members: names.to_vec(),
                member_count: Some(10_000),
                history: vec![],
                complete: None,
            },
            json!({"type":"joined","room":"general","members":["alice","bob"],
                   "member_count":10_000,"history":[]}),
        );
        // Without it (a small room, or an older server) the field is absent and reads as None.
        let small = json!({"type":"joined","room":"general","members":["alice"],"history":[]});
        let Event::Joined { member_count, .. } = serde_json::from_value(small).unwrap() else {
            panic!("a joined frame");
        };
        assert_eq!(member_count, None);
        let text = serde_json::to_string(&Event::Joined {
            room: general,
            members: names[..1].to_vec(),
            member_count: None,
            history: vec![],
            complete: None,
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"joined","room":"general","members":["alice"],"history":[]}"#
        );
    }

    #[test]
    fn the_type_field_comes_first() {
        let text = serde_json::to_string(&Event::Message(message())).unwrap();
        assert!(text.starts_with(r#"{"type":"message","#), "{text}");
    }
}
