//! What a session tells its program: [`Update`]s, in the order things happened, among them the
//! client's own [`Notice`]s; and how they read as terminal lines, in the line transport's `* ` /
//! `! ` style (server events render with [`chat_protocol::line::render::render`]).

use std::time::Duration;

use chat_core::{ErrorCode, Event, SendKind};
use chat_protocol::line::render;

/// A line the client itself tells the user, not something the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Information, shown as `* text`.
    Info(String),
    /// A problem, shown as `! text`.
    Problem(String),
}

impl Notice {
    fn render(&self, out: &mut String) {
        match self {
            Notice::Info(text) => render::info(out, text),
            Notice::Problem(text) => render::error(out, text),
        }
    }
}

/// Something for the user to see, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A connection attempt begins (number 1 at start, counting up while retries fail).
    Connecting {
        /// The server's URL.
        url: String,
        /// The attempt's number since the last successful login.
        attempt: u32,
    },
    /// A server frame, or what the session made of several: after a reconnection, the `joined`
    /// of a room holds only the messages not shown before, and when the server cut them
    /// (`complete: Some(false)`) the session pages in the older ones first, so the `joined` it
    /// reports holds all of them, oldest first (`complete: Some(true)`, or `Some(false)` when the
    /// server could not say what is older), followed by the room's messages that came meanwhile.
    /// Messages and DMs already reported are not reported again.
    Server {
        /// The event.
        event: Event,
        /// It answers a command the session sent (a `joined` after `/join`, not the one at login).
        answers_command: bool,
        /// How a line client would have been sent it: [`SendKind::Echo`] is the user's own
        /// message coming back, [`SendKind::Backlog`] history, [`SendKind::Push`] someone else's
        /// doing, [`SendKind::Reply`] an answer.
        kind: SendKind,
    },
    /// The client's own information or complaint (help, usage, "not connected").
    Notice(Notice),
    /// The server refused the login. The session has ended; start another with another name,
    /// or with the name's password.
    Refused {
        /// `name_taken` or `invalid_name`; `auth_required` (the name is an account's: log in with
        /// its password or a token), `auth_failed` (wrong password or token) or `rate_limited`
        /// (too many failed logins: wait a minute). After a login that worked, `name_taken` and
        /// `rate_limited` are retried instead.
        code: ErrorCode,
        /// The server's sentence, for a person.
        message: String,
    },
    /// The connection was lost after login; a reconnection follows.
    Lost {
        /// Why, for a person.
        reason: String,
    },
    /// An attempt failed or the connection was lost; the next attempt starts after `delay`.
    Retrying {
        /// Why the last attempt failed, for a person; `None` right after [`Update::Lost`], which
        /// said why.
        why: Option<String>,
        /// The wait.
        delay: Duration,
        /// The number of the attempt that follows.
        attempt: u32,
    },
    /// The session is over (the user quit, or the server cannot be reached at that URL at all).
    Ended {
        /// Why, for a person.
        reason: String,
    },
}

impl Update {
    /// The update as terminal lines in the line transport's style (`* …` information, `! …`
    /// problems), each ending in `\n`; `None` for [`Update::Server`] (render those with the line
    /// transport's renderer) and for retries' repeated connection attempts.
    pub fn render(&self) -> Option<String> {
        let mut out = String::new();
        match self {
            Update::Connecting { url, attempt: 1 } => {
                render::info(&mut out, &format!("connecting to {url} …"));
            }
            Update::Connecting { .. } | Update::Server { .. } => return None,
            Update::Notice(notice) => notice.render(&mut out),
            Update::Refused { message, .. } => {
                render::error(&mut out, &format!("login refused: {message}"));
            }
            Update::Lost { reason } => {
                render::error(&mut out, &format!("connection lost: {reason}"));
            }
            Update::Retrying {
                why,
                delay,
                attempt,
            } => {
                let wait = seconds(*delay);
                let text = match why {
                    None => format!("reconnecting in {wait} …"),
                    Some(why) => format!("{why}; retrying in {wait} (attempt {attempt}) …"),
                };
                render::info(&mut out, &text);
            }
            Update::Ended { reason } => render::info(&mut out, reason),
        }
        Some(out)
    }

    /// Whether this is the session's last update.
    pub fn is_final(&self) -> bool {
        matches!(self, Update::Refused { .. } | Update::Ended { .. })
    }
}

/// A wait, for a person (`2.0 s`).
pub(crate) fn seconds(delay: Duration) -> String {
    format!("{:.1} s", delay.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_read_as_lines_for_a_person() {
        let lost = Update::Lost {
            reason: "the server is shutting down".into(),
        };
        assert_eq!(
            lost.render().unwrap(),
            "! connection lost: the server is shutting down\n"
        );
        let retry = Update::Retrying {
            why: Some("cannot connect to ws://x/chat: connection refused".into()),
            delay: Duration::from_millis(2000),
            attempt: 3,
        };
        assert_eq!(
            retry.render().unwrap(),
            "* cannot connect to ws://x/chat: connection refused; retrying in 2.0 s (attempt 3) …\n"
        );
        let refused = Update::Refused {
            code: ErrorCode::NameTaken,
            message: "the name alice is taken".into(),
        };
        assert_eq!(
            refused.render().unwrap(),
            "! login refused: the name alice is taken\n"
        );
        assert!(refused.is_final());
        let after_lost = Update::Retrying {
            why: None,
            delay: Duration::from_millis(500),
            attempt: 1,
        };
        assert_eq!(after_lost.render().unwrap(), "* reconnecting in 0.5 s …\n");
    }
}
