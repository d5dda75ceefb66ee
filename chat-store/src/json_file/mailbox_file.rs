//! A user's mailbox file: their undelivered DMs, one [`DirectMessage`] per line, oldest first.
//!
//! Queued DMs are appended. A delivery ([`Record::Delivered`](chat_core::Record::Delivered))
//! changes the file in one atomic step: when nothing is left (the usual case, since a login takes
//! the whole mailbox) the file is unlinked; when DMs newer than `through` remain, the remaining
//! ones are written to a temporary file that replaces the mailbox by rename (see
//! [`durable`](super::durable)). Either way a crash leaves the mailbox as it was before the
//! delivery or as it is after it: a DM is never lost and never delivered twice. Mailboxes are
//! small (bounded by the core's mailbox limit), so they are read whole at open.

use std::fs;
use std::path::Path;

use chat_core::{DirectMessage, UserKey};

use super::lines::{self, Line};
use super::repair::repair;
use crate::store::StoreError;

/// One line as a DM for `owner`.
fn check(bytes: &[u8], owner: &UserKey) -> Result<DirectMessage, String> {
    let dm: DirectMessage = lines::parse_bytes(bytes)?;
    if dm.owner() != *owner {
        return Err(format!("a DM for {} in the mailbox of {owner}", dm.owner()));
    }
    Ok(dm)
}

/// Repairs the tail of a mailbox file and reads all of it, checking every line.
pub(crate) fn open(path: &Path, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
    let repaired = repair(path, |bytes| check(bytes, owner).map(drop))?;
    let contents = fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let contents = contents.get(..repaired.len as usize).unwrap_or(&contents);
    let mut dms: Vec<DirectMessage> = Vec::new();
    let mut offset = 0u64;
    for bytes in contents.split_inclusive(|&b| b == b'\n') {
        let line = Line {
            offset,
            bytes: bytes.strip_suffix(b"\n").unwrap_or(bytes).to_vec(),
        };
        offset += bytes.len() as u64;
        let dm = check(&line.bytes, owner)
            .map_err(|reason| lines::corrupt(path, line.offset, reason))?;
        if let Some(previous) = dms.last().filter(|p| p.id >= dm.id) {
            return Err(lines::corrupt(
                path,
                line.offset,
                format!("id {} follows id {}", dm.id, previous.id),
            ));
        }
        dms.push(dm);
    }
    Ok(dms)
}

/// The file contents for `dms`.
pub(crate) fn encode(dms: &[DirectMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for dm in dms {
        super::encode_line(&mut out, dm);
    }
    out
}
