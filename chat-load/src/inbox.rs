//! A connection's read buffer, shared by both wire formats: it reads as much as the socket has
//! into one buffer, hands out complete frames or lines in place, and remembers when its last
//! read returned.
//!
//! That instant is when every message of that read reached chat-load, so a receiver takes the
//! clock once per read instead of once per message, and the time it spends on the messages
//! ahead of one in the same read does not count as the server's latency.

use std::io;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// How much one read may bring: at 1,000 receivers and a few M deliveries/s a receiver rarely
/// has more than a few KiB waiting.
const CAPACITY: usize = 64 * 1024;

/// One connection's unread bytes.
pub(crate) struct Inbox {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// When the last read returned.
    arrived: Instant,
}

impl Inbox {
    /// An empty inbox reading from `read`.
    pub(crate) fn new(read: OwnedReadHalf) -> Self {
        Inbox {
            read,
            buf: vec![0; CAPACITY],
            start: 0,
            end: 0,
            arrived: Instant::now(),
        }
    }

    /// The bytes read and not yet taken.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Takes the first `n` unread bytes (at most all of them) and returns them.
    pub(crate) fn take(&mut self, n: usize) -> &[u8] {
        let taken = self.start..(self.start + n).min(self.end);
        self.start = taken.end;
        &self.buf[taken]
    }

    /// When the last read returned: the arrival of everything it brought.
    pub(crate) fn arrived(&self) -> Instant {
        self.arrived
    }

    /// Makes room for at least `len` unread bytes (a frame bigger than the buffer).
    pub(crate) fn reserve(&mut self, len: usize) {
        if len > self.buf.len() {
            self.buf.resize(len, 0);
        }
    }

    /// Reads once more after the unread bytes, moving them to the buffer's start first (and
    /// growing the buffer if they fill it: one line longer than it); `Ok(0)` when the
    /// connection has ended.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.end - self.start == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.read.read(&mut self.buf[self.end..]).await?;
        self.arrived = Instant::now();
        self.end += n;
        Ok(n)
    }

    /// Hands `each` every complete line already read (without its `\n`) and returns how many
    /// there were; reads nothing.
    pub(crate) fn drain_lines(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let unread = &self.buf[self.start..self.end];
        let mut from = 0;
        let mut count = 0;
        for end in memchr::memchr_iter(b'\n', unread) {
            each(&unread[from..end]);
            from = end + 1;
            count += 1;
        }
        self.start += from;
        count
    }

    /// The next line without its `\n` (a `\r` before it stays); `None` once the connection has
    /// ended. A line longer than the buffer grows it.
    pub(crate) async fn line(&mut self) -> Option<&[u8]> {
        let mut searched = 0;
        loop {
            let unread = self.unread();
            if let Some(i) = memchr::memchr(b'\n', &unread[searched..]) {
                let line = self.start..self.start + searched + i;
                self.start = line.end + 1;
                return Some(&self.buf[line]);
            }
            searched = unread.len();
            match self.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Inbox, tokio::net::tcp::OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (read, _) = client.unwrap().into_split();
        let (_, write) = accepted.unwrap().0.into_split();
        (Inbox::new(read), write)
    }

    #[tokio::test]
    async fn lines_come_whole_however_the_bytes_are_split() {
        let (mut inbox, mut write) = pair().await;
        write.write_all(b"first\nsec").await.unwrap();
        assert_eq!(inbox.line().await, Some(&b"first"[..]));
        let reading = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = inbox.line().await {
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
            lines
        });
        write.write_all(b"ond\r\n\nthird\n").await.unwrap();
        drop(write);
        assert_eq!(reading.await.unwrap(), ["second\r", "", "third"]);
    }

    #[tokio::test]
    async fn draining_takes_every_complete_line_and_leaves_a_partial_one() {
        let (mut inbox, mut write) = pair().await;
        write.write_all(b"one\ntwo\nthr").await.unwrap();
        while memchr::memchr_iter(b'\n', inbox.unread()).count() < 2 {
            assert!(inbox.fill().await.unwrap() > 0);
        }
        let mut lines = Vec::new();
        let count = inbox.drain_lines(|line| lines.push(line.to_vec()));
        assert_eq!(count, 2);
        assert_eq!(lines, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(inbox.drain_lines(|_| panic!("no complete line is left")), 0);
        write.write_all(b"ee\n").await.unwrap();
        assert_eq!(inbox.line().await, Some(&b"three"[..]));
    }

    #[tokio::test]
    async fn a_line_longer_than_the_buffer_grows_it() {
        let (mut inbox, mut write) = pair().await;
        let long = vec![b'x'; CAPACITY * 3];
        let writing = tokio::spawn(async move {
            write.write_all(&long).await.unwrap();
            write.write_all(b"\nnext\n").await.unwrap();
        });
        assert_eq!(inbox.line().await.map(<[u8]>::len), Some(CAPACITY * 3));
        assert_eq!(inbox.line().await, Some(&b"next"[..]));
        writing.await.unwrap();
    }

    #[tokio::test]
    async fn arrival_is_the_time_of_the_read_that_brought_the_bytes() {
        let (mut inbox, mut write) = pair().await;
        write.write_all(b"a\nb\n").await.unwrap();
        let before = Instant::now();
        assert_eq!(inbox.line().await, Some(&b"a"[..]));
        let arrived = inbox.arrived();
        assert!(arrived >= before);
        // The second line came in the same read (or a later one, never an earlier one).
        assert_eq!(inbox.line().await, Some(&b"b"[..]));
        assert!(inbox.arrived() >= arrived);
    }
}
