//! Fleet: capture throughput with 1, 2 and 3 daemons sharing one ledger, on this machine.
//!
//! **What runs.** A private `redis-server` (loopback, append-only with `fsync always`, as
//! production and the tests run it) and, unless `FLEET_CLUSTER_SIZES` is empty, a three-primary
//! Redis Cluster made the way `tests/integration/redis_server.rs` makes one (`--cluster-enabled
//! yes` ×3, `redis-cli --cluster create … --cluster-replicas 0`, same durability). A fixture page
//! (the 50 KB landing page of `benches/common`) served by this bench on 127.0.0.1. For each point,
//! N copies of the **real daemon binary** (`CARGO_BIN_EXE_shotfarm serve`), each with its own
//! profile directory, its own `server.instance_name`, the default farm policies
//! (`tabs_per_browser` 2, `png_encoder` chromium) and only what a loopback bench needs: egress to
//! 127.0.0.0/8, rate limits and the per-account in-flight cap out of the way.
//!
//! **Same browsers, more daemons.** The total number of browsers is the same at every N
//! (`FLEET_BROWSERS`, default 6: N=1 runs one daemon with 6 browsers, N=2 two with 3, N=3 three
//! with 2), so the comparison isolates what more daemons cost (more runtimes, supervisors,
//! egress proxies, sweepers and Redis connections on the same cores), not what more browsers
//! bring. Every point drives the same account over HTTP, round-robin over the daemons' ports
//! (capture i goes to daemon i mod N), `FLEET_CONCURRENCY` (8) in flight: `FLEET_WARMUP` (12)
//! captures, an idle window of `FLEET_IDLE_SECS` (3) to measure what idle daemons cost Redis
//! (mostly the sweepers: each daemon reads the 256 shard indexes every `ledger.sweep_interval_ms`),
//! then `FLEET_CAPTURES` (100) timed captures. Each capture must be a 200 with a PNG.
//!
//! **What is printed.** Per point: captures/s and its ratio to N=1 on the same Redis
//! (the per-daemon efficiency thr(N)/thr(1), since the browsers are the same), p50/p95 latency
//! with ratios, CPU per capture of the daemons, Redis and the rest of the machine (mostly
//! Chromium), Redis commands per capture (`INFO commandstats`, idle rate subtracted; script-
//! internal commands count too) and `EVALSHA` round trips per capture, the idle Redis load per
//! daemon, and how the captures spread over the hosts according to each daemon's own
//! `shotfarm_captures_total` (labelled by its `shotfarm_build_info{host}`). At the end, each
//! ledger's account is audited (`ledger::audit::violations`; `spent` = images received, nothing
//! reserved), every daemon is stopped with SIGTERM and no Chromium process naming one of their
//! profile directories may be left.
//!
//! Knobs: `FLEET_SIZES` (`1,2,3`), `FLEET_CLUSTER_SIZES` (`1,3`; empty = no cluster),
//! `FLEET_BROWSERS` (6; divisible by every size), `FLEET_CAPTURES`, `FLEET_WARMUP`,
//! `FLEET_CONCURRENCY`, `FLEET_IDLE_SECS`. Points run single/cluster alternately at each N so the
//! two Redis layouts at the same N are measured close in time. About 6 minutes on 2 cores.

#[allow(dead_code)]
mod common;
use common::env_usize;
use testkit::process::ServeProcess;
use testkit::procfs::{cpu_seconds, machine_cpu};
use testkit::redis::{start_cluster, Persistence, RedisServer};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use shotfarm::config::{Config, RedisConfig};
use warp::Filter;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn env_sizes(name: &str, default: &str) -> anyhow::Result<Vec<usize>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{name}: `{s}` is not a positive number"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Redis: one server, or a three-primary cluster
// ---------------------------------------------------------------------------------------------

/// One ledger deployment the daemons share, and the account every capture is charged to.
struct Ledger {
    name: &'static str,
    config: RedisConfig,
    /// Every Redis process, for INFO.
    node_urls: Vec<String>,
    account: String,
    key: String,
    granted: i64,
    /// Images received from daemons on this ledger (warm-ups included).
    images: usize,
}

impl Ledger {
    fn cluster_env(&self) -> Option<String> {
        if self.config.cluster_nodes.is_empty() {
            return None;
        }
        Some(format!(
            "[{}]",
            self.config
                .cluster_nodes
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(",")
        ))
    }
}

/// A funded account with an API key, through the operator code path (`ops::block_on` runs its
/// own actix system: call it before the bench's tokio runtime exists).
fn provision(
    name: &'static str,
    config: RedisConfig,
    node_urls: Vec<String>,
    credits: i64,
) -> anyhow::Result<Ledger> {
    let full = Config {
        redis: config.clone(),
        ..Default::default()
    };
    let email = format!("fleet-{name}@bench.example");
    let funded = testkit::accounts::provision(&full, &email, None, credits, "fleet")?;
    let (account, key) = (funded.account, funded.key);
    Ok(Ledger {
        name,
        config,
        node_urls,
        account,
        key,
        granted: credits,
        images: 0,
    })
}

/// Summed over a deployment's nodes: Redis CPU (user + sys, s) and calls per command.
#[derive(Clone, Default)]
struct RedisStats {
    cpu: f64,
    /// `used_memory` (bytes).
    memory: f64,
    calls: BTreeMap<String, u64>,
}

impl RedisStats {
    fn total_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(c, _)| !is_bench_command(c))
            .map(|(_, n)| n)
            .sum()
    }
    fn minus(&self, before: &RedisStats) -> RedisStats {
        let mut calls = BTreeMap::new();
        for (cmd, n) in &self.calls {
            let d = n.saturating_sub(before.calls.get(cmd).copied().unwrap_or(0));
            if d > 0 {
                calls.insert(cmd.clone(), d);
            }
        }
        RedisStats {
            cpu: self.cpu - before.cpu,
            memory: self.memory - before.memory,
            calls,
        }
    }
    fn calls_of(&self, cmd: &str) -> u64 {
        self.calls.get(cmd).copied().unwrap_or(0)
    }
}

/// Commands this bench sends itself (to read the stats), left out of the counts.
fn is_bench_command(cmd: &str) -> bool {
    cmd == "info" || cmd.starts_with("config")
}

async fn redis_stats(urls: &[String]) -> anyhow::Result<RedisStats> {
    let mut out = RedisStats::default();
    for url in urls {
        let mut conn = redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let text: String = redis::cmd("INFO")
            .arg("cpu")
            .arg("memory")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                out.cpu += v.trim().parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("used_memory:") {
                out.memory += v.trim().parse::<f64>().unwrap_or(0.0);
            } else if let Some(rest) = line.strip_prefix("cmdstat_") {
                let Some((cmd, fields)) = rest.split_once(':') else {
                    continue;
                };
                let calls = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                *out.calls.entry(cmd.to_string()).or_default() += calls;
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The daemons
// ---------------------------------------------------------------------------------------------

/// One daemon binary, SIGKILLed on drop if not stopped (its browsers die by their own death
/// signal then).
struct Daemon {
    server: ServeProcess,
    api: SocketAddr,
    metrics: SocketAddr,
    name: String,
}

impl Daemon {
    /// Call from the main thread (the death signal follows the thread that forked).
    fn spawn(
        ledger: &Ledger,
        name: String,
        browsers: usize,
        logs: &Path,
    ) -> anyhow::Result<Daemon> {
        let binary = Path::new(env!("CARGO_BIN_EXE_shotfarm"));
        let log = logs.join(format!("{name}.log"));
        let server = ServeProcess::spawn(binary, "fleet", &log, |cmd| {
            cmd.env("SHOTFARM_FARM__BROWSERS", browsers.to_string())
                .env("SHOTFARM_SERVER__INSTANCE_NAME", &name)
                .env("SHOTFARM_LEDGER__MAX_IN_FLIGHT_PER_ACCOUNT", "0");
            match ledger.cluster_env() {
                Some(nodes) => cmd.env("SHOTFARM_REDIS__CLUSTER_NODES", nodes),
                None => cmd.args(["--redis-url", &ledger.config.url]),
            };
        })?;
        Ok(Daemon {
            api: server.api,
            metrics: server.metrics,
            server,
            name,
        })
    }

    fn pid(&self) -> u32 {
        self.server.pid()
    }

    fn log_tail(&self) -> String {
        self.server.process.log_tail(15)
    }

    fn sigterm(&self) {
        self.server.process.sigterm();
    }

    fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.server
            .process
            .wait_exit(limit)
            .with_context(|| format!("{} after SIGTERM", self.name))
    }
}

/// Processes whose command line names one of these profile directories (Chromium and its
/// helpers, as the integration tests find them).
fn chromium_left(dirs: &[PathBuf]) -> usize {
    let needles: Vec<String> = dirs.iter().map(|d| d.to_string_lossy().into()).collect();
    testkit::procfs::process_table()
        .keys()
        .filter_map(|&pid| testkit::procfs::cmdline(pid))
        .filter(|cmdline| needles.iter().any(|n| cmdline.contains(n.as_str())))
        .count()
}

#[derive(Clone, Copy, Default)]
struct CpuMark {
    daemons: f64,
    bench: f64,
    machine_busy: f64,
    machine_total: f64,
}

fn cpu_mark(daemons: &[u32]) -> CpuMark {
    let (machine_busy, machine_total) = machine_cpu();
    CpuMark {
        daemons: daemons.iter().map(|&p| cpu_seconds(p)).sum(),
        bench: cpu_seconds(std::process::id()),
        machine_busy,
        machine_total,
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture and load
// ---------------------------------------------------------------------------------------------

/// Serves `/landing` on 127.0.0.1:0 with `Cache-Control: no-store`.
async fn serve_fixture() -> anyhow::Result<SocketAddr> {
    let landing: &'static str = Box::leak(common::landing_page().into_boxed_str());
    let routes = warp::path!("landing").map(move || {
        warp::reply::with_header(warp::reply::html(landing), "cache-control", "no-store")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(addr)
}

#[derive(Default)]
struct Load {
    images: usize,
    failures: BTreeMap<String, usize>,
    example: Option<String>,
    /// Sorted.
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Load {
    fn failed(&self) -> usize {
        self.failures.values().sum()
    }
    fn thr(&self) -> f64 {
        self.images as f64 / self.wall.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// `count` captures, `concurrency` in flight, capture i to daemon i mod N (round robin).
async fn drive(
    client: &reqwest::Client,
    targets: &[String],
    count: usize,
    concurrency: usize,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Load::default()));
    let targets = Arc::new(targets.to_vec());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next, out, targets) =
            (client.clone(), next.clone(), out.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let result = async {
                    let r = client.get(&targets[i % targets.len()]).send().await?;
                    let status = r.status();
                    let body = r.bytes().await?;
                    Ok::<_, reqwest::Error>((status, body))
                }
                .await;
                let elapsed = t.elapsed();
                let mut out = out.lock().unwrap();
                let failure = match result {
                    Ok((status, body)) if status == 200 && body.starts_with(PNG_MAGIC) => {
                        out.images += 1;
                        out.latencies.push(elapsed);
                        None
                    }
                    Ok((status, body)) => {
                        let code = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|j| j["error"]["code"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        Some((
                            format!("{} {code}", status.as_u16()),
                            String::from_utf8_lossy(&body[..body.len().min(200)]).to_string(),
                        ))
                    }
                    Err(e) => Some(("transport".to_string(), e.to_string())),
                };
                if let Some((kind, detail)) = failure {
                    *out.failures.entry(kind).or_default() += 1;
                    out.example.get_or_insert(detail);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut load = std::mem::take(&mut *out.lock().unwrap());
    load.wall = start.elapsed();
    load.latencies.sort();
    load
}

async fn wait_ready(client: &reqwest::Client, daemons: &[Daemon]) -> anyhow::Result<()> {
    let start = Instant::now();
    for d in daemons {
        loop {
            let ready = async {
                let r: serde_json::Value = client
                    .get(format!("http://{}/readyz", d.api))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let total = r["browsers_total"].as_u64()?;
                Some(
                    total > 0 && r["browsers_ready"].as_u64() == Some(total) && r["ledger"] == "ok",
                )
            }
            .await;
            if ready == Some(true) {
                break;
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} was not ready within {READY_TIMEOUT:?}; its log:\n{}",
                    d.name,
                    d.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// From one daemon's /metrics: its host label and its successful captures.
async fn scrape(client: &reqwest::Client, d: &Daemon) -> (String, f64) {
    let text = async {
        client
            .get(format!("http://{}/metrics", d.metrics))
            .send()
            .await?
            .text()
            .await
    }
    .await
    .unwrap_or_default();
    let mut host = String::from("?");
    let mut success = 0.0;
    for line in text.lines() {
        if line.starts_with("shotfarm_build_info{") {
            if let Some(h) = line
                .split("host=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                host = h.to_string();
            }
        } else if line.starts_with("shotfarm_captures_total{")
            && line.contains("outcome=\"success\"")
        {
            success += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    (host, success)
}

// ---------------------------------------------------------------------------------------------
// One point: N daemons on one ledger
// ---------------------------------------------------------------------------------------------

struct Point {
    ledger: &'static str,
    n: usize,
    browsers_each: usize,
    load: Load,
    warmup_images: usize,
    warmup_failed: usize,
    /// Over the timed window.
    redis: RedisStats,
    cpu: CpuMark,
    /// Over the idle window, per second.
    idle_redis_calls_per_s: f64,
    /// Commands of the idle window, and its length (s).
    idle_redis: RedisStats,
    idle_secs: f64,
    idle_redis_cpu_share: f64,
    idle_daemon_cpu_share: f64,
    /// Per daemon: (name, host label, successful captures it counted).
    hosts: Vec<(String, String, f64)>,
    stopped: String,
    left: usize,
}

impl Point {
    /// Redis commands per capture in the timed window, less the idle rate over its length.
    fn redis_calls_per_capture(&self) -> f64 {
        let idle = self.idle_redis_calls_per_s * self.load.wall.as_secs_f64();
        (self.redis.total_calls() as f64 - idle).max(0.0) / self.load.images.max(1) as f64
    }
    /// Per command, calls per capture in the timed window less the idle rate over its length.
    fn net_calls_per_capture(&self) -> Vec<(String, f64)> {
        let scale = self.load.wall.as_secs_f64() / self.idle_secs.max(1e-9);
        let mut out: Vec<(String, f64)> = self
            .redis
            .calls
            .iter()
            .filter(|(c, _)| !is_bench_command(c))
            .map(|(c, n)| {
                let idle = self.idle_redis.calls_of(c) as f64 * scale;
                (
                    c.clone(),
                    (*n as f64 - idle).max(0.0) / self.load.images.max(1) as f64,
                )
            })
            .filter(|(_, v)| *v >= 0.005)
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
    fn per_capture(&self, seconds: f64) -> f64 {
        1000.0 * seconds / self.load.images.max(1) as f64
    }
}

struct Settings {
    browsers: usize,
    captures: usize,
    warmup: usize,
    concurrency: usize,
    idle: Duration,
}

async fn measure(
    client: &reqwest::Client,
    site: SocketAddr,
    daemons: &[Daemon],
    ledger: &Ledger,
    s: &Settings,
) -> anyhow::Result<Point> {
    wait_ready(client, daemons).await?;
    let targets: Vec<String> = daemons
        .iter()
        .map(|d| {
            format!(
                "http://{}/api/v1/screenshot?url=http%3A%2F%2F{site}%2Flanding",
                d.api
            )
        })
        .collect();
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
    let warm = drive(client, &targets, s.warmup, s.concurrency).await;
    if warm.failed() > s.warmup / 4 {
        bail!(
            "warm-up: {} of {} failed: {:?}; e.g. {:?}",
            warm.failed(),
            s.warmup,
            warm.failures,
            warm.example
        );
    }

    // Idle: what the daemons cost Redis and the CPU doing nothing (sweepers, probes). The
    // browsers also reopen their spare contexts here, the same at every N.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (r0, c0) = (redis_stats(&ledger.node_urls).await?, cpu_mark(&pids));
    let t0 = Instant::now();
    tokio::time::sleep(s.idle).await;
    let (r1, c1) = (redis_stats(&ledger.node_urls).await?, cpu_mark(&pids));
    let idle_secs = t0.elapsed().as_secs_f64();
    let idle = r1.minus(&r0);

    // The timed window.
    let (r2, c2) = (redis_stats(&ledger.node_urls).await?, cpu_mark(&pids));
    let load = drive(client, &targets, s.captures, s.concurrency).await;
    let (r3, c3) = (redis_stats(&ledger.node_urls).await?, cpu_mark(&pids));

    let mut hosts = Vec::new();
    for d in daemons {
        let (host, success) = scrape(client, d).await;
        hosts.push((d.name.clone(), host, success));
    }
    Ok(Point {
        ledger: ledger.name,
        n: daemons.len(),
        browsers_each: s.browsers / daemons.len(),
        warmup_images: warm.images,
        warmup_failed: warm.failed(),
        redis: r3.minus(&r2),
        cpu: CpuMark {
            daemons: c3.daemons - c2.daemons,
            bench: c3.bench - c2.bench,
            machine_busy: c3.machine_busy - c2.machine_busy,
            machine_total: c3.machine_total - c2.machine_total,
        },
        idle_redis_calls_per_s: idle.total_calls() as f64 / idle_secs,
        idle_redis: idle.clone(),
        idle_secs,
        idle_redis_cpu_share: idle.cpu / idle_secs,
        idle_daemon_cpu_share: (c1.daemons - c0.daemons) / idle_secs,
        load,
        hosts,
        stopped: String::new(),
        left: 0,
    })
}

/// SIGTERM to every daemon at once, then waits for each; returns a summary and how many
/// Chromium processes are left.
fn stop_all(daemons: &mut [Daemon]) -> (String, usize) {
    for d in daemons.iter() {
        d.sigterm();
    }
    let mut statuses = Vec::new();
    for d in daemons.iter_mut() {
        match d.wait_exit(Duration::from_secs(60)) {
            Ok(status) => statuses.push(match status.code() {
                Some(c) => format!("exit {c}"),
                None => format!("{status}"),
            }),
            Err(e) => statuses.push(format!("{e:#}")),
        }
    }
    let dirs: Vec<PathBuf> = daemons
        .iter()
        .map(|d| d.server.profiles.path().into())
        .collect();
    // The daemon waits for its browsers' process groups before it exits; allow stragglers a
    // moment all the same.
    let start = Instant::now();
    let mut left = chromium_left(&dirs);
    while left > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        left = chromium_left(&dirs);
    }
    (statuses.join(", "), left)
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    if !common::invoked_by_cargo_bench() {
        return Ok(());
    }
    let settings = Settings {
        browsers: env_usize("FLEET_BROWSERS", 6)?,
        captures: env_usize("FLEET_CAPTURES", 100)?.max(1),
        warmup: env_usize("FLEET_WARMUP", 12)?,
        concurrency: env_usize("FLEET_CONCURRENCY", 8)?.max(1),
        idle: Duration::from_secs(env_usize("FLEET_IDLE_SECS", 3)?.max(1) as u64),
    };
    let sizes = env_sizes("FLEET_SIZES", "1,2,3")?;
    let cluster_sizes = env_sizes("FLEET_CLUSTER_SIZES", "1,3")?;
    for n in sizes.iter().chain(&cluster_sizes) {
        if settings.browsers % n != 0 {
            bail!(
                "FLEET_BROWSERS={} is not divisible by {n}: every N must run the same browsers",
                settings.browsers
            );
        }
    }
    let bench_start = Instant::now();
    let logs = tempfile::Builder::new().prefix("fleet-logs-").tempdir()?;
    let points_planned = sizes.len() + cluster_sizes.len();
    let credits = ((settings.captures + settings.warmup) * points_planned + 100) as i64;

    // Children are forked from the main thread: their death signal follows it.
    let single = RedisServer::start(Persistence::AppendOnly)?;
    let mut ledgers = vec![provision(
        "single",
        RedisConfig {
            url: single.url.clone(),
            ..Default::default()
        },
        vec![single.url.clone()],
        credits,
    )?];
    let _cluster = if cluster_sizes.is_empty() {
        Vec::new()
    } else {
        let nodes = start_cluster(3)?;
        let urls = testkit::redis::node_urls(&nodes);
        ledgers.push(provision(
            "cluster",
            RedisConfig {
                cluster_nodes: urls.clone(),
                ..Default::default()
            },
            urls,
            credits,
        )?);
        nodes
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let site = runtime.block_on(serve_fixture())?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "fleet: {} browsers in all ({} tabs each, png_encoder chromium), {} captures per point \
         after {} warm-up, {} in flight round-robin over the daemons; landing page 1280x800 PNG \
         on {site}; {cores} cores; redis appendfsync always",
        settings.browsers,
        shotfarm::config::FarmConfig::default().tabs_per_browser,
        settings.captures,
        settings.warmup,
        settings.concurrency,
    );

    // Single and cluster alternate at each N.
    let mut plan: Vec<(usize, usize)> = Vec::new();
    let max_n = sizes
        .iter()
        .chain(&cluster_sizes)
        .copied()
        .max()
        .unwrap_or(0);
    for n in 1..=max_n {
        if sizes.contains(&n) {
            plan.push((0, n));
        }
        if cluster_sizes.contains(&n) {
            plan.push((1, n));
        }
    }

    let mut points: Vec<Point> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for (ledger_index, n) in plan {
        let ledger = &ledgers[ledger_index];
        let browsers_each = settings.browsers / n;
        let mut daemons = Vec::new();
        for i in 0..n {
            match Daemon::spawn(
                ledger,
                format!("fleet-{}-{}", ledger.name, i + 1),
                browsers_each,
                logs.path(),
            ) {
                Ok(d) => daemons.push(d),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        let headers = {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                "x-api-key",
                reqwest::header::HeaderValue::from_str(&ledger.key)?,
            );
            h
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .pool_max_idle_per_host(settings.concurrency * 2)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let result = runtime.block_on(measure(&client, site, &daemons, ledger, &settings));
        let (stopped, left) = stop_all(&mut daemons);
        match result {
            Ok(mut point) => {
                point.stopped = stopped;
                point.left = left;
                ledgers[ledger_index].images += point.warmup_images + point.load.images;
                let base = points
                    .iter()
                    .find(|p| p.ledger == point.ledger && p.n == 1)
                    .map_or(point.load.thr(), |p| p.load.thr());
                eprintln!(
                    "  {} N={n}: {} images ({} failed), {:.2} captures/s = {:.3}x N=1; daemons: {}; Chromium left: {left}",
                    point.ledger,
                    point.load.images,
                    point.load.failed(),
                    point.load.thr(),
                    point.load.thr() / base,
                    point.stopped
                );
                points.push(point);
            }
            Err(e) => {
                for d in &daemons {
                    eprintln!("--- {} log (last lines):\n{}", d.name, d.log_tail());
                }
                failure = Some(e.context(format!("{} N={n}", ledger.name)));
                break;
            }
        }
    }

    // ---- the ledgers' audit ---------------------------------------------------------------
    let mut audits = Vec::new();
    for ledger in &ledgers {
        let result = runtime.block_on(async {
            let handle = shotfarm::ledger::RedisHandle::new(&ledger.config)?;
            let mut conn = handle.connect().await?;
            let snapshot = shotfarm::ledger::store::snapshot(&mut conn, &ledger.account)
                .await?
                .ok_or_else(|| anyhow!("no ledger for {}", ledger.account))?;
            Ok::<_, anyhow::Error>(snapshot)
        });
        audits.push((ledger, result));
    }

    let log_bytes = runtime.block_on(async {
        let ledger = &ledgers[0];
        let log = shotfarm::ledger::keys::AccountKeys::new(&ledger.account).transactions();
        let mut conn = redis::Client::open(ledger.config.url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&log)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await?;
        let len: i64 = redis::cmd("LLEN").arg(&log).query_async(&mut conn).await?;
        Ok::<_, anyhow::Error>((bytes, len))
    });

    report(&points, &settings);
    match log_bytes {
        Ok((bytes, len)) => println!(
            "transaction log kept for good (single Redis, MEMORY USAGE): {bytes} bytes for {len} entries = {:.0} bytes per capture (page URL {} bytes long)",
            bytes as f64 / len.max(1) as f64,
            format!("http://{site}/landing").len()
        ),
        Err(e) => println!("transaction log size: {e:#}"),
    }
    let mut ok = failure.is_none();
    println!();
    for (ledger, result) in &audits {
        match result {
            Ok(s) => {
                let v = shotfarm::ledger::audit::violations(s);
                let b = &s.balance;
                let pass = v.is_empty()
                    && b.spent == ledger.images as i64
                    && b.reserved == 0
                    && s.holds.is_empty()
                    && b.granted == ledger.granted;
                ok &= pass;
                println!(
                    "ledger audit ({}): spent {} = images received {}: {}; reserved {}, {} open holds, available {} of {} granted (expected {}); invariants: {} -> {}",
                    ledger.name,
                    b.spent,
                    ledger.images,
                    b.spent == ledger.images as i64,
                    b.reserved,
                    s.holds.len(),
                    b.available,
                    b.granted,
                    ledger.granted,
                    if v.is_empty() { "hold".to_string() } else { format!("{v:?}") },
                    if pass { "PASS" } else { "FAIL" }
                );
            }
            Err(e) => {
                ok = false;
                println!("ledger audit ({}): FAIL: {e:#}", ledger.name);
            }
        }
    }
    let left: usize = points.iter().map(|p| p.left).sum();
    let clean_exit = points
        .iter()
        .all(|p| p.stopped.split(", ").all(|s| s == "exit 0"));
    ok &= left == 0 && clean_exit;
    println!(
        "every daemon stopped on SIGTERM with exit 0: {clean_exit}; Chromium processes left over all points: {left}"
    );
    println!(
        "bench time: {:.1} min",
        bench_start.elapsed().as_secs_f64() / 60.0
    );
    if let Some(e) = failure {
        return Err(e);
    }
    if !ok {
        bail!("the fleet bench found a problem (see above)");
    }
    Ok(())
}

fn report(points: &[Point], s: &Settings) {
    if points.is_empty() {
        return;
    }
    fn base_of<'a>(points: &'a [Point], p: &'a Point) -> &'a Point {
        points
            .iter()
            .find(|q| q.ledger == p.ledger && q.n == 1)
            .unwrap_or(p)
    }
    let single_at = |n: usize| points.iter().find(|q| q.ledger == "single" && q.n == n);
    println!();
    println!(
        "Throughput and latency ({} timed captures per point, {} in flight; ratios against N=1 on the same Redis):",
        s.captures, s.concurrency
    );
    println!("| redis | N | browsers/daemon | captures/s | thr(N)/thr(1) | cluster/single | p50 ms | p50/p50(1) | p95 ms | p95/p95(1) | failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for p in points {
        let b = base_of(points, p);
        let vs_single = if p.ledger == "single" {
            "—".to_string()
        } else {
            single_at(p.n).map_or("—".into(), |q| {
                format!("{:.3}", p.load.thr() / q.load.thr())
            })
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {} | {} | {:.2} | **{:.3}** | {} | {:.0} | {:.3} | {:.0} | {:.3} | {} |",
            p.ledger,
            p.n,
            p.browsers_each,
            p.load.thr(),
            p.load.thr() / b.load.thr(),
            vs_single,
            ms(p.load.pct(50.0)),
            p.load.pct(50.0).as_secs_f64() / b.load.pct(50.0).as_secs_f64(),
            ms(p.load.pct(95.0)),
            p.load.pct(95.0).as_secs_f64() / b.load.pct(95.0).as_secs_f64(),
            p.load.failed(),
        );
    }
    println!();
    for ledger in ["single", "cluster"] {
        let Some(one) = points.iter().find(|p| p.ledger == ledger && p.n == 1) else {
            continue;
        };
        let ratios: Vec<String> = points
            .iter()
            .filter(|p| p.ledger == ledger && p.n > 1)
            .map(|p| format!("N={}/N=1 = {:.3}", p.n, p.load.thr() / one.load.thr()))
            .collect();
        if !ratios.is_empty() {
            println!(
                "per-daemon efficiency, {ledger} Redis (same {} browsers in all): {}",
                s.browsers,
                ratios.join(", ")
            );
        }
    }
    println!();
    println!(
        "CPU over the timed window (ms per capture; share = of all cores' time in the window):"
    );
    println!("| redis | N | machine busy share | daemons ms/capture | vs N=1 | Redis ms/capture | vs N=1 | bench ms/capture | rest (Chromium) ms/capture | vs N=1 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for p in points {
        let b = base_of(points, p);
        let rest = |p: &Point| {
            p.per_capture(p.cpu.machine_busy - p.cpu.daemons - p.cpu.bench - p.redis.cpu)
        };
        println!(
            "| {} | {} | {:.3} | {:.1} | {:.3} | {:.2} | {:.3} | {:.1} | {:.0} | {:.3} |",
            p.ledger,
            p.n,
            p.cpu.machine_busy / p.cpu.machine_total.max(1e-9),
            p.per_capture(p.cpu.daemons),
            p.cpu.daemons
                / p.load.images.max(1) as f64
                / (b.cpu.daemons / b.load.images.max(1) as f64).max(1e-9),
            p.per_capture(p.redis.cpu),
            p.redis.cpu
                / p.load.images.max(1) as f64
                / (b.redis.cpu / b.load.images.max(1) as f64).max(1e-9),
            p.per_capture(p.cpu.bench),
            rest(p),
            rest(p) / rest(b).max(1e-9),
        );
    }
    println!();
    println!("Redis load (INFO commandstats summed over the deployment's nodes; script-internal commands count):");
    println!("| redis | N | commands/capture (idle rate subtracted) | Redis CPU ms/capture (idle rate subtracted) | EVALSHA/capture | used_memory growth bytes/capture | idle commands/s per daemon | idle Redis CPU share per daemon | idle daemon CPU share per daemon |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in points {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} | {:.4} | {:.4} |",
            p.ledger,
            p.n,
            p.redis_calls_per_capture(),
            p.per_capture(
                (p.redis.cpu - p.idle_redis_cpu_share * p.load.wall.as_secs_f64()).max(0.0)
            ),
            p.redis.calls_of("evalsha") as f64 / p.load.images.max(1) as f64,
            p.redis.memory / p.load.images.max(1) as f64,
            p.idle_redis_calls_per_s / p.n as f64,
            p.idle_redis_cpu_share / p.n as f64,
            p.idle_daemon_cpu_share / p.n as f64,
        );
    }
    for p in points {
        println!(
            "  per capture, {} N={} (idle rate subtracted): {}",
            p.ledger,
            p.n,
            p.net_calls_per_capture()
                .iter()
                .map(|(c, n)| format!("{c} {n:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for p in points {
        let mut idle: Vec<(&String, &u64)> = p
            .idle_redis
            .calls
            .iter()
            .filter(|(c, _)| !is_bench_command(c))
            .collect();
        idle.sort_by(|a, b| b.1.cmp(a.1));
        println!(
            "  idle, {} N={}, per second per daemon: {}",
            p.ledger,
            p.n,
            idle.iter()
                .take(4)
                .map(|(c, n)| format!("{c} {:.1}", **n as f64 / p.idle_secs / p.n as f64))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!();
    println!("Spread over the hosts (each daemon's shotfarm_captures_total{{outcome=\"success\"}}, warm-up included; host = shotfarm_build_info{{host}}):");
    for p in points {
        let total: f64 = p.hosts.iter().map(|h| h.2).sum();
        let received = (p.warmup_images + p.load.images) as f64;
        println!(
            "  {} N={}: {} (sum {} = images received {}: {}); warm-up failures {}",
            p.ledger,
            p.n,
            p.hosts
                .iter()
                .map(|(name, host, n)| format!(
                    "{name} (host label {}) {:.0} = {:.3} of the point",
                    if host == name { "ok" } else { host.as_str() },
                    n,
                    n / total.max(1.0)
                ))
                .collect::<Vec<_>>()
                .join("; "),
            total,
            received,
            total == received,
            p.warmup_failed
        );
        for (kind, n) in &p.load.failures {
            println!("    failure {kind}: {n}");
        }
        if let Some(e) = &p.load.example {
            println!("    e.g. {e}");
        }
    }
}
