//! [`RedisStore`]: a [`Store`] on Redis, so that several chat servers keep one chat's history,
//! mailboxes and accounts in one place (and a single server can keep them outside its disk).
//!
//! Each `append` is one Lua script that checks the whole call first and then applies it, so a
//! call is all or nothing and concurrent callers never see half of one. Logs (rooms,
//! conversations, mailboxes) are sorted sets ordered by id, so history pages cost one range
//! read however long the history is. In [`StoreMode::Exclusive`] the store behaves exactly like
//! [`MemoryStore`](chat_store::MemoryStore) and passes the same conformance suite; in
//! [`StoreMode::Shared`] every node of a cluster appends the same records, late or twice, and
//! the store keeps one copy of each. The key layout, the modes and the failure model are
//! documented on [`RedisStore`].

mod keys;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::io;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    Account, DirectMessage, DmTail, MessageId, Record, RoomMessage, RoomName, RoomTail, Snapshot,
    UserKey, conversation,
};
use chat_store::{Store, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use serde::de::DeserializeOwned;

use self::keys::Keys;
use self::ops::Call;

static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("store/append.lua")));
static ROLLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("store/rollback.lua")));
static DM_TAIL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("store/dm_tail.lua")));

/// The largest count a range read asks Redis for (Redis counts are signed 64-bit), less one so
/// that one more always fits.
const MAX_COUNT: usize = (i64::MAX - 1) as usize;

/// Who appends to a store's keys, which decides what `append` does with a record that is
/// already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// One store instance at a time owns the prefix (one chat server), and `append` follows the
    /// [`Store`] contract to the letter: records apply in order, a call that breaks the id
    /// order of a room, conversation or mailbox is refused whole with
    /// [`StoreError::OutOfOrder`], a later account record replaces the stored one, and every
    /// record kind is stored.
    Exclusive,
    /// Every node of a cluster appends the same records in the same order, each when it gets
    /// there, so most records arrive more than once, some late. `append` is idempotent and
    /// never refuses a call for its order:
    ///
    /// - a [`Record::Message`] whose id is already in its room's log, or a [`Record::Dm`]
    ///   whose id is already in its conversation, is skipped; one that is not there is stored
    ///   in its place by id (a log stays in id order even if a record comes after a newer one);
    /// - a [`Record::Account`] is stored if its name has no account, or if it has a password
    ///   hash and the stored account has none (a password set later); otherwise it is ignored,
    ///   so a lagging node never replaces a newer account with an older one;
    /// - [`Record::Queued`], [`Record::Delivered`], [`Record::Rooms`] and
    ///   [`Record::IdsReserved`] are ignored: the cluster keeps mailboxes, room sets and the
    ///   id counter in its own checkpoints. So [`Store::mailbox`] is always empty and
    ///   [`Snapshot::account_rooms`] too;
    /// - the id counter ([`Snapshot::next_id`]) is raised above every stored message and DM,
    ///   never lowered.
    ///
    /// A shared append that fails on I/O may still have been applied (whole: the script is
    /// atomic, but its answer can be lost). Nothing is rolled back, because appending the same
    /// records again, which every node does anyway, is safe; [`Store::recover`] only checks
    /// that Redis answers again.
    Shared,
}

/// A [`Store`] on Redis, through a [`ConnectionManager`] (which reconnects by itself after
/// Redis restarts).
///
/// # Key layout
///
/// Every key starts with the store's prefix `P` (say `chat:`), so several chats, or tests, share
/// one Redis. Room names and user keys never contain `:`. A log entry is the id as 20 digits,
/// `:`, and the record's JSON exactly as chat-core serialises it (texts verbatim); the members
/// of a log's sorted set all have the score 0, so Redis keeps them in id order.
///
/// ```text
/// P rooms                 set     every room with history
/// P room:<room>           zset    the room's log: <id>:<RoomMessage JSON>
/// P conversations         set     every conversation with history, as <a>:<b> (user keys, a <= b)
/// P dm:<a>:<b>            zset    the conversation's log: <id>:<DirectMessage JSON>
/// P dms-of:<user>         zset    the user's DM index: <id>:<a>:<b> for each DM of theirs
/// P mailboxes             set     every owner of a non-empty mailbox
/// P mailbox:<owner>       zset    the owner's undelivered DMs: <id>:<DirectMessage JSON>
/// P accounts              hash    user key -> Account JSON: {"name":"Alice","hash":"$argon2id$…"}
/// P account-rooms         hash    user key -> JSON array of room names
/// P next-id               string  the id counter: the next id, 20 digits
/// P undo                  string  exclusive mode: the undo journal of the last append (JSON)
/// P fence                 string  exclusive mode: the token of a failed append never to run
/// P instances             string  exclusive mode: numbers the store instances (call tokens)
/// ```
///
/// A history page is one `ZREVRANGEBYLEX` on a room's or conversation's log. `load` reads each
/// room's newest entries and, per user, the newest entries of their DM index and the DMs they
/// point to (one read-only script per user): bounded by the `history` it is given, whatever the
/// length of the logs.
///
/// # Atomicity and order
///
/// An `append` is one script run (`EVALSHA`), which Redis runs alone. The script first checks
/// everything: the type of every key it touches, the stored values it depends on, and, in
/// exclusive mode, the id order of every room, conversation and mailbox, as
/// [`MemoryStore`](chat_store::MemoryStore) does; a refused call
/// ([`StoreError::OutOfOrder`], or [`StoreError::Corrupt`] for a key holding something else)
/// writes nothing. Only then does it write, and its writes cannot fail. It needs Redis 7.0 or
/// newer (the script's `#!lua` line lets Redis refuse a script up front when out of memory,
/// instead of at its first write). The scripts touch keys they do not declare, which a single
/// Redis server (with or without replicas) allows and Redis Cluster does not.
///
/// Exclusive appends run one at a time, each with a unique token. If an append's answer never
/// comes (the connection broke, Redis stopped, a timeout), Redis may or may not have run it; the
/// call returns [`StoreError::Io`] and the store refuses appends ([`StoreError::Halted`]) until
/// [`Store::recover`] settles it: if the call ran, its writes are undone from the journal it
/// left (`P undo`); if not, its token is fenced (`P fence`) so that it never runs. Either way
/// nothing of a failed call is stored, as the [`Store`] contract asks. (The id counter is not
/// rolled back: a raised counter only skips ids. If the process dies before a `recover` got
/// through, a failed call that ran stays stored, like a JSON store's complete lines after a
/// crash.) Only one store instance may append to a prefix in exclusive mode at a time.
///
/// # Errors
///
/// - A failed connection, a timeout or an error answer from Redis is [`StoreError::Io`], whose
///   `path` is the server (`redis://127.0.0.1:6379/0`, never its password) and whose `source`
///   is an [`io::Error`] of the matching kind (`ConnectionRefused`, `TimedOut`,
///   `ConnectionAborted`, `Other`) wrapping the [`RedisError`]. Reads fail with it and change
///   nothing; after a failed append, [`Store::recover`] (retried with back-off) brings the
///   store back once Redis answers again.
/// - A value that is not what the layout says (not JSON, another type of key, an entry without
///   its id) is [`StoreError::Corrupt`], whose `path` is the server and the key
///   (`redis://127.0.0.1:6379/0/chat:room:general`) and whose `line` is 0 (Redis values have
///   no lines; the reason says what is wrong). Nothing read from Redis can make the store
///   panic.
///
/// # Durability
///
/// An `append` returns once Redis has applied it; [`Store::flush`] waits for the appends in
/// flight. Whether applied records survive a crash of Redis itself is Redis's persistence
/// setting: `appendonly yes` with `appendfsync always` makes every applied append durable
/// before it returns; the defaults (`everysec`, or snapshots only) may lose the last second or
/// more.
pub struct RedisStore {
    keys: Keys,
    mode: StoreMode,
    /// The server, as errors name it: `redis://host:port/db`, or `redis` if unknown.
    server: String,
    /// This instance's number among the instances on the prefix (exclusive mode), for tokens.
    instance: u64,
    /// `None` once closed.
    connection: Mutex<Option<ConnectionManager>>,
    /// Appends run one at a time while holding it.
    writer: tokio::sync::Mutex<Writer>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.server)
            .field("prefix", &self.keys.prefix())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The appending side of a store.
#[derive(Debug, Default)]
struct Writer {
    /// Appends sent so far (the tokens' second half).
    calls: u64,
    /// An append whose outcome is unknown: appends are refused until `recover` settles it.
    in_doubt: Option<InDoubt>,
}

#[derive(Debug)]
struct InDoubt {
    /// The call's token.
    token: String,
    /// Why it is in doubt, for [`StoreError::Halted`].
    cause: String,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`) and opens the
    /// store under `prefix` in [`StoreMode::Exclusive`].
    ///
    /// The connection reconnects by itself; a command waits at most 5 s for its answer and a
    /// connection attempt at most 2 s, so a call fails (with [`StoreError::Io`]) within seconds
    /// while Redis is down instead of hanging.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::open(url, prefix, StoreMode::Exclusive).await
    }

    /// Like [`RedisStore::connect`], in [`StoreMode::Shared`]: for the nodes of a cluster,
    /// which all append the same records.
    pub async fn shared(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::open(url, prefix, StoreMode::Shared).await
    }

    /// Opens the store under `prefix` in `mode` on a connection the caller set up (its own
    /// timeouts, TLS, a connection shared with other parts of the node). Errors name the server
    /// `redis`, since a connection manager does not say where it connects.
    pub async fn from_manager(
        manager: ConnectionManager,
        prefix: &str,
        mode: StoreMode,
    ) -> Result<RedisStore, StoreError> {
        Self::with(manager, prefix, mode, "redis".to_owned()).await
    }

    async fn open(url: &str, prefix: &str, mode: StoreMode) -> Result<RedisStore, StoreError> {
        // The URL may hold a password: errors never repeat it.
        let client = redis::Client::open(url).map_err(|error| StoreError::Io {
            path: PathBuf::from("the Redis URL"),
            source: io::Error::new(io::ErrorKind::InvalidInput, error),
        })?;
        let info = client.get_connection_info();
        let server = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| io_error(&server, error))?;
        Self::with(manager, prefix, mode, server).await
    }

    async fn with(
        mut manager: ConnectionManager,
        prefix: &str,
        mode: StoreMode,
        server: String,
    ) -> Result<RedisStore, StoreError> {
        let keys = Keys::new(prefix);
        let instance = match mode {
            StoreMode::Exclusive => redis::cmd("INCR")
                .arg(keys.instances())
                .query_async(&mut manager)
                .await
                .map_err(|error| failure(&server, &keys.instances(), error))?,
            StoreMode::Shared => 0,
        };
        Ok(RedisStore {
            keys,
            mode,
            server,
            instance,
            connection: Mutex::new(Some(manager)),
            writer: tokio::sync::Mutex::new(Writer::default()),
        })
    }

    /// The connection, or [`StoreError::Closed`].
    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    fn corrupt(&self, key: &str, reason: impl Display) -> StoreError {
        corrupt(&self.server, key, reason)
    }

    /// A failed read of `key`.
    fn failure(&self, key: &str, error: RedisError) -> StoreError {
        failure(&self.server, key, error)
    }

    /// Decodes a log entry of `key` whose JSON is a `T` with the id `id_of` gives.
    fn decode<T: DeserializeOwned>(
        &self,
        key: &str,
        entry: &str,
        id_of: impl Fn(&T) -> MessageId,
    ) -> Result<T, StoreError> {
        let (id, json) = keys::split_entry(entry)
            .ok_or_else(|| self.corrupt(key, "an entry that does not start with its id"))?;
        let value: T = serde_json::from_str(json)
            .map_err(|error| self.corrupt(key, format_args!("entry {id}: {error}")))?;
        if id_of(&value) != id {
            return Err(self.corrupt(key, format_args!("entry {id} holds another id")));
        }
        Ok(value)
    }

    /// The entries of the log `key` with an id below `before` (all if `None`): the newest
    /// `limit` of them, newest first.
    async fn newest(
        &self,
        key: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        redis::cmd("ZREVRANGEBYLEX")
            .arg(key)
            .arg(before.map_or_else(|| "+".to_owned(), keys::below))
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_COUNT))
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failure(key, error))
    }

    /// Runs the append script for `call` under `token`.
    async fn run_append(
        &self,
        connection: &mut ConnectionManager,
        token: &str,
        call: &Call<'_>,
    ) -> Result<Vec<String>, RedisError> {
        let mode = match self.mode {
            StoreMode::Exclusive => "exclusive",
            StoreMode::Shared => "shared",
        };
        let mut invocation = APPEND.prepare_invoke();
        for key in self.keys.globals() {
            invocation.key(key);
        }
        invocation
            .arg(mode)
            .arg(token)
            .arg(call.ops_json())
            .arg(call.floor_arg())
            .invoke_async(connection)
            .await
    }

    /// Settles the append `token` whose outcome is unknown (see the type's docs).
    async fn settle(
        &self,
        connection: &mut ConnectionManager,
        token: &str,
    ) -> Result<(), StoreError> {
        match self.mode {
            StoreMode::Shared => redis::cmd("PING")
                .query_async::<()>(connection)
                .await
                .map_err(|error| io_error(&self.server, error)),
            StoreMode::Exclusive => {
                let mut invocation = ROLLBACK.prepare_invoke();
                for key in self.keys.globals() {
                    invocation.key(key);
                }
                let reply: Vec<String> = invocation
                    .arg(token)
                    .invoke_async(connection)
                    .await
                    .map_err(|error| io_error(&self.server, error))?;
                match reply.as_slice() {
                    [done] if done == "rolled_back" || done == "fenced" => Ok(()),
                    [tag, key, why] if tag == "corrupt" => Err(self.corrupt(key, why)),
                    other => Err(unexpected(&self.server, "rollback", other)),
                }
            }
        }
    }

    /// The [`StoreError::OutOfOrder`] for the script's answer that op `index` (1-based, as a
    /// string) follows `last` in its log.
    fn out_of_order(&self, call: &Call<'_>, index: &str, last: &str) -> StoreError {
        let record = index
            .parse::<usize>()
            .ok()
            .and_then(|i| call.records.get(i.checked_sub(1)?));
        let place = match record {
            Some(Record::Message(message)) => Some((format!("#{}", message.room), message.id)),
            Some(Record::Dm(dm)) => {
                let (a, b) = dm.parties();
                Some((format!("the conversation of {a} and {b}"), dm.id))
            }
            Some(Record::Queued(dm)) => Some((format!("the mailbox of {}", dm.owner()), dm.id)),
            _ => None,
        };
        match (place, keys::parse_digits(last)) {
            (Some((place, id)), Some(last)) => StoreError::OutOfOrder { place, id, last },
            _ => unexpected(&self.server, "append", &["out_of_order", index, last]),
        }
    }
}

/// A [`StoreError::Io`] for a Redis failure on `server`.
fn io_error(server: &str, error: RedisError) -> StoreError {
    let kind = if error.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if error.is_timeout() {
        io::ErrorKind::TimedOut
    } else if error.is_connection_dropped() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    StoreError::Io {
        path: PathBuf::from(server),
        source: io::Error::new(kind, error),
    }
}

/// A [`StoreError::Corrupt`] for `key` on `server`.
fn corrupt(server: &str, key: &str, reason: impl Display) -> StoreError {
    StoreError::Corrupt {
        path: PathBuf::from(format!("{server}/{key}")),
        line: 0,
        reason: reason.to_string(),
    }
}

/// A failed read of `key`: [`StoreError::Corrupt`] if the key holds something else than the
/// layout says (another type, bytes that are not text), [`StoreError::Io`] otherwise.
fn failure(server: &str, key: &str, error: RedisError) -> StoreError {
    let malformed = error.code() == Some("WRONGTYPE")
        || matches!(
            error.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        );
    if malformed {
        corrupt(server, key, error)
    } else {
        io_error(server, error)
    }
}

/// An answer of a script that it never gives: the call's outcome is unknown.
fn unexpected(server: &str, script: &str, answer: &[impl AsRef<str>]) -> StoreError {
    let answer: Vec<&str> = answer.iter().map(AsRef::as_ref).collect();
    StoreError::Io {
        path: PathBuf::from(server),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer from the {script} script: {answer:?}"),
        ),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let mut connection = self.connection()?;
        if let Some(in_doubt) = &writer.in_doubt {
            return Err(StoreError::Halted {
                cause: in_doubt.cause.clone(),
            });
        }
        let call = Call::new(&self.keys, self.mode, records);
        if call.is_empty() {
            return Ok(());
        }
        writer.calls += 1;
        let token = format!("{}.{}", self.instance, writer.calls);
        // In doubt until Redis answers: if this future is dropped on the way, the next append is
        // refused until `recover` settles the call.
        writer.in_doubt = Some(InDoubt {
            token: token.clone(),
            cause: "an append was abandoned before Redis answered".to_owned(),
        });
        let reply = match self.run_append(&mut connection, &token, &call).await {
            Ok(reply) => reply,
            Err(error) => {
                let error = io_error(&self.server, error);
                writer.in_doubt = Some(InDoubt {
                    token,
                    cause: error.to_string(),
                });
                return Err(error);
            }
        };
        let outcome = match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            [tag, index, last] if tag == "out_of_order" => {
                Err(self.out_of_order(&call, index, last))
            }
            [tag, key, why] if tag == "corrupt" => Err(self.corrupt(key, why)),
            other => {
                let error = unexpected(&self.server, "append", other);
                writer.in_doubt = Some(InDoubt {
                    token,
                    cause: error.to_string(),
                });
                return Err(error);
            }
        };
        writer.in_doubt = None;
        outcome
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let mut connection = self.connection()?;
        let Some(in_doubt) = &writer.in_doubt else {
            return Ok(());
        };
        match self.settle(&mut connection, &in_doubt.token).await {
            // After Redis was down, the connection manager answers once more with the
            // connection attempt that failed, and only then connects again. Settling twice is
            // safe: the second rollback finds nothing to undo, or fences again.
            Err(StoreError::Io { .. }) => self.settle(&mut connection, &in_doubt.token).await?,
            settled => settled?,
        }
        writer.in_doubt = None;
        Ok(())
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        let mut connection = self.connection()?;
        let keys = &self.keys;
        let (rooms, conversations, owners, accounts, account_rooms, next_id): (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            BTreeMap<String, String>,
            BTreeMap<String, String>,
            Option<String>,
        ) = redis::pipe()
            .atomic()
            .smembers(keys.rooms())
            .smembers(keys.conversations())
            .smembers(keys.mailboxes())
            .hgetall(keys.accounts())
            .hgetall(keys.account_rooms())
            .get(keys.next_id())
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failure(keys.prefix(), error))?;

        let rooms = rooms
            .iter()
            .map(|room| {
                RoomName::parse(room).map_err(|e| self.corrupt(&keys.rooms(), format_args!("{e}")))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let owners = owners
            .iter()
            .map(|owner| {
                UserKey::parse(owner)
                    .map_err(|e| self.corrupt(&keys.mailboxes(), format_args!("{e}")))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut users = BTreeSet::new();
        for name in &conversations {
            let (a, b) = keys::parse_conversation(name).ok_or_else(|| {
                self.corrupt(
                    &keys.conversations(),
                    format_args!("{name:?} is not a conversation"),
                )
            })?;
            users.insert(a);
            users.insert(b);
        }

        // The newest entries of every room, mailbox and user, one more than needed to learn
        // whether older ones exist.
        let count = history.min(MAX_COUNT);
        let mut reads = redis::pipe();
        for room in &rooms {
            reads
                .cmd("ZREVRANGEBYLEX")
                .arg(keys.room(room))
                .arg("+")
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(count + 1);
        }
        for owner in &owners {
            reads.zrangebylex(keys.mailbox(owner), "-", "+");
        }
        reads.load_script(&DM_TAIL).ignore();
        let mut tail = DM_TAIL.prepare_invoke();
        for user in &users {
            tail.key(keys.dms_of(user))
                .arg(count + 1)
                .arg(keys.conversation_prefix());
            reads.invoke_script(&tail);
            tail = DM_TAIL.prepare_invoke();
        }
        let mut read: std::vec::IntoIter<Vec<String>> = reads
            .query_async::<Vec<Vec<String>>>(&mut connection)
            .await
            .map_err(|error| self.failure(keys.prefix(), error))?
            .into_iter();
        let mut next_read = |what: &str| {
            read.next()
                .ok_or_else(|| unexpected(&self.server, "load", &[format!("no answer for {what}")]))
        };

        let mut snapshot = Snapshot::default();
        for room in rooms {
            let key = keys.room(&room);
            let entries = next_read(&key)?;
            if entries.is_empty() {
                continue;
            }
            let mut messages = entries
                .iter()
                .take(count)
                .map(|entry| self.decode(&key, entry, |m: &RoomMessage| m.id))
                .collect::<Result<Vec<_>, _>>()?;
            messages.reverse();
            let has_older = entries.len() > count;
            snapshot.rooms.insert(
                room,
                RoomTail {
                    messages,
                    has_older,
                },
            );
        }
        for owner in owners {
            let key = keys.mailbox(&owner);
            let dms = next_read(&key)?
                .iter()
                .map(|entry| self.decode(&key, entry, |dm: &DirectMessage| dm.id))
                .collect::<Result<Vec<_>, _>>()?;
            if !dms.is_empty() {
                snapshot.mailboxes.insert(owner, dms);
            }
        }
        for user in users {
            let key = keys.dms_of(&user);
            let entries = next_read(&key)?;
            if entries.is_empty() {
                continue;
            }
            let mut messages = entries
                .iter()
                .take(count)
                .map(|entry| match entry.as_str() {
                    "" => Err(self.corrupt(&key, "an index entry without its DM")),
                    entry => self.decode(&key, entry, |dm: &DirectMessage| dm.id),
                })
                .collect::<Result<Vec<_>, _>>()?;
            messages.reverse();
            let has_older = entries.len() > count;
            snapshot.dms.insert(
                user,
                DmTail {
                    messages,
                    has_older,
                },
            );
        }
        for (key, json) in accounts {
            let account = self.parse_account(&key, &json)?;
            snapshot.accounts.insert(account.name.key(), account.name);
        }
        for (owner, json) in account_rooms {
            let what = keys.account_rooms();
            let owner = UserKey::parse(&owner).map_err(|e| self.corrupt(&what, e))?;
            let rooms: Vec<RoomName> = serde_json::from_str(&json)
                .map_err(|e| self.corrupt(&what, format_args!("the rooms of {owner}: {e}")))?;
            snapshot.account_rooms.insert(owner, rooms);
        }
        snapshot.next_id = next_id
            .map(|digits| {
                keys::parse_digits(&digits)
                    .ok_or_else(|| self.corrupt(&keys.next_id(), "not an id of 20 digits"))
            })
            .transpose()?;
        Ok(snapshot)
    }

    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        let mut connection = self.connection()?;
        let key = self.keys.accounts();
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg(name.as_str())
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failure(&key, error))?;
        json.map(|json| self.parse_account(name.as_str(), &json))
            .transpose()
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        let key = self.keys.room(room);
        let entries = self.newest(&key, before, limit).await?;
        entries
            .iter()
            .rev()
            .map(|entry| self.decode(&key, entry, |m: &RoomMessage| m.id))
            .collect()
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        let key = self.keys.conversation(&conversation(a.clone(), b.clone()));
        let entries = self.newest(&key, before, limit).await?;
        entries
            .iter()
            .rev()
            .map(|entry| self.decode(&key, entry, |dm: &DirectMessage| dm.id))
            .collect()
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        let mut connection = self.connection()?;
        let key = self.keys.rooms();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failure(&key, error))?;
        let mut rooms = names
            .iter()
            .map(|name| RoomName::parse(name).map_err(|e| self.corrupt(&key, e)))
            .collect::<Result<Vec<_>, _>>()?;
        rooms.sort();
        Ok(rooms)
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        let mut connection = self.connection()?;
        let key = self.keys.mailbox(owner);
        let entries: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failure(&key, error))?;
        entries
            .iter()
            .map(|entry| self.decode(&key, entry, |dm: &DirectMessage| dm.id))
            .collect()
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every append is applied when it returns: waiting for the one in flight is enough.
        let _writer = self.writer.lock().await;
        self.connection().map(drop)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}

impl RedisStore {
    /// Parses the account stored under the user key `key`.
    fn parse_account(&self, key: &str, json: &str) -> Result<Account, StoreError> {
        let what = self.keys.accounts();
        let account: Account = serde_json::from_str(json)
            .map_err(|e| self.corrupt(&what, format_args!("the account of {key}: {e}")))?;
        if account.name.key().as_str() != key {
            return Err(self.corrupt(
                &what,
                format_args!("the account of {key} is named {}", account.name),
            ));
        }
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    //! The two ways `recover` settles an append whose answer never came, each made to happen
    //! for sure: the tests run the script themselves, or not at all, and then mark the call as
    //! in doubt, as a lost answer would.

    use chat_store::conformance::{HASH, account, direct, id_of, key, message, rooms_of};

    use super::*;
    use crate::redis_server::RedisServer;

    async fn in_doubt(store: &RedisStore, token: &str) {
        store.writer.lock().await.in_doubt = Some(InDoubt {
            token: token.to_owned(),
            cause: "its answer was lost".to_owned(),
        });
    }

    #[tokio::test]
    async fn recover_undoes_an_append_that_ran() {
        let redis = RedisServer::launch().await.unwrap();
        let store = RedisStore::connect(&redis.url(), "chat:").await.unwrap();
        store
            .append(&[
                Record::Queued(direct(1, "bob", "one")),
                Record::Account(account("bob", None)),
                rooms_of("bob", &["general"]),
                Record::Message(message("general", 2, "two")),
            ])
            .await
            .unwrap();
        let before = store.load(10).await.unwrap();

        let records = [
            Record::Queued(direct(3, "bob", "three")),
            Record::Delivered {
                owner: key("bob"),
                through: id_of(3),
            },
            Record::Queued(direct(4, "Bob", "four")),
            Record::Message(message("general", 5, "five")),
            Record::Message(message("fresh", 6, "six")),
            Record::Dm(direct(7, "bob", "seven")),
            Record::Dm(direct(8, "alice", "to myself")),
            Record::Account(account("Bob", Some(HASH))),
            Record::Account(account("carol", None)),
            Record::Account(account("BOB", Some("$argon2id$second"))),
            rooms_of("bob", &[]),
            rooms_of("carol", &["fresh"]),
            Record::IdsReserved { until: id_of(100) },
        ];
        let call = Call::new(&store.keys, store.mode, &records);
        let mut connection = store.connection().unwrap();
        let reply = store.run_append(&mut connection, "ran", &call).await;
        assert_eq!(reply.unwrap(), ["ok"]);
        assert_eq!(store.mailbox(&key("bob")).await.unwrap().len(), 1);
        in_doubt(&store, "ran").await;

        store.recover().await.unwrap();
        let mut after = store.load(10).await.unwrap();
        assert_eq!(after.next_id, Some(id_of(100)), "the counter stays raised");
        after.next_id = before.next_id;
        assert_eq!(after, before);
        assert_eq!(
            store.rooms().await.unwrap(),
            vec![RoomName::parse("general").unwrap()]
        );
        assert_eq!(
            store.account(&key("bob")).await.unwrap(),
            Some(account("bob", None))
        );
        // The journal is gone: settling the same token again fences it instead.
        let reply = ROLLBACK
            .key(store.keys.globals().to_vec())
            .arg("ran")
            .invoke_async::<Vec<String>>(&mut connection)
            .await;
        assert_eq!(reply.unwrap(), ["fenced"]);
    }

    #[tokio::test]
    async fn recover_fences_an_append_that_has_not_run() {
        let redis = RedisServer::launch().await.unwrap();
        let store = RedisStore::connect(&redis.url(), "chat:").await.unwrap();
        store
            .append(&[Record::Message(message("general", 1, "one"))])
            .await
            .unwrap();
        in_doubt(&store, "late").await;
        store.recover().await.unwrap();

        // The append arrives after all: it must not run.
        let records = [
            Record::Message(message("general", 2, "late")),
            Record::Queued(direct(3, "bob", "late")),
        ];
        let call = Call::new(&store.keys, store.mode, &records);
        let mut connection = store.connection().unwrap();
        let reply = store.run_append(&mut connection, "late", &call).await;
        assert_eq!(reply.unwrap(), ["fenced"]);
        let general = RoomName::parse("general").unwrap();
        assert_eq!(store.history(&general, None, 10).await.unwrap().len(), 1);
        assert!(store.mailbox(&key("bob")).await.unwrap().is_empty());
        assert_eq!(store.load(1).await.unwrap().next_id, Some(id_of(2)));
        // Appends go on.
        store.append(&records).await.unwrap();
        assert_eq!(store.history(&general, None, 10).await.unwrap().len(), 2);
    }
}
