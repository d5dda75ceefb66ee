//! Repairing a torn tail when a store opens.
//!
//! A crash in the middle of an append can leave the last line of a file without its newline, or
//! with bytes that are not a record (a file system may persist a grown size before the data).
//! Such a line was never acknowledged, because the writer acknowledges only after the fsync of
//! the whole line. So at open the last line, if it is torn or unreadable, is logged as a warning
//! and truncated away; this is never fatal. Exactly one line may go: if the line before it is
//! unreadable too, that line is in the middle of what was acknowledged, and opening fails with
//! [`StoreError::Corrupt`] naming the file and line, for a person to look at.
//!
//! Only the last line is read, so opening costs the same for a short file and a huge one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::lines::{self, Backwards, Line};
use crate::store::StoreError;

/// A file after its tail was checked.
#[derive(Debug)]
pub(crate) struct Repaired<T> {
    /// Its length, now ending with a complete, valid line (or 0).
    pub(crate) len: u64,
    /// Its last record, if it has any.
    pub(crate) last: Option<T>,
}

/// Checks the last line of the file at `path` with `validate`, truncating a torn or invalid last
/// line away (see the module docs).
pub(crate) fn repair<T>(
    path: &Path,
    validate: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<Repaired<T>, StoreError> {
    let io = |e| StoreError::io(path, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut len = file.metadata().map_err(io)?.len();
    let mut discarded = false;
    loop {
        // The last line, with or without its newline.
        let Some((line, terminated)) = last_line(path, &file, len)? else {
            return Ok(Repaired { len, last: None });
        };
        let problem = if terminated {
            match validate(&line.bytes) {
                Ok(last) => {
                    return Ok(Repaired {
                        len,
                        last: Some(last),
                    });
                }
                Err(reason) => reason,
            }
        } else {
            "the line has no newline (an append was cut short)".to_owned()
        };
        if discarded {
            return Err(lines::corrupt(path, line.offset, problem));
        }
        let number = lines::line_number(path, line.offset)?;
        tracing::warn!(
            path = %path.display(),
            line = number,
            bytes = len - line.offset,
            "discarding a torn last record, which was never acknowledged: {problem}"
        );
        file.set_len(line.offset).map_err(io)?;
        file.sync_all().map_err(io)?;
        len = line.offset;
        discarded = true;
    }
}

/// The last line of the first `len` bytes of `file` (open at `path`), and whether it ends with a
/// newline.
fn last_line(path: &Path, mut file: &File, len: u64) -> Result<Option<(Line, bool)>, StoreError> {
    if len == 0 {
        return Ok(None);
    }
    let mut last_byte = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))
        .and_then(|_| file.read_exact(&mut last_byte))
        .map_err(|e| StoreError::io(path, e))?;
    // `Backwards` takes the final byte for the newline, so for an unterminated line it returns
    // the line minus its last byte, at the right offset, which is all a torn line needs.
    let line = Backwards::new(path, len).next_line()?;
    Ok(line.map(|line| (line, last_byte[0] == b'\n')))
}
