//! [`JsonFileStore`]: a [`Store`] in a directory of JSON-lines files a person can `cat` and
//! `grep`. Its layout and guarantees are documented on the type; the submodules hold one
//! concern each: file names ([`layout`]), fsync and atomic replacement ([`durable`]), group
//! commit and rollback ([`writer`]), reading a directory at open and recovery ([`scan`]),
//! line-level reads ([`lines`]), torn-tail repair ([`repair`]), room and conversation history
//! files ([`message_log`]), mailbox files ([`mailbox_file`]), the accounts file
//! ([`accounts_file`]), the account rooms file ([`account_rooms_file`]) and the id counter
//! ([`ids_file`]).

mod account_rooms_file;
mod accounts_file;
mod durable;
mod ids_file;
mod layout;
mod lines;
mod mailbox_file;
mod message_log;
mod repair;
mod scan;
mod writer;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, RoomTail, Snapshot, UserKey,
    conversation,
};
use serde::Serialize;
use tokio::sync::oneshot;

use self::layout::Layout;
use self::message_log::NewestFirst;
use self::writer::{Request, Writer};
use crate::conversations::{self, Conversation};
use crate::ledger::Ledger;
use crate::store::{Store, StoreError};

/// A [`Store`] in a directory of JSON-lines files a person can `cat` and `grep`.
///
/// # Layout
///
/// ```text
/// DIR/rooms/<room>.jsonl        one RoomMessage per line, in id order, append-only
/// DIR/dms/<a>+<b>.jsonl         the DMs between users a and b (lower-cased, a < b), both
///                               directions, one DirectMessage per line, in id order,
///                               append-only
/// DIR/mailboxes/<user>.jsonl    the undelivered DMs of <user> (lower-cased), one per line
/// DIR/accounts.jsonl            one Account per line, append-only: the last line for a name wins
/// DIR/account_rooms.jsonl       an account's whole room set per line, append-only: the last
///                               line for an owner wins
/// DIR/ids.json                  {"next_id":N}: ids below N may have been handed out
/// ```
///
/// A line is the message's JSON exactly as chat-core serialises it, e.g.
/// `{"room":"general","id":7,"from":"alice","text":"grüß dich","ts":"2026-11-22T01:02:03.456Z"}`.
/// Texts are verbatim UTF-8 (JSON escapes only quotes, backslashes and control characters such as
/// newline), so `grep -r 'grüß' DIR` finds them. File names are the names themselves, encoded
/// defensively so that no name can leave the directory.
///
/// A conversation's file holds the DM history of two users ([`Record::Dm`]): a DM from alice to
/// Bob and Bob's answer are both lines of `dms/alice+bob.jsonl`, each as chat-core serialises
/// it, e.g. `{"id":8,"from":"Bob","to":"alice","text":"hi","ts":"…"}`. It is written, repaired,
/// read and rolled back exactly like a room's file. A DM that is also queued for an offline
/// recipient is a line of the recipient's mailbox too; the two files are independent, and a
/// delivery rewrites only the mailbox.
///
/// An account's line is `{"name":"Alice","hash":"$argon2id$v=19$…"}` (no `hash` for an account
/// made by a token): the name as registered and the password's salted hash, never the password.
/// A later record for the same name (compared case-insensitively) is appended too and replaces
/// the earlier one when the file is read, so the file is never rewritten.
///
/// An account's room set is a line `{"owner":"alice","rooms":["lobby","rust"]}` of
/// `account_rooms.jsonl`, appended at every change ([`Record::Rooms`]); the last line for an
/// owner is its set. It is written, repaired, read and rolled back exactly like the accounts
/// file.
///
/// # Durability
///
/// Every change goes through one writer thread, which commits concurrent appends together: one
/// write and one fsync per touched file, one fsync per directory that gained a file, and only then
/// the answer. `append` returning `Ok` means the records are on disk. Room and conversation files
/// are only ever appended to. A delivered mailbox is unlinked (nothing left, the usual case) or
/// replaced by a temporary file renamed over it (DMs newer than `through` left), each followed by
/// an fsync of the directory; `ids.json` is replaced the same way. A crash therefore leaves a
/// mailbox either as it was before the delivery or as it is after it: a DM is never lost and never
/// delivered twice. (An append-only delivery marker would also be atomic, but would leave delivered
/// DMs on disk forever or need the same rewrite later.)
///
/// # Failed writes
///
/// A failed write or fsync fails every append of its batch with [`StoreError::Io`] and leaves no
/// trace of the batch: the writer knows the length of every file before it, and at once cuts each
/// file it appended to (room and conversation files, mailboxes, the accounts and account rooms
/// files) back to that length (ftruncate and fsync, which needs no free space; a file the batch
/// created is removed) and puts each mailbox it began to replace or remove back to its acknowledged
/// DMs. Readers never saw the batch. From then on appends fail at once with [`StoreError::Halted`]
/// until [`Store::recover`] succeeds. `recover` rolls every file back to the acknowledged state
/// again (in case the first rollback failed too), re-reads the directory as opening does (torn
/// tails, lengths, last ids, mailboxes, accounts, account rooms, the id counter), checks that the
/// disk takes a write and an fsync again (a small probe file, written and removed), and only then
/// accepts appends; while the disk is still full or unwritable it fails, and the runtime tries
/// again later. `ids.json` is not rolled back: a failed reservation may leave the counter raised,
/// which only skips ids. If the process dies after a failed write before any rollback got through,
/// a restart may find complete lines of the failed batch and keeps them, as it would after a crash
/// in the middle of a commit.
///
/// # Opening
///
/// [`JsonFileStore::open`] creates the directory if needed, removes leftovers of replacements a
/// crash interrupted (`*.tmp`, whose originals are still intact), and checks the last line of
/// every room, conversation, mailbox, accounts and account rooms file: a torn or garbage last
/// line, which can only be an append that was never acknowledged, is logged and truncated away.
/// Files that are not the store's are logged and left alone. Room and conversation files are
/// not read further: start-up costs one read of the last line per room and per conversation,
/// whatever the size of the history. Mailboxes (small, bounded by the core) and the accounts and
/// account rooms files are read whole, so [`Store::account`] answers from memory. The leftover
/// of a recovery's probe (`write-probe.tmp`) is removed too.
///
/// # Reading
///
/// [`Store::load`] reads the newest `history` lines of each room backwards from the end, and builds
/// each user's DM tail by merging that user's conversation files backwards from their ends, newest
/// first, reading from each only the DMs that make it into the tail (and one more);
/// [`Store::history`] and [`Store::dm_history`] binary-search the room's or conversation's file for
/// the page. All of them read only up to the length the writer published after its last fsync. A
/// garbage line met on the way is [`StoreError::Corrupt`] with the file and its line number. Reads
/// run on tokio's blocking pool, so the store needs a tokio runtime.
///
/// One directory is meant for one open store at a time; nothing locks it.
#[derive(Debug)]
pub struct JsonFileStore {
    layout: Layout,
    shared: Arc<Mutex<Shared>>,
    /// `None` once closed.
    requests: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What readers see: the state as of the writer's last commit.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) ledger: Ledger,
    /// The committed length of every room file (0 for an empty one).
    pub(crate) room_len: HashMap<RoomName, u64>,
    /// The committed length of every conversation file (0 for an empty one).
    pub(crate) conversation_len: HashMap<Conversation, u64>,
    /// The committed length of the accounts file (0 if there is none).
    pub(crate) accounts_len: u64,
    /// The committed length of the account rooms file (0 if there is none).
    pub(crate) account_rooms_len: u64,
    pub(crate) closed: bool,
    /// Why the writer stopped, until it recovers: appends fail fast with it.
    pub(crate) halted: Option<String>,
}

/// Appends `value`'s JSON and a newline to `out`.
pub(crate) fn encode_line(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *out, value)
        .expect("chat-core's records serialise to JSON without fail");
    out.push(b'\n');
}

impl JsonFileStore {
    /// Opens the store in `dir` (the server's `--data DIR`), creating it if needed, repairing
    /// torn tails and starting the writer thread (see "Opening" above). Fails with
    /// [`StoreError::Corrupt`] if a file is damaged other than at its end.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    fn open_blocking(dir: &Path) -> Result<Self, StoreError> {
        let layout = Layout::new(dir);
        let existed = dir.is_dir();
        for sub in [&layout.dir, &layout.rooms, &layout.dms, &layout.mailboxes] {
            fs::create_dir_all(sub).map_err(|e| StoreError::io(sub, e))?;
        }
        if !existed {
            // Make the new directory's own entry durable too.
            match layout.dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => durable::sync_dir(parent)?,
                _ => durable::sync_dir(Path::new("."))?,
            }
        }
        durable::sync_dir(&layout.dir)?;

        let scan = scan::scan(&layout, None)?;
        let shared = Arc::new(Mutex::new(Shared {
            ledger: scan.ledger.clone(),
            room_len: scan.room_len.clone(),
            conversation_len: scan.conversation_len.clone(),
            accounts_len: scan.accounts_len,
            account_rooms_len: scan.account_rooms_len,
            closed: false,
            halted: None,
        }));
        let writer = Writer {
            layout: layout.clone(),
            ledger: scan.ledger,
            room_len: scan.room_len,
            conversation_len: scan.conversation_len,
            mailbox_files: scan.mailbox_files,
            accounts_len: scan.accounts_len,
            account_rooms_len: scan.account_rooms_len,
            ids_on_disk: scan.ids_on_disk,
            shared: shared.clone(),
            files: HashMap::new(),
            halted: None,
        };
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok(JsonFileStore {
            layout,
            shared,
            requests: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The readers' view, or [`StoreError::Closed`].
    fn shared(&self) -> Result<MutexGuard<'_, Shared>, StoreError> {
        // The writer only replaces whole values under the lock, so a panic elsewhere cannot
        // leave it half-updated.
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared.closed {
            return Err(StoreError::Closed);
        }
        Ok(shared)
    }

    /// Sends a request to the writer and waits for its answer.
    async fn ask(&self, request: impl FnOnce(writer::Reply) -> Request) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            let sender = requests.as_ref().ok_or(StoreError::Closed)?;
            sender.send(request(reply)).map_err(|_| writer_gone())?;
        }
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Halted {
        cause: "the writer thread is gone".into(),
    }
}

/// Runs blocking file reads on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[async_trait]
impl Store for JsonFileStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        if let Some(cause) = &self.shared()?.halted {
            return Err(StoreError::Halted {
                cause: cause.clone(),
            });
        }
        let records = records.to_vec();
        self.ask(|reply| Request::Append { records, reply }).await
    }

    /// Rolls back what failed writes left, re-reads the directory and probes the disk (see
    /// "Failed writes" on the type); `Ok` at once if no write failed.
    async fn recover(&self) -> Result<(), StoreError> {
        drop(self.shared()?);
        self.ask(Request::Recover).await
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        let (rooms, conversation_len, mailboxes, accounts, account_rooms, next_id) = {
            let shared = self.shared()?;
            let rooms: Vec<(RoomName, PathBuf, u64)> = shared
                .room_len
                .iter()
                .filter(|&(_, &len)| len > 0)
                .map(|(room, &len)| (room.clone(), self.layout.room(room), len))
                .collect();
            let conversation_len: HashMap<Conversation, u64> = shared
                .conversation_len
                .iter()
                .filter(|&(_, &len)| len > 0)
                .map(|(conversation, &len)| (conversation.clone(), len))
                .collect();
            (
                rooms,
                conversation_len,
                shared.ledger.mailboxes.clone(),
                shared.ledger.account_names(),
                shared.ledger.account_rooms.clone(),
                shared.ledger.floor,
            )
        };
        let layout = self.layout.clone();
        let (rooms, dms) = blocking(move || {
            let rooms = rooms
                .into_iter()
                .map(|(room, path, len)| {
                    let (messages, has_older) = message_log::tail(&path, &room, len, history)?;
                    Ok((
                        room,
                        RoomTail {
                            messages,
                            has_older,
                        },
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            let dms = conversations::tails(conversation_len.keys(), history, |conversation| {
                let len = conversation_len.get(conversation).copied().unwrap_or(0);
                let path = layout.conversation(conversation);
                NewestFirst::<DirectMessage>::new(path, conversation.clone(), len)
            })?;
            Ok((rooms, dms))
        })
        .await?;
        Ok(Snapshot {
            next_id,
            rooms,
            mailboxes,
            accounts,
            account_rooms,
            dms,
        })
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        let Some(len) = self.shared()?.room_len.get(room).copied() else {
            return Ok(Vec::new());
        };
        let (room, path) = (room.clone(), self.layout.room(room));
        blocking(move || message_log::page(&path, &room, len, before, limit)).await
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        let conversation = conversation(a.clone(), b.clone());
        let Some(len) = self.shared()?.conversation_len.get(&conversation).copied() else {
            return Ok(Vec::new());
        };
        let path = self.layout.conversation(&conversation);
        blocking(move || message_log::page(&path, &conversation, len, before, limit)).await
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        let shared = self.shared()?;
        let mut rooms: Vec<RoomName> = shared
            .room_len
            .iter()
            .filter(|&(_, &len)| len > 0)
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort();
        Ok(rooms)
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        Ok(self
            .shared()?
            .ledger
            .mailboxes
            .get(owner)
            .cloned()
            .unwrap_or_default())
    }

    /// From memory: the accounts file is read whole at open and kept up to date by the writer.
    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        Ok(self.shared()?.ledger.accounts.get(name).cloned())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        drop(self.shared()?);
        self.ask(Request::Flush).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let sender = {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            requests.take()
        };
        let Some(sender) = sender else {
            return Ok(());
        };
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        let (reply, answer) = oneshot::channel();
        let sent = sender.send(Request::Close(reply));
        drop(sender);
        let result = match sent {
            Ok(()) => answer.await.map_err(|_| writer_gone()).and_then(|r| r),
            Err(_) => Err(writer_gone()),
        };
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            blocking(move || {
                thread.join().map_err(|_| StoreError::Halted {
                    cause: "the writer thread panicked".into(),
                })
            })
            .await?;
        }
        result
    }
}
