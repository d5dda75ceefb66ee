//! Line framing: `\n`-terminated lines (a `\r` before the `\n` is dropped), at most `max` bytes
//! each without the line end.
//!
//! A longer line is not an error that ends the stream: the codec discards it as it arrives
//! (never buffering more than `max` bytes) and yields [`Line::TooLong`] once its end is seen, so
//! the session can say so and carry on. Bytes are not checked for UTF-8 here either; the session
//! answers invalid UTF-8 with an error line and keeps the connection.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// One framed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its line end.
    Text(Bytes),
    /// A line over the limit was dropped.
    TooLong,
}

/// The decoder.
#[derive(Clone, Debug)]
pub struct LineCodec {
    max: usize,
    /// Where to resume looking for `\n` in the buffer.
    searched: usize,
    /// Inside an over-long line: drop bytes until its `\n`.
    discarding: bool,
}

impl LineCodec {
    /// Lines of at most `max` bytes, line end excluded.
    pub fn new(max: usize) -> Self {
        LineCodec {
            max,
            searched: 0,
            discarding: false,
        }
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

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, Self::Error> {
        let newline = buf[self.searched..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| self.searched + i);
        match (newline, self.discarding) {
            (Some(end), true) => {
                buf.advance(end + 1);
                self.searched = 0;
                self.discarding = false;
                Ok(Some(Line::TooLong))
            }
            (None, true) => {
                buf.clear();
                Ok(None)
            }
            (Some(end), false) => {
                self.searched = 0;
                let line = without_line_end(buf.split_to(end + 1));
                if line.len() > self.max {
                    Ok(Some(Line::TooLong))
                } else {
                    Ok(Some(Line::Text(line)))
                }
            }
            // Room for `max` bytes and a `\r`; beyond that the line is too long whatever follows.
            (None, false) if buf.len() > self.max + 1 => {
                buf.clear();
                self.searched = 0;
                self.discarding = true;
                Ok(None)
            }
            (None, false) => {
                self.searched = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, Self::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        // The client closed after a last line without a line end.
        self.searched = 0;
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return Ok(Some(Line::TooLong));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let line = without_line_end(buf.split());
        Ok(Some(if line.len() > self.max {
            Line::TooLong
        } else {
            Line::Text(line)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
        }
        while let Some(line) = codec.decode_eof(&mut buf).unwrap() {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn splits_lines_and_accepts_crlf() {
        assert_eq!(
            decode_all(10, &[b"hi\nthere\r\n", b"par", b"tial\n", b"last"]),
            [text("hi"), text("there"), text("partial"), text("last")]
        );
        assert_eq!(decode_all(10, &[b"\n\r\n"]), [text(""), text("")]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_is_fine() {
        assert_eq!(
            decode_all(4, &[b"12345678", b"90abc", b"def\nok\n"]),
            [Line::TooLong, text("ok")]
        );
        assert_eq!(
            decode_all(4, &[b"12345\nok\n"]),
            [Line::TooLong, text("ok")]
        );
        assert_eq!(
            decode_all(4, &[b"1234\r\n"]),
            [text("1234")],
            "the limit excludes the line end"
        );
    }

    #[test]
    fn the_buffer_never_holds_more_than_a_line() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(b"xxxxxxxxxxxxxxxx");
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert!(buf.len() <= 16);
        }
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Line::TooLong));
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(data.len());
            let whole = decode_all(16, &[&data]);
            let split = decode_all(16, &[&data[..cut], &data[cut..]]);
            prop_assert_eq!(whole, split);
        }
    }
}
