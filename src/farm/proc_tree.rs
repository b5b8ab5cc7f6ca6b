//! Processes as `/proc` shows them (Linux only): the memory of a process tree, whether a
//! process or a process group is alive. Chromium splits into a browser, a zygote, renderers and
//! utilities; the memory limit applies to the whole tree. Each process counts its proportional
//! set size (PSS): summing plain RSS counts Chromium's shared pages once per process (1.74 GB RSS
//! vs 0.41 GB PSS for one browser here).

use std::collections::HashMap;

/// The fields of `/proc/<pid>/stat` this module needs.
struct Stat {
    zombie: bool,
    ppid: u32,
    pgrp: u32,
    rss_pages: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] = state (field 3), [1] = ppid (4), [2] = pgrp (5), [21] = rss in pages (24).
    Some(Stat {
        zombie: *fields.first()? == "Z",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

/// Every process: its pid and stat.
fn all_processes() -> impl Iterator<Item = (u32, Stat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
}

/// Memory of `root` and its descendants, in bytes: PSS where readable, else RSS (0 if gone).
pub fn tree_memory_bytes(root: u32) -> u64 {
    let page = page_size();
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    let mut rss_of: HashMap<u32, u64> = HashMap::new();
    for (pid, stat) in all_processes() {
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
fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// True when `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| !s.zombie)
}

/// When `pid` started, in clock ticks since boot (field 22 of its stat): with the pid, it names
/// one process, even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 is the 20th after the command name's closing parenthesis.
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// True while any process of process group `pgid` is alive (zombies count as gone).
pub fn group_alive(pgid: u32) -> bool {
    all_processes().any(|(_, s)| !s.zombie && s.pgrp == pgid)
}

fn descends_from(mut pid: u32, root: u32, parent_of: &HashMap<u32, u32>) -> bool {
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
