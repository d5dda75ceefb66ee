//! One line client's driver: the name prompt, typed lines turned into commands, and the outbox
//! written in batches, all in one task.
//!
//! A line client is in one room at a time. The session keeps that room: `/join` validates the
//! new room name (with the core's own rules) before it sends the join, then leaves the old room,
//! so the pair cannot half-fail. It learns that the login succeeded from the `welcome` event that
//! comes back through its outbox.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use chat_core::{ChatError, Command, ErrorCode, Event, Ref, RoomName};
use chat_protocol::line::{HELP, Line, Slash, parse_line, render};
use chat_runtime::{Admission, Closing, Connection, Handle, Outbound, Outgoing, WireFormat};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::codec::LineCodec;
use crate::server::TcpConfig;

const PROMPT: &[u8] = b"Enter your name:\n";
const NO_ROOM: &str = "you are in no room; /join ROOM first";
const SHUTTING_DOWN: &str = "* server shutting down; bye\n";

/// Where the client is in its conversation with the server.
enum State {
    /// Every line is a name to try.
    Naming,
    /// Logged in; lines are said in `room`, if any.
    Chatting { room: Option<RoomName> },
}

/// Why the session ends, and the last line to send.
struct End(Option<&'static str>);

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    handle: Handle,
    format: Arc<dyn WireFormat>,
    config: Arc<TcpConfig>,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let connection = match handle.connect(format).await {
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
        state: State::Naming,
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
    state: State,
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
        if self.write_now(PROMPT).await.is_err() {
            return End(None);
        }
        let mut batch = Vec::new();
        let idle = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                line = lines.next(), if !self.quitting => {
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
                        (Outgoing::Frames, Ok(true)) => return End(Some("* Bye!\n")),
                        (Outgoing::Frames, Ok(false)) => {}
                        (Outgoing::Close(Closing::Shutdown), Ok(_)) => return End(Some(SHUTTING_DOWN)),
                        (Outgoing::Close(Closing::SlowConsumer), Ok(_)) => return End(Some("! disconnected: you were not reading fast enough\n")),
                        (Outgoing::Close(Closing::LoginTimeout), Ok(_)) => return End(Some("! no name given in time; bye\n")),
                    }
                }
                () = &mut idle => return End(Some("! disconnected: idle for too long\n")),
            }
        }
    }

    /// Handles one line from the client; `Err` ends the session.
    async fn on_line(&mut self, line: Line) -> Result<(), End> {
        match self.connection.admit() {
            Admission::Allowed => {}
            Admission::Limited => return self.reject(&ChatError::RateLimited).await,
            Admission::Flooding => {
                return Err(End(Some("! disconnected: too many lines for too long\n")));
            }
        }
        let bytes = match line {
            Line::Text(bytes) => bytes,
            Line::TooLong { .. } => {
                let why = format!(
                    "line too long (the limit is {} bytes); dropped",
                    self.config.max_line
                );
                return self.say_error(ErrorCode::BadFrame, &why).await;
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return self
                .say_error(ErrorCode::BadFrame, "that line is not valid UTF-8; dropped")
                .await;
        };
        match &self.state {
            State::Naming => self.on_name(text.trim()).await,
            State::Chatting { .. } => self.on_chat(text).await,
        }
    }

    async fn on_name(&mut self, name: &str) -> Result<(), End> {
        match name {
            "" => self.write_now(PROMPT).await,
            "/quit" => Err(End(Some("* Bye!\n"))),
            name => {
                self.send(Command::Login {
                    name: name.to_owned(),
                })
                .await
            }
        }
    }

    async fn on_chat(&mut self, text: &str) -> Result<(), End> {
        let current = match &self.state {
            State::Chatting { room } => room.clone(),
            State::Naming => None,
        };
        match parse_line(text) {
            Slash::Say(said) if said.trim().is_empty() => Ok(()),
            Slash::Say(said) => match current {
                Some(room) => {
                    let command = Command::Say {
                        room: room.to_string(),
                        text: said.to_owned(),
                    };
                    self.send(command).await
                }
                None => self.say_error(ErrorCode::NotInRoom, NO_ROOM).await,
            },
            Slash::Join(name) => {
                let room = match RoomName::parse(name) {
                    Ok(room) => room,
                    Err(error) => return self.reject(&error).await,
                };
                self.send(Command::Join {
                    room: room.to_string(),
                })
                .await?;
                if let Some(old) = current.filter(|old| *old != room) {
                    self.send(Command::Leave {
                        room: old.to_string(),
                    })
                    .await?;
                }
                self.state = State::Chatting { room: Some(room) };
                Ok(())
            }
            Slash::Rooms => self.send(Command::Rooms).await,
            Slash::Who(room) => match room.map(str::to_owned).or(current.map(|r| r.to_string())) {
                Some(room) => self.send(Command::Who { room }).await,
                None => {
                    self.say_error(
                        ErrorCode::NotInRoom,
                        "usage: /who ROOM (you are in no room)",
                    )
                    .await
                }
            },
            Slash::Dm { to, text } => {
                self.send(Command::Dm {
                    to: to.to_owned(),
                    text: text.to_owned(),
                })
                .await
            }
            Slash::History(limit) => match current {
                Some(room) => {
                    let command = Command::History {
                        room: room.to_string(),
                        before: None,
                        limit,
                    };
                    self.send(command).await
                }
                None => self.say_error(ErrorCode::NotInRoom, NO_ROOM).await,
            },
            Slash::Help => {
                let mut out = String::new();
                for line in HELP {
                    render::info(&mut out, line);
                }
                self.write_now(out.as_bytes()).await
            }
            Slash::Quit => {
                // Answers to what was typed before come first: the pong marks their end.
                self.send(Command::Ping).await?;
                self.quitting = true;
                Ok(())
            }
            Slash::Unknown(command) => {
                let why = format!("unknown command /{command} (try /help)");
                self.say_error(ErrorCode::UnknownType, &why).await
            }
            Slash::Usage(usage) => self.say_error(ErrorCode::BadFrame, usage).await,
        }
    }

    async fn send(&mut self, command: Command) -> Result<(), End> {
        self.sent += 1;
        let reference = Some(Ref::number(self.sent));
        self.connection
            .send(command, reference)
            .await
            .map_err(|_| End(Some(SHUTTING_DOWN)))
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
            .map_err(|_| End(Some(SHUTTING_DOWN)))
    }

    async fn reject(&mut self, error: &ChatError) -> Result<(), End> {
        self.say_error(error.code(), &error.to_string()).await
    }

    /// Writes every frame of `batch` with one write, following the login and room changes the
    /// events in it report. `Ok(true)` when the `/quit` pong was among them.
    async fn write_batch(&mut self, batch: &mut Vec<Outbound>) -> Result<bool, End> {
        if batch.is_empty() {
            return Ok(false);
        }
        let mut out = BytesMut::new();
        let mut quit = false;
        for outbound in batch.drain(..) {
            if self.quitting && matches!(outbound.event.as_deref(), Some(Event::Pong)) {
                quit = true;
                break;
            }
            out.extend_from_slice(&outbound.bytes);
            match (outbound.event.as_deref(), &self.state) {
                (Some(Event::Welcome { rooms, .. }), State::Naming) => {
                    self.state = State::Chatting {
                        room: rooms.first().cloned(),
                    };
                }
                // A rejected name: say why (done above), then ask again.
                (Some(Event::Error { .. }), State::Naming) => out.extend_from_slice(PROMPT),
                _ => {}
            }
        }
        self.write_now(&out.freeze()).await?;
        Ok(quit)
    }

    async fn write_now(&mut self, bytes: &[u8]) -> Result<(), End> {
        match chat_runtime::within(self.config.write_timeout, self.write.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End(None)),
        }
    }
}
