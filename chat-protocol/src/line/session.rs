//! The line session: one person's conversation in the line protocol, as a pure state machine.
//!
//! A [`LineSession`] is fed the lines the person types ([`on_line`](LineSession::on_line), or
//! [`on_input`](LineSession::on_input) for lines as [`LineSplitter`](super::LineSplitter) framed
//! them) and the events the server sends back ([`on_event`](LineSession::on_event)), and answers
//! each with the [`Action`]s its driver carries out in order: commands to send, lines to show,
//! the name prompt, quitting. It holds the state the rules need and nothing else: whether the
//! person is still choosing a name, and the one room they are in. The line TCP transport drives
//! one per `nc` client, the terminal client one per user, so the rules and their texts exist
//! once, here; sockets, refs, timers and reconnection stay with the drivers.
//!
//! Naming: a line is a name to log in with as a guest, or `/token TOKEN`. When the server
//! answers a name with `auth_required` (the name is an account's, or the server admits accounts
//! only), the session asks `Password:` instead of showing the error, and logs in with the next
//! line as the name's password; a failure shows its `! ` line and asks for the name again.
//! Once in, `/register PASSWORD` makes the name an account. Lines typed before a login is
//! answered (`printf 'alice\nhello\n' | nc …`) wait, and are then read as whatever comes
//! next: chat after a welcome, the password after `Password:`, a new name after a refusal.
//!
//! A line client is in one room at a time. `/join rust` validates the name with the core's
//! rules, then sends `join rust` and `leave` of the old room (in that order, so the user is never
//! in no room on the server between the two), and makes `#rust` current at once, so the
//! next line typed is said there. The `leave` of such a move goes without a `ref`
//! ([`Action::SendQuietly`]), so its `left` is not announced; the one `/leave` sends is
//! (`* You left #rust`, by [`render`](super::render::render)).

use chat_core::{ChatError, Command, ErrorCode, Event, RoomName, Secret, UserName};

use super::render;
use super::slash::{HELP, Slash, parse_line};
use super::split::Line;

/// The name prompt, on a line of its own.
pub const NAME_PROMPT: &str = "Enter your name:";
/// The password prompt, on a line of its own, after a name that needs one.
pub const PASSWORD_PROMPT: &str = "Password:";
/// The last line a session shows when the person quits (as information: `* Bye!`).
pub const BYE: &str = "Bye!";

const NO_ROOM: &str = "you are in no room; /join ROOM first";
const WHO_NO_ROOM: &str = "usage: /who ROOM (you are in no room)";
const LEAVE_NO_ROOM: &str = "usage: /leave ROOM (you are in no room)";
const NOT_UTF8: &str = "that line is not valid UTF-8; dropped";

/// One thing a [`LineSession`] asks its driver to do. A driver carries out the actions of one
/// call in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this command to the server with a fresh `ref`: what answers it is for the person,
    /// and is announced (`* You are now in #rust` for the `joined` of `/join`).
    Send(Command),
    /// Send this command to the server without a `ref`: what answers it is not news (the
    /// `leave` of the room a `/join` moves out of, whose `left` shows nothing).
    SendQuietly(Command),
    /// Show information, `* text`: one line per line of `text`.
    Info(String),
    /// Show a problem with what was typed, `! text` (one line per line of `text`), with the
    /// protocol's error code for it. A driver that shows it as an `error` event of its own, in
    /// order with the server's answers (the line transport does, through its outbox), feeds that
    /// event to [`LineSession::on_event`] like the server's errors: while naming, the name
    /// prompt follows it, as it follows a name the server refused.
    Problem {
        /// The protocol error code.
        code: ErrorCode,
        /// The sentence for the person.
        text: String,
    },
    /// Ask for the name: [`NAME_PROMPT`] on a line of its own.
    Prompt,
    /// Ask for the password of the name just tried: [`PASSWORD_PROMPT`] on a line of its own.
    PasswordPrompt,
    /// Leave, once the answers to the lines typed before have been shown; then say [`BYE`].
    Quit,
}

impl Action {
    /// The lines this action shows, each ending in `\n`; `None` for the actions that show
    /// nothing themselves (sending, quitting).
    pub fn render(&self) -> Option<String> {
        let mut out = String::new();
        match self {
            Action::Info(text) => render::info(&mut out, text),
            Action::Problem { text, .. } => render::error(&mut out, text),
            Action::Prompt => {
                out.push_str(NAME_PROMPT);
                out.push('\n');
            }
            Action::PasswordPrompt => {
                out.push_str(PASSWORD_PROMPT);
                out.push('\n');
            }
            Action::Send(_) | Action::SendQuietly(_) | Action::Quit => return None,
        }
        Some(out)
    }

    fn problem(code: ErrorCode, text: impl Into<String>) -> Action {
        Action::Problem {
            code,
            text: text.into(),
        }
    }

    fn refused(error: &ChatError) -> Action {
        Action::problem(error.code(), error.to_string())
    }
}

/// Where the person is in the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Every line is a name to try; `asked` is the name of the login out, if any.
    Naming { asked: Option<String> },
    /// The server wants the password of `name`: the next line is it.
    Password { name: String },
    /// Logged in (or logging in by other means): lines are said in `room`, if any.
    Chatting { room: Option<RoomName> },
}

/// One person's line session: naming, then chatting in one room at a time. See the module
/// documentation for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineSession {
    state: State,
    /// A login was sent, or a problem with a name shown, and its answer has not come back yet:
    /// lines typed meanwhile wait in `typed_ahead`.
    awaiting: bool,
    typed_ahead: Vec<String>,
    /// The name is an account's: its rooms are the account's, shared by all its sessions, so
    /// `/join` adds a room instead of moving.
    account: bool,
}

/// The most lines kept while a login is answered; more are dropped.
const MAX_TYPED_AHEAD: usize = 64;

impl Default for LineSession {
    fn default() -> Self {
        LineSession::new()
    }
}

impl LineSession {
    /// A session that starts by asking for a name (the line transport): lines are names to try
    /// until the server's `welcome`.
    pub fn new() -> Self {
        LineSession {
            state: State::Naming { asked: None },
            awaiting: false,
            typed_ahead: Vec::new(),
            account: false,
        }
    }

    /// A session for a client that logs in by itself with a name it was given (the terminal
    /// client): lines are chat from the start, in no room until the first `welcome`.
    pub fn chatting() -> Self {
        LineSession {
            state: State::Chatting { room: None },
            awaiting: false,
            typed_ahead: Vec::new(),
            account: false,
        }
    }

    /// Whether the person is still logging in (lines are names, or a password).
    pub fn is_naming(&self) -> bool {
        !matches!(self.state, State::Chatting { .. })
    }

    /// Whether the driver should show `event` at all: not the `auth_required` that answers a
    /// name, which [`on_event`](Self::on_event) turns into the password prompt.
    pub fn shows(&self, event: &Event) -> bool {
        !matches!(
            (&self.state, event),
            (
                State::Naming { asked: Some(_) },
                Event::Error {
                    code: ErrorCode::AuthRequired,
                    ..
                }
            )
        )
    }

    /// The room lines are said in, if any.
    pub fn room(&self) -> Option<&RoomName> {
        match &self.state {
            State::Chatting { room } => room.as_ref(),
            State::Naming { .. } | State::Password { .. } => None,
        }
    }

    /// What to do when the connection opens: [`Action::Prompt`] while naming.
    #[must_use]
    pub fn opening(&self) -> Vec<Action> {
        match self.state {
            State::Naming { .. } | State::Password { .. } => vec![Action::Prompt],
            State::Chatting { .. } => Vec::new(),
        }
    }

    /// A line as [`LineSplitter`](super::LineSplitter) framed it: one over the limit, or not
    /// UTF-8, is a problem (the line is dropped, the session goes on); any other is
    /// [`on_line`](Self::on_line).
    #[must_use]
    pub fn on_input(&mut self, line: &Line) -> Vec<Action> {
        match line {
            Line::TooLong { limit } => vec![Action::problem(
                ErrorCode::BadFrame,
                format!("line too long (the limit is {limit} bytes); dropped"),
            )],
            Line::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => self.on_line(text),
                Err(_) => vec![Action::problem(ErrorCode::BadFrame, NOT_UTF8)],
            },
        }
    }

    /// A line the person typed, without its line end.
    #[must_use]
    pub fn on_line(&mut self, line: &str) -> Vec<Action> {
        if self.awaiting {
            if self.typed_ahead.len() < MAX_TYPED_AHEAD {
                self.typed_ahead.push(line.to_owned());
            }
            return Vec::new();
        }
        let actions = match &self.state {
            State::Naming { .. } => self.on_name(line.trim()),
            State::Password { name } => {
                let name = name.clone();
                self.on_password(name, line)
            }
            State::Chatting { room } => {
                let room = room.clone();
                return self.on_chat(line, room);
            }
        };
        // Until the answer comes back (the server's, or the driver's echo of a problem), the
        // next lines wait.
        self.awaiting = actions
            .iter()
            .any(|action| matches!(action, Action::Send(_) | Action::Problem { .. }));
        actions
    }

    /// What [`on_line`](Self::on_line) would answer, without changing the session: for a driver
    /// that cannot send right now (the terminal client while it reconnects) and answers
    /// locally instead.
    #[must_use]
    pub fn preview(&self, line: &str) -> Vec<Action> {
        self.clone().on_line(line)
    }

    /// An event the driver showed the person, the server's or an `error` of its own: `welcome`
    /// ends naming (or, after a reconnection, takes the person back to their room), and an
    /// `error` while naming asks for the name again.
    #[must_use]
    pub fn on_event(&mut self, event: &Event) -> Vec<Action> {
        let mut actions = match event {
            Event::Welcome { rooms, account, .. } => {
                self.account = *account;
                self.welcomed(rooms)
            }
            // Left from another session of the account: no longer this session's room either.
            Event::Left { room } if self.account && self.room() == Some(room) => {
                self.state = State::Chatting { room: None };
                return Vec::new();
            }
            Event::Error { code, .. } if self.is_naming() => {
                let asked = match &mut self.state {
                    State::Naming { asked } => asked.take(),
                    _ => None,
                };
                match (code, asked) {
                    (ErrorCode::AuthRequired, Some(name)) => {
                        self.state = State::Password { name };
                        vec![Action::PasswordPrompt]
                    }
                    _ => {
                        self.state = State::Naming { asked: None };
                        vec![Action::Prompt]
                    }
                }
            }
            _ => return Vec::new(),
        };
        // The answer is in: the lines typed meanwhile are read now, until one waits again.
        self.awaiting = false;
        let mut typed_ahead = std::mem::take(&mut self.typed_ahead).into_iter();
        while !self.awaiting {
            let Some(line) = typed_ahead.next() else {
                break;
            };
            actions.extend(self.on_line(&line));
        }
        // What is left waits for the next answer, before anything typed since.
        let since = std::mem::replace(&mut self.typed_ahead, typed_ahead.collect());
        self.typed_ahead.extend(since);
        actions
    }

    fn on_name(&mut self, name: &str) -> Vec<Action> {
        match parse_line(name) {
            Slash::Quit => return vec![Action::Quit],
            Slash::Token(token) => {
                self.state = State::Naming { asked: None };
                return vec![Action::Send(Command::Login {
                    since: None,
                    name: None,
                    password: None,
                    token: Some(Secret::new(token)),
                })];
            }
            Slash::Usage(usage) => return vec![Action::problem(ErrorCode::BadFrame, usage)],
            _ => {}
        }
        match UserName::parse(name) {
            Ok(_) => {
                self.state = State::Naming {
                    asked: Some(name.to_owned()),
                };
                vec![Action::Send(Command::login(name))]
            }
            Err(error) => vec![Action::refused(&error)],
        }
    }

    /// The line after `Password:`: the password of `name` (an empty line goes back to the
    /// name prompt).
    fn on_password(&mut self, name: String, line: &str) -> Vec<Action> {
        self.state = State::Naming { asked: None };
        if line.is_empty() {
            return vec![Action::Prompt];
        }
        if line.trim() == "/quit" {
            return vec![Action::Quit];
        }
        vec![Action::Send(Command::Login {
            since: None,
            name: Some(name),
            password: Some(Secret::new(line)),
            token: None,
        })]
    }

    fn on_chat(&mut self, line: &str, current: Option<RoomName>) -> Vec<Action> {
        let send = |command| vec![Action::Send(command)];
        match parse_line(line) {
            Slash::Say(text) if text.trim().is_empty() => Vec::new(),
            Slash::Say(text) => match current {
                Some(room) => send(Command::Say {
                    room: room.to_string(),
                    text: text.to_owned(),
                }),
                None => vec![Action::problem(ErrorCode::NotInRoom, NO_ROOM)],
            },
            Slash::Join(name) => match RoomName::parse(name) {
                Ok(target) => self.move_to(target, current),
                Err(error) => vec![Action::refused(&error)],
            },
            Slash::Leave(asked) => {
                let room = match (asked, current) {
                    (Some(name), _) => match RoomName::parse(name) {
                        Ok(room) => room,
                        Err(error) => return vec![Action::refused(&error)],
                    },
                    (None, Some(current)) => current,
                    (None, None) => {
                        return vec![Action::problem(ErrorCode::NotInRoom, LEAVE_NO_ROOM)];
                    }
                };
                if self.room() == Some(&room) {
                    self.state = State::Chatting { room: None };
                }
                send(Command::Leave {
                    room: room.to_string(),
                })
            }
            Slash::Rooms => send(Command::Rooms),
            Slash::Who(asked) => {
                match asked.map(str::to_owned).or(current.map(|r| r.to_string())) {
                    Some(room) => send(Command::Who { room }),
                    None => vec![Action::problem(ErrorCode::NotInRoom, WHO_NO_ROOM)],
                }
            }
            Slash::Dm { to, text } => send(Command::Dm {
                to: to.to_owned(),
                text: text.to_owned(),
            }),
            Slash::History(limit) => match current {
                Some(room) => send(Command::room_history(room.as_str(), None, limit)),
                None => vec![Action::problem(ErrorCode::NotInRoom, NO_ROOM)],
            },
            Slash::Register(password) => send(Command::Register {
                password: Secret::new(password),
            }),
            Slash::Token(_) => vec![Action::problem(
                ErrorCode::AlreadyLoggedIn,
                "you are logged in already; /token works at the name prompt",
            )],
            Slash::Help => vec![Action::Info(HELP.join("\n"))],
            Slash::Quit => vec![Action::Quit],
            Slash::Unknown(command) => vec![Action::problem(
                ErrorCode::UnknownType,
                format!("unknown command /{command} (try /help)"),
            )],
            Slash::Usage(usage) => vec![Action::problem(ErrorCode::BadFrame, usage)],
        }
    }

    /// `/join target`: join it, then leave the room the person was in, and make it current.
    fn move_to(&mut self, target: RoomName, current: Option<RoomName>) -> Vec<Action> {
        let mut actions = vec![Action::Send(Command::join(target.as_str()))];
        // A guest is in one room at a time; an account keeps its rooms (they are shared by its
        // sessions), and the new one becomes this session's room.
        if let Some(old) = current.filter(|old| *old != target && !self.account) {
            actions.push(leave_quietly(&old));
        }
        self.state = State::Chatting { room: Some(target) };
        actions
    }

    fn welcomed(&mut self, rooms: &[RoomName]) -> Vec<Action> {
        match self.room().cloned() {
            // A first login: the first room of the welcome is the person's room.
            None => {
                self.state = State::Chatting {
                    room: rooms.first().cloned(),
                };
                Vec::new()
            }
            Some(room) if rooms.contains(&room) => Vec::new(),
            // A login after a reconnection: back to the person's room, and (for a guest) out of
            // the others. An account's other rooms are its other sessions' too.
            Some(room) => {
                let mut actions = vec![Action::Send(Command::join(room.as_str()))];
                if !self.account {
                    actions.extend(rooms.iter().map(leave_quietly));
                }
                actions
            }
        }
    }
}

/// Leaves `room` as part of a move: its `left` is not news.
fn leave_quietly(room: &RoomName) -> Action {
    Action::SendQuietly(Command::Leave {
        room: room.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chat_core::UserName;
    use proptest::prelude::*;

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn welcome(rooms: &[&str]) -> Event {
        Event::Welcome {
            name: UserName::parse("alice").unwrap(),
            rooms: rooms.iter().map(|r| room(r)).collect(),
            account: false,
        }
    }

    /// A session past its name, in `#general`.
    fn in_general() -> LineSession {
        let mut session = LineSession::new();
        let _ = session.on_line("alice");
        assert!(session.on_event(&welcome(&["general"])).is_empty());
        session
    }

    /// The commands of `actions`, the quiet ones included.
    fn sends(actions: &[Action]) -> Vec<Command> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Send(command) | Action::SendQuietly(command) => Some(command.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the person sees of `actions`.
    fn shown(actions: &[Action]) -> String {
        actions.iter().filter_map(Action::render).collect()
    }

    /// The `error` event a driver answers a problem with.
    fn as_event(action: &Action) -> Event {
        let Action::Problem { code, text } = action else {
            panic!("not a problem: {action:?}")
        };
        Event::Error {
            code: *code,
            message: text.clone(),
        }
    }

    fn join(name: &str) -> Command {
        Command::join(name)
    }

    fn leave(name: &str) -> Command {
        Command::Leave { room: name.into() }
    }

    fn left(name: &str) -> Event {
        Event::Left { room: room(name) }
    }

    fn render_event(event: &Event, answers_command: bool) -> String {
        render::render(event, answers_command, chat_core::SendKind::Reply).unwrap_or_default()
    }

    #[test]
    fn it_asks_for_a_name_and_logs_in_with_it() {
        let mut session = LineSession::new();
        assert_eq!(shown(&session.opening()), "Enter your name:\n");
        assert_eq!(
            session.on_line("  alice  "),
            [Action::Send(Command::login("alice"))],
            "the name is trimmed"
        );
        assert!(session.is_naming(), "until the welcome");
        assert!(session.on_event(&welcome(&["general"])).is_empty());
        assert!(!session.is_naming());
        assert_eq!(session.room(), Some(&room("general")));
        assert!(session.opening().is_empty());
    }

    #[test]
    fn a_rejected_name_is_said_then_the_prompt_again() {
        let mut session = LineSession::new();
        let refused = session.on_line("not a name!");
        assert_eq!(
            refused,
            [Action::Problem {
                code: ErrorCode::InvalidName,
                text: "invalid name: a name uses only the letters A-Z and a-z, digits, '_', '-' and '.'"
                    .into()
            }]
        );
        assert_eq!(session.on_event(&as_event(&refused[0])), [Action::Prompt]);
        // The server's refusal of a valid name is shown by the driver; the prompt follows.
        let taken = Event::Error {
            code: ErrorCode::NameTaken,
            message: "the name ALICE is taken".into(),
        };
        assert_eq!(session.on_event(&taken), [Action::Prompt]);
        assert!(session.is_naming());
    }

    #[test]
    fn an_empty_name_gets_a_reason_then_the_prompt() {
        let mut session = LineSession::new();
        let refused = session.on_line("   ");
        assert_eq!(
            shown(&refused),
            "! invalid name: a name needs at least one character\n"
        );
        let mut after = refused.clone();
        after.extend(session.on_event(&as_event(&refused[0])));
        assert_eq!(
            shown(&after),
            "! invalid name: a name needs at least one character\nEnter your name:\n"
        );
    }

    #[test]
    fn a_name_that_needs_a_password_gets_the_password_prompt() {
        let mut session = LineSession::new();
        assert_eq!(
            session.on_line("alice"),
            [Action::Send(Command::login("alice"))]
        );
        let required = Event::Error {
            code: ErrorCode::AuthRequired,
            message: "alice is registered: log in with its password or a token".into(),
        };
        assert!(!session.shows(&required), "the prompt replaces the error");
        let actions = session.on_event(&required);
        assert_eq!(shown(&actions), "Password:\n");
        assert!(session.is_naming());
        assert_eq!(
            session.on_line("correct horse "),
            [Action::Send(Command::Login {
                since: None,
                name: Some("alice".into()),
                password: Some(Secret::new("correct horse ")),
                token: None,
            })],
            "the password is the line as typed"
        );
        // A wrong password is shown, then the name is asked again.
        let failed = Event::Error {
            code: ErrorCode::AuthFailed,
            message: "login failed: wrong name, password or token".into(),
        };
        assert!(session.shows(&failed));
        assert_eq!(session.on_event(&failed), [Action::Prompt]);
        assert_eq!(
            session.on_line("bob"),
            [Action::Send(Command::login("bob"))]
        );
    }

    #[test]
    fn lines_typed_before_the_login_is_answered_are_read_as_what_comes_next() {
        // After a welcome: chat.
        let mut session = LineSession::new();
        assert_eq!(
            session.on_line("alice"),
            [Action::Send(Command::login("alice"))]
        );
        assert!(session.on_line("hello").is_empty(), "waits for the answer");
        assert_eq!(
            sends(&session.on_event(&welcome(&["general"]))),
            [Command::Say {
                room: "general".into(),
                text: "hello".into()
            }]
        );

        // After Password: the password.
        let mut session = LineSession::new();
        let _ = session.on_line("alice");
        assert!(session.on_line("correct horse").is_empty());
        let actions = session.on_event(&Event::Error {
            code: ErrorCode::AuthRequired,
            message: "needs a password".into(),
        });
        assert_eq!(shown(&actions), "Password:\n");
        assert_eq!(
            sends(&actions),
            [Command::Login {
                since: None,
                name: Some("alice".into()),
                password: Some(Secret::new("correct horse")),
                token: None,
            }]
        );

        // After a refused name, its problem echoed back: the next name.
        let mut session = LineSession::new();
        let refused = session.on_line("not a name!");
        assert!(session.on_line("bob").is_empty());
        let actions = session.on_event(&as_event(&refused[0]));
        assert_eq!(actions[0], Action::Prompt);
        assert_eq!(sends(&actions), [Command::login("bob")]);
    }

    #[test]
    fn an_accounts_join_adds_a_room_and_a_leave_elsewhere_clears_the_current_one() {
        let mut session = LineSession::new();
        let _ = session.on_line("alice");
        let welcome = Event::Welcome {
            name: UserName::parse("alice").unwrap(),
            rooms: vec![room("general")],
            account: true,
        };
        let _ = session.on_event(&welcome);
        assert_eq!(
            sends(&session.on_line("/join rust")),
            [join("rust")],
            "an account keeps #general: its other sessions are in it too"
        );
        assert_eq!(session.room(), Some(&room("rust")));
        // Another session of the account left #rust: this one has no current room any more.
        assert!(session.on_event(&left("rust")).is_empty());
        assert_eq!(session.room(), None);
    }

    #[test]
    fn an_empty_password_line_goes_back_to_the_name_prompt() {
        let mut session = LineSession::new();
        let _ = session.on_line("alice");
        let _ = session.on_event(&Event::Error {
            code: ErrorCode::AuthRequired,
            message: "needs a password".into(),
        });
        assert_eq!(session.on_line(""), [Action::Prompt]);
        assert_eq!(
            session.on_line("carol"),
            [Action::Send(Command::login("carol"))]
        );
    }

    #[test]
    fn a_token_logs_in_at_the_name_prompt_and_register_needs_a_login() {
        let mut session = LineSession::new();
        assert_eq!(
            session.on_line("/token a.b.c"),
            [Action::Send(Command::Login {
                since: None,
                name: None,
                password: None,
                token: Some(Secret::new("a.b.c")),
            })]
        );
        let _ = session.on_event(&welcome(&["general"]));
        assert_eq!(
            sends(&session.on_line("/register correct horse")),
            [Command::Register {
                password: Secret::new("correct horse")
            }]
        );
        assert_eq!(
            render_event(
                &Event::Registered {
                    name: UserName::parse("alice").unwrap()
                },
                true
            ),
            "* alice is now registered\n"
        );
    }

    #[test]
    fn quit_while_naming_and_while_chatting() {
        assert_eq!(LineSession::new().on_line("/quit"), [Action::Quit]);
        assert_eq!(in_general().on_line("/quit"), [Action::Quit]);
        assert_eq!(in_general().on_line("/exit"), [Action::Quit]);
    }

    #[test]
    fn lines_are_said_in_the_current_room() {
        let mut session = in_general();
        assert_eq!(
            sends(&session.on_line("hi all")),
            [Command::Say {
                room: "general".into(),
                text: "hi all".into()
            }]
        );
        assert_eq!(
            sends(&session.on_line("//shrug")),
            [Command::Say {
                room: "general".into(),
                text: "/shrug".into()
            }]
        );
        assert!(
            session.on_line("   ").is_empty(),
            "a blank line says nothing"
        );
    }

    #[test]
    fn join_moves_to_one_room_at_a_time() {
        let mut session = in_general();
        let moved = session.on_line("/join Rust");
        assert_eq!(
            moved,
            [
                Action::Send(join("rust")),
                Action::SendQuietly(leave("general"))
            ],
            "join first; the left of a move is not news"
        );
        assert_eq!(session.room(), Some(&room("rust")), "current at once");
        assert!(session.on_event(&left("general")).is_empty());
        assert_eq!(session.room(), Some(&room("rust")));
        assert_eq!(
            sends(&session.on_line("/join rust")),
            [join("rust")],
            "joining the room one is in leaves nothing"
        );
        let bad = session.on_line("/join #bad");
        assert!(matches!(
            bad.as_slice(),
            [Action::Problem {
                code: ErrorCode::InvalidRoom,
                ..
            }]
        ));
        assert!(shown(&bad).starts_with("! invalid room name"));
        assert_eq!(
            session.room(),
            Some(&room("rust")),
            "a bad name moves nobody"
        );
    }

    #[test]
    fn quick_moves_keep_the_last_room() {
        let mut session = in_general();
        let _ = session.on_line("/join rust");
        let _ = session.on_line("/join general");
        // The lefts of both moves come back after the second was typed.
        assert!(session.on_event(&left("general")).is_empty());
        assert!(session.on_event(&left("rust")).is_empty());
        assert_eq!(session.room(), Some(&room("general")));
    }

    #[test]
    fn leave_defaults_to_the_current_room_and_is_announced() {
        let mut session = in_general();
        assert_eq!(session.on_line("/leave"), [Action::Send(leave("general"))]);
        assert_eq!(session.room(), None, "no room at once");
        assert_eq!(
            render_event(&left("general"), true),
            "* You left #general\n"
        );
        assert_eq!(
            render_event(&left("general"), false),
            "",
            "unless sent quietly"
        );
        assert_eq!(
            shown(&session.on_line("hello?")),
            "! you are in no room; /join ROOM first\n"
        );
        assert_eq!(
            shown(&session.on_line("/history")),
            "! you are in no room; /join ROOM first\n"
        );
        assert_eq!(
            shown(&session.on_line("/leave")),
            "! usage: /leave ROOM (you are in no room)\n"
        );
        let _ = session.on_line("/join rust");
        assert_eq!(sends(&session.on_line("/leave Go")), [leave("go")]);
        assert_eq!(session.room(), Some(&room("rust")), "another room stays");
        assert_eq!(
            shown(&session.on_line("/leave a b")),
            "! usage: /leave [ROOM]\n"
        );
        assert!(shown(&session.on_line("/leave #x")).starts_with("! invalid room name"));
    }

    #[test]
    fn who_asks_about_the_current_room_by_default() {
        let mut session = in_general();
        assert_eq!(
            sends(&session.on_line("/who")),
            [Command::Who {
                room: "general".into()
            }]
        );
        assert_eq!(
            sends(&session.on_line("/who go")),
            [Command::Who { room: "go".into() }]
        );
        let mut roomless = LineSession::chatting();
        assert_eq!(
            shown(&roomless.on_line("/who")),
            "! usage: /who ROOM (you are in no room)\n"
        );
    }

    #[test]
    fn the_other_commands() {
        let mut session = in_general();
        assert_eq!(sends(&session.on_line("/rooms")), [Command::Rooms]);
        assert_eq!(
            sends(&session.on_line("/msg bob see you")),
            [Command::Dm {
                to: "bob".into(),
                text: "see you".into()
            }]
        );
        assert_eq!(
            sends(&session.on_line("/history 20")),
            [Command::room_history("general", None, Some(20))]
        );
        let help = shown(&session.on_line("/help"));
        assert_eq!(help.lines().count(), HELP.len());
        assert!(help.starts_with("* /join ROOM"), "{help}");
        assert!(help.lines().all(|l| l.starts_with("* ")));
    }

    #[test]
    fn unknown_commands_and_usage() {
        let mut session = in_general();
        assert_eq!(
            session.on_line("/frobnicate now"),
            [Action::Problem {
                code: ErrorCode::UnknownType,
                text: "unknown command /frobnicate (try /help)".into()
            }]
        );
        assert_eq!(
            shown(&session.on_line("/dm bob")),
            "! usage: /dm USER TEXT\n"
        );
        assert_eq!(session.room(), Some(&room("general")));
    }

    #[test]
    fn lines_too_long_or_not_utf8_are_problems_and_the_session_goes_on() {
        let mut session = LineSession::new();
        assert_eq!(
            shown(&session.on_input(&Line::TooLong { limit: 100 })),
            "! line too long (the limit is 100 bytes); dropped\n"
        );
        assert_eq!(
            shown(&session.on_input(&Line::Text(Bytes::from_static(b"caf\xe9")))),
            "! that line is not valid UTF-8; dropped\n"
        );
        assert_eq!(
            sends(&session.on_input(&Line::Text(Bytes::from_static(b"bob")))),
            [Command::login("bob")]
        );
    }

    #[test]
    fn a_chatting_session_takes_its_room_from_the_first_welcome_and_goes_back_to_it() {
        let mut session = LineSession::chatting();
        assert!(!session.is_naming());
        assert_eq!(
            shown(&session.on_line("hello")),
            "! you are in no room; /join ROOM first\n"
        );
        assert!(session.on_event(&welcome(&["general"])).is_empty());
        assert_eq!(session.room(), Some(&room("general")));
        let _ = session.on_line("/join rust");
        // The connection was lost; the next login puts the user in the default room again.
        let back = session.on_event(&welcome(&["general"]));
        assert_eq!(
            back,
            [
                Action::Send(join("rust")),
                Action::SendQuietly(leave("general"))
            ]
        );
        assert_eq!(session.room(), Some(&room("rust")));
        assert!(
            session.on_event(&welcome(&["general", "rust"])).is_empty(),
            "already there"
        );
    }

    #[test]
    fn preview_changes_nothing() {
        let session = in_general();
        assert_eq!(
            sends(&session.preview("/join rust")),
            [join("rust"), leave("general")]
        );
        assert_eq!(session.room(), Some(&room("general")));
    }

    fn event() -> impl Strategy<Value = Event> {
        let name = prop_oneof![Just("general"), Just("rust"), Just("go")];
        prop_oneof![
            proptest::collection::vec(name.clone(), 0..3).prop_map(|rooms| welcome(&rooms)),
            name.prop_map(left),
            Just(Event::Error {
                code: ErrorCode::NameTaken,
                message: "taken".into()
            }),
            Just(Event::Pong),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_lines_and_events_never_panic(
            steps in proptest::collection::vec(
                prop_oneof![
                    "\\PC{0,40}".prop_map(Ok),
                    "/(join|leave|who|dm|msg|history|quit|help|rooms|x) ?\\PC{0,20}".prop_map(Ok),
                    event().prop_map(Err),
                ],
                0..40,
            ),
            naming in any::<bool>(),
        ) {
            let mut session = if naming { LineSession::new() } else { LineSession::chatting() };
            for step in steps {
                let actions = match step {
                    Ok(line) => session.on_line(&line),
                    Err(event) => session.on_event(&event),
                };
                for action in &actions {
                    if let Some(text) = action.render() {
                        prop_assert!(text.ends_with('\n'));
                        prop_assert!(text.lines().all(|l| l.starts_with("* ") || l.starts_with("! ") || l == NAME_PROMPT));
                    }
                }
            }
        }
    }
}
