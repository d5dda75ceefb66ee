//! A node of the cluster: joining it, staying in it (heartbeats, leadership), leaving it.
//!
//! A node draws a fresh id from a counter when it joins (ids are never used twice, so a
//! connection id, which carries its node's, is unique for the cluster's whole life), and renews
//! a heartbeat key that expires after half of `--node-timeout`. One node leads, by holding a key
//! that also expires unless renewed. The leader looks at every node's heartbeat each second: a
//! node whose key expired is declared gone with an entry in the log, and every replica then
//! disconnects its connections (its users' `leave` reaches the others, their names come free).
//! So a node that dies is noticed within `--node-timeout`. After Redis itself was away, the
//! leader first waits as long as a heartbeat lives, so that the nodes (whose keys lapsed with
//! Redis) can renew them before anyone is declared gone.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::{Chat, Config};
use chat_runtime::{NodeId, Replication};
use chat_store::Store;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Position, Stored};
use crate::error::ClusterError;
use crate::keys::Keys;
use crate::log::RedisLog;
use crate::node_store::NodeStore;
use crate::reader::Reader;
use crate::store::RedisStore;

/// How a node finds its cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Redis, as `redis://HOST:PORT/DB` (`--redis`).
    pub url: String,
    /// Every key of the cluster starts with this (default `chat:`): several chats can share one
    /// Redis database.
    pub prefix: String,
    /// How long a node that stopped answering keeps its users present (`--node-timeout`,
    /// default 30 s).
    pub node_timeout: Duration,
    /// How often (at most) the leader stores a checkpoint and trims the log behind the one
    /// before (default 30 s; also after every 20,000 entries). Shorter: joining nodes replay
    /// less and Redis holds less; longer: fewer large writes.
    pub checkpoint_interval: Duration,
}

impl ClusterOptions {
    /// The options for the cluster on Redis at `url`, with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> ClusterOptions {
        ClusterOptions {
            url: url.into(),
            prefix: "chat:".to_owned(),
            node_timeout: Duration::from_secs(30),
            checkpoint_interval: Duration::from_secs(30),
        }
    }

    /// How long a heartbeat key lives: half the timeout, so the leader's once-a-second look
    /// finds a dead node well within the timeout.
    fn heartbeat_ttl(&self) -> Duration {
        (self.node_timeout / 2).max(Duration::from_millis(500))
    }
}

/// What a node shares between its tasks.
pub(crate) struct NodeState {
    id: AtomicU32,
    /// How long a heartbeat lives.
    ttl: Duration,
    pub(crate) leader: AtomicBool,
    /// The id of the last log entry the reader handed on: what the heartbeat says, so the
    /// leader never trims what a node has not read.
    read_to: Mutex<String>,
}

impl NodeState {
    pub(crate) fn id(&self) -> NodeId {
        NodeId(self.id.load(Ordering::Acquire))
    }

    pub(crate) fn read_to(&self, id: &str) {
        let mut read_to = self.read_to.lock().unwrap_or_else(|p| p.into_inner());
        id.clone_into(&mut read_to);
    }

    fn read_to_now(&self) -> String {
        self.read_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Everything a runtime needs to run as a node, from [`ClusterNode::join`].
pub struct Joined {
    /// The chat as the cluster has it now (from its newest checkpoint).
    pub chat: Chat,
    /// The node's side of the log, for [`chat_runtime::Runtime::replica`].
    pub replication: Replication,
    /// The store the node's runtime writes through and reads history and accounts from.
    pub store: Arc<dyn Store>,
    /// The node itself: leave the cluster with it when the runtime has stopped.
    pub node: ClusterNode,
}

/// A node of a cluster: its background tasks (reading the log, heartbeats, leading).
pub struct ClusterNode {
    state: Arc<NodeState>,
    redis: ConnectionManager,
    keys: Keys,
    log: RedisLog,
    stop: CancellationToken,
    /// Cancelled first, when the runtime begins to stop: the store gives up retrying.
    stopping: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// How many replays may wait for the core task before the reader waits too.
const REPLAY_QUEUE: usize = 256;

impl ClusterNode {
    /// Joins the cluster on Redis at `options.url` (starting it, if this is its first node)
    /// with the chat's rules `config`, which must be the same on every node.
    pub async fn join(options: &ClusterOptions, config: Config) -> Result<Joined, ClusterError> {
        let client = redis::Client::open(options.url.as_str())?;
        let redis = connect(&client, options.node_timeout).await?;
        let keys = Keys::new(&options.prefix);
        let stop = CancellationToken::new();
        let stopping = CancellationToken::new();
        let store = RedisStore::shared(&options.url, &keys.store()).await?;
        let store: Arc<dyn Store> = Arc::new(NodeStore::new(store, stopping.clone()));
        let state = Arc::new(NodeState {
            id: AtomicU32::new(0),
            ttl: options.heartbeat_ttl(),
            leader: AtomicBool::new(false),
            read_to: Mutex::new(String::new()),
        });
        let mut redis_for_start = redis.clone();
        let (chat, position) =
            bootstrap(&mut redis_for_start, &keys, &config, store.as_ref()).await?;
        state.read_to(&position.id);
        let node = register(&mut redis_for_start, &keys, &state).await?;
        tracing::info!(%node, entry = position.seq, "joined the cluster");

        let log = RedisLog::new(redis.clone(), keys.clone());
        let (replay_tx, replay) = mpsc::channel(REPLAY_QUEUE);
        let reader = Reader {
            client,
            redis: redis.clone(),
            keys: keys.clone(),
            log: log.clone(),
            config,
            state: state.clone(),
            position,
            replay: replay_tx,
            stop: stop.clone(),
            checkpoint_interval: options.checkpoint_interval,
        };
        let membership = Membership {
            redis: redis.clone(),
            keys: keys.clone(),
            log: log.clone(),
            state: state.clone(),
            stop: stop.clone(),
        };
        let tasks = vec![tokio::spawn(reader.run()), tokio::spawn(membership.run())];
        let replication = Replication {
            node,
            log: Arc::new(log.clone()),
            replay,
        };
        Ok(Joined {
            chat,
            replication,
            store,
            node: ClusterNode {
                state,
                redis,
                keys,
                log,
                stop,
                stopping,
                tasks,
            },
        })
    }

    /// This node's id now (it changes if the node had to start over).
    pub fn id(&self) -> NodeId {
        self.state.id()
    }

    /// Begins to stop: the node stops retrying records Redis does not take, so that the
    /// runtime can shut down while Redis is away (it still reads the log and renews its
    /// heartbeat until [`ClusterNode::leave`]). Call it right before shutting the runtime down.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Leaves the cluster: the node's connections leave every room at once (rather than after
    /// the node timeout), its heartbeat is removed and its leadership, if it led, handed on.
    /// Call it after the runtime has shut down.
    pub async fn leave(self) {
        self.stopping.cancel();
        self.stop.cancel();
        for task in self.tasks {
            // A task waiting on a Redis that does not answer gives up within its command
            // timeout; the node does not wait that long to leave.
            let _ = tokio::time::timeout(LEAVE_AT_MOST, task).await;
        }
        let me = self.state.id();
        let (log, keys, mut redis) = (self.log, self.keys, self.redis);
        let farewell = async move {
            if let Err(error) = log.append_gone(me, me).await {
                tracing::warn!(%error, "cannot tell the cluster this node leaves; it will notice within the node timeout");
            }
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(keys.node(me))
                .query_async(&mut redis)
                .await;
            let _: Result<i64, _> = redis::Script::new(RELEASE)
                .key(keys.leader())
                .arg(me.0)
                .invoke_async(&mut redis)
                .await;
        };
        // Redis may be away: the others then notice within the node timeout.
        if tokio::time::timeout(LEAVE_AT_MOST, farewell).await.is_err() {
            tracing::warn!(
                "redis did not answer; the cluster will notice this node is gone within the node timeout"
            );
        }
    }
}

/// How long a leaving node tries to tell the cluster.
const LEAVE_AT_MOST: Duration = Duration::from_secs(3);

/// Connects to Redis, waiting for it (up to `at_most`) if it is not up yet.
async fn connect(
    client: &redis::Client,
    at_most: Duration,
) -> Result<ConnectionManager, ClusterError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let deadline = Instant::now() + at_most;
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(manager) => return Ok(manager),
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(%error, "redis is not answering yet; waiting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => return Err(ClusterError::Unreachable(at_most)),
        }
    }
}

/// The chat to start from: the newest checkpoint, or, for the cluster's first node, what the
/// store holds (the first node writes that as the first checkpoint).
async fn bootstrap(
    redis: &mut ConnectionManager,
    keys: &Keys,
    config: &Config,
    store: &dyn Store,
) -> Result<(Chat, Position), ClusterError> {
    loop {
        if let Some(stored) = checkpoint::load(redis, keys).await? {
            return stored.restore(config);
        }
        let locked: Option<String> = redis::cmd("SET")
            .arg(keys.init())
            .arg(std::process::id())
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(redis)
            .await?;
        if locked.is_some() {
            let snapshot = store.load(config.history).await?;
            let chat = Chat::restore(config.clone(), snapshot)?;
            // Entries already in the log (none, for a new cluster) are in the store, or gone:
            // the replica starts after the last one (number and id read in one step).
            let (seq, last): (Option<u64>, redis::streams::StreamRangeReply) = redis::pipe()
                .atomic()
                .get(keys.log_seq())
                .cmd("XREVRANGE")
                .arg(keys.log())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(redis)
                .await?;
            let id = last
                .ids
                .first()
                .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
            let position = Position {
                seq: seq.unwrap_or(0),
                id,
            };
            checkpoint::save(redis, keys, &Stored::of(&chat, position.clone())).await?;
            let _: () = redis::cmd("DEL")
                .arg(keys.init())
                .query_async(redis)
                .await?;
            tracing::info!("started a new cluster from the store");
            return Ok((chat, position));
        }
        // Another node is making the first checkpoint.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Draws a new node id, and announces it with a heartbeat.
pub(crate) async fn register(
    redis: &mut ConnectionManager,
    keys: &Keys,
    state: &NodeState,
) -> Result<NodeId, ClusterError> {
    let id: u32 = redis::cmd("INCR")
        .arg(keys.node_ids())
        .query_async(redis)
        .await?;
    let node = NodeId(id);
    if node > NodeId::MAX {
        return Err(ClusterError::NodeIdsUsedUp(id));
    }
    let _: () = redis::pipe()
        .sadd(keys.nodes(), id)
        .ignore()
        .cmd("SET")
        .arg(keys.node(node))
        .arg(state.read_to_now())
        .arg("PX")
        .arg(state.ttl.as_millis() as u64)
        .ignore()
        .query_async(redis)
        .await?;
    state.id.store(id, Ordering::Release);
    Ok(node)
}

/// Trims the log's entries before `upto`, or before the oldest entry a live node has not read
/// yet, whichever is older.
pub(crate) async fn trim(
    redis: &mut ConnectionManager,
    keys: &Keys,
    upto: &str,
) -> Result<(), ClusterError> {
    let nodes: Vec<u32> = redis::cmd("SMEMBERS")
        .arg(keys.nodes())
        .query_async(redis)
        .await?;
    let mut oldest = parse_id(upto);
    if !nodes.is_empty() {
        let heartbeats = nodes
            .iter()
            .map(|n| keys.node(NodeId(*n)))
            .collect::<Vec<_>>();
        let read: Vec<Option<String>> = redis::cmd("MGET")
            .arg(heartbeats)
            .query_async(redis)
            .await?;
        for id in read.into_iter().flatten() {
            if let Some(id) = parse_id(&id) {
                oldest = oldest.min(Some(id));
            }
        }
    }
    if let Some((ms, seq)) = oldest {
        let _: i64 = redis::cmd("XTRIM")
            .arg(keys.log())
            .arg("MINID")
            .arg(format!("{ms}-{seq}"))
            .query_async(redis)
            .await?;
    }
    Ok(())
}

/// A stream id's two numbers, for comparing ids.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Takes the lead if nobody has it, or renews it if this node has it; 1 if this node leads.
const LEAD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Gives the lead up if this node has it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Heartbeats, and the leader's look at everyone else's.
struct Membership {
    redis: ConnectionManager,
    keys: Keys,
    log: RedisLog,
    state: Arc<NodeState>,
    stop: CancellationToken,
}

impl Membership {
    async fn run(mut self) {
        let ttl = self.state.ttl;
        let every = (ttl / 3).min(Duration::from_secs(1));
        let lead = redis::Script::new(LEAD);
        // Since when Redis has answered without a break.
        let mut healthy_since: Option<Instant> = None;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let me = self.state.id();
            let beat: Result<(), _> = redis::cmd("SET")
                .arg(self.keys.node(me))
                .arg(self.state.read_to_now())
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut self.redis)
                .await;
            if let Err(error) = beat {
                if healthy_since.take().is_some() {
                    tracing::warn!(%error, "redis is unreachable: sends are refused until it is back");
                }
                self.state.leader.store(false, Ordering::Release);
                continue;
            }
            let since = *healthy_since.get_or_insert_with(Instant::now);
            let leads: Result<i64, _> = lead
                .key(self.keys.leader())
                .arg(me.0)
                .arg(ttl.as_millis() as u64)
                .invoke_async(&mut self.redis)
                .await;
            let leads = leads.is_ok_and(|l| l == 1);
            if leads && !self.state.leader.swap(true, Ordering::AcqRel) {
                tracing::info!(node = %me, "this node leads the cluster");
            }
            if !leads {
                self.state.leader.store(false, Ordering::Release);
            }
            if leads && since.elapsed() >= ttl {
                if let Err(error) = self.declare_the_dead(me).await {
                    tracing::warn!(%error, "cannot check the other nodes' heartbeats");
                }
            }
        }
    }

    /// Declares gone every node whose heartbeat expired.
    async fn declare_the_dead(&mut self, me: NodeId) -> Result<(), ClusterError> {
        let nodes: Vec<u32> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query_async(&mut self.redis)
            .await?;
        for node in nodes.into_iter().map(NodeId).filter(|n| *n != me) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.keys.node(node))
                .query_async(&mut self.redis)
                .await?;
            if alive {
                continue;
            }
            tracing::warn!(%node, "a node stopped renewing its heartbeat: its users leave");
            if let Err(error) = self.log.append_gone(me, node).await {
                tracing::warn!(%error, %node, "cannot declare the node gone yet");
            }
        }
        Ok(())
    }
}
