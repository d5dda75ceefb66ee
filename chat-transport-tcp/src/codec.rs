//! The line framing as a [`tokio_util::codec::Decoder`], for `FramedRead`: a thin wrapper around
//! [`chat_protocol::line::LineSplitter`], which holds the rules.

use bytes::BytesMut;
use chat_protocol::line::{Line, LineSplitter};
use tokio_util::codec::Decoder;

/// The decoder: lines of at most `max` bytes, line end excluded.
#[derive(Clone, Debug)]
pub struct LineCodec(LineSplitter);

impl LineCodec {
    /// Lines of at most `max` bytes, line end excluded.
    pub fn new(max: usize) -> Self {
        LineCodec(LineSplitter::new(max))
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, Self::Error> {
        Ok(self.0.next_line(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, Self::Error> {
        Ok(self.0.last_line(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn decodes_lines_and_a_last_one_at_the_end_of_the_stream() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"hi\r\n12345\nend"[..]);
        let text = |s: &'static str| Some(Line::Text(Bytes::from_static(s.as_bytes())));
        assert_eq!(codec.decode(&mut buf).unwrap(), text("hi"));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::TooLong { limit: 4 })
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), text("end"));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }
}
