//! Who may log in: the [`Authenticator`] an embedding app implements (or the bundled server's
//! accounts), and the [`ClientInfo`] a transport knows of each connection.
//!
//! The core decides everything about names, but it cannot check a password (a slow hash) or a
//! token (it needs keys), and it knows nothing of sockets or cookies. So a login that carries a
//! password or a token (or any login, with
//! [`Config::authenticate_guests`](chat_core::Config::authenticate_guests)) comes out of the
//! core as [`Output::Authenticate`](chat_core::Output::Authenticate); the core task hands it to
//! the authenticator on a task of its own, with what the transport knew of the client, and
//! feeds the verdict back. Meanwhile the chat goes on, and the client's later frames wait in
//! the core, to be answered in order. Failed logins are throttled before the authenticator is
//! asked (see `throttle.rs`), so a password-guessing client costs the server little.
//!
//! An app that knows its users already implements [`Authenticator`]: from a session cookie in
//! [`ClientInfo::cookie`], say, it answers [`Identity::Account`] with the user's name, and the
//! chat trusts it. Without one, the runtime admits guests only ([`GuestsOnly`]).

use std::net::SocketAddr;

use async_trait::async_trait;
use chat_core::{AuthError, Identity, LoginAttempt, PasswordHash, Secret, UserName};
use http::HeaderMap;
use http::header::COOKIE;

/// What a transport knows of a connection, for an [`Authenticator`] to judge a login by.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// The client's address, for a connection over a network (`None` for an in-process one).
    pub addr: Option<SocketAddr>,
    /// The HTTP headers of the WebSocket handshake (empty for a line client). The runtime keeps
    /// them only for an authenticator that asks for them ([`Authenticator::wants_headers`]).
    pub headers: HeaderMap,
}

impl ClientInfo {
    /// A client at `addr`, with no headers (a line client).
    pub fn from_addr(addr: SocketAddr) -> Self {
        ClientInfo {
            addr: Some(addr),
            headers: HeaderMap::new(),
        }
    }

    /// The value of cookie `name` from the handshake's `Cookie` headers, if the client sent it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim_matches('"'))
    }
}

/// Decides who a login is. The runtime calls it off the core's task, for every login that
/// carries a password or a token (and for every login, with
/// [`Config::authenticate_guests`](chat_core::Config::authenticate_guests)), and for every
/// `register`. It may take its time (a password hash, a database): the chat goes on meanwhile,
/// and only the asking client waits.
///
/// The answer is the verified [`Identity`]: [`Identity::Account`] for a name the app vouches
/// for (the chat makes it an account on its first login, so no guest can take it), or
/// [`Identity::Guest`]. Refuse with [`AuthError::Failed`] for wrong credentials (the client
/// gets `auth_failed`, and the failure counts towards the login throttle), or
/// [`AuthError::Required`] when the name needs credentials it did not send.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies one login. `attempt` is what the client sent; `client` what the transport saw.
    async fn authenticate(
        &self,
        attempt: &LoginAttempt,
        client: &ClientInfo,
    ) -> Result<Identity, AuthError>;

    /// Turns the password a guest registers its name with into what the store keeps (a salted
    /// slow hash). The default refuses: an app whose accounts live elsewhere registers nobody
    /// here.
    async fn hash_password(
        &self,
        name: &UserName,
        password: &Secret,
    ) -> Result<PasswordHash, AuthError> {
        let _ = (name, password);
        Err(AuthError::NotOffered(
            "this server does not register accounts".into(),
        ))
    }

    /// The name a login claims before it is checked, which the login throttle locks and counts
    /// failures against: the name sent; for a token, the name the token claims, unverified (an
    /// authenticator that can read its tokens says so). The default: the name sent, or none for
    /// a token.
    fn claimed_name(&self, attempt: &LoginAttempt) -> Option<UserName> {
        match attempt.token {
            Some(_) => None,
            None => attempt.name.clone(),
        }
    }

    /// Whether [`ClientInfo::headers`] should be kept for this authenticator (a cookie-based
    /// app's). The default is no, so an idle connection does not hold its handshake's headers.
    fn wants_headers(&self) -> bool {
        false
    }
}

/// The authenticator of a runtime started without one: guests only. A login with a password or
/// a token fails (there is nothing to check it against).
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestsOnly;

#[async_trait]
impl Authenticator for GuestsOnly {
    async fn authenticate(
        &self,
        attempt: &LoginAttempt,
        _client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        match (&attempt.name, attempt.has_credentials()) {
            (Some(name), false) => Ok(Identity::Guest(name.clone())),
            _ => Err(AuthError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name_across_headers() {
        let mut client = ClientInfo::default();
        client.headers.append(
            COOKIE,
            HeaderValue::from_static("theme=dark; session=abc123"),
        );
        client
            .headers
            .append(COOKIE, HeaderValue::from_static("other=\"quoted\""));
        assert_eq!(client.cookie("session"), Some("abc123"));
        assert_eq!(client.cookie("other"), Some("quoted"));
        assert_eq!(client.cookie("theme"), Some("dark"));
        assert_eq!(client.cookie("missing"), None);
        assert_eq!(client.cookie("sess"), None, "whole names only");
    }
}
