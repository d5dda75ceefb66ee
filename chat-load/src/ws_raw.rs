//! The least WebSocket a load generator needs, by hand: the upgrade, masked text frames out,
//! and server frames read in place from one buffer.
//!
//! A general client library validates and copies every frame, which on a 2-core machine made the
//! load generator, not the server, the bottleneck: one core of it could not read as many frames
//! as one core of the server wrote. Server frames are unmasked (RFC 6455), so reading one is a
//! header of 2, 4 or 10 bytes and a slice.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
    let mut reader = RawReader {
        read,
        buf: vec![0; 64 * 1024],
        start: 0,
        end: 0,
    };
    // The response head; anything after it is already frames.
    let head_end = loop {
        if let Some(i) = reader.buf[..reader.end]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            break i + 4;
        }
        if reader.end == reader.buf.len() || reader.fill().await? == 0 {
            return Err(other("no HTTP response to the upgrade"));
        }
    };
    let head = String::from_utf8_lossy(&reader.buf[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(other(format!(
            "upgrade refused: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    reader.start = head_end;
    Ok((RawWriter { write }, reader))
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
    read: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One server frame, borrowed from the reader's buffer.
pub(crate) enum Frame<'a> {
    Text(&'a [u8]),
    Close,
    Other,
}

impl RawReader {
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.read.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next frame; `None` when the connection has ended.
    pub(crate) async fn next(&mut self) -> Option<Frame<'_>> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf[self.start..self.end]) {
                if self.end - self.start >= header + len {
                    let opcode = self.buf[self.start] & 0x0f;
                    let payload = self.start + header..self.start + header + len;
                    self.start += header + len;
                    return Some(match opcode {
                        0x1 => Frame::Text(&self.buf[payload]),
                        0x8 => Frame::Close,
                        _ => Frame::Other,
                    });
                }
                if header + len > self.buf.len() {
                    // Bigger than the buffer (filling moves the frame to its start first).
                    self.buf.resize(header + len, 0);
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
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
}
