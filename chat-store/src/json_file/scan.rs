//! Reading a store directory into the writer's state: at open, and again when the store
//! recovers from a failed write.
//!
//! Both read the directory the same way: leftovers of interrupted replacements are removed, the
//! tail of every room, conversation, mailbox, accounts and account rooms file is repaired
//! ([`repair`](super::repair)), each room's and conversation's length and last id, every
//! mailbox, every account and every account's room set are read, and the id counter is
//! restored. Recovery ([`Committed`] given) first puts every file back to the state the writer
//! last committed, which is what readers were shown and callers were told: a room or
//! conversation file, the accounts file and the account rooms file are cut back to their
//! committed length (or removed if the failed batch created them) and a mailbox is restored to
//! its committed DMs. So after recovery the writer's state is exactly what a restart would read,
//! and holds no record of a failed batch.
//!
//! The cost is that of opening: one read of the last line per room and per conversation,
//! whatever the size of its history, and every mailbox (small, bounded by the core) and the
//! accounts and account rooms files read whole.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::Hash;
use std::path::{Path, PathBuf};

use chat_core::{DirectMessage, MessageId, RoomMessage, RoomName, UserKey};

use super::layout::{self, Entry, Layout, classify};
use super::message_log::{self, Logged};
use super::{account_rooms_file, accounts_file, durable, ids_file, mailbox_file};
use crate::conversations::Conversation;
use crate::ledger::Ledger;
use crate::store::StoreError;

/// What a directory holds, as the writer keeps it.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) ledger: Ledger,
    /// The length of every room file (0 for an empty one).
    pub(crate) room_len: HashMap<RoomName, u64>,
    /// The length of every conversation file (0 for an empty one).
    pub(crate) conversation_len: HashMap<Conversation, u64>,
    /// The mailboxes that have a file.
    pub(crate) mailbox_files: HashSet<UserKey>,
    /// The length of the accounts file (0 if there is none).
    pub(crate) accounts_len: u64,
    /// The length of the account rooms file (0 if there is none).
    pub(crate) account_rooms_len: u64,
    /// What `ids.json` says.
    pub(crate) ids_on_disk: Option<MessageId>,
}

/// The state the writer last committed and published, which recovery rolls the files back to.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) ledger: Ledger,
    /// The committed length of every room file.
    pub(crate) room_len: HashMap<RoomName, u64>,
    /// The committed length of every conversation file.
    pub(crate) conversation_len: HashMap<Conversation, u64>,
    /// The committed length of the accounts file (0: it has no committed line).
    pub(crate) accounts_len: u64,
    /// The committed length of the account rooms file (0: it has no committed line).
    pub(crate) account_rooms_len: u64,
}

/// Reads the store in `layout` (see the module docs), first rolling every file back to
/// `committed` if given.
pub(crate) fn scan(layout: &Layout, committed: Option<&Committed>) -> Result<Scan, StoreError> {
    let ids_path = layout.ids();
    remove_leftover(&durable::temporary(&ids_path))?;
    remove_leftover(&layout.probe())?;
    let ids_on_disk = ids_file::read(&ids_path)?;
    let mut ledger = Ledger::default();
    if let Some(next) = ids_on_disk {
        ledger.raise_floor(next);
    }
    // The counter never goes down, even if a file lost what raised it.
    if let Some(floor) = committed.and_then(|c| c.ledger.floor) {
        ledger.raise_floor(floor);
    }

    let rooms = scan_logs::<RoomMessage>(
        &layout.rooms,
        layout::room_of,
        |room| layout.room(room),
        committed.map(|c| &c.room_len),
    )?;
    let conversations = scan_logs::<DirectMessage>(
        &layout.dms,
        layout::conversation_of,
        |conversation| layout.conversation(conversation),
        committed.map(|c| &c.conversation_len),
    )?;
    for last in rooms.last.values().chain(conversations.last.values()) {
        ledger.raise_floor(last.next());
    }
    ledger.room_last = rooms.last;
    ledger.conversation_last = conversations.last;

    let mut mailbox_files = HashSet::new();
    for (owner, path) in data_files(&layout.mailboxes, layout::owner_of)? {
        let dms = match committed {
            Some(committed) => {
                let dms = committed
                    .ledger
                    .mailboxes
                    .get(&owner)
                    .cloned()
                    .unwrap_or_default();
                if !mailbox_file::restore(&path, &owner, &dms)? {
                    continue;
                }
                dms
            }
            None => mailbox_file::open(&path, &owner)?,
        };
        if let Some(last) = dms.last() {
            ledger.raise_floor(last.id.next());
            ledger.mailboxes.insert(owner.clone(), dms);
        }
        mailbox_files.insert(owner);
    }
    if let Some(committed) = committed {
        // Mailboxes whose file a failed delivery removed.
        for (owner, dms) in &committed.ledger.mailboxes {
            if !mailbox_files.contains(owner) {
                mailbox_file::restore(&layout.mailbox(owner), owner, dms)?;
                if let Some(last) = dms.last() {
                    ledger.raise_floor(last.id.next());
                }
                ledger.mailboxes.insert(owner.clone(), dms.clone());
                mailbox_files.insert(owner.clone());
            }
        }
    }

    let accounts_path = layout.accounts();
    if let Some(committed) = committed {
        roll_back_whole(&accounts_path, committed.accounts_len, "an accounts file")?;
    }
    let accounts = accounts_file::open(&accounts_path)?;
    ledger.accounts = accounts.accounts;

    let account_rooms_path = layout.account_rooms();
    if let Some(committed) = committed {
        roll_back_whole(
            &account_rooms_path,
            committed.account_rooms_len,
            "an account rooms file",
        )?;
    }
    let account_rooms = account_rooms_file::open(&account_rooms_path)?;
    ledger.account_rooms = account_rooms.rooms;

    Ok(Scan {
        ledger,
        room_len: rooms.len,
        conversation_len: conversations.len,
        mailbox_files,
        accounts_len: accounts.len,
        account_rooms_len: account_rooms.len,
        ids_on_disk,
    })
}

/// The message logs of one kind (rooms, conversations) as read from their directory.
struct Logs<K> {
    /// The length of every file (0 for an empty one).
    len: HashMap<K, u64>,
    /// The last id of every file that has a message.
    last: HashMap<K, MessageId>,
}

/// Reads the message logs of `M` in `dir`, each file named as `log_of` reads it back and
/// `path_of` writes it: rolls each back to its length in `committed` if given (removing a file a
/// failed write created), and repairs its tail.
fn scan_logs<M>(
    dir: &Path,
    log_of: impl Fn(&str) -> Option<M::Log>,
    path_of: impl Fn(&M::Log) -> PathBuf,
    committed: Option<&HashMap<M::Log, u64>>,
) -> Result<Logs<M::Log>, StoreError>
where
    M: Logged,
    M::Log: Hash + Ord,
{
    let mut logs = Logs {
        len: HashMap::new(),
        last: HashMap::new(),
    };
    for (log, path) in data_files(dir, log_of)? {
        if let Some(committed) = committed {
            match committed.get(&log) {
                Some(&len) => roll_back_append(&path, len)?,
                None => {
                    tracing::warn!(
                        path = %path.display(),
                        "removing a history file a failed write created"
                    );
                    durable::remove(&path)?;
                    continue;
                }
            }
        }
        let repaired = message_log::open::<M>(&path, &log)?;
        if let Some(last) = repaired.last {
            logs.last.insert(log.clone(), last);
        }
        logs.len.insert(log, repaired.len);
    }
    for (log, &len) in committed.into_iter().flatten() {
        if len > 0 && !logs.len.contains_key(log) {
            tracing::error!(
                path = %path_of(log).display(),
                "a history file with acknowledged messages is gone"
            );
        }
    }
    Ok(logs)
}

/// Puts a file of the directory read whole (the accounts, the account rooms) back to its
/// committed length `len`: removed if a failed write created it (`len` 0), cut back otherwise.
fn roll_back_whole(path: &Path, len: u64, what: &str) -> Result<(), StoreError> {
    match len {
        0 if path.exists() => {
            tracing::warn!(
                path = %path.display(),
                "removing {what} a failed write created"
            );
            durable::remove(path)
        }
        0 => Ok(()),
        len => roll_back_append(path, len),
    }
}

/// Cuts an append-only file (a room's, a conversation's, the accounts, the account rooms) back
/// to its committed length `len`, dropping what a failed batch appended.
fn roll_back_append(path: &Path, len: u64) -> Result<(), StoreError> {
    let on_disk = match fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!(
                path = %path.display(),
                committed = len,
                "a file with acknowledged records is gone"
            );
            return Ok(());
        }
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if on_disk > len {
        tracing::warn!(
            path = %path.display(),
            bytes = on_disk - len,
            "rolling back what a failed write appended"
        );
        durable::truncate(path, len)?;
    } else if on_disk < len {
        tracing::error!(
            path = %path.display(),
            committed = len,
            on_disk,
            "a file is shorter than what was acknowledged"
        );
    }
    Ok(())
}

/// The store's files in `dir` as (the name `name_of` reads from a file's stem, path), in name
/// order, after removing interrupted replacements and logging what is not the store's.
fn data_files<N: Ord>(
    dir: &Path,
    name_of: impl Fn(&str) -> Option<N>,
) -> Result<Vec<(N, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        if !entry
            .file_type()
            .map_err(|e| StoreError::io(&path, e))?
            .is_file()
        {
            foreign(&path);
            continue;
        }
        let file_name = entry.file_name();
        match file_name.to_str().map(|name| classify(name, &name_of)) {
            Some(Entry::Data(name)) => files.push((name, path)),
            Some(Entry::Temporary) => remove_leftover(&path)?,
            Some(Entry::Foreign) | None => foreign(&path),
        }
    }
    files.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(files)
}

fn foreign(path: &Path) {
    tracing::warn!(path = %path.display(), "ignoring a file that is not the store's");
}

/// Removes the temporary file of a replacement a crash interrupted (the original is intact).
fn remove_leftover(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        tracing::warn!(path = %path.display(), "removing an unfinished replacement");
        durable::remove(path)?;
    }
    Ok(())
}
