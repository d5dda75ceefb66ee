//! What a run measured, as one JSON line for scripts or a table for people.
//!
//! CPU is given two ways: in % of one core (CPU seconds over wall seconds, all threads), and as a
//! share of the cores the process can use. For the server that is the CPUs its affinity allows
//! (`Cpus_allowed_list`: 1 when the sweep pins it with `taskset -c 0`). For chat-load it is the
//! fewer of its runtime threads (`--threads`) and the CPUs its affinity allows: by default
//! chat-load runs one thread (a `current_thread` runtime), so its share is its % of one core,
//! whatever it is pinned to; with `--threads 4` on 8 allowed CPUs, of 4 cores. A run
//! where chat-load's share is above [`LOAD_TOOL_BOUND_PERCENT`] is marked load-tool-bound: the
//! tool, not the server, may have set its throughput and latency. The CPU every other process on
//! the machine used meanwhile is given too, and how busy the server's and chat-load's cores were
//! (by every process); a run where other processes used over [`CONTENDED_PERCENT`] of one core
//! is marked contended: on a shared machine, that tells a noisy figure.
//!
//! A cluster's run also has one row per node (its receivers, their latency, the node's CPU and
//! memory), Redis's CPU and the Redis commands per message; the server figures are then the
//! nodes' sum, their share being of the union of their cores. A single server's report has none
//! of these: its JSON line and table are those of a plain run.

use std::collections::BTreeMap;

use serde::Serialize;

/// chat-load's CPU share (of the cores it can use) above which a run is load-tool-bound.
pub(crate) const LOAD_TOOL_BOUND_PERCENT: f64 = 90.0;
/// Other processes' CPU (in % of one core) above which a run is marked contended.
pub(crate) const CONTENDED_PERCENT: f64 = 10.0;

/// The result of a load run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) label: String,
    /// What was driven (`--server-kind`): `chat` for the chat server, `floor` for the floor.
    pub(crate) server: String,
    pub(crate) transport: &'static str,
    pub(crate) receivers: usize,
    pub(crate) senders: usize,
    pub(crate) stalled: usize,
    pub(crate) size: usize,
    /// Target messages per second; 0 for closed loop.
    pub(crate) rate: u64,
    pub(crate) window: usize,
    /// At a fixed rate: the senders sent in bursts (`--in-phase`) instead of taking turns.
    pub(crate) in_phase: bool,
    pub(crate) seconds: f64,
    pub(crate) sent: u64,
    pub(crate) deliveries: u64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) messages_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    /// Receivers the server closed during the run (slow consumers, or worse).
    pub(crate) receivers_closed: usize,
    /// Stalled connections the server had closed by the end.
    pub(crate) stalled_closed: usize,
    pub(crate) server_rss_kib: Option<u64>,
    /// The server's CPU over the run, in % of one core (all its threads).
    pub(crate) server_cpu_percent: Option<f64>,
    /// The CPUs the server may run on (its affinity).
    pub(crate) server_cores: Option<usize>,
    /// `server_cpu_percent` as a share of `server_cores`, in %.
    pub(crate) server_cpu_share_percent: Option<f64>,
    /// chat-load's own CPU over the same interval, in % of one core.
    pub(crate) load_cpu_percent: Option<f64>,
    /// chat-load's runtime threads (`--threads`).
    pub(crate) load_threads: u16,
    /// The cores chat-load can use: the fewer of its runtime threads and its allowed CPUs.
    pub(crate) load_cores: Option<usize>,
    /// `load_cpu_percent` as a share of `load_cores`, in %.
    pub(crate) load_cpu_share_percent: Option<f64>,
    /// chat-load's share was above [`LOAD_TOOL_BOUND_PERCENT`]: the figures may be the tool's
    /// limit, not the server's.
    pub(crate) load_tool_bound: bool,
    /// The CPU every other process on the machine used over the run, in % of one core (with
    /// `--pid`; without it, the server's is in there too). Figures measured while this is high
    /// were measured on a busy machine.
    pub(crate) others_cpu_percent: Option<f64>,
    /// `others_cpu_percent` was above [`CONTENDED_PERCENT`]: other processes competed for the
    /// cores, and the figures say as much about them as about the server.
    pub(crate) contended: bool,
    /// How busy the server's cores were, by every process, in % of their capacity.
    pub(crate) server_cores_busy_percent: Option<f64>,
    /// How busy chat-load's cores were, by every process, in % of their capacity: near 100
    /// while chat-load's own share is well below it means other processes starved it.
    pub(crate) load_cores_busy_percent: Option<f64>,
    /// `--pager`: its room, and the history pages and messages it read during the run, and the
    /// pages the server refused for now (`unavailable`, `rate_limited`).
    pub(crate) pager_room: Option<String>,
    pub(crate) pager_pages: Option<u64>,
    pub(crate) pager_messages: Option<u64>,
    pub(crate) pager_refused: Option<u64>,
    /// Several endpoints or servers: one entry per node, in the order of `--ws`/`--tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) nodes: Vec<NodeLoad>,
    /// `--redis-pid`: Redis's CPU over the run (% of one core), its cores and its share of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_cores: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_cpu_share_percent: Option<f64>,
    /// `--redis`: the commands Redis ran over the run (those Lua scripts ran included), per
    /// message sent and per delivery, and per command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_commands: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_commands_per_message: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_commands_per_delivery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_calls: Option<BTreeMap<String, u64>>,
}

/// One node of a cluster in a load run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct NodeLoad {
    /// Empty for a `--pid` beyond the endpoints.
    pub(crate) endpoint: String,
    pub(crate) receivers: usize,
    /// Unique deliveries to its receivers, and their latency.
    pub(crate) deliveries: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) pid: Option<u32>,
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) cpu_share_percent: Option<f64>,
    pub(crate) rss_kib: Option<u64>,
}

/// The result of an idle run.
#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    pub(crate) label: String,
    pub(crate) transport: &'static str,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    /// The servers' RSS together (one server: its own).
    pub(crate) server_rss_before_kib: u64,
    pub(crate) server_rss_after_kib: u64,
    /// The servers' RSS growth over every connection.
    pub(crate) kib_per_connection: f64,
    pub(crate) server_fds: Option<usize>,
    /// chat-load processes that held the connections (more than one: see `idle.rs`).
    #[serde(skip_serializing_if = "is_one")]
    pub(crate) processes: usize,
    /// Several servers (`--pid`): one entry per node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) nodes: Vec<NodeIdle>,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// One node of a cluster in an idle run. Every node keeps the chat state of every user, the
/// other nodes' too, so its growth is given per connection it holds and per connection of the
/// whole cluster.
#[derive(Debug, Serialize)]
pub(crate) struct NodeIdle {
    /// Empty for a node that holds no connection (a `--pid` beyond the endpoints).
    pub(crate) endpoint: String,
    pub(crate) pid: u32,
    /// The connections this node holds.
    pub(crate) connections: usize,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// RSS growth over the connections it holds (0 if it holds none).
    pub(crate) kib_per_connection: f64,
    /// RSS growth over every connection of the run (all nodes').
    pub(crate) kib_per_cluster_connection: f64,
    pub(crate) fds: Option<usize>,
}

impl LoadReport {
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
        row("server", format!("{} ({})", self.server, self.transport));
        row(
            "connections",
            format!(
                "{} receivers, {} senders, {} stalled",
                self.receivers, self.senders, self.stalled
            ),
        );
        let load = if self.rate == 0 {
            format!("closed loop, window {}", self.window)
        } else {
            let spacing = if self.in_phase {
                "senders in phase"
            } else {
                "senders take turns"
            };
            format!("{} messages/s ({spacing})", self.rate)
        };
        row(
            "load",
            format!("{load}, {} B texts, {:.1} s", self.size, self.seconds),
        );
        row(
            "sent",
            format!("{} messages ({:.0}/s)", self.sent, self.messages_per_s),
        );
        row(
            "deliveries",
            format!("{} ({:.0}/s)", self.deliveries, self.deliveries_per_s),
        );
        row(
            "latency",
            format!(
                "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
            ),
        );
        row(
            "lost / dup / reordered",
            format!("{} / {} / {}", self.lost, self.duplicated, self.reordered),
        );
        row(
            "closed by the server",
            format!(
                "{} receivers, {} of {} stalled",
                self.receivers_closed, self.stalled_closed, self.stalled
            ),
        );
        if let Some(rss) = self.server_rss_kib {
            row("server RSS", format!("{:.1} MiB", rss as f64 / 1024.0));
        }
        let share = |share: Option<f64>, cores: Option<usize>| match (share, cores) {
            (Some(share), Some(cores)) => {
                let s = if cores == 1 { "" } else { "s" };
                format!(", {share:.0}% of the {cores} core{s} it can use")
            }
            _ => String::new(),
        };
        if let Some(cpu) = self.server_cpu_percent {
            row(
                "server CPU",
                format!(
                    "{cpu:.0}% of one core{}",
                    share(self.server_cpu_share_percent, self.server_cores)
                ),
            );
        }
        if let Some(cpu) = self.load_cpu_percent {
            row(
                "chat-load CPU",
                format!(
                    "{cpu:.0}% of one core{}",
                    share(self.load_cpu_share_percent, self.load_cores)
                ),
            );
        }
        if let Some(cpu) = self.others_cpu_percent {
            row("other processes CPU", format!("{cpu:.0}% of one core"));
        }
        if let (Some(server), Some(load)) =
            (self.server_cores_busy_percent, self.load_cores_busy_percent)
        {
            row(
                "cores busy",
                format!("the server's {server:.0}%, chat-load's {load:.0}% (every process)"),
            );
        }
        if self.contended {
            row(
                "CONTENDED",
                format!(
                    "other processes used over {CONTENDED_PERCENT:.0}% of one core meanwhile: \
                     these figures are of a busy machine"
                ),
            );
        }
        if self.load_tool_bound {
            row(
                "LOAD-TOOL-BOUND",
                format!(
                    "chat-load used over {LOAD_TOOL_BOUND_PERCENT:.0}% of what it can: these \
                     figures may be its limit, not the server's"
                ),
            );
        }
        if let (Some(room), Some(pages), Some(messages)) =
            (&self.pager_room, self.pager_pages, self.pager_messages)
        {
            row(
                "pager",
                format!(
                    "#{room}: {pages} pages, {messages} messages ({:.0}/s), {} refused",
                    messages as f64 / self.seconds.max(1e-9),
                    self.pager_refused.unwrap_or(0)
                ),
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let mut text = if node.endpoint.is_empty() {
                "(no endpoint)".to_owned()
            } else {
                format!(
                    "{}: {} receivers, {} deliveries, p50 {:.2} ms, p99 {:.2} ms",
                    node.endpoint, node.receivers, node.deliveries, node.p50_ms, node.p99_ms
                )
            };
            if let (Some(pid), Some(cpu), Some(rss)) = (node.pid, node.cpu_percent, node.rss_kib) {
                text.push_str(&format!(
                    "; pid {pid}: CPU {cpu:.0}% of one core{}, RSS {:.1} MiB",
                    node.cpu_share_percent
                        .map(|s| format!(" ({s:.0}% of its cores)"))
                        .unwrap_or_default(),
                    rss as f64 / 1024.0
                ));
            }
            row(&format!("node {i}"), text);
        }
        if let Some(cpu) = self.redis_cpu_percent {
            row(
                "Redis CPU",
                format!(
                    "{cpu:.0}% of one core{}",
                    share(self.redis_cpu_share_percent, self.redis_cores)
                ),
            );
        }
        if let (Some(total), Some(per_message), Some(per_delivery)) = (
            self.redis_commands,
            self.redis_commands_per_message,
            self.redis_commands_per_delivery,
        ) {
            row(
                "Redis commands",
                format!(
                    "{total}: {per_message:.2} per message sent, {per_delivery:.4} per delivery"
                ),
            );
            if let Some(calls) = &self.redis_calls {
                let mut by_count: Vec<_> = calls.iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(a.1));
                let per = by_count
                    .iter()
                    .take(6)
                    .map(|(name, n)| format!("{name} {:.2}", **n as f64 / self.sent.max(1) as f64))
                    .collect::<Vec<_>>()
                    .join(", ");
                row("  per message", per);
            }
        }
        out
    }
}

/// `percent` of one core as a share of `cores`, and whether that share makes a run
/// load-tool-bound.
pub(crate) fn share(percent: f64, cores: usize) -> (f64, bool) {
    let share = percent / cores.max(1) as f64;
    (share, share > LOAD_TOOL_BOUND_PERCENT)
}

impl IdleReport {
    pub(crate) fn table(&self) -> String {
        let mut out = self.summary();
        if self.processes > 1 {
            out.push_str(&format!(
                "  held by {} chat-load processes\n",
                self.processes
            ));
        }
        for node in &self.nodes {
            let endpoint = if node.endpoint.is_empty() {
                "(no endpoint)"
            } else {
                &node.endpoint
            };
            out.push_str(&format!(
                "  {} (pid {}): {} connections, RSS {} KiB -> {} KiB, {:.2} KiB per connection it \
                 holds, {:.2} KiB per connection of the cluster{}\n",
                endpoint,
                node.pid,
                node.connections,
                node.rss_before_kib,
                node.rss_after_kib,
                node.kib_per_connection,
                node.kib_per_cluster_connection,
                node.fds
                    .map(|n| format!(", {n} open fds"))
                    .unwrap_or_default()
            ));
        }
        out
    }

    fn summary(&self) -> String {
        format!(
            "{} idle {} connections in {:.1} s: server RSS {} KiB -> {} KiB, {:.2} KiB per connection{}\n",
            self.connections,
            self.transport,
            self.seconds,
            self.server_rss_before_kib,
            self.server_rss_after_kib,
            self.kib_per_connection,
            self.server_fds
                .map(|n| format!(", {n} open fds"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_tool_is_marked() {
        assert_eq!(share(95.0, 1), (95.0, true));
        assert_eq!(share(95.0, 2), (47.5, false));
        assert_eq!(share(180.0, 2), (90.0, false));
        assert_eq!(share(50.0, 0), (50.0, false));
        let report = LoadReport {
            load_cpu_percent: Some(95.0),
            load_cores: Some(1),
            load_cpu_share_percent: Some(95.0),
            load_tool_bound: true,
            ..LoadReport::default()
        };
        let table = report.table();
        assert!(table.contains("95% of one core, 95% of the 1 core it can use"));
        assert!(table.contains("LOAD-TOOL-BOUND"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["load_tool_bound"], true);
        assert!(!LoadReport::default().table().contains("LOAD-TOOL-BOUND"));
        assert!(!LoadReport::default().table().contains("CONTENDED"));
        let busy = LoadReport {
            others_cpu_percent: Some(60.0),
            contended: true,
            ..LoadReport::default()
        };
        assert!(busy.table().contains("CONTENDED"));
    }

    #[test]
    fn a_single_server_report_has_no_cluster_fields() {
        let json = serde_json::to_value(LoadReport::default()).unwrap();
        for field in [
            "nodes",
            "redis_cpu_percent",
            "redis_commands",
            "redis_calls",
        ] {
            assert!(json.get(field).is_none(), "{field}");
        }
        assert!(!LoadReport::default().table().contains("node 0"));
        let idle = IdleReport {
            label: String::new(),
            transport: "ws",
            connections: 10,
            seconds: 1.0,
            server_rss_before_kib: 100,
            server_rss_after_kib: 150,
            kib_per_connection: 5.0,
            server_fds: Some(20),
            processes: 1,
            nodes: Vec::new(),
        };
        let json = serde_json::to_value(&idle).unwrap();
        assert!(json.get("processes").is_none() && json.get("nodes").is_none());
        assert_eq!(idle.table().lines().count(), 1);
    }
}
