//! Memory of a server process and all its descendants, from `/proc`.
//!
//! mailgate is one process; Dovecot is a master with a process per IMAP
//! session (and login, auth, anvil... processes). To compare them the
//! same way, both are measured as a process tree: the sum over every
//! process of its `Rss` and its `Pss` (proportional set size, from
//! `/proc/PID/smaps_rollup`: each shared page counted once in total,
//! split among the processes that map it). PSS is the fair figure for
//! forked servers, whose processes share their code and libraries; for a
//! single process it is its RSS less the share of pages it has in common
//! with other processes (shared libraries).

use std::collections::HashMap;

use crate::wire::{err, Error, Result};

/// The memory of a process tree, in KiB.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mem {
    /// Sum of `Rss` (shared pages counted once per process).
    pub rss_kib: u64,
    /// Sum of `Pss`.
    pub pss_kib: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The memory of `root` and all its descendants. Descendants that exit
/// while they are read are skipped; an unreadable `root` is an error.
pub fn tree(root: u32) -> Result<Mem> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parent)
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (rss_kib, pss_kib) = rollup(root)?;
    let mut mem = Mem {
        rss_kib,
        pss_kib,
        processes: 1,
    };
    let mut todo = children.remove(&root).unwrap_or_default();
    while let Some(pid) = todo.pop() {
        if let Ok((rss, pss)) = rollup(pid) {
            mem.rss_kib += rss;
            mem.pss_kib += pss;
            mem.processes += 1;
        }
        todo.extend(children.remove(&pid).unwrap_or_default());
    }
    Ok(mem)
}

/// The parent pid from the text of `/proc/PID/stat` (the field after the
/// state, which follows the command name in parentheses; the name may
/// itself hold spaces and parentheses, hence the last `)`).
fn parent(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// (`Rss`, `Pss`) in KiB from `/proc/PID/smaps_rollup`.
fn rollup(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| Error(format!("cannot read /proc/{pid}/smaps_rollup: {e}")))?;
    parse_rollup(&text).ok_or_else(|| Error(format!("no Rss/Pss in /proc/{pid}/smaps_rollup")))
}

fn parse_rollup(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// Memory per session between two readings, in bytes: (PSS, RSS).
pub fn per_session(before: Mem, after: Mem, sessions: usize) -> (f64, f64) {
    if sessions == 0 {
        return (0.0, 0.0);
    }
    let d = |a: u64, b: u64| (a as f64 - b as f64) * 1024.0 / sessions as f64;
    (
        d(after.pss_kib, before.pss_kib),
        d(after.rss_kib, before.rss_kib),
    )
}

/// Fails unless `/proc/PID/smaps_rollup` can be read (Linux 4.14+, and
/// another user's process needs root).
pub fn check(pid: u32) -> Result<()> {
    match rollup(pid) {
        Ok(_) => Ok(()),
        Err(e) => err(format!("{e} (memory figures need it)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_rollup() {
        assert_eq!(parent("123 (a) b) S 45 123 123 0"), Some(45));
        assert_eq!(parent("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent("garbage"), None);
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\n\
                      Rss:                4648 kB\n\
                      Pss:                1203 kB\n\
                      Pss_Anon:            512 kB\n";
        assert_eq!(parse_rollup(rollup), Some((4648, 1203)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn reads_a_tree_with_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alone = tree(child.id()).unwrap();
        let with_child = tree(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(alone.processes, 1);
        assert!(alone.rss_kib > 0 && alone.pss_kib > 0);
        assert!(with_child.processes >= 2);
        assert!(with_child.rss_kib >= alone.rss_kib);
        assert_eq!(per_session(alone, alone, 10), (0.0, 0.0));
    }
}
