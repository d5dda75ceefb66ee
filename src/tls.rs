//! TLS for the bundled server: [`TlsFiles`] loads a certificate chain and its private key from
//! PEM files (`--tls-cert`, `--tls-key`) into the rustls configuration that
//! [`ServerConfig::tls`](crate::server::ServerConfig::tls) takes, and says in a [`TlsError`]
//! which file is wrong and why, so that a bad file stops the server at start rather than at the
//! first client.
//!
//! With it, both listeners speak TLS: `wss://HOST:PORT/chat` and the page over `https://` on
//! the WebSocket port, lines inside TLS on the line port. Certificates are not reloaded while
//! the server runs; restart it to use renewed files. An application with other needs (client
//! certificates, reloading) builds its own [`rustls::ServerConfig`] and puts it in
//! `ServerConfig::tls` directly: this module re-exports the `rustls` and `tokio_rustls` the
//! engine is built with.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use rustls;
pub use tokio_rustls;

/// The two PEM files of a TLS server: a certificate chain and its private key. They may be the
/// same file, holding both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first, then any intermediates
    /// (`-----BEGIN CERTIFICATE-----` blocks).
    pub cert: PathBuf,
    /// The private key of the first certificate: PKCS#8 (`BEGIN PRIVATE KEY`), RSA
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`). The first key in the file is
    /// used.
    pub key: PathBuf,
}

/// Which of the two files a [`TlsError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain ([`TlsFiles::cert`]).
    Certificate,
    /// The private key ([`TlsFiles::key`]).
    Key,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Certificate => "TLS certificate file",
            TlsFile::Key => "TLS key file",
        })
    }
}

/// Why [`TlsFiles::load`] could not make a TLS configuration. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, not allowed, a directory, …).
    #[error("cannot read the {file} {}: {source}", path.display())]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file has PEM blocks that cannot be decoded.
    #[error("the {file} {} is not valid PEM: {reason}", path.display())]
    Pem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong in it.
        reason: String,
    },
    /// The certificate file has no certificate in it.
    #[error(
        "the {file} {} holds no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)",
        path.display(),
        file = TlsFile::Certificate
    )]
    NoCertificate {
        /// Its path.
        path: PathBuf,
    },
    /// The key file has no private key in it.
    #[error(
        "the {file} {} holds no private key (expected a PEM block `BEGIN PRIVATE KEY` (PKCS#8), \
         `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` (SEC1))",
        path.display(),
        file = TlsFile::Key
    )]
    NoKey {
        /// Its path.
        path: PathBuf,
    },
    /// rustls refused the pair: a key it cannot use, or one that is not the certificate's.
    #[error(
        "the {key_file} {} and the {cert_file} {} do not make a TLS configuration: {source}",
        key.display(),
        cert.display(),
        key_file = TlsFile::Key,
        cert_file = TlsFile::Certificate
    )]
    Rejected {
        /// The certificate file's path.
        cert: PathBuf,
        /// The key file's path.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

impl TlsFiles {
    /// Reads both files and builds the server's TLS configuration: TLS 1.2 and 1.3 with rustls's
    /// safe defaults (the `ring` provider), no client certificates.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let cert_pem = read(TlsFile::Certificate, &self.cert)?;
        let key_pem = read(TlsFile::Key, &self.key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| pem_error(TlsFile::Certificate, &self.cert, error))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        }
        let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(TlsError::NoKey {
                    path: self.key.clone(),
                });
            }
            Err(error) => return Err(pem_error(TlsFile::Key, &self.key, error)),
        };
        let rejected = |source| TlsError::Rejected {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rejected)?;
        Ok(Arc::new(config))
    }
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_owned(),
        source,
    })
}

/// A PEM decoding error in words a person can act on.
fn pem_error(file: TlsFile, path: &Path, error: pem::Error) -> TlsError {
    let reason = match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a block has no `{}` line (is the file cut short?)",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "a malformed `-----BEGIN` line: `{}`",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(reason) => format!("a block is not valid base64 ({reason})"),
        other => other.to_string(),
    };
    TlsError::Pem {
        file,
        path: path.to_owned(),
        reason,
    }
}
