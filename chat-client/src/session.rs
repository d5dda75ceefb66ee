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
//! Server events are reported with the [`SendKind`](chat_core::SendKind) a line client would
//! have seen them with, so a terminal renders them in the line transport's style
//! (`[HH:MM:SS] #room <alice> text`) with [`chat_protocol::line::render::render`]; the client's
//! own updates render with [`Update::render`], in the same `* ` / `! ` style.

use std::time::Duration;

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
    /// The name to log in with.
    pub name: String,
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
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
        }
    }
}

/// The session is over: nothing typed reaches a server any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the chat session has ended")]
pub struct SessionEnded;

/// Feeds typed lines to a [`ClientSession`]; cheap to clone, usable from a blocking thread (a
/// line editor's) as well as from async code.
#[derive(Clone, Debug)]
pub struct Typist {
    lines: mpsc::Sender<String>,
}

impl Typist {
    /// Hands the session a typed line (without its line end).
    pub async fn line(&self, line: &str) -> Result<(), SessionEnded> {
        self.lines
            .send(line.to_owned())
            .await
            .map_err(|_| SessionEnded)
    }

    /// [`line`](Self::line) for a thread outside the runtime; blocks while the session is busy.
    ///
    /// # Panics
    ///
    /// If called from inside an async task (use [`line`](Self::line) there).
    pub fn line_blocking(&self, line: &str) -> Result<(), SessionEnded> {
        self.lines
            .blocking_send(line.to_owned())
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
