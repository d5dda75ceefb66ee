//! The app's side of the cookie login: its own session table, and the [`Authenticator`] that
//! tells the chat who a WebSocket client is from the session cookie its handshake carried.
//!
//! The chat never sees a password here: the app logged its user in (by whatever it uses) and
//! handed out a cookie; the chat trusts the app's answer. A real app asks its session store;
//! this one keeps a table in memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

use async_trait::async_trait;
use chat_engine::core::{AuthError, Identity, LoginAttempt, UserName};
use chat_engine::runtime::{Authenticator, ClientInfo};

/// The name of the app's session cookie.
pub(crate) const COOKIE: &str = "session";

/// The app's sessions: cookie value → the user it was issued to.
#[derive(Default)]
pub(crate) struct Sessions {
    users: Mutex<HashMap<String, UserName>>,
}

impl Sessions {
    /// Starts a session for `user`; returns the cookie value to set.
    pub(crate) fn issue(&self, user: UserName) -> String {
        // 128 random bits from the standard library's randomly keyed hasher (a real app uses
        // its framework's session store).
        let random = || RandomState::new().build_hasher().finish();
        let token = format!("{:016x}{:016x}", random(), random());
        self.lock().insert(token.clone(), user);
        token
    }

    /// The user of session `token`, if it is one.
    pub(crate) fn user(&self, token: &str) -> Option<UserName> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserName>> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Logs chat clients in as the user of their session cookie, whatever name they asked for.
pub(crate) struct CookieAuth {
    /// The app's sessions.
    pub(crate) sessions: std::sync::Arc<Sessions>,
}

#[async_trait]
impl Authenticator for CookieAuth {
    async fn authenticate(
        &self,
        _attempt: &LoginAttempt,
        client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        let user = client
            .cookie(COOKIE)
            .and_then(|token| self.sessions.user(token));
        // No session: the client must log in to the app first.
        user.map(Identity::Account).ok_or(AuthError::Required)
    }

    fn wants_headers(&self) -> bool {
        true
    }
}
