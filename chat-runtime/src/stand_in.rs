//! Secrets kept off a cluster's log: a replica appends a stand-in for every password and token
//! its clients send, and puts the secret back when its own core asks to check it.
//!
//! A login or registration travels through the log like every command, so that every replica
//! handles it at the same point; but only the node that holds the connection checks it (the
//! authenticator runs there), so the other replicas never need the secret itself. The log (a
//! Redis stream, and Redis's append-only file on disk) and the checkpoints taken of replicas
//! therefore only ever hold stand-ins: `\u{1}` and a number, padded with `*` to the secret's
//! length in bytes, so that the password rule (a length in bytes) judges the stand-in exactly as
//! it judges the secret. A secret too short to hold a stand-in (one byte, which no password rule
//! admits) goes as it is.

use std::collections::HashMap;

use chat_core::{Command, ConnectionId, LoginAttempt, Secret};

/// What marks a stand-in.
const MARK: char = '\u{1}';

/// The most secrets kept for one connection.
const KEPT_PER_CONNECTION: usize = 8;

/// The secrets of this node's connections, by stand-in.
#[derive(Default)]
pub(crate) struct StandIns {
    secrets: HashMap<ConnectionId, Kept>,
}

/// One connection's secrets, numbered from 0 (so stand-ins stay short).
#[derive(Default)]
struct Kept {
    next: u32,
    by_number: HashMap<u32, Secret>,
}

impl StandIns {
    /// `command` with a stand-in for each secret it carries, the secrets kept for `conn`.
    pub(crate) fn conceal(&mut self, conn: ConnectionId, command: Command) -> Command {
        match command {
            Command::Login {
                name,
                password,
                token,
                since,
            } => Command::Login {
                name,
                password: password.map(|p| self.stand_in(conn, p)),
                token: token.map(|t| self.stand_in(conn, t)),
                since,
            },
            Command::Register { password } => Command::Register {
                password: self.stand_in(conn, password),
            },
            other => other,
        }
    }

    /// The attempt with `conn`'s secrets back in place of their stand-ins.
    pub(crate) fn reveal_attempt(
        &mut self,
        conn: ConnectionId,
        attempt: LoginAttempt,
    ) -> LoginAttempt {
        LoginAttempt {
            name: attempt.name,
            password: attempt.password.map(|p| self.reveal(conn, p)),
            token: attempt.token.map(|t| self.reveal(conn, t)),
        }
    }

    /// `conn`'s secret for `stand_in`, or `stand_in` itself if it is none of this node's (it then
    /// fails the check, as a wrong password would).
    pub(crate) fn reveal(&mut self, conn: ConnectionId, stand_in: Secret) -> Secret {
        let number = stand_in
            .expose()
            .strip_prefix(MARK)
            .map(|rest| rest.trim_end_matches('*'))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok());
        let kept = number.and_then(|n| self.secrets.get_mut(&conn)?.by_number.remove(&n));
        kept.unwrap_or(stand_in)
    }

    /// Forgets the secrets of a command of `conn` the log refused (they will never be asked
    /// for).
    pub(crate) fn forget_command(&mut self, conn: ConnectionId, command: &Command) {
        let stand_ins = match command {
            Command::Login {
                password, token, ..
            } => [password.as_ref(), token.as_ref()],
            Command::Register { password } => [Some(password), None],
            _ => return,
        };
        for stand_in in stand_ins.into_iter().flatten() {
            let _ = self.reveal(conn, stand_in.clone());
        }
    }

    /// Forgets what `conn` sent.
    pub(crate) fn forget(&mut self, conn: ConnectionId) {
        self.secrets.remove(&conn);
    }

    /// Forgets everything (the node starts over).
    pub(crate) fn clear(&mut self) {
        self.secrets.clear();
    }

    fn stand_in(&mut self, conn: ConnectionId, secret: Secret) -> Secret {
        let kept = self.secrets.entry(conn).or_default();
        let number = kept.next;
        let mut stand_in = format!("{MARK}{number:x}");
        let length = secret.expose().len();
        if length < stand_in.len() {
            return secret;
        }
        kept.next = kept.next.wrapping_add(1);
        while stand_in.len() < length {
            stand_in.push('*');
        }
        // A connection has at most a few checks out at once; secrets of commands the core
        // answered without a check (a second login, say) are never asked for, so only the
        // newest few are kept.
        if kept.by_number.len() >= KEPT_PER_CONNECTION {
            let oldest = kept.by_number.keys().min().copied();
            if let Some(oldest) = oldest {
                kept.by_number.remove(&oldest);
            }
        }
        kept.by_number.insert(number, secret);
        Secret::new(stand_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(password: &str, token: &str) -> Command {
        Command::Login {
            name: Some("alice".into()),
            password: Some(Secret::new(password)),
            token: Some(Secret::new(token)),
            since: None,
        }
    }

    fn secrets(command: &Command) -> (String, String) {
        match command {
            Command::Login {
                password: Some(p),
                token: Some(t),
                ..
            } => (p.expose().to_owned(), t.expose().to_owned()),
            other => panic!("a login with both secrets: {other:?}"),
        }
    }

    #[test]
    fn a_stand_in_has_the_secrets_length_and_none_of_its_text() {
        let mut stand_ins = StandIns::default();
        let conn = ConnectionId(7);
        let concealed = stand_ins.conceal(conn, login("correct horse", "eyJhbGciOi.x.y"));
        let (password, token) = secrets(&concealed);
        assert_eq!(password.len(), "correct horse".len());
        assert_eq!(token.len(), "eyJhbGciOi.x.y".len());
        assert!(!password.contains("horse") && !token.contains("eyJ"));
        // The password rule judges the stand-in as it judges the password.
        assert!(Secret::new(password.clone()).check_password().is_ok());
        let attempt = LoginAttempt {
            name: None,
            password: Some(Secret::new(password)),
            token: Some(Secret::new(token)),
        };
        let revealed = stand_ins.reveal_attempt(conn, attempt);
        assert_eq!(revealed.password.unwrap().expose(), "correct horse");
        assert_eq!(revealed.token.unwrap().expose(), "eyJhbGciOi.x.y");
    }

    #[test]
    fn a_too_short_password_keeps_its_length_so_the_rule_still_refuses_it() {
        let mut stand_ins = StandIns::default();
        let conn = ConnectionId(7);
        let register = Command::Register {
            password: Secret::new("short"),
        };
        let Command::Register { password } = stand_ins.conceal(conn, register) else {
            panic!("a registration");
        };
        assert_ne!(password.expose(), "short");
        assert!(password.check_password().is_err());
        assert_eq!(stand_ins.reveal(conn, password).expose(), "short");
    }

    #[test]
    fn a_connection_keeps_a_bounded_number_of_secrets() {
        let mut stand_ins = StandIns::default();
        let conn = ConnectionId(3);
        let mut concealed = Vec::new();
        for n in 0..100 {
            concealed.push(stand_ins.conceal(conn, login(&format!("password {n:03}"), "token")));
        }
        let kept = stand_ins.secrets[&conn].by_number.len();
        assert_eq!(kept, KEPT_PER_CONNECTION);
        // The newest are the ones kept; a refused command's are let go at once.
        let (newest, _) = secrets(concealed.last().unwrap());
        stand_ins.forget_command(conn, concealed.last().unwrap());
        assert_eq!(
            stand_ins.secrets[&conn].by_number.len(),
            KEPT_PER_CONNECTION - 2
        );
        let gone = stand_ins.reveal(conn, Secret::new(newest.clone()));
        assert_eq!(gone.expose(), newest, "forgotten, so not revealed");
    }

    #[test]
    fn a_stand_in_is_revealed_once_and_only_to_its_connection() {
        let mut stand_ins = StandIns::default();
        let concealed = stand_ins.conceal(ConnectionId(1), login("password one", "token"));
        let (password, _) = secrets(&concealed);
        let other = stand_ins.reveal(ConnectionId(2), Secret::new(password.clone()));
        assert_eq!(other.expose(), password, "not another connection's");
        let mine = stand_ins.reveal(ConnectionId(1), Secret::new(password.clone()));
        assert_eq!(mine.expose(), "password one");
        let again = stand_ins.reveal(ConnectionId(1), Secret::new(password.clone()));
        assert_eq!(again.expose(), password, "revealed once");
    }
}
