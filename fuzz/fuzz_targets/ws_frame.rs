//! The WebSocket protocol's client-frame decoder, `chat_protocol::json::decode`, on any
//! text: it must answer every frame with a command or a rejection, never panic. A decoded
//! command must also survive a round trip: encoded again as a client frame (with its `ref`, by
//! `chat_protocol::json::encode_command`), it decodes to the same command and `ref`.

#![no_main]

use chat_protocol::json::{decode, encode_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // A WebSocket text frame is UTF-8 by the time the decoder sees it (tungstenite checks).
        return;
    };
    let Ok((command, reference)) = decode(text) else {
        return;
    };
    let frame = encode_command(&command, reference.as_ref());
    let again = decode(&frame).expect("a re-encoded command decodes");
    assert_eq!(again.0, command, "the command round-trips");
    // Every ref, fractional numbers included, round-trips exactly (serde_json's
    // `float_roundtrip`; the bug this target found is `tests/fuzz_findings.rs`).
    assert_eq!(again.1, reference, "the ref round-trips");
});
