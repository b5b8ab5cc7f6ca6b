//! Memory of a process and all its descendants, read from `/proc` (Linux only).
//! Chromium splits into a browser, a zygote, renderers and utilities; the memory limit applies
//! to the whole tree. Each process counts its proportional set size (PSS): summing plain RSS
//! counts Chromium's shared pages once per process (1.74 GB RSS vs 0.41 GB PSS for one browser).

use std::collections::HashMap;

/// Memory of `root` and its descendants, in bytes: PSS where readable, else RSS (0 if gone).
pub fn tree_memory_bytes(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let page = page_size();
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    let mut rss_of: HashMap<u32, u64> = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] = state (field 3), rest[1] = ppid (4), rest[21] = rss in pages (24).
        let (Some(ppid), Some(rss)) = (
            fields.get(1).and_then(|s| s.parse::<u32>().ok()),
            fields.get(21).and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        parent_of.insert(pid, ppid);
        rss_of.insert(pid, rss * page);
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

/// True while any process of process group `pgid` is alive (zombies count as gone).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        // rest[0] = state (field 3), rest[2] = pgrp (field 5).
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|s| s.parse::<u32>().ok());
        state != Some("Z") && pgrp == Some(pgid)
    })
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
    }
}
