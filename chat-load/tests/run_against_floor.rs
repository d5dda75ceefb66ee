//! Whole load runs of the `chat-load` binary against its own floor server, over loopback: every
//! message sent reaches every receiver once, in order, and the report says so.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::count;

mod support;

const LOAD: &str = env!("CARGO_BIN_EXE_chat-load");

/// A floor server on a free loopback port, killed when dropped.
struct Floor {
    child: Child,
    addr: String,
}

impl Floor {
    fn start() -> Floor {
        let mut child = Command::new(LOAD)
            .args(["floor", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chat-load starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the floor says where it listens");
        let addr = line
            .trim()
            .strip_prefix("listening tcp://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Floor { child, addr }
    }

    /// Runs chat-load against this floor with `args` and returns its JSON report.
    fn load(&self, args: &[&str]) -> Value {
        let output = Command::new(LOAD)
            .args(["--tcp", &self.addr, "--json", "--size", "64"])
            .args(args)
            .output()
            .expect("chat-load runs");
        support::report(&output)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_everything_arrived_once_in_order(report: &Value, receivers: u64) {
    let sent = count(report, "sent");
    assert!(sent > 0, "nothing was sent: {report}");
    assert_eq!(count(report, "deliveries"), sent * receivers, "{report}");
    assert_eq!(count(report, "lost"), 0, "{report}");
    assert_eq!(count(report, "duplicated"), 0, "{report}");
    assert_eq!(count(report, "reordered"), 0, "{report}");
    assert!(
        report["p99_ms"].as_f64().is_some_and(|p99| p99 > 0.0),
        "{report}"
    );
}

#[test]
fn a_closed_loop_run_delivers_every_message_to_every_receiver() {
    let floor = Floor::start();
    let report = floor.load(&["--receivers", "50", "--senders", "3", "--duration", "1"]);
    assert_everything_arrived_once_in_order(&report, 50);
}

#[test]
fn a_fixed_rate_run_sends_at_its_rate_and_delivers_everything() {
    let floor = Floor::start();
    let report = floor.load(&[
        "--receivers",
        "20",
        "--senders",
        "4",
        "--rate",
        "200",
        "--duration",
        "1",
    ]);
    assert_everything_arrived_once_in_order(&report, 20);
    // One second at 200/s is 200 messages, give or take a tick at each end; never more (the
    // rate is a rate, not a floor), and on a loaded machine not far fewer either, since a late
    // sender catches up instead of skipping its turn.
    let sent = count(&report, "sent");
    assert!((150..=205).contains(&sent), "sent {sent} at 200/s for 1 s");
}
