//! The least WebSocket a load generator needs, by hand: the upgrade, masked text frames out,
//! and server frames read in place from one buffer.
//!
//! A general client library validates and copies every frame, which on a 2-core machine made the
//! load generator, not the server, the bottleneck: one core of it could not read as many frames
//! as one core of the server wrote. Server frames are unmasked (RFC 6455), so reading one is a
//! header of 2, 4 or 10 bytes and a slice.

use std::io;

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::inbox::Inbox;

/// The longest upgrade response head accepted.
const MAX_HEAD: usize = 16 * 1024;

fn other(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

/// Performs the upgrade on `stream` for `path` at `host`.
pub(crate) async fn handshake(
    stream: TcpStream,
    host: &str,
    path: &str,
) -> io::Result<(RawWriter, RawReader)> {
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: bG9hZC1nZW5lcmF0b3IhIQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write.write_all(request.as_bytes()).await?;
    let mut inbox = Inbox::new(read);
    // The response head; anything after it is already frames.
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(inbox.unread(), b"\r\n\r\n") {
            break i + 4;
        }
        if inbox.unread().len() >= MAX_HEAD || inbox.fill().await? == 0 {
            return Err(other("no HTTP response to the upgrade"));
        }
    };
    let head = String::from_utf8_lossy(&inbox.unread()[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(other(format!(
            "upgrade refused: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    inbox.take(head_end);
    Ok((
        RawWriter { write },
        RawReader {
            inbox,
            closed: false,
        },
    ))
}

/// Sends masked text frames.
pub(crate) struct RawWriter {
    write: OwnedWriteHalf,
}

impl RawWriter {
    /// Sends one text frame (client frames must be masked; the key is fixed, which the
    /// protocol allows and a load test does not mind).
    pub(crate) async fn text(&mut self, payload: &[u8]) -> io::Result<()> {
        const KEY: [u8; 4] = [0x5a, 0xa5, 0x3c, 0xc3];
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&KEY);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
        self.write.write_all(&frame).await
    }
}

/// Reads server frames from one buffer.
pub(crate) struct RawReader {
    inbox: Inbox,
    /// A close frame was read: nothing after it counts, and nothing more is read.
    closed: bool,
}

/// One server frame, borrowed from the reader's buffer.
pub(crate) enum Frame<'a> {
    Text(&'a [u8]),
    Close,
    Other,
}

impl RawReader {
    /// The header and payload lengths of the first unread frame, if it is all there; if only
    /// its header is, the buffer is made big enough for the rest.
    fn complete(&mut self) -> Option<(usize, usize)> {
        let unread = self.inbox.unread();
        let (header, len) = parse_header(unread)?;
        if unread.len() < header + len {
            // Bigger than the buffer (filling moves the frame to its start first).
            self.inbox.reserve(header + len);
            return None;
        }
        Some((header, len))
    }

    /// Takes the first unread frame, which [`complete`](Self::complete) found whole.
    fn take_frame(&mut self, header: usize, len: usize) -> Frame<'_> {
        let frame = self.inbox.take(header + len);
        let opcode = frame[0] & 0x0f;
        self.closed = opcode == 0x8;
        match opcode {
            0x1 => Frame::Text(&frame[header..]),
            0x8 => Frame::Close,
            _ => Frame::Other,
        }
    }

    /// The next frame; `None` when the connection has ended.
    pub(crate) async fn next(&mut self) -> Option<Frame<'_>> {
        loop {
            if let Some((header, len)) = self.complete() {
                return Some(self.take_frame(header, len));
            }
            match self.inbox.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Hands `each` every complete frame already read, up to and including a close frame,
    /// and returns how many there were; reads nothing.
    pub(crate) fn drain_frames(&mut self, mut each: impl FnMut(Frame<'_>)) -> usize {
        let mut count = 0;
        while !self.closed {
            let Some((header, len)) = self.complete() else {
                break;
            };
            each(self.take_frame(header, len));
            count += 1;
        }
        count
    }

    /// Reads once more; `false` once the connection has ended (or sent its close frame).
    pub(crate) async fn fill(&mut self) -> bool {
        !self.closed && matches!(self.inbox.fill().await, Ok(n) if n > 0)
    }

    /// When the read that brought the last frame returned.
    pub(crate) fn arrived(&self) -> Instant {
        self.inbox.arrived()
    }
}

/// A server frame's header length and payload length, once enough bytes are there.
fn parse_header(bytes: &[u8]) -> Option<(usize, usize)> {
    let second = *bytes.get(1)?;
    let masked = if second & 0x80 != 0 { 4 } else { 0 };
    let (header, len) = match second & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        ),
        127 => {
            let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(raw)).ok()?)
        }
        n => (2, usize::from(n)),
    };
    Some((header + masked, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_header_sizes() {
        assert_eq!(parse_header(&[0x81, 5]), Some((2, 5)));
        assert_eq!(parse_header(&[0x81, 126, 1, 0]), Some((4, 256)));
        assert_eq!(
            parse_header(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            Some((10, 65_536))
        );
        assert_eq!(parse_header(&[0x81]), None);
        assert_eq!(parse_header(&[0x81, 126, 1]), None);
    }

    #[tokio::test]
    async fn draining_takes_every_complete_frame_and_waits_for_a_partial_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (read, _) = client.unwrap().into_split();
        let (_, mut write) = accepted.unwrap().0.into_split();
        let mut reader = RawReader {
            inbox: Inbox::new(read),
            closed: false,
        };
        let big = vec![b'y'; 300];
        let mut bytes = vec![0x81, 3, b'o', b'n', b'e', 0x89, 0];
        bytes.extend_from_slice(&[0x81, 126, 1, 44]);
        bytes.extend_from_slice(&big);
        // The last frame is cut after its first byte of payload.
        bytes.extend_from_slice(&[0x81, 3, b't']);
        write.write_all(&bytes).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            assert!(reader.fill().await, "the connection is open");
            reader.drain_frames(|frame| {
                seen.push(match frame {
                    Frame::Text(text) => String::from_utf8_lossy(text).into_owned(),
                    Frame::Close => "close".into(),
                    Frame::Other => "other".into(),
                })
            });
        }
        assert_eq!(seen[..2], ["one", "other"]);
        assert_eq!(seen[2].len(), 300);
        assert_eq!(reader.drain_frames(|_| panic!("the last frame is cut")), 0);
        // The rest of it, a close frame, and a frame after the close that must not count.
        write
            .write_all(&[b'w', b'o', 0x88, 0, 0x81, 1, b'!'])
            .await
            .unwrap();
        let mut rest = Vec::new();
        while rest.len() < 2 {
            assert!(reader.fill().await);
            reader.drain_frames(|frame| {
                rest.push(matches!(frame, Frame::Text(b"two")) || matches!(frame, Frame::Close))
            });
        }
        assert_eq!(rest, [true, true]);
        assert_eq!(reader.drain_frames(|_| panic!("nothing after a close")), 0);
        assert!(!reader.fill().await, "nothing is read after a close");
    }
}
