//! Login and register frames, from the WebSocket decoder (`chat_protocol::json::decode`) to the
//! core (`chat_core::Chat`): nothing may panic, and no password or token a client sends may
//! show in anything the core says or does (the decoder's error, any event, any output's `Debug`
//! text).
//!
//! Each input is used twice: as the text of one frame, and as the choices that build a frame
//! field by field (`type`, then `name`, `password`, `token` and `ref`, each absent, `null`, a
//! string from a small dictionary or any string, or a value of the wrong type). Each frame runs
//! through a small world: a chat whose settings (guests on or off, guests checked by the
//! authenticator or not) and account `Alice` come from the input, a connection holding the name
//! `holder`, and the client's connection, which may first log in as a guest, then sends the
//! frame one to three times and a `ping`, and hangs up. Every `Output::Authenticate` and
//! `Output::HashPassword` is answered with a verdict the input chose, never one that depends on
//! a secret's content (as `chat-core/tests/sim/mod.rs` answers them).
//!
//! The secret check: the `password` and `token` strings of the frame are replaced with
//! placeholders of the same length in bytes (the only thing about them the core may judge), and
//! the whole transcript (the decoder's result and every output, as `Debug` text) must be the
//! same for the frame and its masked twin. A transcript that showed a secret, or anything
//! derived from one, would differ. Besides, no secret of 4 characters or more may appear in the
//! transcript of the frame as sent, unless it appears in the masked twin's too (where it can
//! only come from the frame's other fields or the server's own sentences).

#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use chat_core::{
    AuthError, Chat, Command, Config, ConnectionId, Identity, Input, Now, Output, PasswordHash,
    Ref, RoomName, Snapshot, Timestamp, UserName,
};
use chat_protocol::json::decode;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// The fields of a frame that hold secrets.
const SECRET_FIELDS: [&str; 2] = ["password", "token"];

fuzz_target!(|data: &[u8]| {
    let mut choices = Unstructured::new(data);
    let Ok(world) = World::choose(&mut choices) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        check(text, &world);
    }
    if let Ok(frame) = frame(&mut Unstructured::new(data)) {
        check(&frame.to_string(), &world);
    }
});

/// Runs `text` as a frame and checks that no secret in it shows.
fn check(text: &str, world: &World) {
    let sent = world.transcript(text);
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let secrets: Vec<String> = SECRET_FIELDS
        .iter()
        .filter_map(|field| object.get(*field).and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return;
    }
    let mut masked = object.clone();
    for field in SECRET_FIELDS {
        if let Some(Value::String(secret)) = masked.get_mut(field) {
            *secret = placeholder(secret.len());
        }
    }
    let original = world.transcript(&Value::Object(object).to_string());
    let masked = world.transcript(&Value::Object(masked).to_string());
    assert_eq!(
        original, masked,
        "a password or token changed what the server said or did"
    );
    for secret in secrets.iter().filter(|s| s.chars().count() >= 4) {
        assert!(
            !sent.contains(secret.as_str()) || masked.contains(secret.as_str()),
            "a secret shows: {secret:?} in\n{sent}"
        );
    }
}

/// `len` bytes that stand for a secret.
fn placeholder(len: usize) -> String {
    "\u{7}".repeat(len)
}

/// How the world answers: the chat's settings, the client's first steps, the verdicts.
#[derive(Debug)]
struct World {
    guests: bool,
    authenticate_guests: bool,
    /// A guest name the client logs in with before the frame, if any.
    prelude: Option<&'static str>,
    /// How many times the client sends the frame (1–3).
    repeat: usize,
    /// The answers to the logins checked, in turn.
    logins: Vec<LoginVerdict>,
    /// Whether hashing a password works.
    hashes: bool,
}

#[derive(Clone, Copy, Debug)]
enum LoginVerdict {
    /// A guest with the name asked for.
    Guest,
    /// The account of the name asked for (of `token_name` for a token).
    Account,
    Required,
    Failed,
    Throttled,
    Unavailable,
    NotOffered,
}

/// Names the dictionary offers; `holder` is online, `Alice` an account.
const NAMES: [&str; 6] = ["alice", "ALICE", "holder", "bob", "zoe", "two words"];

impl World {
    fn choose(u: &mut Unstructured<'_>) -> Result<World> {
        let flags: u8 = u.arbitrary()?;
        let verdicts: u16 = u.arbitrary()?;
        let logins = (0..4)
            .map(|i| match (verdicts >> (4 * i)) & 7 {
                0 | 1 => LoginVerdict::Account,
                2 => LoginVerdict::Guest,
                3 => LoginVerdict::Required,
                4 => LoginVerdict::Throttled,
                5 => LoginVerdict::Unavailable,
                6 => LoginVerdict::NotOffered,
                _ => LoginVerdict::Failed,
            })
            .collect();
        Ok(World {
            guests: flags & 1 == 0,
            authenticate_guests: flags & 2 != 0,
            prelude: match (flags >> 2) & 3 {
                0 => None,
                1 => Some("bob"),
                2 => Some("alice"),
                _ => Some("guest"),
            },
            repeat: 1 + usize::from((flags >> 4) & 3) % 3,
            logins,
            hashes: flags & 0x40 == 0,
        })
    }

    /// Everything the core does with `text` sent as a frame, as `Debug` text, with the
    /// decoder's result first.
    fn transcript(&self, text: &str) -> String {
        let decoded = decode(text);
        let mut out = format!("{decoded:?}\n");
        if let Err(rejected) = &decoded {
            out.push_str(&rejected.to_string());
            out.push('\n');
        }
        let config = Config {
            guests: self.guests,
            authenticate_guests: self.authenticate_guests,
            default_room: Some(RoomName::parse("general").unwrap()),
            history: 8,
            join_history: 4,
            login_timeout: None,
            ..Config::default()
        };
        let mut snapshot = Snapshot::default();
        let alice = UserName::parse("Alice").unwrap();
        snapshot.accounts.insert(alice.key(), alice);
        let mut run = Run {
            chat: Chat::restore(config, snapshot).expect("a consistent snapshot"),
            world: self,
            logins: 0,
            out,
        };
        let (holder, client) = (ConnectionId(1), ConnectionId(2));
        run.input(Input::Connect(holder));
        run.command(holder, Command::login("holder"), None);
        run.input(Input::Connect(client));
        if let Some(name) = self.prelude {
            run.command(client, Command::login(name), None);
        }
        if let Ok((command, reference)) = decoded {
            for _ in 0..self.repeat {
                run.command(client, command.clone(), reference.clone());
            }
        }
        run.command(client, Command::Ping, Ref::text("sync").ok());
        run.input(Input::Disconnect(client));
        run.input(Input::Disconnect(holder));
        run.out
    }
}

/// One run of the world: the chat, and the transcript so far.
struct Run<'w> {
    chat: Chat,
    world: &'w World,
    logins: usize,
    out: String,
}

impl Run<'_> {
    fn now() -> Now {
        Now::new(
            Timestamp::parse("2026-11-22T10:00:00.000Z").unwrap(),
            Duration::from_secs(1),
        )
    }

    fn command(&mut self, conn: ConnectionId, command: Command, reference: Option<Ref>) {
        self.input(Input::Command {
            conn,
            command,
            reference,
        });
    }

    /// Feeds `input`, then drains the outputs, answering each check as it comes.
    fn input(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            self.chat
                .handle(input, Self::now())
                .expect("the driver is consistent");
            while let Some(output) = self.chat.poll_output() {
                self.out.push_str(&format!("{output:?}\n"));
                match output {
                    Output::Authenticate { conn, attempt, .. } => {
                        let outcome = self.verdict(attempt.name);
                        inputs.push_back(Input::Authenticated { conn, outcome });
                    }
                    Output::HashPassword { conn, .. } => {
                        let outcome = if self.world.hashes {
                            Ok(PasswordHash::new("$fake$hash"))
                        } else {
                            Err(AuthError::Unavailable)
                        };
                        inputs.push_back(Input::PasswordHashed { conn, outcome });
                    }
                    _ => {}
                }
            }
        }
    }

    /// The next verdict the world chose, for a login that asked for `name` (none for a token).
    fn verdict(&mut self, name: Option<UserName>) -> std::result::Result<Identity, AuthError> {
        let verdict = self.world.logins[self.logins % self.world.logins.len()];
        self.logins += 1;
        let name = name.unwrap_or_else(|| UserName::parse("zoe").unwrap());
        match verdict {
            LoginVerdict::Guest => Ok(Identity::Guest(name)),
            LoginVerdict::Account => Ok(Identity::Account(name)),
            LoginVerdict::Required => Err(AuthError::Required),
            LoginVerdict::Failed => Err(AuthError::Failed),
            LoginVerdict::Throttled => Err(AuthError::Throttled),
            LoginVerdict::Unavailable => Err(AuthError::Unavailable),
            LoginVerdict::NotOffered => Err(AuthError::NotOffered("no registering here".into())),
        }
    }
}

/// A login-ish frame built from the input's choices.
fn frame(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut object = Map::new();
    let kind = match u.int_in_range(0..=7u8)? {
        0..=2 => json!("login"),
        3..=4 => json!("register"),
        5 => json!("ping"),
        6 => json!(u.arbitrary::<&str>()?),
        _ => json!(7),
    };
    object.insert("type".into(), kind);
    for field in ["name", "password", "token", "ref"] {
        if let Some(value) = field_value(u, field)? {
            object.insert(field.into(), value);
        }
    }
    Ok(Value::Object(object))
}

/// A value for `field`, or `None` for no field.
fn field_value(u: &mut Unstructured<'_>, field: &str) -> Result<Option<Value>> {
    Ok(Some(match u.int_in_range(0..=9u8)? {
        0 => return Ok(None),
        1 => Value::Null,
        2 => json!(u.arbitrary::<&str>()?),
        3 if field == "name" => json!(*u.choose(&NAMES)?),
        3 => json!("12345678"),
        4 => json!("1234567"),
        5 => json!("pässwörd-ünïcode"),
        6 => json!("x".repeat(usize::from(u.int_in_range(250..=260u16)?))),
        7 => json!(u.arbitrary::<u32>()?),
        8 => json!([u.arbitrary::<bool>()?]),
        _ => json!(format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.sig",
            u.arbitrary::<u64>()?
        )),
    }))
}
