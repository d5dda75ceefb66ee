//! The id counter file, `DIR/ids.json`: `{"next_id":N}`, meaning ids below N may have been
//! handed out.
//!
//! It changes once per block of ids the core reserves ([`Record::IdsReserved`]) and when a
//! delivery removes DMs (whose ids would otherwise no longer be on disk), so it is replaced
//! whole, atomically ([`durable::replace`]), rather than appended to. Message ids in room and
//! mailbox files raise the restored counter too, so the file alone never has to be exact.
//!
//! [`Record::IdsReserved`]: chat_core::Record::IdsReserved

use std::fs;
use std::io;
use std::path::Path;

use chat_core::MessageId;
use serde::{Deserialize, Serialize};

use super::durable;
use crate::store::StoreError;

#[derive(Serialize, Deserialize)]
struct IdsFile {
    next_id: MessageId,
}

/// The stored counter, or `None` if there is no file yet.
pub(crate) fn read(path: &Path) -> Result<Option<MessageId>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<IdsFile>(&bytes)
            .map(|f| Some(f.next_id))
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                line: 1,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Replaces the stored counter with `next_id`, durably.
pub(crate) fn write(path: &Path, next_id: MessageId) -> Result<(), StoreError> {
    let mut contents = serde_json::to_vec(&IdsFile { next_id })
        .expect("a struct of one integer always serialises");
    contents.push(b'\n');
    durable::replace(path, &contents)
}
