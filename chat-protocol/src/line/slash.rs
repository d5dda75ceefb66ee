//! The slash-command language that line clients type (`/join rust`, `/dm bob hi`).
//!
//! The line session ([`LineSession`](super::LineSession)) reads every typed line with
//! [`parse_line`], for the line TCP transport and the terminal client alike, so `/msg`, `//text`
//! and the usage messages are the same everywhere. Parsing is only about the shape of the line;
//! names and texts are validated by the core as usual.

/// What a typed line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slash<'a> {
    /// Not a command: say this in the current room. (`//text` says `/text`.)
    Say(&'a str),
    /// `/join ROOM`: move to ROOM.
    Join(&'a str),
    /// `/leave [ROOM]`: leave ROOM (the current room by default).
    Leave(Option<&'a str>),
    /// `/rooms`: list the rooms.
    Rooms,
    /// `/who [ROOM]`: list a room's members (the current room by default).
    Who(Option<&'a str>),
    /// `/dm USER TEXT` or `/msg USER TEXT`: a direct message.
    Dm {
        /// The recipient as typed.
        to: &'a str,
        /// The text, as typed after the name.
        text: &'a str,
    },
    /// `/history [N]`: the current room's last N messages (50 by default).
    History(Option<i64>),
    /// `/register PASSWORD`: make the name one is logged in with an account. The password is
    /// the rest of the line, without the spaces around it.
    Register(&'a str),
    /// `/token TOKEN`, at the name prompt: log in with a signed token.
    Token(&'a str),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// A command that does not exist (the word after `/`).
    Unknown(&'a str),
    /// A known command used the wrong way; the text says how to use it.
    Usage(&'static str),
}

/// The help text, one line per command.
pub const HELP: [&str; 10] = [
    "/join ROOM        move to ROOM (leaving the room you are in)",
    "/leave [ROOM]     leave ROOM (default: your room)",
    "/rooms            list the rooms and how many are in each",
    "/who [ROOM]       who is in ROOM (default: your room)",
    "/dm USER TEXT     a direct message (also /msg); kept for USER if offline",
    "/history [N]      the last N messages of your room (default 50)",
    "/register PASSWORD  make your name yours: from then on it needs the password",
    "/help             this list",
    "/quit             leave",
    "anything else     is said in your room (start it with // to say a line that begins with /)",
];

/// Reads one typed line (without its line end).
pub fn parse_line(line: &str) -> Slash<'_> {
    let Some(rest) = line.strip_prefix('/') else {
        return Slash::Say(line);
    };
    if rest.starts_with('/') {
        return Slash::Say(rest);
    }
    let (command, args) = match rest.split_once(char::is_whitespace) {
        Some((command, args)) => (command, args.trim()),
        None => (rest, ""),
    };
    let mut words = args.split_whitespace();
    match command {
        "join" | "j" => match (words.next(), words.next()) {
            (Some(room), None) => Slash::Join(room),
            _ => Slash::Usage("usage: /join ROOM"),
        },
        "leave" | "part" => match (words.next(), words.next()) {
            (room, None) => Slash::Leave(room),
            _ => Slash::Usage("usage: /leave [ROOM]"),
        },
        "rooms" | "list" => Slash::Rooms,
        "who" | "names" => match (words.next(), words.next()) {
            (room, None) => Slash::Who(room),
            _ => Slash::Usage("usage: /who [ROOM]"),
        },
        "dm" | "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Slash::Dm {
                to,
                text: text.trim_start(),
            },
            _ => Slash::Usage("usage: /dm USER TEXT"),
        },
        "history" => match (words.next(), words.next()) {
            (None, _) => Slash::History(None),
            (Some(n), None) => match n.parse::<i64>() {
                Ok(n) => Slash::History(Some(n)),
                Err(_) => Slash::Usage("usage: /history [N], N a number"),
            },
            _ => Slash::Usage("usage: /history [N]"),
        },
        "register" => match args {
            "" => Slash::Usage("usage: /register PASSWORD"),
            password => Slash::Register(password),
        },
        "token" => match (words.next(), words.next()) {
            (Some(token), None) => Slash::Token(token),
            _ => Slash::Usage("usage: /token TOKEN"),
        },
        "help" | "?" => Slash::Help,
        "quit" | "exit" => Slash::Quit,
        other => Slash::Unknown(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_every_command_of_the_protocol() {
        assert_eq!(parse_line("hello there"), Slash::Say("hello there"));
        assert_eq!(parse_line("/join rust"), Slash::Join("rust"));
        assert_eq!(parse_line("/join   Rust  "), Slash::Join("Rust"));
        assert_eq!(parse_line("/leave"), Slash::Leave(None));
        assert_eq!(parse_line("/leave rust"), Slash::Leave(Some("rust")));
        assert_eq!(parse_line("/rooms"), Slash::Rooms);
        assert_eq!(
            parse_line("/register  correct horse "),
            Slash::Register("correct horse")
        );
        assert_eq!(parse_line("/token a.b.c"), Slash::Token("a.b.c"));
        assert!(matches!(parse_line("/register"), Slash::Usage(_)));
        assert!(matches!(parse_line("/token"), Slash::Usage(_)));
        assert_eq!(parse_line("/who"), Slash::Who(None));
        assert_eq!(parse_line("/who rust"), Slash::Who(Some("rust")));
        assert_eq!(
            parse_line("/dm bob see  you later"),
            Slash::Dm {
                to: "bob",
                text: "see  you later"
            }
        );
        assert_eq!(
            parse_line("/msg bob hi"),
            Slash::Dm {
                to: "bob",
                text: "hi"
            }
        );
        assert_eq!(parse_line("/history"), Slash::History(None));
        assert_eq!(parse_line("/history 20"), Slash::History(Some(20)));
        assert_eq!(parse_line("/help"), Slash::Help);
        assert_eq!(parse_line("/quit"), Slash::Quit);
        assert_eq!(parse_line("/foo bar"), Slash::Unknown("foo"));
    }

    #[test]
    fn explains_misused_commands() {
        for line in [
            "/join",
            "/join a b",
            "/dm bob",
            "/dm",
            "/dm bob   ",
            "/history x",
            "/who a b",
            "/leave a b",
        ] {
            assert!(matches!(parse_line(line), Slash::Usage(_)), "{line:?}");
        }
    }

    #[test]
    fn a_double_slash_says_a_line_that_starts_with_a_slash() {
        assert_eq!(parse_line("//shrug"), Slash::Say("/shrug"));
        assert_eq!(parse_line("/"), Slash::Unknown(""));
    }

    proptest! {
        #[test]
        fn a_line_without_a_leading_slash_is_said_verbatim(line in "[^/]\\PC{0,40}") {
            prop_assert_eq!(parse_line(&line), Slash::Say(&line));
        }

        #[test]
        fn parsing_never_panics(line in "/\\PC{0,40}") {
            let _ = parse_line(&line);
        }
    }
}
