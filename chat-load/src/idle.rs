//! `--idle N`: open N idle, logged-in connections, spread round-robin over the endpoints, and
//! report how much each server's memory grew per connection.
//!
//! One process can hold only as many sockets as its open-file limit allows, so past that the
//! connections come from several chat-load processes. This one then holds none: it reads every
//! server's RSS, starts P children of its own binary (`--idle-child`), each with its share of the
//! connections and its own range of names (`--names-from`, so that no two ask for the same name,
//! which the cluster would refuse), waits until every child says it holds its share, reads the
//! RSS again, and closes the children's standard input, on which they let go and exit. The
//! connection `idle{K}` goes to endpoint `K % endpoints` whichever process opens it, so the
//! nodes get even shares. The children inherit this process's CPU affinity, and die with it (a
//! closed standard input is their signal to go).
//!
//! Each node of a cluster keeps the chat state of every user, not only of its own connections,
//! so its growth is given both per connection it holds and per connection of the run. A `--pid`
//! beyond the endpoints is a node that holds none: its growth is the state of other nodes'
//! users alone.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::Options;
use crate::client::{Target, Writer};
use crate::probe;
use crate::report::{IdleReport, NodeIdle};
use crate::run::{self, Result};

/// Files each process keeps spare beyond its connections (the runtime, standard streams,
/// `/proc` reads).
const SPARE_FILES: usize = 1_000;
/// How long the children may take to open every connection.
const SETUP: Duration = Duration::from_secs(300);
/// Connections held by a child ping this often: the WebSocket transport closes a connection that
/// says nothing for 75 s.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// What a child prints once it holds its connections.
const READY: &str = "held";

pub(crate) async fn run(options: &Options, targets: &[Target], count: usize) -> Result<()> {
    if options.idle_child {
        return child(options, targets, count).await;
    }
    if options.pid.is_empty() {
        return Err("--idle needs --pid to read the server's memory".into());
    }
    if options.pid.len() < targets.len() {
        return Err(format!(
            "--idle needs one --pid per endpoint, in the same order ({} endpoints, {} pids)",
            targets.len(),
            options.pid.len()
        )
        .into());
    }
    let transport = match &targets[0] {
        Target::Ws { .. } => "ws",
        Target::Tcp(_) => "tcp",
    };
    let processes = match options.processes {
        Some(p) => usize::from(p),
        None => count.div_ceil(per_process()?.max(1)).max(1),
    };
    let rss = || -> Result<Vec<u64>> {
        Ok(options
            .pid
            .iter()
            .map(|&pid| probe::rss_kib(pid))
            .collect::<std::io::Result<_>>()?)
    };
    let before = rss()?;
    let started = Instant::now();
    // Idle connections join nothing beyond what their login does: run the server with
    // `--default-room off`, or every login tells every idle client, which never reads.
    let held = if processes <= 1 {
        let connections =
            run::connect_all(targets, None, "idle", count, 0, options.names_from).await?;
        Held::Here(connections)
    } else {
        Held::Children(children(options, targets, count, processes).await?)
    };
    let seconds = started.elapsed().as_secs_f64();
    let after = rss()?;
    let fds: Vec<Option<usize>> = options
        .pid
        .iter()
        .map(|&pid| probe::open_fds(pid).ok())
        .collect();
    let (sum_before, sum_after) = (before.iter().sum::<u64>(), after.iter().sum::<u64>());
    let nodes = if options.pid.len() > 1 {
        options
            .pid
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                // A pid beyond the endpoints is a node that holds none of the connections.
                let connections = match targets.get(i) {
                    Some(_) => share(count, options.names_from, targets.len(), i),
                    None => 0,
                };
                let grown = after[i].saturating_sub(before[i]) as f64;
                NodeIdle {
                    endpoint: targets.get(i).map(run::endpoint).unwrap_or_default(),
                    pid,
                    connections,
                    rss_before_kib: before[i],
                    rss_after_kib: after[i],
                    kib_per_connection: if connections == 0 {
                        0.0
                    } else {
                        grown / connections as f64
                    },
                    kib_per_cluster_connection: grown / count.max(1) as f64,
                    fds: fds[i],
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = IdleReport {
        label: options.label.clone(),
        transport,
        connections: count,
        seconds,
        server_rss_before_kib: sum_before,
        server_rss_after_kib: sum_after,
        kib_per_connection: sum_after.saturating_sub(sum_before) as f64 / count.max(1) as f64,
        server_fds: if options.pid.len() > 1 { None } else { fds[0] },
        processes,
        nodes,
    };
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    held.release().await
}

/// The connections of an idle run, until the figures are read.
enum Held {
    Here(Vec<(Writer, crate::client::Reader)>),
    Children(Vec<Child>),
}

impl Held {
    /// Closes every connection (the children's by closing their standard input, then waiting
    /// for them).
    async fn release(self) -> Result<()> {
        match self {
            Held::Here(connections) => drop(connections),
            Held::Children(children) => {
                for mut child in children {
                    drop(child.stdin.take());
                    let status = tokio::time::timeout(SETUP, child.wait()).await??;
                    if !status.success() {
                        return Err(format!("a chat-load child exited with {status}").into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// How many of the connections numbered `first..first + count` go to endpoint `i` of `n`.
fn share(count: usize, first: usize, n: usize, i: usize) -> usize {
    (first..first + count).filter(|k| k % n == i).count()
}

/// The connections one process may hold: its open-file limit less [`SPARE_FILES`].
fn per_process() -> Result<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<usize>().ok())
        .ok_or("no open-file limit in /proc/self/limits")?;
    Ok(soft.saturating_sub(SPARE_FILES))
}

/// Starts `processes` children that open `count` connections between them, and waits until
/// every one holds its share.
async fn children(
    options: &Options,
    targets: &[Target],
    count: usize,
    processes: usize,
) -> Result<Vec<Child>> {
    let exe = std::env::current_exe()?;
    let endpoints = match &targets[0] {
        Target::Ws { .. } => ("--ws", options.ws.join(",")),
        Target::Tcp(_) => (
            "--tcp",
            options
                .tcp
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    let mut children = Vec::with_capacity(processes);
    let mut first = options.names_from;
    for j in 0..processes {
        let mine = count / processes + usize::from(j < count % processes);
        let child = Command::new(&exe)
            .args([endpoints.0, &endpoints.1])
            .args(["--idle", &mine.to_string()])
            .args(["--names-from", &first.to_string()])
            .arg("--idle-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        children.push(child);
        first += mine;
    }
    let deadline = Instant::now() + SETUP;
    for (j, child) in children.iter_mut().enumerate() {
        let stdout = child
            .stdout
            .take()
            .ok_or("a child without standard output")?;
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        match tokio::time::timeout_at(deadline, stdout.read_line(&mut line)).await {
            Ok(Ok(_)) if line.starts_with(READY) => {}
            Ok(_) => return Err(format!("chat-load child {j} failed (see its error above)").into()),
            Err(_) => {
                return Err(format!("chat-load child {j} did not connect within {SETUP:?}").into());
            }
        }
    }
    Ok(children)
}

/// One child: open `count` connections, say so, and hold them (pinging now and then) until
/// standard input closes.
async fn child(options: &Options, targets: &[Target], count: usize) -> Result<()> {
    let mut connections =
        run::connect_all(targets, None, "idle", count, 0, options.names_from).await?;
    println!("{READY} {}", connections.len());
    let mut closed = tokio::task::spawn_blocking(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    });
    let mut ticks = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        tokio::select! {
            _ = &mut closed => return Ok(()),
            _ = ticks.tick() => {
                for (writer, _) in &mut connections {
                    let _ = writer.keepalive().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_even_whoever_opens_them() {
        assert_eq!(share(10, 0, 3, 0), 4);
        assert_eq!(share(10, 0, 3, 1), 3);
        assert_eq!(share(10, 0, 3, 2), 3);
        // Two processes' halves add up to the whole.
        for i in 0..3 {
            assert_eq!(share(5, 0, 3, i) + share(5, 5, 3, i), share(10, 0, 3, i));
        }
        assert!(per_process().unwrap() > 0);
    }
}
