//! How events become bytes: one [`WireFormat`] per transport.
//!
//! The runtime encodes each broadcast once per wire format and hands the same [`Bytes`] to every
//! recipient that speaks it, so a message to 10,000 WebSocket clients is one `serde_json` call.
//! A transport passes its format when it attaches a connection
//! ([`Handle::connect`](crate::Handle::connect)); formats are told apart by type, and the first
//! value of a type is the one the runtime keeps, so however a transport creates its values, a
//! broadcast is encoded once per format and the format table never grows with the connections.
//! A format should therefore hold no per-connection state.

use bytes::{Bytes, BytesMut};
use chat_core::{Event, Ref, SendKind};

/// Renders events for one transport's clients.
pub trait WireFormat: Send + Sync + 'static {
    /// A short name for logs ("json", "line").
    fn name(&self) -> &'static str;

    /// The frame (or lines) that shows `event` to a client, with the `ref` of the command it
    /// answers; `None` when this transport shows nothing for it (a line client does not see its
    /// own room messages echoed). `kind` says what the event is to the recipient; broadcasts are
    /// [`SendKind::Push`] without a reference.
    fn encode(&self, event: &Event, reference: Option<&Ref>, kind: SendKind) -> Option<Bytes>;

    /// Whether frames of this format may be joined: whether a client reads the bytes of several
    /// frames, one after the other, exactly as it reads them written one by one. True of a byte
    /// stream whose frames delimit themselves (lines; WebSocket frames with their headers):
    /// the runtime then pushes consecutive broadcasts to a connection as one [`Outbound`]
    /// holding all their frames, which at load saves a push per message per recipient. A
    /// transport that sends each [`Outbound`] as one message of its own keeps the default,
    /// `false`.
    ///
    /// [`Outbound`]: crate::Outbound
    fn joins(&self) -> bool {
        false
    }
}

/// The bytes of `parts`, one after the other, in one buffer: a run's joined frames, or a batch
/// written to a socket that takes no vectored writes.
pub(crate) fn join<'a, I>(parts: I) -> Bytes
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let mut joined = BytesMut::with_capacity(parts.clone().map(<[u8]>::len).sum());
    for part in parts {
        joined.extend_from_slice(part);
    }
    joined.freeze()
}
