//! Processes as `/proc` shows them (Linux only): one parser of `stat`, the memory of a process
//! tree, whether a process or a process group is alive. Chromium splits into a browser, a zygote, renderers and
//! utilities; the memory limit applies to the whole tree. Each process counts its proportional
//! set size (PSS): summing plain RSS counts Chromium's shared pages once per process (1.74 GB RSS
//! vs 0.41 GB PSS for one browser here).

use std::collections::HashMap;

/// What this crate reads of `/proc/<pid>/stat` (the benches and tests read it through here too).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// State `Z`: exited, not yet reaped.
    pub zombie: bool,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// cutime + cstime (children it has reaped), in clock ticks.
    pub reaped_ticks: u64,
    /// Clock ticks since boot when it started.
    pub start_time: u64,
    pub rss_pages: u64,
}

/// Parses a `stat` file: `/proc/PID/stat` or `/proc/PID/task/TID/stat`.
pub fn read_stat_file(path: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // fields[0] = state (field 3), [1] = ppid (4), [2] = pgrp (5), [11..=14] = utime stime
    // cutime cstime (14-17), [19] = starttime (22), [21] = rss in pages (24).
    Some(Stat {
        zombie: *fields.first()? == "Z",
        ppid: n(1)? as u32,
        pgrp: n(2)? as u32,
        cpu_ticks: n(11)? + n(12)?,
        reaped_ticks: n(13)? + n(14)?,
        start_time: n(19)?,
        rss_pages: n(21)?,
    })
}

/// `/proc/<pid>/stat`, if the process exists.
pub fn stat(pid: u32) -> Option<Stat> {
    read_stat_file(&format!("/proc/{pid}/stat"))
}

/// Every process: its pid and stat (zombies included).
pub fn processes() -> impl Iterator<Item = (u32, Stat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
}

/// Memory of `root` and its descendants, in bytes: PSS where readable, else RSS (0 if gone).
pub fn tree_memory_bytes(root: u32) -> u64 {
    let page = page_size();
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    let mut rss_of: HashMap<u32, u64> = HashMap::new();
    for (pid, stat) in processes() {
        parent_of.insert(pid, stat.ppid);
        rss_of.insert(pid, stat.rss_pages * page);
    }
    rss_of
        .iter()
        .filter(|(pid, _)| descends_from(**pid, root, &parent_of))
        .map(|(pid, rss)| pss_bytes(*pid).unwrap_or(*rss))
        .sum()
}

/// Proportional set size of one process, from `smaps_rollup`.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(kb_field(&text, "Pss:")? * 1024)
}

/// The number on a `Name:   123 kB` line of a `/proc` status or smaps file.
pub fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// True when `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !s.zombie)
}

/// When `pid` started, in clock ticks since boot (field 22 of its stat): with the pid, it names
/// one process, even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// True while any process of process group `pgid` is alive (zombies count as gone).
pub fn group_alive(pgid: u32) -> bool {
    processes().any(|(_, s)| !s.zombie && s.pgrp == pgid)
}

/// True when `root` is `pid` or one of its ancestors in `parent_of`.
pub fn descends_from(mut pid: u32, root: u32, parent_of: &HashMap<u32, u32>) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match parent_of.get(&pid) {
            Some(&ppid) if ppid != 0 && ppid != pid => pid = ppid,
            _ => return false,
        }
    }
    false
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_tree_has_memory() {
        assert!(tree_memory_bytes(std::process::id()) > 1024 * 1024);
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn group_liveness_follows_the_group() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert!(group_alive(own));
        assert!(!group_alive(u32::MAX - 1));
    }

    #[test]
    fn missing_process_has_none() {
        assert_eq!(tree_memory_bytes(u32::MAX - 1), 0);
        assert!(!process_alive(u32::MAX - 1));
    }
}
