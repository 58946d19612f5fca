//! CPU time of a server process (and its descendants), from `/proc`.
//!
//! The figure the SMTP phase reports as "server CPU µs/msg" is the
//! server's `utime + stime` (fields 14 and 15 of `/proc/PID/stat`, every
//! thread of the process, the ones that have exited included) over the
//! phase, divided by the messages accepted. Unlike throughput it does not
//! depend much on what else runs on the machine (the client, other
//! jobs): a loaded machine makes a run slower, not the server's work per
//! message larger (caches and frequency aside), so it is the figure to
//! compare between builds on a shared machine.
//!
//! A forking server (Postfix: `master` with `smtpd`, `cleanup`, `qmgr`,
//! `virtual`... under it) is measured as a tree: every live descendant's
//! `utime + stime` plus each process's `cutime + cstime` (the children it
//! has reaped, which Postfix's master does as its daemons exit).

use std::collections::HashMap;
use std::time::Duration;

use crate::wire::{Error, Result};

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100
/// on every Linux this runs on if `getconf` is missing).
fn ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// (utime + stime, cutime + cstime, parent pid) in ticks from the text of
/// `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is f[N - 3].
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    let ppid = f.get(1)?.parse().ok()?;
    Some((n(14)? + n(15)?, n(16)? + n(17)?, ppid))
}

/// CPU time (user + system) of `pid` alone, all its threads.
pub fn process(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| Error(format!("cannot read /proc/{pid}/stat: {e}")))?;
    let (own, _, _) =
        parse_stat(&text).ok_or_else(|| Error(format!("cannot parse /proc/{pid}/stat")))?;
    Ok(ticks(own))
}

/// CPU time of `root` and every descendant, with the children they have
/// reaped. Processes that exit while the tree is read are missed until
/// their parent reaps them (then counted in its `cutime`).
pub fn tree(root: u32) -> Result<Duration> {
    let mut stats: HashMap<u32, (u64, u64, u32)> = HashMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            stats.insert(pid, s);
        }
    }
    if !stats.contains_key(&root) {
        return Err(Error(format!("no process {root}")));
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if let Some((own, reaped, _)) = stats.get(&pid) {
            total += own + reaped;
        }
        todo.extend(
            stats
                .iter()
                .filter(|(_, s)| s.2 == pid)
                .map(|(&child, _)| child),
        );
    }
    Ok(ticks(total))
}

fn ticks(n: u64) -> Duration {
    Duration::from_nanos(n.saturating_mul(1_000_000_000) / ticks_per_second())
}

/// Server CPU per message in microseconds.
pub fn per_message(cpu: Duration, messages: u64) -> f64 {
    if messages == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 1e6 / messages as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_strange_name() {
        let stat =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 9 0 100 1000 50";
        assert_eq!(parse_stat(stat), Some((325, 7, 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(process(me).is_ok());
        assert!(tree(me).unwrap() >= process(me).unwrap());
    }
}
