//! A message log file: the history of one room (`rooms/<room>.jsonl`, one [`RoomMessage`] per
//! line) or of one DM conversation (`dms/<a>+<b>.jsonl`, one [`DirectMessage`] per line), in
//! strictly increasing id order, appended and never rewritten.
//!
//! Both kinds are written, repaired and read the same way; what tells them apart is the
//! [`Logged`] trait: a message's id, and the check that it belongs in the file it was read from
//! (the right room, the right two users).
//!
//! Reads are bounded by what they return, not by the size of the file: a tail is read backwards
//! from the end ([`NewestFirst`], which the merge of a user's conversations also pulls from one
//! DM at a time), and a page `before` an id first finds where that id would be by binary search
//! over byte offsets (lines are in id order, and a probe at any offset skips to the next line
//! start), then reads backwards from there. Each line read is checked (valid JSON, in the right
//! file, ids increasing); a bad one is [`StoreError::Corrupt`] with its line number.

use std::fs::File;
use std::path::{Path, PathBuf};

use chat_core::{DirectMessage, MessageId, RoomMessage, RoomName};
use serde::de::DeserializeOwned;

use super::lines::{self, Backwards, Line};
use super::repair::{Repaired, repair};
use crate::conversations::{self, Conversation};
use crate::store::StoreError;

/// Below this many bytes the binary search walks line by line.
const SCAN_BYTES: u64 = 4096;

/// A message kept in a log file: its id, and whether it belongs in the file it was read from.
pub(crate) trait Logged: DeserializeOwned {
    /// What one file holds the history of: a room, or a conversation.
    type Log: Clone;

    /// The message's id.
    fn id(&self) -> MessageId;

    /// Checks that the message belongs in the file of `log`; if not, says why.
    fn belongs_in(&self, log: &Self::Log) -> Result<(), String>;
}

impl Logged for RoomMessage {
    type Log = RoomName;

    fn id(&self) -> MessageId {
        self.id
    }

    fn belongs_in(&self, room: &RoomName) -> Result<(), String> {
        if self.room == *room {
            Ok(())
        } else {
            Err(format!(
                "a message of #{} in the file of #{room}",
                self.room
            ))
        }
    }
}

impl Logged for DirectMessage {
    type Log = Conversation;

    fn id(&self) -> MessageId {
        self.id
    }

    fn belongs_in(&self, conversation: &Conversation) -> Result<(), String> {
        if self.parties() == *conversation {
            Ok(())
        } else {
            Err(format!(
                "a DM from {} to {} in the file of {}",
                self.from,
                self.to,
                conversations::place(conversation)
            ))
        }
    }
}

/// Checks and repairs the tail of the log file of `log` at open (see [`repair`]); its last id.
pub(crate) fn open<M: Logged>(
    path: &Path,
    log: &M::Log,
) -> Result<Repaired<MessageId>, StoreError> {
    repair(path, |bytes| check::<M>(bytes, log).map(|m| m.id()))
}

/// One line as a message of `log`.
fn check<M: Logged>(bytes: &[u8], log: &M::Log) -> Result<M, String> {
    let message: M = lines::parse_bytes(bytes)?;
    message.belongs_in(log)?;
    Ok(message)
}

fn parse<M: Logged>(path: &Path, log: &M::Log, line: &Line) -> Result<M, StoreError> {
    check(&line.bytes, log).map_err(|reason| lines::corrupt(path, line.offset, reason))
}

/// The messages of a log file read backwards from an end offset, one at a time: the newest
/// first, each checked, ids checked to decrease.
#[derive(Debug)]
pub(crate) struct NewestFirst<M: Logged> {
    lines: Backwards,
    log: M::Log,
    /// The id and offset of the message handed out last.
    previous: Option<(MessageId, u64)>,
}

impl<M: Logged> NewestFirst<M> {
    /// The messages of `log` in the first `end` bytes of the file at `path`.
    pub(crate) fn new(path: impl Into<PathBuf>, log: M::Log, end: u64) -> Self {
        NewestFirst {
            lines: Backwards::new(path, end),
            log,
            previous: None,
        }
    }

    /// The next message back, or `None` at the start of the file.
    fn next_message(&mut self) -> Result<Option<M>, StoreError> {
        let Some(line) = self.lines.next_line()? else {
            return Ok(None);
        };
        let path = self.lines.path();
        let message: M = parse(path, &self.log, &line)?;
        if let Some((later, later_offset)) = self.previous.filter(|&(id, _)| id <= message.id()) {
            // The later line is out of place, as a forward read would find it.
            return Err(lines::corrupt(
                path,
                later_offset,
                format!("id {later} follows id {}", message.id()),
            ));
        }
        self.previous = Some((message.id(), line.offset));
        Ok(Some(message))
    }
}

impl<M: Logged> Iterator for NewestFirst<M> {
    type Item = Result<M, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message().transpose()
    }
}

/// The newest `count` messages of the first `end` bytes of the file, oldest first, and whether
/// older ones exist.
pub(crate) fn tail<M: Logged>(
    path: &Path,
    log: &M::Log,
    end: u64,
    count: usize,
) -> Result<(Vec<M>, bool), StoreError> {
    let mut newest = NewestFirst::<M>::new(path, log.clone(), end);
    let mut messages = newest
        .by_ref()
        .take(count)
        .collect::<Result<Vec<M>, StoreError>>()?;
    messages.reverse();
    Ok((messages, newest.lines.has_more()))
}

/// Up to `limit` messages with an id below `before` (all, if `None`) in the first `end` bytes of
/// the file, oldest first.
pub(crate) fn page<M: Logged>(
    path: &Path,
    log: &M::Log,
    end: u64,
    before: Option<MessageId>,
    limit: usize,
) -> Result<Vec<M>, StoreError> {
    if limit == 0 || end == 0 {
        return Ok(Vec::new());
    }
    let stop = match before {
        Some(before) => {
            let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
            first_at_or_above::<M>(path, log, &file, end, before)?
        }
        None => end,
    };
    let (messages, _) = tail(path, log, stop, limit)?;
    Ok(messages)
}

/// The offset of the first line whose id is `before` or above (or `end` if there is none).
fn first_at_or_above<M: Logged>(
    path: &Path,
    log: &M::Log,
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
                if parse::<M>(path, log, &line)?.id() >= before {
                    return Ok(line.offset);
                }
                pos = line.offset + line.bytes.len() as u64 + 1;
            }
            return Ok(hi);
        }
        let mid = lo + (probe_end - lo) / 2;
        match lines::line_from(file, mid, end).map_err(io)? {
            Some(line) if line.offset < probe_end => {
                if parse::<M>(path, log, &line)?.id() < before {
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
