//! [`Accounts`]: passwords against the store's hashes, tokens against the shared secret.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, PasswordHasher, PasswordVerifier, SaltString};
use async_trait::async_trait;
use chat_core::{Account, AuthError, Identity, LoginAttempt, PasswordHash, Secret, UserName};
use chat_runtime::{Authenticator, ClientInfo};
use chat_store::Store;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// What a password for a name without a password hash is verified against, so that the login
/// takes as long as one for an account (and fails). It has the same algorithm and parameters
/// as the hashes [`Accounts::hash_password`] makes (a test checks that); nobody knows a
/// password that matches it, and it does not matter if someone did, since its result is
/// ignored.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$JWo5k6Woj25p8PjKJXHMvA$rzb9/pnrw+ACO87bjTXMXlruvYJDXif/DnBpUJB4HsA";

/// The bundled server's [`Authenticator`]: password logins against the accounts in a
/// [`Store`], token logins (HS256 JWTs) against a shared secret, and guests. See the
/// [crate docs](crate) for why it works the way it does.
///
/// - A login with a token is decided by the token alone (its name and password are ignored):
///   [`Identity::Account`] with the token's `sub`, or [`AuthError::Failed`] if the token is
///   not valid or no secret is configured.
/// - A login with a password: [`Identity::Account`] with the name spelled as stored, if the
///   name is an account with a password and the password matches; [`AuthError::Failed`]
///   otherwise; [`AuthError::Unavailable`] if the store cannot be read.
/// - A login with neither: [`Identity::Guest`] (the core refuses it if the name is an account,
///   or guests are off).
pub struct Accounts {
    store: Arc<dyn Store>,
    tokens: Option<TokenCheck>,
    /// One permit per argon2 computation allowed to run at once.
    hashing: Arc<Semaphore>,
    max_hashing: usize,
}

/// The key and rules token logins are checked with.
struct TokenCheck {
    key: DecodingKey,
    validation: Validation,
}

/// The claims this server reads from a token (the rules check `exp` and `nbf`).
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Accounts {
    /// Accounts kept in `store`, without token logins. At most one argon2 computation per CPU
    /// (at least 2) runs at once.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let max_hashing = std::thread::available_parallelism()
            .map_or(2, NonZeroUsize::get)
            .max(2);
        Accounts {
            store,
            tokens: None,
            hashing: Arc::new(Semaphore::new(max_hashing)),
            max_hashing,
        }
    }

    /// Accepts token logins: HS256 JWTs signed with `secret` (see [`read_jwt_secret`]). An
    /// empty secret turns token logins off instead (anyone could sign with it).
    ///
    /// [`read_jwt_secret`]: crate::read_jwt_secret
    pub fn with_jwt_secret(mut self, secret: Vec<u8>) -> Self {
        if secret.is_empty() {
            tracing::warn!("an empty JWT secret was given: token logins stay off");
            self.tokens = None;
            return self;
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        self.tokens = Some(TokenCheck {
            key: DecodingKey::from_secret(&secret),
            validation,
        });
        self
    }

    /// Whether token logins are accepted (a secret is configured).
    pub fn accepts_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// How many argon2 computations (hashes and verifications) may run at once; more wait.
    pub fn max_concurrent_hashing(&self) -> usize {
        self.max_hashing
    }

    /// A token login: the token's `sub`, if the token is valid.
    fn check_token(&self, token: &Secret) -> Result<Identity, AuthError> {
        let Some(check) = &self.tokens else {
            tracing::debug!("token login refused: no JWT secret is configured");
            return Err(AuthError::Failed);
        };
        let data = jsonwebtoken::decode::<Claims>(token.expose(), &check.key, &check.validation)
            .map_err(|error| {
                tracing::debug!(why = token_failure(error.kind()), "token login refused");
                AuthError::Failed
            })?;
        match UserName::parse(&data.claims.sub) {
            Ok(name) => Ok(Identity::Account(name)),
            Err(_) => {
                tracing::debug!("token login refused: its sub is not a valid name");
                Err(AuthError::Failed)
            }
        }
    }

    /// A password login for `name`.
    async fn check_password(
        &self,
        name: &UserName,
        password: &Secret,
    ) -> Result<Identity, AuthError> {
        let account = self.store.account(&name.key()).await.map_err(|error| {
            tracing::warn!(%error, "cannot read an account for a password login");
            AuthError::Unavailable
        })?;
        // A name without a password is verified against the dummy hash all the same, so that
        // the time of the answer does not tell whether the name is an account.
        let (stored, hash) = match account {
            Some(Account {
                name,
                hash: Some(hash),
            }) => (Some(name), hash.as_str().to_owned()),
            Some(Account { hash: None, .. }) | None => (None, DUMMY_HASH.to_owned()),
        };
        let password = password.clone();
        let verdict = self
            .run_argon2(move |argon2| verify(argon2, &password, &hash))
            .await?;
        match (stored, verdict) {
            (Some(stored), Verdict::Match) => Ok(Identity::Account(stored)),
            (Some(_), Verdict::Mismatch) => {
                tracing::debug!(%name, "password login refused: wrong password");
                Err(AuthError::Failed)
            }
            (Some(_), Verdict::Broken(error)) => {
                tracing::warn!(
                    %name,
                    %error,
                    "password login refused: the account's stored hash cannot be used"
                );
                Err(AuthError::Failed)
            }
            (None, _) => {
                tracing::debug!(%name, "password login refused: the name has no password");
                Err(AuthError::Failed)
            }
        }
    }

    /// Runs one argon2 computation on a blocking thread, once a permit is free. The permit
    /// moves into the blocking closure, so it is held until the computation ends even if the
    /// login that asked for it is dropped meanwhile.
    async fn run_argon2<T, F>(&self, job: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>) -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Unavailable)?;
        tokio::task::spawn_blocking(move || {
            let result = job(&Argon2::default());
            drop(permit);
            result
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "a password hash task failed");
            AuthError::Unavailable
        })
    }
}

/// What checking a password against a stored hash found.
enum Verdict {
    Match,
    Mismatch,
    /// The stored hash is not one argon2 can check (corrupt, or another algorithm).
    Broken(password_hash::Error),
}

/// Verifies `password` against the PHC string `hash`, with the parameters the hash names.
fn verify(argon2: &Argon2<'_>, password: &Secret, hash: &str) -> Verdict {
    let parsed = match password_hash::PasswordHash::new(hash) {
        Ok(parsed) => parsed,
        Err(error) => return Verdict::Broken(error),
    };
    match argon2.verify_password(password.expose().as_bytes(), &parsed) {
        Ok(()) => Verdict::Match,
        Err(password_hash::Error::Password) => Verdict::Mismatch,
        Err(error) => Verdict::Broken(error),
    }
}

/// Why a token failed, for a debug line: a fixed phrase, never a part of the token.
fn token_failure(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "not an HS256 token",
        ErrorKind::MissingRequiredClaim(_) => "exp or sub missing",
        ErrorKind::InvalidAudience => "it has an audience (aud)",
        ErrorKind::InvalidClaimFormat(_) => "a claim of the wrong type",
        _ => "malformed",
    }
}

/// The name a token claims, read without checking it (for the login throttle only).
fn claimed_by_token(token: &Secret) -> Option<UserName> {
    let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(token.expose()).ok()?;
    UserName::parse(&data.claims.sub).ok()
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("accepts_tokens", &self.accepts_tokens())
            .field("max_concurrent_hashing", &self.max_hashing)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Authenticator for Accounts {
    /// A token's login claims the token's `sub` (read unchecked), so failed and locked token
    /// logins count against that name like password logins do.
    fn claimed_name(&self, attempt: &LoginAttempt) -> Option<UserName> {
        match &attempt.token {
            Some(token) => claimed_by_token(token),
            None => attempt.name.clone(),
        }
    }

    async fn authenticate(
        &self,
        attempt: &LoginAttempt,
        _client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        if let Some(token) = &attempt.token {
            return self.check_token(token);
        }
        match (&attempt.name, &attempt.password) {
            (Some(name), Some(password)) => self.check_password(name, password).await,
            (Some(name), None) => Ok(Identity::Guest(name.clone())),
            // The core answers such a login itself (bad_frame); refuse rather than guess.
            (None, _) => Err(AuthError::Failed),
        }
    }

    /// An argon2id hash (default parameters) of `password` with a fresh random salt, as a PHC
    /// string.
    async fn hash_password(
        &self,
        name: &UserName,
        password: &Secret,
    ) -> Result<PasswordHash, AuthError> {
        let password = password.clone();
        let hashed = self
            .run_argon2(move |argon2| {
                let salt = SaltString::generate(&mut OsRng);
                argon2
                    .hash_password(password.expose().as_bytes(), &salt)
                    .map(|hash| hash.to_string())
            })
            .await?;
        hashed.map(PasswordHash::new).map_err(|error| {
            tracing::error!(%name, %error, "cannot hash a password");
            AuthError::Unavailable
        })
    }
}

#[cfg(test)]
mod tests;
