//! Reading a JSON-lines file by lines without reading all of it: backwards from an end offset
//! (tails and history pages), forwards from an offset (binary search), and the line number of an
//! offset for error reports (only ever computed on the error path, where reading the file up to
//! the offset is acceptable).
//!
//! Every function takes an `end`: the committed length of the file, published by the writer
//! after its fsync. Readers never look past it, so a line the writer is still appending is
//! never seen half-written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// How much is read at once when walking backwards.
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

/// The last `count` lines that end at or before `end` (which is 0 or just after a newline),
/// oldest first.
pub(crate) fn read_back(file: &File, end: u64, count: usize) -> io::Result<Vec<Line>> {
    let mut lines = Vec::new();
    // Unconsumed bytes [buf_start, buf_start + buf.len()); when not empty they end with the
    // newline of the next line to hand out.
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = end;
    while lines.len() < count {
        let body = buf.len().saturating_sub(1);
        match buf[..body].iter().rposition(|&b| b == b'\n') {
            Some(newline) => {
                lines.push(Line {
                    offset: buf_start + newline as u64 + 1,
                    bytes: buf[newline + 1..body].to_vec(),
                });
                buf.truncate(newline + 1);
            }
            None if buf_start == 0 => {
                if !buf.is_empty() {
                    buf.truncate(body);
                    lines.push(Line {
                        offset: 0,
                        bytes: std::mem::take(&mut buf),
                    });
                }
                break;
            }
            None => {
                let len = BACK_CHUNK.min(buf_start);
                buf_start -= len;
                let mut chunk = read_at(file, buf_start, len)?;
                chunk.extend_from_slice(&buf);
                buf = chunk;
            }
        }
    }
    lines.reverse();
    Ok(lines)
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
        let (_tmp, file) = file_with(contents.as_bytes());
        let end = contents.len() as u64;
        let all = read_back(&file, end, 10).unwrap();
        assert_eq!(
            texts(&all),
            vec![
                (0, "a".into()),
                (2, long.clone()),
                (3 + long.len() as u64, "bc".into())
            ]
        );
        assert_eq!(
            texts(&read_back(&file, end, 1).unwrap()),
            vec![(3 + long.len() as u64, "bc".into())]
        );
        assert_eq!(
            texts(&read_back(&file, 2, 5).unwrap()),
            vec![(0, "a".into())]
        );
        assert!(read_back(&file, 0, 5).unwrap().is_empty());
        assert!(read_back(&file, end, 0).unwrap().is_empty());
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
