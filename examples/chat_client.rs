//! An interactive terminal client for the chat server, over WebSocket.
//!
//! ```sh
//! cargo run --example chat_client -- --name alice            # ws://127.0.0.1:8765/chat
//! cargo run --example chat_client -- --url ws://127.0.0.1:8765/chat
//! ```
//!
//! It speaks the line transport's language: a line is said in your room, and `/join ROOM`,
//! `/leave [ROOM]`, `/dm USER TEXT` (or `/msg`), `/who [ROOM]`, `/rooms`, `/history [N]`, `/help`
//! and `/quit` do what they do over `nc`, and the output looks the same
//! (`[HH:MM:SS] #room <alice> text`).
//! Incoming messages are printed above the line being typed (reedline's external printer), so
//! they never garble it. When the connection is lost the client says so and reconnects with
//! back-off, logs in again and goes back to its room; a refused name asks for another. Ctrl-C or
//! Ctrl-D leave like `/quit`. Without a terminal (input from a pipe) it reads plain lines.
//!
//! The session logic lives in the library (`chat_engine::client`, the `chat-client` crate,
//! tested there); this program is the terminal around it.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use chat_engine::client::{ClientSession, SessionConfig, Typist, Update};
use chat_engine::core::{Command, Event};
use chat_engine::protocol::line::render::render;
use chat_engine::protocol::line::{Action, LineSession, NAME_PROMPT, Slash, parse_line};
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
}

/// Where the session stands, as the printing thread tells the input loop.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    LoggedIn,
    Refused,
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
/// news in the same `* ` / `! ` style.
fn lines_for(update: &Update) -> Option<String> {
    match update {
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
    let mut given = options.name;
    let name_prompt = format!("{NAME_PROMPT} ");
    loop {
        let typed = match given.take() {
            Some(name) => name,
            None => match input.read(&name_prompt) {
                Typed::Line(line) => line,
                Typed::Leave => return ExitCode::SUCCESS,
            },
        };
        // The line protocol's naming rules: a name the server would refuse is refused here.
        let name = match LineSession::new().on_line(&typed).as_slice() {
            [
                Action::Send(Command::Login {
                    name: Some(name), ..
                }),
            ] => name.clone(),
            [Action::Quit] => return ExitCode::SUCCESS,
            refused => {
                for text in refused.iter().filter_map(Action::render) {
                    output.show(&text);
                }
                continue;
            }
        };
        let mut session = {
            let _inside = runtime.enter();
            ClientSession::start(SessionConfig::new(&options.url, &name))
        };
        let typist = session.typist();
        let (phase, phases) = mpsc::channel();
        let out = output.clone();
        let handle = runtime.handle().clone();
        // One thread shows the session's updates; the main thread reads the keyboard.
        std::thread::spawn(move || {
            let mut logged_in = false;
            while let Some(update) = handle.block_on(session.next()) {
                if let Some(text) = lines_for(&update) {
                    out.show(&text);
                }
                let news = match &update {
                    Update::Server {
                        event: Event::Welcome { .. },
                        ..
                    } if !logged_in => {
                        logged_in = true;
                        Some(Phase::LoggedIn)
                    }
                    Update::Refused { .. } => Some(Phase::Refused),
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
            Ok(Phase::LoggedIn) => return chat(&mut input, &typist, &phases),
            Ok(Phase::Refused) => continue,
            Ok(Phase::Ended) | Err(_) => return ExitCode::SUCCESS,
        }
    }
}

/// The input loop once logged in: every line goes to the session, until `/quit`.
fn chat(input: &mut Input, typist: &Typist, phases: &mpsc::Receiver<Phase>) -> ExitCode {
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
        if matches!(parse_line(&line), Slash::Quit) {
            return quit();
        }
        if typist.line_blocking(&line).is_err() {
            return ExitCode::SUCCESS;
        }
        if let Ok(Phase::Ended) = phases.try_recv() {
            return ExitCode::SUCCESS;
        }
    }
}
