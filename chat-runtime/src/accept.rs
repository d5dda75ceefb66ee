//! The accept loop every transport shares: take connections, one task each, until the runtime
//! begins shutting down; optionally with a handshake (TLS, say) that each connection finishes in
//! its own task, within a time limit, before its session starts.
//!
//! The runtime knows nothing of TLS: a transport hands [`accept_with_handshake_until_closing`] a
//! [`Handshake`] (a name for the log, a limit, and a function from the accepted socket to the
//! stream the session runs on), and both transports share this one loop, its timeout and its
//! log line for a client that did not get through.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::deadline::within;
use crate::runtime::Handle;

/// Accepts connections on `listener` and spawns `session(stream, peer)` for each, until the
/// runtime behind `handle` begins shutting down. Every accepted socket gets `TCP_NODELAY`
/// (otherwise small frames wait for delayed ACKs, 40 ms on Linux). A failed accept (out of file
/// descriptors, say) is logged and retried after a short pause rather than spun on. `what` names
/// the transport in the log.
pub async fn accept_until_closing<S, F>(
    listener: TcpListener,
    handle: &Handle,
    what: &'static str,
    mut session: S,
) -> io::Result<()>
where
    S: FnMut(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let closing = handle.closing();
    loop {
        tokio::select! {
            () = closing.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(session(stream, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, transport = what, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A handshake each accepted socket goes through before its session starts, such as a TLS
/// handshake: `run` turns the socket into the stream the session is served on.
#[derive(Clone, Debug)]
pub struct Handshake<H> {
    /// What the handshake is (`"TLS"`), for the log line of a connection that failed it.
    pub name: &'static str,
    /// How long a client may take to finish it; a client that is silent or slow for longer is
    /// disconnected, so an idle socket holds nothing for long.
    pub timeout: Duration,
    /// The byte every client of this protocol sends first, if there is one. A client whose
    /// first byte differs (a plain-text or HTTP client on a TLS port) is closed before `run`
    /// sees it, with nothing sent back: no error page, no TLS alert.
    pub first_byte: Option<u8>,
    /// The handshake itself: from the accepted socket to the stream the session runs on.
    pub run: H,
}

/// The first byte of a TLS connection: the client's hello is in a handshake record (content
/// type 22), in every TLS version.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

impl<H> Handshake<H> {
    /// A TLS handshake: `run` is the TLS library's accept (tokio-rustls's
    /// `TlsAcceptor::accept`, say), and a client whose first byte does not open a TLS handshake
    /// record is turned away before it.
    pub fn tls(timeout: Duration, run: H) -> Self {
        Handshake {
            name: "TLS",
            timeout,
            first_byte: Some(TLS_HANDSHAKE_RECORD),
            run,
        }
    }
}

/// Waits for the client's first byte without consuming it, and fails unless it is `expected`.
async fn expect_first_byte(stream: &TcpStream, expected: u8, name: &str) -> io::Result<()> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client closed the connection before its handshake",
        ));
    }
    if first[0] != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the client does not speak {name}: its first byte is {:#04x} (`{}`), not \
                 {expected:#04x}",
                first[0],
                first[0].escape_ascii()
            ),
        ));
    }
    Ok(())
}

/// [`accept_until_closing`] with a [`Handshake`] in front of each session: every accepted
/// socket is handed to its own task, which runs `handshake.run` (within `handshake.timeout`),
/// then `session(stream, peer)` on the stream it returned. A connection whose handshake fails or
/// times out (a plain-text client on a TLS port, a silent socket) is closed with one log line at
/// info level naming its peer and saying why, and the listener goes on serving the others.
/// Nothing is attached to the runtime before the handshake is done (the session does that), so a
/// client stuck in the handshake takes no connection slot. Handshakes still under way when the runtime begins
/// shutting down are dropped.
pub async fn accept_with_handshake_until_closing<H, HF, T, S, F>(
    listener: TcpListener,
    handle: &Handle,
    what: &'static str,
    handshake: Handshake<H>,
    session: S,
) -> io::Result<()>
where
    H: Fn(TcpStream) -> HF + Send + Sync + 'static,
    HF: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
    S: Fn(T, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let Handshake {
        name,
        timeout,
        first_byte,
        run,
    } = handshake;
    let run = Arc::new(run);
    let session = Arc::new(session);
    let closing = handle.closing();
    accept_until_closing(listener, handle, what, move |stream, peer| {
        let (run, session, closing) = (run.clone(), session.clone(), closing.clone());
        async move {
            let handshake = async {
                if let Some(expected) = first_byte {
                    expect_first_byte(&stream, expected, name).await?;
                }
                run(stream).await
            };
            let finished = tokio::select! {
                finished = within(timeout, handshake) => finished,
                () = closing.cancelled() => return,
            };
            match finished {
                Ok(Ok(stream)) => session(stream, peer).await,
                Ok(Err(error)) => tracing::info!(
                    %peer,
                    transport = what,
                    handshake = name,
                    %error,
                    "connection closed: its handshake failed"
                ),
                Err(_) => tracing::info!(
                    %peer,
                    transport = what,
                    handshake = name,
                    timeout_ms = timeout.as_millis(),
                    "connection closed: its handshake did not finish in time"
                ),
            }
        }
    })
    .await
}
