//! A room's history file: one [`RoomMessage`] per line, in strictly increasing id order,
//! appended and never rewritten.
//!
//! Reads are bounded by what they return, not by the size of the file: a tail is read backwards
//! from the end, and a page `before` an id first finds where that id would be by binary search
//! over byte offsets (lines are in id order, and a probe at any offset skips to the next line
//! start), then reads backwards from there. Each line read is checked (valid JSON, the right
//! room, ids increasing); a bad one is [`StoreError::Corrupt`] with its line number.

use std::fs::File;
use std::path::Path;

use chat_core::{MessageId, RoomMessage, RoomName};

use super::lines::{self, Line};
use super::repair::{Repaired, repair};
use crate::store::StoreError;

/// Below this many bytes the binary search walks line by line.
const SCAN_BYTES: u64 = 4096;

/// Checks and repairs the tail of a room file at open (see [`repair`]).
pub(crate) fn open(path: &Path, room: &RoomName) -> Result<Repaired<MessageId>, StoreError> {
    repair(path, |bytes| check(bytes, room).map(|m| m.id))
}

/// One line as a message of `room`.
fn check(bytes: &[u8], room: &RoomName) -> Result<RoomMessage, String> {
    let message: RoomMessage = lines::parse_bytes(bytes)?;
    if message.room != *room {
        return Err(format!(
            "a message of #{} in the file of #{room}",
            message.room
        ));
    }
    Ok(message)
}

fn parse(path: &Path, room: &RoomName, line: &Line) -> Result<RoomMessage, StoreError> {
    check(&line.bytes, room).map_err(|reason| lines::corrupt(path, line.offset, reason))
}

/// Parses lines read in file order, checking that ids increase.
fn parse_all(
    path: &Path,
    room: &RoomName,
    read: Vec<Line>,
) -> Result<Vec<RoomMessage>, StoreError> {
    let mut messages: Vec<RoomMessage> = Vec::with_capacity(read.len());
    for line in &read {
        let message = parse(path, room, line)?;
        if let Some(previous) = messages.last().filter(|p| p.id >= message.id) {
            return Err(lines::corrupt(
                path,
                line.offset,
                format!("id {} follows id {}", message.id, previous.id),
            ));
        }
        messages.push(message);
    }
    Ok(messages)
}

fn open_file(path: &Path) -> Result<File, StoreError> {
    File::open(path).map_err(|e| StoreError::io(path, e))
}

/// The newest `count` messages of the first `end` bytes of the file, oldest first, and whether
/// older ones exist.
pub(crate) fn tail(
    path: &Path,
    room: &RoomName,
    end: u64,
    count: usize,
) -> Result<(Vec<RoomMessage>, bool), StoreError> {
    let file = open_file(path)?;
    let read = lines::read_back(&file, end, count).map_err(|e| StoreError::io(path, e))?;
    let has_older = match read.first() {
        Some(oldest) => oldest.offset > 0,
        None => end > 0,
    };
    Ok((parse_all(path, room, read)?, has_older))
}

/// Up to `limit` messages with an id below `before` (all, if `None`) in the first `end` bytes of
/// the file, oldest first.
pub(crate) fn page(
    path: &Path,
    room: &RoomName,
    end: u64,
    before: Option<MessageId>,
    limit: usize,
) -> Result<Vec<RoomMessage>, StoreError> {
    if limit == 0 || end == 0 {
        return Ok(Vec::new());
    }
    let file = open_file(path)?;
    let stop = match before {
        Some(before) => first_at_or_above(path, room, &file, end, before)?,
        None => end,
    };
    let read = lines::read_back(&file, stop, limit).map_err(|e| StoreError::io(path, e))?;
    parse_all(path, room, read)
}

/// The offset of the first line whose id is `before` or above (or `end` if there is none).
fn first_at_or_above(
    path: &Path,
    room: &RoomName,
    file: &File,
    end: u64,
    before: MessageId,
) -> Result<u64, StoreError> {
    let io = |e| StoreError::io(path, e);
    // Invariants: `lo` is a line start and every line before it has an id below `before`;
    // `hi` is `end` or the start of a line with an id at or above `before`; no line starts in
    // `[probe_end, hi)`, so the answer is `hi` or a line start in `[lo, probe_end)`.
    let (mut lo, mut hi, mut probe_end) = (0u64, end, end);
    while lo < probe_end {
        if probe_end - lo <= SCAN_BYTES {
            // Walk the few lines left, one by one.
            let mut pos = lo;
            while pos < probe_end {
                let Some(line) = lines::line_from(file, pos, end).map_err(io)? else {
                    break;
                };
                if line.offset >= probe_end {
                    break;
                }
                if parse(path, room, &line)?.id >= before {
                    return Ok(line.offset);
                }
                pos = line.offset + line.bytes.len() as u64 + 1;
            }
            return Ok(hi);
        }
        let mid = lo + (probe_end - lo) / 2;
        match lines::line_from(file, mid, end).map_err(io)? {
            Some(line) if line.offset < probe_end => {
                if parse(path, room, &line)?.id < before {
                    lo = line.offset + line.bytes.len() as u64 + 1;
                    probe_end = probe_end.max(lo);
                } else {
                    hi = line.offset;
                    probe_end = line.offset;
                }
            }
            // No line starts in [mid, probe_end).
            _ => probe_end = mid,
        }
    }
    Ok(hi)
}
