//! The architecture's rules, checked on the source text of `src/` (ARCHITECTURE.md, "Invariants"):
//!
//! - each outside world's crate is used only in its home: warp (HTTP) in `api`, hyper in `api`
//!   and the egress proxy, chromiumoxide in `farm`, redis in the stores (`ledger`, `accounts`,
//!   `limits`, the shared cache's index `cache/index.rs`, `jobs/store.rs`,
//!   `notifications/store.rs`; deadpool-redis only in `jobs/store.rs`), reqwest in `payments`
//!   and `notifications`, actix in `farm` and the ledger actor, object_store in `storage`;
//! - Redis key names and the hash fields the Lua scripts share (`ledger::keys`) are used only
//!   by the stores (`ledger`, `accounts`, `limits`, `cache/index.rs`, `jobs/store.rs`,
//!   `notifications/store.rs`);
//! - `config`, the ground floor, imports nothing of ours;
//! - only `app` (and the binary) import `api`: nothing below the HTTP layer reaches up into it;
//! - the top-level modules form no cycle.
//!
//! Test code (`#[cfg(test)]` modules) is left out: tests may reach anywhere. Each failure names
//! the file and line, or the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stores: the only places that speak Redis and name its keys.
const STORES: &[&str] = &[
    "ledger/",
    "accounts/",
    "limits/",
    "cache/index.rs",
    "jobs/store.rs",
    "notifications/store.rs",
];

/// Crate → the places (a folder `x/` or a file `x.rs` under `src/`) that may use it.
const HOMES: &[(&str, &[&str])] = &[
    ("warp", &["api/"]),
    ("hyper", &["api/", "egress/proxy.rs"]),
    ("chromiumoxide", &["farm/"]),
    ("redis", STORES),
    ("deadpool_redis", &["jobs/store.rs"]),
    ("reqwest", &["payments/", "notifications/"]),
    ("actix", &["farm/", "ledger/actor.rs"]),
    ("object_store", &["storage/"]),
];

/// Modules of ours that only some places may use: Redis key names (and the hash fields the
/// Lua scripts share) belong to the stores.
const INTERNAL_HOMES: &[(&str, &[&str])] = &[("ledger::keys", STORES)];

/// Modules no other module may import (the ground floor imports nothing).
const GROUND_FLOOR: &str = "config";

/// `api` may be imported only from these files.
const API_IMPORTERS: &[&str] = &["app.rs", "main.rs", "lib.rs"];

struct Source {
    /// Path under `src/`, with `/` separators.
    rel: String,
    /// Lines outside `#[cfg(test)]` modules, numbered from 1.
    lines: Vec<(usize, String)>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file of the crate, test modules and comments left out.
fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read a source file");
            let mut lines = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("#[cfg(test)]") {
                    // Test modules stand at the end of a file, by this crate's convention.
                    break;
                }
                if code.starts_with("//") {
                    continue;
                }
                lines.push((i + 1, line.to_string()));
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under src/")
                .to_string_lossy()
                .replace('\\', "/");
            Source { rel, lines }
        })
        .collect()
}

/// The top-level module a file belongs to (`api/auth.rs` → `api`, `ops.rs` → `ops`).
fn top_module(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap_or(rel)
        .trim_end_matches(".rs")
        .to_string()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Where `prefix::` starts a path in `line` (not as the tail of a longer identifier or path):
/// the byte offsets just past it.
fn path_starts(line: &str, prefix: &str) -> Vec<usize> {
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find(&needle).map(|i| i + from) {
        let before = line[..at].chars().next_back();
        if before.is_none_or(|c| !is_ident(c) && c != ':') {
            out.push(at + needle.len());
        }
        from = at + needle.len();
    }
    out
}

/// Whether `line` names `name::` as a path start.
fn names_path(line: &str, name: &str) -> bool {
    !path_starts(line, name).is_empty()
}

/// `crate::<module>` references: the modules a line imports.
fn crate_refs(line: &str) -> Vec<String> {
    path_starts(line, "crate")
        .into_iter()
        .map(|at| {
            line[at..]
                .chars()
                .take_while(|c| is_ident(*c))
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Every breach of the rules, as readable lines.
fn violations(sources: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let own = top_module(&source.rel);
        for (n, line) in &source.lines {
            for (krate, homes) in HOMES {
                if names_path(line, krate) && !homes.iter().any(|h| source.rel.starts_with(h)) {
                    found.push(format!(
                        "src/{}:{n}: uses {krate} outside its home ({}): {}",
                        source.rel,
                        homes.join(", "),
                        line.trim()
                    ));
                }
            }
            for (module, homes) in INTERNAL_HOMES {
                if line.contains(module) && !homes.iter().any(|h| source.rel.starts_with(h)) {
                    found.push(format!(
                        "src/{}:{n}: uses {module} outside its home ({}): {}",
                        source.rel,
                        homes.join(", "),
                        line.trim()
                    ));
                }
            }
            for target in crate_refs(line) {
                if target == own {
                    continue;
                }
                if own == GROUND_FLOOR {
                    found.push(format!(
                        "src/{}:{n}: {GROUND_FLOOR} is the ground floor and imports {target}: {}",
                        source.rel,
                        line.trim()
                    ));
                }
                if target == "api" && !API_IMPORTERS.contains(&source.rel.as_str()) {
                    found.push(format!(
                        "src/{}:{n}: only {} import api: {}",
                        source.rel,
                        API_IMPORTERS.join(", "),
                        line.trim()
                    ));
                }
                graph.entry(own.clone()).or_default().insert(target);
            }
        }
    }
    found.extend(cycles(&graph));
    found
}

/// Each cycle of the module graph, once, as `a -> b -> a`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle: Vec<String> = path[at..].to_vec();
            // One spelling per cycle: start at its smallest member.
            let least = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
            cycle.rotate_left(least);
            let first = cycle[0].clone();
            cycle.push(first);
            out.insert(format!("module cycle: {}", cycle.join(" -> ")));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, out);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut out = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out.into_iter().collect()
}

#[test]
fn the_source_keeps_the_architectures_boundaries() {
    let sources = sources();
    assert!(
        sources.len() > 40,
        "too few source files found: {}",
        sources.len()
    );
    let found = violations(&sources);
    assert!(
        found.is_empty(),
        "boundary rules broken (ARCHITECTURE.md, Invariants):\n{}",
        found.join("\n")
    );
}

/// The checker itself: each rule fires on a deliberate breach, so a green run means something.
#[test]
fn each_rule_fires_on_a_deliberate_breach() {
    let file = |rel: &str, code: &str| Source {
        rel: rel.to_string(),
        lines: code
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect(),
    };
    let breaches = [
        file("ledger/store.rs", "use warp::Filter;"),
        file("api/screenshot.rs", "let b: chromiumoxide::Browser;"),
        file("config.rs", "use crate::egress::EgressPolicy;"),
        file("ops.rs", "let t = crate::api::json::iso_time(0);"),
        file(
            "payments/mod.rs",
            "use crate::ledger::keys::order_reference;",
        ),
    ];
    for breach in breaches {
        let found = violations(std::slice::from_ref(&breach));
        assert_eq!(found.len(), 1, "{}: {found:?}", breach.rel);
    }
    let cycle = [
        file("farm/mod.rs", "use crate::ledger::Ledger;"),
        file("ledger/mod.rs", "use crate::farm::Farm;"),
    ];
    assert_eq!(
        violations(&cycle),
        vec!["module cycle: farm -> ledger -> farm".to_string()]
    );
    // Not breaches: a crate at home, a longer identifier, a module's own paths.
    let fine = [
        file("farm/tab.rs", "use chromiumoxide::Page;"),
        file("api/mod.rs", "let x = my_redis::thing; crate::api::x();"),
        file("app.rs", "use crate::api::{self, ApiState};"),
    ];
    assert_eq!(violations(&fine), Vec::<String>::new());
}
