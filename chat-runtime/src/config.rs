//! The runtime's settings: the per-connection limits among the bundled server's options (see the
//! protocol reference, `docs/protocol.md` in the repository).

/// How a [`Runtime`](crate::Runtime) treats connections. `RuntimeConfig::default()` has the
/// protocol's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Outbound queue per connection, in bytes of encoded frames (`--outbox`, 1 MiB). A
    /// connection whose queue would grow past it is closed as a slow consumer.
    pub outbox_bytes: usize,
    /// Open connections, all transports together (`--max-connections`, 10,000).
    pub max_connections: usize,
    /// Frames (or lines) per second per connection, bursts up to twice that (`--rate-limit`,
    /// 50); 0 disables the limit.
    pub rate_limit: u32,
    /// How many inputs the core task takes from its queue before it hands their outputs on, and
    /// so the largest group commit it builds by itself (256).
    pub batch: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            outbox_bytes: 1 << 20,
            max_connections: 10_000,
            rate_limit: 50,
            batch: 256,
        }
    }
}
