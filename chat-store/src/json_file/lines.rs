//! Reading a JSON-lines file by lines without reading all of it: backwards from an end offset
//! (tails, history pages, the merge of a user's conversations), forwards from an offset (binary
//! search), and the line number of an offset for error reports (only ever computed on the error
//! path, where reading the file up to the offset is acceptable).
//!
//! Every function takes an `end`: the committed length of the file, published by the writer
//! after its fsync. Readers never look past it, so a line the writer is still appending is
//! never seen half-written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// The first read when walking backwards; each further one doubles, up to [`BACK_CHUNK`].
const FIRST_BACK_CHUNK: u64 = 4 * 1024;
/// The most read at once when walking backwards.
const BACK_CHUNK: u64 = 64 * 1024;
/// How much is read at once when walking forwards.
const FORWARD_CHUNK: u64 = 8 * 1024;

/// One line of a file, without its newline.
#[derive(Debug)]
pub(crate) struct Line {
    /// Where it starts in the file.
    pub(crate) offset: u64,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
}

fn read_at(mut file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The lines of a file that end at or before an offset, read backwards one at a time: the last
/// first.
///
/// It reads a chunk at a time, the first small and each next one twice the size (up to
/// [`BACK_CHUNK`]), so taking a line or two of a long file reads little. It opens the file only
/// for each read, so many of them can be alive at once (one per conversation of a user, say)
/// without holding a file descriptor each.
#[derive(Debug)]
pub(crate) struct Backwards {
    path: PathBuf,
    /// Unconsumed bytes `[start, start + buf.len())`; when not empty they end with the newline of
    /// the next line to hand out (or, for the file's last line, with its last byte).
    buf: Vec<u8>,
    start: u64,
    /// The size of the next read.
    chunk: u64,
}

impl Backwards {
    /// The lines of the file at `path` that end at or before `end` (which is 0 or just after a
    /// newline; see [`Backwards::next_line`] for a torn last line).
    pub(crate) fn new(path: impl Into<PathBuf>, end: u64) -> Self {
        Backwards {
            path: path.into(),
            buf: Vec::new(),
            start: end,
            chunk: FIRST_BACK_CHUNK,
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The line before the ones handed out so far, or `None` at the start of the file.
    ///
    /// The end's last byte is taken for the newline of the last line, so for a last line cut
    /// short (no newline) it returns the line minus its last byte, at the right offset, which
    /// is all that repairing a torn line needs.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line>, StoreError> {
        loop {
            let body = self.buf.len().saturating_sub(1);
            match self.buf[..body].iter().rposition(|&b| b == b'\n') {
                Some(newline) => {
                    let line = Line {
                        offset: self.start + newline as u64 + 1,
                        bytes: self.buf[newline + 1..body].to_vec(),
                    };
                    self.buf.truncate(newline + 1);
                    return Ok(Some(line));
                }
                None if self.start == 0 => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    self.buf.truncate(body);
                    return Ok(Some(Line {
                        offset: 0,
                        bytes: std::mem::take(&mut self.buf),
                    }));
                }
                None => self.read_chunk()?,
            }
        }
    }

    /// Whether lines are left before the ones handed out so far.
    pub(crate) fn has_more(&self) -> bool {
        self.start > 0 || !self.buf.is_empty()
    }

    /// Puts the chunk before the unconsumed bytes in front of them.
    fn read_chunk(&mut self) -> Result<(), StoreError> {
        let len = self.chunk.min(self.start);
        let read = File::open(&self.path).and_then(|file| read_at(&file, self.start - len, len));
        let mut chunk = read.map_err(|e| StoreError::io(&self.path, e))?;
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        self.start -= len;
        self.chunk = (self.chunk * 2).min(BACK_CHUNK);
        Ok(())
    }
}

/// The first line that starts at or after `from` and before `end`, if any.
pub(crate) fn line_from(file: &File, from: u64, end: u64) -> io::Result<Option<Line>> {
    let Some(start) = next_line_start(file, from, end)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let mut pos = start;
    while pos < end {
        let chunk = read_at(file, pos, FORWARD_CHUNK.min(end - pos))?;
        if let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            bytes.extend_from_slice(&chunk[..newline]);
            return Ok(Some(Line {
                offset: start,
                bytes,
            }));
        }
        pos += chunk.len() as u64;
        bytes.extend_from_slice(&chunk);
    }
    // `end` is just after a newline, so a line that starts before it also ends before it.
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file ends inside a committed line",
    ))
}

/// The first offset at or after `from` and before `end` where a line starts.
fn next_line_start(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    if from == 0 {
        return Ok((end > 0).then_some(0));
    }
    // A line starts at `from` if the byte before it is a newline.
    let mut pos = from - 1;
    while pos < end {
        let chunk = read_at(file, pos, FORWARD_CHUNK.min(end - pos))?;
        if let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            let start = pos + newline as u64 + 1;
            return Ok((start < end).then_some(start));
        }
        pos += chunk.len() as u64;
    }
    Ok(None)
}

/// The 1-based number of the line starting at `offset` in the file at `path`.
pub(crate) fn line_number(path: &Path, offset: u64) -> Result<u64, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut reader = BufReader::new(file.take(offset));
    let mut newlines = 0;
    loop {
        let buf = reader.fill_buf().map_err(|e| StoreError::io(path, e))?;
        if buf.is_empty() {
            return Ok(newlines + 1);
        }
        newlines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}

/// A [`StoreError::Corrupt`] for the line at `offset` (or the I/O error met while numbering it).
pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
    match line_number(path, offset) {
        Ok(line) => StoreError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        },
        Err(e) => e,
    }
}

/// Parses one line as JSON of type `T`; the caller turns the reason into a
/// [`StoreError::Corrupt`] with [`corrupt`] if it needs one.
pub(crate) fn parse_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(contents: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(contents).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    /// The last `count` lines that end at or before `end`, oldest first.
    fn read_back(path: &Path, end: u64, count: usize) -> Result<Vec<Line>, StoreError> {
        let mut backwards = Backwards::new(path, end);
        let mut lines = Vec::new();
        while lines.len() < count {
            match backwards.next_line()? {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        lines.reverse();
        Ok(lines)
    }

    fn texts(lines: &[Line]) -> Vec<(u64, String)> {
        lines
            .iter()
            .map(|l| (l.offset, String::from_utf8(l.bytes.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn reads_back_across_chunks() {
        let long = "x".repeat(BACK_CHUNK as usize + 10);
        let contents = format!("a\n{long}\nbc\n");
        let (tmp, _file) = file_with(contents.as_bytes());
        let file = tmp.path();
        let end = contents.len() as u64;
        let all = read_back(file, end, 10).unwrap();
        assert_eq!(
            texts(&all),
            vec![
                (0, "a".into()),
                (2, long.clone()),
                (3 + long.len() as u64, "bc".into())
            ]
        );
        assert_eq!(
            texts(&read_back(file, end, 1).unwrap()),
            vec![(3 + long.len() as u64, "bc".into())]
        );
        assert_eq!(
            texts(&read_back(file, 2, 5).unwrap()),
            vec![(0, "a".into())]
        );
        assert!(read_back(file, 0, 5).unwrap().is_empty());
        assert!(read_back(file, end, 0).unwrap().is_empty());
    }

    #[test]
    fn walking_back_says_whether_lines_are_left() {
        let contents = b"one\ntwo\n";
        let (tmp, _file) = file_with(contents);
        let mut backwards = Backwards::new(tmp.path(), contents.len() as u64);
        assert!(backwards.has_more());
        assert_eq!(backwards.next_line().unwrap().unwrap().offset, 4);
        assert!(backwards.has_more());
        assert_eq!(backwards.next_line().unwrap().unwrap().offset, 0);
        assert!(!backwards.has_more());
        assert!(backwards.next_line().unwrap().is_none());
        assert!(!Backwards::new(tmp.path(), 0).has_more());
    }

    #[test]
    fn a_few_lines_of_a_long_file_take_a_small_read() {
        // Lines of 100 bytes: the first read holds the last 40 or so.
        let line = format!("{}\n", "y".repeat(99));
        let contents = line.repeat(10_000);
        let (tmp, _file) = file_with(contents.as_bytes());
        let mut backwards = Backwards::new(tmp.path(), contents.len() as u64);
        for _ in 0..10 {
            backwards.next_line().unwrap().unwrap();
        }
        assert_eq!(backwards.start, contents.len() as u64 - FIRST_BACK_CHUNK);
    }

    #[test]
    fn finds_the_next_line_from_any_offset() {
        let contents = b"one\ntwo\nthree\n";
        let (_tmp, file) = file_with(contents);
        let end = contents.len() as u64;
        let at = |from| {
            line_from(&file, from, end)
                .unwrap()
                .map(|l| (l.offset, l.bytes))
        };
        assert_eq!(at(0), Some((0, b"one".to_vec())));
        assert_eq!(at(1), Some((4, b"two".to_vec())));
        assert_eq!(at(4), Some((4, b"two".to_vec())));
        assert_eq!(at(5), Some((8, b"three".to_vec())));
        assert_eq!(at(9), None);
        assert_eq!(at(end), None);
    }

    #[test]
    fn numbers_lines_from_one() {
        let (tmp, _file) = file_with(b"one\ntwo\nthree\n");
        assert_eq!(line_number(tmp.path(), 0).unwrap(), 1);
        assert_eq!(line_number(tmp.path(), 4).unwrap(), 2);
        assert_eq!(line_number(tmp.path(), 8).unwrap(), 3);
    }
}
