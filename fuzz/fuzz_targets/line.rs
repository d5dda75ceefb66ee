//! The line transport's input path on arbitrary bytes: `LineSplitter` framing over arbitrary
//! chunks, then `parse_line` on every UTF-8 line and a `LineSession` fed every line (all
//! `chat_protocol::line`). None may panic; the splitter's buffer never holds much more than one
//! line; and how the bytes are cut into chunks never changes the lines.
//!
//! Input layout: byte 0 picks the line limit (1–64), byte 1 seeds the chunk sizes, the rest is
//! the byte stream a client sends.

#![no_main]

use bytes::BytesMut;
use chat_protocol::line::{Line, LineSession, LineSplitter, Slash, parse_line};
use libfuzzer_sys::fuzz_target;

/// Decodes `data` fed in chunks whose sizes come from `cuts` (cycled; `None`: one chunk).
fn decode_all(max: usize, data: &[u8], cuts: Option<u8>) -> Vec<Line> {
    let mut splitter = LineSplitter::new(max);
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    let mut rest = data;
    let mut seed = cuts.map(u32::from).unwrap_or(0);
    while !rest.is_empty() {
        let size = match cuts {
            None => rest.len(),
            Some(_) => {
                // A small linear congruential sequence: chunk sizes 1..=17, varied.
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                1 + (seed >> 16) as usize % 17
            }
        }
        .min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(chunk);
        while let Some(line) = splitter.next_line(&mut buf) {
            lines.push(line);
        }
        // Bounded: what stays buffered is at most one line and its `\r`.
        assert!(
            buf.len() <= max + 1,
            "the buffer holds {} bytes with a limit of {max}",
            buf.len()
        );
    }
    while let Some(line) = splitter.last_line(&mut buf) {
        lines.push(line);
    }
    assert!(buf.is_empty(), "everything is consumed at the end");
    lines
}

fuzz_target!(|data: &[u8]| {
    let [limit, cuts, stream @ ..] = data else {
        return;
    };
    let max = 1 + usize::from(*limit % 64);
    let whole = decode_all(max, stream, None);
    let chunked = decode_all(max, stream, Some(*cuts));
    assert_eq!(whole, chunked, "chunking does not change the lines");
    let mut session = LineSession::new();
    for line in &whole {
        let _ = session.on_input(line);
    }
    for line in &whole {
        let Line::Text(bytes) = line else { continue };
        assert!(bytes.len() <= max, "a line within the limit");
        assert!(!bytes.contains(&b'\n'), "a line has no line end");
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        match parse_line(text) {
            Slash::Say(said) => assert!(text.ends_with(said), "what is said is the line's tail"),
            _ => {}
        }
    }
});
