//! Who a connection is: the credentials a client offers, what a runtime verified of them, and
//! the accounts that own names.
//!
//! A name is a **guest** name (first come, first served; free again when its connection ends)
//! or an **account**'s (registered with a password, or carried by a signed token): only its
//! owner may use it. The core never checks a password or a token itself, since that is slow
//! (a password hash) or needs keys (a token): a login that carries one becomes
//! [`Output::Authenticate`](crate::Output::Authenticate), the runtime's authenticator decides
//! off the core's task, and the answer comes back as
//! [`Input::Authenticated`](crate::Input::Authenticated) with the verified [`Identity`]. What
//! the core does decide is everything about names: that a guest cannot take an account's name,
//! that an account's name is shown as it was registered, that offline DMs are kept only for
//! names with an owner.
//!
//! Secrets ([`Secret`], [`PasswordHash`]) never show in `Debug` output, so no log line built from
//! a command or an output can leak one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::user_name::UserName;

/// The shortest password, in bytes of UTF-8.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// The longest password, in bytes of UTF-8.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Something a client proves itself with (a password, a token): its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, for the code that checks it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the protocol's password rule: 8–256 bytes of UTF-8.
    pub fn check_password(&self) -> Result<(), ChatError> {
        let len = self.0.len();
        if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&len) {
            Ok(())
        } else {
            Err(ChatError::InvalidPassword(format!(
                "a password has {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes; this one has \
                 {len}"
            )))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// A password's salted slow hash (an argon2id PHC string, for the bundled authenticator), as the
/// store keeps it. The core only carries it from the authenticator to the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a hash an authenticator produced.
    pub fn new(hash: impl Into<String>) -> Self {
        PasswordHash(hash.into())
    }

    /// The hash, for the authenticator that checks passwords against it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(hidden)")
    }
}

/// A login as the client sent it, for an authenticator to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The name asked for. A token login ignores it (the token names the user).
    pub name: Option<UserName>,
    /// The password sent, if any.
    pub password: Option<Secret>,
    /// The token sent, if any; it wins over the name and password.
    pub token: Option<Secret>,
}

impl LoginAttempt {
    /// Whether the client offered a password or a token (such logins are throttled after
    /// failures; guest logins are not).
    pub fn has_credentials(&self) -> bool {
        self.password.is_some() || self.token.is_some()
    }
}

/// Who a verified login is: what an authenticator vouches for. Its serde form (`{"guest":"bob"}`,
/// `{"account":"Alice"}`) is how a cluster passes the answer to every node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// A guest: the name is the user's only while this connection holds it, and only if no
    /// account owns it (the core checks that).
    Guest(UserName),
    /// The owner of an account (a password, a token, or the embedding app vouched for it). If
    /// the name is not an account yet, the login makes it one.
    Account(UserName),
}

impl Identity {
    /// The name.
    pub fn name(&self) -> &UserName {
        match self {
            Identity::Guest(name) | Identity::Account(name) => name,
        }
    }
}

/// Why an authenticator refused, each answered with its protocol error. Its serde form
/// (`"failed"`, `{"not_offered":"…"}`) is how a cluster passes the answer to every node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthError {
    /// The name needs a password or a token (`auth_required`).
    #[error("a password or token is required")]
    Required,
    /// The password or token is wrong, expired, or for no account (`auth_failed`, with the same
    /// message in every case, so a client learns nothing about which).
    #[error("wrong name, password or token")]
    Failed,
    /// Too many failed logins for this name or from this address (`rate_limited`); the
    /// credentials were not checked.
    #[error("too many failed logins")]
    Throttled,
    /// The authenticator cannot check right now (its store is down: `unavailable`).
    #[error("the server cannot check logins right now")]
    Unavailable,
    /// This server does not offer it (registering, for an app whose accounts live elsewhere):
    /// `auth_failed` with this sentence.
    #[error("{0}")]
    NotOffered(String),
}

impl From<AuthError> for ChatError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Required => {
                ChatError::AuthRequired("log in with the password of this name, or a token".into())
            }
            AuthError::Failed => ChatError::AuthFailed(AUTH_FAILED.into()),
            AuthError::Throttled => ChatError::LoginsThrottled,
            AuthError::Unavailable => ChatError::Unavailable,
            AuthError::NotOffered(why) => ChatError::AuthFailed(why),
        }
    }
}

/// The one sentence of every failed login, whatever failed.
pub const AUTH_FAILED: &str = "login failed: wrong name, password or token";

/// An account as the store keeps it: the name as it was registered, and its password hash
/// (none for an account made by a token or by the embedding app).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The name, spelled as when the account was made.
    pub name: UserName,
    /// The password's hash, if the account has a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<PasswordHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = Secret::new("hunter2hunter2");
        let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        let attempt = LoginAttempt {
            name: Some(UserName::parse("alice").unwrap()),
            password: Some(secret.clone()),
            token: Some(Secret::new("eyJ.token.sig")),
        };
        let shown = format!("{secret:?} {hash:?} {attempt:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(!shown.contains("eyJ"), "{shown}");
    }

    #[test]
    fn passwords_have_8_to_256_bytes() {
        assert!(Secret::new("1234567").check_password().is_err());
        assert!(Secret::new("12345678").check_password().is_ok());
        assert!(Secret::new("é".repeat(128)).check_password().is_ok());
        assert!(Secret::new("x".repeat(257)).check_password().is_err());
        assert!(Secret::new("").check_password().is_err());
    }

    #[test]
    fn an_account_serialises_without_the_word_password() {
        let account = Account {
            name: UserName::parse("Alice").unwrap(),
            hash: Some(PasswordHash::new("$argon2id$v=19$x")),
        };
        let json = serde_json::to_string(&account).unwrap();
        assert_eq!(json, r#"{"name":"Alice","hash":"$argon2id$v=19$x"}"#);
        assert_eq!(serde_json::from_str::<Account>(&json).unwrap(), account);
    }
}
