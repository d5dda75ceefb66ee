//! What the server process costs, read from `/proc`: resident memory and CPU time, and the cores
//! a process may run on (its CPU affinity), to give its CPU as a share of them.

use std::io;

/// Resident memory of `pid`, in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// CPU time `pid` has used (user + system, all threads), in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after its closing parenthesis do not.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// CPU time every process on the machine has used so far (all CPUs; `/proc/stat`), in seconds.
pub(crate) fn machine_busy_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<f64> = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user): all but
    // idle and iowait are busy.
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(busy / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 where it cannot be asked.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPUs `pid` may run on (its affinity, `Cpus_allowed_list` in `/proc/PID/status`).
pub(crate) fn allowed_cpus(pid: u32) -> io::Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| count_cpus(list.trim()))
        .ok_or_else(|| io::Error::other(format!("no Cpus_allowed_list in /proc/{pid}/status")))
}

/// Threads of `pid` (`Threads` in `/proc/PID/status`).
pub(crate) fn threads(pid: u32) -> io::Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no Threads in /proc/{pid}/status")))
}

/// How many CPUs a list such as `0-3,8,10-11` names (`None` if it is malformed or empty).
fn count_cpus(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.split(',') {
        count += match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                hi.checked_sub(lo)? + 1
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Open file descriptors of `pid`.
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(open_fds(me).unwrap() >= 3);
        assert!(allowed_cpus(me).unwrap() >= 1);
        assert!(threads(me).unwrap() >= 1);
        assert!(machine_busy_seconds().unwrap() >= cpu_seconds(me).unwrap());
    }

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("1"), Some(1));
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
    }
}
