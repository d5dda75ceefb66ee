//! A test authenticator: the token `token:NAME` proves NAME, the password `pw:NAME` too; it
//! counts its calls, sees each client's address, and can be held until a test lets it answer.
//! With `registers` set it registers anyone (the hash is a fixed string). [`vouching`] is an
//! app that knows its users (by a cookie, say): every name is an account, as the core is told
//! to ask about plain logins too and to admit no guests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chat_core::{AuthError, Command, Identity, LoginAttempt, PasswordHash, Secret, UserName};
use chat_runtime::{Authenticator, ClientInfo};
use tokio::sync::Semaphore;

#[derive(Default)]
pub struct Tokens {
    pub calls: AtomicUsize,
    /// When set, each check waits for a permit: a test releases them one by one.
    pub gate: Option<Semaphore>,
    /// The address of each client checked, in order.
    pub seen: Mutex<Vec<Option<SocketAddr>>>,
    /// Whether `register` works.
    pub registers: bool,
    /// Whether a login without credentials is an account's (the app vouches for it).
    pub vouches: bool,
}

/// The chat settings and authenticator of an app that vouches for every name it lets in:
/// every login is an account's, so DMs to any offline name are kept.
pub fn vouching(chat: chat_core::Config) -> (chat_core::Config, Tokens) {
    let chat = chat_core::Config {
        guests: false,
        authenticate_guests: true,
        ..chat
    };
    let tokens = Tokens {
        vouches: true,
        ..Tokens::default()
    };
    (chat, tokens)
}

impl Tokens {
    pub fn gated() -> Self {
        Tokens {
            gate: Some(Semaphore::new(0)),
            ..Tokens::default()
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Authenticator for Tokens {
    async fn authenticate(
        &self,
        attempt: &LoginAttempt,
        client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(client.addr);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let claimed = match (&attempt.token, &attempt.password, &attempt.name) {
            (Some(token), _, _) => token.expose().strip_prefix("token:"),
            (None, Some(password), Some(name)) => password
                .expose()
                .strip_prefix("pw:")
                .filter(|claimed| claimed.eq_ignore_ascii_case(name.as_str())),
            (None, None, Some(name)) if self.vouches => return Ok(Identity::Account(name.clone())),
            (None, None, Some(name)) => return Ok(Identity::Guest(name.clone())),
            _ => None,
        };
        let name = claimed.ok_or(AuthError::Failed)?;
        UserName::parse(name)
            .map(Identity::Account)
            .map_err(|_| AuthError::Failed)
    }

    async fn hash_password(
        &self,
        _name: &UserName,
        _password: &Secret,
    ) -> Result<PasswordHash, AuthError> {
        match self.registers {
            true => Ok(PasswordHash::new("not a real hash")),
            false => Err(AuthError::NotOffered("no registering here".into())),
        }
    }
}

/// A login with the token of `name`.
pub fn token_login(name: &str) -> Command {
    Command::Login {
        since: None,
        name: None,
        password: None,
        token: Some(Secret::new(format!("token:{name}"))),
    }
}

/// A login as `name` with `password`.
pub fn password_login(name: &str, password: &str) -> Command {
    Command::Login {
        since: None,
        name: Some(name.into()),
        password: Some(Secret::new(password)),
        token: None,
    }
}
