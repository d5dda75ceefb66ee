//! The accounts file, `DIR/accounts.jsonl`: one [`Account`] per line, exactly as chat-core
//! serialises it (`{"name":"Alice","hash":"$argon2id$…"}`, without `hash` for an account that
//! has no password), appended and never rewritten.
//!
//! A record for a name that is already an account is appended like any other, and when the file
//! is read the later line replaces the earlier one (names are compared by their
//! [`UserKey`]), which is the store's rule for a second record of one account. The file is
//! therefore never rewritten, and a crash leaves the account as it was before the record or as
//! it is after it. (A replaced account's old line stays in the file; accounts change rarely, so
//! the file is not compacted.)
//!
//! The file is read whole at open, line by line, into the ledger, which answers
//! [`Store::account`](crate::Store::account) from memory. A torn last line is repaired like that
//! of every other file ([`repair`]); an unreadable line before it is [`StoreError::Corrupt`]
//! with its line number. After a failed write the file is cut back to its committed length like
//! a room file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use chat_core::{Account, UserKey};
use serde::de::DeserializeOwned;

use super::lines;
use super::repair::repair;
use crate::store::StoreError;

/// The accounts file as read at open.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Its length (0 if there is no file), ending with a complete line.
    pub(crate) len: u64,
    /// Every account, the last line for each key winning.
    pub(crate) accounts: BTreeMap<UserKey, Account>,
}

/// Repairs the tail of the accounts file at `path` and reads all of it (nothing if there is no
/// file yet), checking every line.
pub(crate) fn open(path: &Path) -> Result<Loaded, StoreError> {
    let mut accounts = BTreeMap::new();
    let len = read_all(path, |account: Account| {
        accounts.insert(account.name.key(), account);
    })?;
    Ok(Loaded { len, accounts })
}

/// Repairs the tail of the append-only JSON-lines file at `path` and hands each of its lines,
/// parsed as a `T`, to `each`, in order; the file's repaired length (0, and nothing handed, if
/// there is no file). An unreadable line before the last is [`StoreError::Corrupt`] with its
/// line number. Shared with the account rooms file.
pub(crate) fn read_all<T: DeserializeOwned>(
    path: &Path,
    mut each: impl FnMut(T),
) -> Result<u64, StoreError> {
    let io = |e| StoreError::io(path, e);
    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    }
    let repaired = repair(path, |bytes| lines::parse_bytes::<T>(bytes).map(drop))?;
    let file = File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file.take(repaired.len));
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        number += 1;
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        let value: T = lines::parse_bytes(bytes).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            line: number,
            reason,
        })?;
        each(value);
    }
    Ok(repaired.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::{PasswordHash, UserName};

    fn account(name: &str, hash: Option<&str>) -> Account {
        Account {
            name: UserName::parse(name).unwrap(),
            hash: hash.map(PasswordHash::new),
        }
    }

    #[test]
    fn no_file_is_no_accounts() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = open(&tmp.path().join("accounts.jsonl")).unwrap();
        assert_eq!(loaded.len, 0);
        assert!(loaded.accounts.is_empty());
    }

    #[test]
    fn the_last_line_for_a_name_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("accounts.jsonl");
        let contents = concat!(
            "{\"name\":\"Alice\"}\n",
            "{\"name\":\"bob\",\"hash\":\"$argon2id$b\"}\n",
            "{\"name\":\"ALICE\",\"hash\":\"$argon2id$a\"}\n",
        );
        fs::write(&path, contents).unwrap();
        let loaded = open(&path).unwrap();
        assert_eq!(loaded.len, contents.len() as u64);
        let key = |name| UserKey::parse(name).unwrap();
        assert_eq!(
            loaded.accounts.get(&key("alice")),
            Some(&account("ALICE", Some("$argon2id$a")))
        );
        assert_eq!(
            loaded.accounts.get(&key("bob")),
            Some(&account("bob", Some("$argon2id$b")))
        );
        assert_eq!(loaded.accounts.len(), 2);
    }

    #[test]
    fn a_bad_line_before_the_last_is_corrupt_with_its_number() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("accounts.jsonl");
        fs::write(
            &path,
            "{\"name\":\"alice\"}\n{\"name\":\"not a name\"}\n{\"name\":\"bob\"}\n",
        )
        .unwrap();
        match open(&path) {
            Err(StoreError::Corrupt { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
