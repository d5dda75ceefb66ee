//! Reading the token secret at start.

use std::io;
use std::path::{Path, PathBuf};

/// Why the accounts could not be set up. The messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The secret file cannot be read.
    #[error("cannot read the JWT secret file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The secret file is empty (or holds only a newline): anyone could sign tokens with an
    /// empty key.
    #[error("the JWT secret file {} is empty; put a long random secret in it", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the HS256 secret from `path` (the server's `--jwt-secret-file`): the file's bytes
/// without one trailing newline (`\n` or `\r\n`), as an editor or `echo` leaves it. Other
/// newlines and spaces are part of the secret. An empty secret is refused.
pub fn read_jwt_secret(path: impl AsRef<Path>) -> Result<Vec<u8>, AuthSetupError> {
    let path = path.as_ref();
    let mut secret = std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if secret.ends_with(b"\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with(b"\n") {
        secret.truncate(secret.len() - 1);
    }
    if secret.is_empty() {
        return Err(AuthSetupError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.secret");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn strips_one_trailing_newline_and_keeps_the_rest() {
        for (content, secret) in [
            (&b"s3cret\n"[..], &b"s3cret"[..]),
            (b"s3cret\r\n", b"s3cret"),
            (b"s3cret", b"s3cret"),
            (b"s3cret\n\n", b"s3cret\n"),
            (b"two\nlines\n", b"two\nlines"),
            (b" spaced \n", b" spaced "),
            (b"\n\n", b"\n"),
        ] {
            let (_dir, path) = secret_file(content);
            assert_eq!(read_jwt_secret(&path).unwrap(), secret, "{content:?}");
        }
    }

    #[test]
    fn refuses_an_empty_secret_and_names_the_file() {
        for content in [&b""[..], b"\n", b"\r\n"] {
            let (_dir, path) = secret_file(content);
            let error = read_jwt_secret(&path).unwrap_err();
            assert!(matches!(error, AuthSetupError::Empty { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("empty"), "{message}");
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.secret");
        let error = read_jwt_secret(&path).unwrap_err();
        assert!(matches!(error, AuthSetupError::Read { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}
