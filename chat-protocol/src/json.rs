//! The JSON codec of the WebSocket protocol: client frames decoded into commands, events encoded
//! into server frames, as plain JSON text (the WebSocket framing around it is the transport's).
//!
//! Decoding follows the protocol's error rules exactly: a frame that is not a JSON object, has no
//! string `type`, or has a missing or mistyped field is `bad_frame`; a `type` the server does not
//! know is `unknown_type`; unknown extra fields are ignored. The client's `ref` (a string or
//! number of at most 64 characters; `null` is no ref) is taken out first, so even a rejected
//! frame's error carries it.
//!
//! Encoding writes the event with one `serde_json` call and, for a reply, splices `"ref"` in
//! before the closing brace, so a broadcast's bytes never depend on who receives them.
//!
//! The client's half is here too, for clients written in Rust (tests, bots, the terminal
//! client): [`encode_command`] writes a client frame, [`decode_server_frame`] reads a server
//! frame, keeping a frame of a type it does not know (a newer server's) instead of failing.

use bytes::Bytes;
use chat_core::{ChatError, Command, Event, Ref};
use serde_json::{Map, Value};

/// A client frame the server cannot act on, with the `ref` to answer it with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// What is wrong (`bad_frame` or `unknown_type`).
    pub error: ChatError,
    /// The frame's `ref`, if it had a valid one.
    pub reference: Option<Ref>,
}

/// Decodes one client frame (the text of a WebSocket text frame) into a command and its `ref`.
pub fn decode(text: &str) -> Result<(Command, Option<Ref>), Rejected> {
    let reject = |reference: Option<Ref>, why: String| Rejected {
        error: ChatError::BadFrame(why),
        reference,
    };
    let mut object: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(reject(None, "a frame is a JSON object".into())),
        Err(error) => return Err(reject(None, format!("not JSON: {error}"))),
    };
    let reference = match object.remove("ref") {
        None | Some(Value::Null) => None,
        Some(value) => match serde_json::from_value::<Ref>(value) {
            Ok(reference) => Some(reference),
            Err(error) => return Err(reject(None, error.to_string())),
        },
    };
    match object.get("type") {
        Some(Value::String(kind)) if Command::TYPES.contains(&kind.as_str()) => {}
        Some(Value::String(kind)) => {
            return Err(Rejected {
                error: ChatError::UnknownType(kind.chars().take(64).collect()),
                reference,
            });
        }
        Some(_) => return Err(reject(reference, "\"type\" is a string".into())),
        None => return Err(reject(reference, "a frame needs a \"type\"".into())),
    }
    match serde_json::from_value::<Command>(Value::Object(object)) {
        Ok(command) => Ok((command, reference)),
        Err(error) => Err(reject(reference, error.to_string())),
    }
}

/// Encodes a server frame: the event's JSON, plus `"ref"` when it answers a frame that had one.
pub fn encode(event: &Event, reference: Option<&Ref>) -> Bytes {
    let mut out = Vec::with_capacity(128);
    encode_into(&mut out, event, reference);
    Bytes::from(out)
}

/// Appends what [`encode`] returns to `out`, for a caller that writes a header first (the
/// WebSocket transport reserves room for its frame header, so a frame is one allocation).
pub fn encode_into(out: &mut Vec<u8>, event: &Event, reference: Option<&Ref>) {
    serde_json::to_writer(&mut *out, event).expect("events serialise to JSON without fail");
    if let Some(reference) = reference {
        // Every event is a JSON object.
        splice_ref(out, reference);
    }
}

/// A server frame, as a client reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerFrame {
    /// An event, with the `ref` of the client frame it answers.
    Event {
        /// The event.
        event: Event,
        /// The `ref` it carried.
        reference: Option<Ref>,
    },
    /// A JSON frame this client does not know (a newer server's type or fields), kept whole.
    Unknown(Value),
}

/// Encodes a client frame: the command's JSON, plus `"ref"` when given.
pub fn encode_command(command: &Command, reference: Option<&Ref>) -> String {
    let mut out = serde_json::to_vec(command).expect("commands serialise to JSON without fail");
    if let Some(reference) = reference {
        splice_ref(&mut out, reference);
    }
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Decodes a server frame, as a client: its event and `ref`, or the frame as it is when it is
/// JSON but not an event this version knows. Fails only on text that is not JSON, or a `ref`
/// that is not a string or number.
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, serde_json::Error> {
    let mut value: Value = serde_json::from_str(text)?;
    let reference = match value.as_object_mut().and_then(|o| o.remove("ref")) {
        Some(reference) => Some(serde_json::from_value::<Ref>(reference)?),
        None => None,
    };
    let event = match is_dm_page(&value) {
        true => serde_json::from_value::<DmPage>(value.clone()).map(|page| Event::DmHistory {
            with: page.with,
            messages: page.messages,
        }),
        false => serde_json::from_value::<Event>(value.clone()),
    };
    match event {
        Ok(event) => Ok(ServerFrame::Event { event, reference }),
        Err(_) => Ok(ServerFrame::Unknown(value)),
    }
}

/// A page of DMs is a `history` frame with `with` where a room page has `room`, so the derived
/// `Deserialize` of [`Event`] (which goes by `type`) cannot read it: this does.
#[derive(serde::Deserialize)]
struct DmPage {
    with: chat_core::UserName,
    messages: Vec<std::sync::Arc<chat_core::DirectMessage>>,
}

fn is_dm_page(frame: &Value) -> bool {
    frame.get("type").and_then(Value::as_str) == Some("history") && frame.get("with").is_some()
}

/// Replaces the closing brace of the JSON object in `out` with `,"ref":…}`.
fn splice_ref(out: &mut Vec<u8>, reference: &Ref) {
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(br#","ref":"#);
    serde_json::to_writer(&mut *out, reference).expect("refs serialise to JSON without fail");
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::{ErrorCode, Secret};
    use proptest::prelude::*;
    use serde_json::json;

    fn code(text: &str) -> ErrorCode {
        decode(text).unwrap_err().error.code()
    }

    #[test]
    fn decodes_commands_and_refs() {
        let (command, reference) = decode(r#"{"type":"join","room":"rust","ref":"j1"}"#).unwrap();
        assert_eq!(command, Command::join("rust"));
        assert_eq!(reference, Some(Ref::text("j1").unwrap()));
        let (_, reference) = decode(r#"{"type":"ping","ref":null}"#).unwrap();
        assert_eq!(reference, None, "a null ref is no ref");
        let (command, _) = decode(r#"{"type":"rooms","extra":[1,2]}"#).unwrap();
        assert_eq!(command, Command::Rooms, "unknown fields are ignored");
    }

    #[test]
    fn rejects_by_the_protocol_rules() {
        assert_eq!(code("not json"), ErrorCode::BadFrame);
        assert_eq!(code("[1,2]"), ErrorCode::BadFrame);
        assert_eq!(code(r#""ping""#), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"room":"rust"}"#), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadFrame);
        assert_eq!(
            code(r#"{"type":"say","room":"r","text":5}"#),
            ErrorCode::BadFrame
        );
        assert_eq!(code(r#"{"type":"ping","ref":true}"#), ErrorCode::BadFrame);
        let long = format!(r#"{{"type":"ping","ref":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long), ErrorCode::BadFrame);
        assert_eq!(
            code(r#"{"type":"shout","text":"hi"}"#),
            ErrorCode::UnknownType
        );
    }

    #[test]
    fn since_is_a_non_negative_integer() {
        let (command, _) = decode(r#"{"type":"join","room":"rust","since":120}"#).unwrap();
        assert_eq!(
            command,
            Command::Join {
                room: "rust".into(),
                since: Some(120)
            }
        );
        let (command, _) = decode(r#"{"type":"login","name":"al","since":0}"#).unwrap();
        assert!(matches!(command, Command::Login { since: Some(0), .. }));
        for bad in ["-1", "1.5", "\"7\"", "true", "[]"] {
            let frame = format!(r#"{{"type":"join","room":"rust","since":{bad}}}"#);
            assert_eq!(code(&frame), ErrorCode::BadFrame, "{frame}");
            let frame = format!(r#"{{"type":"login","name":"al","since":{bad}}}"#);
            assert_eq!(code(&frame), ErrorCode::BadFrame, "{frame}");
        }
    }

    #[test]
    fn a_client_reads_a_page_of_dms() {
        let frame = r#"{"type":"history","with":"bob","messages":[{"type":"dm","id":4,"from":"bob","to":"al","text":"hi","ts":"2026-12-01T10:00:00.000Z"}],"ref":3}"#;
        let ServerFrame::Event {
            event: Event::DmHistory { with, messages },
            reference,
        } = decode_server_frame(frame).unwrap()
        else {
            panic!("a DM page");
        };
        assert_eq!((with.as_str(), messages.len()), ("bob", 1));
        assert_eq!(messages[0].id.get(), 4);
        assert_eq!(reference, Some(Ref::number(3)));
        let encoded = encode(
            &Event::DmHistory {
                with,
                messages: messages.clone(),
            },
            None,
        );
        let again = decode_server_frame(std::str::from_utf8(&encoded).unwrap()).unwrap();
        assert!(matches!(
            again,
            ServerFrame::Event {
                event: Event::DmHistory { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_rejected_frame_keeps_its_ref() {
        let rejected = decode(r#"{"type":"shout","ref":12}"#).unwrap_err();
        assert_eq!(rejected.reference, Some(Ref::number(12)));
        let rejected = decode(r#"{"type":"join","ref":"x"}"#).unwrap_err();
        assert_eq!(rejected.reference, Some(Ref::text("x").unwrap()));
    }

    #[test]
    fn encodes_with_and_without_ref() {
        let plain = encode(&Event::Pong, None);
        assert_eq!(&plain[..], br#"{"type":"pong"}"#);
        let with_ref = encode(&Event::Pong, Some(&Ref::text("p\"1").unwrap()));
        let value: Value = serde_json::from_slice(&with_ref).unwrap();
        assert_eq!(value, json!({"type":"pong","ref":"p\"1"}));
    }

    #[test]
    fn encoding_into_a_buffer_appends_after_what_is_there() {
        let mut out = b"head".to_vec();
        encode_into(&mut out, &Event::Pong, Some(&Ref::number(7)));
        assert_eq!(&out[..], br#"head{"type":"pong","ref":7}"#);
    }

    fn command() -> impl Strategy<Value = Command> {
        let s = "\\PC{0,12}";
        prop_oneof![
            s.prop_map(Command::login),
            (
                proptest::option::of(s),
                proptest::option::of(s),
                proptest::option::of(s),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(name, password, token, since)| Command::Login {
                    name,
                    password: password.map(Secret::new),
                    token: token.map(Secret::new),
                    since,
                }),
            s.prop_map(|password| Command::Register {
                password: Secret::new(password)
            }),
            (s, proptest::option::of(any::<u64>()))
                .prop_map(|(room, since)| Command::Join { room, since }),
            s.prop_map(|room| Command::Leave { room }),
            (s, s).prop_map(|(room, text)| Command::Say { room, text }),
            (s, s).prop_map(|(to, text)| Command::Dm { to, text }),
            (
                proptest::option::of(s),
                proptest::option::of(s),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(room, with, before, limit)| Command::History {
                    room,
                    with,
                    before,
                    limit
                }),
            Just(Command::Rooms),
            s.prop_map(|room| Command::Who { room }),
            Just(Command::Ping),
        ]
    }

    #[test]
    fn a_client_reads_events_and_keeps_what_it_does_not_know() {
        let pong = decode_server_frame(r#"{"type":"pong","ref":"p1"}"#).unwrap();
        assert_eq!(
            pong,
            ServerFrame::Event {
                event: Event::Pong,
                reference: Some(Ref::text("p1").unwrap())
            }
        );
        let newer = decode_server_frame(r#"{"type":"typing","user":"bob"}"#).unwrap();
        assert_eq!(
            newer,
            ServerFrame::Unknown(json!({"type":"typing","user":"bob"}))
        );
        assert!(decode_server_frame("not json").is_err());
        assert!(decode_server_frame(r#"{"type":"pong","ref":true}"#).is_err());
    }

    proptest! {
        #[test]
        fn what_a_client_encodes_the_server_decodes(command in command(), reference in proptest::option::of(any::<u64>())) {
            let reference = reference.map(Ref::number);
            let frame = encode_command(&command, reference.as_ref());
            let (decoded, decoded_ref) = decode(&frame).unwrap();
            prop_assert_eq!(decoded, command);
            prop_assert_eq!(decoded_ref, reference);
        }

        #[test]
        fn what_the_server_encodes_a_client_decodes(text in "\\PC{1,40}", reference in proptest::option::of(any::<u64>())) {
            let reference = reference.map(Ref::number);
            let event = Event::Error { code: chat_core::ErrorCode::InvalidText, message: text };
            let frame = encode(&event, reference.as_ref());
            let decoded = decode_server_frame(std::str::from_utf8(&frame).unwrap()).unwrap();
            prop_assert_eq!(decoded, ServerFrame::Event { event, reference });
        }

        #[test]
        fn every_client_frame_round_trips(command in command(), reference in proptest::option::of(any::<u64>())) {
            let mut value = serde_json::to_value(&command).unwrap();
            if let Some(r) = reference {
                value["ref"] = json!(r);
            }
            let (decoded, decoded_ref) = decode(&value.to_string()).unwrap();
            prop_assert_eq!(decoded, command);
            prop_assert_eq!(decoded_ref, reference.map(Ref::number));
        }

        #[test]
        fn login_and_register_frames_decode_or_are_bad_frames(
            kind in prop_oneof![Just("login"), Just("register")],
            name in prop_oneof![Just(json!(null)), Just(json!(7)), Just(json!(["x"])), "\\PC{0,40}".prop_map(Value::from)],
            password in prop_oneof![Just(json!(null)), Just(json!(false)), Just(json!({"a":1})), "\\PC{0,300}".prop_map(Value::from)],
            token in prop_oneof![Just(json!(null)), Just(json!(1.5)), "[A-Za-z0-9._-]{0,80}".prop_map(Value::from)],
        ) {
            let frame = json!({"type": kind, "name": name, "password": password, "token": token});
            match decode(&frame.to_string()) {
                Ok((Command::Login { name: n, password: p, token: t, .. }, None)) => {
                    prop_assert_eq!(kind, "login");
                    prop_assert_eq!(n.map(Value::from), name.as_str().map(Value::from));
                    prop_assert_eq!(p.map(|p| p.expose().to_owned()), password.as_str().map(str::to_owned));
                    prop_assert_eq!(t.map(|t| t.expose().to_owned()), token.as_str().map(str::to_owned));
                }
                Ok((Command::Register { password: p }, None)) => {
                    prop_assert_eq!(kind, "register");
                    prop_assert_eq!(Some(p.expose()), password.as_str());
                }
                Ok(other) => prop_assert!(false, "{:?}", other),
                Err(rejected) => {
                    prop_assert_eq!(rejected.error.code(), ErrorCode::BadFrame);
                    // A mistyped field, or a register without a password.
                    let mistyped = |v: &Value| !(v.is_null() || v.is_string());
                    prop_assert!(
                        mistyped(&password)
                            || (kind == "login" && (mistyped(&name) || mistyped(&token)))
                            || (kind == "register" && password.is_null())
                    );
                    // What the client sent never shows in the error.
                    if let Some(secret) = password.as_str().filter(|p| p.len() > 3) {
                        prop_assert!(!rejected.error.to_string().contains(secret));
                    }
                }
            }
        }

        #[test]
        fn decoding_never_panics(text in "\\PC{0,200}") {
            let _ = decode(&text);
        }

        #[test]
        fn decoding_arbitrary_objects_never_panics(
            kind in prop_oneof![Just("say".to_owned()), Just("history".to_owned()), "[a-z]{0,8}"],
            field in "[a-z]{1,6}",
            value in prop_oneof![Just(json!(null)), Just(json!(1.5)), Just(json!([])), Just(json!({})), "\\PC{0,10}".prop_map(Value::from)],
        ) {
            let frame = json!({"type": kind, field: value});
            let _ = decode(&frame.to_string());
        }
    }
}
