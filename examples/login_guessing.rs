//! What a password-guessing loop gets from the bundled server, and what it costs everyone else.
//!
//! It starts `chat_server` (`--memory`, WebSocket on a loopback port; `server::run` does not say
//! which port it bound, so the binary is started and its `listening` line read), registers an
//! account, then runs two phases of the same length: a guest pings at a steady pace and records
//! each round trip, first alone (the baseline), then while a guessing client sends
//! wrong-password logins for the account, one after the other, as fast as the server answers.
//! It prints the guesses sent, how many the server checked (`auth_failed`) and how many it
//! refused unchecked (`rate_limited`), the pinger's p50 and p99 in both phases, and the CPU time
//! of this tool and of the server in each phase.
//!
//! The server runs with `--rate-limit 0` unless told otherwise: the per-connection frame limit
//! would otherwise answer the guesser `rate_limited` too (and close it after 3 s of flooding),
//! and the figures are about the login throttle. Everything is bounded: each phase lasts
//! `--seconds` (at most 60, under the throttle's one-minute lock), the guesses are at most
//! `--max-guesses`, and everything talks over loopback.
//!
//! ```sh
//! cargo build --release --example chat_server --example login_guessing
//! target/release/examples/login_guessing --seconds 10
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{ErrorCode, Event, Ref};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};

/// Password guessing against the bundled server: the throttle's figures.
#[derive(Debug, Parser)]
struct Options {
    /// The chat_server binary (default: the one next to this example).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Length of each phase, in seconds (at most 60).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The most guesses sent.
    #[arg(long, default_value_t = 2_000_000)]
    max_guesses: u64,
    /// Milliseconds between the pinger's pings.
    #[arg(long, default_value_t = 5)]
    ping_every_ms: u64,
    /// The server's per-connection frame limit (`--rate-limit`; 0: off).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    wall: Duration,
    pings: Histogram<u64>,
    guesses: Guesses,
    tool_cpu: Duration,
    server_cpu: Duration,
}

#[derive(Clone, Default)]
struct Guesses {
    sent: u64,
    checked: u64,
    refused: u64,
    /// How long the guesser ran.
    active: Duration,
    /// How the server closed the guesser's connection, if it did (with `--rate-limit` above
    /// 0, for flooding).
    closed: Option<String>,
}

const VICTIM: &str = "victim";
const PASSWORD: &str = "the victim's real password";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    if options.seconds == 0 || options.seconds > 60 {
        return Err("--seconds is 1 to 60 (the throttle's lock lasts a minute)".into());
    }
    let binary = match &options.server {
        Some(path) => path.clone(),
        None => sibling("chat_server")?,
    };
    let mut server = ServerProcess::start(&binary, options.rate_limit)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(measure(&options, &server));
    server.stop();
    let phases = result?;
    report(&options, &phases);
    Ok(())
}

/// A binary next to this one (`target/<profile>/examples/`).
fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no {} (build it: cargo build --release --example chat_server), or give --server",
            path.display()
        ))
    }
}

async fn measure(
    options: &Options,
    server: &ServerProcess,
) -> Result<Vec<Phase>, Box<dyn std::error::Error>> {
    register(&server.url).await?;
    let length = Duration::from_secs(options.seconds);
    let mut phases = Vec::new();
    for (name, guessing) in [("baseline", false), ("guessing", true)] {
        let mut pinger = connect(&server.url).await?;
        let pinger_name = format!("pinger-{name}");
        login(&mut pinger, json!({"type": "login", "name": pinger_name})).await?;
        let tool_before = cpu_time(Path::new("/proc/self/stat"))?;
        let server_before = cpu_time(&server.stat)?;
        let started = Instant::now();
        let deadline = started + length;
        let stop = Arc::new(AtomicBool::new(false));
        let guesser = guessing.then(|| {
            let (url, stop, max) = (server.url.clone(), stop.clone(), options.max_guesses);
            tokio::spawn(async move { guess(&url, deadline, max, &stop).await })
        });
        let every = Duration::from_millis(options.ping_every_ms.max(1));
        let pings = ping(&mut pinger, deadline, every).await?;
        stop.store(true, Ordering::SeqCst);
        let guesses = match guesser {
            Some(task) => task.await??,
            None => Guesses::default(),
        };
        let wall = started.elapsed();
        phases.push(Phase {
            name,
            wall,
            pings,
            guesses,
            tool_cpu: cpu_time(Path::new("/proc/self/stat"))? - tool_before,
            server_cpu: cpu_time(&server.stat)? - server_before,
        });
        pinger.close().await?;
    }
    Ok(phases)
}

async fn connect(url: &str) -> Result<WsClient, Box<dyn std::error::Error>> {
    Ok(WsClient::connect(url).await?)
}

/// The next event and its `ref`; an error if the connection closed.
async fn next(client: &mut WsClient) -> Result<(Event, Option<Ref>), Box<dyn std::error::Error>> {
    let patience = Duration::from_secs(30);
    loop {
        match tokio::time::timeout(patience, client.recv()).await?? {
            Incoming::Event { event, reference } => return Ok((event, reference)),
            Incoming::Unknown(_) => {}
            Incoming::Closed { code, reason } => {
                return Err(format!("the server closed the connection: {code:?} {reason}").into());
            }
        }
    }
}

/// Sends a login frame and waits for its welcome (skipping what else comes).
async fn login(
    client: &mut WsClient,
    frame: serde_json::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    client.send_text(&frame.to_string()).await?;
    loop {
        match next(client).await?.0 {
            Event::Welcome { .. } => return Ok(()),
            Event::Error { code, message } => {
                return Err(format!("login refused: {code:?} {message}").into());
            }
            _ => {}
        }
    }
}

/// Makes [`VICTIM`] an account with [`PASSWORD`].
async fn register(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = connect(url).await?;
    login(&mut client, json!({"type": "login", "name": VICTIM})).await?;
    let frame = json!({"type": "register", "password": PASSWORD});
    client.send_text(&frame.to_string()).await?;
    loop {
        match next(&mut client).await?.0 {
            Event::Registered { .. } => break,
            Event::Error { code, message } => {
                return Err(format!("register refused: {code:?} {message}").into());
            }
            _ => {}
        }
    }
    client.close().await?;
    Ok(())
}

/// Pings every `every` until `deadline`; returns the round trips, in microseconds.
async fn ping(
    client: &mut WsClient,
    deadline: Instant,
    every: Duration,
) -> Result<Histogram<u64>, Box<dyn std::error::Error>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        ticks.tick().await;
        if Instant::now() >= deadline {
            return Ok(histogram);
        }
        let sent = Instant::now();
        client
            .send_text(&json!({"type": "ping", "ref": n}).to_string())
            .await?;
        loop {
            match next(client).await? {
                (Event::Pong, Some(reference)) if reference == Ref::number(n) => break,
                (Event::Error { code, message }, _) => {
                    return Err(format!("the pinger got an error: {code:?} {message}").into());
                }
                _ => {}
            }
        }
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.max(1));
        n += 1;
    }
}

/// Wrong-password logins for [`VICTIM`], each sent when the last is answered, until `deadline`,
/// `max` guesses, `stop`, or the server closes the connection.
async fn guess(
    url: &str,
    deadline: Instant,
    max: u64,
    stop: &AtomicBool,
) -> Result<Guesses, String> {
    let mut client = connect(url).await.map_err(|e| e.to_string())?;
    let mut guesses = Guesses::default();
    let started = Instant::now();
    while guesses.sent < max && Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        let n = guesses.sent;
        let frame =
            json!({"type": "login", "name": VICTIM, "password": format!("guess {n}"), "ref": n});
        if let Err(error) = client.send_text(&frame.to_string()).await {
            guesses.closed = Some(error.to_string());
            guesses.active = started.elapsed();
            return Ok(guesses);
        }
        guesses.sent += 1;
        let answer = match next(&mut client).await {
            Ok(answer) => answer,
            Err(error) => {
                guesses.closed = Some(error.to_string());
                guesses.active = started.elapsed();
                return Ok(guesses);
            }
        };
        match answer {
            (
                Event::Error {
                    code: ErrorCode::AuthFailed,
                    ..
                },
                _,
            ) => guesses.checked += 1,
            (
                Event::Error {
                    code: ErrorCode::RateLimited,
                    ..
                },
                _,
            ) => guesses.refused += 1,
            (other, _) => return Err(format!("guess {n} got {other:?}")),
        }
    }
    guesses.active = started.elapsed();
    Ok(guesses)
}

/// The CPU time (user and system) of the process whose `/proc/PID/stat` is `stat`.
fn cpu_time(stat: &Path) -> Result<Duration, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(stat)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = text
        .rsplit_once(')')
        .ok_or("a /proc stat line has the command in parentheses")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields: the 12th and 13th after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that cannot be asked).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    })
}

fn report(options: &Options, phases: &[Phase]) {
    println!(
        "login guessing against chat_server --memory --rate-limit {}: {} s per phase, a ping every {} ms, {} CPUs",
        options.rate_limit,
        options.seconds,
        options.ping_every_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| phase | pings | ping p50 | ping p99 | guesses | checked (auth_failed) | refused (rate_limited) | guesses/s | tool CPU (of one core) | server CPU (of one core) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for phase in phases {
        let secs = phase.wall.as_secs_f64();
        let share = |cpu: Duration| {
            format!(
                "{:.2} s ({:.0}%)",
                cpu.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / secs
            )
        };
        println!(
            "| {} | {} | {} µs | {} µs | {} | {} | {} | {:.0} | {} | {} |",
            phase.name,
            phase.pings.len(),
            phase.pings.value_at_quantile(0.50),
            phase.pings.value_at_quantile(0.99),
            phase.guesses.sent,
            phase.guesses.checked,
            phase.guesses.refused,
            phase.guesses.sent as f64 / phase.guesses.active.as_secs_f64().max(1e-9),
            share(phase.tool_cpu),
            share(phase.server_cpu),
        );
    }
    for phase in phases {
        if let Some(closed) = &phase.guesses.closed {
            println!(
                "\nthe guesser stopped after {:.1} s: {closed}",
                phase.guesses.active.as_secs_f64()
            );
        }
    }
    if let [baseline, guessing] = phases {
        let ratio = |q: f64| {
            guessing.pings.value_at_quantile(q) as f64
                / baseline.pings.value_at_quantile(q).max(1) as f64
        };
        println!();
        println!(
            "ping latency while guessing / baseline: p50 x{:.2}, p99 x{:.2}",
            ratio(0.50),
            ratio(0.99)
        );
    }
}

/// The server binary, started on a loopback port.
struct ServerProcess {
    child: Child,
    url: String,
    stat: PathBuf,
}

impl ServerProcess {
    fn start(binary: &Path, rate_limit: u32) -> Result<ServerProcess, Box<dyn std::error::Error>> {
        let mut child = Command::new(binary)
            .args(["--memory", "--ws", "127.0.0.1:0", "--tcp", "off"])
            .args(["--rate-limit", &rate_limit.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                return Err("the server printed no `listening` line".into());
            }
        };
        // Keep draining its stdout, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = line
            .strip_prefix("listening ")
            .ok_or_else(|| format!("not a `listening` line: {line:?}"))?
            .to_owned();
        let stat = PathBuf::from(format!("/proc/{}/stat", child.id()));
        Ok(ServerProcess { child, url, stat })
    }

    /// SIGTERM, then waits for it to exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
