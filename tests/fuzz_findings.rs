//! Bugs the fuzz targets (`fuzz/`) found in library code, each kept as a test of its fix.

use chat_engine::core::Event;
use chat_engine::protocol::json::{decode, encode};

/// The `ref` the server puts on its reply to a frame whose `ref` was `literal`, as written.
fn echoed_ref(literal: &str) -> String {
    let frame = format!(r#"{{"type":"ping","ref":{literal}}}"#);
    let (_, reference) = decode(&frame).expect("a ping with a numeric ref decodes");
    let reply = encode(&Event::Pong, reference.as_ref());
    let reply = std::str::from_utf8(&reply).expect("UTF-8");
    reply
        .strip_prefix(r#"{"type":"pong","ref":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("a pong with a ref: {reply}"))
        .to_owned()
}

/// The protocol reference (`docs/protocol.md`): the server copies a frame's `ref` onto its reply. A
/// client that sends a fractional number (or an integer too large for 64 bits, which JSON
/// parsers read as a float) must get back a number that it parses to the value it sent. serde_json
/// parses floats best-effort by default (its `float_roundtrip` feature makes it exact), so the
/// echoed number can be one ulp off: a client that sends `2.777777777777778e109` gets back
/// `2.7777777777777782e109`, a different float. Found by `fuzz/fuzz_targets/ws_frame.rs`
/// (its corpus file `float_ref_long` is the input it found).
#[test]
fn a_fractional_ref_is_echoed_as_the_same_number() {
    for literal in ["2.777777777777778e109", "0.1", "-1.5"] {
        let sent: f64 = literal.parse().expect("a float literal");
        let echoed = echoed_ref(literal);
        let got: f64 = echoed
            .parse()
            .expect("a numeric ref comes back as a number");
        assert_eq!(
            got.to_bits(),
            sent.to_bits(),
            "sent {literal}, got {echoed} back"
        );
    }
}
