//! What clients ask of the server: [`Command`], and the [`Ref`] a client may attach to it.
//!
//! A command's serde form is the protocol's client frame (`{"type":"join","room":"rust"}`), so a
//! JSON transport decodes straight into it and a line transport builds the same values from
//! `/join rust`. Fields hold what the client sent, unvalidated: the core checks them and answers
//! with the precise error code (`invalid_room`, `too_long`, …) rather than a generic decode error.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::identity::Secret;

/// A client's request, one per frame or line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Take a name for this connection: as a guest (a name alone), with the name's password, or
    /// with a token (which names the user; `name` and `password` are then ignored).
    Login {
        /// The name wanted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The account's password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// A signed token (a JWT for the bundled server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        /// Resume: the last message id the client saw. Each `joined` frame of the login then
        /// carries what the client missed in that room, and an account's missed DMs follow.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Make the guest name this connection is logged in with an account, with this password.
    Register {
        /// The password (8–256 bytes of UTF-8).
        password: Secret,
    },
    /// Join a room (and receive its members and recent history).
    Join {
        /// The room, in any case.
        room: String,
        /// Resume: the last message id the client saw; the `joined` frame then carries the
        /// room's messages after it instead of the last few.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room, in any case.
        room: String,
    },
    /// Say something in a room one is a member of.
    Say {
        /// The room, in any case.
        room: String,
        /// The message.
        text: String,
    },
    /// Send a direct message.
    Dm {
        /// The recipient's name, in any case.
        to: String,
        /// The message.
        text: String,
    },
    /// Page through a room's history, or (with `with`) an account's DMs with another account.
    History {
        /// The room, in any case (a room page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The other user, in any case (a DM page). A frame names a room or a user, not both.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        /// Only messages with a smaller id (default: from the newest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// How many messages at most (default 50; clamped to 1–500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<i64>,
    },
    /// List the rooms and their member counts.
    Rooms,
    /// List a room's members.
    Who {
        /// The room, in any case.
        room: String,
    },
    /// Ask for a `pong`.
    Ping,
}

impl Command {
    /// Every `type` a client frame may have. A transport that meets another `type` answers
    /// `unknown_type`; a known type with a missing or mistyped field is `bad_frame`.
    pub const TYPES: [&'static str; 10] = [
        "login", "register", "join", "leave", "say", "dm", "history", "rooms", "who", "ping",
    ];

    /// A guest login: `name` alone.
    pub fn login(name: impl Into<String>) -> Self {
        Command::Login {
            name: Some(name.into()),
            password: None,
            token: None,
            since: None,
        }
    }

    /// A plain `join` of `room` (no resume).
    pub fn join(room: impl Into<String>) -> Self {
        Command::Join {
            room: room.into(),
            since: None,
        }
    }

    /// A page of `room`'s history.
    pub fn room_history(room: impl Into<String>, before: Option<u64>, limit: Option<i64>) -> Self {
        Command::History {
            room: Some(room.into()),
            with: None,
            before,
            limit,
        }
    }

    /// The protocol `type` of this command.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Login { .. } => "login",
            Command::Register { .. } => "register",
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Say { .. } => "say",
            Command::Dm { .. } => "dm",
            Command::History { .. } => "history",
            Command::Rooms => "rooms",
            Command::Who { .. } => "who",
            Command::Ping => "ping",
        }
    }

    /// Whether handling this command only reads the chat's state (`ping`, `who`, `rooms`): it
    /// changes nothing, so its answer depends on nothing but what came before it. A runtime
    /// that keeps several copies of one chat in step (a cluster) may answer it from its own
    /// copy alone, without telling the others.
    pub fn reads_only(&self) -> bool {
        matches!(self, Command::Ping | Command::Who { .. } | Command::Rooms)
    }
}

/// The longest `ref`, in characters.
pub const MAX_REF_LEN: usize = 64;

/// A client's correlation tag: a string or number of at most 64 characters, echoed on the reply
/// to the frame that carried it (or on the error it caused).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Ref(RefValue);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum RefValue {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(Box<str>),
}

/// Why a value is not a valid `ref`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a ref is a string or number of at most {MAX_REF_LEN} characters")]
pub struct RefError;

impl Ref {
    /// A string ref, if it has at most 64 characters.
    pub fn text(text: &str) -> Result<Self, RefError> {
        if text.chars().count() > MAX_REF_LEN {
            return Err(RefError);
        }
        Ok(Ref(RefValue::Text(text.into())))
    }

    /// A numeric ref.
    pub fn number(n: u64) -> Self {
        Ref(RefValue::Unsigned(n))
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            RefValue::Unsigned(n) => n.fmt(f),
            RefValue::Signed(n) => n.fmt(f),
            RefValue::Float(n) => n.fmt(f),
            RefValue::Text(t) => t.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value =
            RefValue::deserialize(deserializer).map_err(|_| serde::de::Error::custom(RefError))?;
        match value {
            RefValue::Text(t) => Ref::text(&t).map_err(serde::de::Error::custom),
            // Any integer, and any float in its shortest form, is well under 64 characters.
            number => Ok(Ref(number)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_every_client_frame_of_the_protocol() {
        let cases = [
            (
                json!({"type":"login","name":"alice"}),
                Command::login("alice"),
            ),
            (
                json!({"type":"login","name":"alice","password":"correct horse"}),
                Command::Login {
                    since: None,
                    name: Some("alice".into()),
                    password: Some(Secret::new("correct horse")),
                    token: None,
                },
            ),
            (
                json!({"type":"login","token":"a.b.c"}),
                Command::Login {
                    since: None,
                    name: None,
                    password: None,
                    token: Some(Secret::new("a.b.c")),
                },
            ),
            (
                json!({"type":"register","password":"correct horse"}),
                Command::Register {
                    password: Secret::new("correct horse"),
                },
            ),
            (json!({"type":"join","room":"rust"}), Command::join("rust")),
            (
                json!({"type":"leave","room":"rust"}),
                Command::Leave {
                    room: "rust".into(),
                },
            ),
            (
                json!({"type":"say","room":"rust","text":"hi"}),
                Command::Say {
                    room: "rust".into(),
                    text: "hi".into(),
                },
            ),
            (
                json!({"type":"dm","to":"bob","text":"hi"}),
                Command::Dm {
                    to: "bob".into(),
                    text: "hi".into(),
                },
            ),
            (
                json!({"type":"history","room":"rust","before":120,"limit":50}),
                Command::room_history("rust", Some(120), Some(50)),
            ),
            (
                json!({"type":"history","room":"rust"}),
                Command::room_history("rust", None, None),
            ),
            (json!({"type":"rooms"}), Command::Rooms),
            (
                json!({"type":"who","room":"rust"}),
                Command::Who {
                    room: "rust".into(),
                },
            ),
            (json!({"type":"ping"}), Command::Ping),
        ];
        for (frame, command) in cases {
            assert_eq!(
                serde_json::from_value::<Command>(frame.clone()).unwrap(),
                command
            );
            assert_eq!(serde_json::to_value(&command).unwrap(), frame);
            assert!(Command::TYPES.contains(&command.kind()));
        }
    }

    #[test]
    fn ignores_unknown_fields_and_refuses_mistyped_ones() {
        let extra = json!({"type":"ping","ref":7,"colour":"blue"});
        assert_eq!(
            serde_json::from_value::<Command>(extra).unwrap(),
            Command::Ping
        );
        assert!(serde_json::from_value::<Command>(json!({"type":"join"})).is_err());
        assert!(serde_json::from_value::<Command>(json!({"type":"join","room":5})).is_err());
        assert!(
            serde_json::from_value::<Command>(json!({"type":"history","room":"a","limit":"x"}))
                .is_err()
        );
    }

    #[test]
    fn refs_are_short_strings_or_numbers_and_echo_unchanged() {
        for ok in [
            json!(1),
            json!(-3),
            json!(2.5),
            json!("abc"),
            json!("x".repeat(64)),
        ] {
            let r: Ref = serde_json::from_value(ok.clone()).unwrap();
            assert_eq!(serde_json::to_value(&r).unwrap(), ok);
        }
        for bad in [
            json!("x".repeat(65)),
            json!(true),
            json!([1]),
            json!({"a":1}),
        ] {
            assert!(serde_json::from_value::<Ref>(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            Ref::text("é".repeat(64).as_str()).map(|r| r.to_string()),
            Ok("é".repeat(64))
        );
    }
}
