//! What the runtime's test connections speak: the protocol's JSON payloads (the WebSocket
//! transport's, without the WebSocket header), and reading them back.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use chat_core::{Event, Ref, SendKind};
use chat_runtime::{Connection, Outgoing, WireFormat};
use serde_json::Value;

/// The protocol's JSON payloads.
pub struct Json;

impl WireFormat for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, event: &Event, reference: Option<&Ref>, _kind: SendKind) -> Option<Bytes> {
        Some(chat_protocol::json::encode(event, reference))
    }
}

/// Waits for the next batch of frames and decodes them as JSON; panics after 10 s without any.
pub async fn recv(conn: &mut Connection) -> Vec<Value> {
    let mut batch = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), conn.next(&mut batch)).await {
        Ok(Outgoing::Frames) => batch
            .iter()
            .map(|o| serde_json::from_slice(&o.bytes).unwrap())
            .collect(),
        Ok(Outgoing::Close(reason)) => panic!("closed: {reason:?}"),
        Err(_) => panic!("nothing arrived within 10 s"),
    }
}
