//! [`RedisServer`]: a throwaway `redis-server` for tests (test support, not for production).
//!
//! This crate's tests and the root package's integration tests run against a real Redis: each
//! test starts its own on a free loopback port, in a fresh temporary directory, with every
//! write fsynced to its append-only file. A test can stop it and start it again on the same
//! port and directory, which is a Redis restart that keeps the data, and the server is killed
//! when the value is dropped, so a failing test leaves no process behind.
//!
//! Readiness is an event, not a guess: the server is ready when it prints `Ready to accept
//! connections` and then answers `PING`, within a bounded wait; if it exits first, its output is
//! in the error. It needs `redis-server` (7.0 or newer) on `PATH`.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long a server may take to get ready, or to exit after `SHUTDOWN`.
const WITHIN: Duration = Duration::from_secs(10);
/// How many free ports [`RedisServer::launch`] tries, in case another process takes one
/// between the moment it is found free and the moment Redis binds it.
const PORT_TRIES: usize = 5;

/// A `redis-server` process on `127.0.0.1`, for tests (see the module docs).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use chat_cluster::redis_server::RedisServer;
///
/// let mut redis = RedisServer::launch().await?;
/// let url = redis.url(); // redis://127.0.0.1:<port>/
/// redis.stop().await?; // clean shutdown: the append-only file is complete
/// redis.start().await?; // the same port and data
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    /// The server's output, line by line; closed once the process has exited.
    output: mpsc::UnboundedReceiver<String>,
}

/// Why a start failed, and whether another port may do better.
struct StartError {
    error: io::Error,
    port_taken: bool,
}

impl RedisServer {
    /// Starts a server on a free loopback port, in a new temporary directory, with
    /// `--save "" --appendonly yes --appendfsync always`, and returns once it answers `PING`.
    ///
    /// Fails if `redis-server` is not installed (the error says how to install it), or if it
    /// does not get ready within 10 s (the error holds its output).
    pub async fn launch() -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("redis-server").tempdir()?;
        let mut last = None;
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            match run(dir.path(), port).await {
                Ok(running) => {
                    return Ok(RedisServer {
                        dir,
                        port,
                        running: Some(running),
                    });
                }
                Err(StartError {
                    error,
                    port_taken: true,
                }) => last = Some(error),
                Err(StartError { error, .. }) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port tried")))
    }

    /// The URL to connect to: `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on, the same across [`stop`](Self::stop) and
    /// [`start`](Self::start).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shuts the server down cleanly (`SHUTDOWN NOSAVE`: the append-only file is already
    /// complete) and waits for the process to exit; kills it if it has not within 10 s. Stopping
    /// a stopped server does nothing.
    pub async fn stop(&mut self) -> io::Result<()> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        let shutdown = async {
            let client = redis::Client::open(self.url()).map_err(io::Error::other)?;
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(io::Error::other)?;
            // The server closes the connection instead of answering.
            let _ = redis::cmd("SHUTDOWN")
                .arg("NOSAVE")
                .query_async::<()>(&mut connection)
                .await;
            io::Result::Ok(())
        };
        let exited = async { while running.output.recv().await.is_some() {} };
        let asked = timeout(WITHIN, shutdown).await;
        if !matches!(asked, Ok(Ok(()))) || timeout(WITHIN, exited).await.is_err() {
            running.child.kill()?;
        }
        running.child.wait()?;
        Ok(())
    }

    /// Starts the stopped server again on the same port and directory: it loads its
    /// append-only file, so it holds what it held when it stopped. Returns once it answers
    /// `PING`; fails if it is running, or if the port is no longer free.
    pub async fn start(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("redis-server on port {} is already running", self.port),
            ));
        }
        let running = run(self.dir.path(), self.port)
            .await
            .map_err(|failed| failed.error)?;
        self.running = Some(running);
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            // Best effort: the process may have exited already.
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Starts `redis-server` in `dir` on `port` and waits until it answers `PING`.
async fn run(dir: &Path, port: u16) -> Result<Running, StartError> {
    let failed = |error| StartError {
        error,
        port_taken: false,
    };
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .args(["--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            failed(match error.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    io::ErrorKind::NotFound,
                    "redis-server is not on PATH: install it (apt-get install redis-server)",
                ),
                _ => error,
            })
        })?;
    let (lines, mut output) = mpsc::unbounded_channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        forward(stream, lines.clone());
    }
    drop(lines);

    let mut log = Vec::new();
    let ready = timeout(WITHIN, async {
        while let Some(line) = output.recv().await {
            let ready = line.contains("Ready to accept connections");
            log.push(line);
            if ready {
                return true;
            }
        }
        false
    })
    .await;
    let url = format!("redis://127.0.0.1:{port}/");
    let problem = match ready {
        Ok(true) => match timeout(WITHIN, ping(&url)).await {
            Ok(Ok(())) => return Ok(Running { child, output }),
            Ok(Err(error)) => format!("it does not answer PING ({error})"),
            Err(_) => "it does not answer PING".to_owned(),
        },
        Ok(false) => "it exited".to_owned(),
        Err(_) => format!("it was not ready within {WITHIN:?}"),
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    Err(StartError {
        port_taken: log.contains("Address already in use"),
        error: io::Error::other(format!(
            "redis-server on port {port} did not start: {problem}; its output:\n{log}"
        )),
    })
}

async fn ping(url: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut connection).await
}

/// Sends each line of `stream` to `lines` from a thread of its own, until the stream ends (the
/// process exited) or nobody listens.
fn forward(stream: Box<dyn Read + Send>, lines: mpsc::UnboundedSender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}
