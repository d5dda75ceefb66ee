//! Starting and stopping a runtime, and the [`Handle`] transports attach connections with.

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::{Chat, Config, Now, RestoreError, Timestamp};
use chat_store::{Store, StoreError};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, ClientInfo, GuestsOnly};
use crate::config::RuntimeConfig;
use crate::connection::{Connection, LocalConnection};
use crate::core_task::{Checks, CoreTask, ToCore};
use crate::delivery::{DeliveryTask, Sink};
use crate::helped::Helped;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::outbox::{Delivery, Outbound, outbox};
use crate::rate_limit::RateLimiter;
use crate::replication::{Replica, Replication};
use crate::sweep::Sweep;
use crate::wire::WireFormat;

/// How many inputs may wait for the core task before senders wait too.
const INBOX: usize = 8192;
/// How many batches of outputs may wait for the delivery task (and so for the store).
const DELIVERY_QUEUE: usize = 64;

/// Why a runtime could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The store failed while loading or flushing.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store's snapshot contradicts itself.
    #[error("the stored state is inconsistent: {0}")]
    Restore(#[from] RestoreError),
    /// One of the runtime's tasks panicked.
    #[error("a runtime task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a connection could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// `max_connections` connections are open (HTTP 503, or a `! ` line and close).
    #[error("the server is full")]
    TooManyConnections,
    /// The runtime is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

pub(crate) struct Shared {
    pub(crate) to_core: mpsc::Sender<ToCore>,
    /// On a current-thread runtime: runs the core as soon as a connection hands it an input
    /// (see `helped.rs`).
    pub(crate) helper: Option<Box<dyn Fn() + Send + Sync>>,
    /// On a current-thread runtime: broadcasts to waiting connections are written by the sweep
    /// (see `sweep.rs`), so drivers leave their sockets with their outboxes while they wait.
    pub(crate) sweeps: bool,
    pub(crate) config: RuntimeConfig,
    pub(crate) metrics: Arc<Metrics>,
    /// The next connection's id (a cluster node's carry the node's id in their high bits).
    next_conn: Arc<AtomicU64>,
    /// Cancelled when shutdown begins: transports stop accepting.
    pub(crate) closing: CancellationToken,
    /// Notified whenever the last open connection goes away.
    pub(crate) idle: Notify,
    /// Every wire format connections have used, one per type: a broadcast is encoded once per
    /// entry, so the table is keyed by type and cannot grow with the number of connections.
    formats: Mutex<Vec<(TypeId, Arc<dyn WireFormat>)>>,
}

/// A cheap, cloneable reference to a running runtime: what a transport (or your own code, an
/// axum handler or a game server) uses to attach connections.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

/// A running chat runtime: one core task, one delivery task, and the store behind them.
pub struct Runtime {
    handle: Handle,
    tasks: Tasks,
    stop: CancellationToken,
    store: Arc<dyn Store>,
}

/// The core and the delivery: two tasks, or one on a current-thread runtime.
///
/// On one thread, a hand-off between tasks waits for every task woken before it: at 1,000
/// receivers that is a round of 1,000 connection writes. Run as one task, the delivery takes
/// the core's outputs in the same turn, so a broadcast waits for one round less. On several
/// threads the two run apart, so the delivery's encoding and pushing overlap the core's work.
enum Tasks {
    Apart {
        core: JoinHandle<Chat>,
        delivery: JoinHandle<Result<(), StoreError>>,
    },
    Together(JoinHandle<(Chat, Result<(), StoreError>)>),
}

impl Runtime {
    /// Loads the store's snapshot, restores a [`Chat`] from it with `chat`, and starts the
    /// runtime, admitting guests only ([`GuestsOnly`]). Must be called inside a tokio runtime.
    pub async fn start(
        chat: Config,
        store: Arc<dyn Store>,
        config: RuntimeConfig,
    ) -> Result<Runtime, RuntimeError> {
        Self::start_with(chat, store, config, Arc::new(GuestsOnly)).await
    }

    /// [`Runtime::start`], with `authenticator` deciding the logins that carry a password or a
    /// token (or all of them, with
    /// [`Config::authenticate_guests`](chat_core::Config::authenticate_guests)) and the
    /// registrations.
    pub async fn start_with(
        chat: Config,
        store: Arc<dyn Store>,
        config: RuntimeConfig,
        authenticator: Arc<dyn Authenticator>,
    ) -> Result<Runtime, RuntimeError> {
        let snapshot = store.load(chat.history).await?;
        let chat = Chat::restore(chat, snapshot)?;
        Ok(Self::with_chat(chat, store, config, authenticator))
    }

    /// Starts a runtime around a chat you built yourself.
    pub fn with_chat(
        chat: Chat,
        store: Arc<dyn Store>,
        config: RuntimeConfig,
        authenticator: Arc<dyn Authenticator>,
    ) -> Runtime {
        Self::launch(chat, store, config, authenticator, None)
    }

    /// Starts a runtime as one replica of a cluster: `chat` must be the cluster's state at the
    /// point of the log where `replication.replay` begins (chat-cluster builds both). Inputs of
    /// this runtime's connections go to the log; the core is fed the log's entries.
    pub fn replica(
        chat: Chat,
        store: Arc<dyn Store>,
        config: RuntimeConfig,
        authenticator: Arc<dyn Authenticator>,
        replication: Replication,
    ) -> Runtime {
        Self::launch(chat, store, config, authenticator, Some(replication))
    }

    fn launch(
        chat: Chat,
        store: Arc<dyn Store>,
        config: RuntimeConfig,
        authenticator: Arc<dyn Authenticator>,
        replication: Option<Replication>,
    ) -> Runtime {
        let next_conn = Arc::new(AtomicU64::new(1));
        let replica = replication.map(|r| Replica::start(r, next_conn.clone()));
        let (to_core, inbox) = mpsc::channel(INBOX);
        let (to_delivery, work) = mpsc::channel(DELIVERY_QUEUE);
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let core = CoreTask {
            chat,
            checks: Checks::new(authenticator, metrics.clone()),
            inbox,
            delivery: to_delivery,
            batch: config.batch.max(1),
            stop: stop.clone(),
            started: tokio::time::Instant::now(),
            replica,
            replayed_at: Now::from(Timestamp::EPOCH),
        }
        .run();
        let delivery = DeliveryTask::new(work, store.clone(), metrics.clone(), to_core.clone());
        let (tasks, helper, sweeps) = match tokio::runtime::Handle::current().runtime_flavor() {
            RuntimeFlavor::CurrentThread => {
                let (sweep, sweeping) = Sweep::new(metrics.clone());
                tokio::spawn(sweeping);
                let delivery = delivery.sweeping(sweep).run();
                // The core first: what it hands over is taken in the same turn.
                let both = Helped::new(async move { tokio::join!(biased; core, delivery) });
                let helped = both.clone();
                let helper: Box<dyn Fn() + Send + Sync> = Box::new(move || helped.help());
                (
                    Tasks::Together(tokio::spawn(both.run())),
                    Some(helper),
                    true,
                )
            }
            _ => {
                let tasks = Tasks::Apart {
                    core: tokio::spawn(core),
                    delivery: tokio::spawn(delivery.run()),
                };
                (tasks, None, false)
            }
        };
        let shared = Arc::new(Shared {
            to_core,
            helper,
            sweeps,
            config,
            metrics,
            next_conn,
            closing: CancellationToken::new(),
            idle: Notify::new(),
            formats: Mutex::new(Vec::new()),
        });
        Runtime {
            handle: Handle { shared },
            tasks,
            stop,
            store,
        }
    }

    /// A handle for attaching connections.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Shuts down gracefully: transports stop accepting, the inputs already received are
    /// handled, everything is stored and the store flushed and closed, and every connection is
    /// told to close (WebSocket 1001) after its queued frames. Returns the core's final state.
    /// A server that exits next should give its connections a moment to write their close
    /// frames: [`Handle::wait_idle`].
    pub async fn shutdown(self) -> Result<Chat, RuntimeError> {
        self.handle.shared.closing.cancel();
        self.stop.cancel();
        let (chat, flushed) = match self.tasks {
            Tasks::Apart { core, delivery } => (core.await?, delivery.await?),
            Tasks::Together(both) => both.await?,
        };
        let closed = self.store.close().await;
        flushed?;
        closed?;
        Ok(chat)
    }
}

impl Handle {
    /// Attaches a new connection whose client reads `format`'s bytes (a transport's
    /// connections). Fails at once when the server is full or shutting down.
    ///
    /// Formats are told apart by type: the first value of a type that a connection brings is the
    /// one the runtime keeps and encodes with for every connection of that type, so a broadcast
    /// is encoded once per format however the transports create their values.
    pub async fn connect<F: WireFormat>(&self, format: F) -> Result<Connection, ConnectError> {
        self.connect_from(format, ClientInfo::default()).await
    }

    /// [`Handle::connect`] for a client the transport knows something of (its address; the
    /// WebSocket handshake's headers), which the [`Authenticator`] may judge its logins by and
    /// the login throttle counts failures against.
    pub async fn connect_from<F: WireFormat>(
        &self,
        format: F,
        client: ClientInfo,
    ) -> Result<Connection, ConnectError> {
        let (index, codec) = self.register(format);
        let (producer, receiver) = outbox::<Outbound>(self.shared.config.outbox_bytes);
        let sink = Sink::Wire {
            outbox: producer,
            format: index,
            codec,
        };
        self.attach(sink, receiver, client).await
    }

    /// Attaches an in-process client (a bot, a game server's player) that receives events as
    /// values ([`Delivery`]) rather than bytes. Its outbound queue is bounded like any other
    /// connection's; it is trusted code, so nothing rate-limits what it sends.
    pub async fn connect_local(&self) -> Result<LocalConnection, ConnectError> {
        let (producer, receiver) = outbox::<Delivery>(self.shared.config.outbox_bytes);
        let client = ClientInfo::default();
        self.attach(Sink::Local(producer), receiver, client).await
    }

    /// The format table's index for `format`'s type, registering it on first use.
    fn register<F: WireFormat>(&self, format: F) -> (usize, Arc<dyn WireFormat>) {
        let mut formats = self
            .shared
            .formats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = TypeId::of::<F>();
        if let Some(i) = formats.iter().position(|(known, _)| *known == id) {
            return (i, formats[i].1.clone());
        }
        let codec: Arc<dyn WireFormat> = Arc::new(format);
        formats.push((id, codec.clone()));
        (formats.len() - 1, codec)
    }

    async fn attach<T>(
        &self,
        sink: Sink,
        receiver: crate::outbox::OutboxReceiver<T>,
        client: ClientInfo,
    ) -> Result<Connection<T>, ConnectError> {
        let shared = &self.shared;
        if shared.closing.is_cancelled() {
            return Err(ConnectError::ShuttingDown);
        }
        let open = shared
            .metrics
            .connections_open
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        if open > shared.config.max_connections as u64 {
            shared
                .metrics
                .connections_open
                .fetch_sub(1, Ordering::AcqRel);
            Metrics::add(&shared.metrics.connections_refused, 1);
            return Err(ConnectError::TooManyConnections);
        }
        Metrics::add(&shared.metrics.connections_total, 1);
        let conn = chat_core::ConnectionId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        // The connection exists from here on: dropping it (also on the error path) undoes the count.
        let connection = Connection::new(
            conn,
            receiver,
            self.clone(),
            RateLimiter::new(shared.config.rate_limit, tokio::time::Instant::now()),
        );
        let connect = ToCore::Connect { conn, sink, client };
        match shared.to_core.send(connect).await {
            Ok(()) => Ok(connection),
            Err(_) => Err(ConnectError::ShuttingDown),
        }
    }

    /// The runtime's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The runtime's limits.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Cancelled when shutdown begins: accept loops stop on it.
    pub fn closing(&self) -> CancellationToken {
        self.shared.closing.clone()
    }

    /// Waits until no connection is open, or `at_most` has passed.
    pub async fn wait_idle(&self, at_most: Duration) {
        let idle = async {
            loop {
                let notified = self.shared.idle.notified();
                if self.shared.metrics.connections_open.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(at_most, idle).await;
    }
}
