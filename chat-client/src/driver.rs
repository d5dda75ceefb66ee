//! The session's task. It owns the connection and the [`LineSession`]; the program talks to it
//! over two bounded channels, typed lines in and [`Update`]s out. One loop runs connections one
//! after another (connect, log in, chat, wait out the back-off); while chatting, a `select!` waits
//! on the socket, the typed lines and a keepalive tick. The task waits for room in the updates
//! channel before it reads the socket again, so a program that falls behind slows the session
//! down instead of growing a queue, and a server that keeps sending eventually drops it as too
//! slow.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_core::{Command, ErrorCode, Event, Ref, RoomName, Secret, SendKind, UserKey};
use chat_protocol::line::{Action, BYE, LineSession};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

use crate::backoff::mix;
use crate::client::{ClientError, Incoming, WsClient};
use crate::resume::{PageWanted, Resume, Shown};
use crate::session::{SessionConfig, Typed};
use crate::update::{Notice, Update, seconds};

/// How one connection ended.
enum Outcome {
    /// The user quit.
    Quit,
    /// The name or the credentials were refused, and retrying cannot help.
    Refused { code: ErrorCode, message: String },
    /// The connection ended or never came up; try again. `logged_in` says it had logged in.
    Retry { why: String, logged_in: bool },
    /// Retrying cannot help (a bad URL, no chat endpoint there).
    Fatal(String),
    /// The program stopped listening (it dropped the session or its typist).
    Gone,
}

/// The session's task.
pub(crate) struct Driver {
    config: Arc<SessionConfig>,
    updates: mpsc::Sender<Update>,
    lines: mpsc::Receiver<Typed>,
    /// The password every login sends: the configured one, or the one the name was registered
    /// with during the session. In memory only.
    password: Option<Secret>,
    /// A `register` sent and not answered yet: its `ref` and password.
    registering: Option<(Ref, Secret)>,
    /// What typed lines mean, and the room the user is in (one at a time).
    line: LineSession,
    logged_in_once: bool,
    /// What was shown: the `since` of the next login, and what not to show twice.
    resume: Resume,
    /// Pages of missed messages to ask for, once the event at hand is shown.
    wanted: Vec<PageWanted>,
    /// The name the server welcomed, to tell the DMs the user sent from those sent to them.
    me: Option<UserKey>,
    next_ref: u64,
    /// The `ref` of the `join` that takes the user back to their room after a reconnection: its
    /// history is filtered like a login's.
    restoring: Option<Ref>,
    seed: u64,
}

/// The program stopped listening.
struct Gone;

/// Why handling a server event ended the connection.
enum Stop {
    /// The program stopped listening.
    Gone,
    /// Sending what the event asked for failed.
    Lost(ClientError),
}

impl From<Gone> for Stop {
    fn from(Gone: Gone) -> Stop {
        Stop::Gone
    }
}

impl Driver {
    /// The task of a session with `config`, reporting on `updates` and reading `lines`.
    pub(crate) fn new(
        config: SessionConfig,
        updates: mpsc::Sender<Update>,
        lines: mpsc::Receiver<Typed>,
    ) -> Driver {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|t| t.as_nanos() as u64)
            .unwrap_or_default()
            ^ mix(config.name.len() as u64);
        Driver {
            password: config.password.clone(),
            registering: None,
            config: Arc::new(config),
            updates,
            lines,
            line: LineSession::chatting(),
            logged_in_once: false,
            resume: Resume::default(),
            wanted: Vec::new(),
            me: None,
            next_ref: 0,
            restoring: None,
            seed,
        }
    }

    /// Runs the session to its end: connections one after the other, with waits between.
    pub(crate) async fn run(mut self) {
        let mut attempt: u32 = 1;
        loop {
            let connecting = Update::Connecting {
                url: self.config.url.clone(),
                attempt,
            };
            if self.emit(connecting).await.is_err() {
                return;
            }
            let outcome = self.connection().await;
            self.resume.disconnected();
            let (why, reset) = match outcome {
                Outcome::Quit => {
                    let _ = self.emit(Update::Ended { reason: BYE.into() }).await;
                    return;
                }
                Outcome::Refused { code, message } => {
                    let _ = self.emit(Update::Refused { code, message }).await;
                    return;
                }
                Outcome::Fatal(reason) => {
                    let _ = self.emit(Update::Ended { reason }).await;
                    return;
                }
                Outcome::Gone => return,
                Outcome::Retry { why, logged_in } if logged_in => {
                    if self.emit(Update::Lost { reason: why }).await.is_err() {
                        return;
                    }
                    (None, true)
                }
                Outcome::Retry { why, .. } => (Some(why), false),
            };
            if reset {
                attempt = 1;
            }
            let delay = self.config.backoff.jittered(attempt, self.seed);
            attempt = attempt.saturating_add(1);
            let retrying = Update::Retrying {
                why,
                delay,
                attempt: attempt - 1,
            };
            if self.emit(retrying).await.is_err() {
                return;
            }
            match self.wait_offline(delay).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = self.emit(Update::Ended { reason: BYE.into() }).await;
                    return;
                }
                Err(Gone) => return,
            }
        }
    }

    async fn emit(&self, update: Update) -> Result<(), Gone> {
        self.updates.send(update).await.map_err(|_| Gone)
    }

    /// Waits out a back-off, answering typed lines: `Ok(false)` when the user quits.
    async fn wait_offline(&mut self, delay: Duration) -> Result<bool, Gone> {
        let until = Instant::now() + delay;
        loop {
            let line = tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(true),
                line = self.lines.recv() => line,
            };
            let line = match line {
                None => return Ok(false),
                Some(Typed::Line(line)) => line,
                Some(Typed::Register(_)) => {
                    let problem = Notice::Problem(
                        "not connected; not registered (try again once reconnected)".into(),
                    );
                    self.emit(Update::Notice(problem)).await?;
                    continue;
                }
            };
            // Nothing typed now changes the session: it would have had to reach the server.
            let actions = self.line.preview(&line);
            if actions.contains(&Action::Quit) {
                return Ok(false);
            }
            if actions
                .iter()
                .any(|action| matches!(action, Action::Send(_) | Action::SendQuietly(_)))
            {
                let left = until.saturating_duration_since(Instant::now());
                let problem = Notice::Problem(format!(
                    "not connected (next attempt in {}); not sent",
                    seconds(left)
                ));
                self.emit(Update::Notice(problem)).await?;
                continue;
            }
            for notice in actions.into_iter().filter_map(notice) {
                self.emit(Update::Notice(notice)).await?;
            }
        }
    }

    /// One connection, from connecting to its end.
    async fn connection(&mut self) -> Outcome {
        let config = self.config.clone();
        let connect = tokio::time::timeout(config.connect_timeout, WsClient::connect(&config.url));
        let mut client = match connect.await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return connect_failure(&config.url, &error),
            Err(_) => {
                return Outcome::Retry {
                    why: format!("no answer from {} in time", config.url),
                    logged_in: false,
                };
            }
        };
        self.registering = None;
        self.wanted.clear();
        let login = self.login();
        if let Err(error) = client.send(&login, None).await {
            return Outcome::Retry {
                why: describe(&error),
                logged_in: false,
            };
        }
        let deadline = Instant::now() + config.connect_timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, client.recv()).await;
            let incoming = match received {
                Ok(Ok(incoming)) => incoming,
                Ok(Err(error)) => {
                    return Outcome::Retry {
                        why: describe(&error),
                        logged_in: false,
                    };
                }
                Err(_) => {
                    return Outcome::Retry {
                        why: "the server did not answer the login in time".into(),
                        logged_in: false,
                    };
                }
            };
            match incoming {
                Incoming::Event {
                    event: event @ Event::Welcome { .. },
                    ..
                } => {
                    if self.welcomed(&mut client, event).await.is_err() {
                        return Outcome::Gone;
                    }
                    break;
                }
                Incoming::Event {
                    event: Event::Error { code, message },
                    ..
                } if refuses_login(code) => {
                    let _ = client.close().await;
                    // After a login that worked, our old connection may still hold the name
                    // until the server notices it is gone, and a lock on failed logins ends:
                    // try again. The name and credentials themselves do not change.
                    let passing = matches!(code, ErrorCode::NameTaken | ErrorCode::RateLimited);
                    if self.logged_in_once && passing {
                        return Outcome::Retry {
                            why: message,
                            logged_in: false,
                        };
                    }
                    return Outcome::Refused { code, message };
                }
                Incoming::Event {
                    event:
                        Event::Error {
                            code: ErrorCode::Unavailable,
                            message,
                        },
                    ..
                } => {
                    // The server cannot check logins right now: a later attempt may pass.
                    let _ = client.close().await;
                    return Outcome::Retry {
                        why: message,
                        logged_in: false,
                    };
                }
                Incoming::Event { event, reference } => {
                    match self.handle(&mut client, event, reference).await {
                        Ok(()) => {}
                        Err(Stop::Gone) => return Outcome::Gone,
                        Err(Stop::Lost(error)) => {
                            return Outcome::Retry {
                                why: describe(&error),
                                logged_in: false,
                            };
                        }
                    }
                }
                Incoming::Unknown(_) => {}
                Incoming::Closed { code, reason } => {
                    return Outcome::Retry {
                        why: describe_close(code, &reason),
                        logged_in: false,
                    };
                }
            }
        }
        self.chat(client).await
    }

    /// After the welcome: shows it, and after a reconnection goes back to the user's room.
    async fn welcomed(&mut self, client: &mut WsClient, welcome: Event) -> Result<(), Gone> {
        if self.logged_in_once {
            self.emit(Update::Notice(Notice::Info(format!(
                "reconnected to {}",
                self.config.url
            ))))
            .await?;
        }
        self.logged_in_once = true;
        if let Event::Welcome { name, rooms, .. } = &welcome {
            self.me = Some(name.key());
            // After a resumed login, the rooms' `joined` frames carry what was missed.
            self.resume.welcomed(rooms);
        }
        // After a reconnection the line session asks to go back to the user's room, and a guest
        // out of the rooms joined at login.
        for mut send in self.show(welcome, None).await? {
            let mut joins = false;
            match &mut send {
                Action::Send(Command::Join { room, since }) => {
                    joins = true;
                    // With this login's `since`, so that it carries what was missed there too.
                    *since = self.resume.since();
                    if let Ok(room) = RoomName::parse(room) {
                        self.resume.rejoining(room);
                    }
                }
                Action::SendQuietly(Command::Leave { room }) => {
                    if let Ok(room) = RoomName::parse(room) {
                        self.resume.leaving(room);
                    }
                }
                _ => {}
            }
            // A failure here shows up as the connection ending, in the chat loop.
            if let (Ok(Some(reference)), true) = (self.send_asked(client, send).await, joins) {
                // Its history is filtered like a login's.
                self.restoring = Some(reference);
            }
        }
        // The pong of this ping follows the login's DMs, which are then shown in order.
        if self.resume.wants_burst_end() {
            if let Ok(reference) = self.send(client, &Command::Ping).await {
                self.resume.burst_ends_at(reference);
            }
        }
        Ok(())
    }

    /// The logged-in part of a connection.
    async fn chat(&mut self, mut client: WsClient) -> Outcome {
        let keepalive = self.config.keepalive;
        let mut heard = Instant::now();
        let mut pinged = false;
        let mut tick = tokio::time::interval_at(Instant::now() + keepalive / 2, keepalive / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quitting: Option<(Ref, Instant)> = None;
        let lost = |why: String| Outcome::Retry {
            why,
            logged_in: true,
        };
        loop {
            let quit_deadline = quitting.as_ref().map(|(_, deadline)| *deadline);
            tokio::select! {
                received = client.recv() => {
                    heard = Instant::now();
                    pinged = false;
                    let (event, reference) = match received {
                        Ok(Incoming::Event { event, reference }) => (event, reference),
                        Ok(Incoming::Unknown(_)) => continue,
                        Ok(Incoming::Closed { code, reason }) => return lost(describe_close(code, &reason)),
                        Err(error) => return lost(describe(&error)),
                    };
                    if let Event::Pong = event {
                        if let (Some((quit, _)), Some(reference)) = (&quitting, &reference) {
                            if quit == reference {
                                let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
                                return Outcome::Quit;
                            }
                        }
                        // Keepalive answers are not news; the end of a login's burst is.
                        if !self.resume.ends_burst(reference.as_ref()) {
                            continue;
                        }
                    }
                    match self.handle(&mut client, event, reference).await {
                        Ok(()) => {}
                        Err(Stop::Gone) => return Outcome::Gone,
                        Err(Stop::Lost(error)) => return lost(describe(&error)),
                    }
                }
                line = self.lines.recv(), if quitting.is_none() => {
                    let actions = match line {
                        Some(Typed::Line(line)) => self.line.on_line(&line),
                        Some(Typed::Register(password)) => {
                            vec![Action::Send(Command::Register { password })]
                        }
                        // The program dropped its typist: leave as if it typed /quit.
                        None => return Outcome::Gone,
                    };
                    for action in actions {
                        match action {
                            send @ (Action::Send(_) | Action::SendQuietly(_)) => {
                                let registering = match &send {
                                    Action::Send(Command::Register { password }) => Some(password.clone()),
                                    _ => None,
                                };
                                match self.send_asked(&mut client, send).await {
                                    Ok(reference) => {
                                        if let (Some(reference), Some(password)) = (reference, registering) {
                                            self.registering = Some((reference, password));
                                        }
                                    }
                                    Err(error) => return lost(describe(&error)),
                                }
                            }
                            Action::Quit => {
                                // The answers to earlier lines come first: the pong marks their end.
                                match self.send(&mut client, &Command::Ping).await {
                                    Ok(reference) => quitting = Some((reference, Instant::now() + Duration::from_secs(2))),
                                    Err(_) => return Outcome::Quit,
                                }
                            }
                            shown => {
                                if let Some(notice) = notice(shown) {
                                    if self.emit(Update::Notice(notice)).await.is_err() {
                                        return Outcome::Gone;
                                    }
                                }
                            }
                        }
                    }
                }
                () = async {
                    match quit_deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => return Outcome::Quit,
                _ = tick.tick() => {
                    let quiet = heard.elapsed();
                    if quiet >= keepalive * 2 {
                        return lost(format!("the server has not answered for {}", seconds(quiet)));
                    }
                    if quiet >= keepalive && !pinged {
                        pinged = true;
                        if let Err(error) = self.send(&mut client, &Command::Ping).await {
                            return lost(describe(&error));
                        }
                    }
                }
            }
        }
    }

    /// The login of a new connection: by token, or by name with the password if there is one;
    /// after the first login, with `since`, the newest message id shown, so that the server sends
    /// what was missed meanwhile.
    fn login(&mut self) -> Command {
        let since = self.resume.login(self.logged_in_once);
        match &self.config.token {
            Some(token) => Command::Login {
                name: None,
                password: None,
                token: Some(token.clone()),
                since,
            },
            None => Command::Login {
                name: Some(self.config.name.clone()),
                password: self.password.clone(),
                token: None,
                since,
            },
        }
    }

    /// Keeps the password of a `register` the server accepted, for the logins that follow.
    fn note_registration(&mut self, event: &Event, reference: Option<&Ref>) {
        let answers = match (&self.registering, reference) {
            (Some((asked, _)), Some(reference)) => asked == reference,
            _ => false,
        };
        if !answers {
            return;
        }
        if let Some((_, password)) = self.registering.take() {
            if let Event::Registered { .. } = event {
                self.password = Some(password);
            }
        }
    }

    /// Sends a command with a fresh numeric `ref`, and returns the `ref`.
    async fn send(&mut self, client: &mut WsClient, command: &Command) -> Result<Ref, ClientError> {
        self.next_ref += 1;
        let reference = Ref::number(self.next_ref);
        client.send(command, Some(&reference)).await?;
        Ok(reference)
    }

    /// Sends a command the line session asked for: with a fresh `ref` ([`Action::Send`]), or
    /// without one ([`Action::SendQuietly`]). Returns the `ref`; other actions send nothing.
    async fn send_asked(
        &mut self,
        client: &mut WsClient,
        action: Action,
    ) -> Result<Option<Ref>, ClientError> {
        match action {
            Action::Send(command) => self.send(client, &command).await.map(Some),
            Action::SendQuietly(command) => client.send(&command, None).await.map(|()| None),
            _ => Ok(None),
        }
    }

    /// Shows a server event, then sends what it asks for: the commands of the line session, and
    /// the next page of missed messages.
    async fn handle(
        &mut self,
        client: &mut WsClient,
        event: Event,
        reference: Option<Ref>,
    ) -> Result<(), Stop> {
        for send in self.show(event, reference).await? {
            self.send_asked(client, send).await.map_err(Stop::Lost)?;
        }
        for page in std::mem::take(&mut self.wanted) {
            let reference = self.send(client, &page.command()).await;
            self.resume
                .asked(&page.room, reference.map_err(Stop::Lost)?);
        }
        Ok(())
    }

    /// Reports a server event, with the kind a line client would have got it as, then what the
    /// line session tells the user about it; returns the commands the session asks to send (its
    /// [`Action::Send`]s and [`Action::SendQuietly`]s). What was shown before is not reported
    /// again, and a resumed room's events wait while its missed messages are paged in (see
    /// `resume.rs`).
    async fn show(&mut self, event: Event, reference: Option<Ref>) -> Result<Vec<Action>, Gone> {
        self.note_registration(&event, reference.as_ref());
        let actions = self.line.on_event(&event);
        let answers_command = reference.is_some();
        let restoring = reference.is_some() && self.restoring == reference;
        if restoring {
            self.restoring = None;
        }
        let kind = match &event {
            Event::Message(_) | Event::Dm { .. } if answers_command => SendKind::Echo,
            // Sent by the user, from another session or before a reconnection.
            Event::Dm { message, .. } if self.me.as_ref() == Some(&message.from.key()) => {
                SendKind::Copy
            }
            Event::Joined { .. } | Event::History { .. } | Event::DmHistory { .. } => {
                SendKind::Backlog
            }
            Event::Dm { replay: true, .. } => SendKind::Backlog,
            Event::Message(_) | Event::Dm { .. } | Event::Presence { .. } => SendKind::Push,
            _ => SendKind::Reply,
        };
        let shown = Shown {
            event,
            answers_command,
            kind,
        };
        let step = self
            .resume
            .on_event(shown, answers_command && !restoring, reference.as_ref());
        self.wanted.extend(step.page);
        for shown in step.shown {
            self.emit(Update::Server {
                event: shown.event,
                answers_command: shown.answers_command,
                kind: shown.kind,
            })
            .await?;
        }
        let mut sends = Vec::new();
        for action in actions {
            match action {
                send @ (Action::Send(_) | Action::SendQuietly(_)) => sends.push(send),
                shown => {
                    if let Some(notice) = notice(shown) {
                        self.emit(Update::Notice(notice)).await?;
                    }
                }
            }
        }
        Ok(sends)
    }
}

/// Whether an error that answers the login ends the attempt: the name or the credentials were
/// refused (errors of other kinds are shown, and the login is still awaited).
fn refuses_login(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NameTaken
            | ErrorCode::InvalidName
            | ErrorCode::AuthRequired
            | ErrorCode::AuthFailed
            | ErrorCode::RateLimited
    )
}

/// What the user is told of a line-session action that shows something.
fn notice(action: Action) -> Option<Notice> {
    match action {
        Action::Info(text) => Some(Notice::Info(text)),
        Action::Problem { text, .. } => Some(Notice::Problem(text)),
        // The session logs in with the name it was given: it never asks for one.
        Action::Prompt
        | Action::PasswordPrompt
        | Action::Send(_)
        | Action::SendQuietly(_)
        | Action::Quit => None,
    }
}

/// A failed connection attempt: retried, unless retrying cannot help.
fn connect_failure(url: &str, error: &ClientError) -> Outcome {
    match error {
        ClientError::WebSocket(tungstenite::Error::Url(why)) => {
            Outcome::Fatal(format!("cannot connect to {url}: {why}"))
        }
        ClientError::WebSocket(tungstenite::Error::Http(response))
            if response.status().as_u16() == 404 =>
        {
            Outcome::Fatal(format!(
                "no chat endpoint at {url} (HTTP 404); is the path right?"
            ))
        }
        error => Outcome::Retry {
            why: format!("cannot connect to {url}: {}", describe(error)),
            logged_in: false,
        },
    }
}

/// A client error, for a person.
fn describe(error: &ClientError) -> String {
    match error {
        ClientError::WebSocket(tungstenite::Error::Io(io)) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "the connection was reset".into(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
                "the server closed the connection".into()
            }
            _ => io.to_string(),
        },
        ClientError::WebSocket(tungstenite::Error::Http(response)) => {
            match response.status().as_u16() {
                503 => "the server is full or shutting down (HTTP 503)".into(),
                status => format!("the server refused the upgrade (HTTP {status})"),
            }
        }
        ClientError::WebSocket(
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
        ) => "the connection was closed".into(),
        ClientError::WebSocket(tungstenite::Error::Protocol(why)) => {
            format!("the connection broke ({why})")
        }
        other => other.to_string(),
    }
}

/// A close frame, for a person.
fn describe_close(code: Option<u16>, reason: &str) -> String {
    match (code, reason) {
        (Some(1001), _) => "the server is shutting down".into(),
        (None, _) => "the server closed the connection".into(),
        (Some(code), "") => format!("the server closed the connection (code {code})"),
        (Some(code), reason) => format!("the server closed the connection: {reason} (code {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_read_as_reasons_for_a_person() {
        assert_eq!(
            describe_close(Some(1001), "server shutting down"),
            "the server is shutting down"
        );
        assert_eq!(
            describe_close(Some(1008), "too slow: outbound queue full"),
            "the server closed the connection: too slow: outbound queue full (code 1008)"
        );
        assert_eq!(describe_close(None, ""), "the server closed the connection");
    }
}
