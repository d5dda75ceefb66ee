//! [`ClientSession`]: the terminal client's library layer, a session that stays connected,
//! speaking the line protocol to its user.
//!
//! [`ClientSession`] runs one user's connection in a task (`driver.rs`): it connects, logs in,
//! feeds typed lines to a [`LineSession`](chat_protocol::line::LineSession), the line protocol's
//! state machine that the line TCP transport uses too, so the slash commands (`/join`, `/leave`,
//! `/dm`, `/who`, `/rooms`, `/history`, `/quit`), their one-room-at-a-time meaning and their texts
//! are the same as over `nc`. It reports everything as [`Update`]s. When the connection is lost
//! (the server restarts, the network breaks) it says so and reconnects with exponential
//! [`Backoff`], logs in again under the same name and goes back to the room the user was in,
//! without repeating the history lines already shown. A refused name ends the session with
//! [`Update::Refused`], so the program can ask for another.
//!
//! Nothing said while the connection was down is lost: every login after the first sends
//! `since`, the newest message id the session showed (room messages and DMs alike), and the
//! server answers with what came after it: each room's missed messages in its `joined`, and an
//! account's missed DMs as replayed `dm` frames. When more were missed than the server sends at
//! once, the session pages back with `history` and reports the room's `joined` once all of it is
//! in, its history every missed message, oldest first. A message or DM already shown is never
//! reported again.
//!
//! Accounts: a [`SessionConfig`] may carry the name's password, or a signed token instead of the
//! name, and every login of the session sends it, reconnections included. A guest who registers
//! (`/register PASSWORD`, or [`Typist::register`] with a password the program asked for without
//! echo) logs in with that password from then on. Credentials are held in memory only, for the
//! session's lifetime: nothing here writes them anywhere. A login the server refuses for its
//! credentials (`auth_required`, `auth_failed`, `rate_limited`) ends the session with
//! [`Update::Refused`], like a refused name, so the program can ask for a password and start again.
//!
//! Server events are reported with the [`SendKind`](chat_core::SendKind) a line client would
//! have seen them with, so a terminal renders them in the line transport's style
//! (`[HH:MM:SS] #room <alice> text`) with [`chat_protocol::line::render::render`]; the client's
//! own updates render with [`Update::render`], in the same `* ` / `! ` style.

use std::time::Duration;

use chat_core::Secret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::driver::Driver;
use crate::update::Update;

/// A [`ClientSession`]'s settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The server, e.g. `ws://127.0.0.1:8765/chat`.
    pub url: String,
    /// The name to log in with (not sent when [`token`](Self::token) is set: the token names
    /// the user).
    pub name: String,
    /// The name's password, for an account: sent with the name at every login, reconnections
    /// included. Held in memory only. `None` logs in as a guest (or fails with `auth_required`
    /// if the name is an account's).
    pub password: Option<Secret>,
    /// A signed token (a JWT for the bundled server) to log in with instead of a name and
    /// password, at every login. Held in memory only.
    pub token: Option<Secret>,
    /// The waits between reconnection attempts.
    pub backoff: Backoff,
    /// How long connecting and logging in may take before the attempt counts as failed (10 s).
    pub connect_timeout: Duration,
    /// After this long without a frame from the server the session pings it, and after twice
    /// this long it treats the connection as lost (30 s).
    pub keepalive: Duration,
}

impl SessionConfig {
    /// The defaults, for `name` at `url`.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        SessionConfig {
            url: url.into(),
            name: name.into(),
            password: None,
            token: None,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
        }
    }

    /// These settings, logging in with `name` and its `password`.
    #[must_use]
    pub fn with_password(self, password: Secret) -> Self {
        SessionConfig {
            password: Some(password),
            ..self
        }
    }

    /// These settings, logging in with a signed `token` instead of the name.
    #[must_use]
    pub fn with_token(self, token: Secret) -> Self {
        SessionConfig {
            token: Some(token),
            ..self
        }
    }
}

/// What the program hands the session: a typed line, or a password to register the name with.
#[derive(Debug)]
pub(crate) enum Typed {
    Line(String),
    Register(Secret),
}

/// The session is over: nothing typed reaches a server any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the chat session has ended")]
pub struct SessionEnded;

/// Feeds typed lines to a [`ClientSession`]; cheap to clone, usable from a blocking thread (a
/// line editor's) as well as from async code.
#[derive(Clone, Debug)]
pub struct Typist {
    lines: mpsc::Sender<Typed>,
}

impl Typist {
    /// Hands the session a typed line (without its line end).
    pub async fn line(&self, line: &str) -> Result<(), SessionEnded> {
        self.lines
            .send(Typed::Line(line.to_owned()))
            .await
            .map_err(|_| SessionEnded)
    }

    /// Registers the name the session is logged in with (as a guest) with `password`, exactly
    /// as given (`/register PASSWORD` typed as a line trims the spaces around it, and shows it on
    /// the screen: a program asks for the password without echo and hands it over here). Once
    /// the server says `registered`, the session logs in with this password after a
    /// reconnection.
    pub async fn register(&self, password: Secret) -> Result<(), SessionEnded> {
        self.lines
            .send(Typed::Register(password))
            .await
            .map_err(|_| SessionEnded)
    }

    /// [`register`](Self::register) for a thread outside the runtime.
    ///
    /// # Panics
    ///
    /// If called from inside an async task.
    pub fn register_blocking(&self, password: Secret) -> Result<(), SessionEnded> {
        self.lines
            .blocking_send(Typed::Register(password))
            .map_err(|_| SessionEnded)
    }

    /// [`line`](Self::line) for a thread outside the runtime; blocks while the session is busy.
    ///
    /// # Panics
    ///
    /// If called from inside an async task (use [`line`](Self::line) there).
    pub fn line_blocking(&self, line: &str) -> Result<(), SessionEnded> {
        self.lines
            .blocking_send(Typed::Line(line.to_owned()))
            .map_err(|_| SessionEnded)
    }
}

/// One user's chat session: connects, logs in, sends what is typed, reconnects when the
/// connection is lost. Dropping it ends the session.
#[derive(Debug)]
pub struct ClientSession {
    updates: mpsc::Receiver<Update>,
    typist: Typist,
    task: JoinHandle<()>,
}

/// Typed lines waiting for the session; a person types far fewer.
const TYPED: usize = 64;
/// Updates waiting for the program to show them. When the program falls behind, the session stops
/// reading the socket, and a server that keeps sending eventually drops it as too slow.
const PENDING_UPDATES: usize = 1024;

impl ClientSession {
    /// Starts the session on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(config: SessionConfig) -> ClientSession {
        let (line_tx, line_rx) = mpsc::channel(TYPED);
        let (update_tx, update_rx) = mpsc::channel(PENDING_UPDATES);
        let driver = Driver::new(config, update_tx, line_rx);
        ClientSession {
            updates: update_rx,
            typist: Typist { lines: line_tx },
            task: tokio::spawn(driver.run()),
        }
    }

    /// The next update; `None` once the session is over and every update was taken.
    pub async fn next(&mut self) -> Option<Update> {
        self.updates.recv().await
    }

    /// A handle to type lines with.
    pub fn typist(&self) -> Typist {
        self.typist.clone()
    }

    /// Types one line (without its line end), as [`Typist::line`].
    pub async fn type_line(&self, line: &str) -> Result<(), SessionEnded> {
        self.typist.line(line).await
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}
