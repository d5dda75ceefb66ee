//! Line framing: a byte stream cut into `\n`-terminated lines (a `\r` before the `\n` is
//! dropped), at most `max` bytes each without the line end.
//!
//! [`LineSplitter`] works on the reader's own [`BytesMut`]: the transport appends what the socket
//! gave and takes lines out, so a line is never copied. A longer line is not an error that ends
//! the stream: the splitter discards it as it arrives (never buffering more than `max` bytes and
//! a `\r`) and reports [`Line::TooLong`] once its end is seen, so the session can say so and
//! carry on. Bytes are not checked for UTF-8 here either; that is the line session's business.

use bytes::{Buf, Bytes, BytesMut};

/// One line out of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its line end.
    Text(Bytes),
    /// A line over the limit was dropped.
    TooLong {
        /// The limit it broke, in bytes without the line end.
        limit: usize,
    },
}

/// Cuts lines out of a buffer, keeping between calls only where it stopped looking.
#[derive(Clone, Debug)]
pub struct LineSplitter {
    max: usize,
    /// Where to resume looking for `\n` in the buffer.
    searched: usize,
    /// Inside an over-long line: drop bytes until its `\n`.
    discarding: bool,
}

impl LineSplitter {
    /// Lines of at most `max` bytes, line end excluded.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max,
            searched: 0,
            discarding: false,
        }
    }

    /// The longest line accepted, without its line end.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes the next complete line out of `buf`, or `None` when `buf` holds no line end yet (call
    /// again once more bytes are appended). Bytes of an over-long line are dropped from `buf` as
    /// they come, so `buf` never holds more than `max + 1` bytes of one line.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Option<Line> {
        let newline = buf[self.searched..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| self.searched + i);
        match (newline, self.discarding) {
            (Some(end), true) => {
                buf.advance(end + 1);
                self.searched = 0;
                self.discarding = false;
                Some(self.too_long())
            }
            (None, true) => {
                buf.clear();
                None
            }
            (Some(end), false) => {
                self.searched = 0;
                let line = without_line_end(buf.split_to(end + 1));
                Some(self.checked(line))
            }
            // Room for `max` bytes and a `\r`; beyond that the line is too long whatever follows.
            (None, false) if buf.len() > self.max + 1 => {
                buf.clear();
                self.searched = 0;
                self.discarding = true;
                None
            }
            (None, false) => {
                self.searched = buf.len();
                None
            }
        }
    }

    /// At the end of the stream: the next line as [`next_line`](Self::next_line) gives it, then
    /// a last line the client sent without a line end, then `None`. `buf` is empty once it
    /// returns `None`.
    pub fn last_line(&mut self, buf: &mut BytesMut) -> Option<Line> {
        if let Some(line) = self.next_line(buf) {
            return Some(line);
        }
        self.searched = 0;
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return Some(self.too_long());
        }
        if buf.is_empty() {
            return None;
        }
        let line = without_line_end(buf.split());
        Some(self.checked(line))
    }

    fn checked(&self, line: Bytes) -> Line {
        if line.len() > self.max {
            self.too_long()
        } else {
            Line::Text(line)
        }
    }

    fn too_long(&self) -> Line {
        Line::TooLong { limit: self.max }
    }
}

fn without_line_end(mut line: BytesMut) -> Bytes {
    if line.last() == Some(&b'\n') {
        line.truncate(line.len() - 1);
    }
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut splitter = LineSplitter::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = splitter.next_line(&mut buf) {
                out.push(line);
            }
        }
        while let Some(line) = splitter.last_line(&mut buf) {
            out.push(line);
        }
        assert!(buf.is_empty(), "everything is consumed at the end");
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn splits_lines_and_accepts_crlf() {
        assert_eq!(
            split_all(10, &[b"hi\nthere\r\n", b"par", b"tial\n", b"last"]),
            [text("hi"), text("there"), text("partial"), text("last")]
        );
        assert_eq!(split_all(10, &[b"\n\r\n"]), [text(""), text("")]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_is_fine() {
        let too_long = Line::TooLong { limit: 4 };
        assert_eq!(
            split_all(4, &[b"12345678", b"90abc", b"def\nok\n"]),
            [too_long.clone(), text("ok")]
        );
        assert_eq!(
            split_all(4, &[b"12345\nok\n"]),
            [too_long.clone(), text("ok")]
        );
        assert_eq!(
            split_all(4, &[b"1234\r\n"]),
            [text("1234")],
            "the limit excludes the line end"
        );
        assert_eq!(
            split_all(4, &[b"ok\n123456789"]),
            [text("ok"), too_long],
            "a last line without its end is checked too"
        );
    }

    #[test]
    fn the_buffer_never_holds_more_than_a_line() {
        let mut splitter = LineSplitter::new(8);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(b"xxxxxxxxxxxxxxxx");
            assert_eq!(splitter.next_line(&mut buf), None);
            assert!(buf.len() <= 16);
        }
        buf.extend_from_slice(b"\n");
        assert_eq!(
            splitter.next_line(&mut buf),
            Some(Line::TooLong { limit: 8 })
        );
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(data.len());
            let whole = split_all(16, &[&data]);
            let split = split_all(16, &[&data[..cut], &data[cut..]]);
            prop_assert_eq!(whole, split);
        }
    }
}
