//! [`SharedTcp`]: a TCP socket that a connection's driver and the runtime's sweep both write to.
//!
//! On a current-thread runtime, a broadcast to a connection whose driver waits with nothing of
//! its own to write is written by the runtime itself (`sweep.rs`), with a non-blocking vectored
//! `write`, instead of waking the connection's task to write it: a broadcast to a thousand idle
//! clients then costs a thousand writes and no task switches. For that the runtime needs the
//! socket beside the transport, which reads and writes it as a stream; so the socket is shared,
//! and the outbox says who may write to it when (`outbox.rs`).

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream behind a reference count: a stream for the transport (it reads and writes it as
/// any [`AsyncRead`] + [`AsyncWrite`]), and a socket the runtime may write broadcasts to while
/// the connection's driver waits (see [`Peer::socket`](crate::Peer::socket)). Cloning it clones
/// the handle, not the connection.
#[derive(Clone, Debug)]
pub struct SharedTcp(Arc<TcpStream>);

impl SharedTcp {
    /// Shares `stream`.
    pub fn new(stream: TcpStream) -> Self {
        SharedTcp(Arc::new(stream))
    }

    /// Writes as much of `frames` as the kernel takes now, without waiting; returns how many
    /// bytes that was (fewer than all of them when the socket's buffer is full: the rest is for
    /// the driver to write once it has room). A write that fails before anything was written is
    /// an error; one that fails after is reported as what was written, and the driver meets
    /// the error again on its own next write.
    /// `frames` is used up as it goes.
    pub(crate) fn write_now(&self, frames: &mut [IoSlice<'_>]) -> io::Result<usize> {
        // `advance_slices` drops the slices written whole: none left is everything written.
        let mut rest = frames;
        let mut written = 0;
        while rest.iter().any(|frame| !frame.is_empty()) {
            match self.0.try_write_vectored(rest) {
                Ok(0) if written > 0 => break,
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if written > 0 => break,
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }
}

impl SharedTcp {
    /// Waits until the socket may take bytes, then tries `write` (again, if the readiness was
    /// stale): what tokio's own `TcpStream` does for its writes.
    fn poll_writable(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match write(&self.0) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // Into the buffer's unfilled part as it is: nothing is zeroed first.
            match self.0.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result.map(drop)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_writable(cx, |stream| stream.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_writable(cx, |stream| stream.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the kernel: there is nothing to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What tokio's own `TcpStream` does: shut the sending half down, at once.
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write))
    }
}

/// A connected pair over loopback, for tests: the shared end and the client's plain end.
#[cfg(test)]
pub(crate) async fn pair() -> (SharedTcp, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (SharedTcp::new(accepted.unwrap().0), client.unwrap())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn it_reads_writes_and_shuts_down_like_the_stream_it_shares() {
        let (mut shared, mut client) = pair().await;
        client.write_all(b"hello\n").await.unwrap();
        let mut read = [0; 6];
        shared.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"hello\n");
        shared.write_all(b"world\n").await.unwrap();
        let mut slices = [IoSlice::new(b"one\n"), IoSlice::new(b"two\n")];
        assert_eq!(shared.clone().write_now(&mut slices).unwrap(), 8);
        shared.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"world\none\ntwo\n");
    }

    #[tokio::test]
    async fn writing_now_to_a_full_socket_takes_what_fits_and_never_waits() {
        let (shared, mut client) = pair().await;
        // Nobody reads: the kernel's buffers fill, and the write stops short instead of waiting.
        let big = vec![b'x'; 32 << 20];
        let written = shared.write_now(&mut [IoSlice::new(&big)]).unwrap();
        assert!(written > 0 && written < big.len(), "wrote {written}");
        assert_eq!(shared.write_now(&mut [IoSlice::new(b"more")]).unwrap(), 0);
        drop(shared);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), written);
    }
}
