//! What a run measured, as one JSON line for scripts or a table for people.

use serde::Serialize;

/// The result of a load run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) label: String,
    pub(crate) transport: &'static str,
    pub(crate) receivers: usize,
    pub(crate) senders: usize,
    pub(crate) stalled: usize,
    pub(crate) size: usize,
    /// Target messages per second; 0 for closed loop.
    pub(crate) rate: u64,
    pub(crate) window: usize,
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
    pub(crate) server_cpu_percent: Option<f64>,
    /// chat-load's own CPU over the same interval, in % of one core: near 100 on its core means
    /// the tool, not the server, may have set the figures.
    pub(crate) load_cpu_percent: Option<f64>,
    /// `--pager`: its room, and the history pages and messages it read during the run, and the
    /// pages the server refused for now (`unavailable`, `rate_limited`).
    pub(crate) pager_room: Option<String>,
    pub(crate) pager_pages: Option<u64>,
    pub(crate) pager_messages: Option<u64>,
    pub(crate) pager_refused: Option<u64>,
}

/// The result of an idle run.
#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    pub(crate) label: String,
    pub(crate) transport: &'static str,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    pub(crate) server_rss_before_kib: u64,
    pub(crate) server_rss_after_kib: u64,
    pub(crate) kib_per_connection: f64,
    pub(crate) server_fds: Option<usize>,
}

impl LoadReport {
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
        row("transport", self.transport.to_owned());
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
            format!("{} messages/s", self.rate)
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
        if let Some(cpu) = self.server_cpu_percent {
            row("server CPU", format!("{cpu:.0}% of one core"));
        }
        if let Some(cpu) = self.load_cpu_percent {
            row("chat-load CPU", format!("{cpu:.0}% of one core"));
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
        out
    }
}

impl IdleReport {
    pub(crate) fn table(&self) -> String {
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
