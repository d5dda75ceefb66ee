//! One line client: the [`Peer`] that [`chat_runtime::drive`] runs, on any byte stream (a TCP
//! socket, a TLS stream, an in-memory duplex in tests).
//!
//! What a line means, and what to show, is the [`LineSession`]'s business: this peer feeds it
//! the lines `nc` sends and the events the outbox delivers, and carries out its [`Action`]s. Its
//! problems go through the outbox as `error` events, after the answers to earlier lines and
//! paced like them; coming back out, they reach the session like the server's errors (and,
//! while naming, bring the prompt again).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use chat_core::{ChatError, Command, ErrorCode, Event, Ref};
use chat_protocol::line::{Action, BYE, Line, LineSession, render};
use chat_runtime::{
    Admission, ClientInfo, Closing, Connection, Ending, Flow, Handle, Outbound, Pacing, Peer,
    RuntimeStopped, SharedTcp,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::LineCodec;
use crate::format::LineFormat;
use crate::server::TcpConfig;

const SHUTTING_DOWN: &str = "* server shutting down; bye\n";

/// Runs a line client on `stream` until it leaves: attaches it to the runtime behind `handle`
/// (a full server gets a `! ` line and the close), asks for its name, and chats. `peer` is the
/// client's address, if it has one (the login throttle counts failures by it). A plain
/// `TcpStream` is better given to [`run_tcp`].
pub fn run<S>(
    stream: S,
    handle: &Handle,
    config: Arc<TcpConfig>,
    peer: Option<SocketAddr>,
) -> impl Future<Output = ()> + use<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    run_on(stream, None, handle, config, peer)
}

/// [`run`] on a plain TCP socket, as the bundled listener ([`crate::serve`]) runs its clients:
/// on a current-thread runtime, broadcasts to the client while its task waits are then written
/// to the socket by the runtime itself, without waking the task (see `chat_runtime`'s
/// `SharedTcp`). An app that accepts line clients itself should hand its `TcpStream`s here
/// rather than to [`run`], which cannot tell a TCP socket from any other stream.
pub fn run_tcp(
    stream: TcpStream,
    handle: &Handle,
    config: Arc<TcpConfig>,
    peer: Option<SocketAddr>,
) -> impl Future<Output = ()> + use<> {
    let socket = SharedTcp::new(stream);
    run_on(socket.clone(), Some(socket), handle, config, peer)
}

/// [`run`], with `socket` the stream itself when it is a plain TCP socket: the runtime may then
/// write broadcasts to it directly ([`Peer::socket`]).
pub(crate) fn run_on<S>(
    stream: S,
    socket: Option<SharedTcp>,
    handle: &Handle,
    config: Arc<TcpConfig>,
    peer: Option<SocketAddr>,
) -> impl Future<Output = ()> + use<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    tracing::debug!(?peer, "line client connected");
    // The steps before the loop run in a box of their own, freed once they are done, and hand
    // the loop its state by value; and this is no `async fn`, which would keep its arguments in
    // its state for as long as the connection lives. So an idle connection's task holds the
    // loop's state and nothing beside it.
    let opening = Box::pin(open(stream, socket, handle.clone(), config, peer));
    async move {
        let (conn, driving) = {
            let Some((peer, connection, pacing)) = opening.await else {
                return;
            };
            (
                connection.id(),
                chat_runtime::drive(peer, connection, pacing),
            )
        };
        driving.await;
        tracing::debug!(%conn, "line client detached");
    }
}

/// Attaches the client (a full server gets a `! ` line and the close) and asks for its name;
/// `None` if the client is already gone.
async fn open<S>(
    stream: S,
    socket: Option<SharedTcp>,
    handle: Handle,
    config: Arc<TcpConfig>,
    peer: Option<SocketAddr>,
) -> Option<(LinePeer<S>, Connection, Pacing)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut lines = FramedRead::with_capacity(stream, LineCodec::new(config.max_line), 256);
    let client = ClientInfo {
        addr: peer,
        ..ClientInfo::default()
    };
    let connection = match handle.connect_from(LineFormat, client).await {
        Ok(connection) => connection,
        Err(error) => {
            let line = format!("! {error}\n");
            let refusal = lines.get_mut().write_all(line.as_bytes());
            let _ = tokio::time::timeout(config.write_timeout, refusal).await;
            let _ = lines.get_mut().shutdown().await;
            return None;
        }
    };
    tracing::debug!(conn = %connection.id(), "line client attached");
    let mut peer = LinePeer {
        lines,
        socket,
        session: LineSession::new(),
        config,
        sent: 0,
        quitting: false,
    };
    let mut opening = String::new();
    let actions = peer.session.opening();
    let opened = peer.carry_out(actions, &connection, &mut opening).await;
    if opened.is_err() || peer.write_now(opening.as_bytes()).await.is_err() {
        return None;
    }
    let pacing = Pacing {
        write_timeout: peer.config.write_timeout,
        idle_timeout: peer.config.idle_timeout,
        ping: None,
    };
    Some((peer, connection, pacing))
}

struct LinePeer<S> {
    /// The client's lines; writes go to the stream underneath.
    lines: FramedRead<S, LineCodec>,
    /// The TCP socket under `lines`, if it is a plain one.
    socket: Option<SharedTcp>,
    session: LineSession,
    config: Arc<TcpConfig>,
    /// Commands sent, numbering their refs (so replies to commands are told from other events).
    sent: u64,
    /// `/quit` was typed: a ping went out after every earlier command, and its pong ends the
    /// session once everything before it is written.
    quitting: bool,
}

impl<S> Peer for LinePeer<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Item = io::Result<Line>;

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.lines.poll_next_unpin(cx)
    }

    fn socket(&self) -> Option<&SharedTcp> {
        // Whatever the session writes itself (a `/help`) is written whole before it waits.
        self.socket.as_ref()
    }

    async fn on_item(
        &mut self,
        item: Self::Item,
        connection: &mut Connection,
    ) -> Result<(), Ending> {
        let Ok(line) = item else {
            return Err(Ending::Gone);
        };
        match connection.admit() {
            Admission::Allowed => {}
            Admission::Limited => {
                let error = ChatError::RateLimited;
                return Ok(say_error(connection, error.code(), &error.to_string()).await?);
            }
            Admission::Flooding => return Err(Ending::Flood),
        }
        let actions = self.session.on_input(&line);
        let mut shown = String::new();
        self.carry_out(actions, connection, &mut shown).await?;
        if shown.is_empty() {
            return Ok(());
        }
        let timeout = self.config.write_timeout;
        let write = self.lines.get_mut().write_all(shown.as_bytes());
        match chat_runtime::guarded(connection, timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Gone),
            Err(ending) => Err(ending),
        }
    }

    /// Writes every frame of `batch` with one write, with what the line session adds after the
    /// events in it; ends the session when the `/quit` pong is among them.
    async fn write(
        &mut self,
        batch: &mut Vec<Outbound>,
        connection: &Connection,
    ) -> io::Result<Flow> {
        if batch.iter().all(|outbound| outbound.event.is_none()) {
            // Broadcasts only (at load, the common case): their shared bytes are written as
            // they are, with no buffer to fill.
            chat_runtime::write_frames(self.lines.get_mut(), batch).await?;
            batch.clear();
            return Ok(Flow::Continue);
        }
        let mut out = BytesMut::new();
        let mut shown = String::new();
        let mut flow = Flow::Continue;
        for outbound in batch.drain(..) {
            if self.quitting && matches!(outbound.event.as_deref(), Some(Event::Pong)) {
                flow = Flow::End(Ending::Quit);
                break;
            }
            let event = outbound.event.as_deref();
            if event.is_none_or(|event| self.session.shows(event)) {
                out.extend_from_slice(&outbound.bytes);
            }
            if let Some(event) = event {
                let actions = self.session.on_event(event);
                // Boxed: the batches of broadcasts that make up nearly every write need none
                // of its state (a connection's every write future is allocated and moved).
                if Box::pin(self.carry_out(actions, connection, &mut shown))
                    .await
                    .is_err()
                {
                    flow = Flow::End(Ending::Stopped);
                }
                out.extend_from_slice(shown.as_bytes());
                shown.clear();
            }
        }
        batch.clear();
        let socket = self.lines.get_mut();
        socket.write_all(&out).await?;
        socket.flush().await?;
        Ok(flow)
    }

    async fn ping(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reading(&self) -> bool {
        !self.quitting
    }

    /// Only a line of chat already read from the socket: while chatting, a line that is not a
    /// slash command only ever becomes a command for the core (`say`), where a slash command or
    /// a line typed while naming may be answered here at once (`/help`, a prompt).
    fn reads_ahead(&self) -> bool {
        if self.session.is_naming() {
            return false;
        }
        let buffered = self.lines.read_buffer();
        match buffered.iter().position(|&b| b == b'\n') {
            Some(end) => buffered[..end].trim_ascii_start().first() != Some(&b'/'),
            None => false,
        }
    }

    async fn finish(&mut self, ending: Ending) {
        let last = match ending {
            Ending::Gone | Ending::WriteTimedOut | Ending::TooLarge => None,
            Ending::Quit => {
                let mut line = String::new();
                render::info(&mut line, BYE);
                Some(line)
            }
            Ending::Closed(Closing::Shutdown) | Ending::Stopped => Some(SHUTTING_DOWN.to_owned()),
            Ending::Closed(Closing::SlowConsumer) => {
                Some("! disconnected: you were not reading fast enough\n".to_owned())
            }
            Ending::Closed(Closing::LoginTimeout) => {
                Some("! no name given in time; bye\n".to_owned())
            }
            Ending::Idle => Some("! disconnected: idle for too long\n".to_owned()),
            Ending::Flood => Some("! disconnected: too many lines for too long\n".to_owned()),
        };
        if let Some(last) = last {
            let _ = self.write_now(last.as_bytes()).await;
        }
        let _ = self.lines.get_mut().shutdown().await;
    }
}

impl<S> LinePeer<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Carries out the line session's actions in order; the lines they show directly are
    /// appended to `shown`, for the caller to write.
    async fn carry_out(
        &mut self,
        actions: Vec<Action>,
        connection: &Connection,
        shown: &mut String,
    ) -> Result<(), RuntimeStopped> {
        for action in actions {
            match action {
                Action::Send(command) => self.send(connection, command).await?,
                Action::SendQuietly(command) => connection.send(command, None).await?,
                Action::Problem { code, text } => say_error(connection, code, &text).await?,
                Action::Quit => {
                    // Answers to what was typed before come first: the pong marks their end.
                    self.send(connection, Command::Ping).await?;
                    self.quitting = true;
                }
                Action::Info(_) | Action::Prompt | Action::PasswordPrompt => {
                    shown.extend(action.render())
                }
            }
        }
        Ok(())
    }

    async fn send(
        &mut self,
        connection: &Connection,
        command: Command,
    ) -> Result<(), RuntimeStopped> {
        self.sent += 1;
        connection.send(command, Some(Ref::number(self.sent))).await
    }

    /// Writes `bytes` now, within the write timeout.
    async fn write_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = self.lines.get_mut().write_all(bytes);
        match chat_runtime::within(self.config.write_timeout, write).await {
            Ok(written) => written,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Answers with an error line, through the outbox: after the answers to earlier lines, and
/// paced like them.
async fn say_error(
    connection: &Connection,
    code: ErrorCode,
    text: &str,
) -> Result<(), RuntimeStopped> {
    let event = Event::Error {
        code,
        message: text.to_owned(),
    };
    connection.reply(event, None).await
}
