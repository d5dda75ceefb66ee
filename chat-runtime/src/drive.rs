//! [`drive`]: the one loop every transport runs per connection.
//!
//! A connection's task does four things, and only one at a time, so it needs no locks and
//! every frame queued since the last write goes out with one flush (while it waits, the runtime
//! may write broadcasts to its socket, below; it takes the socket back before it does anything
//! else): it **writes** what the
//! runtime queued for the client (every write, pings included, raced against an overflow, so a
//! client whose queue overflows while a write to it is blocked is cut off at once, and bounded
//! by the write timeout: [`guarded`]); it **reads** the client's next frame or line, but only
//! while [`Connection::may_read`] allows it (a client that asks faster than it reads is paced,
//! never dropped for it); it **pings** the client at a fixed interval, where the transport has
//! pings; and it **ends** the connection when the client goes, stays silent past the idle
//! timeout, floods, or the runtime closes it.
//!
//! Under load nearly every wake-up is for the outbox: a broadcast woke the task. So the loop
//! polls the read and the timer with a waker of their own, and polls them again only once that
//! waker was woken; a wake-up for the outbox costs a look at the outbox and the write, as in a
//! minimal fan-out server, not a read that finds nothing and a timer that is not due. On a
//! current-thread runtime, a waiting connection whose peer has a plain TCP socket
//! ([`Peer::socket`]) is not even woken for a broadcast: it leaves the socket with its outbox,
//! and the runtime writes the broadcast itself (`sweep.rs`) until the loop takes it back.
//!
//! What differs between transports (how a frame is read, what it means, how a batch is written,
//! the last words) is a [`Peer`]'s: the WebSocket transport's peer speaks frames, the line
//! transport's lines, and both run on any byte stream.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::connection::{Connection, RuntimeStopped};
use crate::deadline::within;
use crate::outbox::{Closing, Outbound, Outgoing};
use crate::socket::SharedTcp;
use crate::wire::join;

/// Why a connection ends. The peer turns it into its last words (a close code, a last line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed the connection, or the socket failed: nothing more can be sent.
    Gone,
    /// The runtime closed it (slow consumer, login timeout, shutdown).
    Closed(Closing),
    /// The client sent nothing for the idle timeout.
    Idle,
    /// The client stayed over its rate limit for the flood grace period.
    Flood,
    /// The client sent a frame over the size limit.
    TooLarge,
    /// The client asked to leave, and everything it was owed is written.
    Quit,
    /// A write to the client did not finish within the write timeout (part of a frame may have
    /// been written: nothing more can be sent).
    WriteTimedOut,
    /// The runtime has stopped.
    Stopped,
}

impl From<RuntimeStopped> for Ending {
    fn from(_: RuntimeStopped) -> Self {
        Ending::Stopped
    }
}

/// What a batch write tells the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// End the connection this way (after the batch was written).
    End(Ending),
}

/// A transport's side of one connection: the byte stream and what its frames mean.
pub trait Peer: Send {
    /// One unit read from the client: a frame, a line, or the read error that ended it.
    type Item: Send;

    /// Polls for the client's next item, as [`Stream::poll_next`](futures_util::Stream)
    /// does: `Ready(None)` once the client is gone, and again on every call after that.
    /// `Pending` means `cx`'s waker will be woken when there may be more, and until then
    /// [`drive`] does not poll again: a wake-up that brings the client something to write costs
    /// no read.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Item>>;

    /// Acts on one item (checks it against the rate limit, decodes it, hands the command to
    /// `connection`); `Err` ends the connection.
    fn on_item(
        &mut self,
        item: Self::Item,
        connection: &mut Connection,
    ) -> impl Future<Output = Result<(), Ending>> + Send;

    /// Writes every frame of `batch` and flushes once, emptying it. `connection` is there for a
    /// peer whose state follows the events it writes and may answer them (the line session).
    fn write(
        &mut self,
        batch: &mut Vec<Outbound>,
        connection: &Connection,
    ) -> impl Future<Output = io::Result<Flow>> + Send;

    /// Sends a keep-alive probe (a WebSocket ping). Called only when [`Pacing::ping`] is set.
    fn ping(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// The plain TCP socket beneath, if there is one and the peer has nothing of its own
    /// half-written on it (a WebSocket peer's pong due). While [`drive`] waits, a current-thread
    /// runtime then writes broadcasts to it itself, without waking the connection's task
    /// (frames that carry an [`Outbound::event`] always go through [`write`](Peer::write)).
    /// `None` (the default) leaves every write to the peer: a TLS stream, an in-memory one.
    fn socket(&self) -> Option<&SharedTcp> {
        None
    }

    /// Whether to read more now (the line transport stops reading after `/quit`).
    fn reading(&self) -> bool {
        true
    }

    /// Whether [`drive`] may take the client's next item now, in the same turn of the core as
    /// the items just handed over, before their answers are written. A peer that answers some
    /// items itself, writing to the client at once rather than through the runtime (the line
    /// transport's `/help`), says `false` when the next item may be one of those: what it wrote
    /// would come before the answers to the items before it.
    fn reads_ahead(&self) -> bool {
        true
    }

    /// The last words: a close frame, a last line. The connection is closed after it.
    fn finish(&mut self, ending: Ending) -> impl Future<Output = ()> + Send;
}

/// The timings of [`drive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// How long one batched write may take before the client is treated as gone.
    pub write_timeout: Duration,
    /// A client that sends nothing (not even a pong) for this long is disconnected.
    pub idle_timeout: Duration,
    /// How often a quiet client is pinged; `None` for a transport without pings (a zero period
    /// is taken as `None`).
    pub ping: Option<Duration>,
}

/// What woke the connection's task, in the order the loop looks.
enum Woke<Item> {
    /// Frames to write, or the runtime's word to close.
    Outgoing(Outgoing),
    /// The client's next item, or `None` at its end.
    Read(Option<Item>),
    /// The idle deadline or a ping is due.
    Timer,
}

/// The waker [`drive`] polls the read and the timer with: it notes that one of them woke the
/// task, so a wake-up for the outbox (nearly every one, under load) polls neither.
#[derive(Default)]
struct Woken {
    /// The read or the timer woke the task since the loop last looked.
    flag: AtomicBool,
    /// The connection's task.
    task: AtomicWaker,
}

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Runs one connection until it ends, then says the peer's last words. Dropping the
/// connection afterwards tells the runtime it is gone.
///
/// Not an `async fn`: an `async fn` keeps its arguments twice in its state, as they were passed
/// and as the locals its body uses (hundreds of bytes per idle connection). The `async move`
/// block uses them where they were captured.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep the arguments twice in every connection's task"
)]
pub fn drive<P: Peer>(
    mut peer: P,
    mut connection: Connection,
    pacing: Pacing,
) -> impl Future<Output = Ending> {
    async move {
        let mut batch: Vec<Outbound> = Vec::new();
        // One timer for the idle timeout and the pings. It is moved only when it fires: a read
        // just notes the time.
        let ping = pacing.ping.filter(|period| !period.is_zero());
        let mut heard = Instant::now();
        let mut ping_at = ping.map(|period| heard + period);
        let timer = tokio::time::sleep_until(wake_at(heard + pacing.idle_timeout, ping_at));
        tokio::pin!(timer);
        // The read and the timer are polled with `others`, and only again once it was woken
        // (or, for the read, after it gave an item or was polled with another waker).
        let woken = Arc::new(Woken::default());
        let others = Waker::from(woken.clone());
        let (mut read_waits, mut timer_waits) = (false, false);
        // What happens after a wake-up (a write, a read's handling, a ping) is boxed: the task of
        // an idle connection then holds only what it waits on, not the largest of those states.
        let ending = loop {
            let wake = std::future::poll_fn(|cx| {
                if let Poll::Ready(outgoing) = connection.poll_next(cx, &mut batch, peer.socket()) {
                    return Poll::Ready(Woke::Outgoing(outgoing));
                }
                // Register first, then look: a wake-up in between is seen now or wakes the task.
                woken.task.register(cx.waker());
                if woken.flag.swap(false, Ordering::AcqRel) {
                    (read_waits, timer_waits) = (false, false);
                }
                let mut others = Context::from_waker(&others);
                // A paced client is not read: the outbox wakes the task when it may be again.
                if !read_waits && peer.reading() && connection.may_read() {
                    match peer.poll_read(&mut others) {
                        Poll::Ready(item) => return Poll::Ready(Woke::Read(item)),
                        Poll::Pending => read_waits = true,
                    }
                }
                if !timer_waits {
                    match timer.as_mut().poll(&mut others) {
                        Poll::Ready(()) => return Poll::Ready(Woke::Timer),
                        Poll::Pending => timer_waits = true,
                    }
                }
                Poll::Pending
            })
            .await;
            match wake {
                Woke::Outgoing(outgoing) => {
                    let timeout = pacing.write_timeout;
                    let written =
                        Box::pin(write(&mut peer, &connection, &mut batch, timeout)).await;
                    // The written batch's vector is let go rather than swapped back into the
                    // outbox at the next drain: both would otherwise keep the largest batch's
                    // capacity (a login's burst) for as long as the connection is idle. A write
                    // costs a hundred times the allocation this brings back.
                    batch = Vec::new();
                    match (outgoing, written) {
                        (_, Err(ending)) | (Outgoing::Frames, Ok(Flow::End(ending))) => {
                            break ending;
                        }
                        (Outgoing::Frames, Ok(Flow::Continue)) => {}
                        (Outgoing::Close(reason), Ok(_)) => break Ending::Closed(reason),
                    }
                }
                Woke::Read(item) => {
                    // The socket is the driver's again: handling the item may write to it.
                    connection.unpark();
                    heard = Instant::now();
                    // Polled again next time: it gave an item, and reading ahead polls it with
                    // a waker of its own.
                    read_waits = false;
                    let Some(item) = item else { break Ending::Gone };
                    if let Err(ending) = Box::pin(take_in(&mut peer, &mut connection, item)).await {
                        break ending;
                    }
                }
                Woke::Timer => {
                    connection.unpark();
                    timer_waits = false;
                    let (now, idle_at) = (Instant::now(), heard + pacing.idle_timeout);
                    if now >= idle_at {
                        break Ending::Idle;
                    }
                    if let (Some(at), Some(period)) = (ping_at, ping)
                        && now >= at
                    {
                        let pinged =
                            Box::pin(guarded(&connection, pacing.write_timeout, peer.ping())).await;
                        match pinged {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break Ending::Gone,
                            Err(ending) => break ending,
                        }
                        // The next ping is a period after this one went out, however late.
                        ping_at = Some(Instant::now() + period);
                    }
                    timer.as_mut().reset(wake_at(idle_at, ping_at));
                }
            }
        };
        Box::pin(peer.finish(ending)).await;
        ending
    }
}

/// Acts on `first` and on every further item the client has already sent (as far as the
/// window allows), and only then lets the core run: at load, the core takes a client's burst in
/// one turn, and the delivery task delivers a sender's run of messages to a room together
/// (`fan_out.rs`).
async fn take_in<P: Peer>(
    peer: &mut P,
    connection: &mut Connection,
    first: P::Item,
) -> Result<(), Ending> {
    connection.hold();
    let mut item = first;
    let taken = loop {
        if let Err(ending) = peer.on_item(item, connection).await {
            break Err(ending);
        }
        if !peer.reading() || !peer.reads_ahead() || !connection.may_read() {
            break Ok(());
        }
        // Only what is there already: a read that would wait (or the client's end, which the
        // loop finds again) is left to the loop.
        match peer.poll_read(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(next)) => item = next,
            Poll::Ready(None) | Poll::Pending => break Ok(()),
        }
    };
    connection.release();
    taken
}

/// When the loop's timer must next fire: at the idle deadline or the next ping, whichever
/// comes first.
fn wake_at(idle_at: Instant, ping_at: Option<Instant>) -> Instant {
    ping_at.map_or(idle_at, |ping_at| ping_at.min(idle_at))
}

/// Writes a batch (see [`guarded`]).
async fn write<P: Peer>(
    peer: &mut P,
    connection: &Connection,
    batch: &mut Vec<Outbound>,
    timeout: Duration,
) -> Result<Flow, Ending> {
    if batch.is_empty() {
        return Ok(Flow::Continue);
    }
    let written = std::pin::pin!(peer.write(batch, connection));
    match guard(connection, timeout, written).await {
        Ok(Ok(flow)) => Ok(flow),
        Ok(Err(_)) => Err(Ending::Gone),
        Err(ending) => Err(ending),
    }
}

/// Writes the bytes of every frame of `batch` to `socket`, then flushes: with vectored writes
/// where the socket takes them, so no frame is copied, or else joined into one buffer. A batch
/// costs one `write` either way (more only when the kernel takes part of it).
pub async fn write_frames<W>(socket: &mut W, batch: &[Outbound]) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    match batch {
        [] => {}
        [one] => socket.write_all(&one.bytes).await?,
        _ if socket.is_write_vectored() => {
            // Empty frames are left out: a write of nothing but empty slices writes 0 bytes.
            let mut slices: Vec<IoSlice<'_>> = batch
                .iter()
                .filter(|o| !o.bytes.is_empty())
                .map(|o| IoSlice::new(&o.bytes))
                .collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let written = socket.write_vectored(rest).await?;
                if written == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, written);
            }
        }
        _ => {
            let joined = join(batch.iter().map(|o| &o.bytes[..]));
            socket.write_all(&joined).await?;
        }
    }
    socket.flush().await
}

/// Runs one write to the client, giving up when `timeout` passes
/// ([`Ending::WriteTimedOut`]) or, at once, when the client's queue overflows while the write
/// waits on it ([`Ending::Gone`]). Either way part of a frame may have been written, so the
/// peer must send nothing more. Every write of a transport goes through here.
pub async fn guarded<F: Future>(
    connection: &Connection,
    timeout: Duration,
    write: F,
) -> Result<F::Output, Ending> {
    guard(connection, timeout, std::pin::pin!(write)).await
}

/// [`guarded`] for a write pinned by the caller: the write's state is then kept once, where the
/// caller pinned it, rather than both as an argument and pinned here (a connection's every
/// batch goes through this, and its state is allocated and moved with it).
async fn guard<F: Future>(
    connection: &Connection,
    timeout: Duration,
    mut write: Pin<&mut F>,
) -> Result<F::Output, Ending> {
    // Most writes finish at once (the kernel has room): they need neither a timer nor a
    // watch on the queue.
    if let Some(done) = write.as_mut().now_or_never() {
        return Ok(done);
    }
    let overflow = async {
        while connection.closed().await != Closing::SlowConsumer {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        written = within(timeout, write) => written.map_err(|_| Ending::WriteTimedOut),
        () = overflow => Err(Ending::Gone),
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use bytes::Bytes;

    use super::*;

    /// A socket that takes at most `most` bytes per write and counts its writes.
    struct Socket {
        vectored: bool,
        most: usize,
        written: Vec<u8>,
        writes: usize,
    }

    impl Socket {
        fn new(vectored: bool, most: usize) -> Self {
            Socket {
                vectored,
                most,
                written: Vec::new(),
                writes: 0,
            }
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.most);
            self.written.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.most - n);
                self.written.extend_from_slice(&buf[..take]);
                n += take;
            }
            self.writes += 1;
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn batch() -> Vec<Outbound> {
        ["one\n", "", "two\n", "", "three\n", ""]
            .into_iter()
            .map(|text| Outbound {
                bytes: Bytes::from_static(text.as_bytes()),
                event: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_is_written_whole_in_one_write_where_the_kernel_takes_it() {
        for vectored in [true, false] {
            let mut socket = Socket::new(vectored, usize::MAX);
            write_frames(&mut socket, &batch()).await.unwrap();
            assert_eq!(socket.written, b"one\ntwo\nthree\n");
            assert_eq!(socket.writes, 1, "vectored: {vectored}");
        }
    }

    #[tokio::test]
    async fn a_batch_of_empty_frames_writes_nothing_and_succeeds() {
        let empty = vec![
            Outbound {
                bytes: Bytes::new(),
                event: None,
            };
            2
        ];
        for vectored in [true, false] {
            let mut socket = Socket::new(vectored, usize::MAX);
            write_frames(&mut socket, &empty).await.unwrap();
            assert!(socket.written.is_empty());
        }
    }

    #[tokio::test]
    async fn a_write_the_kernel_takes_part_of_goes_on_where_it_stopped() {
        for vectored in [true, false] {
            let mut socket = Socket::new(vectored, 3);
            write_frames(&mut socket, &batch()).await.unwrap();
            assert_eq!(socket.written, b"one\ntwo\nthree\n", "vectored: {vectored}");
        }
    }
}
