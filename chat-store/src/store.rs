//! The [`Store`] trait every backend implements, and the [`StoreError`] it fails with.
//!
//! The trait is shaped around chat-core's persistence contract: the core emits
//! [`Output::Persist`](chat_core::Output::Persist) records in order, the runtime hands a batch of
//! them to [`Store::append`] and delivers the events that followed them only once it returns, and
//! at start it builds the core from [`Store::load`]. History pages that reach past what the core
//! keeps in memory ([`Output::FetchHistory`](chat_core::Output::FetchHistory)) are answered with
//! [`Store::history`]. When an append fails on I/O, the runtime calls [`Store::recover`] (with
//! back-off) until the store accepts appends again. The authenticator reads an account's
//! password hash with [`Store::account`].

use std::path::PathBuf;

use async_trait::async_trait;
use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, Snapshot, UserKey,
};

/// A durable home for what chat-core asks to persist; [`conformance`](crate::conformance) checks
/// the semantics below.
///
/// # Semantics every backend shares
///
/// - **Records apply in order**, within one call and across calls. One call is all or nothing
///   as far as validation goes: a call holding a record that breaks the id order (see
///   [`StoreError::OutOfOrder`]) stores none of its records.
/// - **Durable on `Ok`**: when `append` returns `Ok`, a persistent backend has the records on
///   stable storage. Concurrent callers may be committed together (group commit).
/// - **Nothing of a failed call**: the records of an `append` that returned `Err` are not part
///   of the store, neither now nor after a restart. A backend whose write fails half-way rolls
///   the call back and refuses appends ([`StoreError::Halted`]) until [`Store::recover`]
///   succeeds, so what the runtime told the senders ("not stored") stays true.
/// - **Room history** is append-only and in strictly increasing id order per room.
/// - **DM history**: [`Record::Dm`] appends to the history of the conversation of its two
///   users ([`DirectMessage::parties`]: one conversation in either direction, whatever the
///   spelling), append-only and in strictly increasing id order per conversation, like a
///   room's (a call breaking that order is refused whole). It is independent of the mailboxes:
///   a DM that is also [`Record::Queued`] stays in its conversation when it is delivered.
///   [`Store::dm_history`] pages one conversation; [`Snapshot::dms`](chat_core::Snapshot::dms)
///   holds, for every user that is a party to a stored conversation, that user's newest DMs
///   across all its conversations.
/// - **Mailboxes**: [`Record::Queued`] appends to the mailbox of
///   [`DirectMessage::owner`]; [`Record::Delivered`] drops every DM
///   in that mailbox with an id up to `through`, atomically.
/// - **The id counter**: [`Snapshot::next_id`] is `None` for a store that has never stored an id,
///   and otherwise the least id above every stored message and DM (queued or in a
///   conversation), every delivered `through`, and at least every reserved `until`. It never
///   goes down: a failed call may leave it raised (which only skips ids), never lowered.
/// - **Accounts**: [`Record::Account`] stores an account under the key of its name
///   ([`UserName::key`](chat_core::UserName::key)), so `Alice` and `ALICE` are one account. An
///   account is stored once: a later record for a key already stored **replaces** the stored
///   account whole, its spelling and its hash (a password set later, say; a record without a
///   hash removes the stored one). [`Store::account`] reads an account back and
///   [`Snapshot::accounts`] lists every account's name as last stored. Account records follow
///   the rules above like every other record: in order, all or nothing per call (an account in
///   a refused call is not stored), and rolled back with a failed call. They touch no id.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `records` in order. When it returns `Ok`, they are durable (for a persistent
    /// backend); concurrent calls may be committed together.
    ///
    /// On `Err`, none of the records of this call are stored. A refused call
    /// ([`StoreError::OutOfOrder`], [`StoreError::Closed`]) changed nothing and the store goes
    /// on. After an I/O failure ([`StoreError::Io`]) a backend that may have written part of
    /// the call rolls it back and answers every later append with [`StoreError::Halted`] until
    /// [`Store::recover`] succeeds.
    async fn append(&self, records: &[Record]) -> Result<(), StoreError>;

    /// Makes the store accept appends again after an `append` failed on I/O. The runtime calls
    /// it, with back-off, until it returns `Ok`.
    ///
    /// On `Ok` the store accepts appends again, and its state (on disk, for a persistent
    /// backend) holds exactly the records of the `append` calls that returned `Ok`: a failed
    /// call's records are rolled back, not half stored, so they are not in the store now and
    /// not after a restart either. (The id counter is the one exception: a failed call may
    /// leave it raised, see the semantics above.) On `Err` (the disk is still full or
    /// unwritable, say) nothing changed for callers: appends are still refused, and the caller
    /// tries again later.
    ///
    /// On a store that has not failed it returns `Ok` and changes nothing. The default does
    /// just that, which is right for a backend whose appends never fail half-way, such as
    /// [`MemoryStore`](crate::MemoryStore).
    async fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// What the core needs at start: for every room with history, its newest `history` messages
    /// (oldest first) and whether older ones exist; for every user that is a party to a stored
    /// conversation, its newest `history` DMs across all its conversations, both directions
    /// (oldest first), and whether older ones exist; every non-empty mailbox; every account's
    /// name and room set; and the id counter.
    async fn load(&self, history: usize) -> Result<Snapshot, StoreError>;

    /// The account stored under `name` (a key, so the lookup is case-insensitive), with its
    /// name spelled as stored and its password hash, or `None` if `name` is no account. Only
    /// acknowledged records count: an account in an `append` still in flight, or one that
    /// failed, is not there.
    ///
    /// The authenticator calls it for every password login, so a backend answers it from
    /// memory (or an index), without reading a file per call.
    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError>;

    /// Up to `limit` messages of `room` with an id below `before` (`None`: from the newest),
    /// oldest first. The page is short only when no more such messages exist. A room without
    /// history gives an empty page.
    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError>;

    /// Up to `limit` DMs between `a` and `b` (either direction; the order of the two keys does
    /// not matter) with an id below `before` (`None`: from the newest), oldest first. The page is
    /// short only when no more such DMs exist. Two users who never exchanged a stored DM give an
    /// empty page.
    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError>;

    /// The rooms that have stored history, in name order.
    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError>;

    /// The undelivered DMs of `owner`, oldest first (empty if there are none).
    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError>;

    /// Returns once everything appended before the call is durable. (Every `append` is already
    /// durable when it returns; this is a barrier for shutdown paths.)
    async fn flush(&self) -> Result<(), StoreError>;

    /// Flushes and releases the backend's resources; every later call fails with
    /// [`StoreError::Closed`]. Closing twice is not an error.
    async fn close(&self) -> Result<(), StoreError>;

    /// Takes `owner`'s mailbox, as a login does: returns its DMs and, if there were any, stores
    /// [`Record::Delivered`] through the last one before returning them, so a DM is never handed
    /// out twice. (The core does this itself with its in-memory mailboxes; this is for runtimes
    /// and tools that work on the store directly. It is not atomic with concurrent `Queued`
    /// appends for the same owner, which the core's ordering rules out.)
    async fn take_mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        let dms = self.mailbox(owner).await?;
        if let Some(last) = dms.last() {
            self.append(&[Record::Delivered {
                owner: owner.clone(),
                through: last.id,
            }])
            .await?;
        }
        Ok(dms)
    }
}

/// Why a store operation failed. Each variant is something a caller can act on; the `Display`
/// text is a sentence for an operator.
///
/// | Variant | What the caller does |
/// |---|---|
/// | [`Io`](StoreError::Io) | the call failed and stored nothing; after a failed `append`, [`recover`](Store::recover) with back-off |
/// | [`Halted`](StoreError::Halted) | the call was refused because an earlier write failed; [`recover`](Store::recover) with back-off |
/// | [`OutOfOrder`](StoreError::OutOfOrder) | the records are wrong (a bug in the caller); the store goes on |
/// | [`Corrupt`](StoreError::Corrupt) | damage on disk that needs a person |
/// | [`Closed`](StoreError::Closed) | the store was closed; stop using it |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a file failed (disk full, permissions, a vanished directory...). The
    /// call stored nothing: a failed `append` has been rolled back (or is rolled back by the
    /// [`Store::recover`] that lets the store write again), and the store refuses appends with
    /// [`StoreError::Halted`] until that `recover` succeeds.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A stored record cannot be read back. Torn last records are repaired at open; this is
    /// damage elsewhere, which needs a person: the file and line say where to look.
    #[error("{}:{line}: corrupt record: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A record would break the id order: a room message whose id is not above the room's last
    /// stored one, a queued DM whose id is not above the last one in its mailbox, or a DM whose
    /// id is not above the last one in its conversation. The call stored nothing.
    #[error("id {id} is not above the last id stored in {place} ({last})")]
    OutOfOrder {
        /// Where: `#room`, `the mailbox of name` or `the conversation of name and name`.
        place: String,
        /// The offending id.
        id: MessageId,
        /// The last id already there.
        last: MessageId,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// An earlier write failed and the store has not recovered yet, so it refused this call
    /// without trying; `cause` is that failure (the file and the system's error). Reads still
    /// work and show what was acknowledged. [`Store::recover`] (retried with back-off until the
    /// disk is writable again) brings the store back.
    #[error("the store refuses writes until it recovers from a failed write ({cause})")]
    Halted {
        /// The failure that stopped it.
        cause: String,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
