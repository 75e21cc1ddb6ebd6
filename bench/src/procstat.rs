//! CPU time of processes from `/proc/PID/stat` (utime + stime, all threads).

use anyhow::{anyhow, Context, Result};

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), usually 100.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime in clock ticks from the contents of a `/proc/PID/stat` file. The command name
/// (field 2) is in parentheses and may hold spaces or parentheses, so fields are counted from
/// the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let close = stat
        .rfind(')')
        .ok_or_else(|| anyhow!("no ')' in stat line"))?;
    // Fields after the command start at field 3 (state); utime is field 14, stime field 15.
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        rest.get(n - 3)
            .ok_or_else(|| anyhow!("stat line has no field {n}"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} of stat line"))
    };
    Ok(field(14)? + field(15)?)
}

/// CPU ticks of one process, or an error if it is gone.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&s)
}

/// Sum of the CPU seconds of `pids` (processes that are gone count as 0 and are reported).
pub fn cpu_seconds(pids: &[u32]) -> (f64, Vec<u32>) {
    let mut ticks = 0;
    let mut gone = Vec::new();
    for &p in pids {
        match cpu_ticks(p) {
            Ok(t) => ticks += t,
            Err(_) => gone.push(p),
        }
    }
    (ticks as f64 / ticks_per_second() as f64, gone)
}

/// CPU seconds of this process.
pub fn self_cpu_seconds() -> f64 {
    cpu_ticks(std::process::id()).unwrap_or(0) as f64 / ticks_per_second() as f64
}

/// CPU seconds the whole machine spent busy (every CPU, every process, the kernel) since boot,
/// from the first line of `/proc/stat`: user, nice, system, irq, softirq and steal.
pub fn machine_busy_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_machine_busy(&s))
        .map_or(0.0, |t| t as f64 / ticks_per_second() as f64)
}

/// Busy ticks from the contents of `/proc/stat` (`cpu user nice system idle iowait irq
/// softirq steal ...`).
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Resident set size and thread count of a process, from `/proc/PID/status` (`VmRSS`, in
/// KiB, and `Threads`).
pub fn memory_and_threads(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status(&s)
}

/// (RSS bytes, threads) from the contents of a `/proc/PID/status` file.
pub fn parse_status(s: &str) -> Result<(u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| anyhow!("no {name} line"))?;
        let n = line
            .split_whitespace()
            .next()
            .ok_or_else(|| anyhow!("empty {name} line"))?;
        n.parse::<u64>()
            .with_context(|| format!("{name} {n:?} is not a number"))
    };
    Ok((field("VmRSS:")? * 1024, field("Threads:")?))
}

/// Whether the process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive, at most `timeout`.
pub async fn wait_gone(pids: &[u32], timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while pids.iter().any(|&p| is_alive(p)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let line = "12345 (tally-node) S 1 12345 12345 0 -1 4194560 3003 0 0 0 \
                    250 37 0 0 20 0 9 0 778899 123456789 4567 18446744073709551615 1 1 0 0 0 0 0 \
                    4096 17922 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(line).unwrap(), 287);
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        let line = "7 (my (odd) name) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(line).unwrap(), 33);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 300 7 8 9 0 0\ncpu0 50 2 25 4500 150 3 4 4 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 5 + 50 + 7 + 8 + 9));
        assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
        assert!(machine_busy_seconds() > 0.0);
    }

    #[test]
    fn status_gives_rss_and_threads() {
        let s = "Name:\ttally-node\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t17\n";
        assert_eq!(parse_status(s).unwrap(), (51200 * 1024, 17));
        assert!(parse_status("Name:\tx\n").is_err());
        let (rss, threads) = memory_and_threads(std::process::id()).unwrap();
        assert!(rss > 0 && threads >= 1);
    }

    #[test]
    fn truncated_lines_are_errors() {
        assert!(parse_cpu_ticks("7 (x) R 1 7").is_err());
        assert!(parse_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn own_process_has_a_stat_file() {
        assert!(cpu_ticks(std::process::id()).is_ok());
        assert!(ticks_per_second() > 0);
    }
}
