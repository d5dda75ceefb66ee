//! One WebSocket connection's driver: a single task that reads frames, writes the outbox in
//! batches, pings, and closes with the right code.
//!
//! Reading and writing in one task (rather than a reader and a writer task) keeps a connection
//! to one future and no locks, and lets every frame queued since the last write go out with one
//! flush.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_core::{ChatError, Event};
use chat_protocol::json::decode;
use chat_runtime::{Admission, Closing, ConnectError, Connection, Handle, Outbound, Outgoing};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::frame::JsonFormat;
use crate::server::WsConfig;

type Ws = WebSocketStream<TcpStream>;

/// Why the driver ends the connection, and the close frame it sends.
enum End {
    /// The client closed, or the socket failed: nothing more to send.
    Gone,
    /// Send this close code and reason.
    Close(CloseCode, &'static str),
}

pub(crate) async fn run(
    mut stream: TcpStream,
    peer: SocketAddr,
    handle: Handle,
    config: Arc<WsConfig>,
) {
    // Without it, small frames wait for delayed ACKs (40 ms on Linux).
    let _ = stream.set_nodelay(true);
    let mut attached = handle.connect(JsonFormat).await;
    // A browser asking for the chat page (a plain GET) is answered before any WebSocket exists;
    // a connection that sends nothing is still dropped at the login timeout.
    let page = crate::page::serve_if_page(&mut stream, &config);
    let served = match &mut attached {
        Ok(connection) => tokio::select! {
            served = page => served,
            () = closed(connection) => return,
        },
        Err(_) => page.await,
    };
    if served == crate::page::Served::Done {
        return;
    }
    let refusal = match &attached {
        Ok(_) => None,
        Err(ConnectError::TooManyConnections) => Some("the server is full; try again later"),
        Err(ConnectError::ShuttingDown) => Some("the server is shutting down"),
    };
    let check = handshake_check(config.path.clone(), refusal);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(config.max_frame))
        .max_frame_size(Some(config.max_frame));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_config));
    let handshake = tokio::time::timeout(config.handshake_timeout, handshake);
    let mut connection = match attached {
        Ok(connection) => connection,
        Err(_) => {
            // Refused in the handshake (HTTP 503); finish it so the client sees why.
            let _ = handshake.await;
            return;
        }
    };
    // The core's login timeout counts from here: a client that never completes the upgrade is
    // dropped when it fires, like one that never logs in.
    let ws = tokio::select! {
        upgraded = handshake => match upgraded {
            Ok(Ok(ws)) => ws,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "WebSocket handshake refused or failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "WebSocket handshake timed out");
                return;
            }
        },
        () = closed(&mut connection) => return,
    };
    tracing::debug!(%peer, conn = %connection.id(), "WebSocket client attached");
    drive(ws, connection, &config).await;
    tracing::debug!(%peer, "WebSocket client detached");
}

/// The handshake callback: upgrades only on the configured path, and answers a full server with
/// HTTP 503 before any WebSocket exists.
// tungstenite fixes the callback's signature, large error type included.
#[allow(clippy::result_large_err)]
fn handshake_check(
    path: String,
    refusal: Option<&'static str>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> {
    move |request, response| {
        if request.uri().path() != path {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "no WebSocket endpoint here; try /chat",
            ));
        }
        match refusal {
            Some(why) => Err(error_response(StatusCode::SERVICE_UNAVAILABLE, why)),
            None => Ok(response),
        }
    }
}

/// Waits until the runtime closes the connection (nothing else reaches it before its login).
async fn closed(connection: &mut Connection) {
    let mut batch = Vec::new();
    while let Outgoing::Frames = connection.next(&mut batch).await {
        batch.clear();
    }
}

fn error_response(status: StatusCode, text: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(text.to_owned()));
    *response.status_mut() = status;
    response
}

async fn drive(mut ws: Ws, mut connection: Connection, config: &WsConfig) {
    let mut batch: Vec<Outbound> = Vec::new();
    let mut heard = Instant::now();
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            // Read only while the client's earlier frames are answered enough (backpressure).
            incoming = async { connection.readable().await; ws.next().await } => {
                heard = Instant::now();
                match incoming {
                    Some(Ok(message)) => {
                        if let Err(end) = on_message(&mut ws, &mut connection, message).await {
                            break end;
                        }
                    }
                    Some(Err(WsError::Capacity(_))) => break End::Close(CloseCode::Size, "frame too large"),
                    Some(Err(_)) | None => break End::Gone,
                }
            }
            outgoing = connection.next(&mut batch) => {
                let written = write_batch(&mut ws, &connection, &mut batch, config.write_timeout).await;
                match (outgoing, written) {
                    (_, Err(end)) => break end,
                    (Outgoing::Frames, Ok(())) => {}
                    (Outgoing::Close(Closing::Shutdown), Ok(())) => break End::Close(CloseCode::Away, "server shutting down"),
                    (Outgoing::Close(Closing::SlowConsumer), Ok(())) => break End::Close(CloseCode::Policy, "too slow: outbound queue full"),
                    (Outgoing::Close(Closing::LoginTimeout), Ok(())) => break End::Close(CloseCode::Policy, "login timeout"),
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() >= config.idle_timeout {
                    break End::Close(CloseCode::Normal, "idle timeout");
                }
                if send_now(&mut ws, Message::Ping(Bytes::new()), config.write_timeout).await.is_err() {
                    break End::Gone;
                }
            }
        }
    };
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let closing = async {
            if ws.close(Some(frame)).await.is_ok() {
                // Wait (briefly) for the client's close reply, so the close is clean.
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// Handles one message from the client; `Err` ends the connection.
async fn on_message(ws: &mut Ws, connection: &mut Connection, message: Message) -> Result<(), End> {
    let text = match message {
        Message::Text(text) => Some(text),
        Message::Binary(_) => None,
        // tungstenite answers pings itself (on the next write or flush); pongs only prove life.
        Message::Ping(_) => return ws.flush().await.map_err(|_| End::Gone),
        Message::Pong(_) | Message::Frame(_) => return Ok(()),
        Message::Close(_) => return Err(End::Gone),
    };
    let decoded = text.as_ref().map(|text| decode(text.as_str()));
    let (error, reference) = match (connection.admit(), decoded) {
        (Admission::Flooding, _) => {
            return Err(End::Close(
                CloseCode::Policy,
                "flood: rate limit exceeded for 3 s",
            ));
        }
        (Admission::Limited, decoded) => {
            // The refused frame's error still carries its ref, if it had a valid one.
            let reference = match decoded {
                Some(Ok((_, reference))) => reference,
                Some(Err(rejected)) => rejected.reference,
                None => None,
            };
            (ChatError::RateLimited, reference)
        }
        (Admission::Allowed, Some(Ok((command, reference)))) => {
            return connection.send(command, reference).await.map_err(stopped);
        }
        (Admission::Allowed, Some(Err(rejected))) => (rejected.error, rejected.reference),
        (Admission::Allowed, None) => (
            ChatError::BadFrame(
                "binary frames are not part of the protocol; send JSON text".into(),
            ),
            None,
        ),
    };
    // Through the outbox, in order with earlier replies and bounded like them.
    connection
        .reply(Event::error(&error), reference)
        .await
        .map_err(stopped)
}

fn stopped(_: chat_runtime::RuntimeStopped) -> End {
    End::Close(CloseCode::Away, "server shutting down")
}

/// Writes every frame in `batch` with one write. The runtime's bytes are complete WebSocket
/// frames ([`JsonFormat`](crate::JsonFormat) frames each event once for all its recipients), so
/// they go to the socket as they are, after anything tungstenite itself has queued (a pong).
async fn write_batch(
    ws: &mut Ws,
    connection: &Connection,
    batch: &mut Vec<Outbound>,
    timeout: Duration,
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    let write = async {
        ws.flush().await.map_err(|_| ())?;
        let socket = ws.get_mut();
        let result = if let [one] = batch.as_slice() {
            socket.write_all(&one.bytes).await
        } else {
            let total = batch.iter().map(|o| o.bytes.len()).sum();
            let mut joined = BytesMut::with_capacity(total);
            for outbound in batch.iter() {
                joined.extend_from_slice(&outbound.bytes);
            }
            socket.write_all(&joined).await
        };
        batch.clear();
        result.map_err(|_| ())
    };
    // A write that waits on a client who stopped reading is abandoned as soon as its queue
    // overflows: the client is cut off now, not when the write timeout fires.
    let overflow = async {
        while connection.closed().await != Closing::SlowConsumer {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        written = chat_runtime::within(timeout, write) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => Err(End::Gone),
            Err(_) => Err(End::Close(CloseCode::Policy, "too slow: write timed out")),
        },
        // Part of a frame may be written: no close frame can follow it.
        () = overflow => Err(End::Gone),
    }
}

async fn send_now(ws: &mut Ws, message: Message, timeout: Duration) -> Result<(), End> {
    match tokio::time::timeout(timeout, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Gone),
    }
}
