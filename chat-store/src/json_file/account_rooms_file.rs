//! The account rooms file, `DIR/account_rooms.jsonl`: one line per change of an account's room
//! set ([`Record::Rooms`](chat_core::Record::Rooms)), `{"owner":"alice","rooms":["lobby","rust"]}`,
//! appended and never rewritten.
//!
//! Every line holds the account's whole set, so when the file is read the last line for an owner
//! wins, and a crash leaves the set as it was before the record or as it is after it. Old lines
//! stay in the file (a set changes only on a join or leave; the file is not compacted).
//!
//! Like the accounts file ([`accounts_file`](super::accounts_file)), it is read whole at open
//! into the ledger; a torn last line is repaired, an unreadable line before it is
//! [`StoreError::Corrupt`] with its line number, and after a failed write the file is cut back
//! to its committed length.

use std::collections::BTreeMap;
use std::path::Path;

use chat_core::{RoomName, UserKey};
use serde::{Deserialize, Serialize};

use super::accounts_file::read_all;
use crate::store::StoreError;

/// One line of the file: an account's whole room set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    /// Whose rooms.
    pub(crate) owner: UserKey,
    /// Every room of the account, sorted.
    pub(crate) rooms: Vec<RoomName>,
}

/// The account rooms file as read at open.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Its length (0 if there is no file), ending with a complete line.
    pub(crate) len: u64,
    /// Every account's latest room set, the last line for each owner winning.
    pub(crate) rooms: BTreeMap<UserKey, Vec<RoomName>>,
}

/// Repairs the tail of the account rooms file at `path` and reads all of it (nothing if there is
/// no file yet), checking every line.
pub(crate) fn open(path: &Path) -> Result<Loaded, StoreError> {
    let mut rooms = BTreeMap::new();
    let len = read_all(path, |line: Line| {
        rooms.insert(line.owner, line.rooms);
    })?;
    Ok(Loaded { len, rooms })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn key(name: &str) -> UserKey {
        UserKey::parse(name).unwrap()
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn no_file_is_no_rooms() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = open(&tmp.path().join("account_rooms.jsonl")).unwrap();
        assert_eq!(loaded.len, 0);
        assert!(loaded.rooms.is_empty());
    }

    #[test]
    fn the_last_line_for_an_owner_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("account_rooms.jsonl");
        let contents = concat!(
            "{\"owner\":\"alice\",\"rooms\":[\"lobby\"]}\n",
            "{\"owner\":\"bob\",\"rooms\":[\"rust\"]}\n",
            "{\"owner\":\"alice\",\"rooms\":[\"lobby\",\"rust\"]}\n",
            "{\"owner\":\"bob\",\"rooms\":[]}\n",
        );
        fs::write(&path, contents).unwrap();
        let loaded = open(&path).unwrap();
        assert_eq!(loaded.len, contents.len() as u64);
        assert_eq!(
            loaded.rooms[&key("alice")],
            vec![room("lobby"), room("rust")]
        );
        assert_eq!(loaded.rooms[&key("bob")], Vec::<RoomName>::new());
        assert_eq!(loaded.rooms.len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("account_rooms.jsonl");
        let whole = "{\"owner\":\"alice\",\"rooms\":[\"lobby\"]}\n";
        fs::write(&path, format!("{whole}{{\"owner\":\"alice\",\"ro")).unwrap();
        let loaded = open(&path).unwrap();
        assert_eq!(loaded.len, whole.len() as u64);
        assert_eq!(fs::read_to_string(&path).unwrap(), whole);
        assert_eq!(loaded.rooms[&key("alice")], vec![room("lobby")]);
    }

    #[test]
    fn a_bad_line_before_the_last_is_corrupt_with_its_number() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("account_rooms.jsonl");
        fs::write(
            &path,
            concat!(
                "{\"owner\":\"alice\",\"rooms\":[]}\n",
                "{\"owner\":\"alice\",\"rooms\":[\"not a room\"]}\n",
                "{\"owner\":\"bob\",\"rooms\":[]}\n",
            ),
        )
        .unwrap();
        match open(&path) {
            Err(StoreError::Corrupt { path: p, line, .. }) => {
                assert_eq!(line, 2);
                assert_eq!(p, path);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
