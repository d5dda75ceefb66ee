//! JSON frames: client frames decoded into commands, events encoded into server frames.
//!
//! Decoding follows the protocol's error rules exactly: a frame that is not a JSON object, has no
//! string `type`, or has a missing or mistyped field is `bad_frame`; a `type` the server does not
//! know is `unknown_type`; unknown extra fields are ignored. The client's `ref` (a string or
//! number of at most 64 characters; `null` is no ref) is taken out first, so even a rejected
//! frame's error carries it.
//!
//! Encoding writes the event with one `serde_json` call and, for a reply, splices `"ref"` in
//! before the closing brace, so a broadcast's bytes never depend on who receives them.

use bytes::Bytes;
use chat_core::{ChatError, Command, Event, Ref, SendKind};
use chat_runtime::WireFormat;
use serde_json::{Map, Value};

/// A client frame the server cannot act on, with the `ref` to answer it with.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// What is wrong (`bad_frame` or `unknown_type`).
    pub error: ChatError,
    /// The frame's `ref`, if it had a valid one.
    pub reference: Option<Ref>,
}

/// Decodes one text frame into a command and its `ref`.
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
    Bytes::from(json(Vec::with_capacity(128), event, reference))
}

/// The longest WebSocket frame header a server writes (no mask): 2 bytes, 2 more for lengths
/// from 126 to 65,535, 8 more beyond.
const MAX_HEADER: usize = 10;

/// Encodes a server frame as a complete WebSocket text frame, header included, ready to be
/// written to the socket as it is. The runtime hands these bytes to every recipient of a
/// broadcast, so the framing is done once per event rather than once per recipient.
pub fn encode_frame(event: &Event, reference: Option<&Ref>) -> Bytes {
    let mut out = Vec::with_capacity(128 + MAX_HEADER);
    out.resize(MAX_HEADER, 0);
    let out = json(out, event, reference);
    let len = out.len() - MAX_HEADER;
    // FIN and the text opcode, then the payload length in the shortest form (RFC 6455, 5.2).
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x81;
    let header_len = if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = MAX_HEADER - header_len;
    let mut out = out;
    out[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
    Bytes::from(out).slice(start..)
}

/// The payload of a frame [`encode_frame`] made (the JSON text), for tests and tools.
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    let skip = match frame.get(1) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(skip..).unwrap_or(&[])
}

/// Appends the event's JSON, and its `ref`, to `out`.
fn json(mut out: Vec<u8>, event: &Event, reference: Option<&Ref>) -> Vec<u8> {
    serde_json::to_writer(&mut out, event).expect("events serialise to JSON without fail");
    if let Some(reference) = reference {
        // Every event is a JSON object: replace its closing brace with `,"ref":…}`.
        debug_assert_eq!(out.last(), Some(&b'}'));
        out.pop();
        out.extend_from_slice(br#","ref":"#);
        serde_json::to_writer(&mut out, reference).expect("refs serialise to JSON without fail");
        out.push(b'}');
    }
    out
}

/// The WebSocket transport's [`WireFormat`]: every event, as a JSON text frame with its
/// WebSocket header, so the session writes the runtime's bytes straight to the socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormat;

impl WireFormat for JsonFormat {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, event: &Event, reference: Option<&Ref>, _kind: SendKind) -> Option<Bytes> {
        Some(encode_frame(event, reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::ErrorCode;
    use proptest::prelude::*;
    use serde_json::json;

    fn code(text: &str) -> ErrorCode {
        decode(text).unwrap_err().error.code()
    }

    #[test]
    fn decodes_commands_and_refs() {
        let (command, reference) = decode(r#"{"type":"join","room":"rust","ref":"j1"}"#).unwrap();
        assert_eq!(
            command,
            Command::Join {
                room: "rust".into()
            }
        );
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
    fn a_rejected_frame_keeps_its_ref() {
        let rejected = decode(r#"{"type":"shout","ref":12}"#).unwrap_err();
        assert_eq!(rejected.reference, Some(Ref::number(12)));
        let rejected = decode(r#"{"type":"join","ref":"x"}"#).unwrap_err();
        assert_eq!(rejected.reference, Some(Ref::text("x").unwrap()));
    }

    #[test]
    fn frames_carry_the_shortest_header_for_their_length() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let text = "x".repeat(len.saturating_sub(40));
            let event = Event::Error {
                code: ErrorCode::BadFrame,
                message: text,
            };
            let json = encode(&event, None);
            let frame = encode_frame(&event, None);
            assert_eq!(frame[0], 0x81, "FIN, text");
            assert_eq!(frame_payload(&frame), &json[..]);
            let header = frame.len() - json.len();
            let expected = match json.len() {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(header, expected, "{} payload bytes", json.len());
        }
    }

    #[test]
    fn encodes_with_and_without_ref() {
        let plain = encode(&Event::Pong, None);
        assert_eq!(&plain[..], br#"{"type":"pong"}"#);
        let with_ref = encode(&Event::Pong, Some(&Ref::text("p\"1").unwrap()));
        let value: Value = serde_json::from_slice(&with_ref).unwrap();
        assert_eq!(value, json!({"type":"pong","ref":"p\"1"}));
    }

    fn command() -> impl Strategy<Value = Command> {
        let s = "\\PC{0,12}";
        prop_oneof![
            s.prop_map(|name| Command::Login { name }),
            s.prop_map(|room| Command::Join { room }),
            s.prop_map(|room| Command::Leave { room }),
            (s, s).prop_map(|(room, text)| Command::Say { room, text }),
            (s, s).prop_map(|(to, text)| Command::Dm { to, text }),
            (
                s,
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(room, before, limit)| Command::History {
                    room,
                    before,
                    limit
                }),
            Just(Command::Rooms),
            s.prop_map(|room| Command::Who { room }),
            Just(Command::Ping),
        ]
    }

    proptest! {
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
