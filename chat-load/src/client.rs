//! One load connection over either transport: log in, join, send stamped texts, and read the
//! stamps of the messages that arrive.
//!
//! A stamp is the text `~s` and then the fields of a [`Stamp`] in fixed-width lowercase hex
//! (run, sender, seq, global and nanos: 8, 4, 8, 8 and 12 digits), padded with `x` to the
//! message size.
//! `~` appears nowhere else in what the server sends (names, rooms and timestamps cannot contain
//! it), so the reader finds the stamp with one byte search in the raw frame or line, without
//! parsing JSON. `run` tells this run's messages from an earlier run's against the same server,
//! which arrive too, in the history a join sends.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};

use crate::inbox::Inbox;
use crate::ws_raw::{self, Frame, RawReader, RawWriter};

/// Where to connect.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A WebSocket endpoint: its address and URL.
    Ws { addr: SocketAddr, url: String },
    /// A line TCP listener.
    Tcp(SocketAddr),
}

/// What a received message says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Which run of chat-load sent it.
    pub(crate) run: u32,
    /// Which sender.
    pub(crate) sender: u16,
    /// The sender's own sequence number, from 1.
    pub(crate) seq: u32,
    /// The sequence number among all senders' messages, from 0.
    pub(crate) global: u32,
    /// When it was sent, in nanoseconds since the run's start: 48 bits, 78 hours.
    pub(crate) nanos: u64,
}

/// The hex digits of each field of a stamp, in order: run, sender, seq, global, nanos.
const WIDTHS: [usize; 5] = [8, 4, 8, 8, 12];
/// `~s` and the digits.
const STAMP_LEN: usize = {
    let (mut len, mut i) = (2, 0);
    while i < WIDTHS.len() {
        len += WIDTHS[i];
        i += 1;
    }
    len
};

/// The text for a message: its stamp, padded with `x` to `size` bytes (longer if the stamp is).
pub(crate) fn stamped_text(stamp: Stamp, size: usize) -> String {
    let fields = [
        u64::from(stamp.run),
        u64::from(stamp.sender),
        u64::from(stamp.seq),
        u64::from(stamp.global),
        stamp.nanos & 0xffff_ffff_ffff,
    ];
    let mut text = String::from("~s");
    for (field, width) in fields.into_iter().zip(WIDTHS) {
        let _ = write!(text, "{field:0width$x}");
    }
    debug_assert_eq!(text.len(), STAMP_LEN);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Each byte's value as a lowercase hex digit, or 0xff.
static HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

/// Finds and reads the stamp in a frame or line.
///
/// This runs once per delivery, millions of times a second: one vectorised search for `~`, then
/// one table lookup per digit, with no branch on the digits' values.
pub(crate) fn find_stamp(bytes: &[u8]) -> Option<Stamp> {
    let mut at = 0;
    let digits = loop {
        let tilde = at + memchr::memchr(b'~', &bytes[at..])?;
        if bytes.get(tilde + 1) == Some(&b's') {
            break bytes.get(tilde + 2..tilde + STAMP_LEN)?;
        }
        at = tilde + 1;
    };
    let mut fields = [0u64; 5];
    let mut invalid = 0;
    let mut digits = digits.iter();
    for (field, width) in fields.iter_mut().zip(WIDTHS) {
        for &digit in digits.by_ref().take(width) {
            let value = HEX[usize::from(digit)];
            invalid |= value;
            *field = *field << 4 | u64::from(value & 0x0f);
        }
    }
    if invalid & 0x80 != 0 {
        return None;
    }
    let [run, sender, seq, global, nanos] = fields;
    // Each field's width fits its type.
    Some(Stamp {
        run: run as u32,
        sender: sender as u16,
        seq: seq as u32,
        global: global as u32,
        nanos,
    })
}

/// The sending half.
pub(crate) enum Writer {
    Ws(RawWriter),
    Tcp(OwnedWriteHalf),
}

/// The receiving half.
pub(crate) enum Reader {
    Ws(RawReader),
    Tcp(Inbox),
}

fn other(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

async fn socket(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source.into(), 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, logs in as `name` and makes sure the connection is in `room` (`None`: stays in
/// whatever rooms the login put it in).
pub(crate) async fn connect(
    target: &Target,
    source: Option<Ipv4Addr>,
    name: &str,
    room: Option<&str>,
) -> io::Result<(Writer, Reader)> {
    match target {
        Target::Ws { addr, url } => {
            let stream = socket(*addr, source).await?;
            let rest = url.strip_prefix("ws://").unwrap_or(url);
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (mut writer, mut reader) = ws_raw::handshake(stream, host, path).await?;
            let login = format!(r#"{{"type":"login","name":"{name}"}}"#);
            writer.text(login.as_bytes()).await?;
            let welcome = next_ws_text(&mut reader, |t| {
                t.starts_with(br#"{"type":"welcome""#) || t.starts_with(br#"{"type":"error""#)
            })
            .await?;
            if welcome.starts_with(r#"{"type":"error""#) {
                return Err(other(format!("login as {name} refused: {welcome}")));
            }
            let Some(room) = room else {
                return Ok((Writer::Ws(writer), Reader::Ws(reader)));
            };
            if welcome.contains(&format!(r#""rooms":["{room}"]"#)) {
                return Ok((Writer::Ws(writer), Reader::Ws(reader)));
            }
            let join = format!(r#"{{"type":"join","room":"{room}"}}"#);
            writer.text(join.as_bytes()).await?;
            let joined = format!(r#"{{"type":"joined","room":"{room}""#);
            let reply = next_ws_text(&mut reader, |t| {
                t.starts_with(joined.as_bytes()) || t.starts_with(br#"{"type":"error""#)
            })
            .await?;
            if reply.starts_with(r#"{"type":"error""#) {
                return Err(other(format!("{name} cannot join {room}: {reply}")));
            }
            Ok((Writer::Ws(writer), Reader::Ws(reader)))
        }
        Target::Tcp(addr) => {
            let (read, mut write) = socket(*addr, source).await?.into_split();
            let mut read = Inbox::new(read);
            next_line(&mut read, |l| l.starts_with(b"Enter your name:")).await?;
            write.write_all(format!("{name}\n").as_bytes()).await?;
            let line = next_line(&mut read, |l| {
                l.starts_with(b"* Welcome") || l.starts_with(b"! ")
            })
            .await?;
            if line.starts_with("! ") {
                return Err(other(format!("login as {name} refused: {line}")));
            }
            let Some(room) = room else {
                return Ok((Writer::Tcp(write), Reader::Tcp(read)));
            };
            if !line.contains(&format!("#{room}.")) {
                write
                    .write_all(format!("/join {room}\n").as_bytes())
                    .await?;
                let joined = format!("* You are now in #{room}");
                let line = next_line(&mut read, |l| {
                    l.starts_with(joined.as_bytes()) || l.starts_with(b"! ")
                })
                .await?;
                if line.starts_with("! ") {
                    return Err(other(format!("{name} cannot join {room}: {line}")));
                }
            }
            Ok((Writer::Tcp(write), Reader::Tcp(read)))
        }
    }
}

async fn next_ws_text(
    reader: &mut RawReader,
    wanted: impl Fn(&[u8]) -> bool,
) -> io::Result<String> {
    // Bounded: a login or join is answered within a few frames of presence and history.
    for _ in 0..100_000 {
        match reader.next().await {
            Some(Frame::Text(text)) if wanted(text) => {
                return Ok(String::from_utf8_lossy(text).into_owned());
            }
            Some(Frame::Close) => return Err(other("the server closed the connection")),
            Some(_) => {}
            None => return Err(other("the connection ended")),
        }
    }
    Err(other("no answer among 100,000 frames"))
}

async fn next_line(read: &mut Inbox, wanted: impl Fn(&[u8]) -> bool) -> io::Result<String> {
    for _ in 0..100_000 {
        let Some(line) = read.line().await else {
            return Err(other("the server closed the connection"));
        };
        if wanted(line) {
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
    }
    Err(other("no answer among 100,000 lines"))
}

impl Writer {
    /// Shows the server the connection is alive (its WebSocket idle timeout counts frames from
    /// the client; a receiver otherwise sends none). Line connections need nothing.
    pub(crate) async fn keepalive(&mut self) -> io::Result<()> {
        match self {
            Writer::Ws(writer) => writer.text(br#"{"type":"ping"}"#).await,
            Writer::Tcp(_) => Ok(()),
        }
    }

    /// Says `text` in `room`.
    pub(crate) async fn say(&mut self, room: &str, text: &str) -> io::Result<()> {
        match self {
            Writer::Ws(writer) => {
                let frame = format!(r#"{{"type":"say","room":"{room}","text":"{text}"}}"#);
                writer.text(frame.as_bytes()).await
            }
            Writer::Tcp(write) => {
                let mut line = Vec::with_capacity(text.len() + 1);
                line.extend_from_slice(text.as_bytes());
                line.push(b'\n');
                write.write_all(&line).await
            }
        }
    }
}

impl Reader {
    /// The next frame or line's stamp (`Some(None)` for anything without one), or `None` once
    /// the connection is closed.
    pub(crate) async fn next(&mut self) -> Option<Option<Stamp>> {
        match self {
            Reader::Ws(reader) => loop {
                match reader.next().await? {
                    Frame::Text(text) => return Some(find_stamp(text)),
                    Frame::Close => return None,
                    Frame::Other => {}
                }
            },
            Reader::Tcp(read) => Some(find_stamp(read.line().await?)),
        }
    }

    /// Waits for at least one complete frame or line, then appends the stamps of every one
    /// already read to `stamps` (frames and lines without one are skipped); `false` once the
    /// connection is closed. One call per read, not per message: a receiver's hot path.
    pub(crate) async fn next_stamps(&mut self, stamps: &mut Vec<Stamp>) -> bool {
        loop {
            // Frames before a close still count; the call after them reports the end.
            let drained = match self {
                Reader::Ws(reader) => reader.drain_frames(|frame| {
                    if let Frame::Text(text) = frame {
                        stamps.extend(find_stamp(text));
                    }
                }),
                Reader::Tcp(read) => read.drain_lines(|line| stamps.extend(find_stamp(line))),
            };
            if drained > 0 {
                return true;
            }
            let more = match self {
                Reader::Ws(reader) => reader.fill().await,
                Reader::Tcp(read) => matches!(read.fill().await, Ok(n) if n > 0),
            };
            if !more {
                return false;
            }
        }
    }

    /// When the read that brought the last frame or line returned: its arrival at chat-load.
    pub(crate) fn arrived(&self) -> Instant {
        match self {
            Reader::Ws(reader) => reader.arrived(),
            Reader::Tcp(read) => read.arrived(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_both_wire_formats() {
        let stamp = Stamp {
            run: 77,
            sender: 3,
            seq: 17,
            global: 40,
            nanos: 123_456_789,
        };
        let text = stamped_text(stamp, 64);
        assert_eq!(text.len(), 64);
        let frame = format!(
            r#"{{"type":"message","room":"general","id":9,"from":"s3","text":"{text}","ts":"2026-11-22T10:00:00.000Z"}}"#
        );
        assert_eq!(find_stamp(frame.as_bytes()), Some(stamp));
        let line = format!("[10:00:00] #general <s3> {text}\n");
        assert_eq!(find_stamp(line.as_bytes()), Some(stamp));
        assert_eq!(
            find_stamp(br#"{"type":"presence","room":"general","user":"r1","event":"join"}"#),
            None
        );
        assert_eq!(
            find_stamp(&text.as_bytes()[..40]),
            None,
            "a cut stamp is no stamp"
        );
        let wrong = text.replacen('1', "g", 1);
        assert_eq!(
            find_stamp(wrong.as_bytes()),
            None,
            "nor is one with a non-digit"
        );
        assert_eq!(
            find_stamp(format!("a ~ and ~x before {text}").as_bytes()),
            Some(stamp),
            "a `~` that starts no stamp is stepped over"
        );
        let widest = Stamp {
            run: u32::MAX,
            sender: u16::MAX,
            seq: u32::MAX,
            global: u32::MAX,
            nanos: (1 << 48) - 1,
        };
        assert_eq!(find_stamp(stamped_text(widest, 0).as_bytes()), Some(widest));
    }
}
