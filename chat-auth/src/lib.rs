//! The bundled chat server's accounts: an [`Authenticator`](chat_runtime::Authenticator) that
//! checks passwords against the hashes in the [`Store`](chat_store::Store) and HS256 login
//! tokens against a shared secret.
//!
//! An app that knows its users implements `Authenticator` itself; this crate is for the server
//! that keeps its own accounts (`register` with a password, `login` with a password or a
//! token, as the protocol's "Accounts and tokens" section says). Build one with
//! [`Accounts::new`], add the token secret with [`Accounts::with_jwt_secret`] (read from the
//! `--jwt-secret-file` with [`read_jwt_secret`]), and hand it to the runtime.
//!
//! ```
//! use std::sync::Arc;
//! use chat_auth::Accounts;
//! use chat_store::MemoryStore;
//!
//! let accounts = Accounts::new(Arc::new(MemoryStore::new()))
//!     .with_jwt_secret(b"a long random secret".to_vec());
//! # let _ = accounts;
//! ```
//!
//! # Why it works the way it does
//!
//! - **Passwords are hashed with argon2id** (the argon2 crate's default parameters, m=19456 KiB,
//!   t=2, p=1, the OWASP minimum) and a random salt per hash, and kept as a PHC string, which
//!   carries its own parameters, so a later change of parameters still verifies old hashes.
//! - **Hashing runs on blocking threads** ([`tokio::task::spawn_blocking`]): one hash takes a
//!   core for tens of milliseconds, which would stall every other task of a tokio worker.
//! - **At most a few hashes run at once** (a semaphore with one permit per CPU, at least 2):
//!   each takes 19 MiB and a core, so a storm of logins queues for the permits instead of
//!   starting hundreds of hashes that exhaust memory and make every login slow. A permit is
//!   held by the blocking computation itself, so a login that is abandoned while its hash runs
//!   frees the permit only when the hash is done. (The runtime throttles failed logins per name
//!   and per address before they get here; this bounds what is left.)
//! - **A login for a name without a password costs the same as any other**: it is verified
//!   against a fixed dummy hash and fails, so the answer time does not tell whether the name
//!   is an account.
//! - **Tokens are pinned to HS256**: the algorithm in the token's header is not trusted, so a
//!   token with `alg: none`, another HMAC size or a public-key algorithm fails. `exp` and `sub`
//!   are required, `sub` must be a valid name, and `exp` is checked with **no leeway** (the jwt
//!   crate's default is 60 s): an expired token fails at once. A token that carries `nbf` is
//!   refused before that time, and one that carries `aud` is refused (this server has no
//!   audience to match it with, and RFC 7519 says such a token must then be rejected); `iss` is
//!   ignored.
//! - **No secret is ever logged**: failures are traced at debug level with their kind (a wrong
//!   password, an expired token...), never with a password, a hash or a token, and every
//!   failure is the same [`AuthError::Failed`](chat_core::AuthError::Failed) to the client.

mod accounts;
mod setup;

pub use accounts::Accounts;
pub use setup::{AuthSetupError, read_jwt_secret};
