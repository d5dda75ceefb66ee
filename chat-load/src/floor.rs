//! The floor: the least a line fan-out server can do, to measure the chat server against.
//!
//! `chat-load floor --listen 127.0.0.1:0` serves a minimal single-threaded line fan-out (one
//! `current_thread` tokio runtime): it reads a line, copies it once into every other client's
//! output buffer, and each client's writer writes whatever has accumulated with one `write_all`
//! each time it wakes (it is woken when its buffer goes from empty to non-empty). No names are
//! checked, there are no ids, no clock, no store, no limits, no rooms beyond the one everybody is
//! in. Whatever latency chat-load measures against it is the cost of the kernel, loopback TCP,
//! tokio and chat-load itself; the chat server's latency is reported as a ratio to the floor's,
//! measured in the same sweep on the same cores.
//!
//! It speaks just enough of the chat server's line protocol for chat-load's line client to run
//! unchanged: it asks `Enter your name:`, takes the first line as the name, answers
//! `* Welcome, NAME! You are in #general.` (chat-load then knows it is in `#general` and asks for
//! nothing more), and writes every later line as `[00:00:00] #general <NAME> TEXT`, with a fixed
//! clock. So chat-load drives it only with `--tcp ADDR` and the default `--room general`. A
//! client is in the fan-out from its name line on, and does not receive its own lines (the chat
//! server echoes a sender's own messages to it; chat-load's senders discard them).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task;

/// The first bytes every connection gets.
pub(crate) const PROMPT: &[u8] = b"Enter your name:\n";
/// What precedes the sender's name in every message line: a fixed clock and the one room.
const MESSAGE_PREFIX: &[u8] = b"[00:00:00] #general <";

/// One connection as the fan-out sees it.
struct Client {
    /// What has accumulated for its writer since it last wrote.
    out: RefCell<Vec<u8>>,
    /// Wakes the writer when `out` goes from empty to non-empty, or when the reader is done.
    wake: Notify,
    /// The reader is done: the writer writes what is left, then shuts the connection down.
    closed: Cell<bool>,
}

/// Everybody who has sent a name, in the order they did.
type Clients = Rc<RefCell<Vec<Rc<Client>>>>;

/// The answer to a name: chat-load's line client reads `* Welcome` as a login and `#general.` as
/// being in the room.
pub(crate) fn welcome(name: &[u8]) -> Vec<u8> {
    let mut line = b"* Welcome, ".to_vec();
    line.extend_from_slice(name);
    line.extend_from_slice(b"! You are in #general.\n");
    line
}

/// Writes the line every other client gets for `text` from `name` into `out` (cleared first).
pub(crate) fn message_line(out: &mut Vec<u8>, name: &[u8], text: &[u8]) {
    out.clear();
    out.extend_from_slice(MESSAGE_PREFIX);
    out.extend_from_slice(name);
    out.extend_from_slice(b"> ");
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// `line` without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Appends `bytes` to `client`'s output and wakes its writer if the output was empty.
fn push(client: &Client, bytes: &[u8]) {
    let mut out = client.out.borrow_mut();
    let was_empty = out.is_empty();
    out.extend_from_slice(bytes);
    drop(out);
    if was_empty {
        client.wake.notify_one();
    }
}

/// Listens on `addr`, which must be a loopback address (like everything chat-load drives).
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::other(format!(
            "{addr} is not a loopback address; the floor only listens on loopback"
        )));
    }
    TcpListener::bind(addr).await
}

/// Serves the floor on `listener` until accepting fails. Runs on the current thread: call it
/// inside a [`tokio::task::LocalSet`].
pub(crate) async fn serve(listener: TcpListener) -> io::Result<()> {
    let clients: Clients = Rc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        task::spawn_local(connection(stream, clients.clone()));
    }
}

/// One connection: its reader runs here, its writer in a task of its own.
async fn connection(stream: TcpStream, clients: Clients) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let me = Rc::new(Client {
        out: RefCell::new(Vec::new()),
        wake: Notify::new(),
        closed: Cell::new(false),
    });
    push(&me, PROMPT);
    let writer = task::spawn_local(write_out(write, me.clone(), clients.clone()));
    let _ = read_in(read, &me, &clients).await;
    leave(&clients, &me);
    me.closed.set(true);
    me.wake.notify_one();
    let _ = writer.await;
}

fn leave(clients: &Clients, me: &Rc<Client>) {
    clients.borrow_mut().retain(|c| !Rc::ptr_eq(c, me));
}

/// The first line is the name; every later one goes to every other client, until the end.
async fn read_in(read: OwnedReadHalf, me: &Rc<Client>, clients: &Clients) -> io::Result<()> {
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut line = Vec::new();
    if read.read_until(b'\n', &mut line).await? == 0 {
        return Ok(());
    }
    let name = trim_line_end(&line).to_vec();
    push(me, &welcome(&name));
    clients.borrow_mut().push(me.clone());
    let mut message = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        message_line(&mut message, &name, trim_line_end(&line));
        for other in clients.borrow().iter() {
            if !Rc::ptr_eq(other, me) {
                push(other, &message);
            }
        }
    }
}

/// Writes whatever has accumulated, in one `write_all` per wake, until the reader is done and
/// everything is written (or the connection fails).
async fn write_out(mut write: OwnedWriteHalf, me: Rc<Client>, clients: Clients) {
    let mut spare = Vec::new();
    loop {
        me.wake.notified().await;
        std::mem::swap(&mut *me.out.borrow_mut(), &mut spare);
        if !spare.is_empty() && write.write_all(&spare).await.is_err() {
            // Nobody reads this connection any more: stop queueing for it.
            leave(&clients, &me);
            me.out.borrow_mut().clear();
            return;
        }
        spare.clear();
        if me.closed.get() && me.out.borrow().is_empty() {
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// `chat-load floor`: serves on `listen` until SIGINT, after printing `listening tcp://ADDR` on
/// stdout (as the chat server does, for scripts to wait for).
pub(crate) fn main(listen: SocketAddr) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = bind(listen).await?;
        println!("listening tcp://{}", listener.local_addr()?);
        use std::io::Write as _;
        io::stdout().flush()?;
        tokio::select! {
            served = serve(listener) => served,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::client::{self, Stamp, Target, find_stamp, stamped_text};

    /// Bounds every wait in these tests.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn message_lines_carry_the_stamp_to_chat_load() {
        let stamp = Stamp {
            run: 0xdead_beef,
            sender: 9,
            seq: 12,
            global: 345,
            nanos: 6_789_000,
        };
        let text = stamped_text(stamp, 64);
        let mut line = Vec::new();
        message_line(
            &mut line,
            b"s9",
            trim_line_end(format!("{text}\r\n").as_bytes()),
        );
        assert_eq!(
            line,
            format!("[00:00:00] #general <s9> {text}\n").into_bytes()
        );
        assert_eq!(find_stamp(&line), Some(stamp));
        assert_eq!(find_stamp(&welcome(b"r1")), None);
        assert_eq!(find_stamp(PROMPT), None);
    }

    /// Starts a floor on 127.0.0.1:0 in this test's `LocalSet`.
    async fn start() -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        task::spawn_local(serve(listener));
        addr
    }

    async fn read_line(read: &mut BufReader<OwnedReadHalf>) -> String {
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, read.read_line(&mut line))
            .await
            .expect("a line within the patience")
            .unwrap();
        line
    }

    #[test]
    fn refuses_addresses_beyond_loopback() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refused = runtime.block_on(bind("0.0.0.0:0".parse().unwrap()));
        assert!(refused.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_line_reaches_exactly_the_other_two() {
        task::LocalSet::new()
            .run_until(async {
                let addr = start().await;
                let mut clients = Vec::new();
                for name in ["a", "b", "c"] {
                    let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
                    let mut read = BufReader::new(read);
                    assert_eq!(read_line(&mut read).await, "Enter your name:\n");
                    write
                        .write_all(format!("{name}\n").as_bytes())
                        .await
                        .unwrap();
                    assert_eq!(
                        read_line(&mut read).await,
                        format!("* Welcome, {name}! You are in #general.\n")
                    );
                    clients.push((name, read, write));
                }
                for i in 0..3 {
                    let (name, _, write) = &mut clients[i];
                    let name = *name;
                    write
                        .write_all(format!("hello from {name}\n").as_bytes())
                        .await
                        .unwrap();
                    for (j, (_, read, _)) in clients.iter_mut().enumerate() {
                        if j != i {
                            assert_eq!(
                                read_line(read).await,
                                format!("[00:00:00] #general <{name}> hello from {name}\n")
                            );
                        }
                    }
                }
                // Everybody says goodbye; the floor writes what is left, then closes. Nothing
                // is left: nobody got its own line, nor anyone's twice.
                for (_, _, write) in &mut clients {
                    write.shutdown().await.unwrap();
                }
                for (name, read, _) in &mut clients {
                    let mut rest = String::new();
                    tokio::time::timeout(PATIENCE, read.read_to_string(&mut rest))
                        .await
                        .expect("the floor closes within the patience")
                        .unwrap();
                    assert_eq!(rest, "", "{name} got more than the other two's lines");
                }
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn chat_load_logs_in_and_reads_stamps() {
        task::LocalSet::new()
            .run_until(async {
                let addr = start().await;
                let target = Target::Tcp(addr);
                let connect = |name: &'static str| {
                    let target = target.clone();
                    async move {
                        tokio::time::timeout(
                            PATIENCE,
                            client::connect(&target, None, name, Some("general")),
                        )
                        .await
                        .expect("a login within the patience")
                        .unwrap()
                    }
                };
                let (_receiver_writer, mut receiver) = connect("r0").await;
                let (mut sender, _sender_reader) = connect("s0").await;
                let stamp = Stamp {
                    run: 1,
                    sender: 0,
                    seq: 1,
                    global: 0,
                    nanos: 42,
                };
                sender
                    .say("general", &stamped_text(stamp, 64))
                    .await
                    .unwrap();
                let got = tokio::time::timeout(PATIENCE, receiver.next())
                    .await
                    .expect("a delivery within the patience");
                assert_eq!(got, Some(Some(stamp)));
            })
            .await;
    }
}
