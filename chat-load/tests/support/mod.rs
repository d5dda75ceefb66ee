//! What chat-load's integration tests share: reading the JSON report of a finished run.

use std::process::Output;

use serde_json::Value;

/// The JSON report of a chat-load run that must have succeeded.
pub(crate) fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "chat-load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in {stdout:?}"));
    serde_json::from_str(line).expect("the report is JSON")
}

/// A count in the report.
pub(crate) fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {report}"))
}
