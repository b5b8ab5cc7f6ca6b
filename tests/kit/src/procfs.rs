//! `/proc` scans: which processes belong to a daemon or a browser profile, and what they cost.
//! `stat` is parsed in one place, the daemon's own [`shotfarm::farm::proc_tree`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use shotfarm::farm::proc_tree::{kb_field, read_stat_file, stat, Stat};

/// Clock ticks per second (`/proc` CPU times are in ticks).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Every process's stat, zombies included (their CPU time is theirs until reaped).
pub fn process_table() -> HashMap<u32, Stat> {
    shotfarm::farm::proc_tree::processes().collect()
}

/// A process's command line, arguments separated by spaces (Chromium's helpers rewrite theirs
/// into one space-separated string already).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// `seeds` and all their descendants in `table` (by ppid links).
pub fn descendants(table: &HashMap<u32, Stat>, mut seeds: Vec<u32>) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, stat) in table {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut chosen = HashSet::new();
    while let Some(pid) = seeds.pop() {
        if chosen.insert(pid) {
            seeds.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    chosen
}

/// The processes of a tree: `roots`, every process whose command line contains `needle` (a
/// browser's `--user-data-dir`, which outlives a reparenting), and all their descendants, with
/// their stat. Zombies are included; callers that want the living filter on [`Stat::zombie`].
pub fn tree(roots: &[u32], needle: Option<&str>) -> HashMap<u32, Stat> {
    let mut all = process_table();
    let mut seeds: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| all.contains_key(p))
        .collect();
    if let Some(needle) = needle {
        seeds.extend(
            all.keys()
                .copied()
                .filter(|&pid| cmdline(pid).is_some_and(|c| c.contains(needle))),
        );
    }
    let chosen = descendants(&all, seeds);
    all.retain(|pid, _| chosen.contains(pid));
    all
}

/// The living processes that name `dir` on their command line (a browser's profile directory)
/// and every process descended from them (the headless shell's helpers do not repeat the
/// profile path), with their command lines.
pub fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy();
    let mut found: Vec<(u32, String)> = tree(&[], Some(&needle))
        .into_iter()
        .filter(|(_, stat)| !stat.zombie)
        .filter_map(|(pid, _)| Some((pid, cmdline(pid)?)))
        .collect();
    found.sort();
    found
}

/// Main browser processes under `dir`: those started with a profile in it, without `--type=`
/// (a descendant such as Chromium's crash handler is not a browser).
pub fn browser_pids(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().to_string();
    processes_under(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(&needle) && !cmd.contains("--type="))
        .map(|(pid, _)| pid)
        .collect()
}

/// Proportional set size of one process, in KiB.
pub fn pss_kb(pid: u32) -> Option<u64> {
    shotfarm::farm::proc_tree::pss_bytes(pid).map(|b| b / 1024)
}

/// User + system CPU seconds of one process (all its threads), 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat(pid).map_or(0.0, |s| s.cpu_ticks as f64 / clock_ticks())
}

/// (busy, total) CPU seconds of the whole machine, all cores, from `/proc/stat`.
pub fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / clock_ticks(), total / clock_ticks())
}

/// The machine's 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
