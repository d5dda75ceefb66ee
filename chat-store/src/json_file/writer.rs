//! The writer thread: every change to the directory goes through it, and it is where group
//! commit happens.
//!
//! `append` calls send their records over a channel and wait for an answer. The thread takes
//! the first request, drains everything else already queued (up to [`MAX_BATCH`] requests),
//! validates each request against its [`Ledger`] (a request that breaks the id order is refused
//! alone), and commits the accepted records of the whole batch together:
//!
//! 1. `ids.json` is replaced if a reservation or delivery raised the counter (first, so that a
//!    crash later in the batch leaves more ids reserved, never fewer);
//! 2. each touched room, conversation and mailbox file, and the accounts and account rooms
//!    files, get one `write` of all its new lines, and then one fsync (the fsyncs of different
//!    files run in parallel, so the file system can merge them into one journal commit), plus
//!    one fsync of each directory that gained a file;
//! 3. each delivered mailbox is removed or replaced atomically ([`mailbox_file`]).
//!
//! Only then are the new file lengths, last ids, mailboxes, accounts and account rooms published
//! to readers, and every request of the batch answered. So a burst of concurrent appends costs
//! one fsync per touched file, not one per append, and nothing is acknowledged before it is on
//! disk.
//!
//! If a write or fsync fails, the batch is undone: while writing, the writer notes the length
//! of every file before its append ([`Undo`]); on failure it cuts each back (removing the files
//! the batch created) and restores each mailbox it began to rewrite from the committed DMs, all
//! best effort. Every request of the batch gets the error, and the writer refuses appends
//! ([`StoreError::Halted`]) until a [`Request::Recover`] succeeds: after a failed fsync the
//! kernel's view of a file can no longer be trusted, so recovery does not patch the writer's
//! state but rolls the files back to the committed state again and re-reads the directory
//! ([`scan`]), then probes the disk. A `Recover` ends the batch it arrives in, so it runs after
//! everything queued before it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use chat_core::{MessageId, Record, RoomName, UserKey};
use tokio::sync::oneshot;

use super::layout::Layout;
use super::scan::{self, Committed};
use super::{Shared, account_rooms_file, durable, encode_line, ids_file, mailbox_file};
use crate::conversations::Conversation;
use crate::ledger::Ledger;
use crate::store::StoreError;

/// The most requests committed together.
pub(crate) const MAX_BATCH: usize = 4096;
/// The most append handles kept open.
const MAX_OPEN_FILES: usize = 256;
/// The most fsyncs run at once.
const SYNC_THREADS: usize = 16;

/// Where the answer to a request goes.
pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// What the store asks of its writer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Store these records durably, then answer.
    Append {
        /// The records, in order.
        records: Vec<Record>,
        /// The answer.
        reply: Reply,
    },
    /// Answer once everything before this request is durable.
    Flush(Reply),
    /// Like `Flush`, then stop the thread.
    Close(Reply),
    /// After everything before it, recover from a failed write if there was one.
    Recover(Reply),
}

/// The writer thread's state: the truth as of its last commit plus what it has accepted since.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) layout: Layout,
    pub(crate) ledger: Ledger,
    /// The length of every room file.
    pub(crate) room_len: HashMap<RoomName, u64>,
    /// The length of every conversation file.
    pub(crate) conversation_len: HashMap<Conversation, u64>,
    /// The mailboxes that have a file.
    pub(crate) mailbox_files: HashSet<UserKey>,
    /// The length of the accounts file (0 if there is none).
    pub(crate) accounts_len: u64,
    /// The length of the account rooms file (0 if there is none).
    pub(crate) account_rooms_len: u64,
    /// What `ids.json` says.
    pub(crate) ids_on_disk: Option<MessageId>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    /// Open append handles.
    pub(crate) files: HashMap<PathBuf, File>,
    /// Why writing stopped, if it did; cleared by a successful recovery.
    pub(crate) halted: Option<String>,
}

/// What one batch did to the files so far, to undo it if a later step fails.
#[derive(Debug, Default)]
struct Undo {
    /// Every file appended to, with its length before the batch (0: remove it).
    appended: Vec<(PathBuf, u64)>,
    /// Every mailbox whose file the batch began to replace or remove.
    rewritten: Vec<UserKey>,
}

/// The accepted changes of one batch, by file.
#[derive(Debug, Default)]
struct Pending {
    /// The lines to append to each room file.
    rooms: BTreeMap<RoomName, Vec<u8>>,
    /// The lines to append to each conversation file.
    conversations: BTreeMap<Conversation, Vec<u8>>,
    /// The lines to append to each mailbox file.
    mailbox_appends: BTreeMap<UserKey, Vec<u8>>,
    /// Mailboxes that had a delivery: their file is rewritten from the ledger instead.
    mailbox_rewrites: BTreeSet<UserKey>,
    /// The lines to append to the accounts file.
    accounts: Vec<u8>,
    /// The accounts those lines store or replace.
    account_keys: BTreeSet<UserKey>,
    /// The lines to append to the account rooms file.
    account_rooms: Vec<u8>,
    /// The accounts whose room sets those lines store.
    account_rooms_keys: BTreeSet<UserKey>,
    /// A reservation or delivery may have raised the id floor.
    ids: bool,
}

impl Pending {
    fn add(&mut self, record: &Record) {
        match record {
            Record::Message(message) => {
                encode_line(
                    self.rooms.entry(message.room.clone()).or_default(),
                    &**message,
                );
            }
            Record::Dm(dm) => {
                encode_line(self.conversations.entry(dm.parties()).or_default(), &**dm);
            }
            Record::Queued(dm) => {
                let owner = dm.owner();
                if !self.mailbox_rewrites.contains(&owner) {
                    encode_line(self.mailbox_appends.entry(owner).or_default(), &**dm);
                }
            }
            Record::Delivered { owner, .. } => {
                self.mailbox_appends.remove(owner);
                self.mailbox_rewrites.insert(owner.clone());
                self.ids = true;
            }
            Record::IdsReserved { .. } => self.ids = true,
            Record::Account(account) => {
                encode_line(&mut self.accounts, account);
                self.account_keys.insert(account.name.key());
            }
            Record::Rooms { owner, rooms } => {
                encode_line(
                    &mut self.account_rooms,
                    &account_rooms_file::Line {
                        owner: owner.clone(),
                        rooms: rooms.clone(),
                    },
                );
                self.account_rooms_keys.insert(owner.clone());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.conversations.is_empty()
            && self.mailbox_appends.is_empty()
            && self.mailbox_rewrites.is_empty()
            && self.accounts.is_empty()
            && self.account_rooms.is_empty()
            && !self.ids
    }
}

impl Writer {
    /// Serves requests until the store is closed or dropped.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && !matches!(batch.last(), Some(Request::Recover(_))) {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if self.commit(batch) {
                return;
            }
        }
    }

    /// Commits one batch and answers its requests; returns whether the store is closing.
    fn commit(&mut self, batch: Vec<Request>) -> bool {
        let mut waiting = Vec::with_capacity(batch.len());
        let mut pending = Pending::default();
        let mut closing = false;
        let mut recovering = None;
        for request in batch {
            match request {
                Request::Append { records, reply } => {
                    if let Some(cause) = &self.halted {
                        let _ = reply.send(Err(StoreError::Halted {
                            cause: cause.clone(),
                        }));
                    } else if let Err(refused) = self.ledger.check(&records) {
                        let _ = reply.send(Err(refused));
                    } else {
                        for record in &records {
                            self.ledger.apply(record);
                            pending.add(record);
                        }
                        waiting.push(reply);
                    }
                }
                Request::Flush(reply) => waiting.push(reply),
                Request::Close(reply) => {
                    waiting.push(reply);
                    closing = true;
                }
                // Always the last of its batch (see `run`).
                Request::Recover(reply) => recovering = Some(reply),
            }
        }
        let mut failed = None;
        if !pending.is_empty() {
            let mut undo = Undo::default();
            match self.write(&pending, &mut undo) {
                Ok(()) => self.publish(&pending),
                Err(e) => {
                    self.fail(&e, &undo);
                    failed = Some(e);
                }
            }
        }
        for reply in waiting {
            let answer = match (&failed, &self.halted) {
                (Some(e), _) => Err(same_error(e)),
                (None, Some(cause)) => Err(StoreError::Halted {
                    cause: cause.clone(),
                }),
                (None, None) => Ok(()),
            };
            // A caller that stopped waiting (a dropped future) needs no answer.
            let _ = reply.send(answer);
        }
        if let Some(reply) = recovering {
            let _ = reply.send(self.recover());
        }
        closing
    }

    /// Undoes the failed batch as far as it can and stops writing until a recovery.
    fn fail(&mut self, error: &StoreError, undo: &Undo) {
        tracing::error!("a write failed; the store refuses appends until it recovers: {error}");
        // The handles may point at replaced files, and after a failed fsync their state is
        // unknown; recovery opens new ones.
        self.files.clear();
        if let Err(e) = self.roll_back(undo) {
            tracing::error!("undoing the failed batch failed too ({e}); recovery will finish it");
        }
        let cause = error.to_string();
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).halted = Some(cause.clone());
        self.halted = Some(cause);
        // `ledger`, `room_len`, `conversation_len` and `mailbox_files` now include the failed
        // batch; no append is accepted until `recover` replaces them with what is on disk.
    }

    /// Puts every file `undo` lists back to its committed state; tries them all and returns the
    /// first error.
    fn roll_back(&self, undo: &Undo) -> Result<(), StoreError> {
        let mut result = Ok(());
        for (path, len) in undo.appended.iter().rev() {
            let undone = match len {
                0 => durable::remove(path),
                &len => durable::truncate(path, len),
            };
            result = result.and(undone);
        }
        if !undo.rewritten.is_empty() {
            let committed: Vec<_> = {
                let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                undo.rewritten
                    .iter()
                    .map(|owner| {
                        let dms = shared.ledger.mailboxes.get(owner).cloned();
                        (owner, dms.unwrap_or_default())
                    })
                    .collect()
            };
            for (owner, dms) in committed {
                let path = self.layout.mailbox(owner);
                result = result.and(mailbox_file::restore(&path, owner, &dms).map(drop));
            }
        }
        result
    }

    /// Recovers from a failed write (see the module docs): rolls the files back to the
    /// committed state, re-reads them, probes the disk, and accepts appends again.
    fn recover(&mut self) -> Result<(), StoreError> {
        let Some(cause) = &self.halted else {
            return Ok(());
        };
        tracing::info!("recovering from a failed write ({cause})");
        self.files.clear();
        let committed = {
            let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            Committed {
                ledger: shared.ledger.clone(),
                room_len: shared.room_len.clone(),
                conversation_len: shared.conversation_len.clone(),
                accounts_len: shared.accounts_len,
                account_rooms_len: shared.account_rooms_len,
            }
        };
        let scan = scan::scan(&self.layout, Some(&committed))?;
        durable::probe(&self.layout.probe())?;
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.ledger = scan.ledger.clone();
            shared.room_len = scan.room_len.clone();
            shared.conversation_len = scan.conversation_len.clone();
            shared.accounts_len = scan.accounts_len;
            shared.account_rooms_len = scan.account_rooms_len;
            shared.halted = None;
        }
        self.ledger = scan.ledger;
        self.room_len = scan.room_len;
        self.conversation_len = scan.conversation_len;
        self.mailbox_files = scan.mailbox_files;
        self.accounts_len = scan.accounts_len;
        self.account_rooms_len = scan.account_rooms_len;
        self.ids_on_disk = scan.ids_on_disk;
        self.halted = None;
        tracing::info!("the store accepts appends again");
        Ok(())
    }

    /// Makes `pending` durable, in the order the module docs give, noting in `undo` what to
    /// undo if a step fails.
    fn write(&mut self, pending: &Pending, undo: &mut Undo) -> Result<(), StoreError> {
        if pending.ids {
            if let Some(floor) = self.ledger.floor.filter(|&f| Some(f) > self.ids_on_disk) {
                ids_file::write(&self.layout.ids(), floor)?;
                self.ids_on_disk = Some(floor);
            }
        }
        let mut touched = Vec::new();
        let mut new_dirs = BTreeSet::new();
        for (room, lines) in &pending.rooms {
            let path = self.layout.room(room);
            if !self.room_len.contains_key(room) {
                new_dirs.insert(self.layout.rooms.clone());
            }
            self.append(&path, lines, undo)?;
            touched.push(path);
        }
        for (conversation, lines) in &pending.conversations {
            let path = self.layout.conversation(conversation);
            if !self.conversation_len.contains_key(conversation) {
                new_dirs.insert(self.layout.dms.clone());
            }
            self.append(&path, lines, undo)?;
            touched.push(path);
        }
        for (owner, lines) in &pending.mailbox_appends {
            let path = self.layout.mailbox(owner);
            if self.mailbox_files.insert(owner.clone()) {
                new_dirs.insert(self.layout.mailboxes.clone());
            }
            self.append(&path, lines, undo)?;
            touched.push(path);
        }
        if !pending.accounts.is_empty() {
            let path = self.layout.accounts();
            if self.accounts_len == 0 {
                // The file may be new.
                new_dirs.insert(self.layout.dir.clone());
            }
            self.append(&path, &pending.accounts, undo)?;
            touched.push(path);
        }
        if !pending.account_rooms.is_empty() {
            let path = self.layout.account_rooms();
            if self.account_rooms_len == 0 {
                // The file may be new.
                new_dirs.insert(self.layout.dir.clone());
            }
            self.append(&path, &pending.account_rooms, undo)?;
            touched.push(path);
        }
        self.sync(&touched)?;
        for dir in &new_dirs {
            durable::sync_dir(dir)?;
        }
        for (room, lines) in &pending.rooms {
            *self.room_len.entry(room.clone()).or_default() += lines.len() as u64;
        }
        for (conversation, lines) in &pending.conversations {
            *self
                .conversation_len
                .entry(conversation.clone())
                .or_default() += lines.len() as u64;
        }
        self.accounts_len += pending.accounts.len() as u64;
        self.account_rooms_len += pending.account_rooms.len() as u64;
        for owner in &pending.mailbox_rewrites {
            let path = self.layout.mailbox(owner);
            // The handle would keep appending to the replaced file.
            self.files.remove(&path);
            undo.rewritten.push(owner.clone());
            match self.ledger.mailboxes.get(owner) {
                Some(dms) => {
                    durable::replace(&path, &mailbox_file::encode(dms))?;
                    self.mailbox_files.insert(owner.clone());
                }
                None => {
                    durable::remove(&path)?;
                    self.mailbox_files.remove(owner);
                }
            }
        }
        Ok(())
    }

    /// Appends `lines` to the file at `path`, creating it if needed (not yet durable), and notes
    /// its length before in `undo`.
    fn append(&mut self, path: &Path, lines: &[u8], undo: &mut Undo) -> Result<(), StoreError> {
        if !self.files.contains_key(path) {
            if self.files.len() >= MAX_OPEN_FILES {
                self.files.clear();
            }
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| StoreError::io(path, e))?;
            self.files.insert(path.to_path_buf(), file);
        }
        let file = self
            .files
            .get_mut(path)
            .expect("the handle was opened just above");
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        undo.appended.push((path.to_path_buf(), len));
        file.write_all(lines).map_err(|e| StoreError::io(path, e))
    }

    /// Fsyncs the files at `paths` (all open in `self.files`), in parallel when there are many.
    fn sync(&self, paths: &[PathBuf]) -> Result<(), StoreError> {
        let sync_one = |path: &PathBuf| -> Result<(), StoreError> {
            let file = self
                .files
                .get(path)
                .expect("every touched file was opened by `append` in this batch");
            file.sync_data().map_err(|e| StoreError::io(path, e))
        };
        if paths.len() <= 1 {
            return paths.iter().try_for_each(sync_one);
        }
        let per_thread = paths.len().div_ceil(SYNC_THREADS);
        std::thread::scope(|scope| {
            let workers: Vec<_> = paths
                .chunks(per_thread)
                .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(sync_one)))
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })
    }

    /// Shows readers the state as of this commit.
    fn publish(&self, pending: &Pending) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for room in pending.rooms.keys() {
            shared.room_len.insert(room.clone(), self.room_len[room]);
            if let Some(&last) = self.ledger.room_last.get(room) {
                shared.ledger.room_last.insert(room.clone(), last);
            }
        }
        for conversation in pending.conversations.keys() {
            shared
                .conversation_len
                .insert(conversation.clone(), self.conversation_len[conversation]);
            if let Some(&last) = self.ledger.conversation_last.get(conversation) {
                shared
                    .ledger
                    .conversation_last
                    .insert(conversation.clone(), last);
            }
        }
        for owner in pending
            .mailbox_appends
            .keys()
            .chain(&pending.mailbox_rewrites)
        {
            match self.ledger.mailboxes.get(owner) {
                Some(dms) => shared.ledger.mailboxes.insert(owner.clone(), dms.clone()),
                None => shared.ledger.mailboxes.remove(owner),
            };
        }
        for key in &pending.account_keys {
            if let Some(account) = self.ledger.accounts.get(key) {
                shared.ledger.accounts.insert(key.clone(), account.clone());
            }
        }
        for key in &pending.account_rooms_keys {
            if let Some(rooms) = self.ledger.account_rooms.get(key) {
                shared
                    .ledger
                    .account_rooms
                    .insert(key.clone(), rooms.clone());
            }
        }
        shared.accounts_len = self.accounts_len;
        shared.account_rooms_len = self.account_rooms_len;
        shared.ledger.floor = self.ledger.floor;
    }
}

/// The same error again, for each request of a failed batch (`io::Error` is not `Clone`; the
/// kind and the system's error code are kept).
fn same_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        other => StoreError::Halted {
            cause: other.to_string(),
        },
    }
}
