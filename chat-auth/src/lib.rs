//! The bundled chat server's accounts. So far: reading the HS256 token secret
//! ([`read_jwt_secret`]) from the server's `--jwt-secret-file`.

mod setup;

pub use setup::{AuthSetupError, read_jwt_secret};
