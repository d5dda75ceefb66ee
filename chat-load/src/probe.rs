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

/// CPU time every process has used so far on `cpus` (`None`: on all of them), from
/// `/proc/stat`, in seconds.
pub(crate) fn busy_seconds(cpus: Option<&[usize]>) -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut seconds = 0.0;
    let mut found = 0;
    for line in stat.lines() {
        let Some((label, ticks)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let wanted = match (label.strip_prefix("cpu"), cpus) {
            (Some(""), None) => true,
            (Some(n), Some(cpus)) if !n.is_empty() => {
                n.parse().is_ok_and(|n: usize| cpus.contains(&n))
            }
            _ => false,
        };
        if wanted {
            seconds += busy_ticks(ticks) / clock_ticks();
            found += 1;
        }
    }
    if found == 0 {
        return Err(io::Error::other("no such cpu lines in /proc/stat"));
    }
    Ok(seconds)
}

/// The busy ticks of one `/proc/stat` cpu line (after its label): user nice system idle iowait
/// irq softirq steal (guest time is already in user); all but idle and iowait are busy.
fn busy_ticks(fields: &str) -> f64 {
    fields
        .split_whitespace()
        .take(8)
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .map(|(_, t)| t.parse::<f64>().unwrap_or(0.0))
        .sum()
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
pub(crate) fn allowed_cpus(pid: u32) -> io::Result<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| cpu_list(list.trim()))
        .ok_or_else(|| io::Error::other(format!("no Cpus_allowed_list in /proc/{pid}/status")))
}

/// The CPUs a list such as `0-3,8,10-11` names (`None` if it is malformed or empty).
fn cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
            None => {
                let n: usize = part.trim().parse().ok()?;
                (n, n)
            }
        };
        if hi < lo {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    (!cpus.is_empty()).then_some(cpus)
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
        let cpus = allowed_cpus(me).unwrap();
        assert!(!cpus.is_empty());
        let all = busy_seconds(None).unwrap();
        assert!(all >= cpu_seconds(me).unwrap());
        assert!(busy_seconds(Some(&cpus)).unwrap() <= all + 1.0);
        assert!(busy_seconds(Some(&[usize::MAX])).is_err());
    }

    #[test]
    fn reads_cpu_lists() {
        assert_eq!(cpu_list("0"), Some(vec![0]));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        assert_eq!(cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(cpu_list(""), None);
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("x"), None);
    }
}
