//! WebSocket framing of server frames: the JSON of [`chat_protocol::json`] with a text frame's
//! header in front, made once per event so a broadcast's bytes go to every recipient as they are.

use bytes::Bytes;
use chat_core::{Event, Ref, SendKind};
use chat_runtime::WireFormat;

/// The longest WebSocket frame header a server writes (no mask): 2 bytes, 2 more for lengths
/// from 126 to 65,535, 8 more beyond.
const MAX_HEADER: usize = 10;

/// Encodes a server frame as a complete WebSocket text frame, header included, ready to be
/// written to the socket as it is. The runtime hands these bytes to every recipient of a
/// broadcast, so the framing is done once per event rather than once per recipient.
pub fn encode_frame(event: &Event, reference: Option<&Ref>) -> Bytes {
    let mut out = Vec::with_capacity(128 + MAX_HEADER);
    out.resize(MAX_HEADER, 0);
    chat_protocol::json::encode_into(&mut out, event, reference);
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

    /// Every frame carries its own header: frames written back to back are read one by one.
    fn joins(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::ErrorCode;
    use chat_protocol::json::encode;

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
    fn a_reply_frame_carries_its_ref() {
        let frame = encode_frame(&Event::Pong, Some(&Ref::number(3)));
        assert_eq!(frame_payload(&frame), br#"{"type":"pong","ref":3}"#);
    }
}
