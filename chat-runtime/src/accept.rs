//! The accept loop every transport shares: take connections, one task each, until the runtime
//! begins shutting down.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::runtime::Handle;

/// Accepts connections on `listener` and spawns `session(stream, peer)` for each, until the
/// runtime behind `handle` begins shutting down. A failed accept (out of file descriptors, say)
/// is logged and retried after a short pause rather than spun on. `what` names the transport in
/// the log.
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
