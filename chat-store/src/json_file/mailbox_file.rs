//! A user's mailbox file: their undelivered DMs, one [`DirectMessage`] per line, oldest first.
//!
//! Queued DMs are appended. A delivery ([`Record::Delivered`](chat_core::Record::Delivered))
//! changes the file in one atomic step: when nothing is left (the usual case, since a login takes
//! the whole mailbox) the file is unlinked; when DMs newer than `through` remain, the remaining
//! ones are written to a temporary file that replaces the mailbox by rename (see
//! [`durable`](super::durable)). Either way a crash leaves the mailbox as it was before the
//! delivery or as it is after it: a DM is never lost and never delivered twice. Mailboxes are
//! small (bounded by the core's mailbox limit), so they are read whole at open.
//!
//! After a failed write, [`restore`] puts a mailbox back to its last acknowledged DMs.

use std::fs;
use std::io;
use std::path::Path;

use chat_core::{DirectMessage, UserKey};

use super::durable;
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

/// Makes the mailbox file of `owner` at `path` hold exactly `dms` (its last acknowledged DMs),
/// undoing whatever a failed write did to it: appended lines, a replacement or a removal. The
/// file is read first and rewritten only if it differs, so a mailbox the failure did not reach
/// costs no write. Returns whether a file is left (none when `dms` is empty and it differed).
pub(crate) fn restore(
    path: &Path,
    owner: &UserKey,
    dms: &[DirectMessage],
) -> Result<bool, StoreError> {
    let on_disk = match fs::metadata(path) {
        Ok(_) => Some(open(path, owner)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if on_disk.as_deref().unwrap_or_default() == dms {
        return Ok(on_disk.is_some());
    }
    tracing::warn!(
        path = %path.display(),
        "rolling a mailbox back to its last acknowledged DMs after a failed write"
    );
    if dms.is_empty() {
        durable::remove(path)?;
        Ok(false)
    } else {
        durable::replace(path, &encode(dms))?;
        Ok(true)
    }
}
