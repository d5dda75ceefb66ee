//! One line client's driver: the name prompt, typed lines turned into commands, and the outbox
//! written in batches, all in one task.
//!
//! What a line means, and what to show, is the [`LineSession`]'s business: this task feeds it
//! the lines `nc` sends and the events the outbox delivers, and carries out its [`Action`]s. Its
//! problems go through the outbox as `error` events, after the answers to earlier lines and
//! bounded like them, so a client that types garbage and never reads is still closed; coming
//! back out, they reach the session like the server's errors (and, while naming, bring the
//! prompt again).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use chat_core::{ChatError, Command, ErrorCode, Event, Ref};
use chat_protocol::line::{Action, BYE, Line, LineSession, render};
use chat_runtime::{Admission, Closing, Connection, Handle, Outbound, Outgoing};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::codec::LineCodec;
use crate::format::LineFormat;
use crate::server::TcpConfig;

const SHUTTING_DOWN: &str = "* server shutting down; bye\n";

/// Why the session ends, and the last line to send.
struct End(Option<String>);

impl End {
    fn saying(line: &str) -> End {
        End(Some(line.to_owned()))
    }

    fn bye() -> End {
        let mut line = String::new();
        render::info(&mut line, BYE);
        End(Some(line))
    }
}

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    handle: Handle,
    config: Arc<TcpConfig>,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let connection = match handle.connect(LineFormat).await {
        Ok(connection) => connection,
        Err(error) => {
            let line = format!("! {error}\n");
            let _ =
                tokio::time::timeout(config.write_timeout, write.write_all(line.as_bytes())).await;
            return;
        }
    };
    tracing::debug!(%peer, conn = %connection.id(), "line client attached");
    let lines = FramedRead::with_capacity(read, LineCodec::new(config.max_line), 256);
    let mut session = Session {
        connection,
        write,
        line: LineSession::new(),
        config,
        sent: 0,
        quitting: false,
    };
    let end = session.drive(lines).await;
    if let End(Some(last)) = end {
        let _ = session.write_now(last.as_bytes()).await;
    }
    let _ = session.write.shutdown().await;
    tracing::debug!(%peer, "line client detached");
}

struct Session {
    connection: Connection,
    write: OwnedWriteHalf,
    line: LineSession,
    config: Arc<TcpConfig>,
    /// Commands sent, numbering their refs (so replies to commands are told from other events).
    sent: u64,
    /// `/quit` was typed: a ping went out after every earlier command, and its pong ends the
    /// session once everything before it is written.
    quitting: bool,
}

impl Session {
    async fn drive(
        &mut self,
        mut lines: FramedRead<tokio::net::tcp::OwnedReadHalf, LineCodec>,
    ) -> End {
        let opening = self.line.opening();
        let mut shown = String::new();
        if let Err(end) = self.carry_out(opening, &mut shown).await {
            return end;
        }
        if self.write_now(shown.as_bytes()).await.is_err() {
            return End(None);
        }
        let mut batch = Vec::new();
        let idle = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                // Read only while the client's earlier lines are answered enough (backpressure).
                line = async { self.connection.readable().await; lines.next().await }, if !self.quitting => {
                    idle.as_mut().reset(Instant::now() + self.config.idle_timeout);
                    let result = match line {
                        Some(Ok(line)) => self.on_line(line).await,
                        Some(Err(_)) | None => return End(None),
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                outgoing = self.connection.next(&mut batch) => {
                    let written = self.write_batch(&mut batch).await;
                    match (outgoing, written) {
                        (_, Err(end)) => return end,
                        (Outgoing::Frames, Ok(true)) => return End::bye(),
                        (Outgoing::Frames, Ok(false)) => {}
                        (Outgoing::Close(Closing::Shutdown), Ok(_)) => return End::saying(SHUTTING_DOWN),
                        (Outgoing::Close(Closing::SlowConsumer), Ok(_)) => return End::saying("! disconnected: you were not reading fast enough\n"),
                        (Outgoing::Close(Closing::LoginTimeout), Ok(_)) => return End::saying("! no name given in time; bye\n"),
                    }
                }
                () = &mut idle => return End::saying("! disconnected: idle for too long\n"),
            }
        }
    }

    /// Handles one line from the client; `Err` ends the session.
    async fn on_line(&mut self, line: Line) -> Result<(), End> {
        match self.connection.admit() {
            Admission::Allowed => {}
            Admission::Limited => return self.reject(&ChatError::RateLimited).await,
            Admission::Flooding => {
                return Err(End::saying("! disconnected: too many lines for too long\n"));
            }
        }
        let actions = self.line.on_input(&line);
        let mut shown = String::new();
        self.carry_out(actions, &mut shown).await?;
        if shown.is_empty() {
            return Ok(());
        }
        self.write_now(shown.as_bytes()).await
    }

    /// Carries out the line session's actions in order; the lines they show directly are
    /// appended to `shown`, for the caller to write.
    async fn carry_out(&mut self, actions: Vec<Action>, shown: &mut String) -> Result<(), End> {
        for action in actions {
            match action {
                Action::Send(command) => self.send(command).await?,
                Action::SendQuietly(command) => self.send_quietly(command).await?,
                Action::Problem { code, text } => self.say_error(code, &text).await?,
                Action::Quit => {
                    // Answers to what was typed before come first: the pong marks their end.
                    self.send(Command::Ping).await?;
                    self.quitting = true;
                }
                Action::Info(_) | Action::Prompt => shown.extend(action.render()),
            }
        }
        Ok(())
    }

    async fn send(&mut self, command: Command) -> Result<(), End> {
        self.sent += 1;
        let reference = Some(Ref::number(self.sent));
        self.connection
            .send(command, reference)
            .await
            .map_err(|_| End::saying(SHUTTING_DOWN))
    }

    /// Sends a command without a `ref`: what answers it is rendered as news to nobody.
    async fn send_quietly(&mut self, command: Command) -> Result<(), End> {
        self.connection
            .send(command, None)
            .await
            .map_err(|_| End::saying(SHUTTING_DOWN))
    }

    /// Answers with an error line, through the outbox: after the answers to earlier lines, and
    /// bounded like them, so a client that types garbage and never reads is still closed.
    async fn say_error(&mut self, code: ErrorCode, text: &str) -> Result<(), End> {
        let event = Event::Error {
            code,
            message: text.to_owned(),
        };
        self.connection
            .reply(event, None)
            .await
            .map_err(|_| End::saying(SHUTTING_DOWN))
    }

    async fn reject(&mut self, error: &ChatError) -> Result<(), End> {
        self.say_error(error.code(), &error.to_string()).await
    }

    /// Writes every frame of `batch` with one write, with what the line session adds after the
    /// events in it. `Ok(true)` when the `/quit` pong was among them.
    async fn write_batch(&mut self, batch: &mut Vec<Outbound>) -> Result<bool, End> {
        if batch.is_empty() {
            return Ok(false);
        }
        let mut out = BytesMut::new();
        let mut shown = String::new();
        let mut quit = false;
        for outbound in batch.drain(..) {
            if self.quitting && matches!(outbound.event.as_deref(), Some(Event::Pong)) {
                quit = true;
                break;
            }
            out.extend_from_slice(&outbound.bytes);
            if let Some(event) = outbound.event.as_deref() {
                let actions = self.line.on_event(event);
                self.carry_out(actions, &mut shown).await?;
                out.extend_from_slice(shown.as_bytes());
                shown.clear();
            }
        }
        self.write_now(&out.freeze()).await?;
        Ok(quit)
    }

    /// Writes `bytes`, giving up when the write timeout fires or, at once, when the client's
    /// queue overflows while the write waits on it.
    async fn write_now(&mut self, bytes: &[u8]) -> Result<(), End> {
        let write = chat_runtime::within(self.config.write_timeout, self.write.write_all(bytes));
        let overflow = async {
            while self.connection.closed().await != Closing::SlowConsumer {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            written = write => match written {
                Ok(Ok(())) => Ok(()),
                _ => Err(End(None)),
            },
            () = overflow => Err(End(None)),
        }
    }
}
