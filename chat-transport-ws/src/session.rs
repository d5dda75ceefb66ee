//! One WebSocket connection after its handshake: the [`Peer`] that [`chat_runtime::drive`] runs,
//! on any byte stream (a hyper or axum upgrade, a TLS stream, an in-memory duplex in tests).
//!
//! Reads are tungstenite's; writes are the runtime's bytes as they are: [`JsonFormat`] frames
//! each event once for all its recipients, so a batch goes to the socket with one write, after
//! anything tungstenite itself has queued (a pong).

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chat_core::{ChatError, Event};
use chat_protocol::json::decode;
use chat_runtime::{
    Admission, ClientInfo, Closing, ConnectError, Connection, Ending, Flow, Handle, Outbound,
    Pacing, Peer, SharedTcp,
};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::frame::JsonFormat;
use crate::server::WsConfig;

/// How long the server waits to send its close frame, and for the client's answer to it.
const CLOSE_REPLY: Duration = Duration::from_secs(2);

/// Attaches a new WebSocket connection to the runtime behind `handle`, before its handshake
/// completes: a full server answers the upgrade with HTTP 503 instead.
pub async fn connect(handle: &Handle) -> Result<Connection, ConnectError> {
    handle.connect(JsonFormat).await
}

/// [`connect`] for a client whose address and handshake headers the caller knows: an
/// authenticator may judge its logins by them, and the login throttle counts failures by its
/// address.
pub async fn connect_from(handle: &Handle, client: ClientInfo) -> Result<Connection, ConnectError> {
    handle.connect_from(JsonFormat, client).await
}

/// Runs the chat on `stream`, a byte stream whose WebSocket handshake is done, until the
/// connection ends; `connection` comes from [`connect`].
pub async fn run<S>(stream: S, connection: Connection, config: &WsConfig)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    run_after(stream, None, Vec::new(), connection, config).await
}

/// Runs the chat on the stream an HTTP upgrade handed over: straight on the TCP socket beneath
/// it where there is one (hyper's wrapper would cost two dynamic calls on every read and write
/// of the connection's life, and the runtime may then write broadcasts to the socket itself:
/// [`Peer::socket`]), or on the wrapper itself (TLS, say).
pub(crate) async fn run_upgraded(upgraded: Upgraded, connection: Connection, config: &WsConfig) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            // Copied out, and let go at once: even empty, hyper's `read_buf` holds on to its
            // whole read buffer (kilobytes) for as long as it lives.
            let read = parts.read_buf.to_vec();
            drop(parts.read_buf);
            let socket = SharedTcp::new(parts.io.into_inner());
            run_after(socket.clone(), Some(socket), read, connection, config).await
        }
        Err(upgraded) => run(TokioIo::new(upgraded), connection, config).await,
    }
}

/// [`run`] on a stream of which `read` was already read: the first bytes of the client's
/// frames, sent right behind its upgrade request. `socket` is the stream itself, when it is a
/// plain TCP socket.
async fn run_after<S>(
    stream: S,
    socket: Option<SharedTcp>,
    read: Vec<u8>,
    connection: Connection,
    config: &WsConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(config.max_frame))
        .max_frame_size(Some(config.max_frame));
    let ws = if read.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, Some(ws_config)).await
    } else {
        WebSocketStream::from_partially_read(stream, read, Role::Server, Some(ws_config)).await
    };
    let pacing = Pacing {
        write_timeout: config.write_timeout,
        idle_timeout: config.idle_timeout,
        ping: Some(config.ping_interval),
    };
    let peer = WsPeer {
        ws,
        socket,
        pong_due: false,
    };
    chat_runtime::drive(peer, connection, pacing).await;
}

struct WsPeer<S> {
    ws: WebSocketStream<S>,
    /// The TCP socket `ws` runs on, if it is a plain one.
    socket: Option<SharedTcp>,
    /// A ping came since the last write: tungstenite may still hold its pong, which must go
    /// before the next frames.
    pong_due: bool,
}

impl<S> Peer for WsPeer<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Item = Result<Message, WsError>;

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ws.poll_next_unpin(cx)
    }

    fn socket(&self) -> Option<&SharedTcp> {
        // A pong tungstenite holds must go first, and may be half-written already.
        self.socket.as_ref().filter(|_| !self.pong_due)
    }

    async fn on_item(
        &mut self,
        item: Self::Item,
        connection: &mut Connection,
    ) -> Result<(), Ending> {
        match item {
            Ok(message) => self.on_message(connection, message).await,
            Err(WsError::Capacity(_)) => Err(Ending::TooLarge),
            Err(_) => Err(Ending::Gone),
        }
    }

    async fn write(&mut self, batch: &mut Vec<Outbound>, _: &Connection) -> io::Result<Flow> {
        if std::mem::take(&mut self.pong_due) {
            self.ws.flush().await.map_err(io::Error::other)?;
        }
        chat_runtime::write_frames(self.ws.get_mut(), batch).await?;
        batch.clear();
        Ok(Flow::Continue)
    }

    async fn ping(&mut self) -> io::Result<()> {
        self.ws
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(io::Error::other)
    }

    async fn finish(&mut self, ending: Ending) {
        let (code, reason) = match ending {
            // After a write that did not finish, part of a frame may be on the wire: no close
            // frame can follow it.
            Ending::Gone | Ending::Quit | Ending::WriteTimedOut => return,
            Ending::Closed(Closing::Shutdown) | Ending::Stopped => {
                (CloseCode::Away, "server shutting down")
            }
            Ending::Closed(Closing::SlowConsumer) => {
                (CloseCode::Policy, "too slow: outbound queue full")
            }
            Ending::Closed(Closing::LoginTimeout) => (CloseCode::Policy, "login timeout"),
            Ending::Idle => (CloseCode::Normal, "idle timeout"),
            Ending::Flood => (CloseCode::Policy, "flood: rate limit exceeded for 3 s"),
            Ending::TooLarge => (CloseCode::Size, "frame too large"),
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let ws = &mut self.ws;
        let closing = async {
            if ws.close(Some(frame)).await.is_ok() {
                // Wait (briefly) for the client's close reply, so the close is clean.
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_REPLY, closing).await;
    }
}

impl<S> WsPeer<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Handles one message from the client.
    async fn on_message(
        &mut self,
        connection: &mut Connection,
        message: Message,
    ) -> Result<(), Ending> {
        let text = match message {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
            // tungstenite queues the pong itself and sends it with the next read, without
            // waiting on the socket, or with the next write; pongs only prove life.
            Message::Ping(_) => {
                self.pong_due = true;
                return Ok(());
            }
            Message::Pong(_) | Message::Frame(_) => return Ok(()),
            Message::Close(_) => {
                // Send tungstenite's close reply, briefly, so the client sees a clean close.
                let _ = chat_runtime::guarded(connection, CLOSE_REPLY, self.ws.flush()).await;
                return Err(Ending::Gone);
            }
        };
        let decoded = text.as_ref().map(|text| decode(text.as_str()));
        let (error, reference) = match (connection.admit(), decoded) {
            (Admission::Flooding, _) => return Err(Ending::Flood),
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
                return Ok(connection.send(command, reference).await?);
            }
            (Admission::Allowed, Some(Err(rejected))) => (rejected.error, rejected.reference),
            (Admission::Allowed, None) => (
                ChatError::BadFrame(
                    "binary frames are not part of the protocol; send JSON text".into(),
                ),
                None,
            ),
        };
        // Through the outbox, in order with earlier replies and paced like them.
        Ok(connection.reply(Event::error(&error), reference).await?)
    }
}
