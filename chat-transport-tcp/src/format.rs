//! [`LineFormat`]: the runtime's [`WireFormat`] for line clients, so a room message is rendered
//! (by [`chat_protocol::line::render::render`]) once and the same bytes go to every line recipient.

use bytes::Bytes;
use chat_core::{Event, Ref, SendKind};
use chat_protocol::line::render::render;
use chat_runtime::WireFormat;

/// The line transport's [`WireFormat`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LineFormat;

impl WireFormat for LineFormat {
    fn name(&self) -> &'static str {
        "line"
    }

    fn encode(&self, event: &Event, reference: Option<&Ref>, kind: SendKind) -> Option<Bytes> {
        let text = render(event, reference.is_some(), kind)?;
        Some(Bytes::from(text))
    }

    /// Every rendering ends its lines: renderings written back to back read as they would one
    /// by one.
    fn joins(&self) -> bool {
        true
    }
}
