//! Readers for the few `/proc` numbers the suite needs.

use std::io;

/// The resident set size of process `pid` (`VmRSS` in `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    field_kib(&status, "VmRSS:")
}

/// The resident set size of this process, in KiB.
pub fn own_rss_kib() -> io::Result<u64> {
    rss_kib(std::process::id())
}

/// How many memory mappings this process has (lines of `/proc/self/maps`).
pub fn own_mappings() -> io::Result<usize> {
    let maps = std::fs::read("/proc/self/maps")?;
    Ok(maps.iter().filter(|&&b| b == b'\n').count())
}

/// Memory in use system-wide: `MemTotal - MemAvailable` from `/proc/meminfo`, in KiB.
pub fn system_used_kib() -> io::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let total = field_kib(&meminfo, "MemTotal:")?;
    let available = field_kib(&meminfo, "MemAvailable:")?;
    Ok(total.saturating_sub(available))
}

/// CPU time (user + system, all threads) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat format")))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name come field 3 (state) onwards; utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The value of a `Name:   123 kB` line.
fn field_kib(text: &str, name: &str) -> io::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no `{name}` line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_past_a_tricky_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_stat_ticks(stat), Some(300));
    }

    #[test]
    fn reads_own_numbers() {
        assert!(own_rss_kib().unwrap() > 0);
        assert!(system_used_kib().unwrap() > 0);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
