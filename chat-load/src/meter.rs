//! The CPU of every process a load run watches, over one interval: the servers (one per node of
//! a cluster), Redis, chat-load itself and everything else on the machine; and the servers'
//! memory at its end.
//!
//! [`Meter::start`] reads every counter once, [`Meter::finish`] again and turns the differences
//! into % of one core and shares of the cores each process may use (its affinity). The servers
//! of a cluster count as one: their CPU is summed, and their share is of the union of their
//! cores (all the nodes pinned to core 0 make a share of 1 core).

use std::io;
use std::time::Duration;

use crate::probe;
use crate::report;

/// One watched process and its CPU time when the interval began.
struct Watched {
    pid: u32,
    cpus: Option<Vec<usize>>,
    before: f64,
}

impl Watched {
    fn start(pid: u32) -> io::Result<Watched> {
        Ok(Watched {
            pid,
            cpus: probe::allowed_cpus(pid).ok(),
            before: probe::cpu_seconds(pid)?,
        })
    }

    fn finish(&self, seconds: f64) -> io::Result<Process> {
        let cpu_percent = 100.0 * (probe::cpu_seconds(self.pid)? - self.before) / seconds;
        let cores = self.cpus.as_ref().map(Vec::len);
        Ok(Process {
            pid: self.pid,
            cpu_percent,
            cores,
            cpu_share_percent: cores.map(|cores| report::share(cpu_percent, cores).0),
            rss_kib: probe::rss_kib(self.pid)?,
        })
    }
}

/// What one process used over the interval.
#[derive(Clone, Debug)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// In % of one core (all its threads).
    pub(crate) cpu_percent: f64,
    /// The CPUs it may run on.
    pub(crate) cores: Option<usize>,
    /// `cpu_percent` as a share of `cores`.
    pub(crate) cpu_share_percent: Option<f64>,
    /// At the end of the interval.
    pub(crate) rss_kib: u64,
}

/// Every figure of one interval.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Each server, in the order of the pids given.
    pub(crate) servers: Vec<Process>,
    /// The servers together: CPU in % of one core, the union of their cores, the share of it,
    /// and their RSS.
    pub(crate) server_cpu_percent: Option<f64>,
    pub(crate) server_cores: Option<usize>,
    pub(crate) server_cpu_share_percent: Option<f64>,
    pub(crate) server_rss_kib: Option<u64>,
    pub(crate) redis: Option<Process>,
    pub(crate) load_cpu_percent: Option<f64>,
    pub(crate) load_cores: Option<usize>,
    pub(crate) load_cpu_share_percent: Option<f64>,
    pub(crate) load_tool_bound: bool,
    /// Every process but the servers, Redis and chat-load, in % of one core.
    pub(crate) others_cpu_percent: Option<f64>,
    pub(crate) contended: bool,
    pub(crate) server_cores_busy_percent: Option<f64>,
    pub(crate) load_cores_busy_percent: Option<f64>,
}

/// The counters at the start of an interval.
pub(crate) struct Meter {
    servers: Vec<Watched>,
    redis: Option<Watched>,
    /// The union of the servers' CPUs (`None` if one could not be read).
    server_cpus: Option<Vec<usize>>,
    load_cpus: Option<Vec<usize>>,
    load_threads: u16,
    load_before: Option<f64>,
    machine_before: Option<f64>,
    server_cores_before: Option<f64>,
    load_cores_before: Option<f64>,
}

fn busy(cpus: Option<&Vec<usize>>) -> Option<f64> {
    probe::busy_seconds(cpus.map(Vec::as_slice)).ok()
}

impl Meter {
    /// Starts watching `servers` and `redis` (an error if one of them cannot be read), and
    /// chat-load itself, which runs `load_threads` runtime threads.
    pub(crate) fn start(
        servers: &[u32],
        redis: Option<u32>,
        load_threads: u16,
    ) -> io::Result<Meter> {
        let servers = servers
            .iter()
            .map(|&pid| Watched::start(pid))
            .collect::<io::Result<Vec<_>>>()?;
        let redis = redis.map(Watched::start).transpose()?;
        let server_cpus = if servers.is_empty() {
            None
        } else {
            servers
                .iter()
                .map(|s| s.cpus.clone())
                .collect::<Option<Vec<_>>>()
                .map(|all| {
                    let mut union: Vec<usize> = all.into_iter().flatten().collect();
                    union.sort_unstable();
                    union.dedup();
                    union
                })
        };
        let me = std::process::id();
        let load_cpus = probe::allowed_cpus(me).ok();
        Ok(Meter {
            machine_before: busy(None),
            server_cores_before: server_cpus.as_ref().and_then(|c| busy(Some(c))),
            load_cores_before: load_cpus.as_ref().and_then(|c| busy(Some(c))),
            load_before: probe::cpu_seconds(me).ok(),
            servers,
            redis,
            server_cpus,
            load_cpus,
            load_threads,
        })
    }

    /// The figures of the `elapsed` interval since [`Meter::start`].
    pub(crate) fn finish(&self, elapsed: Duration) -> io::Result<Figures> {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let servers = self
            .servers
            .iter()
            .map(|s| s.finish(seconds))
            .collect::<io::Result<Vec<_>>>()?;
        let redis = self.redis.as_ref().map(|r| r.finish(seconds)).transpose()?;
        let load_cpu_percent = self.load_before.and_then(|before| {
            let after = probe::cpu_seconds(std::process::id()).ok()?;
            Some(100.0 * (after - before) / seconds)
        });
        let percent = |before: Option<f64>, cpus: Option<&Vec<usize>>, cores: usize| {
            let after = busy(cpus)?;
            Some(100.0 * (after - before?) / seconds / cores.max(1) as f64)
        };
        let server_cpu_percent =
            (!servers.is_empty()).then(|| servers.iter().map(|s| s.cpu_percent).sum::<f64>());
        let redis_cpu = redis.as_ref().map_or(0.0, |r| r.cpu_percent);
        // Everything else the machine ran meanwhile (other processes compete for the same cores).
        let others_cpu_percent = percent(self.machine_before, None, 1)
            .zip(load_cpu_percent)
            .map(|(busy, load)| {
                (busy - server_cpu_percent.unwrap_or(0.0) - redis_cpu - load).max(0.0)
            });
        let server_cores = self.server_cpus.as_ref().map(Vec::len);
        // chat-load's runtime threads are the most cores it can keep busy.
        let load_cores = self
            .load_cpus
            .as_ref()
            .map(|cpus| cpus.len().min(usize::from(self.load_threads)));
        let load_share = load_cpu_percent
            .zip(load_cores)
            .map(|(cpu, cores)| report::share(cpu, cores));
        Ok(Figures {
            server_rss_kib: (!servers.is_empty()).then(|| servers.iter().map(|s| s.rss_kib).sum()),
            server_cpu_share_percent: server_cpu_percent
                .zip(server_cores)
                .map(|(cpu, cores)| report::share(cpu, cores).0),
            server_cpu_percent,
            server_cores,
            servers,
            redis,
            load_cpu_percent,
            load_cores,
            load_cpu_share_percent: load_share.map(|(share, _)| share),
            load_tool_bound: load_share.is_some_and(|(_, bound)| bound),
            contended: others_cpu_percent.is_some_and(|cpu| cpu > report::CONTENDED_PERCENT),
            others_cpu_percent,
            server_cores_busy_percent: self
                .server_cpus
                .as_ref()
                .and_then(|c| percent(self.server_cores_before, Some(c), c.len())),
            load_cores_busy_percent: self
                .load_cpus
                .as_ref()
                .and_then(|c| percent(self.load_cores_before, Some(c), c.len())),
        })
    }
}
