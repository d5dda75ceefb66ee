//! An interactive terminal client for the chat server, over WebSocket.
//!
//! ```sh
//! cargo run --example chat_client -- --name alice            # ws://127.0.0.1:8765/chat
//! cargo run --example chat_client -- --url ws://127.0.0.1:8765/chat
//! cargo run --example chat_client -- --name alice --password-prompt
//! cargo run --example chat_client -- --token-file ~/.chat-token
//! ```
//!
//! It speaks the line transport's language: a line is said in your room, and `/join ROOM`,
//! `/leave [ROOM]`, `/dm USER TEXT` (or `/msg`), `/who [ROOM]`, `/rooms`, `/history [N]`, `/help`
//! and `/quit` do what they do over `nc`, and the output looks the same
//! (`[HH:MM:SS] #room <alice> text`).
//! Incoming messages are printed above the line being typed (reedline's external printer), so
//! they never garble it. When the connection is lost the client says so and reconnects with
//! back-off, logs in again and goes back to its room, then prints what was said while it was
//! away: each missed message and DM once, in order (the login says `since`, the last id shown;
//! a room that missed more than the server sends at once is paged in first). A refused name asks
//! for another. Ctrl-C or Ctrl-D leave like `/quit`. Without a terminal (input from a pipe) it
//! reads plain lines.
//!
//! Accounts: when the server answers a name with `auth_required` (the name is registered, or
//! the server admits accounts only), the client asks `Password: ` without echo and logs in with
//! the name and that password; `--password-prompt` asks before the first login. `--token-file
//! FILE` logs in with the signed token in FILE instead. `/register` alone asks twice for a new
//! password, without echo, and makes the name an account (`/register PASSWORD` works too, but
//! shows the password on the screen). Passwords and tokens are held in memory only, for the
//! reconnections of the session; nothing is written anywhere. From a pipe, a password is the
//! next line.
//!
//! The session logic lives in the library (`chat_engine::client`, the `chat-client` crate,
//! tested there); this program is the terminal around it.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use chat_engine::client::{ClientSession, SessionConfig, Typist, Update};
use chat_engine::core::{Command, ErrorCode, Event, Secret};
use chat_engine::protocol::line::render::{self, render};
use chat_engine::protocol::line::{Action, HELP, LineSession, NAME_PROMPT, Slash, parse_line};
use clap::Parser;
use reedline::{ExternalPrinter, Prompt, PromptEditMode, PromptHistorySearch, Reedline, Signal};

/// A terminal chat client: the line transport's slash commands, over WebSocket.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8765/chat")]
    url: String,
    /// The name to log in with (asked for when not given).
    #[arg(long)]
    name: Option<String>,
    /// Ask for the name's password (without echo) before the first login, for a registered
    /// name. Without it the password is asked for when the server says the name needs one.
    #[arg(long, conflicts_with = "token_file")]
    password_prompt: bool,
    /// Log in with the signed token (JWT) in FILE instead of a name; one trailing newline is
    /// ignored.
    #[arg(long, value_name = "FILE", conflicts_with = "name")]
    token_file: Option<PathBuf>,
}

/// Where the session stands, as the printing thread tells the input loop.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    LoggedIn,
    Refused(ErrorCode),
    Ended,
}

/// A prompt that is only its indicator (`> `, or `Enter your name: `).
struct Plain<'a>(&'a str);

impl Prompt for Plain<'_> {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed(self.0)
    }
    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("… ")
    }
    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!("(search: {}) ", search.term))
    }
}

/// Reads what the user types: a line editor on a terminal, plain lines from a pipe.
enum Input {
    Terminal(Box<Reedline>),
    Piped(std::io::Lines<std::io::StdinLock<'static>>),
}

/// What reading a line gave.
enum Typed {
    Line(String),
    /// Ctrl-C, Ctrl-D or the end of the input.
    Leave,
}

impl Input {
    fn read(&mut self, prompt: &str) -> Typed {
        match self {
            Input::Terminal(editor) => match editor.read_line(&Plain(prompt)) {
                Ok(Signal::Success(line)) => Typed::Line(line),
                Ok(_) => Typed::Leave,
                Err(error) => {
                    eprintln!("chat_client: reading the terminal failed: {error}");
                    Typed::Leave
                }
            },
            Input::Piped(lines) => match lines.next() {
                Some(Ok(line)) => Typed::Line(line),
                _ => Typed::Leave,
            },
        }
    }

    /// Reads a password: without echo on a terminal (`prompt` goes to the terminal), the next
    /// line from a pipe. `Leave` on Ctrl-C, Ctrl-D or the end of the input.
    fn password(&mut self, prompt: &str) -> Typed {
        match self {
            Input::Terminal(_) => {
                READING_PASSWORD.store(true, Ordering::SeqCst);
                let read = rpassword::prompt_password(prompt);
                READING_PASSWORD.store(false, Ordering::SeqCst);
                match read {
                    Ok(password) => Typed::Line(password),
                    Err(_) => Typed::Leave,
                }
            }
            Input::Piped(_) => self.read(prompt),
        }
    }
}

/// Whether a password is being read. rpassword turns off the terminal's echo and its Ctrl-C
/// signal, reads Ctrl-C as a key and raises SIGINT itself before it turns echo back on; the
/// default SIGINT would end the program with the terminal still silent. So the program takes
/// SIGINT ([`leave_on_ctrl_c`]) and lets rpassword finish while this is set.
static READING_PASSWORD: AtomicBool = AtomicBool::new(false);

/// Ctrl-C (SIGINT) ends the program as before, except during a password prompt, which ends by
/// itself (its terminal settings restored) and then leaves like Ctrl-D.
fn leave_on_ctrl_c(runtime: &tokio::runtime::Runtime) {
    runtime.spawn(async {
        while tokio::signal::ctrl_c().await.is_ok() {
            if !READING_PASSWORD.load(Ordering::SeqCst) {
                std::process::exit(130);
            }
        }
    });
}

/// Where output goes: above the line being edited, or plainly to standard output.
#[derive(Clone)]
enum Output {
    AboveInput(ExternalPrinter<String>),
    Plain,
}

impl Output {
    fn show(&self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text).to_owned();
        if let Output::AboveInput(printer) = self {
            // Blocks while the editor has a backlog to print: this thread does nothing else.
            if printer.print(text.clone()).is_ok() {
                return;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// The lines an update shows: server events in the line transport's style, the client's own
/// news in the same `* ` / `! ` style. A refusal that the client answers with the password
/// prompt (`asks_password`) reads as the reason for the prompt.
fn lines_for(update: &Update, asks_password: bool) -> Option<String> {
    match update {
        Update::Refused {
            code: ErrorCode::AuthRequired,
            ..
        } if asks_password => {
            let mut out = String::new();
            render::info(
                &mut out,
                "this name is registered: enter its password (or nothing, to choose another name)",
            );
            Some(out)
        }
        Update::Server {
            event,
            answers_command,
            kind,
        } => render(event, *answers_command, *kind),
        other => other.render(),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat_client: cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (mut input, output) = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let printer = ExternalPrinter::<String>::new(1024);
        let output = Output::AboveInput(printer.clone());
        let editor = Reedline::create().with_external_printer(printer);
        (Input::Terminal(Box::new(editor)), output)
    } else {
        (Input::Piped(std::io::stdin().lines()), Output::Plain)
    };
    leave_on_ctrl_c(&runtime);
    let token = match options.token_file.as_deref().map(read_token).transpose() {
        Ok(token) => token,
        Err(why) => {
            eprintln!("chat_client: {why}");
            return ExitCode::FAILURE;
        }
    };
    let mut given = options.name;
    let mut ask_password = options.password_prompt;
    let name_prompt = format!("{NAME_PROMPT} ");
    loop {
        let mut config = match &token {
            Some(token) => SessionConfig::new(&options.url, "").with_token(token.clone()),
            None => {
                let typed = match given.take() {
                    Some(name) => name,
                    None => match input.read(&name_prompt) {
                        Typed::Line(line) => line,
                        Typed::Leave => return ExitCode::SUCCESS,
                    },
                };
                // The line protocol's naming rules: a name the server would refuse is refused
                // here; `/token TOKEN` logs in with a token, as over `nc`.
                match LineSession::new().on_line(&typed).as_slice() {
                    [
                        Action::Send(Command::Login {
                            name: Some(name), ..
                        }),
                    ] => SessionConfig::new(&options.url, name),
                    [
                        Action::Send(Command::Login {
                            token: Some(token), ..
                        }),
                    ] => SessionConfig::new(&options.url, "").with_token(token.clone()),
                    [Action::Quit] => return ExitCode::SUCCESS,
                    refused => {
                        for text in refused.iter().filter_map(Action::render) {
                            output.show(&text);
                        }
                        continue;
                    }
                }
            }
        };
        if std::mem::take(&mut ask_password) && config.token.is_none() {
            match input.password("Password: ") {
                Typed::Line(password) if !password.is_empty() => {
                    config = config.with_password(Secret::new(password));
                }
                // An empty password: another name.
                Typed::Line(_) => continue,
                Typed::Leave => return ExitCode::SUCCESS,
            }
        }
        let name = config.name.clone();
        let asks_password = config.password.is_none() && config.token.is_none();
        let mut session = {
            let _inside = runtime.enter();
            ClientSession::start(config)
        };
        let typist = session.typist();
        let (phase, phases) = mpsc::channel();
        let out = output.clone();
        let handle = runtime.handle().clone();
        // One thread shows the session's updates; the main thread reads the keyboard. Until the
        // login, nothing is being edited, so the lines go straight to the terminal, in order
        // with the password prompt that may follow.
        std::thread::spawn(move || {
            let mut logged_in = false;
            while let Some(update) = handle.block_on(session.next()) {
                if let Some(text) = lines_for(&update, asks_password) {
                    if logged_in {
                        out.show(&text);
                    } else {
                        Output::Plain.show(&text);
                    }
                }
                let news = match &update {
                    Update::Server {
                        event: Event::Welcome { .. },
                        ..
                    } if !logged_in => {
                        logged_in = true;
                        Some(Phase::LoggedIn)
                    }
                    Update::Refused { code, .. } => Some(Phase::Refused(*code)),
                    Update::Ended { .. } => Some(Phase::Ended),
                    _ => None,
                };
                if let Some(news) = news {
                    let _ = phase.send(news);
                }
            }
            let _ = phase.send(Phase::Ended);
        });
        match phases.recv() {
            Ok(Phase::LoggedIn) => return chat(&mut input, &output, &typist, &phases),
            // A registered name: its password, then the same name again.
            Ok(Phase::Refused(ErrorCode::AuthRequired)) if asks_password => {
                given = Some(name);
                ask_password = true;
            }
            // A token the server does not take: asking again cannot help.
            Ok(Phase::Refused(_)) if token.is_some() => return ExitCode::FAILURE,
            Ok(Phase::Refused(_)) => continue,
            Ok(Phase::Ended) | Err(_) => return ExitCode::SUCCESS,
        }
    }
}

/// The token in `path`, without one trailing newline.
fn read_token(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the token file {}: {error}", path.display()))?;
    let token = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(Secret::new(token))
}

/// `/help` in this client: the line protocol's list, with `/register` asking for the password.
fn help() -> String {
    let mut out = String::new();
    for line in HELP {
        if line.starts_with("/register") {
            render::info(
                &mut out,
                "/register         make your name yours: asks twice for a password, without showing it",
            );
            render::info(
                &mut out,
                "                  (/register PASSWORD works too, but shows the password on the screen)",
            );
        } else {
            render::info(&mut out, line);
        }
    }
    out
}

/// `/register` alone: a new password, asked twice without echo. `None` when it was not given
/// the same twice (or not at all); the user was told why.
fn new_password(input: &mut Input, output: &Output) -> Option<Secret> {
    let first = match input.password("New password: ") {
        Typed::Line(password) if !password.is_empty() => password,
        _ => {
            output.show("* not registered");
            return None;
        }
    };
    match input.password("The same again: ") {
        Typed::Line(again) if again == first => Some(Secret::new(first)),
        Typed::Line(_) => {
            output.show("! the two passwords differ; not registered");
            None
        }
        Typed::Leave => {
            output.show("* not registered");
            None
        }
    }
}

/// The input loop once logged in: every line goes to the session, until `/quit`.
fn chat(
    input: &mut Input,
    output: &Output,
    typist: &Typist,
    phases: &mpsc::Receiver<Phase>,
) -> ExitCode {
    let quit = || {
        if typist.line_blocking("/quit").is_ok() {
            // The session says goodbye once the answers to earlier lines are in (bounded).
            while !matches!(
                phases.recv_timeout(Duration::from_secs(3)),
                Ok(Phase::Ended) | Err(_)
            ) {}
        }
        ExitCode::SUCCESS
    };
    loop {
        let line = match input.read("> ") {
            Typed::Line(line) => line,
            Typed::Leave => return quit(),
        };
        match parse_line(&line) {
            Slash::Quit => return quit(),
            Slash::Help => {
                output.show(&help());
                continue;
            }
            // `/register` alone: the password is asked for without echo.
            Slash::Usage(_) if line.trim() == "/register" => {
                let Some(password) = new_password(input, output) else {
                    continue;
                };
                if typist.register_blocking(password).is_err() {
                    return ExitCode::SUCCESS;
                }
                continue;
            }
            _ => {}
        }
        if typist.line_blocking(&line).is_err() {
            return ExitCode::SUCCESS;
        }
        if let Ok(Phase::Ended | Phase::Refused(_)) = phases.try_recv() {
            return ExitCode::SUCCESS;
        }
    }
}
